"""When something is next due on a subscription (pure of any write): ``next_due``, the
``invoice.upcoming`` notice's time (``upcoming_notice``) and the constants they use. Apart
from ``subscription_due`` (which does the steps) so that dunning and the API's writes can
use them without importing the renewal machinery (no import cycle)."""

from __future__ import annotations

from paymux.services.context import Context
from paymux.storage.models import Subscription

__all__ = [
    "INCOMPLETE_EXPIRY_US",
    "RENEWING",
    "TRIAL_NOTICE_US",
    "next_due",
    "upcoming_lead_us",
    "upcoming_notice",
]

INCOMPLETE_EXPIRY_US = 23 * 3600 * 1_000_000
TRIAL_NOTICE_US = 3 * 86_400 * 1_000_000
RENEWING = ("active", "past_due", "unpaid")


def upcoming_lead_us(ctx: Context) -> int:
    """How long before a renewal its ``invoice.upcoming`` is sent (0: never)."""
    return int(ctx.settings.billing_upcoming_invoice_days) * 86_400 * 1_000_000


def upcoming_notice(sub: Subscription, lead_us: int) -> tuple[int, int] | None:
    """(when, the renewal it announces) of the subscription's next ``invoice.upcoming``, or
    None: none is due (sent already for that renewal, no renewal coming, a subscription
    not charged automatically, or a period no longer than the lead: the notice would fall
    before the period began). As Stripe: sent ``lead`` before a renewal that will make an
    invoice charged automatically, a trial's end included."""
    if lead_us <= 0 or sub.collection_method != "charge_automatically":
        return None
    if sub.status == "trialing" and sub.trial_end_us is not None:
        renews, start = sub.trial_end_us, sub.trial_start_us or sub.current_period_start_us
    elif sub.status in RENEWING:
        renews, start = sub.current_period_end_us, sub.current_period_start_us
    else:
        return None
    if sub.cancel_at_us is not None and sub.cancel_at_us <= renews:
        return None  # it ends by then: no renewal, no invoice
    if sub.upcoming_notice_for_us == renews:
        return None  # sent for this renewal already
    notice = renews - lead_us
    return (notice, renews) if notice > start else None


def next_due(sub: Subscription, now_us: int | None = None, *, upcoming_us: int = 0) -> int | None:
    """The earliest time something is due on the subscription (None: nothing ever).
    ``upcoming_us``: the lead of ``invoice.upcoming`` (``upcoming_lead_us``)."""
    status = sub.status
    if status in ("canceled", "incomplete_expired", "paused"):
        return None
    times: list[int] = []
    if status == "incomplete":
        return sub.created_us + INCOMPLETE_EXPIRY_US
    if status == "trialing" and sub.trial_end_us is not None:
        notice = sub.trial_end_us - TRIAL_NOTICE_US
        if now_us is not None and now_us < notice:
            times.append(notice)
        times.append(sub.trial_end_us)
    else:
        times.append(sub.current_period_end_us)
    if sub.cancel_at_us is not None:
        times.append(sub.cancel_at_us)
    resumes = (sub.pause_collection or {}).get("resumes_at")
    if resumes:
        times.append(int(resumes) * 1_000_000)
    upcoming = upcoming_notice(sub, upcoming_us)
    if upcoming is not None:
        times.append(upcoming[0])
    return min(times)
