"""The decision made for each confirm, before any gateway call (``FraudEngine.screen_in``,
in the write transaction that starts the attempt: services/payments.py
``_start_authorize``).

``screen_in`` reads (the customer; then the velocity keys' lock and the velocity counts,
the rules' version, the lists' matches and the card's last minute with each key, one round
trip on PostgreSQL: ``velocity.locked_decision_read``; a confirm's call there also locks the
intent first, if it is still as the confirm read it: migration 0039), evaluates (pure), and
then:

- **block**: records the decline on the intent (``last_payment_error`` ``card_declined`` /
  ``fraudulent``, the ``outcome``) and its ``payment_intent.payment_failed`` event in that
  transaction, which starts no attempt, and the caller raises the card error (402) after
  its commit. The gateway is never called.
- **review**: the confirm goes on as an authorization only (``hold`` in the record, where
  the gateway can hold funds; the intent's ``capture_method`` is left as the merchant set
  it, so a later confirm that is allowed captures as usual); a review opens when the
  authorization lands (``reviews.py``), whichever path (API, webhook, recovery) applies it.
- **allow**: the confirm goes on.

The decision (Stripe's ``outcome``: type, risk_level, risk_score, rule, reason) and the
facts it was made on are stored on the intent (``fraud_outcome``) with the attempt; the
velocity counters learn the payment's outcome when it is applied (``on_settled``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.domain.states import PaymentIntentStatus as S
from paymux.fraud import velocity
from paymux.fraud.evaluate import Decision, Lists
from paymux.fraud.geo import country_of_ip
from paymux.fraud.language import Action
from paymux.fraud.lists import BUILT_IN_LISTS, lists_matching, with_built_in
from paymux.fraud.request import PayerRequest, payer_request
from paymux.fraud.rules import FraudRules, LoadedRules
from paymux.fraud.score import risk_level, risk_score
from paymux.fraud.signals import facts_of, parse_usd_rates
from paymux.observability.metrics import count_fraud_decision
from paymux.services.attempts import intent_view
from paymux.services.context import Context, emit, get_owned, react_to_row
from paymux.services.payments import IntentMoved
from paymux.services.routing import missing_capabilities
from paymux.storage.models import Customer, PaymentIntent, PaymentMethod

__all__ = ["ASKS_3DS_ON_REQUEST", "FraudEngine", "on_settled", "outcome_of"]

# The connectors whose authorize asks the issuer for 3-D Secure on a request_3ds rule
# (AuthorizeRequest.request_three_d_secure).
ASKS_3DS_ON_REQUEST: Final = frozenset({"stripe", "sandbox"})
_SNAPSHOT_SKIP: Final = frozenset({"user_agent"})
_STRIPE_TYPE: Final = {
    Action.ALLOW: "authorized",
    Action.REVIEW: "manual_review",
    Action.BLOCK: "blocked",
}


def outcome_of(decision: Decision, score: int) -> dict[str, Any]:
    """Stripe's charge ``outcome`` for a decision (before the gateway's answer)."""
    rule = decision.rule
    level = risk_level(score)
    if decision.action is Action.BLOCK:
        reason = "rule" if rule is not None else "highest_risk_level"
        seller_message = "Payment blocked by a fraud rule."
    elif decision.action is Action.REVIEW:
        reason, seller_message = "rule", "Payment authorized and placed in review."
    else:
        reason, seller_message = None, "Payment complete."
    return {
        "type": _STRIPE_TYPE[decision.action],
        "network_status": "not_sent_to_network"
        if decision.action is Action.BLOCK
        else "approved_by_network",
        "reason": reason,
        "risk_level": level,
        "risk_score": score,
        "rule": None
        if rule is None
        else {"id": rule.id, "action": rule.action.value, "predicate": rule.predicate},
        "request_3ds": None if decision.request_3ds is None else decision.request_3ds.id,
        "seller_message": seller_message,
    }


def _snapshot(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts as stored for a later dry run: JSON values (decimals as strings)."""
    out: dict[str, Any] = {}
    for name, value in facts.items():
        if name in _SNAPSHOT_SKIP:
            continue
        out[name] = value if isinstance(value, (bool, int, str)) else str(value)
    return out


def _fail_closed(decision: Decision, pi: PaymentIntent) -> Decision:
    """A ``request_3ds`` rule matched, but the payment's gateway can't be asked for 3-D
    Secure by paymux (PayPal, Square: their browser SDKs decide; a plugin connector): the
    payment is reviewed instead (held, where the gateway can hold funds) rather than let
    through unauthenticated. Off session no payer could authenticate: nothing changes."""
    if (
        decision.request_3ds is None
        or decision.action is not Action.ALLOW
        or pi.gateway in ASKS_3DS_ON_REQUEST
        or pi.off_session
    ):
        return decision
    return Decision(Action.REVIEW, decision.request_3ds, decision.request_3ds)


def _list_candidates(facts: dict[str, Any]) -> frozenset[str]:
    """The payment's string facts as rules compare them: what a list could hold; and the
    risk levels (the facts ``risk_level`` and ``gateway_risk_level`` come later, from the
    score and the velocity read; a list holding other levels than the payment's doesn't
    match it, as the rules compare the payment's own value)."""
    found = frozenset(v.casefold() for v in facts.values() if isinstance(v, str) and v)
    return found | _RISK_LEVELS


_RISK_LEVELS: Final = frozenset(velocity.GATEWAY_RISK_LEVELS)


def _keys(facts: dict[str, Any], secret: bytes = b"") -> dict[str, str]:
    keys = {}
    for kind, fact in (
        ("card_fingerprint", "card_fingerprint"),
        ("ip", "ip_address"),
        ("email", "email"),
        ("customer", "customer"),
    ):
        value = facts.get(fact)
        if isinstance(value, str) and value:
            keys[kind] = velocity.digest(kind, value, secret)
    return keys


def _as_decided(pi: PaymentIntent) -> velocity.IntentAsDecided:
    """The intent's values the decision is made on (``FraudEngine.facts`` reads them)."""
    return velocity.IntentAsDecided(
        pi.id,
        str(pi.status),
        pi.confirm_count,
        pi.amount,
        pi.currency,
        pi.customer_id,
        pi.receipt_email,
        pi.off_session,
        ((pi.shipping or {}).get("address") or {}).get("country"),
    )


class FraudEngine:
    def __init__(self, ctx: Context, rules: FraudRules) -> None:
        self.ctx = ctx
        self.rules = rules
        for event in (
            "payment_intent.payment_failed",
            "payment_intent.succeeded",
            "payment_intent.amount_capturable_updated",
        ):
            # A module function: registered once per process.
            react_to_row(
                event, on_settled, when=_counted_unsettled, without_statements=_given_plain_row
            )

    async def facts(
        self,
        s: AsyncSession,
        pi: PaymentIntent,
        pm: PaymentMethod,
        payer: PayerRequest,
        *,
        counted: bool = True,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The facts of confirming ``pi`` with ``pm`` now, and the velocity keys;
        ``counted``: with the velocity counts (else the caller reads them, under the keys'
        lock)."""
        settings = self.ctx.settings
        now = self.ctx.now_us()
        customer = await s.get(Customer, pi.customer_id) if pi.customer_id else None
        billing = pm.billing_details or {}
        email = (customer.email if customer else None) or billing.get("email") or pi.receipt_email
        ip_country = (
            country_of_ip(settings.fraud_geoip_database, payer.ip_address)
            if payer.ip_address and settings.fraud_geoip_database
            else None
        )
        base = facts_of(
            amount=pi.amount,
            currency=pi.currency,
            livemode=bool(pi.livemode),
            off_session=pi.off_session,
            card={
                "brand": pm.card_brand,
                "funding": pm.card_funding,
                "country": pm.card_country,
                "fingerprint": pm.card_fingerprint,
                "bin": pm.card_bin,
                "cvc_check": pm.card_cvc_check,
                "address_line1_check": pm.card_address_line1_check,
                "address_zip_check": pm.card_address_zip_check,
            },
            billing_country=(billing.get("address") or {}).get("country"),
            shipping_country=((pi.shipping or {}).get("address") or {}).get("country"),
            customer_id=pi.customer_id,
            customer_email=email,
            customer_created_us=customer.created_us if customer else None,
            payer=payer,
            ip_country=ip_country,
            velocity={},
            rates=parse_usd_rates(settings.fraud_usd_rates),
            now_us=now,
        )
        secret = settings.fraud_velocity_key
        keys = _keys(base, secret.get_secret_value().encode() if secret else b"")
        if counted:
            base.update(await velocity.counts(s, pi.account_id, bool(pi.livemode), keys, now))
        return base, keys

    async def screen(self, account_id: str, pi: PaymentIntent, pm: PaymentMethod) -> dict[str, Any]:
        """Decide a confirm in a write transaction of its own (``screen_in``); returns the
        intent changes to commit with its attempt, or raises the card error of a block
        (recorded first). The payment path decides in its own transaction instead
        (``PaymentsService._start_authorize``); this is for tools and benchmarks."""
        async with self.ctx.db.write() as s:
            changes, blocked = await self.screen_in(s, account_id, pi, pm)
        if blocked is not None:
            raise blocked
        return changes

    async def screen_in(
        self,
        s: AsyncSession,
        account_id: str,
        pi: PaymentIntent,
        pm: PaymentMethod,
        *,
        as_read: bool = False,
    ) -> tuple[dict[str, Any], PaymuxError | None]:
        """Decide a confirm in the caller's write transaction, the one that starts its attempt
        (no transaction of its own). Returns the intent changes to commit with the attempt,
        and None; or, for a block, nothing to change and the card error, the block recorded
        on the intent in ``s`` (the caller commits, starts no attempt, then raises it).

        The velocity keys are locked first (``velocity.locked_decision_read``, with the
        read), so the counts are read once, as they are under the lock (parallel confirms
        from one address see each other: an attempt with no answer yet counts as a
        decline), and an allowed attempt is counted
        in the same transaction: on PostgreSQL by the read's own call, before the rules
        decide, and taken back in the transaction if they block (``velocity.unreserve``),
        so nothing of a block is ever committed; on SQLite after they allow it
        (``velocity.reserve``).

        ``as_read`` (PostgreSQL): ``pi`` is an earlier transaction's read, not locked yet;
        the same call locks it first if it is still as read (``velocity.IntentAsDecided``),
        and raises ``IntentMoved`` if not (the caller rolls back and decides again on the
        intent read under its lock)."""
        if not self.ctx.settings.fraud_enabled:
            # No earlier confirm's decision (or hold), nor its settle.
            return {"fraud_outcome": None, "fraud_settle": None}, None
        payer = payer_request.get() or PayerRequest()
        livemode = bool(pi.livemode)
        facts, keys = await self.facts(s, pi, pm, payer, counted=False)
        now = self.ctx.now_us()
        # The keys' lock, then the counts, the rules' version and the payment's values in
        # the lists the rules (as last loaded) name, then the attempt counted: one round
        # trip on PostgreSQL (a function: the read takes its snapshot once the locks are
        # held; a block takes the attempt back, ``velocity.unreserve``); on SQLite the read
        # alone (the attempt is counted once the rules allow it, ``velocity.reserve``).
        # The lists are read again only when the version shows the rules changed and the
        # new ones name other lists.
        cached = self.rules.cached(account_id, livemode)
        aliases = cached.aliases if cached is not None else frozenset()
        values = _list_candidates(facts)
        read = await velocity.locked_decision_read(
            s,
            account_id,
            livemode,
            keys,
            now,
            aliases - BUILT_IN_LISTS.keys(),
            values,
            is_sqlite=self.ctx.db.is_sqlite,
            reserve=True,
            guard=_as_decided(pi) if as_read else None,
        )
        if read is None:
            raise IntentMoved(pi.id)
        facts.update(read.facts)
        loaded = await self.rules.loaded(s, account_id, livemode, read.version)
        if loaded.aliases == aliases:
            lists = with_built_in(aliases, values, read.lists)
        else:
            lists = await lists_matching(s, account_id, livemode, loaded.aliases, values)
        decision, record = self._decide(pi, loaded, lists, facts, keys, payer)
        if decision.action is Action.BLOCK:
            await velocity.unreserve(s, account_id, livemode, keys, read)
            return {}, await self._block(s, account_id, pi.id, pm.id, record)
        if read.reserved is not None:
            record["minute"] = read.reserved
            await velocity.prune_old(s, pi.account_id, livemode, read.stale, read.reserved)
        elif keys:
            record["minute"] = await velocity.reserve(
                s,
                pi.account_id,
                livemode,
                keys,
                record.get("card"),
                now_us=now,
                is_sqlite=self.ctx.db.is_sqlite,
                prune=read.stale,
                previous=read.cards,
            )
        # A review holds the money (authorization only) for this confirm alone: the
        # attempt's capture is derived from ``hold`` (services/attempts.captures_at_once),
        # and the merchant's capture_method stays as they set it.
        record["hold"] = (
            decision.action is Action.REVIEW
            and not missing_capabilities(pi.gateway, frozenset({"manual_capture"}))
            and not _pays_the_opened_payment(pi, pm)
        )
        count_fraud_decision(decision.action.value)
        # The settle is this confirm's once its answer is known (on_settled): unset until then.
        return {"fraud_outcome": record, "fraud_settle": None}, None

    def _decide(
        self,
        pi: PaymentIntent,
        loaded: LoadedRules,
        lists: Lists,
        facts: dict[str, Any],
        keys: dict[str, str],
        payer: PayerRequest,
    ) -> tuple[Decision, dict[str, Any]]:
        score = risk_score(facts)
        facts["risk_score"], facts["risk_level"] = score, risk_level(score)
        decision = _fail_closed(loaded.ruleset.decide(facts, lists), pi)
        record = {
            "outcome": outcome_of(decision, score),
            "facts": _snapshot(facts),
            "keys": keys,
            "card": keys.get("card_fingerprint"),
            "minute": None,  # set when the attempt is counted (velocity.reserve)
            # True at once for a block (it counted nothing; code from before migration 0038
            # also set it once settled). The settle is the intent's ``fraud_settle`` (set by
            # on_settled, applied by migration 0038's trigger), reset with this record.
            "counted": False,
            "payer": {"ip_address": payer.ip_address, "user_agent": payer.user_agent},
        }
        return decision, record

    async def _block(
        self, s: AsyncSession, account_id: str, pi_id: str, pm_id: str, record: dict[str, Any]
    ) -> PaymuxError:
        """Record a block on the intent (in ``s``) and return its card error. Nothing is
        counted in the velocity windows: a block is not a decline."""
        count_fraud_decision(Action.BLOCK.value)
        error = PaymuxError.of(
            "card_declined", "Your card was declined.", decline_code="fraudulent"
        )
        pi = await get_owned(s, PaymentIntent, pi_id, account_id, lock=True)
        if pi.status in (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION):
            last = error.to_dict()
            last["payment_method"] = pm_id
            pi.last_payment_error = last
            pi.fraud_outcome = {**record, "counted": True}
            pi.status = S.REQUIRES_PAYMENT_METHOD
            pi.payment_method_id = None
            pi.next_action = None
            pi.confirm_count = pi.confirm_count + 1
            pi.updated_us = max(self.ctx.now_us(), pi.updated_us)
            await s.flush()
            view = intent_view(self.ctx, pi)
            await emit(
                s, account_id, "payment_intent.payment_failed", view, pi.updated_us, subject=pi
            )
            error.extra = {"payment_intent": view}
        return error


def _pays_the_opened_payment(pi: PaymentIntent, pm: PaymentMethod) -> bool:
    """Whether the confirm pays with the provider payment opened at create for the payer's
    page (a PayPal order the payer approved): its capture was fixed when it was opened (the
    PayPal JS SDK approves an order of one intent), so a review can't hold it; the payment
    is captured as opened and its review opens on the captured money (reject refunds)."""
    return (
        pi.gateway_client is not None
        and pi.gateway_reference is not None
        and pm.token == pi.gateway_reference
    )


def _score(value: Any) -> int | None:
    """A gateway risk score as emitted on the intent: a whole number 0-100, else None."""
    return value if type(value) is int and 0 <= value <= 100 else None


def _plain_row_of(subject: Any, obj: dict[str, Any]) -> bool:
    """``subject`` is a row of the event's intent that no session holds (not a mapped
    object): the settle's plain row (services/attempts.py), written by its emitter."""
    return (
        subject is not None
        and inspect(subject, raiseerr=False) is None
        and getattr(subject, "id", None) == obj["id"]
    )


def _given_plain_row(obj: dict[str, Any], pi: Any) -> bool:
    """``on_settled`` runs no statement (``react_to_row``'s ``without_statements``): it was
    given the emitter's plain row, which it changes and its emitter writes."""
    return _plain_row_of(pi, obj)


def _counted_unsettled(obj: dict[str, Any], pi: Any) -> bool:
    """``on_settled``'s gate (``react_to``'s ``when``): the emitter's intent row carries an
    attempt counted and not yet settled (what ``on_settled`` itself checks after reading
    the row; without the emitter's row, it runs and reads it)."""
    return pi is None or _unsettled(pi)


def _unsettled(pi: Any) -> bool:
    """The intent's latest confirm counted an attempt (its record has a minute) whose settle
    is not set yet (``fraud_settle``, reset by each decision). A record marked ``counted``
    was settled by code from before migration 0038 (or is a block's, with no minute)."""
    record = pi.fraud_outcome
    return (
        bool(record)
        and record.get("minute") is not None
        and not record.get("counted")
        and pi.fraud_settle is None
    )


async def on_settled(
    s: AsyncSession, account_id: str, obj: dict[str, Any], now_us: int, subject: Any = None
) -> None:
    """A decided payment's answer is known (in the transaction applying it): settle its
    counted attempt, once per confirm (the intent's ``fraud_settle`` set while it is unset,
    which the database applies to the velocity buckets when the intent's UPDATE writes it:
    migration 0038); only an issuer's decline (``card_declined``) is a
    decline (not a block, which counted nothing, nor a failed authentication). The gateway's
    risk level and numeric risk score for the payment (the intent's ``risk_level`` and
    ``gateway_risk_score`` as emitted, set from the answer being applied; Stripe's
    ``outcome``) are recorded with it: the next payments with the card see them
    as ``:gateway_risk_level:`` and ``:gateway_risk_score:``.

    ``subject``: the emitter's row of the intent (``react_to_row``). A plain row (the
    settle's, which the session does not hold) is used as it is, not read again: its
    emitter writes the ``fraud_settle`` set on it last here, with the settle's own changes.
    Without one, or with one of the session's objects, the row is the session's (read
    unless the session holds it)."""
    pi = subject if _plain_row_of(subject, obj) else await s.get(PaymentIntent, str(obj["id"]))
    if pi is None or not _unsettled(pi):
        return
    record: dict[str, Any] = pi.fraud_outcome or {}
    error = obj.get("last_payment_error") or {}
    declined = (
        obj.get("status") == S.REQUIRES_PAYMENT_METHOD and error.get("code") == "card_declined"
    )
    # The settle rides on the intent's UPDATE that writes this small column (migration
    # 0038's trigger applies it to the keys' buckets as it is set): no statement of its own
    # in the settling transaction, and the decision's record is not written again.
    pi.fraud_settle = velocity.settle_record(
        (record.get("keys") or {}).values(),
        record["minute"],
        declined=declined,
        gateway_risk=obj.get("risk_level"),
        gateway_risk_score=_score(obj.get("gateway_risk_score")),
    )
