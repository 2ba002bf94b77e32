"""Device posture facts: what an agent's collectors found on the machine, as plain values.

The agent collects them (agent/posture/), signs them into a report and sends them over the
tunnel; the broker checks the signature and evaluates them against the tenant's posture profile.
This module owns the one shape both sides agree on and its JSON form; it decides nothing.

A fact a collector could not establish is None (unknown), never a guess: the evaluator treats
unknown as failing a check that requires it, and `errors` says which collector failed and why.
Versions are dotted numbers ("10.0.22631.3880", "14.5", "12.7") compared numerically.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from ztcore.errors import ZTError

OS_FAMILIES: Final = ("windows", "macos", "linux", "unknown")
MAX_TEXT: Final = 256
MAX_LIST: Final = 64
_VERSION: Final = re.compile(r"\d{1,9}(?:\.\d{1,9}){0,5}")


class PostureError(ZTError):
    """Posture facts that are not well-formed (from a report: the peer's fault)."""


def parse_version(text: str) -> tuple[int, ...] | None:
    """(10, 0, 22631, 3880) for "10.0.22631.3880"; None when `text` is not a dotted number."""
    text = text.strip()
    if not _VERSION.fullmatch(text):
        return None
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True, slots=True)
class PostureFacts:
    os_family: str                          # one of OS_FAMILIES
    os_name: str                            # "Windows 11 Pro", "macOS", "Debian GNU/Linux 12 (bookworm)"
    os_version: str                         # dotted: "10.0.22631.3880", "14.5", "12.7"
    last_security_update: float | None      # epoch seconds of the newest security update
    disk_encrypted: bool | None             # the system volume (BitLocker / FileVault / LUKS)
    encryption_method: str                  # "BitLocker", "FileVault", "LUKS" or ""
    firewall_on: bool | None
    screen_lock: bool | None
    screen_lock_timeout_seconds: int | None  # idle seconds until the screen locks
    edr_running: tuple[str, ...]            # security products found running (canonical names)
    domain_joined: bool | None
    domain: str                             # AD / Entra domain, or ""
    agent_version: str
    hardware_id: str                        # a stable machine id (SMBIOS UUID, IOPlatformUUID, machine-id)
    collected_at: float                     # epoch seconds, the agent's clock
    errors: tuple[str, ...] = ()            # "firewall: nft not found", ... (unknown facts)

    def __post_init__(self) -> None:
        if self.os_family not in OS_FAMILIES:
            raise PostureError(f"os_family: expected one of {', '.join(OS_FAMILIES)}, "
                               f"got {self.os_family!r}")
        for name in ("os_name", "os_version", "encryption_method", "domain", "agent_version",
                     "hardware_id"):
            _text(name, getattr(self, name))
        for name in ("disk_encrypted", "firewall_on", "screen_lock", "domain_joined"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise PostureError(f"{name}: expected true, false or null")
        timeout = self.screen_lock_timeout_seconds
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                    or not 0 <= timeout <= 10**7):
            raise PostureError("screen_lock_timeout_seconds: expected a whole number of seconds")
        for name in ("last_security_update",):
            _time(name, getattr(self, name), optional=True)
        _time("collected_at", self.collected_at, optional=False)
        for name in ("edr_running", "errors"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) > MAX_LIST:
                raise PostureError(f"{name}: expected a list of at most {MAX_LIST} strings")
            for item in value:
                _text(name, item)

    def to_json_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["edr_running"], out["errors"] = list(self.edr_running), list(self.errors)
        return out


def _text(name: str, value: object) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise PostureError(f"{name}: expected a string of at most {MAX_TEXT} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise PostureError(f"{name}: contains control characters")


def _time(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise PostureError(f"{name}: expected a time in epoch seconds")


def facts_from_json(raw: Mapping[str, Any]) -> PostureFacts:
    """PostureFacts from its JSON form; PostureError naming the first bad or unknown field."""
    if not isinstance(raw, Mapping):
        raise PostureError("facts: expected a JSON object")
    names = {f.name for f in fields(PostureFacts)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise PostureError(f"{unknown[0]}: unknown fact")
    missing = sorted(n for n in names - set(raw) if n != "errors")
    if missing:
        raise PostureError(f"{missing[0]}: missing")
    values = dict(raw)
    for name in ("edr_running", "errors"):
        value = values.get(name, [])
        if not isinstance(value, list):
            raise PostureError(f"{name}: expected a list of strings")
        values[name] = tuple(value)
    timeout = values.get("screen_lock_timeout_seconds")
    if isinstance(timeout, float) and timeout.is_integer():
        values["screen_lock_timeout_seconds"] = int(timeout)
    return PostureFacts(**values)
