"""agent/session.py: the stored login session, its refresh time, bad files."""

from __future__ import annotations

from typing import Any

import pytest

from agent.session import parse_session, session_from_reply
from ztcore.errors import ConfigError

NOW = 1_800_000_000.0


def _stored(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "token": "aaa.bbb.ccc", "sid": "s1", "user": "yamada-taro", "display_name": "山田 太郎",
        "email": "", "groups": ["zeimu-ka"], "methods": ["otp", "pwd"], "mfa": True,
        "auth_time": NOW, "idp": "ad", "tenant": "demo-city", "expires_at": NOW + 900,
        "session_expires_at": NOW + 43200, "obtained_at": NOW}
    data.update(changes)
    return data


def test_a_stored_session_round_trips() -> None:
    session = parse_session(_stored())
    assert parse_session(session.to_json_dict()) == session
    assert "aaa.bbb.ccc" not in repr(session)   # the token stays out of logs


@pytest.mark.parametrize(("now", "due"), [
    (NOW, False), (NOW + 599, False), (NOW + 600, True), (NOW + 899, True),
    (NOW + 43200, False),   # the login itself ended: log in again, no refresh
])
def test_refresh_is_due_after_two_thirds_of_the_token_life(now: float, due: bool) -> None:
    assert parse_session(_stored()).refresh_due(now) is due


@pytest.mark.parametrize(("change", "field"), [
    ({"token": "not-a-jwt"}, "token"), ({"token": "ä.b.c"}, "token"), ({"mfa": "yes"}, "mfa"),
    ({"expires_at": "soon"}, "expires_at"), ({"groups": "zeimu-ka"}, "groups"),
    ({"user": ""}, "user"), ({"auth_time": float("nan")}, "auth_time"),
])
def test_a_bad_session_file_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_session(_stored(**change))


def test_a_broker_reply_becomes_a_session_obtained_now() -> None:
    summary = {k: v for k, v in _stored().items() if k not in ("token", "obtained_at")}
    session = session_from_reply({"token": "x.y.z", "session": summary}, NOW + 5)
    assert session.obtained_at == NOW + 5 and session.token == "x.y.z"
    with pytest.raises(ConfigError, match="no session"):
        session_from_reply({"token": "x.y.z"}, NOW)
