"""A scripted fake payment provider at the connector seam: ``ScriptedGateway``.

It implements the whole ``paymux.gateways.base.Gateway`` Protocol in memory and models the
PROVIDER's truth, so a test can register it in a ``GatewayRegistry``, drive paymux's real
services against it, and then ask the provider what really happened (was anything charged
twice? how much was captured and refunded?)::

    clock = FrozenClock(1_700_000_000 * 1_000_000)      # shared with Paymux(clock=clock)
    gw = ScriptedGateway(clock=clock, forget_keys_after=24 * 3600)
    app = Paymux(settings, gateways=gw.registry(), clock=clock)
    gw.script("authorize", Outcome.lose_response())   # the charge is made, the answer lost
    ...                                               # confirm, crash, recover
    assert gw.money_captured(pi_id) == 2000
    assert len(gw.live_payments(pi_id)) == 1
    for event in reversed(gw.take_webhooks()):        # any order, duplicated, late
        await gw.deliver_webhook(app.webhooks, event)

The provider
    A ledger of payments (``ProviderPayment``: id, our reference, currency, amount, amounts
    authorized and captured, status, refunds), customers and saved cards. Payments move as a
    processor's do: authorize (capture now or later), 3-D Secure (``complete_action``),
    capture (partial allowed, once), void (an authorization or an opened payment; a payment
    already captured is not voided, its SUCCEEDED truth is returned), refunds reserved
    against the amount captured (more is ``GatewayInvalidRequest``).
    With ``open_payments=True`` it creates the payment up front like Stripe
    (``open_payment``, then ``authorize`` with ``gateway_reference``; a decline returns it to
    ``requires_payment_method`` for another try); otherwise each authorize makes a new
    payment, like the sandbox and Square. The provider's own moves, outside any call:
    ``complete_action`` (the payer's 3-D Secure, or a ``processing`` payment settling),
    ``settle_refund``, ``dashboard_refund``, ``expire_authorization``, ``open_dispute``.
    Read it with ``payments_for`` / ``live_payments`` / ``charged_twice`` /
    ``money_captured`` / ``money_authorized`` / ``money_refunded`` / ``refunds_for`` /
    ``total_charged``.

Idempotency
    A mutating call with a key the provider remembers returns the stored result and changes
    nothing (a key re-used with other parameters is ``GatewayInvalidRequest``). Keys are
    forgotten ``forget_keys_after`` seconds after their first use, on the injectable clock:
    after that, the same authorize makes a SECOND payment. Results are stored once the
    operation ran (declines too); ``fail_before``, ``rate_limited`` and ``invalid`` store
    nothing. A payment also keeps, for good, the keys that confirmed it (what ``lookup``
    searches, with our reference).

Scripting
    ``script(operation, *outcomes)`` queues behaviours consumed in order by the next calls of
    that operation (operation names are the Protocol's method names). With the queue empty,
    ``random_mode(rng, fail_before=0.1, ...)`` draws one; else the call succeeds. A scripted
    outcome is consumed even when the call turns out to be a replay of a remembered key; then
    ``succeed`` / ``decline`` / ``requires_action`` / ``pending`` yield to the stored result,
    while the faults (``fail_before``, ``lose_response``, ``rate_limited``, ``invalid``,
    ``slow``) still apply.
    ``calls`` counts calls per operation (faults included), ``replays`` the idempotent
    replays, and ``log`` lists every call.
    ``hold(operation, after=False)`` returns a ``Gate`` that stops the next call of that
    operation, before the provider acts (``after=True``: once it acted, before the answer),
    until the test calls ``gate.release()`` (optionally with an exception the call raises
    instead of answering); ``await gate.wait_reached()`` waits for the call to get there. A
    test runs what it wants at exactly that point (a second run of a job, a detach).

Webhooks
    Every state change is recorded as a provider event (``ProviderEvent``) holding a snapshot
    of the object at that moment. ``pending_webhooks()`` lists those not delivered yet;
    ``webhook_request(event)`` signs one now (HMAC-SHA256 over ``t.body``, header
    ``fake-signature``, the scheme of ``paymux.gateways.signing``) for paymux's inbound
    pipeline; ``deliver_webhook(inbound, event)`` runs ``receive`` then ``apply``.
    ``verify_webhook`` and ``interpret_event`` are the connector's side of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from paymux.domain.clock import Clock
from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    CredentialsCheck,
    Decline,
    DisputeUpdate,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    GatewayUnavailable,
    InboundEvent,
    OpenedPayment,
    PaymentUpdate,
    RefundUpdate,
    SetupRequest,
    SetupResult,
)
from paymux.gateways.registry import GatewayRegistry
from paymux.gateways.signing import sign_header, verify_signature
from paymux.money import Money

__all__ = [
    "MUTATING",
    "OPERATIONS",
    "CallRecord",
    "Gate",
    "Outcome",
    "ProviderEvent",
    "ProviderPayment",
    "ProviderRefund",
    "ScriptedGateway",
]

MUTATING: frozenset[str] = frozenset(
    {
        "open_payment",
        "authorize",
        "capture",
        "void",
        "refund",
        "update_payment",
        "create_customer",
        "attach_payment_method",
        "detach_payment_method",
    }
)
OPERATIONS: frozenset[str] = MUTATING | {
    "retrieve",
    "lookup",
    "retrieve_refund",
    "describe_payment_method",
}

Kind = Literal[
    "succeed",
    "decline",
    "requires_action",
    "pending",
    "fail_before",
    "lose_response",
    "rate_limited",
    "invalid",
]
# Which outcome kinds make sense for which operations (the faults fit every operation).
_ONLY_FOR: dict[str, frozenset[str]] = {
    "decline": frozenset({"authorize", "refund", "attach_payment_method"}),
    "requires_action": frozenset({"authorize"}),
    "pending": frozenset({"authorize", "refund"}),
}
_FAULTS = frozenset({"fail_before", "lose_response", "rate_limited", "invalid"})

# Provider payment statuses: GatewayStatus values, plus a payment opened (or declined after
# being opened) that waits for a payment method, as Stripe's ``requires_payment_method``.
REQUIRES_PAYMENT_METHOD = "requires_payment_method"
LIVE = frozenset(
    {
        GatewayStatus.REQUIRES_ACTION,
        GatewayStatus.REQUIRES_CAPTURE,
        GatewayStatus.PROCESSING,
        GatewayStatus.SUCCEEDED,
    }
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scripted behaviour of one call. Build with the class methods."""

    kind: Kind = "succeed"
    gateway_code: str | None = None  # decline
    message: str | None = None
    code: str = "gateway_invalid_request"  # invalid
    retry_after: float | None = None  # rate_limited
    delay: float = 0.0  # seconds before the call reaches the provider (cancel = not made)
    delay_after: float = 0.0  # seconds after it was made, before the answer (cancel = lost)

    @classmethod
    def succeed(cls) -> Outcome:
        return cls("succeed")

    @classmethod
    def decline(cls, gateway_code: str = "card_declined", message: str | None = None) -> Outcome:
        """authorize: the payment fails; refund: the refund fails; attach: a Decline."""
        return cls("decline", gateway_code=gateway_code, message=message)

    @classmethod
    def requires_action(cls) -> Outcome:
        """authorize: 3-D Secure; finish it with ``ScriptedGateway.complete_action``."""
        return cls("requires_action")

    @classmethod
    def pending(cls) -> Outcome:
        """authorize: ``processing``; refund: ``pending``. Settle with ``complete_action``
        / ``settle_refund``."""
        return cls("pending")

    @classmethod
    def fail_before(cls, message: str = "timed out") -> Outcome:
        """GatewayUnavailable; the provider never saw the call."""
        return cls("fail_before", message=message)

    @classmethod
    def lose_response(cls, message: str = "connection lost before the response") -> Outcome:
        """The provider does the operation, then GatewayUnavailable: the answer is lost."""
        return cls("lose_response", message=message)

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0) -> Outcome:
        return cls("rate_limited", retry_after=retry_after)

    @classmethod
    def invalid(
        cls, code: str = "gateway_invalid_request", message: str = "invalid request"
    ) -> Outcome:
        return cls("invalid", code=code, message=message)

    @classmethod
    def slow(cls, seconds: float, then: Outcome | None = None) -> Outcome:
        """``await asyncio.sleep(seconds)`` BEFORE the provider acts, then ``then`` (succeed):
        a task cancelled during the wait made no call (a crash before the charge)."""
        return replace(then or cls.succeed(), delay=seconds)

    @classmethod
    def slow_response(cls, seconds: float, then: Outcome | None = None) -> Outcome:
        """The provider acts at once, the answer takes ``seconds``: a task cancelled during
        the wait never hears of it (a crash after the charge)."""
        return replace(then or cls.succeed(), delay_after=seconds)


@dataclass
class ProviderRefund:
    id: str
    payment_id: str
    our_id: str | None
    amount: int
    currency: str
    status: str  # pending | succeeded | failed | canceled
    reason: str | None = None
    failure_reason: str | None = None
    created: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "object": "refund",
            "id": self.id,
            "payment": self.payment_id,
            "our_id": self.our_id,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "reason": self.reason,
            "failure_reason": self.failure_reason,
        }


@dataclass
class ProviderPayment:
    id: str
    our_reference: str
    currency: str
    amount: int  # requested
    capture: bool  # capture on authorization (automatic)
    status: str  # a GatewayStatus value or REQUIRES_PAYMENT_METHOD
    amount_authorized: int = 0
    amount_captured: int = 0
    token: str | None = None
    customer: str | None = None
    decline: Decline | None = None
    next_action: dict[str, Any] | None = None
    confirmed_with: list[str] = field(default_factory=list)  # authorize keys, kept for good
    refunds: list[ProviderRefund] = field(default_factory=list)
    created: float = 0.0

    @property
    def live(self) -> bool:
        """Money is (or may be) held or taken: requires_action/capture, processing, succeeded."""
        return self.status in LIVE

    @property
    def amount_refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.status == "succeeded")

    @property
    def amount_refund_reserved(self) -> int:
        return sum(r.amount for r in self.refunds if r.status in ("pending", "succeeded"))

    def snapshot(self) -> dict[str, Any]:
        return {
            "object": "payment",
            "id": self.id,
            "reference": self.our_reference,
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "capture": self.capture,
            "amount_authorized": self.amount_authorized,
            "amount_captured": self.amount_captured,
            "amount_refunded": self.amount_refunded,
            "decline_code": self.decline.gateway_code if self.decline else None,
            "decline_message": self.decline.message if self.decline else None,
            "next_action": self.next_action,
        }


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    id: str
    type: str  # payment.created | payment.updated | refund.updated | dispute.updated
    created: float
    object: dict[str, Any]  # a snapshot at the time of the change

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "event",
            "type": self.type,
            "created": int(self.created),
            "data": {"object": self.object},
        }


@dataclass(frozen=True, slots=True)
class CallRecord:
    operation: str
    idempotency_key: str | None
    outcome: Kind
    replay: bool
    at: float


@dataclass
class _Stored:
    operation: str
    fingerprint: str
    at: float
    result: Any


class _Inbound(Protocol):
    """paymux's inbound webhook pipeline (``Paymux.webhooks``), as far as delivery needs."""

    async def receive(self, gateway_name: str, headers: dict[str, str], body: bytes) -> Any: ...

    async def apply(self, inbox_id: str) -> None: ...


def _clock_seconds(clock: Callable[[], float] | Clock | None) -> Callable[[], float]:
    if clock is None:
        return time.time
    now_us = getattr(clock, "now_us", None)
    if callable(now_us):
        return lambda: int(now_us()) / 1_000_000
    if callable(clock):
        return clock
    raise TypeError("clock must be a callable returning seconds or have now_us()")


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()


class Gate:
    """Holds one call of an operation (``ScriptedGateway.hold``) until the test releases it:
    before the provider acts, or (``after``) once it acted and before the answer returns."""

    def __init__(self, operation: str, *, after: bool) -> None:
        self.operation = operation
        self.after = after
        self.reached = asyncio.Event()
        self._released = asyncio.Event()
        self._error: BaseException | None = None

    def release(self, error: BaseException | None = None) -> None:
        """Let the held call go on; with ``error`` it raises that instead (the answer lost
        to a fault the connector does not map: a reset connection, a bug)."""
        self._error = error
        self._released.set()

    async def wait_reached(self) -> None:
        """Wait (10 s at most) until the held call is at the gate."""
        await asyncio.wait_for(self.reached.wait(), 10.0)

    async def _pass(self) -> None:
        self.reached.set()
        await self._released.wait()
        if self._error is not None:
            raise self._error


class ScriptedGateway:
    """An in-memory provider behind the Gateway Protocol; see the module docstring."""

    def __init__(
        self,
        name: str = "fake",
        *,
        clock: Callable[[], float] | Clock | None = None,
        forget_keys_after: float = 24 * 3600,
        idempotency_retention_seconds: float | None = None,
        open_payments: bool = False,
        supports_update: bool = True,
        currencies: Iterable[str] | None = None,
        webhook_secret: str = "whsec_fake_gateway",
        webhook_tolerance: int = 300,
        latency: float = 0.0,
    ) -> None:
        self.name = name
        self.now = _clock_seconds(clock)
        self.forget_keys_after = forget_keys_after
        # What paymux is told; defaults to the truth (set it apart to test a wrong connector).
        self.idempotency_retention_seconds = (
            forget_keys_after
            if idempotency_retention_seconds is None
            else idempotency_retention_seconds
        )
        self.open_payments = open_payments
        self.supports_update = supports_update
        self.currencies = None if currencies is None else {c.upper() for c in currencies}
        self.webhook_secret = webhook_secret
        self.webhook_tolerance = webhook_tolerance
        self.latency = latency
        self.lookup_finds_all = True  # set False to play a provider without search (PayPal)
        self.shared_tokens: set[str] = set()  # published test shortcuts, usable by anyone
        # Fields only an authorize call's answer carries, never its webhook's object (a card
        # payment's 3-D Secure result, Stripe's outcome risk): ``GatewayResult`` fields set on
        # each answer, e.g. {"three_d_secure": ThreeDSecure("authenticated"), "risk_score": 71}.
        self.answer_fields: dict[str, Any] = {}

        self.payments: dict[str, ProviderPayment] = {}
        self.customers: dict[str, str] = {}  # customer id -> our reference
        self.attached: dict[str, str] = {}  # token -> customer id
        self.cards: dict[str, CardDetails] = {}
        self.events: list[ProviderEvent] = []
        self.delivered: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.replays: Counter[str] = Counter()
        self.log: list[CallRecord] = []
        self.closed = 0

        self._keys: dict[str, _Stored] = {}
        self._scripts: dict[str, list[Outcome]] = {}
        self._gates: dict[str, Gate] = {}
        self._rng: random.Random | None = None
        self._chances: list[tuple[Outcome, float]] = []
        self._chance_ops: frozenset[str] = OPERATIONS
        self._seq = 0

    # == scripting ==========================================================================
    def script(self, operation: str, *outcomes: Outcome) -> ScriptedGateway:
        """Queue behaviours for the next calls of ``operation``, consumed in order."""
        for outcome in outcomes:
            _check(operation, outcome)
        self._scripts.setdefault(operation, []).extend(outcomes)
        return self

    def scripted(self, operation: str) -> list[Outcome]:
        """What is still queued for ``operation``."""
        return list(self._scripts.get(operation, []))

    def clear_scripts(self) -> None:
        self._scripts.clear()

    def hold(self, operation: str, *, after: bool = False) -> Gate:
        """Stop the next call of ``operation`` at a ``Gate`` until the test releases it:
        before the provider acts, or with ``after`` once it acted (the answer in flight)."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation: {operation}")
        gate = Gate(operation, after=after)
        self._gates[operation] = gate
        return gate

    def random_mode(
        self,
        rng: random.Random | None,
        *,
        fail_before: float = 0.0,
        lose_response: float = 0.0,
        rate_limited: float = 0.0,
        invalid: float = 0.0,
        decline: float = 0.0,
        requires_action: float = 0.0,
        slow: float = 0.0,
        slow_seconds: float = 0.05,
        operations: Iterable[str] | None = None,
    ) -> ScriptedGateway:
        """Draw a behaviour for every call with nothing scripted, from ``rng`` (seeded, so a
        failing run can be replayed). ``decline`` / ``requires_action`` apply only where
        they fit (authorize; decline also refund and attach). ``None`` turns it off."""
        self._rng = rng
        self._chance_ops = OPERATIONS if operations is None else frozenset(operations)
        unknown = self._chance_ops - OPERATIONS
        if unknown:
            raise ValueError(f"unknown operations: {sorted(unknown)}")
        self._chances = [
            (Outcome.fail_before(), fail_before),
            (Outcome.lose_response(), lose_response),
            (Outcome.rate_limited(0.01), rate_limited),
            (Outcome.invalid(), invalid),
            (Outcome.decline("card_declined"), decline),
            (Outcome.requires_action(), requires_action),
            (Outcome.slow(slow_seconds), slow),
        ]
        if sum(p for _, p in self._chances) > 1.0:
            raise ValueError("the probabilities add up to more than 1")
        return self

    def _next_outcome(self, operation: str) -> Outcome:
        queue = self._scripts.get(operation)
        if queue:
            return queue.pop(0)
        if self._rng is None or operation not in self._chance_ops:
            return Outcome.succeed()
        draw = self._rng.random()
        for outcome, chance in self._chances:
            if draw < chance:
                allowed = _ONLY_FOR.get(outcome.kind)
                if allowed is None or operation in allowed:
                    return outcome
                return Outcome.succeed()
            draw -= chance
        return Outcome.succeed()

    # == the seam ===========================================================================
    async def _call(
        self,
        operation: str,
        key: str | None,
        fingerprint: str,
        act: Callable[[Outcome], Any],
    ) -> Any:
        """One call: count it, wait, fail before, replay or act, store, lose the answer."""
        self.calls[operation] += 1
        outcome = self._next_outcome(operation)
        gate = self._gates.pop(operation, None)
        delay = self.latency + outcome.delay
        if delay:
            await asyncio.sleep(delay)
        if gate is not None and not gate.after:
            await gate._pass()
        replay = False
        try:
            if outcome.kind == "fail_before":
                raise GatewayUnavailable(f"{self.name} {operation}: {outcome.message}")
            if outcome.kind == "rate_limited":
                raise GatewayRateLimited(
                    f"{self.name} {operation}: HTTP 429", retry_after=outcome.retry_after
                )
            if outcome.kind == "invalid":
                raise GatewayInvalidRequest(
                    f"{self.name} {operation}: {outcome.message}", code=outcome.code
                )
            stored = self._remembered(key) if key is not None else None
            if stored is not None:
                if stored.operation != operation or stored.fingerprint != fingerprint:
                    raise GatewayInvalidRequest(
                        f"{self.name}: idempotency key {key!r} was used for another request",
                        code="idempotency_key_reused",
                    )
                replay = True
                self.replays[operation] += 1
                result = stored.result
            else:
                result = act(outcome)
                if key is not None:
                    self._keys[key] = _Stored(operation, fingerprint, self.now(), result)
        finally:
            self.log.append(CallRecord(operation, key, outcome.kind, replay, self.now()))
        if gate is not None and gate.after:
            await gate._pass()
        if outcome.delay_after:
            await asyncio.sleep(outcome.delay_after)
        if outcome.kind == "lose_response":
            raise GatewayUnavailable(f"{self.name} {operation}: {outcome.message}")
        return result

    def _remembered(self, key: str) -> _Stored | None:
        stored = self._keys.get(key)
        if stored is not None and self.now() - stored.at >= self.forget_keys_after:
            del self._keys[key]
            return None
        return stored

    def forget_keys(self) -> None:
        """Forget every idempotency key now (as if the retention period had passed)."""
        self._keys.clear()

    def remembers(self, key: str) -> bool:
        return self._remembered(key) is not None

    # == the ledger =========================================================================
    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_fake_{self._seq:06d}"

    def payment(self, reference: str) -> ProviderPayment:
        """A payment by the provider's id (``GatewayInvalidRequest`` if unknown)."""
        found = self.payments.get(reference)
        if found is None:
            raise GatewayInvalidRequest(
                f"{self.name}: no such payment {reference!r}", code="resource_missing"
            )
        return found

    def payments_for(self, our_reference: str) -> list[ProviderPayment]:
        """Every provider payment made for our intent, oldest first."""
        return [p for p in self.payments.values() if p.our_reference == our_reference]

    def live_payments(self, our_reference: str) -> list[ProviderPayment]:
        """Payments holding or taking money for our intent: more than one is a double charge."""
        return [p for p in self.payments_for(our_reference) if p.live]

    def charged_twice(self) -> list[str]:
        """Our references with more than one live payment (should always be empty)."""
        live = Counter(p.our_reference for p in self.payments.values() if p.live)
        return sorted(ref for ref, n in live.items() if n > 1)

    def money_captured(self, our_reference: str) -> int:
        return sum(p.amount_captured for p in self.payments_for(our_reference))

    def money_authorized(self, our_reference: str) -> int:
        """Held and not yet captured (requires_capture)."""
        return sum(
            p.amount_authorized
            for p in self.payments_for(our_reference)
            if p.status == GatewayStatus.REQUIRES_CAPTURE
        )

    def money_refunded(self, our_reference: str) -> int:
        """Refunds that succeeded (pending ones are in ``refunds_for``)."""
        return sum(p.amount_refunded for p in self.payments_for(our_reference))

    def refunds_for(self, our_reference: str) -> list[ProviderRefund]:
        return [r for p in self.payments_for(our_reference) for r in p.refunds]

    def refund_by_id(self, refund_id: str) -> ProviderRefund | None:
        """A refund by the provider's id or by our refund id."""
        for payment in self.payments.values():
            for refund in payment.refunds:
                if refund_id in (refund.id, refund.our_id):
                    return refund
        return None

    def total_charged(self, currency: str | None = None) -> int:
        """Captured minus refunded, over every payment (of ``currency`` if given)."""
        return sum(
            p.amount_captured - p.amount_refunded
            for p in self.payments.values()
            if currency is None or p.currency == currency.upper()
        )

    def add_card(self, details: CardDetails) -> None:
        """Make a token known (any ``tok_...`` token is known anyway)."""
        self.cards[details.token] = details

    def _find_payment(self, reference: str) -> ProviderPayment:
        """By the provider's id, else the latest payment for our reference."""
        if reference in self.payments:
            return self.payments[reference]
        mine = self.payments_for(reference)
        if not mine:
            raise GatewayInvalidRequest(
                f"{self.name}: no such payment {reference!r}", code="resource_missing"
            )
        return mine[-1]

    # == the provider's own moves (the payer, the dashboard, the bank) ======================
    def complete_action(self, reference: str, success: bool = True) -> ProviderPayment:
        """The payer finishes 3-D Secure (or a ``processing`` payment settles), by provider id
        or our reference; records the webhook."""
        waiting = (GatewayStatus.REQUIRES_ACTION, GatewayStatus.PROCESSING)
        if reference in self.payments:
            payment = self.payments[reference]
        else:
            found = [p for p in self.payments_for(reference) if p.status in waiting]
            if not found:
                raise ValueError(f"no payment waiting for the payer for {reference!r}")
            payment = found[-1]
        if payment.status not in waiting:
            raise ValueError(f"payment {payment.id} is {payment.status}, not waiting")
        payment.next_action = None
        if success:
            self._approve(payment)
        else:
            self._decline(payment, Decline("authentication_failed", "3-D Secure failed."))
        self._emit_payment(payment)
        return payment

    def settle_refund(self, refund_id: str, success: bool = True) -> ProviderRefund:
        """A pending refund succeeds or fails (by the provider's id or ours)."""
        refund = self.refund_by_id(refund_id)
        if refund is None or refund.status != "pending":
            raise ValueError(f"no pending refund {refund_id!r}")
        refund.status = "succeeded" if success else "failed"
        refund.failure_reason = None if success else "lost_or_stolen_card"
        self._emit_refund(refund)
        return refund

    def dashboard_refund(
        self, reference: str, amount: int | None = None, our_id: str | None = None
    ) -> ProviderRefund:
        """A refund made at the provider, not through paymux (a merchant in the dashboard)."""
        payment = self._find_payment(reference)
        left = payment.amount_captured - payment.amount_refund_reserved
        refund = self._new_refund(payment, left if amount is None else amount, None, our_id)
        refund.status = "succeeded"
        self._emit_refund(refund)
        return refund

    def expire_authorization(self, reference: str) -> ProviderPayment:
        """An uncaptured authorization lapses (after about 7 days at a real provider)."""
        payment = self._find_payment(reference)
        if payment.status != GatewayStatus.REQUIRES_CAPTURE:
            raise ValueError(f"payment {payment.id} is {payment.status}")
        payment.status = GatewayStatus.CANCELED
        self._emit_payment(payment)
        return payment

    def open_dispute(
        self, reference: str, amount: int | None = None, reason: str = "fraudulent"
    ) -> ProviderEvent:
        payment = self._find_payment(reference)
        return self._emit(
            "dispute.updated",
            {
                "object": "dispute",
                "id": self._id("dp"),
                "payment": payment.id,
                "amount": payment.amount_captured if amount is None else amount,
                "currency": payment.currency,
                "reason": reason,
                "status": "needs_response",
            },
        )

    def emit(self, obj: ProviderPayment | ProviderRefund) -> ProviderEvent:
        """Record the object's current state as an event: after a test changed the ledger by
        hand (a provider-side change no method above covers)."""
        if isinstance(obj, ProviderRefund):
            return self._emit("refund.updated", obj.snapshot())
        return self._emit("payment.updated", obj.snapshot())

    # -- state changes -------------------------------------------------------------------
    def _approve(self, payment: ProviderPayment) -> None:
        payment.decline = None
        payment.amount_authorized = payment.amount
        if payment.capture:
            payment.status = GatewayStatus.SUCCEEDED
            payment.amount_captured = payment.amount
        else:
            payment.status = GatewayStatus.REQUIRES_CAPTURE

    def _decline(self, payment: ProviderPayment, decline: Decline) -> None:
        payment.decline = decline
        payment.amount_authorized = 0
        # An opened payment (Stripe) can be confirmed again; else the payment is over.
        payment.status = REQUIRES_PAYMENT_METHOD if self.open_payments else GatewayStatus.FAILED

    def _new_refund(
        self, payment: ProviderPayment, amount: int, reason: str | None, our_id: str | None
    ) -> ProviderRefund:
        if payment.status != GatewayStatus.SUCCEEDED:
            raise GatewayInvalidRequest(
                f"{self.name}: payment {payment.id} is {payment.status}, nothing to refund",
                code="charge_not_captured",
            )
        left = payment.amount_captured - payment.amount_refund_reserved
        if amount <= 0 or amount > left:
            raise GatewayInvalidRequest(
                f"{self.name}: refund of {amount} is more than the {left} left on {payment.id}",
                code="amount_too_large",
            )
        refund = ProviderRefund(
            id=self._id("re"),
            payment_id=payment.id,
            our_id=our_id,
            amount=amount,
            currency=payment.currency,
            status="pending",
            reason=reason,
            created=self.now(),
        )
        payment.refunds.append(refund)
        return refund

    # -- events --------------------------------------------------------------------------
    def _emit(self, type_: str, obj: dict[str, Any]) -> ProviderEvent:
        event = ProviderEvent(self._id("evt"), type_, self.now(), obj)
        self.events.append(event)
        return event

    def _emit_payment(self, payment: ProviderPayment, type_: str = "payment.updated") -> None:
        self._emit(type_, payment.snapshot())

    def _emit_refund(self, refund: ProviderRefund) -> None:
        self._emit("refund.updated", refund.snapshot())

    # -- results -------------------------------------------------------------------------
    def _result(self, payment: ProviderPayment) -> GatewayResult:
        return payment_result(payment.snapshot())

    # == Gateway Protocol ===================================================================
    def supports_currency(self, currency: str) -> bool:
        return self.currencies is None or currency.upper() in self.currencies

    def amount_problem(self, amount: Money) -> str | None:
        if not self.supports_currency(amount.currency):
            return f"{self.name} does not take {amount.currency}"
        return None

    async def aclose(self) -> None:
        # Nothing to release; the provider outlives any one paymux (tests restart paymux).
        self.closed += 1

    async def check_credentials(self) -> CredentialsCheck:
        """The provider accepts the credentials (read-only: nothing scripted, nothing kept)."""
        self.calls["check_credentials"] += 1
        return CredentialsCheck(ok=True)

    def reusable_test_token(self, token: str) -> bool:
        return token in self.shared_tokens

    def browser_params(self, reference: str) -> dict[str, Any]:
        return {"gateway": self.name, "publishable_key": f"pk_{self.name}", "reference": reference}

    def _card(self, token: str) -> CardDetails | None:
        if token in self.cards:
            return self.cards[token]
        if token.startswith("tok_"):
            digest = hashlib.sha256(token.encode()).hexdigest()
            return CardDetails(
                token=token,
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=2034,
                fingerprint=digest[:16],
                country="US",
                funding="credit",
            )
        return None

    async def describe_payment_method(self, token: str) -> CardDetails | None:
        def act(outcome: Outcome) -> CardDetails | None:
            return self._card(token)

        found: CardDetails | None = await self._call("describe_payment_method", None, "", act)
        return found

    async def open_payment(
        self, amount: Money, reference: str, capture: bool, *, idempotency_key: str
    ) -> OpenedPayment | None:
        if not self.open_payments:
            return None

        def act(outcome: Outcome) -> OpenedPayment:
            payment = ProviderPayment(
                id=self._id("pay"),
                our_reference=reference,
                currency=amount.currency,
                amount=amount.amount,
                capture=capture,
                status=REQUIRES_PAYMENT_METHOD,
                created=self.now(),
            )
            self.payments[payment.id] = payment
            self._emit_payment(payment, "payment.created")
            return OpenedPayment(payment.id, {"client_secret": f"{payment.id}_secret"})

        fingerprint = _fingerprint(amount.amount, amount.currency, reference, capture)
        opened: OpenedPayment = await self._call("open_payment", idempotency_key, fingerprint, act)
        return opened

    async def update_payment(
        self, reference: str, amount: Money, capture: bool, *, idempotency_key: str
    ) -> None:
        def act(outcome: Outcome) -> None:
            if not self.supports_update:
                raise GatewayInvalidRequest(
                    f"{self.name} can't change a payment", code="update_unsupported"
                )
            payment = self.payment(reference)
            if payment.status != REQUIRES_PAYMENT_METHOD:
                raise GatewayInvalidRequest(
                    f"{self.name}: payment {reference} is {payment.status}",
                    code="payment_intent_unexpected_state",
                )
            payment.amount, payment.currency, payment.capture = (
                amount.amount,
                amount.currency,
                capture,
            )
            self._emit_payment(payment)

        fingerprint = _fingerprint(reference, amount.amount, amount.currency, capture)
        await self._call("update_payment", idempotency_key, fingerprint, act)

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> GatewayResult:
        def act(outcome: Outcome) -> GatewayResult:
            if self._card(request.payment_method_token) is None:
                raise GatewayInvalidRequest(
                    f"{self.name}: no such payment method {request.payment_method_token!r}",
                    code="resource_missing",
                )
            if request.gateway_reference is not None:
                payment = self.payment(request.gateway_reference)
                if payment.status != REQUIRES_PAYMENT_METHOD:
                    raise GatewayInvalidRequest(
                        f"{self.name}: payment {payment.id} is {payment.status}, "
                        "it can't be confirmed",
                        code="payment_intent_unexpected_state",
                    )
                if (payment.amount, payment.currency) != (
                    request.amount.amount,
                    request.amount.currency,
                ):
                    raise GatewayInvalidRequest(
                        f"{self.name}: payment {payment.id} was opened for another amount",
                        code="amount_mismatch",
                    )
                payment.capture = request.capture
            else:
                payment = ProviderPayment(
                    id=self._id("pay"),
                    our_reference=request.reference,
                    currency=request.amount.currency,
                    amount=request.amount.amount,
                    capture=request.capture,
                    status=GatewayStatus.PROCESSING,
                    created=self.now(),
                )
                self.payments[payment.id] = payment
            payment.token = request.payment_method_token
            payment.customer = request.customer_token
            payment.confirmed_with.append(idempotency_key)
            if outcome.kind == "decline":
                code = outcome.gateway_code or "card_declined"
                self._decline(payment, Decline(code, outcome.message or "Your card was declined."))
            elif outcome.kind == "requires_action":
                payment.status = GatewayStatus.REQUIRES_ACTION
                payment.next_action = {
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": f"https://{self.name}.example/3ds/{payment.id}"},
                }
            elif outcome.kind == "pending":
                payment.status = GatewayStatus.PROCESSING
            else:
                self._approve(payment)
            self._emit_payment(payment)
            return replace(self._result(payment), **self.answer_fields)

        fingerprint = _fingerprint(
            request.amount.amount,
            request.amount.currency,
            request.payment_method_token,
            request.capture,
            request.reference,
            request.customer_token,
            request.gateway_reference,
        )
        result: GatewayResult = await self._call("authorize", idempotency_key, fingerprint, act)
        return result

    async def capture(
        self, reference: str, amount: Money, *, idempotency_key: str
    ) -> GatewayResult:
        def act(outcome: Outcome) -> GatewayResult:
            payment = self.payment(reference)
            if payment.status != GatewayStatus.REQUIRES_CAPTURE:
                raise GatewayInvalidRequest(
                    f"{self.name}: payment {reference} is {payment.status}, not capturable",
                    code="payment_intent_unexpected_state",
                )
            if amount.currency != payment.currency:
                raise GatewayInvalidRequest(
                    f"{self.name}: capture in {amount.currency} of a {payment.currency} payment",
                    code="currency_mismatch",
                )
            if not 0 < amount.amount <= payment.amount_authorized:
                raise GatewayInvalidRequest(
                    f"{self.name}: can't capture {amount.amount} of "
                    f"{payment.amount_authorized} authorized",
                    code="amount_too_large",
                )
            payment.amount_captured = amount.amount  # the rest is released
            payment.status = GatewayStatus.SUCCEEDED
            self._emit_payment(payment)
            return self._result(payment)

        fingerprint = _fingerprint(reference, amount.amount, amount.currency)
        result: GatewayResult = await self._call("capture", idempotency_key, fingerprint, act)
        return result

    async def void(self, reference: str, *, idempotency_key: str) -> GatewayResult:
        def act(outcome: Outcome) -> GatewayResult:
            payment = self.payment(reference)
            if payment.status in (
                GatewayStatus.REQUIRES_CAPTURE,
                GatewayStatus.REQUIRES_ACTION,
                REQUIRES_PAYMENT_METHOD,
            ):
                payment.status = GatewayStatus.CANCELED
                payment.next_action = None
                self._emit_payment(payment)
            # Captured, failed, already canceled: nothing to void, the truth is the answer.
            return self._result(payment)

        result: GatewayResult = await self._call(
            "void", idempotency_key, _fingerprint(reference), act
        )
        return result

    async def refund(
        self, reference: str, amount: Money, reason: str | None, *, idempotency_key: str
    ) -> GatewayRefund:
        ours = idempotency_key.split(":")[0]

        def act(outcome: Outcome) -> GatewayRefund:
            payment = self.payment(reference)
            if amount.currency != payment.currency:
                raise GatewayInvalidRequest(
                    f"{self.name}: refund in {amount.currency} of a {payment.currency} payment",
                    code="currency_mismatch",
                )
            refund = self._new_refund(
                payment, amount.amount, reason, ours if ours.startswith("re_") else None
            )
            if outcome.kind == "decline":
                refund.status = "failed"
                refund.failure_reason = outcome.gateway_code
            elif outcome.kind != "pending":
                refund.status = "succeeded"
            self._emit_refund(refund)
            return refund_result(refund.snapshot())

        fingerprint = _fingerprint(reference, amount.amount, amount.currency, reason)
        result: GatewayRefund = await self._call("refund", idempotency_key, fingerprint, act)
        return result

    async def retrieve(self, reference: str) -> GatewayResult:
        def act(outcome: Outcome) -> GatewayResult:
            return self._result(self.payment(reference))

        result: GatewayResult = await self._call("retrieve", None, "", act)
        return result

    async def lookup(self, our_reference: str, idempotency_key: str) -> GatewayResult | None:
        """The payment confirmed with this key; else the latest confirmed payment for our
        reference, a live one first; None if no charge was ever attempted for it."""

        def act(outcome: Outcome) -> GatewayResult | None:
            for payment in self.payments.values():
                if idempotency_key in payment.confirmed_with:
                    return self._result(payment)
            tried = [p for p in self.payments_for(our_reference) if p.confirmed_with]
            live = [p for p in tried if p.live]
            found = live or tried
            return self._result(found[-1]) if found else None

        result: GatewayResult | None = await self._call("lookup", None, "", act)
        return result

    async def retrieve_refund(
        self, reference: str | None, *, our_id: str, payment_reference: str
    ) -> GatewayRefund | None:
        def act(outcome: Outcome) -> GatewayRefund | None:
            payment = self.payments.get(payment_reference)
            for refund in payment.refunds if payment else []:
                if (reference is not None and refund.id == reference) or (
                    reference is None and refund.our_id == our_id
                ):
                    return refund_result(refund.snapshot())
            if reference is not None:  # by its own id, whatever payment it is on
                found = self.refund_by_id(reference)
                return refund_result(found.snapshot()) if found else None
            return None

        result: GatewayRefund | None = await self._call("retrieve_refund", None, "", act)
        return result

    async def create_customer(
        self, reference: str, email: str | None, *, idempotency_key: str
    ) -> str:
        def act(outcome: Outcome) -> str:
            customer = self._id("cus")
            self.customers[customer] = reference
            return customer

        result: str = await self._call(
            "create_customer", idempotency_key, _fingerprint(reference, email), act
        )
        return result

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline:
        def act(outcome: Outcome) -> CardDetails | Decline:
            card = self._card(token)
            if card is None or customer_token not in self.customers:
                raise GatewayInvalidRequest(
                    f"{self.name}: no such payment method or customer", code="resource_missing"
                )
            if outcome.kind == "decline":
                return Decline(
                    outcome.gateway_code or "card_declined",
                    outcome.message or "Your card was declined.",
                )
            self.attached[token] = customer_token
            return card

        result: CardDetails | Decline = await self._call(
            "attach_payment_method", idempotency_key, _fingerprint(token, customer_token), act
        )
        return result

    async def setup(self, request: SetupRequest, *, idempotency_key: str) -> SetupResult:
        """Saving a card without a charge: the provider's attach (no 3-D Secure modelled)."""
        outcome = await self.attach_payment_method(
            request.payment_method_token, request.customer_token, idempotency_key=idempotency_key
        )
        if isinstance(outcome, Decline):
            return SetupResult(GatewayStatus.FAILED, None, decline=outcome)
        return SetupResult(GatewayStatus.SUCCEEDED, outcome.token, card=outcome)

    async def retrieve_setup(self, reference: str, *, idempotency_key: str) -> SetupResult:
        card = self._card(reference)
        if card is None or reference not in self.attached:
            raise GatewayInvalidRequest(f"{self.name}: no such setup", code="resource_missing")
        return SetupResult(GatewayStatus.SUCCEEDED, reference, card=card)

    async def detach_payment_method(self, token: str, *, idempotency_key: str) -> None:
        def act(outcome: Outcome) -> None:
            if self.attached.pop(token, None) is None:
                raise GatewayInvalidRequest(
                    f"{self.name}: payment method {token!r} is not attached to a customer",
                    code="payment_method_not_attached",
                )

        await self._call("detach_payment_method", idempotency_key, _fingerprint(token), act)

    # -- webhooks: the connector's side --------------------------------------------------
    async def verify_webhook(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        event = verify_signature(
            body,
            headers.get("fake-signature"),
            [self.webhook_secret],
            tolerance=self.webhook_tolerance,
            now=self.now(),
        )
        return InboundEvent(
            gateway=self.name, event_id=str(event["id"]), type=str(event["type"]), payload=event
        )

    def interpret_event(
        self, event: InboundEvent
    ) -> PaymentUpdate | RefundUpdate | DisputeUpdate | None:
        obj = (event.payload.get("data") or {}).get("object") or {}
        kind = obj.get("object")
        if event.type == "payment.updated" and kind == "payment":
            if obj.get("status") == REQUIRES_PAYMENT_METHOD and not obj.get("decline_code"):
                return None  # opened or changed, never confirmed: no news for paymux
            return PaymentUpdate(reference=obj.get("reference"), result=payment_result(obj))
        if event.type == "refund.updated" and kind == "refund":
            return RefundUpdate(refund_result(obj))
        if event.type == "dispute.updated" and kind == "dispute":
            return DisputeUpdate(
                reference=str(obj["id"]),
                payment_reference=obj.get("payment"),
                amount=int(obj["amount"]),
                currency=str(obj["currency"]),
                reason=obj.get("reason"),
                status=str(obj["status"]),
            )
        return None  # payment.created: nothing to act on

    # -- webhooks: the provider's side ---------------------------------------------------
    def pending_webhooks(self) -> list[ProviderEvent]:
        """Events not yet marked delivered, in the order they happened."""
        return [e for e in self.events if e.id not in self.delivered]

    def take_webhooks(self) -> list[ProviderEvent]:
        """The pending events, marked delivered (deliver them as the test likes)."""
        events = self.pending_webhooks()
        self.delivered.update(e.id for e in events)
        return events

    def webhook_request(
        self, event: ProviderEvent, *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(headers, body) for one delivery, signed now (or at ``timestamp``), with our
        secret unless told another (to see a wrong signature refused)."""
        body = json.dumps(event.payload()).encode()
        t = int(self.now()) if timestamp is None else timestamp
        header = sign_header(body, secret or self.webhook_secret, t)
        return {"content-type": "application/json", "fake-signature": header}, body

    async def deliver_webhook(
        self, inbound: _Inbound, event: ProviderEvent, *, apply: bool = True
    ) -> Any:
        """Post ``event`` through paymux's real inbound pipeline: ``receive`` (verify,
        store), then ``apply`` unless it was a duplicate. Returns what ``receive`` did."""
        headers, body = self.webhook_request(event)
        received = await inbound.receive(self.name, headers, body)
        self.delivered.add(event.id)
        if apply and not getattr(received, "duplicate", False):
            await inbound.apply(received.inbox_id)
        return received

    # -- registry ------------------------------------------------------------------------
    def registry(self, *others: Any) -> GatewayRegistry:
        """A GatewayRegistry with this gateway as the default (plus ``others``)."""
        registry = GatewayRegistry()
        for gateway in (self, *others):
            registry[gateway.name] = gateway
        registry.default = self.name
        return registry


def _check(operation: str, outcome: Outcome) -> None:
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r} (one of {sorted(OPERATIONS)})")
    allowed = _ONLY_FOR.get(outcome.kind)
    if allowed is not None and operation not in allowed:
        raise ValueError(f"{outcome.kind} does not fit {operation} (only {sorted(allowed)})")


# == the wire format (pure): the connector's "transformers" ================================
_AUTHORIZED = frozenset({GatewayStatus.REQUIRES_CAPTURE, GatewayStatus.SUCCEEDED})


def payment_result(obj: dict[str, Any]) -> GatewayResult:
    """A payment snapshot as paymux sees it. A payment waiting for a payment method reads as
    Stripe's ``requires_payment_method`` does: OPEN if nothing was tried on it yet (opened,
    maybe updated), FAILED with the decline if its last confirm was declined."""
    raw = str(obj["status"])
    decline = None
    if raw == REQUIRES_PAYMENT_METHOD:
        status = GatewayStatus.FAILED if obj.get("decline_code") else GatewayStatus.OPEN
    else:
        status = GatewayStatus(raw)
    if status is GatewayStatus.FAILED:
        decline = Decline(
            str(obj.get("decline_code") or "card_declined"),
            str(obj.get("decline_message") or "Your card was declined."),
        )
    return GatewayResult(
        status=status,
        reference=str(obj["id"]),
        amount_authorized=int(obj.get("amount_authorized") or 0) if status in _AUTHORIZED else 0,
        amount_captured=int(obj.get("amount_captured") or 0),
        decline=decline,
        next_action=obj.get("next_action") if status is GatewayStatus.REQUIRES_ACTION else None,
        raw={"id": obj["id"], "status": raw},
    )


def refund_result(obj: dict[str, Any]) -> GatewayRefund:
    return GatewayRefund(
        status=str(obj["status"]),
        reference=str(obj["id"]),
        amount=int(obj["amount"]),
        failure_reason=obj.get("failure_reason"),
        payment_reference=obj.get("payment"),
        our_id=obj.get("our_id"),
        reason=obj.get("reason"),
    )
