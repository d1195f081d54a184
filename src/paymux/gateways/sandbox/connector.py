"""The sandbox gateway's connector: the Gateway Protocol over the sandbox processor.

The processor runs in-process, so the "wire" is a function call; this module is the seam
where the knobs act, exactly where a network would fail: latency before the call, a
timeout / 500 / 429 / connection reset instead of it, or the ambiguous case, a call that was
processed but whose response never came back.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    CredentialsCheck,
    Decline,
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
    SetupUpdate,
)
from paymux.gateways.sandbox import transformers
from paymux.gateways.sandbox.cards import MAGIC_TOKENS
from paymux.gateways.sandbox.processor import ProcessorError, SandboxProcessor
from paymux.gateways.signing import deliver, verify_signature
from paymux.money import Money

__all__ = ["FAULT_MODES", "SandboxGateway"]

FAULT_MODES = ("timeout", "server_error", "rate_limit", "connection_reset", "lose_response")


class SandboxGateway:
    name = "sandbox"
    # The sandbox processor keeps every key in its own database: ten years, in effect forever
    # (a finite number, so it can be stored, compared and printed like the others).
    idempotency_retention_seconds = 10 * 365 * 24 * 3600.0
    lookup_finds_all = True

    def __init__(
        self,
        processor: SandboxProcessor,
        *,
        latency: float = 0.0,
        webhook_secrets: list[str] | None = None,
        webhook_tolerance: int = 300,
        webhook_url: str | None = None,
        webhook_delay: float = 0.0,
    ) -> None:
        self.processor = processor
        self.latency = latency
        self._webhook_secrets = webhook_secrets
        self.webhook_tolerance = webhook_tolerance
        self.webhook_url = webhook_url or f"{processor.public_url}/webhooks/sandbox"
        self.webhook_delay = webhook_delay
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the provider's asynchronous side: signed webhooks ---------------------------------
    def notify(self, event_type: str, obj: dict[str, Any]) -> None:
        """Send a signed event to paymux's inbound endpoint, in the background, with retries."""
        event = {
            "id": f"evt_sbx_{secrets.token_hex(10)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
        task = asyncio.get_running_loop().create_task(
            deliver(self.webhook_url, self.webhook_secrets[0], event, delay=self.webhook_delay)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_refund_later(self, refund_id: str) -> None:
        await asyncio.sleep(max(self.webhook_delay, 0.05))
        refund = self.processor.settle_refund(refund_id)
        self.notify("refund.updated", refund)

    async def aclose(self) -> None:
        await self.drain()

    async def check_credentials(self) -> CredentialsCheck:
        """The sandbox is built in: it has no credentials to refuse."""
        return CredentialsCheck(ok=True)

    async def drain(self) -> None:
        """Wait for webhooks in flight (used on shutdown and by tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def webhook_secrets(self) -> list[str]:
        return self._webhook_secrets or [self.processor.webhook_secret()]

    # -- the seam ---------------------------------------------------------------------------
    async def _call(self, operation: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self.processor.take_fault(operation)
        mode = fault[0] if fault else None
        if mode == "timeout":
            raise GatewayUnavailable(f"sandbox {operation}: timed out")
        if mode == "server_error":
            raise GatewayUnavailable(f"sandbox {operation}: HTTP 500")
        if mode == "connection_reset":
            raise GatewayUnavailable(f"sandbox {operation}: connection reset by peer")
        if mode == "rate_limit":
            retry_after = fault[1] if fault else None
            raise GatewayRateLimited(f"sandbox {operation}: HTTP 429", retry_after=retry_after)
        try:
            response = fn()
        except ProcessorError as exc:
            raise GatewayInvalidRequest(str(exc), code=exc.code) from exc
        if mode == "lose_response":
            raise GatewayUnavailable(f"sandbox {operation}: connection lost before the response")
        return response

    # -- Gateway Protocol -------------------------------------------------------------------
    def supports_currency(self, currency: str) -> bool:
        return True

    def amount_problem(self, amount: Money) -> str | None:
        return None

    def reusable_test_token(self, token: str) -> bool:
        return token in MAGIC_TOKENS

    def browser_params(self, reference: str) -> dict[str, Any]:
        base = self.processor.public_url
        return {
            "gateway": self.name,
            "tokenize_url": f"{base}/sandbox/v1/tokens",
            "hosted_form_url": f"{base}/sandbox/elements?payment_intent={reference}",
        }

    async def describe_payment_method(self, token: str) -> CardDetails | None:
        """The card behind ``token``; for a shared test token (``pm_card_visa``,
        ``tok_visa``), a fresh token of its own, as each use of one is a new payment method."""

        def describe() -> dict[str, Any]:
            if token in MAGIC_TOKENS:
                return self.processor.mint(token) or {}
            return self.processor.describe(token) or {}

        data = await self._call("describe", describe)
        return transformers.card_details(data) if data else None

    async def open_payment(
        self, amount: Money, reference: str, capture: bool, *, idempotency_key: str
    ) -> OpenedPayment | None:
        return None  # the sandbox's hosted form tokenizes; paymux confirms server-side

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> GatewayResult:
        body = transformers.authorize_body(request)
        data = await self._call(
            "authorize", lambda: self.processor.authorize(idempotency_key, body)
        )
        return transformers.charge_result(data)

    async def capture(
        self, reference: str, amount: Money, *, idempotency_key: str
    ) -> GatewayResult:
        data = await self._call(
            "capture", lambda: self.processor.capture(idempotency_key, reference, amount.amount)
        )
        return transformers.charge_result(data)

    async def void(self, reference: str, *, idempotency_key: str) -> GatewayResult:
        """Void a held charge. One the processor won't void because it is settled (captured
        or canceled already) is reported as it is, so the caller sees money that moved."""
        try:
            data = await self._call("void", lambda: self.processor.void(idempotency_key, reference))
        except GatewayInvalidRequest as exc:
            if exc.code != "charge_unexpected_state":
                raise
            found = await self.retrieve(reference)
            if found.status in (GatewayStatus.SUCCEEDED, GatewayStatus.CANCELED):
                return found
            raise
        return transformers.charge_result(data)

    async def refund(
        self, reference: str, amount: Money, reason: str | None, *, idempotency_key: str
    ) -> GatewayRefund:
        ours = idempotency_key.split(":")[0]
        our_id = ours if ours.startswith("re_") else None
        data = await self._call(
            "refund",
            lambda: self.processor.refund(
                idempotency_key, reference, amount.amount, reason, our_id
            ),
        )
        if data.get("then") and not data.get("idempotent_replay"):
            task = asyncio.get_running_loop().create_task(self._settle_refund_later(data["id"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return transformers.refund_result(data)

    async def retrieve(self, reference: str) -> GatewayResult:
        data = await self._call("retrieve", lambda: self.processor.retrieve(reference))
        return transformers.charge_result(data)

    async def lookup(self, our_reference: str, idempotency_key: str) -> GatewayResult | None:
        """The charge a keyed authorize made (the processor keeps every key), else the newest
        charge for ``our_reference`` that no other authorize key claims; None if neither."""

        def find() -> dict[str, Any]:
            data = self.processor.lookup(idempotency_key)
            if data is None or data.get("object") != "charge" or not data.get("id"):
                data = self.processor.lookup_reference(our_reference, idempotency_key)
            return data or {}

        data = await self._call("lookup", find)
        return transformers.charge_result(data) if data else None

    async def retrieve_refund(
        self, reference: str | None, *, our_id: str, payment_reference: str
    ) -> GatewayRefund | None:
        """A refund by its id; else ours among the charge's refunds (the processor keeps our
        refund id on it, as a provider keeps metadata), else the one the key
        ``<our id>:refund`` made. None when there is none."""

        def find() -> dict[str, Any]:
            if reference:
                try:
                    return self.processor.retrieve(reference)
                except ProcessorError:
                    pass
            mine = [
                r
                for r in self.processor.refunds_for(payment_reference)
                if r.get("our_id") == our_id
            ]
            if mine:
                return mine[-1]
            return self.processor.lookup(f"{our_id}:refund") or {}

        data = await self._call("retrieve_refund", find)
        if data.get("object") != "refund" or not data.get("id"):
            return None
        return transformers.refund_result(data)

    async def update_payment(
        self, reference: str, amount: Money, capture: bool, *, idempotency_key: str
    ) -> None:
        """The sandbox opens no payment before confirmation (``open_payment`` is None), so
        there is never one to update: refused, as a caller's mistake."""
        raise GatewayInvalidRequest(
            "sandbox: payments are made at confirmation, there is none open to change",
            code="update_unsupported",
        )

    async def create_customer(
        self, reference: str, email: str | None, *, idempotency_key: str
    ) -> str:
        data = await self._call(
            "create_customer",
            lambda: self.processor.create_customer(idempotency_key, reference, email),
        )
        return str(data["id"])

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline:
        data = await self._call(
            "attach", lambda: self.processor.attach(idempotency_key, token, customer_token)
        )
        if data.get("declined"):
            return Decline(gateway_code=str(data["decline_code"]), message=str(data["message"]))
        return transformers.card_details(data)

    async def detach_payment_method(self, token: str, *, idempotency_key: str) -> None:
        await self._call("detach", lambda: self.processor.detach(idempotency_key, token))

    async def setup(self, request: SetupRequest, *, idempotency_key: str) -> SetupResult:
        body = {
            "token": request.payment_method_token,
            "customer": request.customer_token,
            "reference": request.reference,
            "usage": request.usage,
            "return_url": request.return_url,
        }
        data = await self._call("setup", lambda: self.processor.setup(idempotency_key, body))
        return transformers.setup_result(data)

    async def retrieve_setup(self, reference: str, *, idempotency_key: str) -> SetupResult:
        """Read-only here: the sandbox saves the card when the payer answers the challenge."""
        data = await self._call("retrieve_setup", lambda: self.processor.retrieve(reference))
        if data.get("object") != "setup_attempt":
            raise GatewayInvalidRequest(f"No such setup: {reference}", code="resource_missing")
        return transformers.setup_result(data)

    async def verify_webhook(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        return self.verify(headers, body)

    def verify(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        """Verify the raw bytes (no I/O), then parse them."""
        event = verify_signature(
            body,
            headers.get("paymux-sandbox-signature"),
            self.webhook_secrets,
            tolerance=self.webhook_tolerance,
        )
        return InboundEvent(
            gateway=self.name, event_id=str(event["id"]), type=str(event["type"]), payload=event
        )

    def interpret_event(
        self, event: InboundEvent
    ) -> PaymentUpdate | RefundUpdate | SetupUpdate | None:
        obj = event.payload.get("data", {}).get("object") or {}
        if event.type == "setup_attempt.updated" and obj.get("object") == "setup_attempt":
            # Sent when the payer answered the setup's 3-D Secure challenge.
            return SetupUpdate(
                reference=str(obj["reference"]),
                gateway_reference=obj.get("id"),
                status=transformers.setup_result(obj).status,
            )
        if event.type == "charge.updated" and obj.get("object") == "charge":
            return PaymentUpdate(str(obj["reference"]), transformers.charge_result(obj))
        if event.type == "refund.updated" and obj.get("object") == "refund":
            return RefundUpdate(transformers.refund_result(obj))
        return None
