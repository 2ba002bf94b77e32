"""The audit event: one per stream (and per admin action), as the SOC reads it.

Serialised as one JSON object per line; field names are stable (the SIEM parses them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone


@dataclass(frozen=True, slots=True)
class AuditEvent:
    time: float
    kind: str                       # "stream", "enrolment", "device-revoked", ...
    tenant: str | None = None
    device: str | None = None
    user: str | None = None
    destination: str | None = None
    address: str | None = None
    decision: str | None = None     # "allow" / "deny"
    reason: str | None = None
    message_ja: str | None = None
    message_en: str | None = None
    detail: str | None = None
    bytes_up: int = 0               # agent → destination
    bytes_down: int = 0             # destination → agent
    duration_seconds: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        # getattr per field, not dataclasses.asdict: asdict deep-copies and costs ~50 µs per event
        data = {name: getattr(self, name) for name in _FIELDS}
        data["time_iso"] = datetime.fromtimestamp(self.time, tz=timezone.utc).isoformat(
            timespec="milliseconds")
        if not self.extra:
            del data["extra"]
        return json.dumps({k: v for k, v in data.items() if v is not None},
                          ensure_ascii=False, separators=(",", ":"))


_FIELDS = tuple(f.name for f in fields(AuditEvent))
