"""Developers: the account's API keys of the session's mode, masked (``sk_test_...abcd``:
never the key), with create, roll and revoke. Admins and developers only: for support and
view-only users the page, its actions and its nav entry do not exist (403).

A new key (secret, publishable, or restricted with its grants per resource, as
``POST /v1/admin/keys`` takes them) is shown once, on the POST's own answer (``no-store``),
then only masked. A refused form (an unknown type, a restricted key without grants, an
unknown level) answers 400 naming the field and makes no key. Each submit makes a key: a
second submit of the form makes a second key, shown on that answer (the first stays listed,
masked; revoke it if unused).

A roll answers with the new key once, on the POST's own response (``no-store``): the one
time it is ever shown, as Stripe's dashboard does; no GET page ever carries it. The same
form submitted again (a double click, a reload) answers 409 "Already rolled" with the new
key's id, never a second roll or the key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.dashboard.auth import DEVELOPERS, CurrentUser, core, require_role
from paymux.dashboard.page_helpers import done, field, refused
from paymux.dashboard.render import PREFIX, render
from paymux.domain.errors import PaymuxError
from paymux.services.keys import KINDS, RESOURCES

__all__ = ["GRACE_CHOICES", "router"]

router = APIRouter()
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
# How long the old key keeps working after a roll: (seconds, label).
GRACE_CHOICES = ((0, "Stop it now"), (3600, "1 hour"), (86_400, "24 hours"), (604_800, "7 days"))


async def _owned(request: Request, user: CurrentUser, key_id: str) -> dict[str, object] | None:
    keys = await core(request).keys.list(user.account_id)
    return next((k for k in keys if k["id"] == key_id and k["livemode"] == user.livemode), None)


@router.get("/keys")
async def keys_page(request: Request, user: Developer) -> Response:
    keys = [
        k for k in await core(request).keys.list(user.account_id) if k["livemode"] == user.livemode
    ]
    keys.sort(key=lambda k: (k["revoked"], -int(k["created"])))
    return render(
        request,
        "dashboard/keys.html",
        user=user,
        keys=keys,
        grace_choices=GRACE_CHOICES,
        kinds=KINDS,
        resources=RESOURCES,
    )


_NAME_MAX = 100


@router.post("/keys/new")
async def create_key(request: Request, user: Developer) -> Response:
    form = await request.form()
    grants = {r: level for r in RESOURCES if (level := field(form, f"perm_{r}"))}
    try:
        new, view = await core(request).keys.create(
            user.account_id,
            kind=field(form, "type")[:20],
            livemode=user.livemode,
            name=field(form, "name")[:_NAME_MAX] or None,
            permissions=grants or None,
            actor=user.actor,
            request_id=getattr(request.state, "request_id", None),
        )
    except PaymuxError as exc:
        return refused(request, user, exc)
    return render(request, "dashboard/key_created.html", user=user, view=view, secret=new.key)


def _already_rolled(request: Request, user: CurrentUser, key_id: str, new_id: str) -> Response:
    return render(
        request,
        "dashboard/message.html",
        user=user,
        status=409,
        title="Already rolled",
        message=f"API key {key_id} was already rolled to {new_id}: its new secret was shown "
        "once, on the answer to the first submit. If it was lost, roll "
        f"{new_id} in turn.",
    )


@router.post("/keys/{key_id}/roll")
async def roll_key(request: Request, key_id: str, user: Developer) -> Response:
    form = await request.form()
    try:
        grace = int(field(form, "expires_in", "0"))
    except ValueError:
        grace = -1
    owned = await _owned(request, user, key_id)
    if owned is None:
        return refused(
            request,
            user,
            PaymuxError.of("resource_missing", f"No such API key: '{key_id[:40]}'", param="id"),
        )
    if owned["rolled_to"]:  # a second submit of the form (a double click, a reload)
        return _already_rolled(request, user, key_id, str(owned["rolled_to"]))
    try:
        new, view = await core(request).keys.roll(
            key_id,
            grace,
            actor=user.actor,
            request_id=getattr(request.state, "request_id", None),
        )
    except PaymuxError as exc:
        if exc.code == "api_key_unexpected_state":  # rolled by a submit running alongside
            again = await _owned(request, user, key_id)
            if again is not None and again["rolled_to"]:
                return _already_rolled(request, user, key_id, str(again["rolled_to"]))
        return refused(request, user, exc)
    return render(
        request,
        "dashboard/key_rolled.html",
        user=user,
        old_id=key_id,
        view=view,
        secret=new.key,
    )


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, user: Developer) -> Response:
    if await _owned(request, user, key_id) is None:
        return refused(
            request,
            user,
            PaymuxError.of("resource_missing", f"No such API key: '{key_id[:40]}'", param="id"),
        )
    await core(request).keys.revoke(
        key_id, actor=user.actor, request_id=getattr(request.state, "request_id", None)
    )
    return done(f"{PREFIX}/keys")
