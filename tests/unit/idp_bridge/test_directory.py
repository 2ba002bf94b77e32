"""The directory login core (idp_bridge/directory.py): configuration (every bad field named),
what is refused before the directory is contacted, filters, the WhoAmI check, bind failures and
account state by kind, and the outcome values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idp_bridge.directory import (
    AuthOutcome,
    DirectoryConfig,
    DirectoryKind,
    DirectoryUser,
    GroupResolution,
    account_state,
    bind_failure,
    confirm_identity,
    directory_user,
    groups_verdict,
    parse_directory_config,
    precheck,
    state_attributes,
    user_attributes,
    user_search_filter,
)
from idp_bridge.groups import Group
from idp_bridge.ldap_syntax import parse_filter
from ztcore.decision import Action
from ztcore.errors import ConfigError, LocalProtocolError
from ztcore.reasons import Reason

BASE = "dc=city,dc=example,dc=lg,dc=jp"
NOW = 1_798_761_600.0


def config(**changes: Any) -> DirectoryConfig:
    values: dict[str, Any] = {"servers": ("ldaps://dc1.city.example.lg.jp",), "base_dn": BASE,
                                  "bind_dn": f"cn=svc,{BASE}", "bind_password": "svc-secret"}
    values.update(changes)
    return DirectoryConfig(**values)


AD = config()
GENERIC = config(kind="generic")


def test_defaults_follow_the_kind() -> None:
    assert AD.kind is DirectoryKind.AD and AD.nested_groups == "in-chain"
    assert "sAMAccountName={username}" in AD.user_filter
    assert AD.username_attribute == "sAMAccountName" and AD.group_base_dn == BASE
    assert GENERIC.nested_groups == "walk" and GENERIC.username_attribute == "uid"
    assert "(uid={username})" in GENERIC.user_filter
    assert "svc-secret" not in repr(AD)


def test_explicit_settings_are_kept() -> None:
    c = config(kind="generic", user_filter="(&(objectClass=person)(cn={username}))",
               nested_groups="in-chain", group_base_dn=f"ou=groups,{BASE}")
    assert c.user_filter == "(&(objectClass=person)(cn={username}))"
    assert c.nested_groups == "in-chain" and c.group_base_dn == f"ou=groups,{BASE}"


@pytest.mark.parametrize(("changes", "field", "hint"), [
    ({"servers": ()}, "servers", "at least one"),
    ({"servers": "ldaps://dc1"}, "servers", "list"),
    ({"servers": ("https://dc1",)}, "servers[0]", "scheme"),
    ({"servers": ("ldaps://dc1", "ldap://dc2")}, "servers[1]", "in the clear"),
    ({"servers": ("ldaps://",)}, "servers[0]", "host"),
    ({"servers": ("ldaps://dc1:99999",)}, "servers[0]", "port"),
    ({"servers": ("ldaps://dc1/dc=x??sub",)}, "servers[0]", "only ldap[s]://host[:port]"),
    ({"servers": ("ldaps://u:p@dc1",)}, "servers[0]", "only"),
    ({"servers": ("ldaps://dc1 ldaps://dc2",)}, "servers[0]", "one"),
    ({"kind": "novell"}, "kind", "'ad' or 'generic'"),
    ({"start_tls": "yes"}, "start_tls", "true or false"),
    ({"allow_cleartext": 1}, "allow_cleartext", "true or false"),
    ({"ca_file": ""}, "ca_file", "file path"),
    ({"base_dn": ""}, "base_dn", "DN"),
    ({"base_dn": "dc=x,,"}, "base_dn", "not a DN"),
    ({"group_base_dn": "nonsense"}, "group_base_dn", "not a DN"),
    ({"bind_dn": " "}, "bind_dn", "service account"),
    ({"bind_password": ""}, "bind_password", "anonymously"),
    ({"bind_password": "  "}, "bind_password", "anonymously"),
    ({"user_filter": "(uid=alice)"}, "user_filter", "{username}"),
    ({"user_filter": "(&(uid={username})"}, "user_filter", "not an LDAP filter"),
    ({"group_filter": "objectClass=group"}, "group_filter", "not an LDAP filter"),
    ({"username_attribute": "uid)(x"}, "username_attribute", "attribute name"),
    ({"group_member_attribute": ""}, "group_member_attribute", "attribute name"),
    ({"nested_groups": "tokenGroups"}, "nested_groups", "'in-chain' or 'walk'"),
    ({"max_group_depth": 0}, "max_group_depth", "whole number"),
    ({"max_groups": True}, "max_groups", "whole number"),
    ({"max_groups": 2.5}, "max_groups", "whole number"),
    ({"network_timeout_seconds": 0}, "network_timeout_seconds", "seconds"),
    ({"operation_timeout_seconds": float("nan")}, "operation_timeout_seconds", "seconds"),
    ({"operation_timeout_seconds": 1000}, "operation_timeout_seconds", "at most"),
])
def test_bad_config_names_the_field(changes: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(**changes)
    assert str(err.value).startswith(f"directory.{field}: ")
    assert hint in str(err.value)


@pytest.mark.parametrize("changes", [
    {"servers": ("ldap://dc1",), "start_tls": True},
    {"servers": ("ldap://127.0.0.1:3890",), "allow_cleartext": True},
    {"servers": ("ldaps://[::1]:636", "ldaps://dc2.city.example.lg.jp:3269/")},
    {"bind_dn": "svc@city.example.lg.jp"},  # AD takes a UPN
    {"ca_file": "/etc/sekimori/ad-ca.pem", "network_timeout_seconds": 1},
])
def test_good_configs(changes: dict[str, Any]) -> None:
    config(**changes)


def test_parse_directory_config_names_the_path() -> None:
    raw = {"servers": ["ldaps://dc1"], "base_dn": BASE, "bind_dn": "cn=svc", "bind_password": "x",
           "kind": "generic"}
    assert parse_directory_config(raw).servers == ("ldaps://dc1",)
    with pytest.raises(ConfigError, match=r"^tenants\.city\.directory\.servers\[0\]: "):
        parse_directory_config({**raw, "servers": ["ldap://dc1"]}, "tenants.city.directory")
    with pytest.raises(ConfigError, match=r"^directory\.bind_pasword: unknown setting"):
        parse_directory_config({**raw, "bind_pasword": "x"})
    with pytest.raises(ConfigError, match=r"^directory\.base_dn: missing"):
        parse_directory_config({k: v for k, v in raw.items() if k != "base_dn"})


# -- before the directory ---------------------------------------------------------------------------

@pytest.mark.parametrize(("username", "password", "reason"), [
    ("alice", "", Reason.PASSWORD_EMPTY),
    ("alice", " ", Reason.PASSWORD_EMPTY),
    ("alice", "\t\r\n", Reason.PASSWORD_EMPTY),
    ("alice", "\u3000", Reason.PASSWORD_EMPTY),  # full-width space from a Japanese IME
    ("alice", "\u3000 \u3000", Reason.PASSWORD_EMPTY),
    ("", "pw", Reason.USERNAME_INVALID),
    ("   ", "pw", Reason.USERNAME_INVALID),
    ("alice\x00", "pw", Reason.USERNAME_INVALID),
    ("ali\nce", "pw", Reason.USERNAME_INVALID),
    ("a" * 257, "pw", Reason.USERNAME_INVALID),
    ("alice", "x" * 1025, Reason.CREDENTIALS_INVALID),
    ("alice", "pw\ud800", Reason.CREDENTIALS_INVALID),
    ("alice", " pw ", None),  # spaces around a real password are part of it
    ("*", "pw", None),  # escaped later, never refused for its characters
    ("a*)(uid=*", "pw", None),
    ("田中", "パスワード", None),
])
def test_precheck(username: str, password: str, reason: Reason | None) -> None:
    outcome = precheck(username, password)
    assert (outcome.reason if outcome else None) is reason


@given(st.text(alphabet=st.sampled_from(" \t\n\r\u3000\u00a0\u2003\x0b\x0c"), max_size=8))
def test_any_whitespace_only_password_is_refused(password: str) -> None:
    outcome = precheck("alice", password)
    assert outcome is not None and outcome.reason is Reason.PASSWORD_EMPTY


@pytest.mark.parametrize(("username", "expected"), [
    ("alice", "(&(objectClass=inetOrgPerson)(uid=alice))"),
    ("*", "(&(objectClass=inetOrgPerson)(uid=\\2a))"),
    ("*)(uid=*", "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"),
    ("admin)(|(a=*", "(&(objectClass=inetOrgPerson)(uid=admin\\29\\28|\\28a=\\2a))"),
])
def test_user_search_filter_escapes(username: str, expected: str) -> None:
    assert user_search_filter(GENERIC, username) == expected
    parse_filter(expected)


def test_user_search_filter_fills_every_placeholder() -> None:
    c = config(user_filter="(|(sAMAccountName={username})(userPrincipalName={username}))")
    assert user_search_filter(c, "a*") == "(|(sAMAccountName=a\\2a)(userPrincipalName=a\\2a))"


def test_attributes_read() -> None:
    assert "userAccountControl" in user_attributes(AD)
    assert "msDS-User-Account-Control-Computed" in state_attributes(AD)
    assert "pwdAccountLockedTime" in user_attributes(GENERIC)
    assert len(set(user_attributes(GENERIC))) == len(user_attributes(GENERIC))


# -- after the bind ---------------------------------------------------------------------------------

USER_DN = f"uid=alice,ou=people,{BASE}"


@pytest.mark.parametrize(("kind", "authzid", "account", "ok"), [
    ("generic", f"dn:{USER_DN}", "alice", True),
    ("generic", f"dn:UID=Alice, OU=People,{BASE.upper()}", "alice", True),
    ("generic", f"DN:{USER_DN}", "alice", True),
    ("generic", f"dn:uid=bob,ou=people,{BASE}", "alice", False),
    ("generic", "", "alice", False),  # anonymous
    ("generic", None, "alice", False),  # no WhoAmI: a generic directory must have it
    ("generic", "u:alice", "alice", False),  # u: only means something on AD
    ("generic", "dn:garbage", "alice", False),
    ("ad", "u:CITY\\alice", "alice", True),
    ("ad", "u:CITY\\ALICE", "alice", True),
    ("ad", "u:CITY\\bob", "alice", False),
    ("ad", "u:CITY\\alice", None, False),
    ("ad", f"dn:{USER_DN}", "alice", True),
    ("ad", "", "alice", False),
    ("ad", None, "alice", True),  # Samba AD has no WhoAmI; the DN bind with a password stands
])
def test_confirm_identity(kind: str, authzid: str | None, account: str | None, ok: bool) -> None:
    verdict = confirm_identity(config(kind=kind), authzid, USER_DN, account)
    assert (verdict is None) is ok
    if verdict is not None:
        assert verdict.reason is Reason.BIND_IDENTITY_MISMATCH


def test_bind_failure_by_kind() -> None:
    diag = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563"
    assert bind_failure(AD, diag, None, {}).reason is Reason.ACCOUNT_LOCKED
    assert bind_failure(GENERIC, diag, None, {}).reason is Reason.CREDENTIALS_INVALID
    assert bind_failure(GENERIC, "", 1, {}).reason is Reason.ACCOUNT_LOCKED
    locked = {"pwdaccountlockedtime": ("000001010000Z",)}
    assert bind_failure(GENERIC, "", 1, locked).reason is Reason.ACCOUNT_DISABLED
    assert bind_failure(GENERIC, "", None, {}).reason is Reason.CREDENTIALS_INVALID


def test_account_state_by_kind() -> None:
    assert account_state(AD, {"useraccountcontrol": ("514",)}, NOW).reason is Reason.ACCOUNT_DISABLED  # type: ignore[union-attr]
    assert account_state(AD, {"useraccountcontrol": ("512",)}, NOW) is None
    assert account_state(GENERIC, {}, NOW) is None
    assert account_state(GENERIC, {"shadowexpire": ("1",)}, NOW).reason is Reason.ACCOUNT_EXPIRED  # type: ignore[union-attr]
    # a good bind that the password policy says must change the password first
    assert account_state(GENERIC, {}, NOW, ppolicy_error=2).reason is Reason.PASSWORD_MUST_CHANGE  # type: ignore[union-attr]


def test_groups_verdict() -> None:
    assert groups_verdict(GroupResolution((), "walk")) is None
    verdict = groups_verdict(GroupResolution((), "walk", complete=False, detail="too deep"))
    assert verdict is not None and verdict.reason is Reason.GROUPS_INCOMPLETE


# -- outcome ------------------------------------------------------------------------------------------

RESOLUTION = GroupResolution((Group(f"cn=tax-clerks,{BASE}", "tax-clerks"),), "walk", depth=1)


def test_directory_user_prefers_the_directory_spelling() -> None:
    attrs = {"uid": ("alice",), "displayname": ("田中 アリス",), "mail": ("alice@city.jp",)}
    user = directory_user(GENERIC, USER_DN, attrs, "ALICE", RESOLUTION, "ldaps://dc1")
    assert (user.username, user.display_name, user.email) == ("alice", "田中 アリス", "alice@city.jp")
    assert user.groups == ("tax-clerks",) and user.group_resolution is RESOLUTION
    bare = directory_user(GENERIC, USER_DN, {"cn": ("Alice T",)}, "alice", RESOLUTION)
    assert (bare.username, bare.display_name, bare.email) == ("alice", "Alice T", None)


def test_outcome_values() -> None:
    user = DirectoryUser(USER_DN, "alice", "Alice", None, ("tax-clerks",), RESOLUTION)
    ok = AuthOutcome.success(user, "ldaps://dc1")
    assert ok.ok and ok.reason is Reason.DIRECTORY_LOGIN_OK and ok.decision().action is Action.ALLOW
    down = AuthOutcome.deny(Reason.DIRECTORY_UNAVAILABLE, "all down")
    assert not down.ok and down.decision().status == 503 and down.decision().detail == "all down"
    assert AuthOutcome.deny(Reason.CREDENTIALS_INVALID).decision().status == 401
    assert AuthOutcome.deny(Reason.ACCOUNT_DISABLED).decision().status == 403
    # the login form does not tell an unknown user from a wrong password
    assert AuthOutcome.deny(Reason.USER_NOT_FOUND).client_reason is Reason.CREDENTIALS_INVALID
    assert AuthOutcome.deny(Reason.ACCOUNT_LOCKED).client_reason is Reason.ACCOUNT_LOCKED
    with pytest.raises(LocalProtocolError):
        AuthOutcome(Reason.DIRECTORY_LOGIN_OK)
    with pytest.raises(LocalProtocolError):
        AuthOutcome(Reason.CREDENTIALS_INVALID, user)


@pytest.mark.parametrize(("typed", "looked_up"), [
    ("tanaka", "tanaka"), ("CITY\\tanaka", "tanaka"), ("city.hq\\tanaka", "tanaka"),
    ("\\tanaka", "\\tanaka"), ("CITY\\", "CITY\\"),
    ("TOO-LONG-FOR-NETBIOS\\tanaka", "TOO-LONG-FOR-NETBIOS\\tanaka"),
    ("tanaka@city.example.lg.jp", "tanaka@city.example.lg.jp"),
])
def test_ad_down_level_logon_names_are_reduced_to_the_account_name(typed: str, looked_up: str) -> None:
    from idp_bridge.directory import account_name

    ad = parse_directory_config({"servers": ["ldaps://dc1"], "base_dn": "DC=x", "bind_dn": "svc",
                                 "bind_password": "p", "kind": "ad"})
    assert account_name(ad, typed) == looked_up
    assert account_name(GENERIC, "CITY\\tanaka") == "CITY\\tanaka"     # only AD has this form
