// The sandbox's hosted card form. Served from /sandbox/static (CSP: script-src 'self', no
// inline script). The token goes to the parent page only at the origin named in the page
// (the validated ?origin= parameter, else this page's own origin): never to '*'.
'use strict';
(function () {
  const body = document.body;
  const tokensUrl = body.dataset.tokensUrl;
  const parentOrigin = body.dataset.parentOrigin || window.location.origin;
  const fields = ['number', 'exp_month', 'exp_year', 'cvc', 'postal_code'];
  document.getElementById('card-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = {};
    for (const f of fields) data[f] = document.getElementById(f).value;
    const response = await fetch(tokensUrl, {method: 'POST',
      headers: {'content-type': 'application/json'}, body: JSON.stringify(data)});
    const answer = await response.json();
    const out = document.getElementById('result');
    if (response.ok) {
      out.textContent = 'token: ' + answer.id;
      out.dataset.token = answer.id;
      if (window.parent !== window) {
        window.parent.postMessage(
          {type: 'paymux.sandbox.token', token: answer.id, card: answer.card}, parentOrigin);
      }
    } else {
      out.textContent = 'error: ' + answer.error.code + ': ' + answer.error.message;
      out.dataset.error = answer.error.code;
    }
    for (const f of ['number', 'cvc']) document.getElementById(f).value = '';
  });
  // Handled from here on: until now the button was disabled (the form, submitted by the
  // browser itself, would have reloaded this page and lost the card).
  document.getElementById('submit').disabled = false;
})();
