"""The Principal (ztcore/principal.py): valid identities kept as given, invalid ones refused."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztcore.errors import ZTError
from ztcore.principal import Principal, PrincipalError

NOW = 1_750_000_000.0


def principal(**changes: Any) -> Principal:
    fields: dict[str, Any] = dict(
        tenant="kita-city", subject="S-1-5-21-1004336348-1177238915-682003330-1105",
        username="tanaka", display_name="田中　花子", email="tanaka@city.kita.lg.jp",
        groups=frozenset({"CN=住民課,OU=Groups,DC=kita,DC=local", "telework"}),
        auth_methods=frozenset({"pwd", "otp"}), auth_time=NOW - 60, mfa=True,
        idp="ad:kita-dc")
    fields.update(changes)
    return Principal(**fields)


def test_a_valid_principal_keeps_its_fields() -> None:
    p = principal()
    assert p.tenant == "kita-city" and p.display_name == "田中　花子"  # U+3000 is allowed
    assert p.groups == frozenset({"CN=住民課,OU=Groups,DC=kita,DC=local", "telework"})
    assert p.auth_age_seconds(NOW) == 60


def test_principal_is_frozen_and_hashable() -> None:
    p = principal()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.username = "root"  # type: ignore[misc]
    assert hash(p) == hash(principal()) and p == principal()


@pytest.mark.parametrize("changes", [
    {"display_name": ""},                      # directories often have no displayName
    {"email": ""},                             # nor mail
    {"groups": frozenset()},
    {"mfa": False, "auth_methods": frozenset({"pwd"})},
    {"auth_time": 0},
    {"tenant": "a1"},
    {"idp": "oidc:https://login.microsoftonline.com/tid/v2.0"},
])
def test_optional_and_edge_values_are_accepted(changes: dict[str, Any]) -> None:
    assert principal(**changes)


@pytest.mark.parametrize("changes, field", [
    ({"tenant": ""}, "tenant"),
    ({"tenant": "Kita-City"}, "tenant"),
    ({"tenant": "-kita"}, "tenant"),
    ({"tenant": "kita\n"}, "tenant"),
    ({"tenant": "k"}, "tenant"),
    ({"subject": ""}, "subject"),
    ({"subject": "   "}, "subject"),
    ({"username": "tanaka\r\nadmin"}, "username"),
    ({"username": "x" * 257}, "username"),
    ({"username": 42}, "username"),
    ({"display_name": "evil\u202egnp.exe"}, "display_name"),   # bidi override
    ({"display_name": "   "}, "display_name"),
    ({"email": "not-an-address"}, "email"),
    ({"email": "a b@example.jp"}, "email"),
    ({"email": "@example.jp"}, "email"),
    ({"groups": {"telework"}}, "groups"),                         # a set, not a frozenset
    ({"groups": frozenset({""})}, "groups"),
    ({"groups": frozenset({"ok", "bad\x00"})}, "groups"),
    ({"auth_methods": frozenset()}, "auth_methods"),
    ({"auth_methods": frozenset({"x" * 65})}, "auth_methods"),
    ({"auth_time": -1.0}, "auth_time"),
    ({"auth_time": math.nan}, "auth_time"),
    ({"auth_time": math.inf}, "auth_time"),
    ({"auth_time": True}, "auth_time"),
    ({"auth_time": "1750000000"}, "auth_time"),
    ({"mfa": 1}, "mfa"),
    ({"mfa": "yes"}, "mfa"),
    ({"idp": ""}, "idp"),
])
def test_invalid_fields_are_refused_with_the_field_name(changes: dict[str, Any],
                                                        field: str) -> None:
    with pytest.raises(PrincipalError) as caught:
        principal(**changes)
    assert str(caught.value).startswith(field)
    assert isinstance(caught.value, ZTError)


@given(st.text(max_size=300))
def test_usernames_are_accepted_or_refused_never_crash(text: str) -> None:
    try:
        p = principal(username=text)
    except PrincipalError:
        return
    assert p.username == text and text.strip() and len(text) <= 256
    assert "\n" not in text and "\r" not in text and "\x00" not in text
