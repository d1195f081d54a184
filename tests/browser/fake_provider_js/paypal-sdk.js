// A small fake of PayPal's JS SDK (www.paypal.com/sdk/js) for the browser tests, served from
// a loopback origin that PAYMUX_PAYPAL_JS_URL names: the API surface the checkout page uses,
// paypal.Buttons({createOrder, onApprove, onError}).render(element), and the vault flow
// (saving the payer's wallet, nothing charged): paypal.Buttons({createVaultSetupToken,
// onApprove, onCancel, onError}), whose onApprove gets {vaultSetupToken}. Its "PayPal window"
// is a dialog in the page where the buyer approves the order (at the fake PayPal, through this
// origin's /paypal/approve), optionally with a funding source PayPal will refuse, or approves
// saving their wallet for the setup token (/paypal/approve-setup), or cancels. Like PayPal's
// SDK it puts its own style element in the page, with the script's data-csp-nonce. With
// components=card-fields, paypal.CardFields({createOrder, onApprove, onError}) too (below).
'use strict';
(function () {
  const script = document.currentScript;
  const base = new URL(script.src).origin;
  const query = new URL(script.src).searchParams;
  if (!query.get('client-id')) throw new Error('paypal sdk: client-id is required');
  const style = document.createElement('style');
  if (script.dataset.cspNonce) style.nonce = script.dataset.cspNonce;
  style.textContent = '.fake-paypal-button{background:#ffc439;border:0;padding:.6em 2em}';
  document.head.appendChild(style);
  function render(options, target) {
    const element = typeof target === 'string' ? document.querySelector(target) : target;
    const button = document.createElement('button');
    button.type = 'button';
    button.id = 'paypal-button';
    button.className = 'fake-paypal-button';
    button.textContent = 'PayPal';
    element.appendChild(button);
    button.addEventListener('click', async () => {
      if (options.createVaultSetupToken) {
        await vault(options);
        return;
      }
      let orderID;
      try {
        orderID = await options.createOrder({}, {});
      } catch (error) {
        if (options.onError) options.onError(error);
        return;
      }
      const dialog = document.createElement('div');
      dialog.id = 'paypal-window';
      dialog.setAttribute('role', 'dialog');
      dialog.setAttribute('aria-label', 'PayPal');
      dialog.dataset.orderId = orderID;
      const choices = [['Pay with PayPal', null], ['Pay with a refused card', 'INSTRUMENT_DECLINED']];
      for (const [label, decline] of choices) {
        const choice = document.createElement('button');
        choice.type = 'button';
        choice.textContent = label;
        choice.addEventListener('click', async () => {
          await fetch(base + '/paypal/approve', {
            method: 'POST', body: JSON.stringify({order_id: orderID, decline: decline}),
          });
          dialog.remove();
          await options.onApprove({orderID: orderID}, {});
        });
        dialog.appendChild(choice);
      }
      document.body.appendChild(dialog);
    });
    return Promise.resolve();
  }
  // The vault flow: the merchant's setup token, approved (or not) in "PayPal's window".
  async function vault(options) {
    let token;
    try {
      token = await options.createVaultSetupToken();
    } catch (error) {
      if (options.onError) options.onError(error);
      return;
    }
    const dialog = document.createElement('div');
    dialog.id = 'paypal-window';
    dialog.setAttribute('role', 'dialog');
    dialog.setAttribute('aria-label', 'PayPal');
    dialog.dataset.setupToken = token;
    const save = document.createElement('button');
    save.type = 'button';
    save.textContent = 'Save PayPal';
    save.addEventListener('click', async () => {
      await fetch(base + '/paypal/approve-setup', {
        method: 'POST', body: JSON.stringify({setup_token: token}),
      });
      dialog.remove();
      await options.onApprove({vaultSetupToken: token}, {});
    });
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.textContent = 'Cancel';
    cancel.addEventListener('click', () => {
      dialog.remove();
      if (options.onCancel) options.onCancel({});
    });
    dialog.append(save, cancel);
    document.body.appendChild(dialog);
  }
  // The card fields (components=card-fields): each field an iframe from this origin (the
  // card never touches the merchant's page); submit() asks createOrder for the merchant's
  // order, has each field post its own value to this origin, then submits the order's card
  // here: "3-D Secure" runs (a challenge dialog for the challenge card, where the payer
  // completes or fails it), and onApprove gets {orderID, liabilityShift}.
  const LABELS = {name: 'Name on card', number: 'Card number', expiry: 'Expiry (MM/YY)',
                  cvv: 'Security code'};
  function CardFields(options) {
    const frames = [];
    const field = (name) => ({
      render: (target) => {
        const element = typeof target === 'string' ? document.querySelector(target) : target;
        const frame = document.createElement('iframe');
        frame.src = base + '/paypal/card-field?name=' + name;
        frame.title = LABELS[name];
        frame.className = 'fake-paypal-card-field';
        frame.dataset.field = name;
        frames.push(frame);
        element.appendChild(frame);
        return new Promise((resolve) => frame.addEventListener('load', () => resolve()));
      },
    });
    const post = async (path, body) => {
      const response = await fetch(base + path, {method: 'POST', body: JSON.stringify(body)});
      return response.json();
    };
    // Each field posts its value to this origin under the submit's id, and says so.
    function store(submitId) {
      return Promise.all(frames.map((frame) => new Promise((resolve) => {
        const done = (event) => {
          const data = event.data || {};
          if (event.origin !== base || data.type !== 'paypal.card-fields.stored' ||
              data.submitId !== submitId || data.name !== frame.dataset.field) return;
          window.removeEventListener('message', done);
          resolve();
        };
        window.addEventListener('message', done);
        frame.contentWindow.postMessage({type: 'paypal.card-fields.store', submitId}, base);
      })));
    }
    function challenge() {
      return new Promise((resolve) => {
        const dialog = document.createElement('div');
        dialog.id = 'paypal-3ds';
        dialog.setAttribute('role', 'dialog');
        dialog.setAttribute('aria-label', '3-D Secure');
        for (const [label, outcome] of [['Complete authentication', 'passed'],
                                        ['Fail authentication', 'failed']]) {
          const choice = document.createElement('button');
          choice.type = 'button';
          choice.textContent = label;
          choice.addEventListener('click', () => {
            dialog.remove();
            resolve(outcome);
          });
          dialog.appendChild(choice);
        }
        document.body.appendChild(dialog);
      });
    }
    async function submit() {
      let orderID;
      try {
        orderID = await options.createOrder();
        const submitId = Math.random().toString(36).slice(2) + Date.now().toString(36);
        await store(submitId);
        let answer = await post('/paypal/card-fields/submit', {order_id: orderID, submit_id: submitId});
        if (answer.challenge) {
          const outcome = await challenge();
          answer = await post('/paypal/card-fields/submit',
            {order_id: orderID, submit_id: submitId, challenge: outcome});
        }
        if (answer.error) throw new Error(answer.error);
        await options.onApprove({orderID: orderID, liabilityShift: answer.liability_shift});
      } catch (error) {
        if (options.onError) options.onError(error);
        throw error;
      }
    }
    return {
      isEligible: () => true,
      NameField: () => field('name'),
      NumberField: () => field('number'),
      ExpiryField: () => field('expiry'),
      CVVField: () => field('cvv'),
      submit: submit,
    };
  }
  const components = (query.get('components') || 'buttons').split(',');
  window.paypal = {Buttons: (options) => ({render: (target) => render(options, target)})};
  if (components.includes('card-fields')) window.paypal.CardFields = CardFields;
})();
