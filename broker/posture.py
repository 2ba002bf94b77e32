"""Posture evaluation: a device's reported facts against its tenant's profile, as a verdict value.

Pure: the facts, the profile, when the broker received the report and `now` come in; a
`PostureVerdict` listing every failed check (with what was found, and what staff should do, in
Japanese and English) comes out. No clock, no store, no report verification (the signature and
replay checks happen before, on the report; this only judges facts already trusted).

Rules and boundaries (each limit is inclusive: a value equal to the limit passes):
- report-age: `now - received_at` (the broker's receive time, never the agent's clock) must be
  <= max_report_age_seconds. Exactly at the limit is still fresh; a time that is not a number
  (NaN) is stale. A receive time in the future counts as fresh.
- os-unsupported: the OS family must be listed in min_os_version, unless allow_other_os (which
  also admits os_family "unknown": the administrator accepted any OS).
- os-version: numeric dotted comparison, missing parts count as 0 ("10.0" == "10.0.0");
  an empty or unparsable version fails as unknown.
- security-update: `now - last_security_update` <= max days x 86400; a date in the future passes.
- screen-lock: screen_lock is True and 1 <= timeout <= max. A timeout of 0 fails: Windows
  power settings, macOS and GNOME all use 0 for "never lock".
- edr: any required name equals (case-insensitively, ignoring surrounding spaces) a name in
  edr_running.
- A fact that is None (unknown) fails the check that needs it, with the "could not determine"
  texts and the detail "unknown: <the collector's error>". A collector error is attributed to a
  check when its text before ':' is the check id or the fact's field name (`firewall_on: ...`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from broker.posture_profile import PostureProfile, version_text
from broker.posture_texts import (
    CHECKS,
    DISK_ENCRYPTION,
    DOMAIN_JOINED,
    EDR,
    FAMILY_NAMES,
    FIREWALL,
    OS_UNSUPPORTED,
    OS_VERSION,
    REPORT_AGE,
    SCREEN_LOCK,
    SECURITY_UPDATE,
    duration_en,
    duration_ja,
    join_en,
    join_ja,
    render,
)
from ztcore.decision import Decision, allow, deny
from ztcore.posture import PostureFacts, parse_version
from ztcore.reasons import Reason

DAY_SECONDS: Final = 86400
MAX_DETAIL: Final = 300            # one check's detail (it may quote collector errors)
MAX_DECISION_DETAIL: Final = 1000  # the deny's detail travels in a response header
_SHOWN_PRODUCTS: Final = 5

# Fact field names (and short collector names) whose errors explain an unknown fact.
_ERROR_KEYS: Final[Mapping[str, frozenset[str]]] = {
    OS_UNSUPPORTED: frozenset({"os", "os_family"}),
    OS_VERSION: frozenset({"os", "os_version"}),
    SECURITY_UPDATE: frozenset({"last_security_update", "security_update", "updates"}),
    DISK_ENCRYPTION: frozenset({"disk_encrypted", "disk_encryption", "disk", "encryption"}),
    FIREWALL: frozenset({"firewall_on", "firewall"}),
    EDR: frozenset({"edr_running", "edr"}),
    SCREEN_LOCK: frozenset({"screen_lock", "screen_lock_timeout_seconds"}),
    DOMAIN_JOINED: frozenset({"domain_joined", "domain"}),
}


@dataclass(frozen=True, slots=True)
class FailedCheck:
    check: str          # stable kebab-case id (broker/posture_texts.CHECKS)
    detail: str         # what was found vs what is required: "Windows 10.0.19044 < 10.0.19045"
    message_ja: str     # what is wrong, for a staff member
    message_en: str
    fix_ja: str         # what the user should do, for their OS
    fix_en: str

    def to_json_dict(self) -> dict[str, str]:
        return {"check": self.check, "detail": self.detail, "message_ja": self.message_ja,
                "message_en": self.message_en, "fix_ja": self.fix_ja, "fix_en": self.fix_en}


@dataclass(frozen=True, slots=True)
class PostureVerdict:
    compliant: bool
    failed: tuple[FailedCheck, ...]
    evaluated_at: float
    profile: str

    @property
    def failed_checks(self) -> tuple[str, ...]:
        return tuple(f.check for f in self.failed)

    def decision(self) -> Decision:
        if self.compliant:
            return allow(Reason.DEVICE_COMPLIANT)
        detail = "; ".join(f"{f.check}: {f.detail}" for f in self.failed)
        return deny(Reason.DEVICE_NONCOMPLIANT, status=403, detail=_clip(detail, MAX_DECISION_DETAIL))

    def to_json_dict(self) -> dict[str, Any]:
        """For the agent's status, the device list and the audit log."""
        reason = Reason.DEVICE_COMPLIANT if self.compliant else Reason.DEVICE_NONCOMPLIANT
        return {"compliant": self.compliant, "reason": reason.value, "profile": self.profile,
                "evaluated_at": self.evaluated_at,
                "failed": [f.to_json_dict() for f in self.failed]}


@dataclass(frozen=True, slots=True)
class _Finding:
    detail: str
    unknown: bool = False
    params: Mapping[str, str] = field(default_factory=dict)


def stale_at(received_at: float, profile: PostureProfile) -> float:
    """The time after which a report received at `received_at` is stale (for a timer)."""
    return received_at + profile.max_report_age_seconds


def stale(received_at: float, profile: PostureProfile, now: float) -> bool:
    """Whether the report the broker received at `received_at` is too old by `now`.

    The same rule as the report-age check, cheap enough to run every second for every device.
    """
    return not now - received_at <= profile.max_report_age_seconds


def evaluate(profile: PostureProfile, facts: PostureFacts, received_at: float,
             now: float) -> PostureVerdict:
    """Every check of `profile` against `facts`; all failures are listed, in CHECKS order."""
    failed = []
    for check in CHECKS:
        finding = _CHECKERS[check](profile, facts, received_at, now)
        if finding is not None:
            text = render(check, facts.os_family, unknown=finding.unknown, params=finding.params)
            failed.append(FailedCheck(check, _clip(finding.detail, MAX_DETAIL), text.message_ja,
                                      text.message_en, text.fix_ja, text.fix_en))
    return PostureVerdict(compliant=not failed, failed=tuple(failed), evaluated_at=now,
                          profile=profile.name)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _collector_error(facts: PostureFacts, check: str) -> str:
    keys = _ERROR_KEYS.get(check, frozenset()) | {check.replace("-", "_")}
    found = [error for error in facts.errors
             if error.partition(":")[0].strip().lower().replace("-", "_").replace(" ", "_") in keys]
    return "; ".join(found)


def _unknown(facts: PostureFacts, check: str, what: str = "",
             params: Mapping[str, str] | None = None) -> _Finding:
    error = _collector_error(facts, check) or what
    return _Finding(f"unknown: {error}" if error else "unknown", unknown=True,
                    params=params or {})


def _at_least(version: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    width = max(len(version), len(minimum))
    return version + (0,) * (width - len(version)) >= minimum + (0,) * (width - len(minimum))


def _seconds_text(value: float) -> str:
    return f"{value:.0f}s" if math.isfinite(value) else "unknown"


Checker = Callable[[PostureProfile, PostureFacts, float, float], _Finding | None]


def _report_age(profile: PostureProfile, facts: PostureFacts, received_at: float,
                now: float) -> _Finding | None:
    if not stale(received_at, profile, now):
        return None
    return _Finding(f"last report {_seconds_text(now - received_at)} ago > "
                    f"{profile.max_report_age_seconds}s")


def _os_unsupported(profile: PostureProfile, facts: PostureFacts, received_at: float,
                    now: float) -> _Finding | None:
    if profile.allow_other_os or profile.min_version_for(facts.os_family) is not None:
        return None
    allowed = tuple(FAMILY_NAMES[family] for family in profile.allowed_families())
    if facts.os_family == "unknown":
        return _unknown(facts, OS_UNSUPPORTED, f"OS family not reported ({facts.os_name!r})")
    name = FAMILY_NAMES[facts.os_family]
    return _Finding(f"{name} not allowed (allowed: {join_en(allowed)})", params={
        "os": facts.os_name.strip() or name, "allowed_ja": join_ja(allowed),
        "allowed_en": join_en(allowed)})


def _os_version(profile: PostureProfile, facts: PostureFacts, received_at: float,
                now: float) -> _Finding | None:
    minimum = profile.min_version_for(facts.os_family)
    if minimum is None:
        return None
    name = FAMILY_NAMES[facts.os_family]
    params = {"minimum": f"{name} {version_text(minimum)}"}
    version = parse_version(facts.os_version)
    if version is None:
        what = (f"unparsable version {facts.os_version!r}" if facts.os_version.strip()
                else "no version reported")
        return _unknown(facts, OS_VERSION, what, params)
    if _at_least(version, minimum):
        return None
    return _Finding(f"{name} {version_text(version)} < {version_text(minimum)}", params=params)


def _security_update(profile: PostureProfile, facts: PostureFacts, received_at: float,
                     now: float) -> _Finding | None:
    max_days = profile.max_security_update_age_days
    if max_days is None:
        return None
    if facts.last_security_update is None:
        return _unknown(facts, SECURITY_UPDATE)
    age = now - facts.last_security_update
    if age <= max_days * DAY_SECONDS:
        return None
    return _Finding(f"last security update {age / DAY_SECONDS:.1f} days ago > {max_days} days",
                    params={"max_days": str(max_days)})


def _disk_encryption(profile: PostureProfile, facts: PostureFacts, received_at: float,
                     now: float) -> _Finding | None:
    if not profile.require_disk_encryption or facts.disk_encrypted is True:
        return None
    if facts.disk_encrypted is None:
        return _unknown(facts, DISK_ENCRYPTION)
    return _Finding("system disk not encrypted")


def _firewall(profile: PostureProfile, facts: PostureFacts, received_at: float,
              now: float) -> _Finding | None:
    if not profile.require_firewall or facts.firewall_on is True:
        return None
    if facts.firewall_on is None:
        return _unknown(facts, FIREWALL)
    return _Finding("firewall off")


def _edr(profile: PostureProfile, facts: PostureFacts, received_at: float,
         now: float) -> _Finding | None:
    if not profile.require_edr:
        return None
    running = {name.strip().casefold() for name in facts.edr_running}
    if any(name.casefold() in running for name in profile.require_edr):
        return None
    params = {"required_ja": join_ja(profile.require_edr),
              "required_en": join_en(profile.require_edr)}
    if not facts.edr_running and _collector_error(facts, EDR):
        return _unknown(facts, EDR, params=params)
    shown = join_en(facts.edr_running[:_SHOWN_PRODUCTS])
    if len(facts.edr_running) > _SHOWN_PRODUCTS:
        shown += ", ..."
    return _Finding(f"none of {join_en(profile.require_edr)} running (found: {shown})",
                    params=params)


def _screen_lock(profile: PostureProfile, facts: PostureFacts, received_at: float,
                 now: float) -> _Finding | None:
    limit = profile.max_screen_lock_seconds
    if limit is None:
        return None
    params = {"max_ja": duration_ja(limit), "max_en": duration_en(limit)}
    timeout = facts.screen_lock_timeout_seconds
    if facts.screen_lock is None:
        return _unknown(facts, SCREEN_LOCK, params=params)
    if not facts.screen_lock:
        return _Finding("screen lock off", params=params)
    if timeout is None:
        return _unknown(facts, SCREEN_LOCK, "screen lock on, timeout not reported", params)
    if timeout == 0:
        return _Finding(f"screen lock timeout 0 (never) > {limit}s", params=params)
    if timeout <= limit:
        return None
    return _Finding(f"screen locks after {timeout}s > {limit}s", params=params)


def _domain_joined(profile: PostureProfile, facts: PostureFacts, received_at: float,
                   now: float) -> _Finding | None:
    if not profile.require_domain_joined or facts.domain_joined is True:
        return None
    if facts.domain_joined is None:
        return _unknown(facts, DOMAIN_JOINED)
    return _Finding("not joined to a domain")


_CHECKERS: Final[Mapping[str, Checker]] = {
    REPORT_AGE: _report_age, OS_UNSUPPORTED: _os_unsupported, OS_VERSION: _os_version,
    SECURITY_UPDATE: _security_update, DISK_ENCRYPTION: _disk_encryption, FIREWALL: _firewall,
    EDR: _edr, SCREEN_LOCK: _screen_lock, DOMAIN_JOINED: _domain_joined,
}
