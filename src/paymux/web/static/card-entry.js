// The card-entry component of paymux's pages (the hosted invoice page and the hosted
// checkout page). The card is tokenized by the gateway's own code: the sandbox's hosted form
// in an iframe (served by paymux under /sandbox like a provider's origin), which posts the
// token to this page at this page's exact origin; or Stripe.js's card Element
// (#stripe-card), whose createToken goes to Stripe (in setup mode, confirmCardSetup with the
// secret of Stripe's SetupIntent: Stripe.js saves the card itself); or PayPal's JS SDK buttons
// (#paypal-buttons: createOrder asks this page's data-order-url for the payment's order, the
// payer approves it in PayPal's window, onApprove pays with the order id; beside them, on the
// checkout page, PayPal's card fields #paypal-card-fields, whose createOrder asks
// data-card-order-url for a card order and whose submit() runs 3-D Secure at PayPal); or Square's Web
// Payments SDK card form (#square-card: tokenize at Square, then verifyBuyer for SCA, with
// intent STORE where the page saves the card). This
// page sends only the token (its card's id, for Stripe; the order id, for PayPal; with
// Square's verification token) to its own pay URL (the section's data-pay-url), then
// follows what the answer says:
// - redirect_url: 3-D Secure (the challenge returns to the page) or, done, the success page;
// - status "paid": reload to show it paid (the invoice page); "complete": another tab paid;
// - status "processing": ask the section's data-status-url until the outcome is known;
// - a decline: the taxonomy's user_message, and its action (retry, use another method,
//   update the card): the card form is reloaded empty and focused for the next try.
// Served with Subresource Integrity where the page sets it (checkout); CSP: no inline script.
'use strict';
(function () {
  const section = document.querySelector('[data-pay-url]');
  if (!section) return;
  const status = document.getElementById('pay-status');
  const frame = document.getElementById('card-frame');
  const text = (name, fallback) => section.dataset[name] || fallback;
  let busy = false;
  // Stripe.js's 3-D Secure (where the page pays or saves through Stripe): the challenge
  // for the secret paymux answers with, Stripe.js's answer back.
  let authenticate = null;
  let onFailed = null;  // the Stripe variant clears its Element for another card
  function failed(message, action) {
    status.textContent = message;
    status.dataset.state = 'failed';
    status.dataset.action = action || '';
    section.classList.add('has-error');
    if (frame && action !== 'retry_later') {
      frame.src = frame.src;  // an empty form for another card
    }
    if (onFailed) onFailed();
    status.focus();
  }
  async function pay(token, verification) {
    if (busy) return;
    busy = true;
    section.classList.remove('has-error');
    status.textContent = text('msgPaying', 'Paying…');
    status.dataset.state = 'paying';
    status.dataset.action = '';
    try {
      const response = await fetch(section.dataset.payUrl, {
        method: 'POST', credentials: 'same-origin',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify(verification
          ? {payment_method: token, verification_token: verification}
          : {payment_method: token}),
      });
      const answer = await response.json();
      if (answer.redirect_url) {
        status.textContent = text('msgRedirecting', 'Redirecting…');
        status.dataset.state = 'redirecting';
        window.location.assign(answer.redirect_url);
        return;
      }
      if (response.ok && answer.status === 'requires_action' && answer.return_url) {
        // Stripe's 3-D Secure: Stripe.js shows the challenge, then back to the page, which
        // asks Stripe for the outcome (and moves on, or says the authentication failed).
        status.textContent = text('msgRedirecting', 'Redirecting…');
        status.dataset.state = 'authenticating';
        let back = answer.return_url;
        if (authenticate && answer.client_secret) {
          const result = await authenticate(answer.client_secret);
          const intent = result.paymentIntent || result.setupIntent || {};
          if (result.error || intent.status === 'requires_payment_method' ||
              intent.status === 'canceled') back += '&outcome=failed';
        }
        window.location.assign(back);
        return;
      }
      if (response.ok && answer.status === 'processing' && section.dataset.statusUrl) {
        status.textContent = text('msgProcessing', 'Processing…');
        status.dataset.state = 'processing';
        watch(0);
        return;
      }
      if (response.ok && answer.status === 'complete') {  // a second tab paid it
        status.dataset.state = 'paid';
        window.location.reload();
        return;
      }
      if (response.ok && answer.status === 'paid') {
        status.dataset.state = 'paid';
        window.location.reload();
        return;
      }
      failed(answer.message || text('msgFailed', 'The payment did not go through.'),
        answer.action);
    } catch (e) {
      failed(text('msgNetwork', 'The payment could not be sent. Try again.'), 'retry');
    }
    busy = false;
  }
  // A payment still processing at the gateway: ask where the session stands (every 2 s,
  // for 2 minutes), then go where it says; the page shows the outcome when it is known.
  async function watch(round) {
    try {
      const response = await fetch(section.dataset.statusUrl, {credentials: 'same-origin'});
      const answer = await response.json();
      if (answer.redirect_url) {
        window.location.assign(answer.redirect_url);
        return;
      }
      if (answer.status === 'complete' || answer.status === 'expired') {
        window.location.reload();
        return;
      }
      if (answer.status === 'open') {
        busy = false;
        failed(text('msgFailed', 'The payment did not go through.'), 'retry');
        return;
      }
    } catch (e) { /* asked again below */ }
    if (round < 60) {
      window.setTimeout(() => watch(round + 1), 2000);
    } else {
      busy = false;
      status.textContent = text('msgProcessing', 'Processing…');
    }
  }
  // The sandbox's hosted form (framed from this origin) posts its token here.
  window.addEventListener('message', (event) => {
    if (event.origin !== window.location.origin) return;
    const data = event.data || {};
    if (data.type !== 'paymux.sandbox.token' || typeof data.token !== 'string') return;
    pay(data.token);
  });
  // Stripe: Stripe.js's card Element tokenizes at Stripe; the token is paid with as above.
  const stripeCard = document.getElementById('stripe-card');
  if (stripeCard && typeof window.Stripe === 'function') {
    const stripe = window.Stripe(stripeCard.dataset.publishableKey);
    let card = stripe.elements().create('card');
    card.mount(stripeCard);
    // Paying: 3-D Secure is confirmCardPayment with the PaymentIntent's secret.
    authenticate = (secret) => stripe.confirmCardPayment(secret);
    onFailed = () => {
      card.destroy();
      card = stripe.elements().create('card');
      card.mount(stripeCard);
    };
    const setupUrl = stripeCard.dataset.setup === '1' && stripeCard.dataset.setupUrl;
    const post = async (url) => {
      const response = await fetch(url, {
        method: 'POST', credentials: 'same-origin',
        headers: {'content-type': 'application/json'}, body: '{}',
      });
      return {ok: response.ok, answer: await response.json()};
    };
    // Saving the card (setup mode): Stripe.js confirms Stripe's SetupIntent itself, once,
    // with the card Element (confirmCardSetup makes the PaymentMethod, confirms, shows 3-D
    // Secure); the page asks its stripe-setup URL for the secret, then its /outcome, where
    // paymux reads what Stripe says. The message of a failure: the taxonomy's, from paymux's
    // answer; Stripe.js's word only tells a failed challenge from a decline.
    const save = async () => {
      busy = true;
      section.classList.remove('has-error');
      status.textContent = '';
      status.dataset.state = 'authenticating';
      status.dataset.action = '';
      try {
        const asked = await post(setupUrl);
        if (asked.answer.redirect_url) {
          window.location.assign(asked.answer.redirect_url);
          return;
        }
        if (!asked.ok || !asked.answer.client_secret) {
          failed(asked.answer.message || text('msgFailed', 'The card was not saved.'),
            asked.answer.action);
          busy = false;
          return;
        }
        const result = await stripe.confirmCardSetup(asked.answer.client_secret,
          {payment_method: {card: card}});
        const settled = await post(setupUrl + '/outcome');
        if (settled.answer.redirect_url) {
          window.location.assign(settled.answer.redirect_url);
          return;
        }
        if (settled.ok && settled.answer.status === 'complete') {
          window.location.reload();
          return;
        }
        const error = result.error || {};
        const declined = settled.answer.code && error.code &&
          !/authentication/.test(error.code);
        failed(declined || !result.error ? (settled.answer.message ||
          text('msgFailed', 'The card was not saved.'))
          : text('msgAuthFailed', "The card's authentication failed."), 'retry');
      } catch (e) {
        failed(text('msgNetwork', 'The card could not be sent. Try again.'), 'retry');
      }
      busy = false;
    };
    // Paying: Stripe.js tokenizes at Stripe; the token's card (card_..., which Stripe takes
    // as a payment method) is what paymux confirms with, as with the sandbox's token.
    const stripePay = document.getElementById('stripe-pay');
    stripePay.addEventListener('click', async () => {
      if (busy) return;
      if (setupUrl) {
        save();
        return;
      }
      const result = await stripe.createToken(card);
      if (result.error || !result.token || !result.token.card) {
        const error = result.error || {};
        failed(error.message || text('msgFailed', 'The payment did not go through.'), 'retry');
        return;
      }
      pay(result.token.card.id);
    });
    stripePay.disabled = false;  // the page's button: disabled until this handler is in place
  }
  // PayPal: the JS SDK's buttons. createOrder hands PayPal the order paymux opened with the
  // payment; the payer approves it in PayPal's window; onApprove pays with the order's id.
  // Saving the payer's wallet (setup mode, data-setup-token-url): createVaultSetupToken hands
  // PayPal the setup token paymux made; onApprove sends it to the pay URL, which saves it.
  const paypalButtons = document.getElementById('paypal-buttons');
  if (paypalButtons && window.paypal && typeof window.paypal.Buttons === 'function') {
    const ask = async (url, field) => {
      const response = await fetch(url, {
        method: 'POST', credentials: 'same-origin',
        headers: {'content-type': 'application/json'}, body: '{}',
      });
      const answer = await response.json();
      if (!response.ok || !answer[field]) {
        failed(answer.message || text('msgFailed', 'The payment did not go through.'),
          answer.action);
        throw new Error('no ' + field);
      }
      return answer[field];
    };
    const setupUrl = paypalButtons.dataset.setupTokenUrl;
    const flow = setupUrl ? {
      createVaultSetupToken: () => ask(setupUrl, 'setup_token'),
      onApprove: (data) => pay(data.vaultSetupToken),
    } : {
      createOrder: () => ask(paypalButtons.dataset.orderUrl, 'order_id'),
      onApprove: (data) => pay(data.orderID),
    };
    window.paypal.Buttons(Object.assign(flow, {
      onError: () => {
        if (!busy) failed(text('msgFailed', 'The payment did not go through.'), 'retry');
      },
    })).render(paypalButtons);
    // A card, in PayPal's card fields (#paypal-card-fields, where the payment takes cards):
    // PayPal's frames hold the card; createOrder asks this page's data-card-order-url for
    // an order of paymux's (3-D Secure as the payment asks); submit() sends the card to
    // PayPal, which runs 3-D Secure, then onApprove pays with the order's id (paymux reads
    // the authentication result before it captures).
    const cardBox = document.getElementById('paypal-card-fields');
    if (cardBox && !setupUrl && typeof window.paypal.CardFields === 'function') {
      const cardFields = window.paypal.CardFields({
        createOrder: () => ask(cardBox.dataset.cardOrderUrl, 'order_id'),
        onApprove: (data) => pay(data.orderID),
        onError: () => {
          if (!busy && status.dataset.state !== 'failed') {
            failed(text('msgFailed', 'The payment did not go through.'), 'retry');
          }
        },
      });
      if (cardFields.isEligible()) {
        cardFields.NameField().render('#paypal-card-name');
        cardFields.NumberField().render('#paypal-card-number');
        cardFields.ExpiryField().render('#paypal-card-expiry');
        cardFields.CVVField().render('#paypal-card-cvv');
        cardBox.hidden = false;
        let submitting = false;  // one submit at a time (a double click sends one card)
        const cardPay = document.getElementById('paypal-card-pay');
        cardPay.addEventListener('click', async () => {
          if (busy || submitting) return;
          submitting = true;
          section.classList.remove('has-error');
          status.dataset.state = '';
          try {
            await cardFields.submit();
          } catch (e) {
            // A refusal paymux worded (createOrder's) stays; else the page's own words.
            if (!busy && status.dataset.state !== 'failed') {
              failed(text('msgFailed', 'The payment did not go through.'), 'retry');
            }
          }
          submitting = false;
        });
        cardPay.disabled = false;
      }
    }
  }
  // Square: the Web Payments SDK's card form tokenizes at Square; verifyBuyer (SCA, 3-D
  // Secure where the issuer asks) gives the verification token sent with the card's token.
  const squareCard = document.getElementById('square-card');
  if (squareCard && window.Square && typeof window.Square.payments === 'function') {
    (async () => {
      const d = squareCard.dataset;
      const payments = window.Square.payments(d.applicationId, d.locationId);
      let card = await payments.card();
      await card.attach('#square-card');
      onFailed = async () => {
        await card.destroy();
        card = await payments.card();
        await card.attach('#square-card');
      };
      // The button stays disabled until the card form is attached and this handler is in
      // place: a click while Square's frame loads did nothing.
      const squarePay = document.getElementById('square-pay');
      squarePay.addEventListener('click', async () => {
        if (busy) return;
        const result = await card.tokenize();
        if (!result || result.status !== 'OK' || !result.token) {
          failed(text('msgFailed', 'The payment did not go through.'), 'retry');
          return;
        }
        let verification = null;
        // Saving a card (setup mode): intent STORE, nothing charged, so no amount.
        const details = d.intent === 'STORE' ? {intent: 'STORE', billingContact: {}}
          : {amount: d.amount, currencyCode: d.currency, intent: 'CHARGE', billingContact: {}};
        try {
          const verified = await payments.verifyBuyer(result.token, details);
          verification = verified && verified.token;
        } catch (e) {
          failed(text('msgFailed', 'The payment did not go through.'), 'retry');
          return;
        }
        if (!verification) {
          failed(text('msgFailed', 'The payment did not go through.'), 'retry');
          return;
        }
        pay(result.token, verification);
      });
      squarePay.disabled = false;
    })();
  }
})();
