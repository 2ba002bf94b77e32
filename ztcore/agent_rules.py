"""The rules a broker hands an agent: Microsoft 365 breakout, split DNS, the captive-portal
window. One value, signed by the broker (broker/agent_rules.py) and verified by the agent
(agent/rules.py) against the broker CA it pinned at enrolment, so the agent can keep using
them from its disk when the broker is out of reach. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509

from ztcore.breakout import EMPTY_RULES, BreakoutRules, parse_breakout_rules
from ztcore.errors import ConfigError
from ztcore.split_dns import SplitDnsConfig, parse_split_dns

RULES_TYPE: Final = "sekimori-rules+jwt"
PATH_RULES: Final = "/v1/agent/rules"      # the agent asks for its rules over the tunnel
PATH_EVENTS: Final = "/v1/agent/events"    # the agent reports what it did without the tunnel
MAX_EVENTS_PER_REPORT: Final = 500


@dataclass(frozen=True, slots=True)
class AgentRules:
    tenant_id: str
    device_id: str
    issued_at: float
    breakout: BreakoutRules
    dns: SplitDnsConfig
    captive_portal_minutes: int = 0
    inspection_ca: str = ""   # PEM of the broker's inspection CA, for the OS trust store ("" : none)

    @property
    def version(self) -> str:
        """A digest of what the rules say (not of when or for whom they were issued)."""
        body = json.dumps({"breakout": self.breakout.version, "dns": self.dns.to_json_dict(),
                           "captive": self.captive_portal_minutes,
                           "inspection_ca": self.inspection_ca}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_json_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "device_id": self.device_id,
                "issued_at": self.issued_at, "breakout": self.breakout.to_json_dict(),
                "dns": self.dns.to_json_dict(),
                "captive_portal_minutes": self.captive_portal_minutes,
                "inspection_ca": self.inspection_ca}


def empty_rules(tenant_id: str, device_id: str) -> AgentRules:
    """Before the first rules arrive: nothing breaks out, no private names, no window."""
    return AgentRules(tenant_id, device_id, 0.0, EMPTY_RULES, SplitDnsConfig(), 0)


def parse_agent_rules(raw: object) -> AgentRules:
    if not isinstance(raw, Mapping):
        raise ConfigError("rules: expected an object")
    tenant, device, issued = raw.get("tenant_id"), raw.get("device_id"), raw.get("issued_at")
    captive = raw.get("captive_portal_minutes", 0)
    if not isinstance(tenant, str) or not isinstance(device, str):
        raise ConfigError("rules: tenant_id and device_id must be strings")
    if isinstance(issued, bool) or not isinstance(issued, int | float) or issued < 0:
        raise ConfigError("rules.issued_at: expected a time in seconds")
    if isinstance(captive, bool) or not isinstance(captive, int) or not 0 <= captive <= 30:
        raise ConfigError("rules.captive_portal_minutes: expected 0-30")
    return AgentRules(tenant_id=tenant, device_id=device, issued_at=float(issued),
                      breakout=parse_breakout_rules(raw.get("breakout"), "rules.breakout"),
                      dns=parse_split_dns(raw.get("dns", {}), "rules.dns"),
                      captive_portal_minutes=captive,
                      inspection_ca=_inspection_ca(raw.get("inspection_ca", "")))


def _inspection_ca(value: object) -> str:
    """One PEM certificate of a CA (basicConstraints CA:TRUE), or nothing."""
    if value == "":
        return ""
    if not isinstance(value, str) or len(value) > 16384:
        raise ConfigError("rules.inspection_ca: expected one PEM certificate")
    try:
        certs = x509.load_pem_x509_certificates(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ConfigError(f"rules.inspection_ca: not a PEM certificate ({exc})") from None
    if len(certs) != 1:
        raise ConfigError("rules.inspection_ca: expected exactly one certificate")
    try:
        constraints = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ConfigError("rules.inspection_ca: the certificate is not a CA")
    return value
