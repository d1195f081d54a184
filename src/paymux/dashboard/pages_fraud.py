"""Fraud: the review queue (approve or reject, each once per form however often it is sent:
they move money, so they run through ``run_action`` with the form's key), the rules (add,
edit, enable/disable, with the rule language's own validation, and a dry run over the last
payments before saving) and the value lists (add and remove items).

Everyone may look; approving and rejecting reviews is for admin and support (``MONEY``),
editing rules and lists for admin and developer (``DEVELOPERS``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.dashboard.actions import new_action_key, record_action, run_action
from paymux.dashboard.auth import ANY, DEVELOPERS, MONEY, CurrentUser, core, require_role
from paymux.dashboard.page_helpers import answer, done, field, refused
from paymux.dashboard.render import PREFIX, render
from paymux.domain.errors import PaymuxError
from paymux.fraud.rules import MAX_TEST_PAYMENTS

__all__ = ["router"]

router = APIRouter()
Viewer = Annotated[CurrentUser, Depends(require_role(*ANY))]
Support = Annotated[CurrentUser, Depends(require_role(*MONEY))]
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
_BACK = f"{PREFIX}/fraud"
_PAGE = 50


async def _page(
    request: Request,
    user: CurrentUser,
    *,
    status: int = 200,
    draft: str = "",
    dry_run: dict[str, Any] | None = None,
    error: str | None = None,
) -> Response:
    app = core(request)
    reviews, _ = await app.reviews.list_page(
        user.account_id, limit=_PAGE, starting_after=None, ending_before=None, open=True
    )
    rules, _ = await app.fraud_rules.list_page(
        user.account_id, limit=100, starting_after=None, ending_before=None
    )
    lists, _ = await app.value_lists.list_page(
        user.account_id, limit=100, starting_after=None, ending_before=None
    )
    items: dict[str, list[dict[str, Any]]] = {}
    for lst in lists:
        items[lst["id"]], _ = await app.value_lists.list_items(
            user.account_id, lst["id"], limit=100, starting_after=None, ending_before=None
        )
    return render(
        request,
        "dashboard/fraud.html",
        user=user,
        status=status,
        reviews=reviews,
        review_keys={r["id"]: new_action_key() for r in reviews},
        rules=rules,
        lists=lists,
        items=items,
        draft=draft,
        dry_run=dry_run,
        error=error,
        can_review=user.can(MONEY),
        can_edit=user.can(DEVELOPERS),
    )


@router.get("/fraud")
async def fraud_page(request: Request, user: Viewer) -> Response:
    return await _page(request, user)


@router.post("/fraud/reviews/{review_id}/{verb}")
async def decide_review(request: Request, review_id: str, verb: str, user: Support) -> Response:
    if verb not in ("approve", "reject"):
        return refused(
            request,
            user,
            PaymuxError.of(
                "parameter_invalid", "A review is approved or rejected.", param="action"
            ),
        )
    form = await request.form()
    reviews = core(request).reviews
    do = reviews.approve if verb == "approve" else reviews.reject
    result = await run_action(
        request,
        user,
        key=field(form, "idempotency_key"),
        route=("reviews",),
        verb=verb,
        params={"review": review_id},
        operation=lambda: do(user.account_id, review_id),
    )
    return answer(request, user, result, _BACK)


def _priority(form: Any) -> int | None:
    raw = field(form, "priority")
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,7}", raw) or int(raw) > 1_000_000:
        raise PaymuxError.of(
            "parameter_invalid",
            "The priority is a whole number from 0 to 1000000.",
            param="priority",
        )
    return int(raw)


@router.post("/fraud/rules")
async def save_rule(request: Request, user: Developer) -> Response:
    """Add a rule (no ``rule_id``) or change one; ``dry_run`` evaluates it over the last
    payments and shows which it would have matched, saving nothing."""
    form = await request.form()
    text, rule_id = field(form, "rule"), field(form, "rule_id")
    rules = core(request).fraud_rules
    try:
        if not text:
            raise PaymuxError.of("parameter_missing", "Write a rule.", param="rule")
        if field(form, "dry_run"):
            tested = await rules.test(user.account_id, text, MAX_TEST_PAYMENTS)
            return await _page(request, user, draft=text, dry_run=tested)
        params: dict[str, Any] = {"rule": text, "description": field(form, "description")}
        priority = _priority(form)
        if priority is not None:
            params["priority"] = priority
        if rule_id:
            saved = await rules.update(user.account_id, rule_id, params)
        else:
            saved = await rules.create(user.account_id, params)
    except PaymuxError as exc:
        return await _page(
            request, user, status=400, draft=text, error=str(exc.to_dict().get("message"))
        )
    await record_action(
        request,
        user,
        "fraud_rule.update" if rule_id else "fraud_rule.create",
        object_type="fraud_rule",
        object_id=str(saved["id"]),
        details={"rule": saved["rule"]},
    )
    return done(_BACK)


@router.post("/fraud/rules/{rule_id}/{verb}")
async def rule_status(request: Request, rule_id: str, verb: str, user: Developer) -> Response:
    status = {"enable": "active", "disable": "disabled"}.get(verb)
    try:
        if status is None:
            raise PaymuxError.of(
                "parameter_invalid", "A rule is enabled or disabled.", param="action"
            )
        await core(request).fraud_rules.set_status(user.account_id, rule_id, status)
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request, user, f"fraud_rule.{verb}", object_type="fraud_rule", object_id=rule_id
    )
    return done(_BACK)


@router.post("/fraud/lists/{list_id}/items")
async def add_item(request: Request, list_id: str, user: Developer) -> Response:
    form = await request.form()
    try:
        item = await core(request).value_lists.add_item(
            user.account_id, list_id, field(form, "value"), user.actor
        )
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request,
        user,
        "value_list_item.create",
        object_type="radar.value_list_item",
        object_id=str(item["id"]),
    )
    return done(_BACK)


@router.post("/fraud/items/{item_id}/delete")
async def delete_item(request: Request, item_id: str, user: Developer) -> Response:
    try:
        await core(request).value_lists.delete_item(user.account_id, item_id)
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request,
        user,
        "value_list_item.delete",
        object_type="radar.value_list_item",
        object_id=item_id,
    )
    return done(_BACK)
