"""The OpenID Connect relying party's configuration, pure: `OidcProviderConfig` and its parser.

Owns what a valid provider entry is (exact issuer, client, the one redirect URI, scopes, how
claims become a user name, groups and MFA, the ID-token algorithms we accept, clock leeway) and
the URL rules: the provider's URLs (here and in its metadata, checked in `oidc`) are https
only, plain http only for a loopback host (a test provider, or the agent's loopback callback,
RFC 8252 §7.3), and `safe_return_to`, the open-redirect guard for where the user goes after
login. A bad value fails loudly with the path of the field (`identity.oidc[1].issuer: ...`).

It must not fetch anything (discovery is the shell's) or read the environment.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from ztcore.errors import ConfigError

__all__ = [
    "ASYMMETRIC_ALGORITHMS", "DEFAULT_ALGORITHMS", "DEFAULT_MFA_AMR", "OidcProviderConfig",
    "parse_oidc_config", "safe_return_to", "url_problem",
]

# RFC 8176 `amr` values that mean a second factor (or a phishing-resistant first one) was used.
DEFAULT_MFA_AMR: Final = frozenset({"mfa", "otp", "hwk", "swk", "fpt", "face", "sc"})
DEFAULT_ALGORITHMS: Final = ("RS256", "ES256", "PS256", "EdDSA")
# Only signatures by the provider's private key. HS* would be "signed" with the client secret,
# which the client holds too (and a public client has none); "none" is not signed at all.
ASYMMETRIC_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                          "ES256", "ES384", "ES512", "EdDSA"})
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none")
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_URL_CHARS: Final = 2048
MAX_RETURN_TO_CHARS: Final = 2048
MAX_LEEWAY_SECONDS: Final = 600
MAX_AUTH_AGE_SECONDS: Final = 30 * 24 * 3600
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")   # RFC 6749 §3.3
_CLAIM_NAME: Final = re.compile(r"[\x21-\x7e]{1,256}")


def url_problem(value: object, *, query: bool = True) -> str | None:
    """Why `value` is not an absolute https:// URL (or http:// to a loopback host), or None.
    Never userinfo or a fragment; no query either when `query` is False (an issuer)."""
    if not isinstance(value, str) or not value:
        return f"expected a URL, got {value!r}"
    if len(value) > MAX_URL_CHARS:
        return f"longer than {MAX_URL_CHARS} characters"
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        return "contains a space or a control character"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    host = (parts.hostname or "").lower()
    if parts.scheme == "http":
        if host not in LOOPBACK_HOSTS:
            return "must be https:// (http only for 127.0.0.1/localhost)"
    elif parts.scheme != "https":
        return "must be https:// (http only for 127.0.0.1/localhost)"
    if not host or port == 0:
        return "expected scheme://host[:port]/path"
    if "@" in parts.netloc:
        return "must not carry a user name or password"
    if parts.fragment or value.endswith("#"):
        return "must not have a #fragment"
    if not query and (parts.query or "?" in value):
        return "must not have a ?query"
    return None


# -- the open-redirect guard ---------------------------------------------------------------------

def _unsafe_path(path: str, *, decoded: bool) -> bool:
    if not path.startswith("/") or "\\" in path or "//" in path:
        return True
    if any(segment in (".", "..") for segment in path.split("/")):
        return True
    if decoded:   # after one decoding: no controls, no bidi or format characters
        return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs", "Cs") for ch in path)
    return False


def safe_return_to(value: str | None) -> str | None:
    """The local path to return to after login, or None when `value` is refused.

    Nothing given (None or "") is "/". Accepted: an absolute path on this site, "/…", with an
    optional query and fragment, in printable ASCII (browsers percent-encode everything else),
    at most 2048 characters. Refused: anything with a scheme ("https://evil.example/",
    "javascript:alert(1)", "http:/evil"), a scheme-relative "//evil.example", any backslash
    ("/\\evil.example": browsers read it as "/"), spaces and controls (browsers drop tabs and
    newlines, so "/\\t/evil" would become "//evil"), "//" and "."/".." segments anywhere in the
    path, and a path that becomes one of those when percent-decoded once (or then NFKC-folded,
    as some servers do: "%EF%BC%8F" is a full-width "／"): "/%2F%2Fevil.example" is refused,
    because a framework or a second redirect that decodes it sends the user to //evil.example.
    Encoded non-ASCII text ("/%E7%A8%8E/list") and an encoded slash inside a segment ("/a%2Fb")
    are accepted.
    """
    if value is None or value == "":
        return "/"
    if not isinstance(value, str) or len(value) > MAX_RETURN_TO_CHARS:
        return None
    if not all("\x21" <= ch <= "\x7e" for ch in value):
        return None
    path = re.split(r"[?#]", value, maxsplit=1)[0]
    if _unsafe_path(path, decoded=False):
        return None
    decoded = unquote(path, errors="replace")
    if any(_unsafe_path(form, decoded=True) for form in (decoded, unicodedata.normalize("NFKC", decoded))):
        return None
    return value


def _text(value: object, *, max_chars: int = 256) -> bool:
    return (isinstance(value, str) and bool(value.strip()) and len(value) <= max_chars
            and not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value))


@dataclass(frozen=True, slots=True)
class OidcProviderConfig:
    """One OpenID Provider (Entra ID, Google, Keycloak, ...) and how its logins become users.

    `issuer` is compared exactly (no trailing-slash or case folding: OIDC Discovery §4.3).
    `client_secret` None makes a public client (`token_endpoint_auth_method` "none"), as the
    agent's loopback login is; PKCE (S256) is used either way. `username_claim` falls back to
    `email` (when not `email_verified: false`), then `sub`. Group values are renamed by
    `group_map`; unmapped ones are kept unless `map_groups_only`. The login counts as MFA when
    `amr` has a value in `mfa_amr` or `acr` is in `mfa_acr`; `require_mfa` refuses others.
    `acr_values` and `max_auth_age_seconds` are sent in the request (`acr_values`, `max_age`)
    and the latter is also checked on the token's `auth_time`. An ID token with several
    audiences is accepted only if the others are in `trusted_audiences` (OIDC Core §3.1.3.7).
    `ca_file` verifies the provider's TLS certificates instead of the system store.
    """

    name: str
    issuer: str
    client_id: str
    client_secret: str | None = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    group_map: Mapping[str, str] = field(default_factory=dict)
    map_groups_only: bool = False
    mfa_amr: frozenset[str] = DEFAULT_MFA_AMR
    mfa_acr: frozenset[str] = frozenset()
    require_mfa: bool = False
    acr_values: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_seconds: int = 60
    max_auth_age_seconds: int | None = None
    token_endpoint_auth_method: str = ""   # "" → client_secret_basic, or none without a secret
    trusted_audiences: frozenset[str] = frozenset()
    ca_file: str | None = None

    def __post_init__(self) -> None:
        _normalise(self)
        _validate(self)


def _fail(name: str, message: str) -> ConfigError:
    return ConfigError(f"oidc.{name}: {message}")


def _strings(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence | frozenset | set):
        raise _fail(name, f"expected a list of strings, got {value!r}")
    items = tuple(value)
    for i, item in enumerate(items):
        if not _text(item):
            raise _fail(f"{name}[{i}]", f"expected a non-empty string, got {item!r}")
    return items


def _normalise(c: OidcProviderConfig) -> None:
    set_ = object.__setattr__   # frozen: convert lists to tuples and sets once, here
    set_(c, "scopes", tuple(dict.fromkeys(_strings("scopes", c.scopes))))
    set_(c, "algorithms", tuple(dict.fromkeys(_strings("algorithms", c.algorithms))))
    set_(c, "acr_values", _strings("acr_values", c.acr_values))
    for name in ("mfa_amr", "mfa_acr", "trusted_audiences"):
        set_(c, name, frozenset(_strings(name, getattr(c, name))))
    if not isinstance(c.group_map, Mapping):
        raise _fail("group_map", f"expected a table of IdP group → group name, got {c.group_map!r}")
    for key, value in c.group_map.items():
        if not _text(key, max_chars=1024) or not _text(value, max_chars=1024):
            raise _fail(f"group_map[{key!r}]", f"expected a non-empty group name, got {value!r}")
    set_(c, "group_map", MappingProxyType(dict(c.group_map)))
    method = c.token_endpoint_auth_method
    if method == "":
        set_(c, "token_endpoint_auth_method", "none" if c.client_secret is None else "client_secret_basic")


def _validate(c: OidcProviderConfig) -> None:
    if not isinstance(c.name, str) or not _NAME.fullmatch(c.name):
        raise _fail("name", f"expected 1 to 63 characters of a-z, 0-9, '-' and '_', got {c.name!r}")
    problem = url_problem(c.issuer, query=False)
    if problem:
        raise _fail("issuer", problem)
    if not _text(c.client_id):
        raise _fail("client_id", f"expected the client id the provider issued, got {c.client_id!r}")
    if c.client_secret is not None and not _text(c.client_secret, max_chars=4096):
        raise _fail("client_secret", "expected a non-empty secret, or nothing for a public client")
    problem = url_problem(c.redirect_uri)
    if problem:
        raise _fail("redirect_uri", problem)
    for i, scope in enumerate(c.scopes):
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise _fail(f"scopes[{i}]", f"{scope!r} is not a scope token (RFC 6749 §3.3)")
    if "openid" not in c.scopes:
        raise _fail("scopes", "must include 'openid'")
    for name in ("username_claim", "groups_claim"):
        if not isinstance(getattr(c, name), str) or not _CLAIM_NAME.fullmatch(getattr(c, name)):
            raise _fail(name, f"expected a claim name, got {getattr(c, name)!r}")
    for name in ("map_groups_only", "require_mfa"):
        if not isinstance(getattr(c, name), bool):
            raise _fail(name, f"expected true or false, got {getattr(c, name)!r}")
    if c.require_mfa and not (c.mfa_amr or c.mfa_acr):
        raise _fail("require_mfa", "needs mfa_amr or mfa_acr values to recognise MFA by")
    if not c.algorithms:
        raise _fail("algorithms", "expected at least one of " + ", ".join(sorted(ASYMMETRIC_ALGORITHMS)))
    for i, alg in enumerate(c.algorithms):
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            raise _fail(f"algorithms[{i}]", f"{alg!r} is refused: only the provider's own signature "
                                            "counts (not unsigned, not the shared client secret)")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise _fail(f"algorithms[{i}]", f"unknown algorithm {alg!r}; expected one of "
                                            + ", ".join(sorted(ASYMMETRIC_ALGORITHMS)))
    leeway = c.leeway_seconds
    if isinstance(leeway, bool) or not isinstance(leeway, int) or not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise _fail("leeway_seconds",
                    f"expected whole seconds from 0 to {MAX_LEEWAY_SECONDS}, got {leeway!r}")
    age = c.max_auth_age_seconds
    if age is not None and (isinstance(age, bool) or not isinstance(age, int | float)
                            or not math.isfinite(age) or not 0 < age <= MAX_AUTH_AGE_SECONDS):
        raise _fail("max_auth_age_seconds",
                    f"expected seconds, more than 0 and at most {MAX_AUTH_AGE_SECONDS}, got {age!r}")
    method = c.token_endpoint_auth_method
    if method not in AUTH_METHODS:
        raise _fail("token_endpoint_auth_method",
                    f"expected one of {', '.join(AUTH_METHODS)}, got {method!r}")
    if (method == "none") != (c.client_secret is None):
        raise _fail("token_endpoint_auth_method",
                    "'none' is for a public client, which has no client_secret" if method == "none"
                    else f"{method!r} needs a client_secret")
    if c.ca_file is not None and (not _text(c.ca_file, max_chars=4096)):
        raise _fail("ca_file", f"expected a file path, got {c.ca_file!r}")


def parse_oidc_config(raw: Mapping[str, Any], path: str = "oidc") -> OidcProviderConfig:
    """An OidcProviderConfig from a parsed TOML/JSON table; errors name `path.field`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a table, got {type(raw).__name__}")
    known = {f.name for f in fields(OidcProviderConfig)}
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown setting")
    for required in ("name", "issuer", "client_id", "redirect_uri"):
        if required not in raw:
            raise ConfigError(f"{path}.{required}: missing")
    values = dict(raw)
    values.setdefault("client_secret", None)
    try:
        return OidcProviderConfig(**values)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith("oidc.") and path != "oidc":
            message = path + message[len("oidc"):]
        raise ConfigError(message) from None
