// The official stripe-node SDK driven against paymux, configured by its host, port and
// protocol only. Run by tests/e2e/test_stripe_node.py:
//
//   PAYMUX_URL=http://127.0.0.1:8000 PAYMUX_API_KEY=sk_test_... node tests/sdk/node/flows.mjs
//
// Each check prints one JSON line, {"check": name, "ok": true, ...what it saw}; the first
// failure prints {"check": name, "ok": false, "error": message} and exits 1. Expectations are
// Stripe's documented behaviour, stated literally. Talks to PAYMUX_URL only (127.0.0.1 in the
// tests), with no retries, so nothing a retry would hide is hidden.

import Stripe from 'stripe';

const baseUrl = process.env.PAYMUX_URL;
const apiKey = process.env.PAYMUX_API_KEY;
if (!baseUrl || !apiKey) {
  console.error('flows.mjs: set PAYMUX_URL (http://127.0.0.1:PORT) and PAYMUX_API_KEY');
  process.exit(2);
}
const url = new URL(baseUrl);

function client(key) {
  return new Stripe(key, {
    host: url.hostname,
    port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    protocol: url.protocol.replace(':', ''),
    maxNetworkRetries: 0,
    timeout: 20000,
    telemetry: false,
  });
}

const stripe = client(apiKey);

class CheckFailed extends Error {}

function expect(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function expectEqual(actual, expected, what) {
  expect(
    actual === expected,
    `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
  );
}

// The error a call raises (the check fails if it resolves instead).
async function raised(promise, what) {
  try {
    const value = await promise;
    throw new CheckFailed(`${what}: expected an error, got ${JSON.stringify(value).slice(0, 300)}`);
  } catch (err) {
    if (err instanceof CheckFailed) throw err;
    return err;
  }
}

function describeError(err) {
  if (err instanceof Stripe.errors.StripeError) {
    const facts = [
      err.statusCode && `HTTP ${err.statusCode}`,
      err.code && `code ${err.code}`,
      err.param && `param ${err.param}`,
      err.requestId && `request ${err.requestId}`,
      err.detail && err.detail.message && `detail: ${err.detail.message}`,
    ].filter(Boolean);
    return `${err.type} (${facts.join(', ')}): ${err.message}`;
  }
  return err && err.stack ? err.stack : String(err);
}

const checks = [];
function check(name, fn) {
  checks.push([name, fn]);
}

async function paid(amount = 2000, extra = {}) {
  return stripe.paymentIntents.create({
    amount, currency: 'usd', payment_method: 'pm_card_visa', confirm: true, ...extra,
  });
}

check('create_and_confirm_payment_intent', async () => {
  const created = await stripe.paymentIntents.create({
    amount: 2000, currency: 'usd', metadata: { order_id: '1001' },
  });
  expectEqual(created.object, 'payment_intent', 'object');
  expect(created.id.startsWith('pi_'), `id ${created.id} starts with pi_`);
  expectEqual(created.amount, 2000, 'amount');
  expectEqual(created.currency, 'usd', 'currency');
  expectEqual(created.status, 'requires_payment_method', 'status after create');
  expectEqual(created.metadata.order_id, '1001', 'metadata.order_id');
  expect(created.lastResponse.requestId, 'lastResponse.requestId is set');
  const confirmed = await stripe.paymentIntents.confirm(created.id, {
    payment_method: 'pm_card_visa',
  });
  expectEqual(confirmed.id, created.id, 'confirmed id');
  expectEqual(confirmed.status, 'succeeded', 'status after confirm');
  expectEqual(confirmed.amount_received, 2000, 'amount_received');
  expect(
    typeof confirmed.latest_charge === 'string' && confirmed.latest_charge.startsWith('ch_'),
    `latest_charge is a ch_ id, got ${JSON.stringify(confirmed.latest_charge)}`,
  );
  return { id: confirmed.id, status: confirmed.status, latest_charge: confirmed.latest_charge };
});

check('retrieve_with_expand_latest_charge', async () => {
  const intent = await paid(2500);
  const got = await stripe.paymentIntents.retrieve(intent.id, { expand: ['latest_charge'] });
  expectEqual(got.id, intent.id, 'id');
  const charge = got.latest_charge;
  expect(charge && typeof charge === 'object', `latest_charge expanded to an object, got ${JSON.stringify(charge)}`);
  expectEqual(charge.object, 'charge', 'latest_charge.object');
  expectEqual(charge.id, intent.latest_charge, 'latest_charge.id');
  expectEqual(charge.amount, 2500, 'latest_charge.amount');
  expectEqual(charge.status, 'succeeded', 'latest_charge.status');
  expectEqual(charge.paid, true, 'latest_charge.paid');
  expectEqual(charge.captured, true, 'latest_charge.captured');
  expectEqual(charge.payment_intent, intent.id, 'latest_charge.payment_intent');
  return { id: got.id, charge: charge.id, charge_status: charge.status };
});

check('list_with_auto_paging_over_pages', async () => {
  const customer = await stripe.customers.create({ name: 'Pager' });
  const made = [];
  for (const amount of [1100, 1200, 1300, 1400, 1500]) {
    made.push((await stripe.paymentIntents.create({ amount, currency: 'usd', customer: customer.id })).id);
  }
  const firstPage = await stripe.paymentIntents.list({ customer: customer.id, limit: 2 });
  expectEqual(firstPage.object, 'list', 'list object');
  expectEqual(firstPage.data.length, 2, 'first page length');
  expectEqual(firstPage.has_more, true, 'first page has_more');
  const seen = [];
  await stripe.paymentIntents.list({ customer: customer.id, limit: 2 }).autoPagingEach((pi) => {
    seen.push(pi.id);
  });
  // Newest first, every one once, over 3 pages of 2.
  expectEqual(JSON.stringify(seen), JSON.stringify([...made].reverse()), 'auto-paged ids');
  const asArray = await stripe.paymentIntents
    .list({ customer: customer.id, limit: 2 })
    .autoPagingToArray({ limit: 10 });
  expectEqual(asArray.length, 5, 'autoPagingToArray length');
  return { pages_of: 2, seen: seen.length };
});

check('update_metadata', async () => {
  const intent = await stripe.paymentIntents.create({
    amount: 2000, currency: 'usd', metadata: { a: '1', b: '2' },
  });
  const updated = await stripe.paymentIntents.update(intent.id, {
    metadata: { a: '', c: '3' }, description: 'Order 1001',
  });
  expectEqual(JSON.stringify(updated.metadata), JSON.stringify({ b: '2', c: '3' }), 'metadata');
  expectEqual(updated.description, 'Order 1001', 'description');
  const succeeded = await paid(2000, { metadata: { state: 'new' } });
  const later = await stripe.paymentIntents.update(succeeded.id, { metadata: { shipped: 'yes' } });
  expectEqual(later.status, 'succeeded', 'status of an updated succeeded intent');
  expectEqual(JSON.stringify(later.metadata), JSON.stringify({ state: 'new', shipped: 'yes' }), 'metadata of a succeeded intent');
  return { id: updated.id, metadata: updated.metadata };
});

check('manual_capture_partial', async () => {
  const intent = await stripe.paymentIntents.create({
    amount: 2000, currency: 'usd', capture_method: 'manual',
  });
  expectEqual(intent.capture_method, 'manual', 'capture_method');
  const confirmed = await stripe.paymentIntents.confirm(intent.id, { payment_method: 'pm_card_visa' });
  expectEqual(confirmed.status, 'requires_capture', 'status after confirm');
  expectEqual(confirmed.amount_capturable, 2000, 'amount_capturable');
  const captured = await stripe.paymentIntents.capture(intent.id, { amount_to_capture: 1500 });
  expectEqual(captured.status, 'succeeded', 'status after capture');
  expectEqual(captured.amount_received, 1500, 'amount_received');
  expectEqual(captured.amount_capturable, 0, 'amount_capturable after capture');
  return { id: captured.id, status: captured.status, amount_received: captured.amount_received };
});

check('cancel', async () => {
  const intent = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd' });
  const canceled = await stripe.paymentIntents.cancel(intent.id, {
    cancellation_reason: 'requested_by_customer',
  });
  expectEqual(canceled.status, 'canceled', 'status');
  expectEqual(canceled.cancellation_reason, 'requested_by_customer', 'cancellation_reason');
  expect(typeof canceled.canceled_at === 'number', `canceled_at is a timestamp, got ${canceled.canceled_at}`);
  return { id: canceled.id, status: canceled.status };
});

check('refunds_partial_then_full_and_list_by_payment_intent', async () => {
  const intent = await paid(2000);
  const partial = await stripe.refunds.create({ payment_intent: intent.id, amount: 500 });
  expectEqual(partial.object, 'refund', 'object');
  expect(partial.id.startsWith('re_'), `refund id ${partial.id} starts with re_`);
  expectEqual(partial.amount, 500, 'partial amount');
  expectEqual(partial.payment_intent, intent.id, 'payment_intent');
  expectEqual(partial.status, 'succeeded', 'partial status');
  const rest = await stripe.refunds.create({ payment_intent: intent.id });
  expectEqual(rest.amount, 1500, 'the rest refunded with no amount');
  expectEqual(rest.status, 'succeeded', 'rest status');
  const other = await paid(700);
  const full = await stripe.refunds.create({ payment_intent: other.id, reason: 'requested_by_customer' });
  expectEqual(full.amount, 700, 'full refund amount');
  expectEqual(full.reason, 'requested_by_customer', 'reason');
  const listed = await stripe.refunds.list({ payment_intent: intent.id });
  expectEqual(JSON.stringify(listed.data.map((r) => r.id)), JSON.stringify([rest.id, partial.id]), 'refunds of the intent, newest first');
  const over = await raised(stripe.refunds.create({ payment_intent: intent.id, amount: 1 }), 'refunding a fully refunded intent');
  expect(over instanceof Stripe.errors.StripeInvalidRequestError, `a StripeInvalidRequestError, got ${describeError(over)}`);
  return { partial: partial.id, rest: rest.id, full: full.id, listed: listed.data.length };
});

check('customers_create_update_list_delete', async () => {
  const email = `jo.${Date.now()}@example.com`;
  const created = await stripe.customers.create({ email, name: 'Jo', metadata: { tier: 'gold' } });
  expectEqual(created.object, 'customer', 'object');
  expect(created.id.startsWith('cus_'), `id ${created.id} starts with cus_`);
  expectEqual(created.email, email, 'email');
  const updated = await stripe.customers.update(created.id, { name: 'Jo Doe', metadata: { tier: '' } });
  expectEqual(updated.name, 'Jo Doe', 'name');
  expectEqual(JSON.stringify(updated.metadata), '{}', 'metadata after unset');
  const byEmail = await stripe.customers.list({ email, limit: 10 });
  expectEqual(JSON.stringify(byEmail.data.map((c) => c.id)), JSON.stringify([created.id]), 'list by email');
  const fetched = await stripe.customers.retrieve(created.id);
  expectEqual(fetched.name, 'Jo Doe', 'retrieved name');
  const deleted = await stripe.customers.del(created.id);
  expectEqual(deleted.id, created.id, 'deleted id');
  expectEqual(deleted.deleted, true, 'deleted');
  return { id: created.id, deleted: deleted.deleted };
});

check('payment_method_attach_detach', async () => {
  const customer = await stripe.customers.create({ name: 'Card holder' });
  const attached = await stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
  expectEqual(attached.object, 'payment_method', 'object');
  expect(attached.id.startsWith('pm_'), `id ${attached.id} starts with pm_`);
  expectEqual(attached.customer, customer.id, 'customer after attach');
  expectEqual(attached.type, 'card', 'type');
  expectEqual(attached.card.brand, 'visa', 'card.brand');
  expectEqual(attached.card.last4, '4242', 'card.last4');
  const listed = await stripe.customers.listPaymentMethods(customer.id);
  expectEqual(JSON.stringify(listed.data.map((pm) => pm.id)), JSON.stringify([attached.id]), 'customer payment methods');
  const detached = await stripe.paymentMethods.detach(attached.id);
  expectEqual(detached.id, attached.id, 'detached id');
  expectEqual(detached.customer, null, 'customer after detach');
  return { id: attached.id, customer: customer.id };
});

check('events_list', async () => {
  const intent = await paid(3100);
  const events = await stripe.events.list({ type: 'payment_intent.succeeded', limit: 100 });
  expectEqual(events.object, 'list', 'object');
  const mine = events.data.filter((e) => e.data.object.id === intent.id);
  expectEqual(mine.length, 1, 'payment_intent.succeeded events of the intent');
  expectEqual(mine[0].object, 'event', 'event object');
  expectEqual(mine[0].type, 'payment_intent.succeeded', 'event type');
  expectEqual(mine[0].data.object.amount, 3100, 'event data.object.amount');
  const again = await stripe.events.retrieve(mine[0].id);
  expectEqual(again.id, mine[0].id, 'retrieved event id');
  return { event: mine[0].id, type: mine[0].type };
});

check('idempotency_key_replay', async () => {
  const key = `node-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const params = { amount: 4200, currency: 'usd', metadata: { attempt: '1' } };
  const first = await stripe.paymentIntents.create(params, { idempotencyKey: key });
  const second = await stripe.paymentIntents.create(params, { idempotencyKey: key });
  expectEqual(second.id, first.id, 'replayed id');
  expectEqual(second.amount, 4200, 'replayed amount');
  const clash = await raised(
    stripe.paymentIntents.create({ ...params, amount: 4300 }, { idempotencyKey: key }),
    'same key, other parameters',
  );
  expect(clash instanceof Stripe.errors.StripeIdempotencyError, `a StripeIdempotencyError, got ${describeError(clash)}`);
  return { id: first.id, replayed: second.id === first.id };
});

check('setup_future_usage_saves_the_card_with_the_payment', async () => {
  const customer = await stripe.customers.create({ email: 'node-saver@example.com' });
  const intent = await paid(1200, { customer: customer.id, setup_future_usage: 'off_session' });
  expectEqual(intent.status, 'succeeded', 'status');
  // Saved before confirm answers, as on Stripe: no waiting.
  const pm = await stripe.paymentMethods.retrieve(intent.payment_method);
  expectEqual(pm.customer, customer.id, 'payment_method.customer right after confirm');
  const again = await stripe.paymentIntents.create({
    amount: 800, currency: 'usd', customer: customer.id, payment_method: pm.id,
    off_session: true, confirm: true,
  });
  expectEqual(again.status, 'succeeded', 'off-session payment with the saved card');
  return { customer: pm.customer === customer.id, off_session: again.status };
});

check('setup_intent_saves_a_card_for_off_session_payments', async () => {
  const customer = await stripe.customers.create({ email: 'node-seti@example.com' });
  const seti = await stripe.setupIntents.create({ customer: customer.id, usage: 'off_session', metadata: { plan: 'pro' } });
  expectEqual(seti.object, 'setup_intent', 'object');
  expectEqual(seti.status, 'requires_payment_method', 'status after create');
  expect(seti.client_secret && seti.client_secret.startsWith(`${seti.id}_secret_`), 'client_secret');
  const confirmed = await stripe.setupIntents.confirm(seti.id, { payment_method: 'pm_card_visa' });
  expectEqual(confirmed.status, 'succeeded', 'status after confirm');
  const pm = await stripe.paymentMethods.retrieve(confirmed.payment_method);
  expectEqual(pm.customer, customer.id, 'payment_method.customer');
  expectEqual(pm.card.last4, '4242', 'card.last4');
  const updated = await stripe.customers.update(customer.id, { invoice_settings: { default_payment_method: pm.id } });
  expectEqual(updated.invoice_settings.default_payment_method, pm.id, 'invoice_settings.default_payment_method');
  const listed = await stripe.setupIntents.list({ customer: customer.id });
  expectEqual(listed.data.map((s) => s.id).join(), seti.id, 'setup intents of the customer');
  const declined = await raised(
    stripe.setupIntents.confirm(
      (await stripe.setupIntents.create({ customer: customer.id })).id,
      { payment_method: 'pm_card_chargeDeclined' },
    ),
    'confirming with a declining card',
  );
  expect(declined instanceof Stripe.errors.StripeCardError, `a StripeCardError, got ${describeError(declined)}`);
  return { status: confirmed.status, last4: pm.card.last4, declined: declined.code };
});

check('subscription_create_update_cancel_and_invoices_auto_paging', async () => {
  const customer = await stripe.customers.create({ email: 'node-sub@example.com' });
  const pm = await stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
  const product = await stripe.products.create({ name: 'Node plan' });
  const price = await stripe.prices.create({
    product: product.id, unit_amount: 1500, currency: 'usd', recurring: { interval: 'month' },
  });
  let sub = await stripe.subscriptions.create({
    customer: customer.id, items: [{ price: price.id, quantity: 2 }],
    default_payment_method: pm.id, metadata: { plan: 'team' },
  });
  expectEqual(sub.object, 'subscription', 'object');
  expectEqual(sub.status, 'active', 'status');
  expectEqual(sub.items.data[0].quantity, 2, 'items[0].quantity');
  const invoice = await stripe.invoices.retrieve(sub.latest_invoice);
  expectEqual(invoice.status, 'paid', 'first invoice status');
  expectEqual(invoice.amount_paid, 3000, 'first invoice amount_paid');
  sub = await stripe.subscriptions.update(sub.id, { cancel_at_period_end: true, metadata: { plan: 'team2' } });
  expectEqual(sub.cancel_at_period_end, true, 'cancel_at_period_end');
  expect(typeof sub.cancel_at === 'number', 'cancel_at is set');
  expectEqual(sub.metadata.plan, 'team2', 'metadata.plan');
  const invoices = await stripe.invoices.list({ customer: customer.id, limit: 1 }).autoPagingToArray({ limit: 10 });
  expectEqual(invoices.map((i) => i.id).join(), invoice.id, 'the customer\'s invoices, auto-paged');
  const canceled = await stripe.subscriptions.cancel(sub.id);
  expectEqual(canceled.status, 'canceled', 'status after cancel');
  return { status: canceled.status, amount_paid: invoice.amount_paid, invoices: invoices.length };
});

check('charges_retrieve_list_update_with_shipping', async () => {
  const shipping = { name: 'Jo Node', address: { line1: '1 Main St', city: 'Springfield', postal_code: '62701', country: 'US' } };
  const intent = await paid(1900, { shipping });
  const charge = await stripe.charges.retrieve(intent.latest_charge);
  expectEqual(charge.object, 'charge', 'object');
  expectEqual(charge.payment_intent, intent.id, 'payment_intent');
  expectEqual(charge.shipping && charge.shipping.name, 'Jo Node', 'shipping.name (the intent\'s)');
  const listed = await stripe.charges.list({ payment_intent: intent.id });
  expectEqual(listed.data.map((c) => c.id).join(), charge.id, 'charges of the intent');
  const updated = await stripe.charges.update(charge.id, {
    metadata: { parcel: 'p-1' }, shipping: { ...shipping, tracking_number: '1Z-NODE' },
  });
  expectEqual(updated.metadata.parcel, 'p-1', 'metadata.parcel');
  expectEqual(updated.shipping.tracking_number, '1Z-NODE', 'shipping.tracking_number');
  return { charge: charge.id, tracking: updated.shipping.tracking_number };
});

check('refunds_retrieve_update_and_disputes_list', async () => {
  const intent = await paid(1200);
  const refund = await stripe.refunds.create({ payment_intent: intent.id, amount: 200 });
  const got = await stripe.refunds.retrieve(refund.id, { expand: ['payment_intent'] });
  expectEqual(got.payment_intent.id, intent.id, 'refund.payment_intent expanded');
  const updated = await stripe.refunds.update(refund.id, { metadata: { reason_code: 'R1' } });
  expectEqual(updated.metadata.reason_code, 'R1', 'refund metadata');
  const disputes = await stripe.disputes.list({ limit: 3 });
  expectEqual(disputes.object, 'list', 'disputes list object');
  const missing = await raised(stripe.disputes.update('dp_nosuchdispute', { metadata: { a: 'b' } }), 'updating an unknown dispute');
  expect(missing instanceof Stripe.errors.StripeInvalidRequestError, `a StripeInvalidRequestError, got ${describeError(missing)}`);
  expectEqual(missing.statusCode, 404, 'unknown dispute statusCode');
  return { refund: updated.status, disputes: disputes.data.length };
});

check('payment_methods_create_from_token_and_update', async () => {
  const pm = await stripe.paymentMethods.create({
    type: 'card', card: { token: 'tok_visa' }, billing_details: { name: 'Jo Node' },
  });
  expectEqual(pm.object, 'payment_method', 'object');
  expectEqual(pm.customer, null, 'a new payment method is detached');
  expectEqual(pm.card.last4, '4242', 'card.last4');
  const customer = await stripe.customers.create({ email: 'node-pm@example.com' });
  await stripe.paymentMethods.attach(pm.id, { customer: customer.id });
  const updated = await stripe.paymentMethods.update(pm.id, { metadata: { label: 'work' } });
  expectEqual(updated.metadata.label, 'work', 'metadata.label');
  const intent = await stripe.paymentIntents.create({
    amount: 800, currency: 'usd', confirm: true,
    payment_method_data: { type: 'card', card: { token: 'tok_mastercard' } },
  });
  expectEqual(intent.status, 'succeeded', 'a payment with payment_method_data');
  return { last4: pm.card.last4, pmd: intent.status };
});

check('setup_intent_retrieve_update_cancel_and_payment_method_data', async () => {
  const customer = await stripe.customers.create({ email: 'node-seti2@example.com' });
  const seti = await stripe.setupIntents.create({
    customer: customer.id, confirm: true,
    payment_method_data: { type: 'card', card: { token: 'tok_visa' } },
  });
  expectEqual(seti.status, 'succeeded', 'status after create with payment_method_data');
  const got = await stripe.setupIntents.retrieve(seti.id);
  expectEqual(got.payment_method, seti.payment_method, 'payment_method');
  const updated = await stripe.setupIntents.update(seti.id, { metadata: { plan: 'pro' } });
  expectEqual(updated.metadata.plan, 'pro', 'metadata in any state');
  const open = await stripe.setupIntents.create({ customer: customer.id });
  const canceled = await stripe.setupIntents.cancel(open.id, { cancellation_reason: 'abandoned' });
  expectEqual(canceled.status, 'canceled', 'status after cancel');
  return { status: seti.status, canceled: canceled.status };
});

check('catalog_products_prices_coupons_promotion_codes_tax_rates', async () => {
  const product = await stripe.products.create({ name: 'Node catalog' });
  expectEqual((await stripe.products.retrieve(product.id)).name, 'Node catalog', 'product name');
  const price = await stripe.prices.create({ product: product.id, unit_amount: 900, currency: 'usd' });
  expectEqual((await stripe.prices.update(price.id, { metadata: { tier: 'a' } })).metadata.tier, 'a', 'price metadata');
  const prices = await stripe.prices.list({ product: product.id }).autoPagingToArray({ limit: 10 });
  expectEqual(prices.map((p) => p.id).join(), price.id, 'prices of the product');
  const coupon = await stripe.coupons.create({ percent_off: 25, duration: 'once' });
  expectEqual((await stripe.coupons.retrieve(coupon.id)).percent_off, 25, 'coupon percent_off');
  const code = `NODE${Date.now() % 1000000}`;
  const promo = await stripe.promotionCodes.create({ coupon: coupon.id, code });
  expectEqual(promo.code, code, 'promotion code');
  const inactive = await stripe.promotionCodes.update(promo.id, { active: false });
  expectEqual(inactive.active, false, 'promotion code deactivated');
  const rate = await stripe.taxRates.create({ display_name: 'VAT', percentage: 20, inclusive: false });
  expectEqual((await stripe.taxRates.retrieve(rate.id)).percentage, 20, 'tax rate percentage');
  const deleted = await stripe.coupons.del(coupon.id);
  expectEqual(deleted.deleted, true, 'coupon deleted');
  return { product: product.object, price: price.object, promo: promo.object, rate: rate.object };
});

check('invoices_invoice_items_credit_notes_and_subscription_items', async () => {
  const customer = await stripe.customers.create({ email: 'node-inv@example.com' });
  await stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
  const item = await stripe.invoiceItems.create({ customer: customer.id, amount: 1200, currency: 'usd', description: 'setup' });
  expectEqual((await stripe.invoiceItems.update(item.id, { description: 'set-up' })).description, 'set-up', 'invoice item description');
  const draft = await stripe.invoices.create({
    customer: customer.id, pending_invoice_items_behavior: 'include',
    collection_method: 'send_invoice', days_until_due: 30,
  });
  expectEqual(draft.status, 'draft', 'status after create');
  const open = await stripe.invoices.finalizeInvoice(draft.id);
  expectEqual(open.status, 'open', 'status after finalize');
  expectEqual(open.amount_due, 1200, 'amount_due');
  const note = await stripe.creditNotes.create({ invoice: open.id, amount: 200 });
  expectEqual(note.status, 'issued', 'credit note status');
  expectEqual((await stripe.creditNotes.retrieve(note.id)).invoice, open.id, 'credit note invoice');
  const voidedNote = await stripe.creditNotes.voidCreditNote(note.id);
  expectEqual(voidedNote.status, 'void', 'credit note voided');
  const voided = await stripe.invoices.voidInvoice(open.id);
  expectEqual(voided.status, 'void', 'invoice voided');

  const product = await stripe.products.create({ name: 'Node items' });
  const base = await stripe.prices.create({ product: product.id, unit_amount: 1000, currency: 'usd', recurring: { interval: 'month' } });
  const addon = await stripe.prices.create({ product: product.id, unit_amount: 300, currency: 'usd', recurring: { interval: 'month' } });
  const sub = await stripe.subscriptions.create({ customer: customer.id, items: [{ price: base.id }], default_payment_method: (await stripe.customers.listPaymentMethods(customer.id)).data[0].id });
  const added = await stripe.subscriptionItems.create({ subscription: sub.id, price: addon.id, proration_behavior: 'none' });
  expectEqual(added.object, 'subscription_item', 'subscription item object');
  const items = await stripe.subscriptionItems.list({ subscription: sub.id });
  expectEqual(items.data.length, 2, 'two items');
  const removed = await stripe.subscriptionItems.del(added.id, { proration_behavior: 'none' });
  expectEqual(removed.deleted, true, 'subscription item deleted');
  return { invoice: voided.status, note: voidedNote.status, items: items.data.length };
});

check('test_clocks_meters_and_customer_balance', async () => {
  const now = Math.floor(Date.now() / 1000);
  const clock = await stripe.testHelpers.testClocks.create({ frozen_time: now, name: 'node' });
  expectEqual(clock.object, 'test_helpers.test_clock', 'clock object');
  const clocks = await stripe.testHelpers.testClocks.list().autoPagingToArray({ limit: 20 });
  expect(clocks.some((c) => c.id === clock.id), 'the clock is listed');
  expectEqual((await stripe.testHelpers.testClocks.del(clock.id)).deleted, true, 'clock deleted');

  const eventName = `node_calls_${now}`;
  const meter = await stripe.billing.meters.create({
    display_name: 'API calls', event_name: eventName, default_aggregation: { formula: 'sum' },
  });
  expectEqual(meter.object, 'billing.meter', 'meter object');
  const customer = await stripe.customers.create({ email: 'node-meter@example.com' });
  const event = await stripe.billing.meterEvents.create({
    event_name: eventName, payload: { stripe_customer_id: customer.id, value: '3' },
  });
  expectEqual(event.object, 'billing.meter_event', 'meter event object');

  const txn = await stripe.customers.createBalanceTransaction(customer.id, { amount: -400, currency: 'usd' });
  expectEqual(txn.object, 'customer_balance_transaction', 'balance transaction object');
  expectEqual(txn.ending_balance, -400, 'ending_balance');
  const txns = await stripe.customers.listBalanceTransactions(customer.id);
  expectEqual(txns.data.map((t) => t.id).join(), txn.id, 'balance transactions');
  const got = await stripe.customers.retrieveBalanceTransaction(customer.id, txn.id);
  expectEqual(got.amount, -400, 'retrieved amount');
  return { meter: meter.object, balance: txn.ending_balance };
});

check('webhook_endpoints_create_retrieve_update_list_delete', async () => {
  const endpoint = await stripe.webhookEndpoints.create({
    url: 'http://127.0.0.1:9/hooks', enabled_events: ['payment_intent.succeeded'],
    metadata: { team: 'node' },
  });
  expectEqual(endpoint.object, 'webhook_endpoint', 'object');
  expect(endpoint.secret && endpoint.secret.startsWith('whsec_'), 'the secret, shown at creation');
  const got = await stripe.webhookEndpoints.retrieve(endpoint.id);
  expectEqual(got.url, 'http://127.0.0.1:9/hooks', 'url');
  const updated = await stripe.webhookEndpoints.update(endpoint.id, { disabled: true });
  expectEqual(updated.status, 'disabled', 'status after disabling');
  const all = await stripe.webhookEndpoints.list({ limit: 1 }).autoPagingToArray({ limit: 20 });
  expect(all.some((e) => e.id === endpoint.id), 'the endpoint is listed');
  const deleted = await stripe.webhookEndpoints.del(endpoint.id);
  expectEqual(deleted.deleted, true, 'deleted');
  // What the merchant's receiver does with a delivery signed the Stripe way.
  const payload = JSON.stringify({ id: 'evt_node', object: 'event', type: 'payment_intent.succeeded', data: { object: { id: 'pi_x', object: 'payment_intent' } } });
  const header = stripe.webhooks.generateTestHeaderString({ payload, secret: endpoint.secret });
  const event = stripe.webhooks.constructEvent(payload, header, endpoint.secret);
  expectEqual(event.type, 'payment_intent.succeeded', 'constructEvent');
  return { status: updated.status, deleted: deleted.deleted };
});

check('checkout_sessions_create_retrieve_list_line_items_expire', async () => {
  const made = await stripe.checkout.sessions.create({
    mode: 'payment', success_url: 'https://shop.example/ok', cancel_url: 'https://shop.example/cart',
    line_items: [{ price_data: { currency: 'eur', unit_amount: 1250, product_data: { name: 'Book' } }, quantity: 2 }],
    metadata: { order: '42' },
  });
  expectEqual(made.object, 'checkout.session', 'object');
  expectEqual(made.status, 'open', 'status');
  expectEqual(made.amount_total, 2500, 'amount_total');
  const got = await stripe.checkout.sessions.retrieve(made.id);
  expectEqual(got.payment_intent, made.payment_intent, 'payment_intent');
  const items = await stripe.checkout.sessions.listLineItems(made.id);
  expectEqual(items.data.length && items.data[0].amount_total, 2500, 'line item amount_total');
  const listed = await stripe.checkout.sessions.list({ status: 'open', limit: 5 });
  expect(listed.data.some((s) => s.id === made.id), 'the session is listed');
  const expired = await stripe.checkout.sessions.expire(made.id);
  expectEqual(expired.status, 'expired', 'status after expire');
  return { status: expired.status };
});

check('radar_value_lists_and_items', async () => {
  const list = await stripe.radar.valueLists.create({ alias: `node_list_${Date.now() % 100000}`, name: 'Emails', item_type: 'email' });
  expectEqual(list.object, 'radar.value_list', 'object');
  const item = await stripe.radar.valueListItems.create({ value_list: list.id, value: 'fraud@example.com' });
  expectEqual(item.object, 'radar.value_list_item', 'item object');
  const items = await stripe.radar.valueListItems.list({ value_list: list.id });
  expectEqual(items.data.map((i) => i.id).join(), item.id, 'items of the list');
  const deleted = await stripe.radar.valueListItems.del(item.id);
  expectEqual(deleted.deleted, true, 'item deleted');
  return { items: items.data.length };
});

check('old_pinned_version_gets_charges_on_the_intent', async () => {
  const old = new Stripe(apiKey, {
    host: url.hostname, port: Number(url.port || 80), protocol: url.protocol.replace(':', ''),
    maxNetworkRetries: 0, timeout: 20000, telemetry: false, apiVersion: '2022-08-01',
  });
  const intent = await old.paymentIntents.create({ amount: 1700, currency: 'usd', payment_method: 'pm_card_visa', confirm: true });
  expectEqual(intent.charges && intent.charges.object, 'list', 'charges list on 2022-08-01');
  expectEqual(intent.charges.data[0].id, intent.latest_charge, 'charges.data[0] is the latest charge');
  expectEqual(intent.charges.data[0].amount_captured, 1700, 'charges.data[0].amount_captured');
  const today = await stripe.paymentIntents.retrieve(intent.id);
  expectEqual(today.charges, undefined, 'no charges list on today\'s version');
  return { charges: intent.charges.data.length };
});

check('declined_card_raises_card_error', async () => {
  const intent = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd' });
  const err = await raised(
    stripe.paymentIntents.confirm(intent.id, { payment_method: 'pm_card_chargeDeclinedInsufficientFunds' }),
    'confirming with a declined card',
  );
  expect(err instanceof Stripe.errors.StripeCardError, `a StripeCardError, got ${describeError(err)}`);
  expectEqual(err.type, 'StripeCardError', 'type');
  expectEqual(err.statusCode, 402, 'statusCode');
  expectEqual(err.code, 'card_declined', 'code');
  expectEqual(err.decline_code, 'insufficient_funds', 'decline_code');
  expect(err.requestId, 'requestId is set');
  const after = await stripe.paymentIntents.retrieve(intent.id);
  expectEqual(after.status, 'requires_payment_method', 'status after the decline');
  expectEqual(after.last_payment_error && after.last_payment_error.decline_code, 'insufficient_funds', 'last_payment_error.decline_code');
  return { code: err.code, decline_code: err.decline_code };
});

check('unknown_id_raises_invalid_request_404', async () => {
  const err = await raised(stripe.paymentIntents.retrieve('pi_doesnotexist000000'), 'retrieving an unknown id');
  expect(err instanceof Stripe.errors.StripeInvalidRequestError, `a StripeInvalidRequestError, got ${describeError(err)}`);
  expectEqual(err.statusCode, 404, 'statusCode');
  expectEqual(err.code, 'resource_missing', 'code');
  return { statusCode: err.statusCode, code: err.code };
});

check('bad_parameter_raises_invalid_request_with_param', async () => {
  const err = await raised(stripe.paymentIntents.create({ amount: 2000 }), 'creating without currency');
  expect(err instanceof Stripe.errors.StripeInvalidRequestError, `a StripeInvalidRequestError, got ${describeError(err)}`);
  expectEqual(err.statusCode, 400, 'statusCode');
  expectEqual(err.param, 'currency', 'param');
  return { statusCode: err.statusCode, param: err.param };
});

check('bad_key_raises_authentication_error', async () => {
  const err = await raised(client('sk_test_notarealkey0000000000000000').customers.list(), 'a call with a bad key');
  expect(err instanceof Stripe.errors.StripeAuthenticationError, `a StripeAuthenticationError, got ${describeError(err)}`);
  expectEqual(err.statusCode, 401, 'statusCode');
  return { statusCode: err.statusCode };
});

for (const [name, fn] of checks) {
  let details;
  try {
    details = await fn();
  } catch (err) {
    const message = describeError(err);
    console.log(JSON.stringify({ check: name, ok: false, error: message }));
    console.error(`stripe-node check ${name} FAILED: ${message}`);
    process.exit(1);
  }
  console.log(JSON.stringify({ check: name, ok: true, ...details }));
}
console.log(JSON.stringify({ done: true, checks: checks.length, stripe_node: Stripe.PACKAGE_VERSION, api_version: Stripe.API_VERSION }));
