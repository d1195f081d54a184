"""The retry policy for gateway calls, and the job that settles a call left unknown.

The attempt engine (services/attempts.py) records, commits, calls and records;
``call_with_retries`` makes the call outside any transaction, under one retry policy:
   network errors and 5xx are retried with the SAME key (exponential backoff with jitter);
   a 429 is waited out inline when its Retry-After is short; a transient ``processing_error``
   decline is retried the same way; any other decline is final and never retried.
If the outcome stays unknown (the gateway stayed unreachable, or the process died between
the call and its record), the attempt is still pending and a ``settle_attempt`` job asks the
provider what happened, so a payment never stays stuck and is never made twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.config import Settings
from paymux.gateways.base import GatewayRateLimited, GatewayResult, GatewayUnavailable
from paymux.jobs.queue import enqueue
from paymux.observability.metrics import observe_gateway_call

__all__ = ["call_with_retries", "schedule_settlement"]

log = logging.getLogger(__name__)
R = TypeVar("R")


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
            result = await observe_gateway_call(call)  # metrics (and a trace span)
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


async def schedule_settlement(
    session: AsyncSession, attempt_id: str, *, now_us: int, delay: float, account_id: str
) -> None:
    await enqueue(
        session,
        "settle_attempt",
        {"attempt_id": attempt_id},
        now_us=now_us,
        delay=delay,
        dedupe_key=f"settle:{attempt_id}",
        max_attempts=20,
        account_id=account_id,
    )
