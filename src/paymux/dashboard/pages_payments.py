"""The payments pages: search (filters, cursor pagination), a payment's page (timeline,
decline reason, fraud decision, 3-D Secure result, refunds) and its actions.

Actions (capture, cancel, refund in full or in part) take two steps: a confirmation page
(GET), whose form carries a fresh idempotency key, then the POST, which runs the payment
service under that key (actions.run_action): submitting the same form twice moves money once.
Who may: ``MONEY`` roles (admin, support); everyone may look.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from paymux.dashboard.actions import ActionResult, new_action_key, run_action
from paymux.dashboard.auth import ANY, MONEY, CurrentUser, core, require_role
from paymux.dashboard.filters import STATUSES, gateways, parse_filters
from paymux.dashboard.page_helpers import pager
from paymux.dashboard.render import PREFIX, render
from paymux.domain.errors import PaymuxError
from paymux.money import Money
from paymux.money.currencies import get_currency
from paymux.money.errors import MoneyError
from paymux.services.payment_reads import PaymentReads

__all__ = ["router"]

router = APIRouter()
PAGE_SIZE = 25
ACTIONS = ("capture", "cancel", "refund")
REFUND_REASONS = ("", "requested_by_customer", "duplicate", "fraudulent")
CANCEL_REASONS = ("", "requested_by_customer", "duplicate", "fraudulent", "abandoned")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
)


def _reads(request: Request) -> PaymentReads:
    return PaymentReads(core(request).ctx)


def _missing(request: Request, user: CurrentUser, pi_id: str) -> HTMLResponse:
    return render(
        request,
        "dashboard/message.html",
        user=user,
        status=404,
        title="No such payment",
        message=f"There is no payment {pi_id} in {'live' if user.livemode else 'test'} mode.",
    )


@router.get("/payments")
async def payments(
    request: Request, user: Annotated[CurrentUser, Depends(require_role(*ANY))]
) -> HTMLResponse:
    q = request.query_params
    filters = parse_filters(q)
    after, before = q.get("starting_after") or None, q.get("ending_before") or None
    try:
        rows, more = await _reads(request).search(
            user.account_id, filters, limit=PAGE_SIZE, starting_after=after, ending_before=before
        )
    except PaymuxError:  # a cursor that is not a payment of this account and mode
        rows, more = [], False
    older, newer = pager(rows, more, after, before)
    return render(
        request,
        "dashboard/payments.html",
        user=user,
        rows=rows,
        f=filters,
        statuses=STATUSES,
        gateways=gateways(),
        older=f"?{filters.query(starting_after=older)}" if older else None,
        newer=f"?{filters.query(ending_before=newer)}" if newer else None,
    )


def _allowed(payment: dict[str, Any], refundable: int) -> dict[str, bool]:
    return {
        "capture": payment["status"] == "requires_capture",
        "cancel": payment["status"] in CANCELABLE,
        "refund": refundable > 0,
    }


@router.get("/payments/{pi_id}")
async def payment(
    request: Request, pi_id: str, user: Annotated[CurrentUser, Depends(require_role(*ANY))]
) -> HTMLResponse:
    try:
        detail = await _reads(request).detail(user.account_id, pi_id)
    except PaymuxError:
        return _missing(request, user, pi_id)
    return render(
        request,
        "dashboard/payment.html",
        user=user,
        d=detail,
        p=detail.payment,
        allowed=_allowed(detail.payment, detail.amount_refundable),
        may_act=user.can(MONEY),
        done=_done_note(request.query_params.get("done")),
    )


def _done_note(value: str | None) -> str | None:
    """The ``?done=`` the page notes: an action of ours, or ``pending``; anything else (a
    link made elsewhere) is not echoed."""
    return value if value in (*ACTIONS, "pending") else None


def _major(amount: int, currency: str) -> str:
    exponent = get_currency(currency).exponent
    if exponent == 0:
        return str(amount)
    text = str(amount).rjust(exponent + 1, "0")
    return f"{text[:-exponent]}.{text[-exponent:]}"


async def _confirm_page(
    request: Request,
    user: CurrentUser,
    pi_id: str,
    action: str,
    *,
    status: int = 200,
    error: str | None = None,
    amount: str | None = None,
) -> HTMLResponse:
    try:
        detail = await _reads(request).detail(user.account_id, pi_id)
    except PaymuxError:
        return _missing(request, user, pi_id)
    p = detail.payment
    if not _allowed(p, detail.amount_refundable)[action] and error is None:
        return render(
            request,
            "dashboard/message.html",
            user=user,
            status=409,
            title="Not possible now",
            message=f"This payment cannot be {action}ed in its status ({p['status']}).",
        )
    default = detail.amount_refundable if action == "refund" else p["amount_capturable"]
    return render(
        request,
        "dashboard/confirm.html",
        user=user,
        status=status,
        p=p,
        action=action,
        key=new_action_key(),
        error=error,
        amount=amount if amount is not None else _major(default, p["currency"]),
        refundable=detail.amount_refundable,
        reasons=REFUND_REASONS if action == "refund" else CANCEL_REASONS,
    )


@router.get("/payments/{pi_id}/{action}")
async def confirm(
    request: Request,
    pi_id: str,
    action: str,
    user: Annotated[CurrentUser, Depends(require_role(*MONEY))],
) -> HTMLResponse:
    if action not in ACTIONS:
        return _missing(request, user, pi_id)
    return await _confirm_page(request, user, pi_id, action)


def _parse_amount(value: str, currency: str) -> int | None:
    """``value`` (major units) in minor units; None: blank (the whole amount)."""
    if not value.strip():
        return None
    return Money.parse(value.strip(), currency).amount


@router.post("/payments/{pi_id}/{action}")
async def act(
    request: Request,
    pi_id: str,
    action: str,
    user: Annotated[CurrentUser, Depends(require_role(*MONEY))],
) -> Response:
    if action not in ACTIONS:
        return _missing(request, user, pi_id)
    form = await request.form()
    key = str(form.get("idempotency_key") or "")
    amount_text = str(form.get("amount") or "")
    reason = str(form.get("reason") or "") or None
    app = core(request)
    try:
        current = await _reads(request).detail(user.account_id, pi_id)
    except PaymuxError:
        return _missing(request, user, pi_id)
    currency = str(current.payment["currency"])
    try:
        amount = _parse_amount(amount_text, currency) if action != "cancel" else None
    except MoneyError:
        return await _confirm_page(
            request,
            user,
            pi_id,
            action,
            status=400,
            amount=amount_text,
            error="Write the amount as a number such as 10.50.",
        )
    params = {"amount": amount, "reason": reason}
    account = user.account_id

    async def operation() -> dict[str, Any]:
        if action == "capture":
            return await app.payments.capture(account, pi_id, amount_to_capture=amount)
        if action == "cancel":
            return await app.payments.cancel(account, pi_id, cancellation_reason=reason)
        return await app.refunds.create(account, pi_id, amount=amount, reason=reason)

    route = ("refunds",) if action == "refund" else ("payment_intents", action)
    verb = "create" if action == "refund" else action
    outcome: ActionResult = await run_action(
        request, user, key=key, route=route, verb=verb, params=params, operation=operation
    )
    if outcome.ok:  # done (or done already, by the same form's first submit)
        return RedirectResponse(f"{PREFIX}/payments/{pi_id}?done={action}", status_code=303)
    if outcome.code == "idempotency_key_in_use":  # the first submit is still running
        return RedirectResponse(f"{PREFIX}/payments/{pi_id}?done=pending", status_code=303)
    return await _confirm_page(
        request,
        user,
        pi_id,
        action,
        status=max(outcome.status, 400),
        amount=amount_text,
        error=outcome.error_message,
    )
