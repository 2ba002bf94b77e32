"""The agent's fail-closed escape hatches, as pure state: the captive-portal window and the admin
override.

Asked about a connection that is neither a Microsoft 365 breakout nor deliverable through the
tunnel, the agent calls `bypass_mode`; None means no bypass: fail closed.

- A captive-portal window (hotel Wi-Fi login page) is opened at the user's request, only while the
  broker is unreachable and only if the tenant's rules allow it (`captive_portal_minutes` > 0),
  at most `max_per_hour` times an hour. While open, ports 80 and 443 go direct. It closes when its
  time is up or as soon as the broker is reachable again.
- An override (ztcore/override_code.py: a code an admin reads out over the phone) sends all traffic
  direct until it expires or is cleared. A code id is applied once per device: the state remembers
  the last MAX_USED_CODE_IDS ids, and an override wins over a window.

Transitions return `(new_state, events)`; events are past-tense facts for the agent's log and its
report to the broker. Nothing here reads the clock (`now` is a parameter), touches a file or
knows whether the broker is up: the shell says so (`broker_reachable`) and persists the state with
`to_json_dict` / `BypassState.parse`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Final

from ztcore.errors import ConfigError, LocalProtocolError
from ztcore.override_code import CLOCK_SKEW_SECONDS, OverrideGrant

CAPTIVE_PORTAL_PORTS: Final = frozenset({80, 443})
CAPTIVE_PORTAL_MAX_MINUTES: Final = 30          # the same bound as the rules' captive_portal_minutes
DEFAULT_MAX_WINDOWS_PER_HOUR: Final = 3
MAX_WINDOWS_PER_HOUR: Final = 60
MAX_USED_CODE_IDS: Final = 256                  # a device sees a handful of codes a year
STATE_VERSION: Final = 1
_HOUR_SECONDS: Final = 3600


class BypassMode(str, Enum):
    CAPTIVE_PORTAL = "captive-portal"
    OVERRIDE = "override"


class BypassReason(str, Enum):
    CAPTIVE_PORTAL_DISABLED = "captive-portal-disabled"
    CAPTIVE_PORTAL_NOT_NEEDED = "captive-portal-not-needed"
    CAPTIVE_PORTAL_ALREADY_OPEN = "captive-portal-already-open"
    CAPTIVE_PORTAL_LIMIT_REACHED = "captive-portal-limit-reached"
    OVERRIDE_CODE_REUSED = "override-code-reused"
    OVERRIDE_CODE_EXPIRED = "override-code-expired"


class EndedWhy(str, Enum):
    EXPIRED = "expired"                      # its time was up
    BROKER_REACHABLE = "broker-reachable"    # a window is not needed once the tunnel works again
    CLOSED = "closed"                        # the user closed the window
    CLEARED = "cleared"                      # the override was cleared (user or admin)
    REPLACED = "replaced"                    # a newer override took its place


_TEXT: Final[dict[BypassReason, tuple[str, str]]] = {
    BypassReason.CAPTIVE_PORTAL_DISABLED: (
        "Temporary access for Wi-Fi login pages (captive portals) is disabled for your "
        "organisation. Contact your IT department.",
        "この組織では、Wi-Fiのログインページ（キャプティブポータル）用の一時許可は無効になっています。"
        "情報システム課に連絡してください。"),
    BypassReason.CAPTIVE_PORTAL_NOT_NEEDED: (
        "The broker is reachable, so a temporary captive-portal window is not needed.",
        "ブローカーに接続できているため、キャプティブポータル用の一時許可は不要です。"),
    BypassReason.CAPTIVE_PORTAL_ALREADY_OPEN: (
        "A captive-portal window is already open. Open the Wi-Fi login page in your browser.",
        "キャプティブポータル用の一時許可は既に有効です。ブラウザでWi-Fiのログインページを開いてください。"),
    BypassReason.CAPTIVE_PORTAL_LIMIT_REACHED: (
        "Captive-portal windows have been opened too often in the last hour. Wait a while and "
        "try again, or contact your IT department.",
        "この1時間にキャプティブポータル用の一時許可を使える回数の上限に達しました。"
        "しばらく待ってから再試行するか、情報システム課に連絡してください。"),
    BypassReason.OVERRIDE_CODE_REUSED: (
        "This override code has already been used on this device. Ask your IT department for a "
        "new code.",
        "この解除コードは、この端末で既に使用されています。情報システム課に新しいコードを依頼してください。"),
    BypassReason.OVERRIDE_CODE_EXPIRED: (
        "This override code has expired. Ask your IT department for a new code.",
        "この解除コードは有効期限が切れています。情報システム課に新しいコードを依頼してください。"),
}


# -- events -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CaptiveWindowOpened:
    until: float
    minutes: int


@dataclass(frozen=True, slots=True)
class CaptiveWindowRefused:
    reason: BypassReason
    message_en: str
    message_ja: str


@dataclass(frozen=True, slots=True)
class CaptiveWindowClosed:
    why: EndedWhy


@dataclass(frozen=True, slots=True)
class OverrideApplied:
    code_id: str
    until: float


@dataclass(frozen=True, slots=True)
class OverrideRefused:
    code_id: str
    reason: BypassReason
    message_en: str
    message_ja: str


@dataclass(frozen=True, slots=True)
class OverrideEnded:
    code_id: str
    why: EndedWhy


BypassEvent = (CaptiveWindowOpened | CaptiveWindowRefused | CaptiveWindowClosed | OverrideApplied
               | OverrideRefused | OverrideEnded)


# -- state --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CaptiveWindow:
    opened_at: float
    until: float
    minutes: int

    def __post_init__(self) -> None:
        _time("window.opened_at", self.opened_at)
        _time("window.until", self.until)
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, int) \
                or not 1 <= self.minutes <= CAPTIVE_PORTAL_MAX_MINUTES:
            raise ConfigError(f"window.minutes: expected 1-{CAPTIVE_PORTAL_MAX_MINUTES}")
        if self.until != self.opened_at + 60 * self.minutes:
            raise ConfigError("window.until: must be opened_at plus the minutes")


@dataclass(frozen=True, slots=True)
class BypassState:
    window: CaptiveWindow | None = None
    window_history: tuple[float, ...] = ()      # when windows were opened (the last hour), oldest first
    override: OverrideGrant | None = None
    used_code_ids: tuple[str, ...] = ()         # override codes applied on this device, oldest first

    def __post_init__(self) -> None:
        if not isinstance(self.window_history, tuple) or len(self.window_history) > MAX_WINDOWS_PER_HOUR:
            raise ConfigError(f"window_history: expected at most {MAX_WINDOWS_PER_HOUR} times")
        for index, opened in enumerate(self.window_history):
            _time(f"window_history[{index}]", opened)
        if self.window is not None and self.window.opened_at not in self.window_history:
            raise ConfigError("window.opened_at: an open window must be counted in window_history")
        ids = self.used_code_ids
        if not isinstance(ids, tuple) or len(ids) > MAX_USED_CODE_IDS or len(set(ids)) != len(ids):
            raise ConfigError(f"used_code_ids: expected at most {MAX_USED_CODE_IDS} distinct ids")
        if self.override is not None and self.override.code_id not in ids:
            raise ConfigError("override.code_id: an applied override must be in used_code_ids")

    def to_json_dict(self) -> dict[str, Any]:
        window = self.window
        return {
            "version": STATE_VERSION,
            "window": None if window is None else {"opened_at": window.opened_at,
                                                   "until": window.until, "minutes": window.minutes},
            "window_history": list(self.window_history),
            "override": None if self.override is None else self.override.to_json_dict(),
            "used_code_ids": list(self.used_code_ids),
        }

    @staticmethod
    def parse(raw: object) -> BypassState:
        """From `to_json_dict`'s form. ConfigError naming the bad field: the caller logs it and falls
        back to `BypassState()` (no window, no override), which is fail-closed."""
        try:
            return _parse(raw)
        except ConfigError as exc:
            raise ConfigError(f"bypass state: {exc}") from None


EMPTY_STATE: Final = BypassState()

Transition = tuple[BypassState, tuple[BypassEvent, ...]]


# -- transitions --------------------------------------------------------------------------------

def tick(state: BypassState, now: float, broker_reachable: bool) -> Transition:
    """Close a window whose time is up or that the broker's return made unnecessary; end an
    expired override. Call it on a timer and whenever the tunnel connects."""
    _check_now(now)
    return _advance(state, now, broker_reachable)


def open_captive_window(state: BypassState, now: float, minutes: int, broker_reachable: bool,
                        max_per_hour: int = DEFAULT_MAX_WINDOWS_PER_HOUR) -> Transition:
    """The user asks for a window; `minutes` is the tenant's `captive_portal_minutes` (0: disabled)."""
    _check_now(now)
    if isinstance(minutes, bool) or not isinstance(minutes, int) \
            or not 0 <= minutes <= CAPTIVE_PORTAL_MAX_MINUTES:
        raise ConfigError(f"captive_portal_minutes: expected 0-{CAPTIVE_PORTAL_MAX_MINUTES}")
    if isinstance(max_per_hour, bool) or not isinstance(max_per_hour, int) \
            or not 1 <= max_per_hour <= MAX_WINDOWS_PER_HOUR:
        raise ConfigError(f"max_per_hour: expected 1-{MAX_WINDOWS_PER_HOUR}")
    state, events = _advance(state, now, broker_reachable)
    reason: BypassReason | None = None
    if minutes == 0:
        reason = BypassReason.CAPTIVE_PORTAL_DISABLED
    elif broker_reachable:
        reason = BypassReason.CAPTIVE_PORTAL_NOT_NEEDED
    elif state.window is not None:
        reason = BypassReason.CAPTIVE_PORTAL_ALREADY_OPEN
    elif len(state.window_history) >= max_per_hour:
        reason = BypassReason.CAPTIVE_PORTAL_LIMIT_REACHED
    if reason is not None:
        en, ja = _TEXT[reason]
        return state, (*events, CaptiveWindowRefused(reason, en, ja))
    window = CaptiveWindow(opened_at=now, until=now + 60 * minutes, minutes=minutes)
    state = replace(state, window=window, window_history=(*state.window_history, now))
    return state, (*events, CaptiveWindowOpened(window.until, minutes))


def close_captive_window(state: BypassState, now: float) -> Transition:
    """The user is done with the login page."""
    _check_now(now)
    state, events = _advance(state, now, None)
    if state.window is None:
        return state, events
    return replace(state, window=None), (*events, CaptiveWindowClosed(EndedWhy.CLOSED))


def apply_override(state: BypassState, grant: OverrideGrant, now: float) -> Transition:
    """Apply a grant from `verify_override_code`; each code id once per device."""
    _check_now(now)
    state, events = _advance(state, now, None)
    reason: BypassReason | None = None
    if grant.code_id in state.used_code_ids:
        reason = BypassReason.OVERRIDE_CODE_REUSED
    elif now >= grant.expires_at:
        reason = BypassReason.OVERRIDE_CODE_EXPIRED
    if reason is not None:
        en, ja = _TEXT[reason]
        return state, (*events, OverrideRefused(grant.code_id, reason, en, ja))
    if state.override is not None:
        events = (*events, OverrideEnded(state.override.code_id, EndedWhy.REPLACED))
    used = (*state.used_code_ids, grant.code_id)[-MAX_USED_CODE_IDS:]
    state = replace(state, override=grant, used_code_ids=used)
    return state, (*events, OverrideApplied(grant.code_id, grant.expires_at))


def clear_override(state: BypassState, now: float) -> Transition:
    """End the override early (the support case is closed); its code stays used."""
    _check_now(now)
    state, events = _advance(state, now, None)
    if state.override is None:
        return state, events
    ended = OverrideEnded(state.override.code_id, EndedWhy.CLEARED)
    return replace(state, override=None), (*events, ended)


def bypass_mode(state: BypassState, now: float, port: int) -> BypassMode | None:
    """How a connection to `port` that the tunnel cannot carry may leave: None = fail closed.

    Checks the times itself, so a missed `tick` never extends a bypass. A clock set back before
    a bypass began (beyond CLOCK_SKEW_SECONDS) does not revive it either.
    """
    grant = state.override
    if grant is not None and grant.issued_at - CLOCK_SKEW_SECONDS <= now < grant.expires_at:
        return BypassMode.OVERRIDE
    window = state.window
    if window is not None and window.opened_at - CLOCK_SKEW_SECONDS <= now < window.until \
            and port in CAPTIVE_PORTAL_PORTS:
        return BypassMode.CAPTIVE_PORTAL
    return None


def _advance(state: BypassState, now: float, broker_reachable: bool | None) -> Transition:
    """Expiry and closing on reconnect (`broker_reachable` None: not known to this call)."""
    events: list[BypassEvent] = []
    window, grant = state.window, state.override
    if window is not None and now >= window.until:
        window = None
        events.append(CaptiveWindowClosed(EndedWhy.EXPIRED))
    elif window is not None and broker_reachable:
        window = None
        events.append(CaptiveWindowClosed(EndedWhy.BROKER_REACHABLE))
    if grant is not None and now >= grant.expires_at:
        events.append(OverrideEnded(grant.code_id, EndedWhy.EXPIRED))
        grant = None
    # A window lasts at most 30 minutes, so it is closed above before its opening time leaves
    # the hour. Times ahead of `now` (a clock set back) still count: the cap errs on the closed side.
    history = tuple(opened for opened in state.window_history if opened > now - _HOUR_SECONDS)
    new = BypassState(window=window, window_history=history, override=grant,
                      used_code_ids=state.used_code_ids)
    return (state if new == state else new), tuple(events)


def _parse(raw: object) -> BypassState:
    if not isinstance(raw, Mapping):
        raise ConfigError("expected an object")
    known = {"version", "window", "window_history", "override", "used_code_ids"}
    unknown = sorted(str(key) for key in set(raw) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown field")
    if raw.get("version") != STATE_VERSION or isinstance(raw.get("version"), bool):
        raise ConfigError(f"version: expected {STATE_VERSION}")
    window_raw, override_raw = raw.get("window"), raw.get("override")
    window: CaptiveWindow | None = None
    if window_raw is not None:
        if not isinstance(window_raw, Mapping) or set(window_raw) != {"opened_at", "until", "minutes"}:
            raise ConfigError("window: expected null or {opened_at, until, minutes}")
        window = CaptiveWindow(opened_at=window_raw["opened_at"], until=window_raw["until"],
                               minutes=window_raw["minutes"])
    history, used = raw.get("window_history", []), raw.get("used_code_ids", [])
    if not isinstance(history, list):
        raise ConfigError("window_history: expected a list of times")
    if not isinstance(used, list):
        raise ConfigError("used_code_ids: expected a list of code ids")
    override = None if override_raw is None else OverrideGrant.parse(override_raw)
    for index, code_id in enumerate(used):
        if not isinstance(code_id, str) or len(code_id) != 12 \
                or any(ch not in "0123456789abcdef" for ch in code_id):
            raise ConfigError(f"used_code_ids[{index}]: expected 12 lowercase hex digits")
    return BypassState(window=window, window_history=tuple(history), override=override,
                       used_code_ids=tuple(used))


def _time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise ConfigError(f"{name}: expected a time in epoch seconds")


def _check_now(now: float) -> None:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise LocalProtocolError("now: expected a finite time in epoch seconds")
