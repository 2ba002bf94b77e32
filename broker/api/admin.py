"""The admin API: what a municipal IT admin's console, a prefecture operator or a SOC playbook
calls. OpenAPI schema at /openapi.json.

Authentication: `POST /v1/admin/login` with name, password and a TOTP code (admin accounts:
`sekimori admin add`) gives a bearer token valid for an hour; automation uses tokens made on
the broker host (`sekimori admin-token create`). Only SHA-256 hashes of tokens are stored.
Authorisation (broker/admin_auth.py): a prefecture operator manages its prefecture and its
municipalities, a municipal admin its own tenant, an auditor reads only. Every change is in the
admin audit trail with actor, time, before and after (and the broker's audit log).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from broker.admin_auth import AdminIdentity, can_read, can_write, verify_password, visible_tenants
from broker.api.admin_routing import add_routing_routes
from broker.api.admin_unblock import add_unblock_routes
from broker.enrolment import format_code, hash_code
from broker.policy.engine import compile_policy, decide
from broker.policy.explain import explain
from broker.policy.lint import lint
from broker.policy.model import Policy, PolicyRequest, SecurityModel, Tenant, Zone
from broker.policy.yaml_io import PolicyError, load_policy_yaml
from broker.posture_profile import PostureConfig
from broker.runtime.policy_service import build_policies, local_time
from broker.runtime.store import Store, StoreError
from idp_bridge.totp import SealError, TotpOutcome, TotpState, open_secret, verify_code
from ztcore.audit import AuditEvent
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason

ADMIN_TOTP_TENANT = "admin"          # the associated data the admins' TOTP secrets are sealed with
LOGIN_TOKEN_SECONDS = 3600
MAX_POLICY_BYTES = 2 * 1024 * 1024


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def refusal(decision: Decision) -> JSONResponse:
    return JSONResponse(status_code=decision.status, content={
        "reason": decision.reason.value, "message_ja": decision.message_ja,
        "message_en": decision.message_en, "detail": decision.detail})


def _unauthorized(detail: str) -> JSONResponse:
    return refusal(deny(Reason.ADMIN_UNAUTHORIZED, status=401, detail=detail))


def _forbidden(admin: AdminIdentity, tenant: str, write: bool) -> JSONResponse:
    what = "change" if write else "read"
    return refusal(deny(Reason.ADMIN_UNAUTHORIZED, status=403,
                        detail=f"{admin.role} {admin.name} may not {what} tenant {tenant!r}"))


class LoginRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    totp: str = Field(min_length=1, max_length=16)


class NewTenant(BaseModel):
    id: str = Field(min_length=2, max_length=63, pattern="^[a-z0-9][a-z0-9-]*[a-z0-9]$")
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(default="beta", pattern="^(alpha|beta|beta_prime)$")
    parent: str | None = Field(default=None, max_length=63)


class QuarantineRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class EnrolmentCodeRequest(BaseModel):
    ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    label: str = Field(default="", max_length=200)


class PolicyTestRequest(BaseModel):
    url: str = Field(min_length=1, max_length=2048)
    user: str | None = Field(default=None, max_length=256)
    groups: list[str] = Field(default_factory=list, max_length=1000)
    segment: str = Field(default="internet", pattern="^(internet|lgwan|mynumber)$")
    mfa_minutes_ago: float | None = Field(default=None, ge=0)
    posture_profile: str | None = Field(default=None, max_length=63)


@dataclass
class AdminApi:
    store: Store
    seal_key: bytes
    posture: PostureConfig
    audit: Callable[[AuditEvent], Awaitable[None]]
    clock: Callable[[], float] = time.time

    def parents(self) -> dict[str, str | None]:
        return {t.id: t.parent for t in self.store.list_tenants()}

    def policy_of(self, tenant: str) -> Policy | None:
        doc = self.store.get_policy(tenant)
        if doc is None:
            return None
        parent = self.parents().get(tenant)
        return load_policy_yaml(doc.document, self.policy_of(parent) if parent else None)


def admin_router(api: AdminApi) -> APIRouter:
    router = APIRouter(prefix="/v1/admin")
    store = api.store

    async def who(request: Request) -> AdminIdentity | JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or len(token) > 256:
            return _unauthorized("missing Authorization: Bearer <admin token>")
        found = await run_in_threadpool(store.admin_token_identity, token_hash(token.strip()),
                                        api.clock())
        return found if found is not None else _unauthorized("unknown, expired or revoked token")

    async def scoped(request: Request, tenant: str, write: bool) -> AdminIdentity | JSONResponse:
        admin = await who(request)
        if isinstance(admin, JSONResponse):
            return admin
        parents = await run_in_threadpool(api.parents)
        if tenant not in parents:
            return refusal(deny(Reason.REQUEST_INVALID, status=404, detail=f"no tenant {tenant!r}"))
        allowed = can_write if write else can_read
        return admin if allowed(admin, tenant, parents) else _forbidden(admin, tenant, write)

    async def reader(request: Request, tenant: str | None
                     ) -> tuple[AdminIdentity, dict[str, str | None]] | JSONResponse:
        """The admin and the tenancy, for a listing optionally narrowed to one tenant."""
        admin = await who(request)
        if isinstance(admin, JSONResponse):
            return admin
        parents = await run_in_threadpool(api.parents)
        if tenant is not None and not can_read(admin, tenant, parents):
            return _forbidden(admin, tenant, write=False)
        return admin, parents

    async def changed(admin: AdminIdentity, action: str, tenant: str | None, target: str,
                      before: Any, after: Any) -> None:
        now = api.clock()
        text = [None if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                for v in (before, after)]
        await run_in_threadpool(store.record_admin_action, actor=f"{admin.role}:{admin.name}",
                                action=action, tenant_id=tenant, target=target, before=text[0],
                                after=text[1], now=now)
        await api.audit(AuditEvent(time=now, kind="admin-change", tenant=tenant,
                                   user=f"admin:{admin.name}", decision="allow",
                                   detail=f"{action} {target}"))

    @router.post("/login")
    async def login(body: LoginRequest) -> Response:
        account = await run_in_threadpool(store.admin_account, body.name)
        now = api.clock()
        if account is None or not await run_in_threadpool(verify_password, body.password, account[1]):
            await api.audit(AuditEvent(time=now, kind="admin-login", user=f"admin:{body.name}",
                                       decision="deny", reason=Reason.CREDENTIALS_INVALID.value))
            return refusal(deny(Reason.CREDENTIALS_INVALID, status=401))

        def check(sealed: bytes, state: TotpState) -> tuple[TotpOutcome, TotpState]:
            try:
                secret = open_secret(sealed, api.seal_key, ADMIN_TOTP_TENANT, body.name)
            except SealError as exc:
                return TotpOutcome(False, Reason.INTERNAL_ERROR, detail=str(exc)), state
            return verify_code(secret, body.totp, now, state)

        outcome = await run_in_threadpool(store.admin_totp_attempt, body.name, check)
        if outcome is None or not outcome.accepted:
            reason = outcome.reason if outcome is not None else Reason.TOTP_NOT_ENROLLED
            await api.audit(AuditEvent(time=now, kind="admin-login", user=f"admin:{body.name}",
                                       decision="deny", reason=reason.value))
            return refusal(outcome.decision if outcome is not None else deny(reason, status=401))
        admin, token = account[0], "skm_" + secrets.token_urlsafe(32)
        await run_in_threadpool(store.add_admin_token, f"{admin.name}#{secrets.token_hex(6)}",
                                token_hash(token), now, role=admin.role, tenant_id=admin.tenant,
                                expires_at=now + LOGIN_TOKEN_SECONDS)
        await api.audit(AuditEvent(time=now, kind="admin-login", user=f"admin:{admin.name}",
                                   decision="allow", reason=Reason.LOGIN_OK.value))
        return JSONResponse({"token": token, "expires_at": now + LOGIN_TOKEN_SECONDS,
                             "role": admin.role, "tenant": admin.tenant})

    @router.get("/tenants")
    async def tenants(request: Request) -> Response:
        admin = await who(request)
        if isinstance(admin, JSONResponse):
            return admin
        listed = await run_in_threadpool(store.list_tenants)
        parents = {t.id: t.parent for t in listed}
        seen = set(visible_tenants(admin, parents))
        return JSONResponse({"tenants": [{"id": t.id, "name": t.name, "parent": t.parent,
                                          "model": t.model} for t in listed if t.id in seen]})

    @router.post("/tenants")
    async def add_tenant(body: NewTenant, request: Request) -> Response:
        """A prefecture operator adds a municipality under its prefecture (the broker operator,
        unscoped, may add any tenant)."""
        admin = await who(request)
        if isinstance(admin, JSONResponse):
            return admin
        parent = body.parent if admin.tenant is None else admin.tenant
        if admin.role != "prefecture-operator" or (admin.tenant is not None
                                                   and body.parent not in (None, admin.tenant)):
            return refusal(deny(Reason.ADMIN_UNAUTHORIZED, status=403,
                                detail="only a prefecture operator adds municipalities, under "
                                       "its own prefecture"))
        now = api.clock()
        try:
            await run_in_threadpool(store.add_tenant, body.id, body.name, now)
            await run_in_threadpool(lambda: store.set_tenancy(
                body.id, parent=parent, model=body.model, actor=f"{admin.role}:{admin.name}",
                now=now))
        except StoreError as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=409, detail=str(exc)))
        await changed(admin, "tenant.add", body.id, body.id, None,
                      {"name": body.name, "parent": parent, "model": body.model})
        return JSONResponse({"id": body.id, "parent": parent, "model": body.model})

    @router.get("/tenants/{tenant}/policy")
    async def get_policy(tenant: str, request: Request) -> Response:
        admin = await scoped(request, tenant, write=False)
        if isinstance(admin, JSONResponse):
            return admin
        doc = await run_in_threadpool(store.get_policy, tenant)
        if doc is None:
            return refusal(deny(Reason.REQUEST_INVALID, status=404, detail="no policy yet"))
        return PlainTextResponse(doc.document, media_type="application/yaml",
                                 headers={"x-policy-revision": str(doc.revision)})

    @router.put("/tenants/{tenant}/policy")
    async def put_policy(tenant: str, request: Request) -> Response:
        admin = await scoped(request, tenant, write=True)
        if isinstance(admin, JSONResponse):
            return admin
        raw = await request.body()
        if len(raw) > MAX_POLICY_BYTES:
            return refusal(deny(Reason.REQUEST_INVALID, status=413, detail="policy over 2 MB"))
        try:
            text = raw.decode("utf-8")
            parent = (await run_in_threadpool(api.parents)).get(tenant)
            baseline = await run_in_threadpool(api.policy_of, parent) if parent else None
            policy = load_policy_yaml(text, baseline)
            if policy.tenant.id != tenant:
                raise PolicyError(f"tenant.id: {policy.tenant.id!r} is not {tenant!r}")
            compile_policy(policy, baseline)
        except (UnicodeDecodeError, PolicyError) as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=422,
                                detail=f"{exc}; the policy in force is unchanged"))
        revision = await run_in_threadpool(lambda: store.put_policy(
            tenant, text, actor=f"{admin.role}:{admin.name}", now=api.clock()))
        await api.audit(AuditEvent(time=api.clock(), kind="admin-change", tenant=tenant,
                                   user=f"admin:{admin.name}", decision="allow",
                                   detail=f"policy revision {revision}"))
        return JSONResponse({"tenant": tenant, "revision": revision, "apps": len(policy.apps),
                             "rules": len(policy.rules)})

    @router.post("/tenants/{tenant}/policy/test")
    async def test_policy(tenant: str, body: PolicyTestRequest, request: Request) -> Response:
        admin = await scoped(request, tenant, write=False)
        if isinstance(admin, JSONResponse):
            return admin
        listed = await run_in_threadpool(store.list_tenants)
        compiled, _ = build_policies(listed, await run_in_threadpool(store.list_policies), {})
        parts = urlsplit(body.url if "://" in body.url else f"https://{body.url}")
        now = api.clock()
        weekday, minute = local_time(now)
        req = PolicyRequest(
            tenant=tenant, user=body.user, groups=frozenset(body.groups),
            mfa=body.mfa_minutes_ago is not None,
            mfa_age_seconds=None if body.mfa_minutes_ago is None else body.mfa_minutes_ago * 60,
            device_id="-", segment=Zone(body.segment),
            posture_compliant=body.posture_profile is not None,
            posture_profile=body.posture_profile, host=(parts.hostname or "").lower(),
            port=parts.port or (80 if parts.scheme == "http" else 443), address=None,
            url_category=None, source_address=None, weekday=weekday, minute_of_day=minute)
        decision = decide(compiled[tenant], req)
        stored = next(t for t in listed if t.id == tenant)
        policy = await run_in_threadpool(api.policy_of, tenant) or Policy(
            tenant=Tenant(stored.id, stored.name, stored.parent, SecurityModel(stored.model)))
        return JSONResponse({"allowed": decision.allowed, "layer": decision.layer,
                             "rule": decision.rule_id, "reasons": list(decision.reasons),
                             "obligations": sorted(o.value for o in decision.obligations),
                             "explanation": explain(decision, req, policy)})

    @router.get("/tenants/{tenant}/policy/lint")
    async def lint_policy(tenant: str, request: Request) -> Response:
        admin = await scoped(request, tenant, write=False)
        if isinstance(admin, JSONResponse):
            return admin
        policy = await run_in_threadpool(api.policy_of, tenant)
        if policy is None:
            return refusal(deny(Reason.REQUEST_INVALID, status=404, detail="no policy yet"))
        parent = (await run_in_threadpool(api.parents)).get(tenant)
        baseline = await run_in_threadpool(api.policy_of, parent) if parent else None
        return JSONResponse({"findings": [
            {"kind": f.kind, "rule": f.rule_id, "other_rule": f.other_rule_id,
             "severity": f.severity, "message_ja": f.message_ja, "message_en": f.message_en}
            for f in lint(policy, baseline)]})

    @router.get("/devices")
    async def devices(request: Request, tenant: str | None = None) -> Response:
        found = await reader(request, tenant)
        if isinstance(found, JSONResponse):
            return found
        admin, parents = found
        listed = await run_in_threadpool(store.list_devices, tenant)
        postures = await run_in_threadpool(store.device_postures, tenant)
        out = []
        for d in listed:
            if not can_read(admin, d.tenant_id, parents):
                continue
            p = postures.get(d.id)
            out.append({"id": d.id, "tenant": d.tenant_id, "name": d.name, "status": d.status,
                        "segment": d.segment, "quarantined": d.quarantined,
                        "quarantine_reason": d.quarantine_reason, "last_seen_at": d.last_seen_at,
                        "posture": None if p is None else {
                            "compliant": p.compliant, "received_at": p.received_at,
                            "verdict": json.loads(p.verdict_json)}})
        return JSONResponse({"devices": out})

    async def quarantine_change(request: Request, device_id: str, reason: str | None) -> Response:
        found = next((d for d in await run_in_threadpool(store.list_devices) if d.id == device_id),
                     None)
        if found is None:
            return refusal(deny(Reason.DEVICE_UNKNOWN, status=404, detail=f"no device {device_id}"))
        admin = await scoped(request, found.tenant_id, write=True)
        if isinstance(admin, JSONResponse):
            return admin
        done = await run_in_threadpool(store.set_quarantine, device_id, api.clock(), reason)
        await changed(admin, "device.quarantine" if reason else "device.release", found.tenant_id,
                      device_id, {"quarantined": found.quarantined,
                                  "reason": found.quarantine_reason},
                      {"quarantined": reason is not None, "reason": reason or ""})
        return JSONResponse({"device": device_id, "quarantined": reason is not None,
                             "changed": bool(done)})

    @router.post("/devices/{device_id}/quarantine")
    async def quarantine(device_id: str, body: QuarantineRequest, request: Request) -> Response:
        return await quarantine_change(request, device_id, body.reason)

    @router.delete("/devices/{device_id}/quarantine")
    async def release(device_id: str, request: Request) -> Response:
        return await quarantine_change(request, device_id, None)

    @router.post("/tenants/{tenant}/enrolment-codes")
    async def enrolment_code(tenant: str, request: Request,
                             body: EnrolmentCodeRequest = Body(default_factory=EnrolmentCodeRequest),
                             ) -> Response:
        admin = await scoped(request, tenant, write=True)
        if isinstance(admin, JSONResponse):
            return admin
        code, now = format_code(os.urandom(10)), api.clock()
        made = await run_in_threadpool(store.create_enrolment_code, tenant, hash_code(code), now,
                                       now + body.ttl_hours * 3600, body.label)
        await changed(admin, "enrolment-code.create", tenant, f"code {made.id}", None,
                      {"label": body.label, "expires_at": made.expires_at})
        return JSONResponse({"code": code, "expires_at": made.expires_at})

    @router.get("/tenants/{tenant}/sessions")
    async def sessions(tenant: str, request: Request) -> Response:
        admin = await scoped(request, tenant, write=False)
        if isinstance(admin, JSONResponse):
            return admin
        rows = await run_in_threadpool(lambda: store.list_login_sessions(tenant,
                                                                          active_at=api.clock()))
        return JSONResponse({"sessions": [
            {"sid": r.sid, "user": r.username, "device": r.device_id, "idp": r.idp,
             "methods": list(r.methods), "auth_time": r.auth_time, "expires_at": r.expires_at}
            for r in rows]})

    @router.delete("/tenants/{tenant}/sessions")
    async def revoke_sessions(tenant: str, user: str, request: Request) -> Response:
        admin = await scoped(request, tenant, write=True)
        if isinstance(admin, JSONResponse):
            return admin
        try:
            count = await run_in_threadpool(lambda: store.revoke_login_sessions(
                tenant, api.clock(), f"revoked by {admin.name}", username=user))
        except StoreError as exc:
            return refusal(deny(Reason.REQUEST_INVALID, status=400, detail=str(exc)))
        await changed(admin, "sessions.revoke", tenant, user, None, {"revoked": count})
        return JSONResponse({"revoked": count})

    @router.get("/posture-profiles")
    async def posture_profiles(request: Request) -> Response:
        admin = await who(request)
        if isinstance(admin, JSONResponse):
            return admin
        parents = await run_in_threadpool(api.parents)
        return JSONResponse({"profiles": [
            {"tenant": p.tenant, "name": p.name, "require_firewall": p.require_firewall,
             "require_disk_encryption": p.require_disk_encryption,
             "require_edr": list(p.require_edr), "max_report_age_seconds": p.max_report_age_seconds}
            for p in api.posture.profiles if can_read(admin, p.tenant, parents)]})

    @router.get("/audit")
    async def audit_trail(request: Request, tenant: str | None = None) -> Response:
        found = await reader(request, tenant)
        if isinstance(found, JSONResponse):
            return found
        admin, parents = found
        rows = await run_in_threadpool(store.admin_audit, tenant)
        return JSONResponse({"records": [
            {"time": r.time, "actor": r.actor, "action": r.action, "tenant": r.tenant_id,
             "target": r.target, "before": r.before, "after": r.after}
            for r in rows if r.tenant_id is None and admin.tenant is None
            or r.tenant_id is not None and can_read(admin, r.tenant_id, parents)]})

    add_routing_routes(router, api, scoped, who, changed, refusal)
    add_unblock_routes(router, api, scoped, changed, refusal)
    return router
