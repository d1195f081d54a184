// The hosted invoice page's payment: the card form is the gateway's own page in an iframe
// (same origin here: paymux serves the sandbox under /sandbox). It posts a token to this
// page; this page asks paymux to pay the invoice with it, then follows 3-D Secure when the
// card needs it (the challenge returns to this page) or reloads to show the invoice paid.
// Served from /_invoice (CSP: script-src 'self', no inline script).
'use strict';
(function () {
  const section = document.getElementById('pay');
  if (!section) return;
  const status = document.getElementById('pay-status');
  let busy = false;
  window.addEventListener('message', async (event) => {
    if (event.origin !== window.location.origin) return;
    const data = event.data || {};
    if (data.type !== 'paymux.sandbox.token' || typeof data.token !== 'string' || busy) return;
    busy = true;
    status.textContent = 'Paying…';
    status.dataset.state = 'paying';
    try {
      const response = await fetch(section.dataset.payUrl, {
        method: 'POST', credentials: 'same-origin',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({payment_method: data.token}),
      });
      const answer = await response.json();
      if (answer.redirect_url) {
        status.dataset.state = 'redirecting';
        window.location.assign(answer.redirect_url);
        return;
      }
      if (response.ok && answer.status === 'paid') {
        status.dataset.state = 'paid';
        window.location.reload();
        return;
      }
      status.textContent = answer.message || 'The payment did not go through.';
      status.dataset.state = 'failed';
    } catch (e) {
      status.textContent = 'The payment could not be sent. Try again.';
      status.dataset.state = 'failed';
    }
    busy = false;
  });
})();
