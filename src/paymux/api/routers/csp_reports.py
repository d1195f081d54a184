"""/v1/admin/csp_reports: the Content-Security-Policy violations browsers reported from
paymux's pages (checkout/csp_reports.py), newest first, for the operator (PAYMUX_ADMIN_KEY,
as the rest of /v1/admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from paymux.api.responses import JSONResponse
from paymux.api.routers.admin import AdminDep

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/csp_reports")
async def list_csp_reports(
    app: AdminDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> JSONResponse:
    data = await app.csp_reports.list_page(limit)
    return JSONResponse({"object": "list", "data": data, "has_more": len(data) == limit})
