"""The broker's control-plane HTTP API (FastAPI): enrolment, the CA, health, metrics, and the
admin API (broker/api/admin.py).

Served over TLS with the broker's server certificate. Refusals answer with the same reason
vocabulary as the tunnel: `{"reason", "message_ja", "message_en", "detail"}`. Every enrolment
attempt, accepted or refused, is an audit event, durable before the answer is sent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from broker.api.admin import AdminApi, admin_router
from broker.runtime.device_authority import DeviceAuthority, Enrolment
from ztcore.audit import AuditEvent
from ztcore.decision import Decision
from ztcore.reasons import Reason


class EnrolRequest(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    csr_pem: str = Field(min_length=1, max_length=16 * 1024)
    hostname: str = Field(default="", max_length=200)


@dataclass(frozen=True)
class TunnelEndpoint:
    host: str
    port: int
    server_name: str


def refusal(decision: Decision) -> JSONResponse:
    return JSONResponse(status_code=decision.status, content={
        "reason": decision.reason.value, "message_ja": decision.message_ja,
        "message_en": decision.message_en, "detail": decision.detail})


def create_app(authority: DeviceAuthority, ca_pem: bytes, tunnel: Callable[[], TunnelEndpoint],
               audit: Callable[[AuditEvent], Awaitable[None]],
               metrics: CollectorRegistry | None = None,
               clock: Callable[[], float] = time.time,
               admin: AdminApi | None = None) -> FastAPI:
    app = FastAPI(title="Sekimori broker", version="0.1.0", docs_url=None, redoc_url=None)
    if admin is not None:
        app.include_router(admin_router(admin))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/ca", response_class=PlainTextResponse)
    def ca() -> Response:
        return Response(ca_pem, media_type="application/x-pem-file")

    @app.post("/v1/enrol")
    async def enrol(body: EnrolRequest, request: Request) -> Response:
        now = clock()
        result = await run_in_threadpool(authority.enrol, body.code, body.csr_pem, body.hostname, now)
        peer = request.client.host if request.client else None
        if not isinstance(result, Enrolment):
            await audit(AuditEvent(time=now, kind="enrolment", address=peer, decision="deny",
                                   reason=result.reason.value, message_ja=result.message_ja,
                                   message_en=result.message_en, detail=result.detail or None))
            return refusal(result)
        await audit(AuditEvent(time=now, kind="enrolment", tenant=result.device.tenant_id,
                               device=result.device.id, address=peer, decision="allow",
                               reason=Reason.DEVICE_ENROLLED.value, detail=f"hostname {result.device.name}"))
        endpoint = tunnel()
        return JSONResponse({
            "device_id": result.device.id, "tenant_id": result.device.tenant_id,
            "certificate_pem": result.certificate_pem.decode(), "ca_pem": ca_pem.decode(),
            "certificate_not_after": result.device.cert_not_after,
            "tunnel": {"host": endpoint.host, "port": endpoint.port,
                       "server_name": endpoint.server_name}})

    if metrics is not None:
        @app.get("/metrics")
        def prometheus() -> Response:
            return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app
