"""The broker's side of agent routing: it hands each agent its signed rules (Microsoft 365
breakout, split DNS, captive-portal window) over the tunnel, and takes back the events of what
the agent sent without the tunnel (breakouts, captive-portal and override use) for the audit log.

Rules are compiled per tenant once per policy revision (Microsoft's data version in force plus
the tenant's routing document, else its prefecture's, else the defaults) and signed per device.
Store I/O runs in a worker thread (the caller's `asyncio.to_thread`).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from broker.agent_rules import sign_rules
from broker.devices import Tenant
from broker.m365 import STORE_INSTANCE as M365_INSTANCE
from broker.m365 import EndpointData, parse_endpoint_data
from broker.pki import DeviceIdentity
from broker.routing import (
    RoutingPolicy,
    compile_breakout,
    effective_routing,
    load_routing,
)
from broker.runtime.identity_service import ControlReply
from broker.runtime.routing_store import M365VersionRecord, RoutingDocument
from ztcore.agent_rules import MAX_EVENTS_PER_REPORT, AgentRules
from ztcore.audit import AuditEvent
from ztcore.breakout import BreakoutRules
from ztcore.decision import allow, deny
from ztcore.errors import ZTError
from ztcore.override_code import derive_device_secret
from ztcore.reasons import Reason, text_for

log = logging.getLogger("sekimori.routing")
EVENT_KINDS: Final = {"breakout": Reason.BREAKOUT_DIRECT,
                      "captive-portal": Reason.CAPTIVE_PORTAL_WINDOW,
                      "override": Reason.OVERRIDE_ACTIVE}
NOTE_KINDS: Final = {"captive-window-opened", "captive-window-closed", "captive-window-refused",
                     "override-applied", "override-ended", "override-refused"}
MAX_EVENT_AGE_SECONDS: Final = 30 * 24 * 3600
MAX_CLOCK_AHEAD_SECONDS: Final = 24 * 3600


class RoutingSource(Protocol):
    def get_tenant(self, tenant_id: str) -> Tenant | None: ...
    def get_routing(self, tenant_id: str) -> RoutingDocument | None: ...
    def m365_data(self, record_id: int | None,
                  instance: str) -> tuple[M365VersionRecord, str] | None: ...


@dataclass(frozen=True, slots=True)
class TenantRouting:
    policy: RoutingPolicy
    breakout: BreakoutRules
    problems: tuple[str, ...] = ()


@dataclass
class RoutingService:
    store: RoutingSource
    key: EllipticCurvePrivateKey
    chain: list[x509.Certificate]
    override_master: bytes
    revision: Callable[[], int]
    clock: Callable[[], float]
    inspection_ca: str = ""   # PEM sent to agents when inspection is on
    _cache: dict[str, tuple[int, TenantRouting]] = field(default_factory=dict)
    _m365: tuple[int, str, EndpointData] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- compiling ------------------------------------------------------------------------------

    def tenant_routing(self, tenant_id: str) -> TenantRouting:
        revision = self.revision()
        with self._lock:
            hit = self._cache.get(tenant_id)
            if hit is not None and hit[0] == revision:
                return hit[1]
        built = self._build(tenant_id)
        with self._lock:
            self._cache[tenant_id] = (revision, built)
        return built

    def _build(self, tenant_id: str) -> TenantRouting:
        problems: list[str] = []
        tenant = self.store.get_tenant(tenant_id)
        own = self._document(tenant_id, problems)
        parent = self._document(tenant.parent, problems) if tenant and tenant.parent else None
        policy = effective_routing(own, parent)
        version, data = self._m365_in_force(problems)
        sets = data.sets if data is not None else ()
        breakout = compile_breakout(tenant_id, policy.breakout, sets, version)
        return TenantRouting(policy, breakout, tuple(problems))

    def _document(self, tenant_id: str, problems: list[str]) -> RoutingPolicy | None:
        doc = self.store.get_routing(tenant_id)
        if doc is None:
            return None
        try:
            return load_routing(doc.document)
        except ZTError as exc:  # validated when stored; a newer broker's document, say
            problems.append(f"{tenant_id} routing revision {doc.revision}: {exc}")
            log.error("routing of %s unusable, defaults apply: %s", tenant_id, exc)
            return None

    def _m365_in_force(self, problems: list[str]) -> tuple[str, EndpointData | None]:
        found = self.store.m365_data(None, M365_INSTANCE)
        if found is None:
            return "none", None
        record, raw = found
        with self._lock:
            if self._m365 is not None and self._m365[0] == record.id:
                return self._m365[1], self._m365[2]
        try:
            data = parse_endpoint_data(raw.encode("utf-8"))
        except ZTError as exc:
            problems.append(f"Microsoft 365 data {record.version}: {exc}")
            return "none", None
        with self._lock:
            self._m365 = (record.id, record.version, data)
        return record.version, data

    def rules_for(self, identity: DeviceIdentity, now: float) -> AgentRules:
        routing = self.tenant_routing(identity.tenant_id)
        return AgentRules(tenant_id=identity.tenant_id, device_id=identity.device_id,
                          issued_at=now, breakout=routing.breakout, dns=routing.policy.dns,
                          captive_portal_minutes=routing.policy.captive_portal_minutes,
                          inspection_ca=self.inspection_ca)

    # -- control requests -----------------------------------------------------------------------

    def handle_rules(self, identity: DeviceIdentity, body: bytes) -> ControlReply:
        """`{"have": version}` → the signed rules, or `{"unchanged": true}` if the agent has them."""
        try:
            request = json.loads(body or b"{}")
            have = request.get("have") if isinstance(request, dict) else None
        except ValueError:
            have = None
        try:
            rules = self.rules_for(identity, self.clock())
        except Exception as exc:  # the store is down, say: the agent keeps the rules it has
            log.exception("rules for %s failed", identity.device_id)
            return ControlReply(deny(Reason.AGENT_RULES_UNAVAILABLE, status=503, detail=str(exc)))
        if have == rules.version:
            return ControlReply(allow(), {"unchanged": True, "version": rules.version})
        secret = derive_device_secret(self.override_master, identity.tenant_id, identity.device_id)
        return ControlReply(allow(), {
            "version": rules.version, "rules": sign_rules(rules, self.key, self.chain),
            "override_secret": base64.b64encode(secret).decode()})

    def events_from(self, identity: DeviceIdentity, body: bytes,
                    now: float) -> tuple[ControlReply, list[AuditEvent]]:
        """Validate a batch of agent events; all or nothing, so the agent keeps a bad batch's
        events out of the log but is told why."""
        try:
            raw = json.loads(body)
            items = raw["events"] if isinstance(raw, dict) else None
            if not isinstance(items, list) or len(items) > MAX_EVENTS_PER_REPORT:
                raise ValueError(f"expected {{\"events\": [...]}} with at most "
                                 f"{MAX_EVENTS_PER_REPORT} events")
            events = [_event(item, i, identity, now) for i, item in enumerate(items)]
        except (ValueError, KeyError, TypeError) as exc:
            return ControlReply(deny(Reason.AGENT_EVENTS_INVALID, status=400,
                                     detail=str(exc)[:300])), []
        return ControlReply(allow(), {"accepted": len(events)}), events


def _event(item: object, index: int, identity: DeviceIdentity, now: float) -> AuditEvent:
    where = f"events[{index}]"
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected an object")
    kind = item.get("kind")
    if kind not in EVENT_KINDS and kind not in NOTE_KINDS:
        raise ValueError(f"{where}.kind: unknown kind {kind!r}")
    when = item.get("time")
    # A laptop's clock may be off; a batch refused for it would never be reported, so a time
    # up to a day ahead is kept and flagged rather than refused.
    if isinstance(when, bool) or not isinstance(when, int | float) \
            or not now - MAX_EVENT_AGE_SECONDS <= when <= now + MAX_CLOCK_AHEAD_SECONDS:
        raise ValueError(f"{where}.time: not a plausible time: {when!r}")
    fields: dict[str, Any] = {}
    for name, limit in (("destination", 300), ("rule", 100), ("user", 200), ("detail", 300),
                        ("code_id", 40)):
        value = item.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise ValueError(f"{where}.{name}: expected text of at most {limit} characters")
        fields[name] = value
    numbers: dict[str, float] = {}
    for name in ("bytes_up", "bytes_down", "duration_seconds"):
        value = item.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{where}.{name}: expected a non-negative number")
        numbers[name] = value
    reason = EVENT_KINDS.get(kind)
    extra = {"reported_by": "agent"}
    if when > now + 300:
        extra["agent_clock_ahead_seconds"] = str(int(when - now))
    if fields["rule"]:
        extra["rule"] = fields["rule"]
    if fields["code_id"]:
        extra["code_id"] = fields["code_id"]
    text = text_for(reason) if reason is not None else None
    return AuditEvent(
        time=float(when), kind=kind, tenant=identity.tenant_id, device=identity.device_id,
        user=fields["user"], destination=fields["destination"],
        decision="allow" if reason is not None else None,
        reason=reason.value if reason is not None else None,
        message_ja=text.ja if text else None, message_en=text.en if text else None,
        detail=fields["detail"], bytes_up=int(numbers["bytes_up"]),
        bytes_down=int(numbers["bytes_down"]), duration_seconds=float(numbers["duration_seconds"]),
        extra=extra)
