"""The LDAP / AD connector (idp_bridge/runtime/ldap_directory.py) against a real OpenLDAP slapd
on 127.0.0.1 (tests/peers/slapd.py): LDAPS, StartTLS, nested groups, wrong and empty passwords,
injection, disabled and expired accounts, AD-shaped account state, failover, timeouts and TLS
refusals. AD's own bind sub-codes and LDAP_MATCHING_RULE_IN_CHAIN are covered by the unit tests
(tests/unit/idp_bridge) with recorded values; slapd has neither.

Skipped, with the reason, only when slapd or python-ldap is not installed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.peers import slapd as peer
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

if (_why := peer.unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)

from idp_bridge.directory import AuthOutcome, DirectoryConfig, escape_dn_value
from idp_bridge.ldap_syntax import dn_equal
from idp_bridge.runtime.ldap_directory import LdapDirectory

PW = peer.PASSWORDS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peer.Slapd]:
    s = peer.start_slapd(tmp_path_factory.mktemp("slapd"))
    yield s
    s.stop()


def generic(server: peer.Slapd, **changes: Any) -> DirectoryConfig:
    values: dict[str, Any] = {
        "servers": (server.ldaps_url,), "base_dn": peer.SUFFIX, "bind_dn": peer.SERVICE_DN,
        "bind_password": peer.SERVICE_PASSWORD, "kind": "generic", "ca_file": str(server.ca_file),
        "network_timeout_seconds": 2, "operation_timeout_seconds": 2}
    values.update(changes)
    return DirectoryConfig(**values)


def login(config: DirectoryConfig, username: str, password: str) -> AuthOutcome:
    return LdapDirectory(config).authenticate(username, password)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: connections are refused


class SilentServer:
    """Accepts TCP connections and never says a word (a hung DC); or, with `garbage`, answers
    every connection with bytes that are not LDAP."""

    def __init__(self, garbage: bytes = b"") -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        self._garbage = garbage
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)
            if self._garbage:
                try:
                    conn.sendall(self._garbage)
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    s = SilentServer()
    yield s
    s.close()


# -- logins -------------------------------------------------------------------------------------------

def test_login_over_ldaps_with_nested_groups(server: peer.Slapd) -> None:
    outcome = login(generic(server), "alice", PW["alice"])
    assert outcome.ok, outcome
    user = outcome.user
    assert user is not None
    assert user.dn == f"uid=alice,{peer.PEOPLE}"
    assert (user.username, user.display_name, user.email) == (
        "alice", "田中 アリス", "alice@city.example.lg.jp")
    # tax-clerks ⊂ tax-dept ⊂ all-staff: alice is directly only in tax-clerks
    assert user.groups == ("all-staff", "tax-clerks", "tax-dept")
    assert user.group_resolution.complete and user.group_resolution.depth == 3
    assert outcome.server == server.ldaps_url


def test_membership_in_the_middle_of_the_chain(server: peer.Slapd) -> None:
    outcome = login(generic(server), "bob", PW["bob"])
    assert outcome.user is not None and outcome.user.groups == ("all-staff", "tax-dept")
    outcome = login(generic(server), "dave", PW["dave"])
    assert outcome.user is not None and outcome.user.groups == ()


def test_group_cycle_ends(server: peer.Slapd) -> None:
    outcome = login(generic(server), "henry", PW["henry"])
    assert outcome.user is not None
    assert outcome.user.groups == ("loop-a", "loop-b")
    assert outcome.user.group_resolution.complete and outcome.user.group_resolution.revisits >= 1


def test_too_deep_nesting_fails_closed(server: peer.Slapd) -> None:
    outcome = login(generic(server, max_group_depth=2), "alice", PW["alice"])
    assert outcome.reason is Reason.GROUPS_INCOMPLETE and "max_group_depth=2" in outcome.detail


def test_user_name_case_and_japanese_names(server: peer.Slapd) -> None:
    outcome = login(generic(server), "ALICE", PW["alice"])
    assert outcome.user is not None and outcome.user.username == "alice"
    outcome = login(generic(server), "hanako", PW["hanako"])
    assert outcome.user is not None and outcome.user.display_name == "佐藤 花子"
    assert "tax-clerks" in outcome.user.groups


def test_starttls(server: peer.Slapd) -> None:
    outcome = login(generic(server, servers=(server.ldap_url,), start_tls=True), "carol", PW["carol"])
    assert outcome.ok, outcome
    assert outcome.user is not None and outcome.user.groups == ("all-staff",)


def test_cleartext_only_when_allowed(server: peer.Slapd) -> None:
    with pytest.raises(ConfigError, match=r"directory\.servers\[0\]: .* in the clear"):
        generic(server, servers=(server.ldap_url,))
    outcome = login(generic(server, servers=(server.ldap_url,), allow_cleartext=True),
                    "alice", PW["alice"])
    assert outcome.ok, outcome


# -- refusals -----------------------------------------------------------------------------------------

def test_wrong_password(server: peer.Slapd) -> None:
    outcome = login(generic(server), "alice", "not-her-password")
    assert outcome.reason is Reason.CREDENTIALS_INVALID and not outcome.ok
    assert outcome.decision().status == 401


def test_unknown_user(server: peer.Slapd) -> None:
    outcome = login(generic(server), "nobody", "whatever")
    assert outcome.reason is Reason.USER_NOT_FOUND
    assert outcome.client_reason is Reason.CREDENTIALS_INVALID


@pytest.mark.parametrize("password", ["", " ", "   ", "\t", "\u3000"])
def test_empty_password_never_reaches_the_directory(server: peer.Slapd, password: str) -> None:
    before = server.counters()
    outcome = login(generic(server), "alice", password)
    after = server.counters()
    assert outcome.reason is Reason.PASSWORD_EMPTY
    assert (after.binds, after.connections) == (before.binds, before.connections)


def test_the_bind_counter_would_see_a_login(server: peer.Slapd) -> None:
    # the check above can fail: a real login adds connections and binds
    before = server.counters()
    assert login(generic(server), "alice", PW["alice"]).ok
    after = server.counters()
    assert after.connections - before.connections >= 2 and after.binds - before.binds >= 2


def test_empty_password_is_refused_even_with_no_directory() -> None:
    config = DirectoryConfig(servers=(f"ldaps://127.0.0.1:{closed_port()}",), base_dn=peer.SUFFIX,
                             bind_dn=peer.SERVICE_DN, bind_password="x", kind="generic")
    assert login(config, "alice", "").reason is Reason.PASSWORD_EMPTY


@pytest.mark.parametrize(("username", "password", "reason", "as_itself"), [
    # the name matches only the entry literally named so, never everyone
    ("*", PW["alice"], Reason.CREDENTIALS_INVALID, False),
    ("*", PW["*"], Reason.DIRECTORY_LOGIN_OK, True),
    ("a*)(uid=*", PW["alice"], Reason.CREDENTIALS_INVALID, False),
    ("a*)(uid=*", PW["a*)(uid=*"], Reason.DIRECTORY_LOGIN_OK, True),
    ("*)(uid=*", PW["alice"], Reason.USER_NOT_FOUND, False),
    ("admin)(|(a=*", PW["alice"], Reason.USER_NOT_FOUND, False),
    ("al*", PW["alice"], Reason.USER_NOT_FOUND, False),
    ("alice)(uid=bob", PW["alice"], Reason.USER_NOT_FOUND, False),
    ("alice\\", PW["alice"], Reason.USER_NOT_FOUND, False),
    ("alice\x00", PW["alice"], Reason.USERNAME_INVALID, False),
])
def test_injection(server: peer.Slapd, username: str, password: str, reason: Reason,
                   as_itself: bool) -> None:
    outcome = login(generic(server), username, password)
    assert outcome.reason is reason, outcome
    if as_itself:  # logged in as the entry literally named so, nobody else
        assert outcome.user is not None and outcome.user.username == username
        assert dn_equal(outcome.user.dn, f"uid={escape_dn_value(username)},{peer.PEOPLE}")


def test_two_entries_with_one_name(server: peer.Slapd) -> None:
    assert login(generic(server), "twin", PW["twin"]).reason is Reason.USER_AMBIGUOUS


def test_locked_by_the_administrator(server: peer.Slapd) -> None:
    # ppolicy refuses the bind (accountLocked in the response control); the permanent lock
    # value makes it "disabled" rather than a lockout that will pass
    outcome = login(generic(server), "erin", PW["erin"])
    assert outcome.reason is Reason.ACCOUNT_DISABLED, outcome


def test_expired_account(server: peer.Slapd) -> None:
    # slapd lets the bind through (shadowExpire is for PAM); the connector enforces it
    outcome = login(generic(server), "frank", PW["frank"])
    assert outcome.reason is Reason.ACCOUNT_EXPIRED, outcome


@pytest.mark.parametrize(("username", "reason"), [
    ("ad-ok", Reason.DIRECTORY_LOGIN_OK),
    ("ad-disabled", Reason.ACCOUNT_DISABLED),  # userAccountControl 0x202
    ("ad-mustchange", Reason.PASSWORD_MUST_CHANGE),  # pwdLastSet 0
    ("ad-expired", Reason.ACCOUNT_EXPIRED),  # accountExpires in 2001
    ("ad-locked", Reason.ACCOUNT_LOCKED),  # userAccountControl 0x210
])
def test_ad_account_state_attributes_read_from_a_server(server: peer.Slapd, username: str,
                                                        reason: Reason) -> None:
    # kind "ad" reading AD's attributes from AD-shaped entries; slapd has no in-chain rule, so
    # the groups are walked
    config = generic(server, kind="ad", nested_groups="walk",
                     user_filter="(&(objectClass=sekimoriAdAccount)(sAMAccountName={username}))",
                     group_filter="(objectClass=groupOfNames)")
    outcome = login(config, username, PW[username])
    assert outcome.reason is reason, outcome
    if outcome.ok:
        assert outcome.user is not None and outcome.user.groups == ("ad-staff",)
        assert outcome.user.username == "ad-ok" and outcome.user.display_name == "AD ad-ok"


# -- servers, timeouts, TLS -----------------------------------------------------------------------------

def test_failover_from_a_closed_port(server: peer.Slapd) -> None:
    dead = f"ldaps://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    outcome = login(generic(server, servers=(dead, server.ldaps_url)), "alice", PW["alice"])
    assert outcome.ok and outcome.server == server.ldaps_url
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("scheme", ["ldaps", "ldap+starttls"])
def test_failover_from_a_hung_server_within_the_timeout(server: peer.Slapd, silent: SilentServer,
                                                        scheme: str) -> None:
    hung = f"{scheme.split('+')[0]}://127.0.0.1:{silent.port}"
    good = server.ldaps_url if scheme == "ldaps" else server.ldap_url
    config = generic(server, servers=(hung, good), start_tls=scheme.endswith("starttls"),
                     network_timeout_seconds=0.5, operation_timeout_seconds=0.5)
    started = time.monotonic()
    outcome = login(config, "alice", PW["alice"])
    elapsed = time.monotonic() - started
    assert outcome.ok and outcome.server == good, outcome
    assert 0.4 < elapsed < 2.0


def test_only_a_hung_server_fails_closed_within_the_timeout(server: peer.Slapd,
                                                            silent: SilentServer) -> None:
    config = generic(server, servers=(f"ldaps://127.0.0.1:{silent.port}",),
                     network_timeout_seconds=0.5, operation_timeout_seconds=0.5)
    started = time.monotonic()
    outcome = login(config, "alice", PW["alice"])
    assert time.monotonic() - started < 1.5
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE and "timed out" in outcome.detail


def test_all_servers_down_fails_closed_quickly(server: peer.Slapd) -> None:
    urls = (f"ldaps://127.0.0.1:{closed_port()}", f"ldaps://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    outcome = login(generic(server, servers=urls), "alice", PW["alice"])
    assert time.monotonic() - started < 1.0
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE and outcome.decision().status == 503
    for url in urls:
        assert url in outcome.detail
    assert "refused" in outcome.detail.lower()


def test_a_server_speaking_garbage_is_skipped(server: peer.Slapd) -> None:
    garbage = SilentServer(garbage=b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4)
    try:
        config = generic(server, servers=(f"ldap://127.0.0.1:{garbage.port}", server.ldaps_url),
                         allow_cleartext=True, operation_timeout_seconds=1)
        outcome = login(config, "alice", PW["alice"])
    finally:
        garbage.close()
    assert outcome.ok and outcome.server == server.ldaps_url, outcome


@pytest.mark.parametrize("starttls", [False, True])
def test_wrong_ca_is_refused(server: peer.Slapd, starttls: bool) -> None:
    config = generic(server, ca_file=str(server.other_ca_file), start_tls=starttls,
                     servers=(server.ldap_url if starttls else server.ldaps_url,))
    outcome = login(config, "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE
    assert "TLS certificate rejected" in outcome.detail, outcome.detail


def test_wrong_host_name_is_refused(server: peer.Slapd) -> None:
    # the same server, but at 127.0.0.2, which its certificate does not name
    outcome = login(generic(server, servers=(server.ldaps_url_wrong_name,)), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE
    assert "TLS certificate rejected" in outcome.detail and "127.0.0.2" in outcome.detail, outcome.detail


def test_missing_ca_file(server: peer.Slapd, tmp_path: Path) -> None:
    outcome = login(generic(server, ca_file=str(tmp_path / "nope.pem")), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE and "not a readable file" in outcome.detail


def test_service_account_refused(server: peer.Slapd) -> None:
    outcome = login(generic(server, bind_password="wrong"), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE
    assert "service account" in outcome.detail


def test_base_dn_missing(server: peer.Slapd) -> None:
    outcome = login(generic(server, base_dn="dc=elsewhere,dc=jp"), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE and "does not exist" in outcome.detail


def test_a_config_change_is_a_new_value(server: peer.Slapd) -> None:
    config = generic(server)
    with pytest.raises(ConfigError):
        replace(config, servers=(server.ldap_url,))  # validated again: cleartext refused


def test_parallel_logins_from_threads(server: peer.Slapd) -> None:
    # the broker calls authenticate() in worker threads: one LdapDirectory, many logins at once
    directory = LdapDirectory(generic(server))
    attempts = [("alice", PW["alice"], True), ("bob", "wrong", False), ("carol", PW["carol"], True),
                ("hanako", PW["hanako"], True)] * 6
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda a: directory.authenticate(a[0], a[1]), attempts))
    for (username, _, ok), outcome in zip(attempts, outcomes, strict=True):
        assert outcome.ok is ok, (username, outcome)
        if ok:
            assert outcome.user is not None and outcome.user.username == username
