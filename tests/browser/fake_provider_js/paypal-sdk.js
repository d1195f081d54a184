// A small fake of PayPal's JS SDK (www.paypal.com/sdk/js) for the browser tests, served from
// a loopback origin that PAYMUX_PAYPAL_JS_URL names: the API surface the checkout page uses,
// paypal.Buttons({createOrder, onApprove, onError}).render(element), and the vault flow
// (saving the payer's wallet, nothing charged): paypal.Buttons({createVaultSetupToken,
// onApprove, onCancel, onError}), whose onApprove gets {vaultSetupToken}. Its "PayPal window"
// is a dialog in the page where the buyer approves the order (at the fake PayPal, through this
// origin's /paypal/approve), optionally with a funding source PayPal will refuse, or approves
// saving their wallet for the setup token (/paypal/approve-setup), or cancels. Like PayPal's
// SDK it puts its own style element in the page, with the script's data-csp-nonce.
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
  window.paypal = {Buttons: (options) => ({render: (target) => render(options, target)})};
})();
