"""The directory login core (LDAP / Active Directory), pure.

Owns every decision of a password login against a directory: the validated `DirectoryConfig`,
what is refused before the directory is contacted (`precheck`), the search filter built from a
typed user name, whether the identity the directory reports after the bind is the user's
(`confirm_identity`), bind failures and account state as reasons (`bind_failure`,
`account_state`), whether the groups are complete enough to decide on, and the result values
`DirectoryUser` and `AuthOutcome`. The python-ldap shell (`runtime/ldap_directory.py`) does the
network and calls these. Nothing here opens a socket, reads a file or a clock, or imports ldap.

Escaping is in `ldap_syntax`, account state in `account_state`, the group walk in `groups`; the
names a caller needs are re-exported here.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from idp_bridge.account_state import (
    AD_STATE_ATTRIBUTES,
    GENERIC_STATE_ATTRIBUTES,
    Attributes,
    Verdict,
    ad_account_state,
    ad_bind_failure,
    generic_account_state,
    ppolicy_verdict,
)
from idp_bridge.groups import Group, GroupResolution, GroupWalk, in_chain_filter
from idp_bridge.ldap_syntax import (
    LdapSyntaxError,
    dn_equal,
    escape_dn_value,
    escape_filter_value,
    parse_dn,
    parse_filter,
)
from ztcore.decision import Decision, allow, deny
from ztcore.errors import ConfigError, LocalProtocolError
from ztcore.reasons import Reason

__all__ = [
    "AuthOutcome", "DirectoryConfig", "DirectoryKind", "DirectoryUser", "Group",
    "GroupResolution", "GroupWalk", "Verdict", "account_state", "bind_failure",
    "confirm_identity", "directory_user", "escape_dn_value", "escape_filter_value",
    "groups_verdict", "in_chain_filter", "parse_directory_config", "precheck",
    "state_attributes", "user_attributes", "user_search_filter",
]

MAX_USERNAME_CHARS = 256
MAX_PASSWORD_CHARS = 1024
MAX_TIMEOUT_SECONDS = 120.0
USERNAME_PLACEHOLDER = "{username}"


class DirectoryKind(str, Enum):
    AD = "ad"
    GENERIC = "generic"


# Defaults that depend on the kind of directory; an empty string in the config means "this".
_KIND_DEFAULTS: dict[DirectoryKind, dict[str, str]] = {
    DirectoryKind.AD: {
        # Staff type their logon name (tanaka), their UPN (tanaka@city.example.lg.jp) or the
        # down-level form (CITY\\tanaka, reduced to tanaka by `account_name`).
        "user_filter": "(&(objectCategory=person)(objectClass=user)"
                       "(|(sAMAccountName={username})(userPrincipalName={username})))",
        "username_attribute": "sAMAccountName",
        "group_filter": "(objectClass=group)",
        "nested_groups": "in-chain",
    },
    DirectoryKind.GENERIC: {
        "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "username_attribute": "uid",
        "group_filter": "(|(objectClass=groupOfNames)(objectClass=group))",
        "nested_groups": "walk",
    },
}
_ATTRIBUTE_NAME = r"[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+"


@dataclass(frozen=True, slots=True)
class DirectoryConfig:
    """One directory (an AD domain, or an OpenLDAP/389-DS tree) and how to log users in with it.

    `servers` are tried in order (failover); each is `ldaps://host[:port]` or `ldap://host[:port]`
    with `start_tls`. Plain LDAP without StartTLS sends passwords in the clear and is refused
    unless `allow_cleartext` (a lab, or a loopback hop to a local proxy). Certificates are always
    verified, against `ca_file` when given, else the system's trust store; use the name in the
    certificate (libldap checks the URL's host against it; `localhost` is checked as the
    machine's own host name). The service account (`bind_dn`, `bind_password`) finds users;
    AD also takes a UPN or `DOMAIN\\user` there.

    Settings left empty get the kind's default (filter, attributes, group strategy) and
    `group_base_dn` gets `base_dn`, once, when the value is built: build a changed config from
    the raw settings again (`parse_directory_config`) rather than `dataclasses.replace` of
    `kind` or `base_dn`.
    """

    servers: tuple[str, ...]
    base_dn: str
    bind_dn: str
    bind_password: str = field(repr=False)
    kind: DirectoryKind = DirectoryKind.AD
    start_tls: bool = False
    ca_file: str | None = None
    allow_cleartext: bool = False
    user_filter: str = ""
    username_attribute: str = ""
    display_name_attribute: str = "displayName"
    email_attribute: str = "mail"
    group_base_dn: str = ""
    group_filter: str = ""
    group_member_attribute: str = "member"
    group_name_attribute: str = "cn"
    nested_groups: str = ""  # "in-chain" (AD's matching rule) or "walk"
    max_group_depth: int = 16
    max_groups: int = 1000
    network_timeout_seconds: float = 3.0
    operation_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: fill the kind's defaults once, here
        try:
            set_(self, "kind", DirectoryKind(self.kind))
        except ValueError:
            raise ConfigError(f"directory.kind: expected 'ad' or 'generic', got {self.kind!r}") from None
        if isinstance(self.servers, str) or not isinstance(self.servers, Sequence):
            raise ConfigError("directory.servers: expected a list of ldap:// or ldaps:// URLs")
        set_(self, "servers", tuple(self.servers))
        for name, default in _KIND_DEFAULTS[self.kind].items():
            if getattr(self, name) == "":
                set_(self, name, default)
        if self.group_base_dn == "":
            set_(self, "group_base_dn", self.base_dn)
        _validate(self)


def _fail(name: str, message: str) -> ConfigError:
    return ConfigError(f"directory.{name}: {message}")


def _validate(c: DirectoryConfig) -> None:
    if not c.servers:
        raise _fail("servers", "expected at least one ldap:// or ldaps:// URL")
    for i, url in enumerate(c.servers):
        _check_server(c, i, url)
    for name in ("start_tls", "allow_cleartext"):
        if not isinstance(getattr(c, name), bool):
            raise _fail(name, f"expected true or false, got {getattr(c, name)!r}")
    if c.ca_file is not None and (not isinstance(c.ca_file, str) or not c.ca_file.strip()
                                  or "\x00" in c.ca_file):
        raise _fail("ca_file", f"expected a file path, got {c.ca_file!r}")
    for name in ("base_dn", "group_base_dn"):
        value = getattr(c, name)
        if not isinstance(value, str) or not value.strip():
            raise _fail(name, "expected a DN such as 'dc=city,dc=example,dc=lg,dc=jp'")
        try:
            parse_dn(value)
        except LdapSyntaxError as exc:
            raise _fail(name, f"not a DN: {exc}") from None
    if not isinstance(c.bind_dn, str) or not c.bind_dn.strip() or "\x00" in c.bind_dn:
        raise _fail("bind_dn", "expected the service account's DN (or, for AD, its UPN)")
    if not isinstance(c.bind_password, str) or not c.bind_password.strip():
        # RFC 4513 §5.1.2: a simple bind with a name and an empty password is an
        # unauthenticated bind, which many servers (AD among them) answer with success.
        raise _fail("bind_password", "must not be empty (an empty password binds anonymously)")
    if not isinstance(c.user_filter, str) or USERNAME_PLACEHOLDER not in c.user_filter:
        raise _fail("user_filter", f"must contain {USERNAME_PLACEHOLDER}, e.g. "
                                   f"{_KIND_DEFAULTS[c.kind]['user_filter']!r}")
    for name, text in (("user_filter", c.user_filter.replace(USERNAME_PLACEHOLDER, "x")),
                       ("group_filter", c.group_filter)):
        try:
            parse_filter(text)
        except (LdapSyntaxError, TypeError) as exc:
            raise _fail(name, f"not an LDAP filter: {exc}") from None
    for name in ("username_attribute", "display_name_attribute", "email_attribute",
                 "group_member_attribute", "group_name_attribute"):
        value = getattr(c, name)
        if not isinstance(value, str) or not re.fullmatch(_ATTRIBUTE_NAME, value):
            raise _fail(name, f"expected an attribute name, got {value!r}")
    if c.nested_groups not in ("in-chain", "walk"):
        raise _fail("nested_groups", f"expected 'in-chain' or 'walk', got {c.nested_groups!r}")
    for name, low, high in (("max_group_depth", 1, 64), ("max_groups", 1, 100_000)):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(name, f"expected a whole number from {low} to {high}, got {value!r}")
    for name in ("network_timeout_seconds", "operation_timeout_seconds"):
        value = getattr(c, name)
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_SECONDS):
            raise _fail(name, f"expected seconds, more than 0 and at most {MAX_TIMEOUT_SECONDS:g}, "
                              f"got {value!r}")


def _check_server(c: DirectoryConfig, i: int, url: object) -> None:
    name = f"servers[{i}]"
    if not isinstance(url, str) or any(ch.isspace() for ch in url):
        raise _fail(name, f"expected one ldap:// or ldaps:// URL, got {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps"):
        raise _fail(name, f"{url!r}: the scheme must be ldap:// or ldaps://")
    try:
        port = parts.port
    except ValueError:
        raise _fail(name, f"{url!r}: bad port") from None
    if not parts.hostname or port == 0:
        raise _fail(name, f"{url!r}: expected ldap[s]://host[:port]")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _fail(name, f"{url!r}: only ldap[s]://host[:port]; base DN and filter are settings")
    if scheme == "ldap" and not c.start_tls and not c.allow_cleartext:
        raise _fail(name, f"{url!r} would send passwords in the clear: use ldaps://, set "
                          "start_tls, or (on a trusted network only) allow_cleartext")


def parse_directory_config(raw: Mapping[str, Any], path: str = "directory") -> DirectoryConfig:
    """A DirectoryConfig from a parsed TOML/JSON table; errors name `path.field`."""
    known = {f.name for f in fields(DirectoryConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown setting")
    for required in ("servers", "base_dn", "bind_dn", "bind_password"):
        if required not in raw:
            raise ConfigError(f"{path}.{required}: missing")
    try:
        return DirectoryConfig(**raw)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith("directory.") and path != "directory":
            message = path + message[len("directory"):]
        raise ConfigError(message) from None


# -- before the directory is contacted ---------------------------------------------------------------

def precheck(username: str, password: str) -> AuthOutcome | None:
    """Refuse what must never reach the directory, else None.

    An empty or whitespace-only password (including U+3000, the full-width space a Japanese IME
    types) is refused here: sent as a simple bind it would be an unauthenticated bind (RFC 4513
    §5.1.2), which AD answers with success.
    """
    if not isinstance(username, str) or not username.strip():
        return AuthOutcome.deny(Reason.USERNAME_INVALID, "empty user name")
    if len(username) > MAX_USERNAME_CHARS:
        return AuthOutcome.deny(Reason.USERNAME_INVALID,
                                f"user name longer than {MAX_USERNAME_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in username):
        return AuthOutcome.deny(Reason.USERNAME_INVALID, "control character in the user name")
    if not isinstance(password, str) or not password.strip():
        return AuthOutcome.deny(Reason.PASSWORD_EMPTY,
                                "empty or whitespace-only password (refused before any bind)")
    if len(password) > MAX_PASSWORD_CHARS or any(unicodedata.category(ch) == "Cs" for ch in password):
        return AuthOutcome.deny(Reason.CREDENTIALS_INVALID,
                                "password too long or not encodable (refused before any bind)")
    return None


_NETBIOS_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,14}")


def account_name(config: DirectoryConfig, username: str) -> str:
    """What to look up for a typed user name: for AD, `DOMAIN\\name` (the down-level logon name
    Windows shows) becomes `name`. The password is still checked against this directory's
    account, so a wrong domain prefix gains nothing."""
    if config.kind is DirectoryKind.AD:
        domain, sep, name = username.partition("\\")
        if sep and name and _NETBIOS_DOMAIN.fullmatch(domain):
            return name
    return username


def user_search_filter(config: DirectoryConfig, username: str) -> str:
    """The configured filter with the user name escaped into it (RFC 4515)."""
    return config.user_filter.replace(USERNAME_PLACEHOLDER,
                                      escape_filter_value(account_name(config, username)))


def user_attributes(config: DirectoryConfig) -> tuple[str, ...]:
    """What the user search reads: identity, and the state needed to explain a refused bind."""
    names = [config.username_attribute, config.display_name_attribute, "cn",
             config.email_attribute]
    names += list(GENERIC_STATE_ATTRIBUTES if config.kind is DirectoryKind.GENERIC
                  else ("userAccountControl", "pwdLastSet", "accountExpires"))
    return tuple(dict.fromkeys(names))


def state_attributes(config: DirectoryConfig) -> tuple[str, ...]:
    """What is read again, base scope, after the bind (AD's computed flags only come that way)."""
    return AD_STATE_ATTRIBUTES if config.kind is DirectoryKind.AD else GENERIC_STATE_ATTRIBUTES


# -- after the directory answered -----------------------------------------------------------------

def confirm_identity(config: DirectoryConfig, authzid: str | None, user_dn: str,
                     account_name: str | None) -> Verdict | None:
    """Whether the WhoAmI answer (RFC 4532) names the user we bound as; None when it does.

    `authzid` None means the server has no WhoAmI (Samba AD): accepted for AD only, where the
    bind itself was to the user's DN with a non-empty password; a generic directory must
    confirm. `dn:` answers compare as DNs; AD answers `u:DOMAIN\\sAMAccountName`.
    """
    if authzid is None:
        if config.kind is DirectoryKind.AD:
            return None
        return Verdict(Reason.BIND_IDENTITY_MISMATCH, "the server does not support WhoAmI")
    if authzid == "":
        return Verdict(Reason.BIND_IDENTITY_MISMATCH,
                       "the directory reports an anonymous session after the bind")
    if authzid[:3].lower() == "dn:":
        if dn_equal(authzid[3:], user_dn):
            return None
    elif authzid[:2].lower() == "u:" and config.kind is DirectoryKind.AD and account_name:
        name = authzid[2:].rsplit("\\", 1)[-1]
        if name.casefold() == account_name.casefold():
            return None
    return Verdict(Reason.BIND_IDENTITY_MISMATCH,
                   f"bound as {authzid[:200]!r}, expected {user_dn[:200]!r}")


def bind_failure(config: DirectoryConfig, diagnostic: str, ppolicy_error: int | None,
                 attrs: Attributes) -> Verdict:
    """Why the user's bind was refused with invalidCredentials (LDAP result 49)."""
    if config.kind is DirectoryKind.AD:
        return ad_bind_failure(diagnostic)
    verdict = ppolicy_verdict(ppolicy_error, attrs)
    if verdict is not None:
        return verdict
    return Verdict(Reason.CREDENTIALS_INVALID,
                   "bind refused: invalid credentials" + (f" ({diagnostic[:200]})" if diagnostic else ""))


def account_state(config: DirectoryConfig, attrs: Attributes, now: float,
                  ppolicy_error: int | None = None) -> Verdict | None:
    """Whether an account that has just bound may log in; None when it may."""
    verdict = ppolicy_verdict(ppolicy_error, attrs)  # e.g. changeAfterReset on a good bind
    if verdict is not None:
        return verdict
    if config.kind is DirectoryKind.AD:
        return ad_account_state(attrs, now)
    return generic_account_state(attrs, now)


def groups_verdict(resolution: GroupResolution) -> Verdict | None:
    """Fail closed on incomplete groups: a deny rule may name one that was not reached."""
    if resolution.complete:
        return None
    return Verdict(Reason.GROUPS_INCOMPLETE, resolution.detail or "group resolution stopped")


def _first(attrs: Attributes, name: str) -> str | None:
    values = attrs.get(name.lower())
    return values[0] if values else None


# -- results --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """Who logged in, as the directory knows them. `username` is the directory's spelling
    (`alice` for a typed `ALICE`); `groups` are group names (`cn`), nested ones included."""

    dn: str
    username: str
    display_name: str
    email: str | None
    groups: tuple[str, ...]
    group_resolution: GroupResolution
    server: str = ""


def directory_user(config: DirectoryConfig, dn: str, attrs: Attributes, typed_username: str,
                   resolution: GroupResolution, server: str = "") -> DirectoryUser:
    username = _first(attrs, config.username_attribute) or typed_username
    display = (_first(attrs, config.display_name_attribute) or _first(attrs, "cn") or username)
    return DirectoryUser(dn=dn, username=username, display_name=display,
                         email=_first(attrs, config.email_attribute),
                         groups=resolution.names, group_resolution=resolution, server=server)


_STATUS = {
    Reason.DIRECTORY_UNAVAILABLE: 503, Reason.INTERNAL_ERROR: 503,
    Reason.USERNAME_INVALID: 401, Reason.PASSWORD_EMPTY: 401, Reason.CREDENTIALS_INVALID: 401,
    Reason.USER_NOT_FOUND: 401, Reason.BIND_IDENTITY_MISMATCH: 401,
}


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """The result of one password login: `user` when it succeeded, else the deny reason and a
    detail for the audit log (never the password). `server` is the URL that answered."""

    reason: Reason
    user: DirectoryUser | None = None
    detail: str = ""
    server: str = ""

    def __post_init__(self) -> None:
        if (self.reason is Reason.DIRECTORY_LOGIN_OK) != (self.user is not None):
            raise LocalProtocolError("an AuthOutcome has a user exactly when it is a success")

    @classmethod
    def success(cls, user: DirectoryUser, server: str = "") -> AuthOutcome:
        return cls(Reason.DIRECTORY_LOGIN_OK, user, server=server)

    @classmethod
    def deny(cls, reason: Reason, detail: str = "", server: str = "") -> AuthOutcome:
        return cls(reason, None, detail, server)

    @classmethod
    def from_verdict(cls, verdict: Verdict, server: str = "") -> AuthOutcome:
        return cls(verdict.reason, None, verdict.detail, server)

    @property
    def ok(self) -> bool:
        return self.user is not None

    @property
    def client_reason(self) -> Reason:
        """The reason to show the person logging in: an unknown user looks like a wrong
        password, so the login form does not tell which accounts exist. The audit log keeps
        `reason`."""
        return Reason.CREDENTIALS_INVALID if self.reason is Reason.USER_NOT_FOUND else self.reason

    def decision(self) -> Decision:
        if self.ok:
            return allow(self.reason)
        return deny(self.reason, status=_STATUS.get(self.reason, 403), detail=self.detail)
