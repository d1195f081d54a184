"""Seeded, reproducible randomized fault injection: paymux's real services, worker and HTTP
app (in process, ``support.harness``) against the scripted fake provider
(``support.fake_gateway``) with random faults on every money-moving call.

Each run draws ``STEPS`` actions from ``random.Random(seed)`` on a growing pool of intents:
create (maybe confirm, automatic or manual capture, maybe an Idempotency-Key, maybe sent
twice), confirm, capture (full or partial), cancel, refund (partial or full), webhook
delivery (a random subset, shuffled, some duplicated, some held back to arrive late), the
payer's 3-D Secure, a provider-side refund settling or an authorization lapsing, a crash (a
request cancelled while the provider is slow, before or after it acts; sometimes followed by
a real restart: a new Harness on the same database and the same provider), the retry of a
crashed request with its Idempotency-Key once its lease is over, time moving (a second to a
day, past the provider's 6 h key retention too) and the worker draining.

After every step (``Run.check``):
- every intent's amounts are consistent for its status (``inconsistencies``);
- nothing is charged twice (at most one live provider payment per intent);
- money, ours vs the provider's (what is compared when):
  * always: our amount_received <= provider captured and our amount_refunded <= provider
    refunded (we only record money the provider reported);
  * for an intent that is *quiet* (no pending gateway_attempts row for it or its refunds, no
    provider event about it not yet delivered, held back or stored but not applied, no
    return_late_payment job queued for it): amount_received == provider captured, and
    amount_capturable == what the provider holds (requires_capture);
  * if it is quiet and no refund of it is pending on either side: amount_refunded ==
    provider refunded.
At the end (``Run.finish``): faults off, every held webhook delivered, time moved past
reconcile_after_seconds / attempt_settle_after_seconds / job backoff, the worker drained a
few rounds; then the strict equalities for every intent, no intent in ``processing``, no
``pending`` attempt, no refund pending on our side that is not pending at the provider, no
``dead`` job.

Any failure is re-raised with the backend, the seed and the step log, to replay the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.domain import ids
from paymux.domain.attempts import IntentState, inconsistencies
from paymux.domain.states import PaymentIntentStatus as S
from paymux.gateways.base import GatewayStatus
from paymux.webhooks.inbound import UnknownObjectYet
from support.fake_gateway import Outcome, ProviderEvent, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

STEPS = int(os.environ.get("PAYMUX_FAULT_STEPS", "150"))  # per run; raise it for a soak
RUNS = [
    pytest.param("sqlite", 1, id="sqlite-seed1"),
    pytest.param("sqlite", 2, id="sqlite-seed2"),
    pytest.param("sqlite", 3, id="sqlite-seed3"),
    pytest.param("postgres", 11, id="postgres-seed11"),
    pytest.param("postgres", 12, id="postgres-seed12"),
]
FORGET_KEYS_AFTER = 6 * 3600
SETTINGS: dict[str, Any] = {}  # the Harness defaults: settle after 60 s, reconcile after 600 s
MONEY_OPS = ("authorize", "capture", "void", "refund")
# Answers a request may get. 4xx are expected refusals; a 5xx only for an injected outage.
OUTAGE_CODES = frozenset({"gateway_unavailable"})


WEIGHTS: dict[str, int] = {
    "create": 16,
    "confirm": 14,
    "capture": 12,
    "cancel": 6,
    "refund": 12,
    "webhooks": 14,
    "three_ds": 6,
    "settle_refund": 3,
    "expire_authorization": 1,
    "crash": 6,
    "retry_crashed": 4,
    "restart": 2,
    "advance": 8,
    "drain": 10,
}
ADVANCES = (1, 30, 61, 301, 601, 3600, FORGET_KEYS_AFTER + 60, 86400)


class Run:
    def __init__(self, backend: str, seed: int, url: str, tmp: Path) -> None:
        self.backend, self.seed, self.url, self.tmp = backend, seed, url, tmp
        self.rng = random.Random(seed)
        self.gw = ScriptedGateway(forget_keys_after=FORGET_KEYS_AFTER)
        self.gw.random_mode(
            random.Random(seed * 7919 + 1),
            fail_before=0.07,
            lose_response=0.07,
            rate_limited=0.04,
            decline=0.08,
            requires_action=0.10,
            operations=MONEY_OPS,
        )
        self.log: list[str] = []
        self.held: list[ProviderEvent] = []
        self.crashed: list[tuple[str, dict[str, Any], str]] = []  # path, body, key
        self.keys = 0
        self.lapsed: set[str] = set()  # intents whose authorization lapsed at the provider
        self.seen: dict[str, int] = {}  # intent id -> when first seen: a replayable order
        self.stack = AsyncExitStack()
        self._h: Harness | None = None

    @property
    def h(self) -> Harness:
        assert self._h is not None
        return self._h

    def note(self, line: str) -> None:
        self.log.append(f"{len(self.log):03d} {line}")

    def key(self) -> str:
        self.keys += 1
        return f"fi-{self.seed}-{self.keys}"

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Open paymux (again) on the same database and provider; a restart keeps the time
        and the API key (the new Harness starts its clock at START_US and makes an account)."""
        previous = self._h
        await self.stack.aclose()
        self.stack = AsyncExitStack()
        h = await self.stack.enter_async_context(
            Harness.open(self.url, self.tmp, gw=self.gw, **SETTINGS)
        )
        if previous is not None:
            h.advance((previous.clock.now_us() - h.clock.now_us()) // 1_000_000)
            h.account, h.key = previous.account, previous.key
            h.http.headers["authorization"] = f"Bearer {previous.key}"
        self._h = h

    async def close(self) -> None:
        await self.stack.aclose()

    # -- requests ---------------------------------------------------------------------------
    def answer(self, r: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            body = {}
        error = body.get("error") or {}
        status = body.get("status", "")
        self.note(f"    -> {r.status_code} {error.get('code') or status}")
        assert r.status_code != 500 and error.get("type") != "api_error", (
            f"{what}: internal error {r.status_code} {r.text}"
        )
        if r.status_code >= 500 and error.get("code") == "gateway_invalid_request":
            # The provider refused because its payment moved on without us hearing yet (an
            # authorization that lapsed at the provider, its webhook not delivered): allowed
            # only for intents the provider changed so.
            lapsed = [pi for pi in self.lapsed if pi in what]
            assert lapsed, f"{what}: {r.status_code} {r.text}"
        elif r.status_code >= 500:
            assert error.get("code") in OUTAGE_CODES, f"{what}: {r.status_code} {r.text}"
        return body

    async def post(self, path: str, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        self.note(f"POST {path} {json.dumps(body, sort_keys=True)} key={key}")
        r = await self.h.post(path, body, key=key)
        return self.answer(r, f"POST {path} {body}")

    async def deliver(self, event: ProviderEvent) -> None:
        try:
            await self.gw.deliver_webhook(self.h.app.webhooks, event)
        except UnknownObjectYet as exc:  # stored; the worker applies it later
            self.note(f"    {event.id}: not applied yet ({exc})")

    # -- reading both sides -----------------------------------------------------------------
    def pi_of_object(self, obj: dict[str, Any]) -> str | None:
        if obj.get("object") == "payment":
            return str(obj["reference"])
        if obj.get("object") == "refund":
            payment = self.gw.payments.get(str(obj.get("payment")))
            return payment.our_reference if payment else None
        return None

    async def read(self) -> dict[str, list[Any]]:
        """Our side, in one read: intents, pending attempts, unapplied inbox rows, queued
        late-payment returns, pending refunds."""
        queries = {
            "intents": "select id, status, amount, amount_received, amount_capturable, "
            "amount_refunded, amount_refund_pending from payment_intents "
            "where account_id = :a order by id",
            "attempts": "select a.object_id, r.payment_intent_id, a.operation "
            "from gateway_attempts a left join refunds r on r.id = a.object_id "
            "where a.status = 'pending'",
            "inbox": "select payload from webhook_inbox where status = 'received'",
            "late": "select payload from jobs where kind = 'return_late_payment' "
            "and status in ('queued', 'running')",
            "refunds": "select payment_intent_id from refunds where status = 'pending'",
        }
        out: dict[str, list[Any]] = {}
        async with self.h.app.ctx.db.read() as s:
            for name, statement in queries.items():
                params = {"a": self.h.account} if name == "intents" else {}
                out[name] = list((await s.execute(text(statement), params)).all())
        keys = ("id", "status", "amount", "received", "capturable", "refunded", "pending")
        out["intents"] = self.ordered([dict(zip(keys, r, strict=True)) for r in out["intents"]])
        return out

    def busy(self, ours: dict[str, list[Any]]) -> tuple[set[str], set[str], set[str]]:
        """(intents not quiet, intents with a refund pending on either side, intents with a
        capture or void in flight)."""
        busy: set[str] = set()
        busy |= {str(pi or obj) for obj, pi, _ in ours["attempts"]}
        releasing = {str(obj) for obj, _, op in ours["attempts"] if op in ("capture", "cancel")}
        for event in [*self.gw.pending_webhooks(), *self.held]:
            busy.add(self.pi_of_object(event.object) or "")
        for (payload,) in ours["inbox"]:
            busy.add(self.pi_of_object(json.loads(payload)["data"]["object"]) or "")
        for (payload,) in ours["late"]:
            busy.add(str((payload if isinstance(payload, dict) else json.loads(payload))["pi_id"]))
        refunding = {str(pi) for (pi,) in ours["refunds"]}
        refunding |= {
            p.our_reference
            for p in self.gw.payments.values()
            for r in p.refunds
            if r.status == "pending"
        }
        return busy, refunding, releasing

    async def check(self, *, final: bool = False) -> None:
        gw = self.gw
        assert gw.charged_twice() == [], f"charged twice: {gw.charged_twice()}"
        ours = await self.read()
        busy, refunding, _releasing = self.busy(ours)
        for row in ours["intents"]:
            pi = row["id"]
            state = IntentState(
                status=S(row["status"]),
                amount=row["amount"],
                amount_capturable=row["capturable"],
                amount_received=row["received"],
                amount_refunded=row["refunded"],
                amount_refund_pending=row["pending"],
            )
            problems = inconsistencies(state)
            assert problems == [], f"{pi} {row}: {problems}"
            live = gw.live_payments(pi)
            assert len(live) <= 1, f"{pi}: live provider payments {[p.id for p in live]}"
            captured, refunded = gw.money_captured(pi), gw.money_refunded(pi)
            held = gw.money_authorized(pi)
            theirs = f"provider captured={captured} refunded={refunded} held={held}"
            assert row["received"] <= captured, f"{pi} {row} vs {theirs}"
            assert row["refunded"] <= refunded, f"{pi} {row} vs {theirs}"
            if final or pi not in busy:
                assert row["received"] == captured, f"{pi} {row} vs {theirs}"
                assert row["capturable"] == held, f"{pi} {row} vs {theirs}"
                if final or pi not in refunding:
                    assert row["refunded"] == refunded, f"{pi} {row} vs {theirs}"

    def ordered(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Intents in the order they appeared (their ids are random: ordering by id would pick
        other intents on a replay of the same seed)."""
        for row in rows:
            self.seen.setdefault(row["id"], len(self.seen))
        return sorted(rows, key=lambda row: self.seen[row["id"]])

    # -- the actions ------------------------------------------------------------------------
    async def intents(self, *statuses: str) -> list[dict[str, Any]]:
        rows = self.ordered(await self.h.intents())
        return [r for r in rows if not statuses or r["status"] in statuses]

    async def pick(self, *statuses: str) -> dict[str, Any] | None:
        rows = await self.intents(*statuses)
        if self.rng.random() < (0.25 if not rows else 0.05):  # any intent: maybe a refusal
            rows = await self.intents()
        return self.rng.choice(rows) if rows else None

    def maybe_processing(self) -> None:
        """Now and then the next authorization is left ``processing`` at the provider (settled
        later by ``three_ds``)."""
        if self.rng.random() < 0.1:
            self.note("  script authorize: processing at the provider")
            self.gw.script("authorize", Outcome.pending())

    async def do_create(self) -> None:
        rng = self.rng
        body: dict[str, Any] = {
            "amount": rng.randint(5, 50) * 100,
            "currency": "usd",
            "capture_method": rng.choice(["automatic", "manual"]),
        }
        if rng.random() < 0.7:
            body.update(payment_method="tok_visa", confirm=True)
        self.maybe_processing()
        key = self.key() if rng.random() < 0.5 else None
        first = await self.post("/v1/payment_intents", body, key)
        if key and rng.random() < 0.3:  # the client's retry: the same intent
            again = await self.post("/v1/payment_intents", body, key)
            if "id" in first and "id" in again:
                assert first["id"] == again["id"], "a retried create made another intent"

    async def do_confirm(self) -> None:
        row = await self.pick(S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION)
        if row is not None:
            key = self.key() if self.rng.random() < 0.4 else None
            body = {"payment_method": "tok_visa"}
            self.maybe_processing()
            await self.post(f"/v1/payment_intents/{row['id']}/confirm", body, key)

    async def do_capture(self) -> None:
        row = await self.pick(S.REQUIRES_CAPTURE)
        if row is not None:
            body: dict[str, Any] = {}
            if row["capturable"] > 1 and self.rng.random() < 0.5:
                body["amount_to_capture"] = self.rng.randint(1, row["capturable"])
            key = self.key() if self.rng.random() < 0.4 else None
            await self.post(f"/v1/payment_intents/{row['id']}/capture", body, key)

    async def do_cancel(self) -> None:
        row = await self.pick(S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CAPTURE, S.REQUIRES_ACTION)
        if row is not None:
            await self.post(f"/v1/payment_intents/{row['id']}/cancel", {})

    async def do_refund(self) -> None:
        row = await self.pick(S.SUCCEEDED)
        if row is None:
            return
        left = row["received"] - row["refunded"] - row["pending"]
        body: dict[str, Any] = {"payment_intent": row["id"]}
        if left > 1 and self.rng.random() < 0.6:
            body["amount"] = self.rng.randint(1, left)
        if self.rng.random() < 0.2:
            self.note("  script refund: pending at the provider")
            self.gw.script("refund", Outcome.pending())
        key = self.key() if self.rng.random() < 0.4 else None
        await self.post("/v1/refunds", body, key)

    async def do_webhooks(self) -> None:
        events = [*self.held, *self.gw.take_webhooks()]
        self.held = []
        self.rng.shuffle(events)
        for event in events:
            if self.rng.random() < 0.25:
                self.held.append(event)
                continue
            twice = self.rng.random() < 0.15
            what = self.pi_of_object(event.object)
            self.note(f"  webhook {event.id} {event.type} {event.object.get('status')} {what}")
            for _ in range(2 if twice else 1):
                await self.deliver(event)
        self.note(f"  held back: {[e.id for e in self.held]}")

    async def do_three_ds(self) -> None:
        waiting = [
            p
            for p in self.gw.payments.values()
            if p.status in (GatewayStatus.REQUIRES_ACTION, GatewayStatus.PROCESSING)
        ]
        if waiting:
            payment = self.rng.choice(waiting)
            success = self.rng.random() < 0.8
            self.note(
                f"  payer 3-D Secure / settles {payment.id} {payment.status} "
                f"({payment.our_reference}) ok={success}"
            )
            self.gw.complete_action(payment.id, success=success)

    async def do_settle_refund(self) -> None:
        pending = [r for p in self.gw.payments.values() for r in p.refunds if r.status == "pending"]
        if pending:
            refund = self.rng.choice(pending)
            success = self.rng.random() < 0.85
            self.note(f"  provider settles refund {refund.id} ok={success}")
            self.gw.settle_refund(refund.id, success=success)

    async def do_expire_authorization(self) -> None:
        held = [p for p in self.gw.payments.values() if p.status == GatewayStatus.REQUIRES_CAPTURE]
        if held:
            payment = self.rng.choice(held)
            self.note(f"  provider lets {payment.id} ({payment.our_reference}) lapse")
            self.gw.expire_authorization(payment.id)
            self.lapsed.add(payment.our_reference)

    async def do_crash(self) -> None:
        """A request dies while the provider is slow: before it acts (``slow``: no call made)
        or after (``slow_response``: the call made, the answer lost)."""
        rng = self.rng
        kind = rng.choice(["create", "confirm", "capture", "refund"])
        path: str
        body: dict[str, Any]
        if kind == "create":
            op, path = "authorize", "/v1/payment_intents"
            body = {
                "amount": rng.randint(5, 50) * 100,
                "currency": "usd",
                "capture_method": rng.choice(["automatic", "manual"]),
                "payment_method": "tok_visa",
                "confirm": True,
            }
        elif kind == "confirm":
            row = await self.pick(S.REQUIRES_PAYMENT_METHOD)
            if row is None:
                return
            op, path = "authorize", f"/v1/payment_intents/{row['id']}/confirm"
            body = {"payment_method": "tok_visa"}
        elif kind == "capture":
            row = await self.pick(S.REQUIRES_CAPTURE)
            if row is None:
                return
            op, path, body = "capture", f"/v1/payment_intents/{row['id']}/capture", {}
        else:
            row = await self.pick(S.SUCCEEDED)
            if row is None:
                return
            op, path, body = "refund", "/v1/refunds", {"payment_intent": row["id"]}
        after = rng.random() < 0.5
        outcome = Outcome.slow_response(30) if after else Outcome.slow(30)
        key = self.key()
        self.gw.clear_scripts()
        self.gw.script(op, outcome)
        self.note(f"CRASH {'after' if after else 'before'} {op}: POST {path} {body} key={key}")
        calls = self.gw.calls[op]
        task = asyncio.create_task(self.h.post(path, body, key=key))
        for _ in range(2000):  # until the call reaches the provider (10 s at most)
            if self.gw.calls[op] > calls or task.done():
                break
            await asyncio.sleep(0.005)
        self.gw.clear_scripts()  # never leave a 30 s call queued for a later request
        if task.done():  # refused before reaching the provider
            self.answer(task.result(), f"POST {path} {body}")
            return
        assert self.gw.calls[op] > calls, "the crashed request never reached the provider"
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        self.crashed.append((path, body, key))
        if rng.random() < 0.4:
            self.note("  RESTART paymux (same database, same provider)")
            await self.open()

    async def do_retry_crashed(self) -> None:
        if not self.crashed:
            return
        path, body, key = self.crashed.pop(self.rng.randrange(len(self.crashed)))
        lease = self.h.app.settings.idempotency_lease_seconds + 1
        self.note(f"  advance {lease}s (past the idempotency lease)")
        self.h.advance(lease)
        await self.post(path, body, key)

    async def do_restart(self) -> None:
        self.note("RESTART paymux (same database, same provider)")
        await self.open()

    async def do_advance(self) -> None:
        seconds = self.rng.choice(ADVANCES)
        self.note(f"advance {seconds}s")
        self.h.advance(seconds)

    async def do_drain(self) -> None:
        ran = await self.h.drain()
        self.note(f"drain: {ran} jobs")

    # -- the run ----------------------------------------------------------------------------
    async def steps(self, n: int) -> None:
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        for _ in range(n):
            action = self.rng.choices(names, weights)[0]
            self.note(f"[{action}]")
            await getattr(self, f"do_{action}")()
            await self.check()

    async def finish(self) -> None:
        self.note("[finish] faults off, deliver everything, settle, drain")
        self.gw.random_mode(None)
        self.gw.clear_scripts()
        h = self.h
        settings = h.app.settings
        wait = int(max(settings.reconcile_after_seconds, settings.attempt_settle_after_seconds))
        for payment in list(self.gw.payments.values()):  # the bank settles what it held
            if payment.status == GatewayStatus.PROCESSING:
                success = self.rng.random() < 0.8
                self.note(f"  provider settles {payment.id} ({payment.our_reference}) ok={success}")
                self.gw.complete_action(payment.id, success=success)
        for event in self.held:
            await self.deliver(event)
        self.held = []
        for _ in range(6):
            for event in self.gw.take_webhooks():
                await self.deliver(event)
            h.advance(max(wait, 3600) + 1)  # past reconciling, settling and job backoff
            ran = await h.drain(rounds=50)
            self.note(f"  drain: {ran} jobs")
        for event in self.gw.take_webhooks():
            await self.deliver(event)
        await h.drain()
        await self.check(final=True)
        rows = await h.intents()
        processing = [r for r in rows if r["status"] == S.PROCESSING]
        assert processing == [], f"left in processing: {processing}"
        pending = await h.sql(
            "select id, operation, object_id from gateway_attempts where status = 'pending'"
        )
        assert pending == [], f"attempts still pending: {pending}"
        dead = await h.sql("select id, kind, last_error from jobs where status = 'dead'")
        assert dead == [], f"dead jobs: {dead}"
        for refund_id, reference in await h.sql(
            "select id, gateway_reference from refunds where status = 'pending'"
        ):
            theirs = self.gw.refund_by_id(reference or refund_id)
            assert theirs is not None and theirs.status == "pending", (
                f"refund {refund_id} pending here, at the provider: {theirs}"
            )

    async def main(self) -> None:
        # Seeded ids: paymux orders work by (time, id) and the frozen clock makes ties, so
        # random ids would change the order of gateway calls (and of the fault draws) between
        # two runs of one seed. With these, a seed replays the same run.
        saved = ids.random_bytes
        ids.random_bytes = random.Random(f"ids-{self.seed}").randbytes
        failure: BaseException | None = None
        try:
            await self.open()
            try:
                await self.steps(STEPS)
                await self.finish()
            except BaseException as exc:  # re-raised below, once closed
                failure = exc
            # Closed as on a clean exit: Harness.open closes paymux (its database pools) only
            # then, and a failing run should not leave connections behind for the next test.
            await self.close()
        finally:
            ids.random_bytes = saved
        if failure is not None:
            raise failure


@pytest.mark.parametrize(("backend", "seed"), RUNS)
def test_random_faults_never_lose_or_double_money(
    backend: str, seed: int, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"faults_{backend}_{seed}")
    run = Run(backend, seed, url, tmp_path)
    try:
        asyncio.run(run.main())
    except Exception as exc:
        steps = "\n".join(run.log[-400:])
        raise AssertionError(
            f"backend={backend} seed={seed} steps={STEPS}: {type(exc).__name__}: {exc}\n"
            f"replay: PAYMUX_FAULT_STEPS={STEPS} pytest '{__file__}::"
            f"test_random_faults_never_lose_or_double_money[{backend}-seed{seed}]'\n"
            f"step log:\n{steps}"
        ) from exc


# -- minimal reproductions of what the randomized runs found ------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_regression_a_processing_retry_after_a_decline_is_reconciled_against_its_own_payment(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """Was a double charge (found by seed 9, 250 steps): services/attempts.py ``apply_payment_report`` returns
    early when the report changes nothing, BEFORE recording ``result.reference`` as the
    intent's gateway_reference. A confirm answered ``processing`` changes nothing (the
    attempt already moved the intent to processing), so after an earlier declined attempt the
    intent keeps pointing at the DECLINED payment. The reconciler (refresh_intent, for an
    intent in processing past reconcile_after_seconds) then retrieves that old payment, reads
    ``failed`` and sends the intent back to requires_payment_method while the new payment is
    still processing at the provider; the next confirm authorizes a second payment: charged
    twice once the first settles."""
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"faults_bug1_{backend}")

    async def main() -> tuple[str, str, list[str], str, str]:
        async with Harness.open(url, tmp_path) as h:
            r = await h.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"})
            pi = h.body(r)["id"]
            confirm = f"/v1/payment_intents/{pi}/confirm"
            h.gw.script("authorize", Outcome.decline())
            r = await h.post(confirm, {"payment_method": "tok_visa"})
            assert r.status_code == 402
            h.gw.script("authorize", Outcome.pending())  # the bank takes its time
            r = await h.post(confirm, {"payment_method": "tok_visa"})
            assert h.body(r)["status"] == "processing"
            second = h.gw.payments_for(pi)[-1]
            pointed = (await h.get(f"/v1/payment_intents/{pi}"))["gateway_reference"]
            h.advance(h.app.settings.reconcile_after_seconds + 1)
            await h.drain()  # refresh_intent retrieves the payment the intent points at
            after = (await h.get(f"/v1/payment_intents/{pi}"))["status"]
            r = await h.post(confirm, {"payment_method": "tok_visa"})  # refused if processing
            h.gw.complete_action(second.id)  # the bank settles the second payment
            live = [p.id for p in h.gw.live_payments(pi)]
            declined = h.gw.payments_for(pi)[0].id
        return pointed, after, live, second.id, declined

    pointed, after, live, second, declined = asyncio.run(main())
    assert (pointed, after, live) == (second, "processing", [second]), (
        f"pointed at {pointed} (the declined one: {declined}), reconciled to {after}, "
        f"live provider payments {live}"
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_regression_cancel_after_a_decline_cancels(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """Was a bug (seen in the randomized step logs: ``cancel -> 200 requires_payment_method``): after a
    declined confirm the intent still points at the declined provider payment; cancel voids
    it, the provider answers with its truth (``failed``: nothing to void), and the failed
    answer is read as a refused void / a decline: the intent goes back to
    requires_payment_method (here the cancel even answers 402 card_declined, with
    cancellation_reason set and canceled_at null). Nothing is held at the provider: the
    intent should be ``canceled``."""
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"faults_bug2_{backend}")

    async def main() -> tuple[int, int, str]:
        async with Harness.open(url, tmp_path) as h:
            r = await h.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"})
            pi = h.body(r)["id"]
            h.gw.script("authorize", Outcome.decline())
            r = await h.post(f"/v1/payment_intents/{pi}/confirm", {"payment_method": "tok_visa"})
            declined = r.status_code
            r = await h.post(f"/v1/payment_intents/{pi}/cancel", {})
            got = await h.get(f"/v1/payment_intents/{pi}")
        return declined, r.status_code, str(got["status"])

    declined, cancel, status = asyncio.run(main())
    assert declined == 402
    assert (cancel, status) == (200, "canceled")
