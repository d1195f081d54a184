"""/v1/payment_intents"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from paymux.api.access import publishable_view
from paymux.api.deps import (
    CallerDep,
    DirectRoute,
    ExpandDep,
    ListDep,
    check_expand,
    direct,
    direct_caller,
    direct_expand,
    direct_query_str,
    expanded,
    idempotent,
    list_expanded,
    require_client_secret,
)
from paymux.api.responses import JSONResponse
from paymux.api.schemas import (
    CancelPaymentIntent,
    CapturePaymentIntent,
    ConfirmPaymentIntent,
    CreatePaymentIntent,
    UpdatePaymentIntent,
)
from paymux.api.stripe_shapes import shaped, shaping_errors
from paymux.api.wire import WireBody, wire_body
from paymux.services.payments import CreateParams, UpdateParams, amount_from, charge_amount

router = APIRouter(prefix="/v1/payment_intents", tags=["payment_intents"])
KIND = "payment_intent"


async def create_payment_intent(
    c: CallerDep, body: CreatePaymentIntent = wire_body(CreatePaymentIntent)
) -> Response:
    check_expand(KIND, body.expand, c)
    fields = body.model_dump(exclude={"expand"})
    fields["amount"] = amount_from(body.amount, body.amount_decimal, body.currency)
    charge_amount(fields["amount"], body.currency)  # request validation: never stored
    del fields["amount_decimal"]
    params = CreateParams(**fields)

    async def create() -> dict[str, Any]:
        view = await c.app.payments.create(c.account_id, params)
        return await shaped(c, await expanded(c, view, body.expand))

    return await idempotent(c, body, shaping_errors(c, create))


_CREATE_BODY = WireBody(CreatePaymentIntent)


@direct(create_payment_intent)
async def _create_payment_intent(request: Request) -> Response:
    """What serves the create (api/deps.py ``DirectRoute``): the caller, then the body."""
    c = await direct_caller(request)
    body = cast(CreatePaymentIntent, await _CREATE_BODY(request))
    return await create_payment_intent(c, body)


router.add_api_route("", create_payment_intent, methods=["POST"], route_class_override=DirectRoute)


@router.get("")
async def list_payment_intents(
    c: CallerDep, page: ListDep, customer: Annotated[str | None, Query()] = None
) -> JSONResponse:
    data, more = await c.app.payments.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        customer=customer,
        created=page.created,
    )
    data = [await shaped(c, item) for item in data]
    return await list_expanded(c, "/v1/payment_intents", KIND, data, more, page)


async def retrieve_payment_intent(
    pi_id: str,
    c: CallerDep,
    expand: ExpandDep,
    client_secret: Annotated[str | None, Query(max_length=100)] = None,
) -> JSONResponse:
    """With a publishable key, ``client_secret`` is required (checked before this runs), and
    nothing is expanded (a checkout page sees only the intent)."""
    if c.kind == "publishable":
        return JSONResponse(publishable_view(await c.app.payments.retrieve(c.account_id, pi_id)))
    check_expand(KIND, expand, c)
    view = await c.app.payments.retrieve(c.account_id, pi_id)
    return JSONResponse(await shaped(c, await expanded(c, view, expand)))


@direct(retrieve_payment_intent)
async def _retrieve_payment_intent(request: Request) -> Response:
    """What serves the GET (api/deps.py ``DirectRoute``): the same parameters read and checked
    in FastAPI's order, without its dependency solving."""
    c = await direct_caller(request)
    expand = await direct_expand(request)
    client_secret = direct_query_str(request, "client_secret", max_length=100)
    return await retrieve_payment_intent(request.path_params["pi_id"], c, expand, client_secret)


router.add_api_route(
    "/{pi_id}", retrieve_payment_intent, methods=["GET"], route_class_override=DirectRoute
)


@router.post("/{pi_id}")
async def update_payment_intent(
    pi_id: str, c: CallerDep, body: UpdatePaymentIntent = wire_body(UpdatePaymentIntent)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = UpdateParams(**body.model_dump(exclude={"expand"}))

    async def update() -> dict[str, Any]:
        view = await c.app.payments.update(c.account_id, pi_id, params)
        return await shaped(c, await expanded(c, view, body.expand))

    return await idempotent(c, body, update)


async def confirm_payment_intent(
    pi_id: str,
    c: CallerDep,
    b: ConfirmPaymentIntent = wire_body(ConfirmPaymentIntent, required=False),
) -> Response:
    await require_client_secret(c, pi_id, b)
    check_expand(KIND, b.expand, c)

    async def confirm() -> dict[str, Any]:
        view = await c.app.payments.confirm(
            c.account_id,
            pi_id,
            payment_method=b.payment_method,
            off_session=b.off_session,
            return_url=b.return_url,
            setup_future_usage=b.setup_future_usage,
            verification_token=b.verification_token,
            payment_method_options=(
                b.payment_method_options.model_dump() if b.payment_method_options else None
            ),
            payment_method_data=(
                b.payment_method_data.model_dump() if b.payment_method_data else None
            ),
        )
        if c.kind == "publishable":
            return publishable_view(view)
        return await shaped(c, await expanded(c, view, b.expand))

    return await idempotent(c, b, shaping_errors(c, confirm))


_CONFIRM_BODY = WireBody(ConfirmPaymentIntent, required=False)


@direct(confirm_payment_intent)
async def _confirm_payment_intent(request: Request) -> Response:
    """What serves the confirm (api/deps.py ``DirectRoute``): the caller, then the body."""
    c = await direct_caller(request)
    b = cast(ConfirmPaymentIntent, await _CONFIRM_BODY(request))
    return await confirm_payment_intent(request.path_params["pi_id"], c, b)


router.add_api_route(
    "/{pi_id}/confirm",
    confirm_payment_intent,
    methods=["POST"],
    route_class_override=DirectRoute,
)


@router.post("/{pi_id}/capture")
async def capture_payment_intent(
    pi_id: str,
    c: CallerDep,
    b: CapturePaymentIntent = wire_body(CapturePaymentIntent, required=False),
) -> Response:
    check_expand(KIND, b.expand, c)

    async def capture() -> dict[str, Any]:
        view = await c.app.payments.capture(c.account_id, pi_id, b.amount_to_capture, b.currency)
        return await shaped(c, await expanded(c, view, b.expand))

    return await idempotent(c, b, shaping_errors(c, capture))


@router.post("/{pi_id}/cancel")
async def cancel_payment_intent(
    pi_id: str,
    c: CallerDep,
    b: CancelPaymentIntent = wire_body(CancelPaymentIntent, required=False),
) -> Response:
    check_expand(KIND, b.expand, c)

    async def cancel() -> dict[str, Any]:
        view = await c.app.payments.cancel(c.account_id, pi_id, b.cancellation_reason)
        return await shaped(c, await expanded(c, view, b.expand))

    return await idempotent(c, b, shaping_errors(c, cancel))
