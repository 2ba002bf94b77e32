"""The python-ldap shell of the directory login: connects, binds, searches, and asks the core
(`idp_bridge.directory`) what each answer means.

For one login, on each configured server in order until one answers: connect (LDAPS, or LDAP
then StartTLS; the certificate verified against `ca_file`; plain LDAP only with
`allow_cleartext`), bind as the service account, find the user with the escaped filter (exactly
one entry), bind as that entry's DN with the password on a fresh connection, confirm the bound
identity with WhoAmI (RFC 4532), read the account's state, resolve nested groups (AD's
LDAP_MATCHING_RULE_IN_CHAIN, or a bounded breadth-first walk up `member`). A server that cannot
be reached, times out, fails TLS or refuses the service account is skipped for the next one;
an answer about the user (no such user, wrong password, disabled…) is final, so a wrong password
is not tried on every server. When no server answers: `directory-unavailable` (fail closed).

Blocking: every call waits on the network. The broker runs `authenticate` in a worker thread
(`await asyncio.to_thread(directory.authenticate, username, password)`); each call opens its own
connections, so calls may run in parallel. Every wait is bounded: connecting and the TLS
handshake by `network_timeout_seconds`, each operation by `operation_timeout_seconds`. A login
makes five operations per server plus the group searches (one for AD's in-chain query, one round
per nesting level for the walk); a server that fails costs at most one network timeout more for
the stdlib TLS diagnosis, and none when it timed out.

python-ldap exceptions (and any other) never leave `authenticate`: they become an AuthOutcome.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import ldap  # type: ignore[import-untyped]
from ldap.controls import DecodeControlTuples, SimplePagedResultsControl  # type: ignore[import-untyped]
from ldap.controls.ppolicy import PasswordPolicyControl  # type: ignore[import-untyped]
from ldap.ldapobject import SimpleLDAPObject  # type: ignore[import-untyped]

from idp_bridge.directory import (
    AuthOutcome,
    DirectoryConfig,
    DirectoryKind,
    account_state,
    bind_failure,
    confirm_identity,
    directory_user,
    groups_verdict,
    precheck,
    state_attributes,
    user_attributes,
    user_search_filter,
)
from idp_bridge.groups import (
    Group,
    GroupResolution,
    GroupWalk,
    in_chain_filter,
    in_chain_resolution,
)
from idp_bridge.ldap_syntax import first_rdn_value
from ztcore.reasons import Reason

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, tuple[str, ...]]]
PAGE_SIZE = 500

# The server is not there, or not answering: try the next one.
_UNREACHABLE = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT, ldap.UNAVAILABLE, ldap.BUSY)


class _ServerFailed(Exception):
    """This server could not answer the login; the message says why (for the admin)."""


class LdapDirectory:
    """Password logins against one directory (several servers, tried in order)."""

    def __init__(self, config: DirectoryConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock

    @property
    def config(self) -> DirectoryConfig:
        return self._config

    def authenticate(self, username: str, password: str) -> AuthOutcome:
        """Check `password` for `username`; never raises. Blocking (see the module docstring)."""
        refused = precheck(username, password)
        if refused is not None:
            return refused  # before any connection: an empty password must never be sent
        try:
            return self._authenticate(username, password)
        except Exception:  # fail closed on our own bugs too, and say so in the log
            log.exception("directory login failed unexpectedly (user %r)", username)
            return AuthOutcome.deny(Reason.INTERNAL_ERROR,
                                    "unexpected error in the directory client (see the log)")

    # -- one login ---------------------------------------------------------------------------

    def _authenticate(self, username: str, password: str) -> AuthOutcome:
        failures = []
        for url in self._config.servers:
            started = time.monotonic()
            try:
                return self._attempt(url, username, password)
            except _ServerFailed as exc:
                failures.append(f"{url}: {exc}")
                log.warning("directory server %s failed after %.2f s: %s", url,
                            time.monotonic() - started, exc)
        return AuthOutcome.deny(Reason.DIRECTORY_UNAVAILABLE,
                                "no directory server answered: " + "; ".join(failures))

    def _attempt(self, url: str, username: str, password: str) -> AuthOutcome:
        c = self._config
        service = self._open(url)
        try:
            try:
                service.simple_bind_s(c.bind_dn, c.bind_password)
            except ldap.INVALID_CREDENTIALS:
                raise _ServerFailed("the service account's bind was refused (check bind_dn and "
                                    "bind_password)") from None
            except ldap.LDAPError as exc:
                raise self._failed(url, exc, "service account bind") from None

            entries, ambiguous = self._find_user(service, username)
            if ambiguous or len(entries) > 1:
                return AuthOutcome.deny(Reason.USER_AMBIGUOUS,
                                        f"more than one entry matches the user name {username!r}",
                                        server=url)
            if not entries:
                return AuthOutcome.deny(Reason.USER_NOT_FOUND,
                                        f"no entry matches the user name {username!r}", server=url)
            dn, attrs = entries[0]

            refused, ppolicy_error = self._bind_as_user(url, dn, password, attrs)
            if refused is not None:
                return refused

            state = self._read(service, dn, state_attributes(c))
            verdict = account_state(c, state or attrs, self._clock(), ppolicy_error)
            if verdict is not None:
                return AuthOutcome.from_verdict(verdict, server=url)

            resolution = self._groups(service, dn)
            verdict = groups_verdict(resolution)
            if verdict is not None:
                return AuthOutcome.from_verdict(verdict, server=url)
            return AuthOutcome.success(directory_user(c, dn, attrs, username, resolution, url),
                                       server=url)
        finally:
            _close(service)

    def _find_user(self, conn: SimpleLDAPObject, username: str) -> tuple[list[Entry], bool]:
        c = self._config
        try:
            # sizelimit 2: one entry is the answer, a second one is all we need to refuse
            msgid = conn.search_ext(c.base_dn, ldap.SCOPE_SUBTREE, user_search_filter(c, username),
                                    list(user_attributes(c)), sizelimit=2,
                                    timeout=c.operation_timeout_seconds)
            _, data, _, _ = conn.result3(msgid, all=1, timeout=c.operation_timeout_seconds)
        except ldap.SIZELIMIT_EXCEEDED:
            return [], True
        except ldap.NO_SUCH_OBJECT:
            raise _ServerFailed(f"base_dn {c.base_dn!r} does not exist on this server") from None
        except ldap.LDAPError as exc:
            raise self._failed("", exc, "user search") from None
        return _entries(data), False

    def _bind_as_user(self, url: str, dn: str, password: str,
                      attrs: dict[str, tuple[str, ...]]) -> tuple[AuthOutcome | None, int | None]:
        """Bind as the user on a fresh connection (never reuse the service account's) and confirm
        who the server thinks we are. Returns (a deny, or None; the ppolicy error code)."""
        c = self._config
        conn = self._open(url)
        try:
            controls = [PasswordPolicyControl()] if c.kind is DirectoryKind.GENERIC else None
            try:
                _, _, _, response = conn.simple_bind_s(dn, password, serverctrls=controls)
            except ldap.INVALID_CREDENTIALS as exc:
                info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
                verdict = bind_failure(c, str(info.get("info", "")),
                                       _ppolicy_error(info.get("ctrls")), attrs)
                return AuthOutcome.from_verdict(verdict, server=url), None
            except _UNREACHABLE as exc:
                raise self._failed(url, exc, "user bind") from None
            except (ldap.CONFIDENTIALITY_REQUIRED, ldap.STRONG_AUTH_REQUIRED) as exc:
                raise _ServerFailed(f"the server wants a protected connection: {_describe(exc)}"
                                    ) from None
            except ldap.LDAPError as exc:
                return AuthOutcome.deny(Reason.CREDENTIALS_INVALID,
                                        f"bind refused: {_describe(exc)}", server=url), None
            ppolicy_error = _ppolicy_error(response)
            try:
                authzid: str | None = conn.whoami_s()
            except ldap.PROTOCOL_ERROR:  # "Extended Operation … not supported" (Samba AD)
                authzid = None
            except _UNREACHABLE as exc:
                raise self._failed(url, exc, "WhoAmI") from None
            except ldap.LDAPError as exc:
                return AuthOutcome.deny(Reason.BIND_IDENTITY_MISMATCH,
                                        f"WhoAmI failed: {_describe(exc)}", server=url), None
            account = (attrs.get(c.username_attribute.lower()) or ("",))[0]
            mismatch = confirm_identity(c, authzid, dn, account)
            if mismatch is not None:
                return AuthOutcome.from_verdict(mismatch, server=url), None
            return None, ppolicy_error
        finally:
            _close(conn)

    def _read(self, conn: SimpleLDAPObject, dn: str,
              attributes: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        c = self._config
        try:
            msgid = conn.search_ext(dn, ldap.SCOPE_BASE, "(objectClass=*)", list(attributes),
                                    timeout=c.operation_timeout_seconds)
            _, data, _, _ = conn.result3(msgid, all=1, timeout=c.operation_timeout_seconds)
        except ldap.NO_SUCH_OBJECT:
            return {}
        except ldap.LDAPError as exc:
            raise self._failed("", exc, "account state read") from None
        entries = _entries(data)
        return entries[0][1] if entries else {}

    def _groups(self, conn: SimpleLDAPObject, user_dn: str) -> GroupResolution:
        c = self._config
        if c.nested_groups == "in-chain":
            found, truncated = self._search_groups(
                conn, in_chain_filter(c.group_filter, c.group_member_attribute, user_dn))
            return in_chain_resolution(found, max_groups=c.max_groups, truncated=truncated)
        walk = GroupWalk(user_dn, max_depth=c.max_group_depth, max_groups=c.max_groups)
        while not walk.done:
            level: list[Group] = []
            for query in walk.filters(c.group_filter, c.group_member_attribute):
                found, _ = self._search_groups(conn, query)
                level.extend(found)  # a truncated level shows up as more than max_groups
            walk.feed(level)
        return walk.result()

    def _search_groups(self, conn: SimpleLDAPObject, query: str) -> tuple[list[Group], bool]:
        """All groups matching `query` (paged: AD returns at most 1000 per page), up to
        max_groups + 1; True when it stopped there."""
        c = self._config
        limit = c.max_groups + 1
        name_attr = c.group_name_attribute.lower()
        paging = SimplePagedResultsControl(criticality=False, size=min(PAGE_SIZE, limit), cookie=b"")
        groups: list[Group] = []
        try:
            while True:
                msgid = conn.search_ext(c.group_base_dn, ldap.SCOPE_SUBTREE, query,
                                        [c.group_name_attribute], serverctrls=[paging],
                                        timeout=c.operation_timeout_seconds)
                _, data, _, controls = conn.result3(msgid, all=1,
                                                    timeout=c.operation_timeout_seconds)
                for dn, attrs in _entries(data):
                    groups.append(Group(dn, (attrs.get(name_attr) or (first_rdn_value(dn),))[0]))
                if len(groups) >= limit:
                    return groups[:limit], True
                cookie = next((ctl.cookie for ctl in controls or ()
                               if ctl.controlType == SimplePagedResultsControl.controlType), b"")
                if not cookie:
                    return groups, False
                paging.cookie = cookie
        except (ldap.SIZELIMIT_EXCEEDED, ldap.ADMINLIMIT_EXCEEDED):
            return groups, True
        except ldap.NO_SUCH_OBJECT:
            raise _ServerFailed(f"group_base_dn {c.group_base_dn!r} does not exist") from None
        except ldap.LDAPError as exc:
            raise self._failed("", exc, "group search") from None

    # -- connections ----------------------------------------------------------------------------

    def _open(self, url: str) -> SimpleLDAPObject:
        """A connection to `url`, TLS set up (LDAPS connects lazily, at the first operation)."""
        c = self._config
        tls = url.lower().startswith("ldaps://") or c.start_tls
        if tls and c.ca_file is not None and not os.access(c.ca_file, os.R_OK):
            raise _ServerFailed(f"ca_file {c.ca_file!r} is not a readable file")
        try:
            conn = ldap.initialize(url)
            conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
            # AD returns referrals to other partitions; chasing them would bind anonymously
            # somewhere else.
            conn.set_option(ldap.OPT_REFERRALS, 0)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, c.network_timeout_seconds)
            conn.set_option(ldap.OPT_TIMEOUT, c.operation_timeout_seconds)
            # Without an asynchronous connect libldap makes the socket blocking again before the
            # TLS handshake, which then waits forever on a server that accepts and says nothing.
            conn.set_option(ldap.OPT_CONNECT_ASYNC, ldap.OPT_ON)
            conn.timeout = c.operation_timeout_seconds
            if tls:
                if c.ca_file is not None:
                    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, c.ca_file)
                conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
                conn.set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, ldap.OPT_X_TLS_PROTOCOL_TLS1_2)
                conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # must come after the other TLS options
        except (ldap.LDAPError, ValueError) as exc:
            raise _ServerFailed(f"cannot set up the connection: {_describe(exc)}") from None
        if url.lower().startswith("ldap://") and c.start_tls:
            try:
                conn.start_tls_s()
            except ldap.LDAPError as exc:
                _close(conn)
                raise self._failed(url, exc, "StartTLS") from None
        return conn

    def _failed(self, url: str, exc: Exception, step: str) -> _ServerFailed:
        """A _ServerFailed for `exc`, explaining connection and TLS failures (libldap reports a
        rejected certificate only as "Can't contact LDAP server")."""
        text = _describe(exc)
        if isinstance(exc, ldap.TIMEOUT) or _errno(exc) == errno.ETIMEDOUT:
            return _ServerFailed(f"{step} timed out ({text})")
        if url and isinstance(exc, (ldap.SERVER_DOWN, ldap.CONNECT_ERROR)):
            return _ServerFailed(f"{step}: {_diagnose(url, self._config, text)}")
        return _ServerFailed(f"{step}: {text}")


def _diagnose(url: str, c: DirectoryConfig, libldap_says: str) -> str:
    """Find out, with the stdlib, why a connection failed: refused, or which TLS check."""
    parts = urlsplit(url)
    ldaps = parts.scheme.lower() == "ldaps"
    host, port = parts.hostname or "", parts.port or (636 if ldaps else 389)
    try:
        sock = socket.create_connection((host, port), timeout=c.network_timeout_seconds)
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    with sock:
        if not (ldaps or c.start_tls):
            return libldap_says
        try:
            if not ldaps:
                _start_tls_by_hand(sock)
            context = ssl.create_default_context(cafile=c.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            with context.wrap_socket(sock, server_hostname=host):
                pass
        except ssl.SSLCertVerificationError as exc:
            return f"TLS certificate rejected: {exc.verify_message} (ca_file {c.ca_file!r})"
        except (ssl.SSLError, OSError, ValueError) as exc:
            return f"TLS handshake failed: {exc}"
    return f"TLS or LDAP failure ({libldap_says})"


# StartTLS extended request (RFC 4511 §4.14.1), message id 1
_START_TLS = (b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + b"1.3.6.1.4.1.1466.20037")


def _start_tls_by_hand(sock: socket.socket) -> None:
    """Send StartTLS and check its result code, so the handshake can be tried with the stdlib."""
    sock.sendall(_START_TLS)
    data = b""
    while True:
        try:
            _, message, _ = _ber(data, 0)  # LDAPMessage
            break
        except IndexError:
            chunk = sock.recv(4096)
            if not chunk or len(data) > 65536:
                raise ValueError("no answer to StartTLS") from None
            data += chunk
    _, _, after_id = _ber(message, 0)  # messageID
    tag, response, _ = _ber(message, after_id)
    if tag != 0x78:  # extendedResp [APPLICATION 24]
        raise ValueError(f"unexpected answer to StartTLS (tag {tag:#x})")
    _, code, _ = _ber(response, 0)  # resultCode
    if code != b"\x00":
        raise ValueError(f"the server refused StartTLS (LDAP result {int.from_bytes(code, 'big')})")


def _ber(data: bytes, i: int) -> tuple[int, bytes, int]:
    """(tag, contents, end offset) of the BER element at `i`; IndexError if incomplete."""
    tag, first = data[i], data[i + 1]
    i += 2
    if first & 0x80:
        count = first & 0x7F
        if len(data) < i + count:
            raise IndexError("incomplete length")
        length = int.from_bytes(data[i:i + count], "big")
        i += count
    else:
        length = first
    if len(data) < i + length:
        raise IndexError("incomplete element")
    return tag, data[i:i + length], i + length


def _entries(data: Any) -> list[Entry]:
    """Search results as (dn, {lower-case attribute: str values}); references (dn None) dropped."""
    out: list[Entry] = []
    for dn, attrs in data or ():
        if not dn or not isinstance(attrs, dict):
            continue
        out.append((dn, {name.lower(): tuple(v.decode("utf-8", "replace") for v in values)
                         for name, values in attrs.items()}))
    return out


def _ppolicy_error(controls: Any) -> int | None:
    """The password policy response control's error code, from decoded controls or the raw
    tuples an exception carries."""
    if not controls:
        return None
    try:
        if isinstance(controls[0], tuple):
            controls = DecodeControlTuples(
                controls, {PasswordPolicyControl.controlType: PasswordPolicyControl})
    except Exception:  # noqa: BLE001 (pyasn1 raises many kinds) a malformed control: the bind result stands
        return None
    for ctl in controls:
        if isinstance(ctl, PasswordPolicyControl) and ctl.error is not None:
            return int(ctl.error)
    return None


def _describe(exc: BaseException) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else None
    if info is None:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    parts = [str(info.get("desc", type(exc).__name__))]
    if info.get("info"):
        parts.append(str(info["info"]))
    return ": ".join(parts)[:300]


def _errno(exc: BaseException) -> int | None:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    value = info.get("errno")
    return value if isinstance(value, int) else None


def _close(conn: SimpleLDAPObject) -> None:
    with contextlib.suppress(ldap.LDAPError):  # already gone: nothing to release
        conn.unbind_ext_s()
