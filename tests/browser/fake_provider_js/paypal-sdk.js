// A small fake of PayPal's JS SDK (www.paypal.com/sdk/js) for the browser tests, served from
// a loopback origin that PAYMUX_PAYPAL_JS_URL names: the API surface the checkout page uses,
// paypal.Buttons({createOrder, onApprove, onError}).render(element). Its "PayPal window" is a
// dialog in the page where the buyer approves the order (at the fake PayPal, through this
// origin's /paypal/approve), optionally with a funding source PayPal will refuse. Like PayPal's
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
  window.paypal = {Buttons: (options) => ({render: (target) => render(options, target)})};
})();
