// A small fake of Square's Web Payments SDK (web.squarecdn.com/v1/square.js) for the browser
// tests, served from a loopback origin that PAYMUX_SQUARE_JS_URL names: the API surface the
// checkout page uses, Square.payments(applicationId, locationId) -> card() -> attach(),
// tokenize(), destroy(); and verifyBuyer(token, details). The card's fields are plain inputs
// here (Square's are in its own frame); tokenize sends them to this origin (the provider's),
// which answers a card nonce the fake Square API takes; verifyBuyer answers a verification
// token (recorded with the details it was given). For the challenge card (4000002760003184)
// verifyBuyer first shows the issuer's challenge, as Square's SDK frames it
// (#square-challenge: "Complete verification" answers the token, "Fail verification" makes
// verifyBuyer throw, as Square's does when the buyer fails it).
'use strict';
(function () {
  const base = new URL(document.currentScript.src).origin;
  async function post(path, body) {
    const response = await fetch(base + path, {method: 'POST', body: JSON.stringify(body)});
    return response.json();
  }
  function payments(applicationId, locationId) {
    if (!applicationId || !locationId) throw new Error('square: application and location ids');
    return {
      async card() {
        let root = null;
        const fields = {};
        return {
          async attach(selector) {
            root = document.querySelector(selector);
            for (const name of ['number', 'expiry', 'cvv', 'postal']) {
              const input = document.createElement('input');
              input.name = name;
              input.placeholder = name;
              input.setAttribute('aria-label', name);
              root.appendChild(input);
              fields[name] = input;
            }
          },
          async tokenize() {
            const answer = await post('/square/tokenize', {
              application_id: applicationId, location_id: locationId,
              number: fields.number.value, cvv: fields.cvv.value,
            });
            return answer.token ? {status: 'OK', token: answer.token}
              : {status: 'Invalid', errors: [{message: 'invalid card'}]};
          },
          async destroy() {
            root.replaceChildren();
          },
        };
      },
      async verifyBuyer(token, details) {
        const answer = await post('/square/verify', {token: token, details: details});
        if (!answer.challenge) return {token: answer.token, userChallenged: false};
        const passed = await new Promise((resolve) => {
          const dialog = document.createElement('div');
          dialog.id = 'square-challenge';
          dialog.setAttribute('role', 'dialog');
          dialog.setAttribute('aria-label', 'Card verification');
          for (const [label, outcome] of [['Complete verification', true],
                                          ['Fail verification', false]]) {
            const choice = document.createElement('button');
            choice.type = 'button';
            choice.textContent = label;
            choice.addEventListener('click', () => { dialog.remove(); resolve(outcome); });
            dialog.appendChild(choice);
          }
          document.body.appendChild(dialog);
        });
        if (!passed) throw new Error('square: the buyer failed the verification');
        const done = await post('/square/verify', {token: token, details: details,
                                                   challenge: 'passed'});
        return {token: done.token, userChallenged: true};
      },
    };
  }
  window.Square = {payments: payments};
})();
