"""The user's login session as the agent keeps it: `session.json` in the agent's folder (0600).

Written by `sekimori-agent login` and by the running agent when it refreshes the token; read by
the running agent (which sends the token on every stream) and by `status`. Parsing is pure:
the caller reads the file and passes the mapping in; `now` is a parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from ztcore.errors import ConfigError

SESSION_FILE: Final = "session.json"
REFRESH_AT_FRACTION: Final = 2 / 3   # refresh once two thirds of the token's life are gone
MAX_TOKEN_LENGTH: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class AgentSession:
    token: str = field(repr=False)
    sid: str
    user: str
    display_name: str
    email: str
    groups: tuple[str, ...]
    methods: tuple[str, ...]
    mfa: bool
    auth_time: float
    idp: str
    tenant: str
    expires_at: float            # this token
    session_expires_at: float    # the login, across refreshes
    obtained_at: float           # the agent's clock when it got this token

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"], data["methods"] = list(self.groups), list(self.methods)
        return data

    def refresh_due(self, now: float) -> bool:
        """Time to ask for a new token (and still worth it: the login has not ended)."""
        lifetime = max(self.expires_at - self.obtained_at, 0.0)
        return (now >= self.obtained_at + lifetime * REFRESH_AT_FRACTION
                and now < self.session_expires_at)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


def _text(raw: Mapping[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ConfigError(f"{SESSION_FILE}: {key}: expected a string, got {value!r}")
    return value


def _time(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{SESSION_FILE}: {key}: expected a time in epoch seconds, got {value!r}")
    return float(value)


def _texts(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{SESSION_FILE}: {key}: expected a list of strings")
    return tuple(value)


def parse_session(raw: Mapping[str, Any]) -> AgentSession:
    """The stored session (or the broker's login reply merged with `obtained_at`)."""
    token = _text(raw, "token")
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or token.count(".") != 2:
        raise ConfigError(f"{SESSION_FILE}: token: not a compact JWT")
    mfa = raw.get("mfa")
    if not isinstance(mfa, bool):
        raise ConfigError(f"{SESSION_FILE}: mfa: expected true or false")
    return AgentSession(
        token=token, sid=_text(raw, "sid"), user=_text(raw, "user"),
        display_name=_text(raw, "display_name", allow_empty=True),
        email=_text(raw, "email", allow_empty=True), groups=_texts(raw, "groups"),
        methods=_texts(raw, "methods"), mfa=mfa, auth_time=_time(raw, "auth_time"),
        idp=_text(raw, "idp"), tenant=_text(raw, "tenant"), expires_at=_time(raw, "expires_at"),
        session_expires_at=_time(raw, "session_expires_at"), obtained_at=_time(raw, "obtained_at"))


def session_from_reply(payload: Mapping[str, Any], now: float) -> AgentSession:
    """A login or refresh reply from the broker: `{"token": ..., "session": {...}}`."""
    summary = payload.get("session")
    if not isinstance(summary, Mapping):
        raise ConfigError("the broker's reply has no session")
    return parse_session({**summary, "token": payload.get("token"), "obtained_at": now})
