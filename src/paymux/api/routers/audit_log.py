"""/v1/audit_log: the account's audit log (who did what to which object, and when), newest
first. A secret key, or a restricted key with ``audit_log: read``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from paymux.api.deps import CallerDep, ListDep, list_response
from paymux.api.responses import JSONResponse

router = APIRouter(prefix="/v1/audit_log", tags=["audit_log"])


@router.get("")
async def list_audit_log(
    c: CallerDep,
    page: ListDep,
    object_id: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    data, more = await c.app.audit.list(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        object_id=object_id,
        action=action,
        actor=actor,
    )
    return list_response("/v1/audit_log", data, more)
