"""Admin API for unblock requests (issue 7): what staff asked for from the block page, and the
admin's decision. An approval allows the host for the tenant for the given minutes, past URL
category and list blocks (never past IOC, DLP or malware blocks).

    GET  /v1/admin/tenants/{tenant}/unblock-requests?status=pending
    POST /v1/admin/unblock-requests/{id}/approve     {"minutes": 60, "note": "..."}
    POST /v1/admin/unblock-requests/{id}/deny        {"note": "..."}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from broker.admin_auth import AdminIdentity
from broker.runtime.store import StoreError
from ztcore.decision import deny
from ztcore.reasons import Reason

if TYPE_CHECKING:
    from broker.api.admin import AdminApi

Scoped = Callable[[Request, str, bool], Awaitable["AdminIdentity | JSONResponse"]]
Changed = Callable[[AdminIdentity, str, "str | None", str, Any, Any], Awaitable[None]]
STATUSES = ("pending", "approved", "denied")


class UnblockDecision(BaseModel):
    minutes: int = Field(default=60, ge=1, le=30 * 24 * 60)
    note: str = Field(default="", max_length=500)


def add_unblock_routes(router: APIRouter, api: AdminApi, scoped: Scoped, changed: Changed,
                       refusal: Callable[[Any], JSONResponse]) -> None:
    store = api.store

    @router.get("/tenants/{tenant}/unblock-requests")
    async def list_requests(tenant: str, request: Request, status: str | None = "pending") -> Response:
        admin = await scoped(request, tenant, False)
        if isinstance(admin, JSONResponse):
            return admin
        if status not in (*STATUSES, None, ""):
            return refusal(deny(Reason.REQUEST_INVALID, status=422,
                                detail="status: expected pending, approved or denied"))
        rows = await run_in_threadpool(store.list_unblock_requests, tenant, status or None)
        return JSONResponse({"tenant": tenant, "requests": [r.to_json_dict() for r in rows]})

    async def decide(request_id: int, request: Request, approve: bool) -> Response:
        found = await run_in_threadpool(store.get_unblock_request, request_id)
        if found is None:
            return refusal(deny(Reason.REQUEST_INVALID, status=404, detail=f"no unblock request {request_id}"))
        admin = await scoped(request, found.tenant_id, True)
        if isinstance(admin, JSONResponse):
            return admin
        try:
            body = UnblockDecision.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=422, detail=str(exc.errors()[0]["msg"])))
        try:
            done = await run_in_threadpool(lambda: store.decide_unblock(
                request_id, approve=approve, minutes=body.minutes, actor=f"{admin.role}:{admin.name}",
                note=body.note, now=api.clock()))
        except StoreError as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=409, detail=str(exc)))
        await changed(admin, "unblock.approve" if approve else "unblock.deny", done.tenant_id,
                      f"{done.id} {done.host}", None, done.to_json_dict())
        return JSONResponse(done.to_json_dict())

    @router.post("/unblock-requests/{request_id}/approve")
    async def approve(request_id: int, request: Request) -> Response:
        return await decide(request_id, request, True)

    @router.post("/unblock-requests/{request_id}/deny")
    async def deny_request(request_id: int, request: Request) -> Response:
        return await decide(request_id, request, False)
