"""The admin API: what the municipal IT admin's console (or a SOC's playbook) calls.

Every request needs `Authorization: Bearer <admin token>` (`sekimori admin-token create NAME`;
only the token's SHA-256 is stored). Every change is an audit event naming the token that made
it. Refusals use the reason vocabulary of the rest of the broker.

- `GET /v1/admin/devices[?tenant=]`: devices with status, quarantine and posture verdict.
- `POST /v1/admin/devices/{id}/quarantine` `{"reason": "..."}`: isolate now (every broker cuts
  the device's streams within about a second; repair destinations stay reachable).
- `DELETE /v1/admin/devices/{id}/quarantine`: release.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from broker.devices import Device
from broker.runtime.posture_store import PostureRecord
from ztcore.audit import AuditEvent
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason


class AdminStore(Protocol):
    def admin_token_name(self, token_hash: str) -> str | None: ...
    def list_devices(self, tenant_id: str | None = None) -> list[Device]: ...
    def device_postures(self, tenant_id: str | None = None) -> dict[str, PostureRecord]: ...
    def set_quarantine(self, device_id: str, now: float, reason: str | None) -> bool | None: ...


class QuarantineRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _refusal(decision: Decision) -> JSONResponse:
    return JSONResponse(status_code=decision.status, content={
        "reason": decision.reason.value, "message_ja": decision.message_ja,
        "message_en": decision.message_en, "detail": decision.detail})


def _device_json(device: Device, posture: PostureRecord | None) -> dict[str, Any]:
    verdict = json.loads(posture.verdict_json) if posture is not None else None
    return {"id": device.id, "tenant": device.tenant_id, "name": device.name,
            "status": device.status, "quarantined": device.quarantined,
            "quarantine_reason": device.quarantine_reason, "last_seen_at": device.last_seen_at,
            "certificate_not_after": device.cert_not_after,
            "posture": None if posture is None else {
                "compliant": posture.compliant, "received_at": posture.received_at,
                "verdict": verdict}}


def admin_router(store: AdminStore, audit: Callable[[AuditEvent], Awaitable[None]],
                 clock: Callable[[], float] = time.time) -> APIRouter:
    router = APIRouter(prefix="/v1/admin")

    async def admin(request: Request) -> str | JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or len(token) > 256:
            return _refusal(deny(Reason.ADMIN_UNAUTHORIZED, status=401,
                                 detail="missing Authorization: Bearer <admin token>"))
        name = await run_in_threadpool(store.admin_token_name, token_hash(token.strip()))
        if name is None:
            return _refusal(deny(Reason.ADMIN_UNAUTHORIZED, status=401,
                                 detail="unknown or revoked admin token"))
        return name

    @router.get("/devices")
    async def devices(request: Request, tenant: str | None = None) -> Response:
        who = await admin(request)
        if isinstance(who, JSONResponse):
            return who
        listed = await run_in_threadpool(store.list_devices, tenant)
        postures = await run_in_threadpool(store.device_postures, tenant)
        return JSONResponse({"devices": [_device_json(d, postures.get(d.id)) for d in listed]})

    async def change(request: Request, device_id: str, reason: str | None) -> Response:
        who = await admin(request)
        if isinstance(who, JSONResponse):
            return who
        now = clock()
        changed = await run_in_threadpool(store.set_quarantine, device_id, now, reason)
        if changed is None:
            return _refusal(deny(Reason.DEVICE_UNKNOWN, status=404, detail=f"no device {device_id}"))
        kind = "admin-quarantine" if reason is not None else "admin-release"
        await audit(AuditEvent(time=now, kind=kind, device=device_id, user=f"admin:{who}",
                               decision="allow", detail=reason or None,
                               reason=(Reason.DEVICE_QUARANTINED if reason is not None
                                       else Reason.DEVICE_RELEASED).value))
        return JSONResponse({"device": device_id, "quarantined": reason is not None,
                             "changed": changed})

    @router.post("/devices/{device_id}/quarantine")
    async def quarantine(device_id: str, body: QuarantineRequest, request: Request) -> Response:
        return await change(request, device_id, body.reason)

    @router.delete("/devices/{device_id}/quarantine")
    async def release(device_id: str, request: Request) -> Response:
        return await change(request, device_id, None)

    return router
