"""/v1/setup_intents: save a card for a customer without a charge (Stripe's SetupIntents)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.access import publishable_setup_view
from paymux.api.billing_schemas import (
    CancelSetupIntent,
    ConfirmSetupIntent,
    CreateSetupIntent,
    UpdateSetupIntent,
)
from paymux.api.deps import (
    Caller,
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    expanded,
    idempotent,
    list_expanded,
    require_client_secret,
)
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body
from paymux.domain.errors import PaymuxError
from paymux.gateways.browser_sdk import with_sdk_url
from paymux.services.setup_intents import SetupParams, UpdateSetupParams

router = APIRouter(prefix="/v1/setup_intents", tags=["setup_intents"])
KIND = "setup_intent"


@router.post("")
async def create_setup_intent(
    c: CallerDep, body: CreateSetupIntent = wire_body(CreateSetupIntent, required=False)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = SetupParams(**body.model_dump(exclude={"expand"}))

    async def create() -> dict[str, Any]:
        view = await c.app.setup_intents.create(c.account_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


@router.get("")
async def list_setup_intents(
    c: CallerDep, page: ListDep, customer: Annotated[str | None, Query(max_length=255)] = None
) -> JSONResponse:
    data, more = await c.app.setup_intents.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        customer=customer,
        created=page.created,
    )
    return await list_expanded(c, "/v1/setup_intents", KIND, data, more, page)


@router.get("/{seti_id}")
async def retrieve_setup_intent(
    seti_id: str,
    c: CallerDep,
    expand: ExpandDep,
    client_secret: Annotated[str | None, Query(max_length=100)] = None,
) -> JSONResponse:
    """A SetupIntent waiting for the payer is settled here by asking its gateway. With a
    publishable key (paymux.js), ``client_secret`` is required (checked before this runs),
    and the answer is the publishable view, nothing expanded."""
    if c.kind == "publishable":
        view = await c.app.setup_intents.retrieve(c.account_id, seti_id)
        return JSONResponse(await _with_client(c, publishable_setup_view(view), view))
    check_expand(KIND, expand, c)
    view = await c.app.setup_intents.retrieve(c.account_id, seti_id)
    return JSONResponse(await expanded(c, view, expand))


async def _with_client(c: Caller, shown: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    """``client``: what the gateway's browser component needs (as a PaymentIntent's view
    has it) while the SetupIntent waits for a card: Stripe.js's URL and publishable key; and
    while it waits for the payer's approval of PayPal's setup token (a page reloaded mid
    setup mounts PayPal's buttons again, for that token)."""
    action = view.get("next_action") or {}
    # PayPal's setup token, or Stripe's SetupIntent that Stripe.js confirms with the card.
    approving = action.get("paypal_setup_token") or action.get("type") == "use_stripe_sdk"
    if view["status"] not in ("requires_payment_method", "requires_confirmation") and not (
        view["status"] == "requires_action" and approving
    ):
        return shown
    try:
        gateway = await c.app.ctx.gateway(
            view["gateway"], account_id=c.account_id, connection_id=view["connection"]
        )
    except PaymuxError:  # its connection is gone or not configured here: nothing to mount
        return shown
    client = with_sdk_url(c.app.ctx.settings, gateway.browser_params(str(view["id"])))
    return {**shown, "client": client}


@router.post("/{seti_id}")
async def update_setup_intent(
    seti_id: str, c: CallerDep, body: UpdateSetupIntent = wire_body(UpdateSetupIntent)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = UpdateSetupParams(**body.model_dump(exclude={"expand"}))

    async def update() -> dict[str, Any]:
        view = await c.app.setup_intents.update(c.account_id, seti_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)


@router.post("/{seti_id}/confirm")
async def confirm_setup_intent(
    seti_id: str,
    c: CallerDep,
    b: ConfirmSetupIntent = wire_body(ConfirmSetupIntent, required=False),
) -> Response:
    await require_client_secret(c, seti_id, b)
    check_expand(KIND, b.expand, c)

    async def confirm() -> dict[str, Any]:
        view = await c.app.setup_intents.confirm(
            c.account_id,
            seti_id,
            payment_method=b.payment_method,
            return_url=b.return_url,
            payment_method_data=(
                b.payment_method_data.model_dump() if b.payment_method_data else None
            ),
            verification_token=b.verification_token,
        )
        if c.kind == "publishable":
            return publishable_setup_view(view)
        return await expanded(c, view, b.expand)

    return await idempotent(c, b, confirm)


@router.post("/{seti_id}/cancel")
async def cancel_setup_intent(
    seti_id: str,
    c: CallerDep,
    b: CancelSetupIntent = wire_body(CancelSetupIntent, required=False),
) -> Response:
    check_expand(KIND, b.expand, c)

    async def cancel() -> dict[str, Any]:
        view = await c.app.setup_intents.cancel(c.account_id, seti_id, b.cancellation_reason)
        return await expanded(c, view, b.expand)

    return await idempotent(c, b, cancel)
