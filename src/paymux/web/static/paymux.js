// paymux.js: the card entry a merchant embeds on their own page, for a PaymentIntent their
// server made. Load it from paymux with its Subresource Integrity hash (docs/checkout.md):
//
//   <script src="https://pay.example/js/paymux.js" integrity="sha384-..." crossorigin="anonymous"></script>
//   const paymux = Paymux('pk_test_...');
//   paymux.mount('#card', {clientSecret, onSuccess(intent) {...}, onError(error) {...}});
//
// mount() reads the intent with the publishable key and its client secret
// (GET /v1/payment_intents/{id}?client_secret=), and mounts the card entry of the gateway
// the payment is routed to: today the sandbox's hosted card form, framed from paymux's
// /sandbox/elements with ?origin= this page's origin (the form tokenizes the card at the
// sandbox, which stands in for a provider, and posts only the token to this page). paymux.js
// then confirms with the publishable key, the client secret and that token
// (POST /v1/payment_intents/{id}/confirm): CORS allows any origin on those two routes only,
// without credentials (the key is the credential, as Stripe's API does). Then:
// - succeeded (or authorized): onSuccess(intent);
// - 3-D Secure: the browser goes to the challenge, which returns to this page (return_url);
// - a decline: onError({message: the taxonomy's user_message, action, code}); the card form
//   is reloaded empty for another card.
// No card number or CVC passes through this script or reaches paymux's API.
'use strict';
(function () {
  const script = document.currentScript;
  const base = new URL(script.src).origin;

  function Paymux(publishableKey) {
    if (typeof publishableKey !== 'string' || !publishableKey.startsWith('pk_')) {
      throw new Error('Paymux(): a publishable key (pk_...) is required');
    }
    const auth = {authorization: 'Bearer ' + publishableKey};

    async function api(method, path, form) {
      const init = {method: method, headers: Object.assign({}, auth), credentials: 'omit'};
      if (form) {
        init.headers['content-type'] = 'application/x-www-form-urlencoded';
        init.body = new URLSearchParams(form).toString();
      }
      const response = await fetch(base + path, init);
      let body = {};
      try { body = await response.json(); } catch (e) { /* no body */ }
      return {ok: response.ok, status: response.status, body: body};
    }

    async function mount(target, options) {
      const element = typeof target === 'string' ? document.querySelector(target) : target;
      const secret = options && options.clientSecret;
      if (!element) throw new Error('paymux.mount(): no such element');
      if (typeof secret !== 'string' || secret.indexOf('_secret_') < 0) {
        throw new Error('paymux.mount(): clientSecret is required');
      }
      const onSuccess = options.onSuccess || function () {};
      const onError = options.onError || function () {};
      const id = secret.split('_secret_')[0];
      const path = '/v1/payment_intents/' + encodeURIComponent(id);
      const read = await api('GET', path + '?client_secret=' + encodeURIComponent(secret));
      if (!read.ok) {
        const error = read.body.error || {};
        onError({message: error.user_message || error.message || 'This payment cannot be made.',
                 code: error.code || null, action: error.action || null});
        return null;
      }
      const intent = read.body;
      if (intent.gateway !== 'sandbox') {
        onError({message: 'paymux.js cannot take a card for this gateway yet.',
                 code: 'gateway_not_supported', action: null});
        return null;
      }
      const frame = document.createElement('iframe');
      frame.src = base + '/sandbox/elements?origin=' + encodeURIComponent(window.location.origin);
      frame.title = options.title || 'Card details';
      frame.className = 'paymux-card-frame';
      frame.style.border = '0';
      frame.style.width = '100%';
      frame.style.minHeight = '260px';
      element.replaceChildren(frame);
      let busy = false;

      async function confirm(token) {
        if (busy) return;
        busy = true;
        try {
          const answer = await api('POST', path + '/confirm', {
            client_secret: secret,
            'payment_method_data[type]': 'card',
            'payment_method_data[card][token]': token,
            return_url: options.returnUrl || window.location.href,
          });
          const done = answer.body;
          if (answer.ok && ['succeeded', 'requires_capture', 'processing'].includes(done.status)) {
            onSuccess(done);
            return;
          }
          const redirect = done.next_action && done.next_action.redirect_to_url;
          if (answer.ok && done.status === 'requires_action' && redirect && redirect.url) {
            window.location.assign(redirect.url);  // 3-D Secure; back to return_url
            return;
          }
          const error = done.error || {};
          onError({message: error.user_message || error.message || 'The payment did not go through.',
                   code: error.code || null, action: error.action || null});
          frame.src = frame.src;  // an empty form for another card
        } catch (e) {
          onError({message: 'The payment could not be sent. Try again.', code: null,
                   action: 'retry'});
        } finally {
          busy = false;
        }
      }

      window.addEventListener('message', (event) => {
        if (event.origin !== base || event.source !== frame.contentWindow) return;
        const data = event.data || {};
        if (data.type !== 'paymux.sandbox.token' || typeof data.token !== 'string') return;
        confirm(data.token);
      });
      return {gateway: intent.gateway, frame: frame};
    }

    return {mount: mount};
  }

  window.Paymux = Paymux;
})();
