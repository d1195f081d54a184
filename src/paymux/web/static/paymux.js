// paymux.js: the card entry a merchant embeds on their own page, for a PaymentIntent or a
// SetupIntent their server made. Load it from paymux with its Subresource Integrity hash
// (docs/checkout.md):
//
//   <script src="https://pay.example/js/paymux.js" integrity="sha384-..." crossorigin="anonymous"></script>
//   const paymux = Paymux('pk_test_...');
//   paymux.mount('#card', {clientSecret, onSuccess(intent) {...}, onError(error) {...}});
//
// mount() reads the intent with the publishable key and its client secret
// (GET /v1/payment_intents/{id}?client_secret=, or /v1/setup_intents/{id} for a seti_...
// secret), and mounts the card entry of the gateway the intent is routed to, whose own code
// tokenizes the card:
// - the sandbox: its hosted card form, framed from paymux's /sandbox/elements with ?origin=
//   this page's origin (the sandbox stands in for a provider; the form posts only the token
//   to this page);
// - Stripe: Stripe.js (loaded from the intent's client.sdk_url, Stripe's origin) and its
//   card Element, with the account's Stripe publishable key (client.publishable_key), and a
//   Pay button; Stripe.js's createToken sends the card to Stripe, and only the token's card
//   id comes back; for a SetupIntent, the confirm (without a card) answers the secret of
//   Stripe's SetupIntent and Stripe.js's confirmCardSetup saves the card with it (one
//   PaymentMethod, made by Stripe.js; its 3-D Secure on this page);
// - PayPal: the JS SDK's buttons (client.sdk_url names the order's client id, currency and
//   intent); createOrder hands PayPal the order paymux opened (client.order_id), the payer
//   approves it in PayPal's window, and onApprove confirms with the order's id; for a
//   SetupIntent (saving the payer's PayPal wallet), createVaultSetupToken confirms it and
//   hands PayPal the setup token paymux made (next_action.paypal_setup_token), the payer
//   approves it in PayPal's window, and onApprove reads the SetupIntent, which paymux
//   settles by asking PayPal (the approved token becomes the saved payment method);
// - Square: the Web Payments SDK's card form (client.sdk_url, client.application_id and
//   location_id) tokenizes at Square; verifyBuyer (SCA) gives the verification token that
//   goes with the card's token (intent CHARGE with the amount; STORE for a SetupIntent,
//   whose confirm has Square save the card on file with it).
// The SDK URLs are paymux's (PAYMUX_PAYPAL_JS_URL / PAYMUX_SQUARE_JS_URL / the Stripe API
// base replace the providers' there). This script is one file on purpose: the merchant pins
// it with one SRI hash; the hosted page's card-entry.js talks to the page's own endpoints.
// paymux.js then confirms with the publishable key, the client secret and that token
// (POST /v1/{payment,setup}_intents/{id}/confirm): CORS allows any origin on those routes
// only, without credentials (the key is the credential, as Stripe's API does). Then:
// - succeeded (or authorized): onSuccess(intent); a SetupIntent's names the saved
//   payment_method;
// - 3-D Secure: the browser goes to the challenge, which returns to this page (return_url);
//   for Stripe (next_action use_stripe_sdk), Stripe.js's confirmCardPayment (or
//   confirmCardSetup) shows it;
// - a decline: onError({message: the taxonomy's user_message, action, code}); the card form
//   is mounted again, empty, for another card.
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
      const setup = id.startsWith('seti_');
      const path = (setup ? '/v1/setup_intents/' : '/v1/payment_intents/') +
        encodeURIComponent(id);
      const read = await api('GET', path + '?client_secret=' + encodeURIComponent(secret));
      if (!read.ok) {
        const error = read.body.error || {};
        onError({message: error.user_message || error.message || 'This payment cannot be made.',
                 code: error.code || null, action: error.action || null});
        return null;
      }
      const intent = read.body;
      if (DONE.includes(intent.status)) {  // paid (or saved) already: back from 3-D Secure
        onSuccess(intent);
        return null;
      }
      const client = intent.client || {};
      const finish = {secret: secret, path: path, options: options, setup: setup,
                      intent: intent, onSuccess: onSuccess, onError: onError};
      if (intent.gateway === 'sandbox') return mountSandbox(element, finish);
      if (intent.gateway === 'stripe' && client.publishable_key && client.sdk_url) {
        return mountStripe(element, client, finish);
      }
      if (intent.gateway === 'paypal' && setup && client.client_id && client.sdk_url) {
        return mountPayPalVault(element, client, intent, finish);
      }
      if (intent.gateway === 'paypal' && !setup && client.order_id && client.sdk_url) {
        return mountPayPal(element, client, finish);
      }
      if (intent.gateway === 'square' && client.application_id &&
          client.location_id && client.sdk_url) {
        return mountSquare(element, client, intent, finish);
      }
      onError({message: 'paymux.js cannot take a card for this gateway yet.',
               code: 'gateway_not_supported', action: null});
      return null;
    }

    const DONE = ['succeeded', 'requires_capture', 'processing'];

    // Confirm with the publishable key, the client secret and the token the gateway's own
    // code made (and, where the challenge is a page, the return_url); then onSuccess, the
    // 3-D Secure step, or onError and again().
    async function confirm(finish, paymentMethod, again, authenticate) {
      const fields = Object.assign({client_secret: finish.secret}, paymentMethod);
      try {
        const answer = await api('POST', finish.path + '/confirm', fields);
        const done = answer.body;
        if (answer.ok && DONE.includes(done.status)) {
          finish.onSuccess(done);
          return;
        }
        const next = (answer.ok && done.status === 'requires_action' && done.next_action) || {};
        if (next.redirect_to_url && next.redirect_to_url.url) {
          window.location.assign(next.redirect_to_url.url);  // 3-D Secure; back to return_url
          return;
        }
        if (next.type === 'use_stripe_sdk' && authenticate) {
          await authenticate(done);
          return;
        }
        const error = done.error || {};
        finish.onError({message: error.user_message || error.message ||
                          'The payment did not go through.',
                        code: error.code || null, action: error.action || null});
        again();
      } catch (e) {
        finish.onError({message: 'The payment could not be sent. Try again.', code: null,
                        action: 'retry'});
      }
    }

    // The sandbox's hosted form (the provider's stand-in), framed from paymux's origin.
    function mountSandbox(element, finish) {
      const frame = document.createElement('iframe');
      frame.src = base + '/sandbox/elements?origin=' + encodeURIComponent(window.location.origin);
      frame.title = finish.options.title || 'Card details';
      frame.className = 'paymux-card-frame';
      frame.style.border = '0';
      frame.style.width = '100%';
      frame.style.minHeight = '260px';
      element.replaceChildren(frame);
      let busy = false;
      window.addEventListener('message', async (event) => {
        if (event.origin !== base || event.source !== frame.contentWindow) return;
        const data = event.data || {};
        if (data.type !== 'paymux.sandbox.token' || typeof data.token !== 'string') return;
        if (busy) return;
        busy = true;
        try {
          await confirm(finish, {'payment_method_data[type]': 'card',
                                 'payment_method_data[card][token]': data.token,
                                 return_url: finish.options.returnUrl || window.location.href},
                        () => { frame.src = frame.src; });  // an empty form for another card
        } finally {
          busy = false;
        }
      });
      return {gateway: 'sandbox', frame: frame};
    }

    // A provider's SDK from the provider's origin (the URL paymux gives; no SRI: the
    // provider versions it), loaded once; ``ready()`` says whether it defined its API.
    function loadSdk(url, ready, nonce) {
      if (ready()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const tag = document.createElement('script');
        tag.src = url;
        if (nonce) {  // the merchant page's CSP nonce (PayPal's styles carry it too)
          tag.nonce = nonce;
          tag.dataset.cspNonce = nonce;
        }
        tag.onload = () => (ready() ? resolve() : reject(new Error('the SDK did not load')));
        tag.onerror = () => reject(new Error('the SDK did not load'));
        document.head.appendChild(tag);
      });
    }

    function notLoaded(finish) {
      finish.onError({message: 'The card form could not be loaded. Try again.', code: null,
                      action: 'retry'});
      return null;
    }

    // Stripe: Stripe.js's card Element, with the account's Stripe publishable key. Paying:
    // the card is tokenized at Stripe (createToken); paymux confirms with the token's card
    // only (no return_url: Stripe.js shows the challenge on this page); a 3-D Secure step is
    // Stripe.js's confirmCardPayment with Stripe's client secret, then the intent as paymux
    // reads it. Saving (a SetupIntent): Stripe.js's confirmCardSetup (saveCard below).
    async function mountStripe(element, client, finish) {
      try {
        await loadSdk(client.sdk_url, () => typeof window.Stripe === 'function',
                      finish.options.nonce);
      } catch (e) {
        return notLoaded(finish);
      }
      const stripe = window.Stripe(client.publishable_key);
      const box = document.createElement('div');
      box.className = 'paymux-stripe-card';
      const pay = document.createElement('button');
      pay.type = 'button';
      pay.className = 'paymux-pay';
      pay.textContent = finish.options.payLabel || (finish.setup ? 'Save card' : 'Pay');
      element.replaceChildren(box, pay);
      let card = stripe.elements().create('card');
      card.mount(box);
      const again = () => {  // an empty card Element for another card
        card.destroy();
        card = stripe.elements().create('card');
        card.mount(box);
      };
      // 3-D Secure: Stripe.js shows the challenge; paymux learns its outcome from Stripe's
      // webhook, so the intent is read again (every second, for 2 minutes) until it moves on.
      const failedAuthentication = () => {
        finish.onError({message: "The card's authentication failed. Try again or use " +
                          'another card.', code: 'payment_intent_authentication_failure',
                        action: 'retry'});
        again();
      };
      const authenticate = async () => {
        const result = await stripe.confirmCardPayment(client.client_secret);
        const back = result.paymentIntent || {};
        if (result.error || back.status === 'requires_payment_method' ||
            back.status === 'canceled') {  // Stripe's answer: not authenticated, not paid
          failedAuthentication();
          return;
        }
        for (let round = 0; round < 120; round++) {
          const read = await api('GET', finish.path + '?client_secret=' +
                                 encodeURIComponent(finish.secret));
          const status = read.ok ? read.body.status : null;
          if (DONE.includes(status)) {
            finish.onSuccess(read.body);
            return;
          }
          if (status === 'requires_payment_method') {
            failedAuthentication();
            return;
          }
          if (status === 'canceled') break;
          await new Promise((resolve) => window.setTimeout(resolve, 1000));
        }
        finish.onError({message: 'The payment did not go through.', code: null,
                        action: 'retry'});
        again();
      };
      // A SetupIntent: Stripe.js confirms Stripe's SetupIntent itself, once, with the card
      // Element (confirmCardSetup makes the one PaymentMethod, confirms, shows 3-D Secure).
      // paymux makes Stripe's SetupIntent when its own is confirmed without a card, and
      // answers its secret (next_action use_stripe_sdk); after Stripe.js, the SetupIntent is
      // read, and paymux asks Stripe how it ended (the browser's word is not taken).
      let waiting = (finish.intent.status === 'requires_action' &&
                     (finish.intent.next_action || {}).client_secret) || null;
      const saveCard = async () => {
        let stripeSecret = waiting;
        if (!stripeSecret) {
          const answer = await api('POST', finish.path + '/confirm',
                                   {client_secret: finish.secret});
          const done = answer.body;
          stripeSecret = answer.ok && done.status === 'requires_action' &&
            (done.next_action || {}).client_secret;
          if (!stripeSecret) {
            const error = done.error || {};
            finish.onError({message: error.user_message || error.message ||
                              'The card was not saved.',
                            code: error.code || null, action: error.action || 'retry'});
            return;
          }
        }
        const result = await stripe.confirmCardSetup(stripeSecret,
                                                     {payment_method: {card: card}});
        const read = await api('GET', finish.path + '?client_secret=' +
                               encodeURIComponent(finish.secret));
        const now = read.ok ? read.body : {};
        if (DONE.includes(now.status)) {
          finish.onSuccess(now);
          return;
        }
        waiting = now.status === 'requires_action' ? stripeSecret : null;
        const failure = now.last_setup_error || {};
        const error = result.error || {};
        if (error.code && !/authentication/.test(error.code) && failure.code) {
          finish.onError({message: failure.user_message || failure.message ||
                            'The card was not saved.',
                          code: failure.code, action: 'retry'});
          again();
          return;
        }
        failedAuthentication();
      };
      let busy = false;
      pay.addEventListener('click', async () => {
        if (busy) return;
        busy = true;
        pay.disabled = true;
        try {
          if (finish.setup) {
            await saveCard();
            return;
          }
          const result = await stripe.createToken(card);
          if (result.error || !result.token || !result.token.card) {
            const error = result.error || {};
            finish.onError({message: error.message || 'The card was not accepted.',
                            code: error.code || null, action: 'retry'});
            return;
          }
          await confirm(finish, {'payment_method_data[type]': 'card',
                                 'payment_method_data[card][token]': result.token.card.id},
                        again, authenticate);
        } finally {
          busy = false;
          pay.disabled = false;
        }
      });
      return {gateway: 'stripe', element: card};
    }

    // PayPal: the JS SDK's buttons. createOrder hands PayPal the order paymux opened with the
    // payment; the payer approves it in PayPal's window; onApprove confirms with its id (after
    // a refusal, the payer approves the same order again with another funding source).
    async function mountPayPal(element, client, finish) {
      try {
        await loadSdk(client.sdk_url, () => !!(window.paypal &&
                      typeof window.paypal.Buttons === 'function'), finish.options.nonce);
      } catch (e) {
        return notLoaded(finish);
      }
      const box = document.createElement('div');
      box.className = 'paymux-paypal-buttons';
      element.replaceChildren(box);
      let busy = false;
      const buttons = window.paypal.Buttons({
        createOrder: () => client.order_id,
        onApprove: async (data) => {
          if (busy) return;
          busy = true;
          try {
            await confirm(finish, {payment_method: data.orderID}, () => {});
          } finally {
            busy = false;
          }
        },
        onError: () => {
          finish.onError({message: 'The payment did not go through.', code: null,
                          action: 'retry'});
        },
      });
      await buttons.render(box);
      return {gateway: 'paypal', buttons: buttons};
    }

    // PayPal, saving the payer's wallet (a SetupIntent): the JS SDK's buttons, vault flow.
    // createVaultSetupToken confirms the SetupIntent (with this page as the return_url PayPal
    // requires), for which paymux has PayPal make a setup token; the payer approves it in
    // PayPal's window (again, the same one, after a cancel); onApprove reads the SetupIntent,
    // which paymux settles by asking PayPal: the approved setup token becomes a payment
    // token, the customer's saved PayPal payment method. Mounted again on a page reloaded
    // mid setup (the SetupIntent waits for the payer's approval: requires_action), the
    // buttons hand PayPal the setup token paymux already made (the intent's next_action), as
    // a confirm would be refused now.
    async function mountPayPalVault(element, client, intent, finish) {
      try {
        await loadSdk(client.sdk_url, () => !!(window.paypal &&
                      typeof window.paypal.Buttons === 'function'), finish.options.nonce);
      } catch (e) {
        return notLoaded(finish);
      }
      const box = document.createElement('div');
      box.className = 'paymux-paypal-buttons';
      element.replaceChildren(box);
      const waiting = intent.status === 'requires_action' && intent.next_action;
      let setupToken = (waiting && intent.next_action.paypal_setup_token) || null;
      const notSaved = (error) => finish.onError({
        message: error.user_message || error.message || 'PayPal was not saved. Try again.',
        code: error.code || null, action: error.action || 'retry'});
      const buttons = window.paypal.Buttons({
        createVaultSetupToken: async () => {
          if (setupToken) return setupToken;
          const answer = await api('POST', finish.path + '/confirm', {
            client_secret: finish.secret,
            return_url: finish.options.returnUrl || window.location.href});
          const next = (answer.ok && answer.body.next_action) || {};
          if (!next.paypal_setup_token) {
            notSaved(answer.body.error || {});
            throw new Error('no setup token');
          }
          setupToken = next.paypal_setup_token;
          return setupToken;
        },
        onApprove: async () => {
          const read = await api('GET', finish.path + '?client_secret=' +
                                 encodeURIComponent(finish.secret));
          if (read.ok && DONE.includes(read.body.status)) {
            finish.onSuccess(read.body);
            return;
          }
          notSaved(read.body.error || read.body.last_setup_error || {});
        },
        onError: () => notSaved({}),
      });
      await buttons.render(box);
      return {gateway: 'paypal', buttons: buttons};
    }

    // The amount in major units, as a decimal string ("25.00"; "1500" in JPY), for
    // verifyBuyer: integer arithmetic on the minor units, the currency's digits from Intl.
    function decimalAmount(amount, currency) {
      const digits = new Intl.NumberFormat('en', {style: 'currency', currency: currency})
        .resolvedOptions().maximumFractionDigits;
      const text = String(amount).padStart(digits + 1, '0');
      return digits ? text.slice(0, -digits) + '.' + text.slice(-digits) : text;
    }

    // Square: the Web Payments SDK's card form tokenizes at Square; verifyBuyer (SCA, 3-D
    // Secure where the issuer asks) gives the verification token sent with the card's token.
    async function mountSquare(element, client, intent, finish) {
      try {
        await loadSdk(client.sdk_url, () => !!(window.Square &&
                      typeof window.Square.payments === 'function'), finish.options.nonce);
      } catch (e) {
        return notLoaded(finish);
      }
      const payments = window.Square.payments(client.application_id, client.location_id);
      const box = document.createElement('div');
      box.className = 'paymux-square-card';
      box.id = 'paymux-square-card-' + Math.random().toString(36).slice(2);
      const pay = document.createElement('button');
      pay.type = 'button';
      pay.className = 'paymux-pay';
      pay.textContent = finish.options.payLabel || (finish.setup ? 'Save card' : 'Pay');
      pay.disabled = true;  // until the card form is attached and the handler is in place
      element.replaceChildren(box, pay);
      let card = await payments.card();
      await card.attach('#' + box.id);
      const again = async () => {  // an empty card form for another card
        await card.destroy();
        card = await payments.card();
        await card.attach('#' + box.id);
      };
      // Saving a card (a SetupIntent): intent STORE, nothing charged, so no amount.
      const details = finish.setup ? {intent: 'STORE', billingContact: {}}
        : {amount: decimalAmount(intent.amount, intent.currency),
           currencyCode: String(intent.currency).toUpperCase(), intent: 'CHARGE',
           billingContact: {}};
      const refused = () => finish.onError({message: 'The card was not accepted.',
                                            code: null, action: 'retry'});
      let busy = false;
      pay.addEventListener('click', async () => {
        if (busy) return;
        busy = true;
        pay.disabled = true;
        try {
          const result = await card.tokenize();
          if (!result || result.status !== 'OK' || !result.token) {
            refused();
            return;
          }
          let verified = null;
          try {
            verified = await payments.verifyBuyer(result.token, details);
          } catch (e) {
            verified = null;
          }
          if (!verified || !verified.token) {
            finish.onError({message: "The card's authentication failed. Try again or use " +
                              'another card.', code: 'payment_intent_authentication_failure',
                            action: 'retry'});
            await again();
            return;
          }
          await confirm(finish, {'payment_method_data[type]': 'card',
                                 'payment_method_data[card][token]': result.token,
                                 verification_token: verified.token}, again);
        } finally {
          busy = false;
          pay.disabled = false;
        }
      });
      pay.disabled = false;
      return {gateway: 'square', element: card};
    }

    return {mount: mount};
  }

  window.Paymux = Paymux;
})();
