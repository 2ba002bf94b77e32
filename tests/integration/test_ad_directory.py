"""The LDAP / AD connector (idp_bridge/runtime/ldap_directory.py), kind "ad", against a real
Samba AD DC on 127.0.0.1 (tests/peers/samba_ad.py): LDAPS and StartTLS verified against the
peer's CA, the service account's search, the user's bind, AD's bind sub-codes for every refused
account, lockout, nested groups through LDAP_MATCHING_RULE_IN_CHAIN, injection, failover,
timeouts and TLS refusals.

Skipped, with the reason, when this machine cannot run the DC: not root, Samba not installed, or
port 389/636/3268/3269 taken by another process.
"""

# What Samba 4.17.12 answers (observed). A refused simple bind is LDAP result 49 with the
# diagnostic "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data <code>,
# v1db1", the shape Windows sends ("…DSID-0C090439…, v4563"):
#
#   account (tests/peers/samba_ad.py)                               right password  wrong password
#   alice, bob, …                                                   success         52e
#   dora: samba-tool user disable (userAccountControl 0x202)        533             52e
#   mika: --must-change-at-next-login (pwdLastSet 0)                773             52e
#   eiji: samba-tool user setexpiry --days=0 (accountExpires now)   701             52e
#   paul: a password settings object with a 2-day maximum age and   532             52e
#         pwdLastSet three days old (msDS-User-Account-Control-Computed 0x800000)
#   hiro: logonHours all zero                                       530             52e
#   wanda: userWorkstations NOWHERE                                 531             52e
#   lena: after 3 bad passwords (lockoutThreshold 3): lockoutTime   775             775
#         set, badPwdCount 3, userAccountControl still 0x200, the
#         LOCKOUT bit (0x10) only in msDS-User-Account-Control-Computed
#   nora: pwdLastSet 0 but DONT_EXPIRE_PASSWD (0x10000)             success (computed 0)
#   a DN that does not exist                                        52e (never 525 for a simple bind)
#   a DN with an empty password                                     52e (no unauthenticated bind,
#                                                                   unlike Windows: RFC 4513 §5.1.2)
#
# So Samba never shows an account's state to someone without its password, except a lockout.
# Samba has no WhoAmI (`Extended Operation(1.3.6.1.4.1.4203.1.11.3) not supported`, PROTOCOL_ERROR).
# It refuses a simple bind over plain LDAP ("Strong(er) authentication required: BindSimple:
# Transport encryption required.") unless `ldap server require strong auth = no`.
# To expire a password: Samba treats a maximum password age of one day or less as "never", and over
# LDAP takes pwdLastSet only as 0 or -1, so the peer sets it with ldbmodify past the password_hash
# module. In-chain group queries end on cycles and leave out the primary group (Domain Users).

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.peers import samba_ad as peer
from tests.peers.samba_ad import samba_dc  # noqa: F401  (the session's DC, shared with other modules)
from ztcore.reasons import Reason

try:
    import ldap  # type: ignore[import-untyped]
except ImportError:
    pytest.skip("python-ldap is not installed (pip install python-ldap; needs libldap2-dev)",
                allow_module_level=True)

from idp_bridge.directory import AuthOutcome, DirectoryConfig
from idp_bridge.ldap_syntax import dn_equal
from idp_bridge.runtime.ldap_directory import LdapDirectory

pytestmark = pytest.mark.samba
PW = peer.PASSWORDS
ALL_STAFF = ("all-staff", "tax-clerks", "tax-dept")


@pytest.fixture
def dc(samba_dc: peer.SambaDC) -> peer.SambaDC:  # noqa: F811
    return samba_dc


def ad(dc: peer.SambaDC, **changes: Any) -> DirectoryConfig:
    values: dict[str, Any] = {
        "servers": (dc.ldaps_url,), "base_dn": dc.base_dn, "bind_dn": dc.service_dn,
        "bind_password": dc.service_password, "kind": "ad", "ca_file": str(dc.ca_file),
        "network_timeout_seconds": 2, "operation_timeout_seconds": 2}
    values.update(changes)
    return DirectoryConfig(**values)


def login(config: DirectoryConfig, username: str, password: str) -> AuthOutcome:
    return LdapDirectory(config).authenticate(username, password)


@pytest.fixture
def closed_port() -> Iterator[Callable[[], int]]:
    """Ports where nothing listens: bound without listen(), so connections are refused, and held
    until the test ends, so no other process (tests run beside us) can start listening there."""
    held: list[socket.socket] = []

    def make() -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
        return int(s.getsockname()[1])

    yield make
    for s in held:
        s.close()


class SilentServer:
    """Accepts TCP connections and never says a word (a hung DC)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._held.append(self._sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    s = SilentServer()
    yield s
    s.close()


# -- logins -------------------------------------------------------------------------------------------

def test_login_over_ldaps_with_nested_groups(dc: peer.SambaDC) -> None:
    outcome = login(ad(dc), "alice", PW["alice"])
    assert outcome.ok, outcome
    user = outcome.user
    assert user is not None
    assert dn_equal(user.dn, f"CN=Alice Tanaka,CN=Users,{dc.base_dn}")  # not the account name
    assert (user.username, user.display_name, user.email) == (
        "alice", "田中 アリス", "alice@city.example.lg.jp")
    # tax-clerks ⊂ tax-dept ⊂ all-staff, alice directly only in tax-clerks: one in-chain query
    assert user.groups == ALL_STAFF
    assert user.group_resolution.method == "in-chain" and user.group_resolution.complete
    assert outcome.server == dc.ldaps_url


def test_login_over_starttls(dc: peer.SambaDC) -> None:
    config = ad(dc, servers=(dc.ldap_url,), start_tls=True)
    outcome = login(config, "bob", PW["bob"])
    assert outcome.ok, outcome
    assert outcome.user is not None and outcome.user.groups == ("all-staff", "tax-dept")
    assert outcome.server == dc.ldap_url


@pytest.mark.parametrize(("username", "groups"), [
    ("bob", ("all-staff", "tax-dept")),  # in the middle of the chain
    ("carol", ("all-staff",)),
    ("dave", ()),  # only the primary group, Domain Users, which `member` does not list
    ("henry", ("loop-a", "loop-b")),  # loop-a ⊂ loop-b ⊂ loop-a: the DC ends the cycle
])
def test_group_membership(dc: peer.SambaDC, username: str, groups: tuple[str, ...]) -> None:
    outcome = login(ad(dc), username, PW[username])
    assert outcome.user is not None, outcome
    assert outcome.user.groups == groups


def test_user_name_case(dc: peer.SambaDC) -> None:
    outcome = login(ad(dc), "ALICE", PW["alice"])
    assert outcome.user is not None and outcome.user.username == "alice"


def test_a_dn_that_needs_escaping(dc: peer.SambaDC) -> None:
    # CN=Sato\, Hanako (税務課): the comma is escaped in the DN, the parentheses and the
    # backslash again in the in-chain filter
    outcome = login(ad(dc), "hanako", PW["hanako"])
    assert outcome.ok, outcome
    assert outcome.user is not None
    assert dn_equal(outcome.user.dn, peer.user_dn("hanako"))
    assert outcome.user.display_name == "佐藤 花子"
    assert outcome.user.groups == ALL_STAFF


def test_too_many_groups_fails_closed(dc: peer.SambaDC) -> None:
    outcome = login(ad(dc, max_groups=2), "alice", PW["alice"])
    assert outcome.reason is Reason.GROUPS_INCOMPLETE and "max_groups=2" in outcome.detail


def test_service_account_by_its_upn(dc: peer.SambaDC) -> None:
    assert login(ad(dc, bind_dn=dc.service_upn), "carol", PW["carol"]).ok


def test_must_change_with_a_password_that_never_expires(dc: peer.SambaDC) -> None:
    # pwdLastSet 0 and DONT_EXPIRE_PASSWD: the DC lets the bind through and does not compute
    # PASSWORD_EXPIRED, so the connector must not refuse it either
    state = dc.read(peer.user_dn("nora"), "pwdLastSet", "userAccountControl",
                    "msDS-User-Account-Control-Computed")
    assert state["pwdLastSet"] == ["0"] and int(state["userAccountControl"][0]) & 0x10000
    outcome = login(ad(dc), "nora", PW["nora"])
    assert outcome.ok, outcome


# -- refusals -----------------------------------------------------------------------------------------

def test_wrong_password(dc: peer.SambaDC) -> None:
    outcome = login(ad(dc), "walter", "Not-His!Passw0rd")
    assert outcome.reason is Reason.CREDENTIALS_INVALID, outcome
    assert "data 52e" in outcome.detail and outcome.decision().status == 401


def test_unknown_user(dc: peer.SambaDC) -> None:
    outcome = login(ad(dc), "nobody", "Wh4tever!")
    assert outcome.reason is Reason.USER_NOT_FOUND
    assert outcome.client_reason is Reason.CREDENTIALS_INVALID


@pytest.mark.parametrize(("username", "reason"), [
    ("dora", Reason.ACCOUNT_DISABLED),
    ("mika", Reason.PASSWORD_MUST_CHANGE),
    ("eiji", Reason.ACCOUNT_EXPIRED),
    ("paul", Reason.PASSWORD_EXPIRED),
    ("hiro", Reason.LOGON_HOURS),
    ("wanda", Reason.WORKSTATION_NOT_ALLOWED),
])
def test_refused_accounts_with_the_right_password(dc: peer.SambaDC, username: str,
                                                  reason: Reason) -> None:
    outcome = login(ad(dc), username, PW[username])
    assert outcome.reason is reason, outcome
    _, code = peer.STATES[username]
    assert f"data {code}" in outcome.detail
    assert outcome.server == dc.ldaps_url and not outcome.ok


@pytest.mark.parametrize("username", sorted(peer.STATES))
def test_refused_accounts_with_a_wrong_password(dc: peer.SambaDC, username: str) -> None:
    # the DC checks the password first: a guesser learns nothing about the account
    outcome = login(ad(dc), username, "Wr0ng!Password")
    assert outcome.reason is Reason.CREDENTIALS_INVALID and "data 52e" in outcome.detail, outcome


def test_disabled_account(dc: peer.SambaDC) -> None:
    # the flag is in userAccountControl, and the bind itself is refused with 533: the refusal
    # comes from the sub-code, before the state is read
    uac = int(dc.read(peer.user_dn("dora"), "userAccountControl")["userAccountControl"][0])
    assert uac & 0x2
    outcome = login(ad(dc), "dora", PW["dora"])
    assert outcome.reason is Reason.ACCOUNT_DISABLED and "data 533" in outcome.detail
    assert outcome.decision().status == 403


def test_lockout(dc: peer.SambaDC) -> None:
    config = ad(dc)
    try:
        for attempt in range(peer.LOCKOUT_THRESHOLD):
            outcome = login(config, "lena", f"Wr0ng!Guess{attempt}")
            assert outcome.reason is Reason.CREDENTIALS_INVALID and "data 52e" in outcome.detail
        state = dc.read(peer.user_dn("lena"), "lockoutTime", "badPwdCount", "userAccountControl",
                        "msDS-User-Account-Control-Computed")
        assert int(state["lockoutTime"][0]) > 0 and state["badPwdCount"] == ["3"]
        assert int(state["msDS-User-Account-Control-Computed"][0]) & 0x10
        assert not int(state["userAccountControl"][0]) & 0x10  # AD leaves the stored bit alone
        for password in (PW["lena"], "Wr0ng!Again"):
            outcome = login(config, "lena", password)
            assert outcome.reason is Reason.ACCOUNT_LOCKED and "data 775" in outcome.detail, outcome
    finally:
        dc.samba_tool("user", "unlock", "lena")
    assert login(config, "lena", PW["lena"]).ok  # the administrator's unlock lets her in again


@pytest.mark.parametrize(("username", "reason"), [
    ("*", Reason.USER_NOT_FOUND),
    ("*)(uid=*", Reason.USER_NOT_FOUND),
    ("admin)(|(a=*", Reason.USER_NOT_FOUND),
    ("alice)(|(sAMAccountName=*", Reason.USER_NOT_FOUND),
    ("al*", Reason.USER_NOT_FOUND),
    ("alice)(sAMAccountName=bob", Reason.USER_NOT_FOUND),
    ("alice\\", Reason.USER_NOT_FOUND),
    ("alice\x00", Reason.USERNAME_INVALID),
])
def test_injection(dc: peer.SambaDC, username: str, reason: Reason) -> None:
    outcome = login(ad(dc), username, PW["alice"])
    assert outcome.reason is reason and outcome.user is None, outcome


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection the connector opens (ldap.initialize, the I/O boundary), by URL."""
    opened: list[str] = []
    real = ldap.initialize

    def counting(url: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(ldap, "initialize", counting)
    return opened


@pytest.mark.parametrize("password", ["", " ", "   ", "\t", "\u3000"])
def test_empty_password_never_reaches_the_directory(dc: peer.SambaDC, connections: list[str],
                                                    password: str) -> None:
    outcome = login(ad(dc), "alice", password)
    assert outcome.reason is Reason.PASSWORD_EMPTY
    assert connections == []


def test_the_connection_count_would_see_a_login(dc: peer.SambaDC, connections: list[str]) -> None:
    # the check above can fail: a login opens the service account's and the user's connections
    assert login(ad(dc), "alice", PW["alice"]).ok
    assert connections == [dc.ldaps_url, dc.ldaps_url]


def test_what_an_empty_password_bind_does_on_samba(dc: peer.SambaDC) -> None:
    # Samba refuses it (52e); Windows would answer with an unauthenticated success, which is why
    # the connector never sends one
    conn = ldap.initialize(dc.ldaps_url)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(dc.ca_file))
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    with pytest.raises(ldap.INVALID_CREDENTIALS, match="data 52e"):
        conn.simple_bind_s(peer.user_dn("alice"), "")


# -- servers, timeouts, TLS -----------------------------------------------------------------------------

def test_failover_from_a_closed_port(dc: peer.SambaDC, closed_port: Callable[[], int]) -> None:
    dead = f"ldaps://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    outcome = login(ad(dc, servers=(dead, dc.ldaps_url)), "alice", PW["alice"])
    assert outcome.ok and outcome.server == dc.ldaps_url, outcome
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("starttls", [False, True])
def test_failover_from_a_hung_server_within_the_timeout(dc: peer.SambaDC, silent: SilentServer,
                                                        starttls: bool) -> None:
    hung = f"{'ldap' if starttls else 'ldaps'}://127.0.0.1:{silent.port}"
    good = dc.ldap_url if starttls else dc.ldaps_url
    config = ad(dc, servers=(hung, good), start_tls=starttls, network_timeout_seconds=0.5,
                operation_timeout_seconds=0.5)
    started = time.monotonic()
    outcome = login(config, "alice", PW["alice"])
    elapsed = time.monotonic() - started
    assert outcome.ok and outcome.server == good, outcome
    assert 0.4 < elapsed < 2.0


def test_all_servers_down_fails_closed_quickly(dc: peer.SambaDC,
                                              closed_port: Callable[[], int]) -> None:
    urls = (f"ldaps://127.0.0.1:{closed_port()}", f"ldaps://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    outcome = login(ad(dc, servers=urls), "alice", PW["alice"])
    assert time.monotonic() - started < 1.0
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE and outcome.decision().status == 503
    for url in urls:
        assert url in outcome.detail
    assert "refused" in outcome.detail.lower()


def test_all_servers_down_or_hung_is_bounded_by_the_timeouts(
        dc: peer.SambaDC, silent: SilentServer, closed_port: Callable[[], int]) -> None:
    urls = (f"ldaps://127.0.0.1:{silent.port}", f"ldaps://127.0.0.1:{closed_port()}")
    config = ad(dc, servers=urls, network_timeout_seconds=0.5, operation_timeout_seconds=0.5)
    started = time.monotonic()
    outcome = login(config, "alice", PW["alice"])
    elapsed = time.monotonic() - started
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE, outcome
    assert "timed out" in outcome.detail and "refused" in outcome.detail.lower()
    assert 0.4 < elapsed < 1.5  # one network timeout for the hung one, nothing for the closed one


@pytest.mark.parametrize("starttls", [False, True])
def test_wrong_ca_is_refused(dc: peer.SambaDC, starttls: bool) -> None:
    config = ad(dc, ca_file=str(dc.other_ca_file), start_tls=starttls,
                servers=(dc.ldap_url if starttls else dc.ldaps_url,))
    outcome = login(config, "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE
    assert "TLS certificate rejected: unable to get local issuer certificate" in outcome.detail, \
        outcome.detail
    assert ("StartTLS" if starttls else "service account bind") in outcome.detail


def test_wrong_host_name_is_refused(dc: peer.SambaDC) -> None:
    url = dc.ldaps_url_wrong_name  # the same DC at ::1, which its certificate does not name
    if url is None:
        pytest.skip("no IPv6 loopback on this machine")
    outcome = login(ad(dc, servers=(url,)), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE
    assert "TLS certificate rejected" in outcome.detail and "'::1'" in outcome.detail, outcome.detail


def test_cleartext_simple_bind_is_refused_by_the_dc(dc: peer.SambaDC) -> None:
    # allowed by our config, refused by the DC (require strong auth): fail closed, and say why
    outcome = login(ad(dc, servers=(dc.ldap_url,), allow_cleartext=True), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE
    assert "Transport encryption required" in outcome.detail, outcome.detail


def test_service_account_refused(dc: peer.SambaDC) -> None:
    outcome = login(ad(dc, bind_password="Wr0ng!Service"), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE
    assert "service account" in outcome.detail


@pytest.mark.parametrize("base_dn", ["DC=elsewhere,DC=jp", "OU=nope,DC=city,DC=example,DC=lg,DC=jp"])
def test_base_dn_missing(dc: peer.SambaDC, base_dn: str) -> None:
    outcome = login(ad(dc, base_dn=base_dn), "alice", PW["alice"])
    assert outcome.reason is Reason.DIRECTORY_UNAVAILABLE and "does not exist" in outcome.detail


def test_parallel_logins_from_threads(dc: peer.SambaDC) -> None:
    # one LdapDirectory, many logins at once (the broker's worker threads); the wrong passwords
    # stay below the lockout threshold
    directory = LdapDirectory(ad(dc))
    attempts = [("alice", PW["alice"], True), ("carol", PW["carol"], True),
                ("hanako", PW["hanako"], True), ("henry", PW["henry"], True)] * 5
    attempts += [("dave", "Wr0ng!Parallel", False)] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda a: directory.authenticate(a[0], a[1]), attempts))
    for (username, _, ok), outcome in zip(attempts, outcomes, strict=True):
        assert outcome.ok is ok, (username, outcome)
        if ok:
            assert outcome.user is not None and outcome.user.username == username


@pytest.mark.parametrize("typed", ["alice", "ALICE", "CITY\\alice", "city\\alice",
                                   "alice@city.example.lg.jp"])
def test_staff_may_type_the_logon_name_the_upn_or_the_down_level_name(
        dc: peer.SambaDC, typed: str) -> None:
    outcome = login(ad(dc), typed, PW["alice"])
    assert outcome.ok and outcome.user is not None and outcome.user.username == "alice", outcome


@pytest.mark.parametrize("typed", ["CITY\\alice\\x", "\\alice", "A-VERY-LONG-DOMAIN-NAME\\alice",
                                   "alice@other.example"])
def test_other_spellings_do_not_find_the_user(dc: peer.SambaDC, typed: str) -> None:
    assert login(ad(dc), typed, PW["alice"]).reason is Reason.USER_NOT_FOUND
