"""Calling a gateway safely: record, commit, call, record.

1. ``start_attempt`` writes a ``GatewayAttempt`` (pending, with the idempotency key made once
   from our object id and step) in the caller's transaction, which commits before the call.
2. ``call_with_retries`` makes the call outside any transaction, under one retry policy:
   network errors and 5xx are retried with the SAME key (exponential backoff with jitter);
   a 429 is waited out inline when its Retry-After is short; a transient ``processing_error``
   decline is retried the same way; any other decline is final and never retried.
3. The caller records the outcome in a new transaction.

If the outcome stays unknown (the gateway stayed unreachable, or the process died between 1
and 3), the attempt is still pending and a ``settle_attempt`` job asks the gateway again with
the same key, so a payment never stays stuck and is never made twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.config import Settings
from paymux.domain.ids import new_id
from paymux.gateways.base import GatewayRateLimited, GatewayResult, GatewayUnavailable
from paymux.jobs.queue import enqueue
from paymux.storage.models import GatewayAttempt

__all__ = ["call_with_retries", "defer_attempt", "schedule_settlement", "start_attempt"]

log = logging.getLogger(__name__)
R = TypeVar("R")


async def start_attempt(
    session: AsyncSession,
    *,
    account_id: str,
    gateway: str,
    operation: str,
    object_id: str,
    idempotency_key: str,
    request: dict[str, Any],
    now_us: int,
) -> GatewayAttempt:
    attempt = GatewayAttempt(
        id=new_id("att"),
        account_id=account_id,
        gateway=gateway,
        operation=operation,
        object_id=object_id,
        idempotency_key=idempotency_key,
        status="pending",
        request=request,
        result=None,
        error=None,
        created_us=now_us,
        updated_us=now_us,
    )
    session.add(attempt)
    return attempt


def _delay(settings: Settings, attempt: int) -> float:
    ceiling = min(settings.gateway_retry_max_delay, settings.gateway_retry_base_delay * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


def _transient_decline(result: object) -> bool:
    return (
        isinstance(result, GatewayResult)
        and result.decline is not None
        and result.decline.gateway_code == "processing_error"
    )


async def call_with_retries(settings: Settings, call: Callable[[], Awaitable[R]]) -> R:
    """Run ``call`` under the retry policy. Raises the last GatewayUnavailable/RateLimited."""
    retries = settings.gateway_retries
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            result = await call()
        except GatewayUnavailable as exc:
            if last:
                raise
            log.warning("gateway unavailable (%s); retrying with the same key", exc)
            await asyncio.sleep(_delay(settings, attempt))
            continue
        except GatewayRateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else _delay(settings, attempt)
            if last or wait > settings.gateway_max_inline_retry_after:
                raise
            log.warning("gateway rate limited; retrying in %.2fs", wait)
            await asyncio.sleep(wait)
            continue
        if _transient_decline(result) and not last:
            log.warning("transient processing_error; retrying with the same key")
            await asyncio.sleep(_delay(settings, attempt))
            continue
        return result
    raise AssertionError("unreachable")  # pragma: no cover


async def defer_attempt(
    session: AsyncSession,
    attempt_id: str,
    exc: GatewayUnavailable | GatewayRateLimited,
    settings: Settings,
    *,
    now_us: int,
) -> None:
    """The outcome is unknown (or the gateway asked us to wait): note why, and have a job ask
    again, after the gateway's Retry-After when it gave one."""
    from paymux.storage.models import GatewayAttempt

    row = await session.get(GatewayAttempt, attempt_id)
    assert row is not None
    row.error = f"{type(exc).__name__}: {exc}"
    row.updated_us = now_us
    delay = settings.attempt_settle_after_seconds
    if isinstance(exc, GatewayRateLimited) and exc.retry_after is not None:
        delay = exc.retry_after
    await schedule_settlement(session, attempt_id, now_us=now_us, delay=delay)


async def schedule_settlement(
    session: AsyncSession, attempt_id: str, *, now_us: int, delay: float
) -> None:
    await enqueue(
        session,
        "settle_attempt",
        {"attempt_id": attempt_id},
        now_us=now_us,
        delay=delay,
        dedupe_key=f"settle:{attempt_id}",
        max_attempts=20,
    )
