"""The attempt engine: every gateway call that moves money, on every path, goes through here.

The synchronous API path, the recovery jobs, the reconciler and inbound webhooks share it:
one retry policy, one way to record an outcome, one way to abandon a call, one release of
reservations. The rules themselves are pure (domain/attempts.py); this module reads rows,
applies the rules under the intent's lock, and writes the result with its events.

1. ``start_*`` (in the caller's transaction, committed before the call): the intent moves to
   ``processing`` by a conditional UPDATE (two concurrent requests can't both start) and the
   attempt is written with the state it started from and the request's recovery point.
2. ``execute``: the call, with no transaction open, under ``call_with_retries``. A decline is
   an outcome; an outage leaves the attempt pending and schedules ``recover``; a refusal
   (4xx) abandons it.
3. ``settle_payment`` / ``settle_refund``: the outcome, applied under the intent's lock.

``recover`` settles a pending attempt by *asking* the provider (retrieve, lookup,
retrieve_refund). It sends the operation again only when the provider's answer shows it never
happened, and an authorization or refund only while the provider still remembers its
idempotency key; past that it abandons the attempt rather than risk a second charge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ClauseElement

from paymux.domain import attempts as rules
from paymux.domain.attempts import IntentState, Operation, ProviderStatus, Report
from paymux.domain.errors import PaymuxError, card_error
from paymux.domain.ids import new_id
from paymux.domain.states import PaymentIntentStatus as S
from paymux.domain.states import RefundStatus, check_operation
from paymux.fraud import velocity
from paymux.gateways.base import (
    AuthorizeRequest,
    Gateway,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayRefund,
    GatewayResult,
    GatewayUnavailable,
)
from paymux.gateways.browser_sdk import with_sdk_url
from paymux.jobs.queue import enqueue
from paymux.money import Money
from paymux.services.context import Context, columns_of, emit, flush_pending, ref_key
from paymux.services.gateway_calls import call_with_retries, schedule_settlement
from paymux.services.idempotency import record_recovery_point
from paymux.services.three_d_secure import (
    is_recurring,
    record_network_reference,
    requested_option,
)
from paymux.services.views import payment_intent_view, payment_method_view, refund_view
from paymux.storage.driver import Statement, fetchrow, insert_of, later
from paymux.storage.keyed import UNINDEXED_SQL, unindexed
from paymux.storage.models import Customer, GatewayAttempt, PaymentIntent, PaymentMethod, Refund

__all__ = ["AttemptEngine", "intent_view", "state_of"]

log = logging.getLogger(__name__)
R = TypeVar("R")

PENDING, SETTLED, ABANDONED = "pending", "settled", "abandoned"

# The start's and the settle's statements run on the database driver (storage/driver.py) in
# the caller's transaction: their SQL is written once (an UPDATE per set of changed columns),
# with no ORM load, identity map or unit of work, and none of SQLAlchemy's execution layers.
# A row comes back as a ``_Row`` whose attributes are the model's, which the pure rules and
# the views read as they read the model; what they change is written by one UPDATE
# (``_store``). Columns are bound and read with the model's types (JSON, SQLite's booleans),
# as the ORM binds and reads them. Each is preceded by ``flush_pending``: the autoflush that
# ``session.execute`` did.
_ATTEMPT_COLUMNS = columns_of(GatewayAttempt)
_ATTEMPT_TABLE = cast(Table, GatewayAttempt.__table__)
_PI_TABLE = cast(Table, PaymentIntent.__table__)
_PI_COLUMN = dict(columns_of(PaymentIntent))  # attribute -> column name
_PI_LABELLED = tuple(_PI_TABLE.c[column].label(key) for key, column in _PI_COLUMN.items())
_LOCKED_INTENT = Statement.of(
    select(*_PI_LABELLED).where(_PI_TABLE.c.id == bindparam("b_pi_id")).with_for_update()
)


def _returning(columns: tuple[tuple[str, str], ...]) -> str:
    """A RETURNING clause of every column, named by its attribute."""
    return "RETURNING " + ", ".join(f'{column} AS "{key}"' for key, column in columns)


_ATTEMPT_RESULTS = tuple(_ATTEMPT_TABLE.c[column].type for _, column in _ATTEMPT_COLUMNS)
_ATTEMPT_KEYS = tuple(key for key, _ in _ATTEMPT_COLUMNS)
_ATTEMPT_INSERT = insert_of(GatewayAttempt, _ATTEMPT_KEYS)
# The attempt's status compared on the row its key found (``keyed.unindexed``): a plan
# PostgreSQL kept without statistics walked the (status, updated_us) index, every attempt
# still pending (67-81 pages a settle among 3,000 pending after an outage).
_PENDING_ON_THE_ROW = f"{UNINDEXED_SQL.format(column='status')} = '{PENDING}'"
_SETTLE_ATTEMPT = Statement(
    f"UPDATE gateway_attempts SET status = '{SETTLED}', result = :b_result, updated_us = :b_now "  # noqa: S608
    f"WHERE id = :b_id AND object_id = :b_object_id AND {_PENDING_ON_THE_ROW} "
    + _returning(_ATTEMPT_COLUMNS),
    binds={"b_result": _ATTEMPT_TABLE.c.result.type},
    results=_ATTEMPT_RESULTS,
    columns=_ATTEMPT_KEYS,
)
_PI_RESULTS = tuple(_PI_TABLE.c[column].type for column in _PI_COLUMN.values())
_PI_KEYS = tuple(_PI_COLUMN)
# PostgreSQL: ``_LOCKED_INTENT`` and ``_SETTLE_ATTEMPT`` in one statement (one round trip
# where they took two; issue 10). The lock order stays the intent's row, then the attempt's:
# the attempt's UPDATE is gated on the locked intent (``EXISTS (SELECT 1 FROM i)``, an
# InitPlan run before its scan), so it touches the attempt only once the intent is locked.
# Its snapshot is taken before any wait for the intent's lock, but an UPDATE (as a FOR
# UPDATE) re-checks its condition on a row's latest committed version (READ COMMITTED): an
# attempt that another transaction settled meanwhile no longer matches ``status =
# 'pending'`` and is left alone, and the intent read is its latest version.
# (tests/integration/test_settle_one_statement.py). The attempt's columns are ``a_``-named.
_LOCKED_COLUMNS = ", ".join(f'{column} AS "{key}"' for key, column in _PI_COLUMN.items())
_SETTLED_COLUMNS = ", ".join(f'{column} AS "a_{key}"' for key, column in _ATTEMPT_COLUMNS)
_LOCK_AND_SETTLE = Statement(
    f"WITH i AS MATERIALIZED (SELECT {_LOCKED_COLUMNS} FROM payment_intents "  # noqa: S608
    f"WHERE id = :b_pi_id FOR UPDATE), a AS (UPDATE gateway_attempts SET status = "
    f"'{SETTLED}', result = :b_result, updated_us = :b_now WHERE id = :b_id AND object_id = "
    f":b_object_id AND {_PENDING_ON_THE_ROW} AND EXISTS (SELECT 1 FROM i) RETURNING "
    f"{_SETTLED_COLUMNS}) SELECT * FROM i LEFT JOIN a ON true",
    binds={"b_result": _ATTEMPT_TABLE.c.result.type},
    results=_PI_RESULTS + _ATTEMPT_RESULTS,
    columns=_PI_KEYS + tuple(f"a_{key}" for key in _ATTEMPT_KEYS),
)
# start_if_unchanged's UPDATE ... RETURNING, by the attributes it also changes.
_START_UNCHANGED: dict[tuple[str, ...], Statement] = {}


class _Row:
    """A row as a plain mutable object: its attributes are the model's (``metadata_``), so the
    rules and views that read a model read it alike. Never added to a session."""

    def __init__(self, mapping: Any) -> None:
        self.__dict__.update(mapping)


def _intent_of(values: Mapping[str, Any]) -> tuple[PaymentIntent, dict[str, Any]]:
    """The intent of a driver row's values (a ``_Row`` typed as the model for the code that
    reads it) and a copy of its values as read, for ``_store``."""
    return cast(PaymentIntent, _Row(values)), dict(values)


async def _late_three_d_secure(s: AsyncSession, pi: PaymentIntent, result: GatewayResult) -> None:
    """Our call's answer arrived after the provider's webhook settled its attempt (PayPal's
    capture webhook can beat the capture's own answer): the webhook's object carries no
    3-D Secure result, risk (Stripe's outcome) or network transaction id; the answer does.
    Each kept when it is about the provider payment the intent stands on (the same
    reference) and none is recorded: never another confirmation's (tests/integration/
    test_late_three_d_secure.py). A risk kept so, the webhook having settled the fraud
    counts without it, is recorded with them too (``velocity.raise_risk``)."""
    if result.reference is None or result.reference != pi.gateway_reference:
        return
    if result.three_d_secure is not None and pi.three_d_secure is None:
        pi.three_d_secure = result.three_d_secure.as_dict()
    risk_level = result.risk_level if pi.risk_level is None else None
    risk_score = result.risk_score if pi.gateway_risk_score is None else None
    if risk_level:
        pi.risk_level = risk_level
    if risk_score is not None:
        pi.gateway_risk_score = risk_score
    if (risk_level or risk_score is not None) and pi.fraud_settle:
        # The webhook settled the card's velocity counts without the risk: raised now, so
        # the card's next payments see it (:gateway_risk_level:, :gateway_risk_score:).
        await velocity.raise_risk(
            s,
            pi.account_id,
            bool(pi.livemode),
            pi.fraud_settle,
            gateway_risk=risk_level or None,
            gateway_risk_score=risk_score,
        )
    if result.network_transaction_id and pi.setup_future_usage:  # set once, never moved
        await record_network_reference(s, pi, S(pi.status), result.network_transaction_id)


async def _store(s: AsyncSession, pi: PaymentIntent, before: dict[str, Any]) -> None:
    """Write what changed on a ``_Row`` intent since ``before`` (one UPDATE, none if nothing
    did; held on PostgreSQL until the next statement or the COMMIT: ``driver.later``), as
    the ORM's flush would, and take the new values as the next ``before``."""
    now = vars(pi)
    changed = {_PI_COLUMN[key]: now[key] for key in _PI_COLUMN if now[key] != before[key]}
    if not changed:
        return
    params = {f"v_{column}": value for column, value in changed.items()}
    params["b_id"] = before["id"]
    await flush_pending(s)
    await later(s, _store_statement(tuple(changed)), params)
    before.update({key: now[key] for key in _PI_COLUMN})


# ``_store``'s UPDATE, by the columns it changes (built once per set: a settle changes the
# same few columns every time).
_STORE: dict[tuple[str, ...], Statement] = {}


def _store_statement(columns: tuple[str, ...]) -> Statement:
    statement = _STORE.get(columns)
    if statement is None:
        c = _PI_TABLE.c
        statement = Statement(
            "UPDATE payment_intents SET "  # noqa: S608 (the model's column names)
            + ", ".join(f"{column} = :v_{column}" for column in columns)
            + " WHERE id = :b_id",
            binds={f"v_{column}": c[column].type for column in columns},
        )
        _STORE[columns] = statement
    return statement


def _start_unchanged_statement(keys: tuple[str, ...]) -> Statement:
    statement = _START_UNCHANGED.get(keys)
    if statement is None:
        c = _PI_TABLE.c
        sets = "".join(f", {_PI_COLUMN[key]} = :v_{key}" for key in keys)
        statement = Statement(
            f"UPDATE payment_intents SET status = '{S.PROCESSING.value}', "  # noqa: S608
            f"updated_us = :b_now{sets} "
            "WHERE id = :b_id AND status = :b_status "
            "AND confirm_count = :b_confirm_count " + _returning(tuple(_PI_COLUMN.items())),
            binds={f"v_{key}": c[_PI_COLUMN[key]].type for key in keys},
            results=_PI_RESULTS,
            columns=_PI_KEYS,
        )
        _START_UNCHANGED[keys] = statement
    return statement


def state_of(pi: PaymentIntent) -> IntentState:
    return IntentState(
        status=S(pi.status),
        amount=pi.amount,
        amount_capturable=pi.amount_capturable,
        amount_received=pi.amount_received,
        amount_refunded=pi.amount_refunded,
        amount_refund_pending=pi.amount_refund_pending,
    )


def _put_state(pi: PaymentIntent, state: IntentState) -> None:
    pi.status = state.status
    pi.amount_capturable = state.amount_capturable
    pi.amount_received = state.amount_received
    pi.amount_refunded = state.amount_refunded
    pi.amount_refund_pending = state.amount_refund_pending


def intent_view(ctx: Context, pi: PaymentIntent) -> dict[str, Any]:
    """The API view, with what the browser needs while the intent awaits a payment method."""
    extra = None
    if pi.status in (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION):
        gateway = ctx.cached_gateway(pi)
        if gateway is not None:
            client = {**gateway.browser_params(pi.id), **(pi.gateway_client or {})}
            extra = {"client": with_sdk_url(ctx.settings, client)}
    return payment_intent_view(pi, extra)


def report_of(result: GatewayResult) -> Report:
    return Report(result.status, result.amount_authorized, result.amount_captured)


def result_json(result: GatewayResult) -> dict[str, Any]:
    return {
        "status": str(result.status),
        "reference": result.reference,
        "amount_authorized": result.amount_authorized,
        "amount_captured": result.amount_captured,
        "decline": None
        if result.decline is None
        else {"gateway_code": result.decline.gateway_code, "message": result.decline.message},
    }


class AttemptEngine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Set by Paymux: billing's reaction to a settled payment of an invoice.
        self.invoice_hook: (
            Callable[[AsyncSession, PaymentIntent, tuple[str, ...]], Awaitable[None]] | None
        ) = None
        # Set by Paymux: billing's reaction to a refund that failed (a credit note's).
        self.refund_failed_hook: Callable[[AsyncSession, Refund], Awaitable[None]] | None = None

    # -- 1. start ---------------------------------------------------------------------------
    async def start_on_intent(
        self,
        s: AsyncSession,
        pi: PaymentIntent,
        operation: Operation,
        *,
        allowed_from: tuple[str, ...],
        idempotency_key: str,
        request: dict[str, Any],
        changes: dict[str, Any] | None = None,
        check: str | None = None,
    ) -> tuple[PaymentIntent, GatewayAttempt]:
        """Move ``pi`` to ``processing`` from one of ``allowed_from`` (one conditional UPDATE,
        so concurrent requests can't both start) and record the attempt."""
        now = self.ctx.now_us()
        from_status = pi.status
        started = await s.execute(
            update(PaymentIntent)
            # By key, the status checked on the row the key found (``keyed.unindexed``): as
            # ``status IN (...)``, a plan kept without statistics walked the (status,
            # authorized) index, every intent in the status (291 pages a capture among 3,000
            # awaiting capture; tests/integration/test_key_lookup_plans.py).
            .where(PaymentIntent.id == pi.id, unindexed(PaymentIntent.status).in_(allowed_from))
            .values(status=S.PROCESSING, updated_us=now, **(changes or {}))
            .returning(PaymentIntent.status)
        )
        if started.scalar_one_or_none() is None:
            await s.refresh(pi)
            check_operation(check or operation.value, pi.status)
            raise PaymuxError.of("payment_intent_unexpected_state", status=pi.status)
        await s.refresh(pi)
        attempt = await self._record_start(s, pi, operation, from_status, idempotency_key, request)
        return pi, attempt

    async def start_if_unchanged(
        self,
        s: AsyncSession,
        pi_id: str,
        account_id: str,
        operation: Operation,
        *,
        status: str,
        confirm_count: int,
        idempotency_key: str,
        request: dict[str, Any],
        changes: dict[str, Any] | None = None,
    ) -> tuple[PaymentIntent, GatewayAttempt] | None:
        """``start_on_intent`` for an intent read in an earlier transaction: moved to
        ``processing`` only if it is still in ``status`` at ``confirm_count`` (so the attempt's
        starting state and key are what that read saw), by one UPDATE that returns the row.
        None: it moved meanwhile (or is not there); the caller reads it again and uses
        ``start_on_intent``. ``changes`` are values (``confirm_count`` is known from the
        condition): the statement is built once per set of changed attributes, and the intent
        returned is a plain row object, not in the session (nothing to flush).
        ``account_id``: the account the caller read the intent as (its read checked it). The
        UPDATE names the row by its primary key, status and count, not the account: with
        ``account_id = :a`` in it, a plan made without statistics walked the account's intents
        through the (account, created) index (436 pages an UPDATE in issue 10's bench,
        docs/benchmarks.md); the row's account is checked after it (the transaction rolls
        back if it is not the caller's, which its read rules out)."""
        now = self.ctx.now_us()
        changes = changes or {}
        if any(isinstance(value, ClauseElement) for value in changes.values()):
            raise TypeError("start_if_unchanged takes values, not SQL expressions")
        keys = tuple(sorted(changes))
        params = {f"v_{key}": changes[key] for key in keys}
        params.update(
            b_id=pi_id,
            b_status=status,
            b_confirm_count=confirm_count,
            b_now=now,
        )
        await flush_pending(s)
        found = await fetchrow(s, _start_unchanged_statement(keys), params)
        if found is None:
            return None
        row, _ = _intent_of(cast(Any, found)._asdict())
        if row.account_id != account_id:  # the caller read it as the account's: never here
            raise RuntimeError("start_if_unchanged: the intent is another account's")
        attempt = await self._record_start(s, row, operation, status, idempotency_key, request)
        return row, attempt

    async def start_made(
        self,
        s: AsyncSession,
        pi: PaymentIntent,
        operation: Operation,
        *,
        idempotency_key: str,
        request: dict[str, Any],
        changes: dict[str, Any],
    ) -> tuple[PaymentIntent, GatewayAttempt]:
        """``start_if_unchanged`` for an intent that ``s`` itself made (a create with
        ``confirm=true``; ``pi`` is its row as written): no other transaction can see it, so
        it is as ``pi`` shows it, and nothing needs reading back. Its move to ``processing``
        (``changes`` are values) and the attempt's INSERT are both held (``driver.later``)
        and sent together with the transaction's next statement or its COMMIT: one round
        trip on PostgreSQL where the UPDATE ... RETURNING and the INSERT took two (issue
        10)."""
        if any(isinstance(value, ClauseElement) for value in changes.values()):
            raise TypeError("start_made takes values, not SQL expressions")
        row, before = _intent_of(cast(Any, pi)._asdict())
        from_status = str(pi.status)
        vars(row).update(changes, status=S.PROCESSING.value, updated_us=self.ctx.now_us())
        await _store(s, row, before)
        attempt = await self._record_start(s, row, operation, from_status, idempotency_key, request)
        return row, attempt

    async def _record_start(
        self,
        s: AsyncSession,
        pi: PaymentIntent,
        operation: Operation,
        from_status: str,
        idempotency_key: str,
        request: dict[str, Any],
    ) -> GatewayAttempt:
        """The started attempt's row (one INSERT, held on PostgreSQL until the transaction's
        next statement or its COMMIT: ``driver.later``; nothing catches its error), returned
        as a plain row object with the model's attributes (never in the session: nothing of
        it is flushed)."""
        now = self.ctx.now_us()
        row = {
            "id": new_id("att"),
            "account_id": pi.account_id,
            "gateway": pi.gateway,
            "connection_id": pi.connection_id,
            "operation": operation.value,
            "object_id": pi.id,
            "idempotency_key": idempotency_key,
            "status": PENDING,
            "from_status": from_status,
            "target": rules.target_of(operation, capture=captures_at_once(pi)),
            "request": request,
            "result": None,
            "error": None,
            "created_us": now,
            "updated_us": now,
        }
        await flush_pending(s)
        await later(s, _ATTEMPT_INSERT, row)
        await record_recovery_point(s, f"{operation.value}_started", pi.id)
        return cast(GatewayAttempt, _Row(row))

    def _attempt(
        self,
        account_id: str,
        gateway: str,
        operation: Operation,
        object_id: str,
        key: str,
        connection_id: str | None,
    ) -> GatewayAttempt:
        now = self.ctx.now_us()
        return GatewayAttempt(
            id=new_id("att"),
            account_id=account_id,
            gateway=gateway,
            connection_id=connection_id,
            operation=operation.value,
            object_id=object_id,
            idempotency_key=key,
            status=PENDING,
            request={},
            result=None,
            error=None,
            created_us=now,
            updated_us=now,
        )

    def start_refund(
        self, s: AsyncSession, refund: Refund, pi: PaymentIntent, request: dict[str, Any]
    ) -> GatewayAttempt:
        attempt = self._attempt(
            refund.account_id,
            pi.gateway,
            Operation.REFUND,
            refund.id,
            f"{refund.id}:refund",
            pi.connection_id,
        )
        attempt.target = rules.target_of(Operation.REFUND)
        attempt.request = request
        s.add(attempt)
        return attempt

    # -- 2. execute -------------------------------------------------------------------------
    async def execute(self, attempt: GatewayAttempt, call: Callable[[], Awaitable[R]]) -> R | None:
        """Make the call. None: the outcome is unknown and ``recover`` will find it."""
        try:
            return await call_with_retries(self.ctx.settings, call)
        except (GatewayUnavailable, GatewayRateLimited) as exc:
            await self.defer(attempt.id, exc, attempt.account_id)
            return None
        except GatewayInvalidRequest as exc:
            await self.abandon(attempt.id, f"{exc.code}: {exc}")
            if exc.param is not None:  # the caller's parameter, not the gateway's problem
                raise PaymuxError.of(
                    "parameter_invalid",
                    str(exc),
                    param=exc.param,
                    gateway=attempt.gateway,
                    gateway_code=exc.code,
                ) from exc
            raise PaymuxError.of(
                "gateway_invalid_request",
                f"The gateway refused the request: {exc}",
                gateway=attempt.gateway,
                gateway_code=exc.code,
            ) from exc

    async def defer(
        self, attempt_id: str, exc: GatewayUnavailable | GatewayRateLimited, account_id: str
    ) -> None:
        """The outcome is unknown (or the gateway asked us to wait): have a job ask later."""
        now = self.ctx.now_us()
        delay = self.ctx.settings.attempt_settle_after_seconds
        if isinstance(exc, GatewayRateLimited) and exc.retry_after is not None:
            delay = exc.retry_after
        async with self.ctx.db.write() as s:
            await s.execute(
                update(GatewayAttempt)
                .where(GatewayAttempt.id == attempt_id)
                .values(error=f"{type(exc).__name__}: {exc}"[:2000], updated_us=now)
            )
            await schedule_settlement(s, attempt_id, now_us=now, delay=delay, account_id=account_id)

    # -- 3. settle --------------------------------------------------------------------------
    async def settle_payment(
        self,
        attempt_id: str,
        result: GatewayResult,
        *,
        object_id: str | None = None,
        then: Callable[[AsyncSession, PaymentIntent], Awaitable[None]] | None = None,
    ) -> PaymentIntent:
        """Record a call's outcome on its attempt and apply it to the intent (idempotent).
        ``object_id``: the attempt's intent, if the caller knows it (one SELECT less);
        ``then``: more work in the same transaction, after the outcome is applied (the
        request's answer and its audit entry)."""
        async with self.ctx.db.write() as s:
            if object_id is None:
                attempt, pi = await self._lock(s, attempt_id)
                pending: GatewayAttempt | None = attempt if attempt.status == PENDING else None
                if pending is not None:
                    pending.status = SETTLED
                    pending.result = result_json(result)
                    pending.updated_us = self.ctx.now_us()
            else:
                # The intent's lock first (as in ``_lock``), then the attempt is settled by one
                # conditional UPDATE that returns it: None if it was settled already. Both are
                # driver statements written once; the intent is a plain row object whose changes
                # ``_store`` writes (an intent of an invoice is loaded by the ORM instead: the
                # billing hook works on the session's objects).
                await flush_pending(s)
                found, settled = await self._lock_and_settle(s, object_id, attempt_id, result)
                before: dict[str, Any] | None = None
                if found["invoice_id"] is None:
                    pi, before = _intent_of(found)
                else:
                    locked = await s.get(
                        PaymentIntent, object_id, with_for_update=True, populate_existing=True
                    )
                    assert locked is not None
                    pi = locked
                pending = None if settled is None else cast(GatewayAttempt, _Row(settled))
                if pending is None:
                    await _late_three_d_secure(s, pi, result)
                if before is not None:
                    if pending is not None:
                        await self.apply_payment_report(s, pi, result, attempt=pending)
                    await _store(s, pi, before)
                    if then is not None:
                        await then(s, pi)
                        await _store(s, pi, before)
                    return pi
            if pending is not None:
                await self.apply_payment_report(s, pi, result, attempt=pending)
            else:
                await _late_three_d_secure(s, pi, result)
            if then is not None:
                await then(s, pi)
            return pi

    async def _lock_and_settle(
        self, s: AsyncSession, object_id: str, attempt_id: str, result: GatewayResult
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The intent's row locked, then the attempt settled if it is still pending: the
        intent's values, and the attempt's (None if it was settled already). One statement
        on PostgreSQL (``_LOCK_AND_SETTLE``); two on SQLite, whose writer holds the whole
        database (no round trip to save)."""
        settle = {
            "b_id": attempt_id,
            "b_object_id": object_id,
            "b_result": result_json(result),
            "b_now": self.ctx.now_us(),
        }
        if self.ctx.db.is_sqlite:
            found: Any = await fetchrow(s, _LOCKED_INTENT, {"b_pi_id": object_id})
            assert found is not None
            settled: Any = await fetchrow(s, _SETTLE_ATTEMPT, settle)
            return found._asdict(), None if settled is None else settled._asdict()
        both: Any = await fetchrow(s, _LOCK_AND_SETTLE, {"b_pi_id": object_id, **settle})
        assert both is not None
        values = both._asdict()
        intent = {key: values[key] for key in _PI_KEYS}
        if values["a_id"] is None:
            return intent, None
        return intent, {key: values[f"a_{key}"] for key in _ATTEMPT_KEYS}

    async def settle_refund(
        self,
        attempt_id: str,
        outcome: GatewayRefund,
        *,
        then: Callable[[AsyncSession, Refund], Awaitable[None]] | None = None,
    ) -> Refund:
        """Record a refund call's outcome (idempotent); ``then``: more work in the same
        transaction (the request's answer and its audit entry)."""
        async with self.ctx.db.write() as s:
            attempt = await s.get(GatewayAttempt, attempt_id, with_for_update=True)
            assert attempt is not None
            refund = await s.get(Refund, attempt.object_id)
            assert refund is not None
            if attempt.status == PENDING:
                attempt.status = SETTLED
                attempt.result = {"status": outcome.status, "reference": outcome.reference}
                attempt.updated_us = self.ctx.now_us()
            await self.apply_refund_report(s, refund, outcome)
            if then is not None:
                await then(s, refund)
            return refund

    async def abandon(self, attempt_id: str, reason: str) -> None:
        """The call is known not to have happened: put things back where they were."""
        async with self.ctx.db.write() as s:
            attempt = await s.get(GatewayAttempt, attempt_id)
            assert attempt is not None
            if attempt.operation == Operation.REFUND:
                attempt = await s.get(
                    GatewayAttempt, attempt_id, with_for_update=True, populate_existing=True
                )
                assert attempt is not None
                if attempt.status != PENDING:
                    return
                self._close(attempt, ABANDONED, reason)
                refund = await s.get(Refund, attempt.object_id)
                assert refund is not None
                await self.apply_refund_report(
                    s, refund, GatewayRefund("failed", None, refund.amount, reason[:64])
                )
                return
            attempt, pi = await self._lock(s, attempt_id)
            if attempt.status != PENDING:
                return
            self._close(attempt, ABANDONED, reason)
            from_status = S(attempt.from_status) if attempt.from_status else None
            change = rules.abandon(state_of(pi), Operation(attempt.operation), from_status)
            if change.declined:
                error = PaymuxError.of(
                    "gateway_unavailable",
                    "The payment could not be processed; no charge was made.",
                    gateway=attempt.gateway,
                )
                pi.last_payment_error = error.to_dict()
                pi.payment_method_id = None
            await self._write(s, pi, change)

    async def _needs_attention(self, attempt_id: str, why: str) -> None:
        """Leave the attempt pending (the intent stays processing) and say why."""
        log.error("attempt %s needs a person: %s", attempt_id, why)
        async with self.ctx.db.write() as s:
            await s.execute(
                update(GatewayAttempt)
                .where(GatewayAttempt.id == attempt_id)
                .values(error=f"needs attention: {why}", updated_us=self.ctx.now_us())
            )

    def _close(self, attempt: GatewayAttempt, status: str, error: str | None) -> None:
        attempt.status = status
        attempt.error = error
        attempt.updated_us = self.ctx.now_us()

    async def _lock(self, s: AsyncSession, attempt_id: str) -> tuple[GatewayAttempt, PaymentIntent]:
        """Lock the intent, then read its attempt: the same order as the webhook path, so a
        webhook and a returning call can't both apply one outcome (or deadlock)."""
        object_id = (
            await s.execute(select(GatewayAttempt.object_id).where(GatewayAttempt.id == attempt_id))
        ).scalar_one()
        pi = await s.get(PaymentIntent, object_id, with_for_update=True, populate_existing=True)
        attempt = await s.get(
            GatewayAttempt, attempt_id, with_for_update=True, populate_existing=True
        )
        assert pi is not None and attempt is not None
        return attempt, pi

    # -- the one place a provider's word changes an intent ---------------------------------
    async def apply_payment_report(
        self,
        s: AsyncSession,
        pi: PaymentIntent,
        result: GatewayResult,
        *,
        attempt: GatewayAttempt | None = None,
    ) -> rules.Change:
        """Apply ``result`` to ``pi`` (locked by the caller). ``attempt``: the call of ours it
        answers, if any. Returns the change (``moved`` False: nothing to do)."""
        operation = Operation(attempt.operation) if attempt is not None else None
        from_status = (
            S(attempt.from_status) if attempt is not None and attempt.from_status else None
        )
        if result.reference and operation is Operation.AUTHORIZE:
            # Which provider payment this confirmation made, even when its answer changes
            # nothing yet (processing): the next question to the provider is about it.
            pi.gateway_reference = result.reference
        if result.three_d_secure is not None:  # this confirmation's 3-D Secure outcome
            pi.three_d_secure = result.three_d_secure.as_dict()
        before = state_of(pi)
        change = rules.apply_report(
            before, report_of(result), operation=operation, from_status=from_status
        )
        if change.state == before and not change.moved:
            log.info("no change from %s for %s in %s", result.status, pi.id, pi.status)
            return change
        if result.reference:  # the provider's latest object: PayPal's capture after its order
            pi.gateway_reference = result.reference
        if result.risk_level:
            pi.risk_level = result.risk_level
        if result.risk_score is not None:  # Stripe's outcome.risk_score (fraud/velocity.py)
            pi.gateway_risk_score = result.risk_score
        now = self.ctx.now_us()
        new = change.state.status
        if new != pi.status:
            pi.next_action = result.next_action if new is S.REQUIRES_ACTION else None
        if new is S.REQUIRES_CAPTURE and pi.status != S.REQUIRES_CAPTURE:
            pi.authorized_us = pi.authorized_us or now
        if new is S.CANCELED and pi.status != S.CANCELED:
            pi.canceled_us = now
            pi.cancellation_reason = pi.cancellation_reason or "requested_by_customer"
        if change.declined:
            code = result.decline.gateway_code if result.decline else "generic_decline"
            message = result.decline.message if result.decline else "The payment failed."
            error = card_error(pi.gateway, code, message).to_dict()
            error["payment_method"] = pi.payment_method_id
            pi.last_payment_error = error
            pi.payment_method_id = None
        if (change.late_capture or change.late_authorization) and (
            self.ctx.settings.refund_late_payments
        ):
            await enqueue(
                s,
                "return_late_payment",
                {"pi_id": pi.id},
                now_us=now,
                dedupe_key=f"late:{pi.id}",
                account_id=pi.account_id,
            )
        await self._save_for_later_if_asked(s, pi, new, now)
        if result.network_transaction_id and pi.setup_future_usage:
            await record_network_reference(s, pi, new, result.network_transaction_id)
        await self._write(s, pi, change)
        return change

    async def _save_for_later_if_asked(
        self, s: AsyncSession, pi: PaymentIntent, new: S, now: int
    ) -> None:
        """``setup_future_usage`` with a customer: once the payment goes through (authorized
        or captured), its payment method is the customer's, as on Stripe, on every path (API,
        webhook, recovery) that applies a success here. The ownership is written in this
        transaction, with the payment's success, so the answer (and every read after it) shows
        ``customer`` and no other customer of the account can pay with the card meanwhile.
        The gateway's side of the attach is a gateway call, so it is queued (job
        ``attach_payment_method``) and made after the commit; an outage there retries the job
        and never touches the payment."""
        if new not in (S.SUCCEEDED, S.REQUIRES_CAPTURE) or pi.status in (
            S.SUCCEEDED,
            S.REQUIRES_CAPTURE,
        ):
            return
        if not (pi.setup_future_usage and pi.customer_id and pi.payment_method_id):
            return
        pm = await s.get(
            PaymentMethod, pi.payment_method_id, with_for_update=True, populate_existing=True
        )
        if pm is None or pm.customer_id is not None:
            return  # saved already (or to another customer: nothing to do here)
        customer = await s.get(Customer, pi.customer_id)
        if customer is None or customer.deleted:
            return
        pm.customer_id = pi.customer_id
        await emit(s, pi.account_id, "payment_method.attached", payment_method_view(pm), now)
        await enqueue(
            s,
            "attach_payment_method",
            {
                "account_id": pi.account_id,
                "pm_id": pm.id,
                "customer_id": pi.customer_id,
                "pi_id": pi.id,
            },
            now_us=now,
            dedupe_key=f"attach:{pm.id}:{pi.customer_id}",
            account_id=pi.account_id,
        )

    async def _write(self, s: AsyncSession, pi: PaymentIntent, change: rules.Change) -> None:
        now = self.ctx.now_us()
        _put_state(pi, change.state)
        pi.updated_us = now
        view = intent_view(self.ctx, pi)
        for event in change.events:
            await emit(s, pi.account_id, event, view, now, subject=pi)
        if pi.invoice_id is not None and self.invoice_hook is not None and change.events:
            # Billing: the invoice this payment pays learns its outcome in this transaction,
            # whichever path settled it (API, webhook, recovery, the hosted page's 3-D Secure).
            await self.invoice_hook(s, pi, change.events)

    async def apply_refund_report(
        self, s: AsyncSession, refund: Refund, outcome: GatewayRefund
    ) -> bool:
        """Move ``refund`` and its intent's amounts to the provider's word, in the caller's
        transaction. True if anything changed."""
        now = self.ctx.now_us()
        await s.flush()
        pi = await s.get(
            PaymentIntent, refund.payment_intent_id, with_for_update=True, populate_existing=True
        )
        assert pi is not None
        # Read the refund again under the intent's lock: a webhook may just have moved it.
        await s.refresh(refund, with_for_update=True)
        if outcome.reference and not refund.gateway_reference:
            refund.gateway_reference = outcome.reference
        old, new = RefundStatus(refund.status), RefundStatus(outcome.status)
        state = rules.apply_refund(state_of(pi), old, new, refund.amount)
        if state is None:
            return False
        _put_state(pi, state)
        refund.status = new
        refund.failure_reason = outcome.failure_reason
        refund.updated_us = now
        pi.updated_us = now
        await emit(s, refund.account_id, "refund.updated", refund_view(refund), now)
        if new is RefundStatus.SUCCEEDED:
            await emit(s, refund.account_id, "charge.refunded", intent_view(self.ctx, pi), now)
        if new is RefundStatus.FAILED:
            await emit(s, refund.account_id, "refund.failed", refund_view(refund), now)
            if self.refund_failed_hook is not None:
                await self.refund_failed_hook(s, refund)
        return True

    # -- recovery: ask, never re-send blindly ----------------------------------------------
    async def recover(self, attempt_id: str) -> None:
        """Settle a pending attempt by asking the provider (job ``settle_attempt``, a retry
        with the same Idempotency-Key, the reconciler)."""
        async with self.ctx.db.read() as s:
            attempt = await s.get(GatewayAttempt, attempt_id)
            if attempt is None or attempt.status != PENDING:
                return
        gateway = await self.ctx.gateway_of(attempt)
        retained = (
            self.ctx.now_us() - attempt.created_us
            < gateway.idempotency_retention_seconds * 1_000_000
        )
        try:
            if attempt.operation == Operation.REFUND:
                await self._recover_refund(gateway, attempt, retained)
            else:
                await self._recover_payment(gateway, attempt, retained)
        except (GatewayUnavailable, GatewayRateLimited) as exc:
            await self.defer(attempt.id, exc, attempt.account_id)
        except GatewayInvalidRequest as exc:
            await self.abandon(attempt.id, f"{exc.code}: {exc}")

    async def _recover_payment(
        self, gateway: Gateway, attempt: GatewayAttempt, retained: bool
    ) -> None:
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, attempt.object_id)
            assert pi is not None
            earlier = {
                (a.result or {}).get("reference")
                for a in (
                    await s.execute(
                        select(GatewayAttempt).where(
                            GatewayAttempt.object_id == pi.id,
                            GatewayAttempt.operation == Operation.AUTHORIZE,
                            GatewayAttempt.id != attempt.id,
                        )
                    )
                ).scalars()
            }
            request = None
            if attempt.operation == Operation.AUTHORIZE:
                request = await self.authorize_request(s, pi, attempt)
        key = attempt.idempotency_key
        reference = pi.gateway_reference
        settings = self.ctx.settings
        op = Operation(attempt.operation)
        if op is Operation.AUTHORIZE:
            opened = opened_reference(pi)
            if opened:
                found: GatewayResult | None = await call_with_retries(
                    settings, lambda: gateway.retrieve(opened)
                )
            else:
                found = await call_with_retries(settings, lambda: gateway.lookup(pi.id, key))
            if found is not None and found.reference in earlier - {None, opened}:
                found = None  # an earlier attempt's payment, not this one's
            if found is not None and found.status is not ProviderStatus.OPEN:
                await self.settle_payment(attempt.id, found)
                return
            if not retained and not gateway.lookup_finds_all:
                # Not found proves nothing here, and the key is forgotten: a person decides.
                await self._needs_attention(
                    attempt.id,
                    "the provider can't be searched and this key is past its retention: "
                    "check the provider's dashboard (paymux reconcile lists it)",
                )
                return
            if not retained or request is None:
                await self.abandon(
                    attempt.id,
                    "no payment at the provider and its idempotency key is past retention"
                    if request is not None
                    else "no payment method to retry with",
                )
                return
            # The provider has no payment for this attempt: send it again, same key.
            result = await call_with_retries(
                settings, lambda: gateway.authorize(request, idempotency_key=key)
            )
            await self.settle_payment(attempt.id, result)
            return
        if reference is None:
            await self.abandon(attempt.id, "no provider payment to act on")
            return
        found = await call_with_retries(settings, lambda: gateway.retrieve(reference))
        done = ProviderStatus.SUCCEEDED if op is Operation.CAPTURE else ProviderStatus.CANCELED
        if found.status in (done, ProviderStatus.SUCCEEDED, ProviderStatus.CANCELED):
            await self.settle_payment(attempt.id, found)
            return
        if found.status in (ProviderStatus.REQUIRES_CAPTURE, ProviderStatus.OPEN):
            # The provider shows it did not happen: send it again (an informed re-send).
            if op is Operation.CAPTURE:
                amount = Money(int(attempt.request["amount"]), pi.currency)
                result = await call_with_retries(
                    settings, lambda: gateway.capture(reference, amount, idempotency_key=key)
                )
            else:
                result = await call_with_retries(
                    settings, lambda: gateway.void(reference, idempotency_key=key)
                )
            await self.settle_payment(attempt.id, result)
            return
        await self.settle_payment(attempt.id, found)

    async def _recover_refund(
        self, gateway: Gateway, attempt: GatewayAttempt, retained: bool
    ) -> None:
        async with self.ctx.db.read() as s:
            refund = await s.get(Refund, attempt.object_id)
            assert refund is not None
            pi = await s.get(PaymentIntent, refund.payment_intent_id)
            assert pi is not None and pi.gateway_reference is not None
        reference, settings = pi.gateway_reference, self.ctx.settings
        found = await call_with_retries(
            settings,
            lambda: gateway.retrieve_refund(
                refund.gateway_reference, our_id=refund.id, payment_reference=reference
            ),
        )
        if found is None:
            if not retained:
                await self.abandon(
                    attempt.id, "no refund at the provider and its key is past retention"
                )
                return
            amount = Money(refund.amount, refund.currency)
            found = await call_with_retries(
                settings,
                lambda: gateway.refund(
                    reference, amount, refund.reason, idempotency_key=attempt.idempotency_key
                ),
            )
        await self.settle_refund(attempt.id, found)

    async def authorize_request(
        self, s: AsyncSession, pi: PaymentIntent, attempt: GatewayAttempt
    ) -> AuthorizeRequest | None:
        """The gateway request of an authorize attempt: the same on first try and on
        recovery (the token and customer token the attempt recorded)."""
        token = attempt.request.get("token")
        if token is None and pi.payment_method_id:
            pm = await s.get(PaymentMethod, pi.payment_method_id)
            token = pm.token if pm else None
        if token is None:
            return None
        request = authorize_request(
            pi,
            str(token),
            attempt.request.get("customer_token"),
            attempt.request.get("verification_token"),
            attempt.request.get("network_transaction_id"),
        )
        completes = attempt.request.get("completes")
        if completes:  # completing a payment that waited for the payer: that one, no other
            request = replace(request, gateway_reference=str(completes))
        return request

    # -- intents nobody is waiting on -------------------------------------------------------
    async def refresh_intent(self, pi_id: str) -> bool:
        """Ask the provider about an intent stuck without a call of ours in flight (a lost
        webhook) and apply its word. True if the intent changed."""
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, pi_id)
            if pi is None or pi.gateway_reference is None:
                return False
            pending = (
                await s.execute(
                    select(GatewayAttempt.id).where(
                        GatewayAttempt.object_id == pi_id, GatewayAttempt.status == PENDING
                    )
                )
            ).first()
            reference = pi.gateway_reference
        if pending is not None:
            await self.recover(str(pending[0]))
            return True
        gateway = await self.ctx.gateway_of(pi)
        found = await call_with_retries(self.ctx.settings, lambda: gateway.retrieve(reference))
        if found.status is ProviderStatus.OPEN and pi.status == S.REQUIRES_ACTION:
            # The payer did what the provider asked (PayPal: approved the order), and the
            # provider waits for us to charge it: finish the confirmation.
            await self.complete_action(pi_id, reference)
            return True
        async with self.ctx.db.write() as s:
            locked = await s.get(PaymentIntent, pi_id, with_for_update=True, populate_existing=True)
            assert locked is not None
            change = await self.apply_payment_report(s, locked, found)
            if not change.moved:
                locked.updated_us = self.ctx.now_us()  # checked now: to the back of the queue
            return change.moved

    async def complete_action(self, pi_id: str, reference: str) -> None:
        """Charge the provider payment ``reference`` that waited for the payer, as a new
        authorize attempt from requires_action (the same request as the confirmation)."""
        async with self.ctx.db.write() as s:
            pi = await s.get(PaymentIntent, pi_id, with_for_update=True, populate_existing=True)
            assert pi is not None
            if pi.status != S.REQUIRES_ACTION:
                return
            last = (
                await s.execute(
                    select(GatewayAttempt)
                    .where(
                        GatewayAttempt.object_id == pi_id,
                        GatewayAttempt.operation == Operation.AUTHORIZE,
                    )
                    .order_by(GatewayAttempt.created_us.desc(), GatewayAttempt.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if last is None:
                return
            pi, attempt = await self.start_on_intent(
                s,
                pi,
                Operation.AUTHORIZE,
                allowed_from=(S.REQUIRES_ACTION,),
                idempotency_key=f"{last.idempotency_key}:complete",
                request={**last.request, "completes": reference},
                check="confirm",
            )
            request = await self.authorize_request(s, pi, attempt)
        gateway = await self.ctx.gateway_of(pi)
        if request is None:
            await self.abandon(attempt.id, "no payment method to complete with")
            return
        key = attempt.idempotency_key
        result = await self.execute(
            attempt, lambda: gateway.authorize(request, idempotency_key=key)
        )
        if result is not None:
            await self.settle_payment(attempt.id, result)

    async def refresh_refund(self, refund_id: str) -> bool:
        async with self.ctx.db.read() as s:
            refund = await s.get(Refund, refund_id)
            if refund is None or refund.status != RefundStatus.PENDING:
                return False
            pi = await s.get(PaymentIntent, refund.payment_intent_id)
            assert pi is not None
            pending = (
                await s.execute(
                    select(GatewayAttempt.id).where(
                        GatewayAttempt.object_id == refund_id, GatewayAttempt.status == PENDING
                    )
                )
            ).first()
        if pending is not None:
            await self.recover(str(pending[0]))
            return True
        if pi.gateway_reference is None:
            return False
        gateway = await self.ctx.gateway_of(pi)
        reference = pi.gateway_reference
        found = await call_with_retries(
            self.ctx.settings,
            lambda: gateway.retrieve_refund(
                refund.gateway_reference, our_id=refund.id, payment_reference=reference
            ),
        )
        async with self.ctx.db.write() as s:
            row = await s.get(Refund, refund_id)
            assert row is not None
            if found is None:
                row.updated_us = self.ctx.now_us()
                return False
            return await self.apply_refund_report(s, row, found)


def authorize_request(
    pi: PaymentIntent,
    token: str,
    customer_token: str | None,
    verification_token: str | None = None,
    network_transaction_id: str | None = None,
) -> AuthorizeRequest:
    """The gateway request for confirming ``pi``. ``network_transaction_id``: the card's
    first authenticated payment, referenced by a merchant-initiated (off-session) charge."""
    return AuthorizeRequest(
        amount=Money(pi.amount, pi.currency),
        payment_method_token=token,
        capture=captures_at_once(pi),
        reference=pi.id,
        customer_token=customer_token,
        off_session=pi.off_session,
        setup_future_usage=pi.setup_future_usage,
        return_url=pi.return_url,
        statement_descriptor=pi.statement_descriptor,
        description=pi.description,
        gateway_reference=opened_reference(pi),
        verification_token=verification_token,
        request_three_d_secure=requested_option(pi),
        network_transaction_id=network_transaction_id if pi.off_session else None,
        recurring=is_recurring(pi),
    )


def captures_at_once(pi: PaymentIntent) -> bool:
    """Capture with the authorization: the merchant's ``capture_method``, unless this
    confirm's fraud decision holds the money for a review (``hold`` in ``fraud_outcome``,
    fraud/decisions.py); the merchant's ``capture_method`` itself is never changed."""
    return pi.capture_method != "manual" and not (pi.fraud_outcome or {}).get("hold")


def opened_reference(pi: PaymentIntent) -> str | None:
    """The provider payment opened for the browser at create (Stripe.js confirms it), which
    every confirmation reuses; None where each confirmation makes a payment of its own."""
    return pi.gateway_reference if pi.gateway_client is not None else None


async def customer_token_for(s: AsyncSession, pm: PaymentMethod) -> str | None:
    """The gateway's id of the customer a saved card is attached to, at its connection."""
    if not pm.customer_id:
        return None
    customer = await s.get(Customer, pm.customer_id)
    key = ref_key(pm.gateway, pm.connection_id)
    return (customer.gateway_refs or {}).get(key) if customer else None
