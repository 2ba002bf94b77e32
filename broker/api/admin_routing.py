"""Admin API for routing (issue 6): a tenant's routing document, Microsoft's endpoint data
(versions, diff, import — prefecture operators only, it applies to every tenant), "does this
host break out, and why", and override codes for one device.

    GET  /v1/admin/tenants/{tenant}/routing        the document in force (+ where it comes from)
    PUT  /v1/admin/tenants/{tenant}/routing        YAML body; validated, else 422 and nothing changes
    GET  /v1/admin/tenants/{tenant}/breakout?host=&port=   the breakout decision with its rule
    GET  /v1/admin/m365/versions                    imported versions and their diff summaries
    POST /v1/admin/m365/import?version=             Microsoft's JSON as the body
    POST /v1/admin/devices/{device_id}/override     {"minutes": 60, "reason": "..."} → the code
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from broker.admin_auth import PREFECTURE_OPERATOR, AdminIdentity
from broker.m365 import EndpointDataError
from broker.routing import load_routing
from broker.runtime.m365_import import import_endpoint_data
from broker.runtime.override_service import issue_override
from broker.runtime.routing_lookup import M365_INSTANCE, routing_in_force, tenant_breakout
from broker.runtime.store import StoreError
from ztcore.breakout import BreakoutMatcher, format_ports
from ztcore.decision import deny
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

if TYPE_CHECKING:
    from broker.api.admin import AdminApi

MAX_ROUTING_BYTES = 256 * 1024
MAX_M365_BYTES = 8 * 1024 * 1024
Scoped = Callable[[Request, str, bool], Awaitable["AdminIdentity | JSONResponse"]]
Who = Callable[[Request], Awaitable["AdminIdentity | JSONResponse"]]
Changed = Callable[[AdminIdentity, str, "str | None", str, Any, Any], Awaitable[None]]


class OverrideRequest(BaseModel):
    minutes: int = Field(ge=1, le=1440)
    reason: str = Field(min_length=1, max_length=300)


def add_routing_routes(router: APIRouter, api: AdminApi, scoped: Scoped, who: Who,
                       changed: Changed, refusal: Callable[[Any], JSONResponse]) -> None:
    store = api.store

    @router.get("/tenants/{tenant}/routing")
    async def get_routing(tenant: str, request: Request) -> Response:
        admin = await scoped(request, tenant, False)
        if isinstance(admin, JSONResponse):
            return admin
        policy, origin = await run_in_threadpool(routing_in_force, store, tenant)
        own = await run_in_threadpool(store.get_routing, tenant)
        return JSONResponse({"tenant": tenant, "origin": origin, "routing": policy.to_json_dict(),
                             "document": own.document if own else None,
                             "revision": own.revision if own else None})

    @router.put("/tenants/{tenant}/routing")
    async def put_routing(tenant: str, request: Request) -> Response:
        admin = await scoped(request, tenant, True)
        if isinstance(admin, JSONResponse):
            return admin
        raw = await request.body()
        if len(raw) > MAX_ROUTING_BYTES:
            return refusal(deny(Reason.REQUEST_INVALID, status=413, detail="document over 256 KB"))
        try:
            text = raw.decode("utf-8")
            policy = load_routing(text)
        except (UnicodeDecodeError, ConfigError) as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=422,
                                detail=f"{exc}; the routing in force is unchanged"))
        revision = await run_in_threadpool(lambda: store.put_routing(
            tenant, text, actor=f"{admin.role}:{admin.name}", now=api.clock()))
        await changed(admin, "routing.put", tenant, f"revision {revision}", None,
                      policy.to_json_dict())
        return JSONResponse({"tenant": tenant, "revision": revision,
                             "routing": policy.to_json_dict()})

    @router.get("/tenants/{tenant}/breakout")
    async def check_breakout(tenant: str, host: str, request: Request, port: int = 443) -> Response:
        admin = await scoped(request, tenant, False)
        if isinstance(admin, JSONResponse):
            return admin
        if not 1 <= port <= 65535 or not host or len(host) > 253:
            return refusal(deny(Reason.REQUEST_INVALID, status=422, detail="host or port invalid"))
        rules = await run_in_threadpool(tenant_breakout, store, tenant)
        match = BreakoutMatcher(rules).route(host, port)
        rule = match.rule
        return JSONResponse({
            "tenant": tenant, "host": host, "port": port,
            "route": "direct" if match.direct else "tunnel",
            "rule": None if rule is None else {
                "label": rule.label, "pattern": rule.pattern, "source": rule.source.value,
                "set_id": rule.set_id, "category": rule.category,
                "ports": format_ports(rule.ports)},
            "microsoft_data": rules.source_version, "rules_version": rules.version})

    @router.get("/m365/versions")
    async def m365_versions(request: Request) -> Response:
        admin = await who(request)
        if isinstance(admin, JSONResponse):
            return admin
        rows = await run_in_threadpool(store.m365_versions, M365_INSTANCE)
        return JSONResponse({"versions": [
            {"id": r.id, "version": r.version, "sha256": r.sha256, "imported_at": r.imported_at,
             "imported_by": r.imported_by, "source": r.source,
             "diff": json.loads(r.diff) if r.diff else None} for r in rows]})

    @router.post("/m365/import")
    async def m365_import(request: Request, version: str | None = None) -> Response:
        admin = await who(request)
        if isinstance(admin, JSONResponse):
            return admin
        if admin.role != PREFECTURE_OPERATOR or admin.tenant is not None:
            return refusal(deny(Reason.ADMIN_UNAUTHORIZED, status=403,
                                detail="only a prefecture operator for every tenant may import "
                                       "Microsoft 365 endpoint data"))
        raw = await request.body()
        if len(raw) > MAX_M365_BYTES:
            return refusal(deny(Reason.REQUEST_INVALID, status=413, detail="data over 8 MB"))
        if version is not None and (not version.isdigit() or len(version) != 10):
            return refusal(deny(Reason.REQUEST_INVALID, status=422,
                                detail="version: expected Microsoft's 10 digits, e.g. 2024041700"))
        try:
            result = await run_in_threadpool(lambda: import_endpoint_data(
                store, raw, instance=M365_INSTANCE, version=version, source="admin API",
                actor=f"{admin.role}:{admin.name}", now=api.clock()))
        except EndpointDataError as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=422,
                                detail=f"{exc}; the version in force is unchanged"))
        except StoreError as exc:
            return refusal(deny(Reason.INTERNAL_ERROR, status=503, detail=str(exc)))
        record = result.record or result.previous
        return JSONResponse({
            "changed": result.record is not None,
            "version": record.version if record else None,
            "sets": len(result.data.sets), "categories": result.data.category_counts(),
            "diff": result.diff.to_json_dict() if result.diff is not None else None})

    @router.post("/devices/{device_id}/override")
    async def override(device_id: str, body: OverrideRequest, request: Request) -> Response:
        device = await run_in_threadpool(store.get_device, device_id)
        if device is None:
            return refusal(deny(Reason.DEVICE_UNKNOWN, status=404, detail=f"no device {device_id}"))
        admin = await scoped(request, device.tenant_id, True)
        if isinstance(admin, JSONResponse):
            return admin
        try:
            code = await run_in_threadpool(lambda: issue_override(
                store, api.seal_key, device_id, minutes=body.minutes, reason=body.reason,
                actor=f"{admin.role}:{admin.name}", now=api.clock()))
        except StoreError as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=422, detail=str(exc)))
        return JSONResponse({"device": device_id, "code": code.code, "code_id": code.code_id,
                             "expires_at": code.expires_at, "minutes": code.minutes})
