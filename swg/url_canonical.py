"""Canonical http(s) URLs (RFC 3986 section 6): one spelling for URLs that mean the same, so a
list of URLs can be matched with a dict lookup.

Owns the rules: scheme and host lower case (the host IDNA, no trailing dot, an IP literal in its
canonical form, as `swg.urlcategories.normalise_host` gives it), the default port, user info and
fragment dropped, percent escapes of unreserved characters decoded and the others upper case,
non-ASCII characters escaped as UTF-8 (as browsers send them), dot segments removed, an empty
path `/`, an empty query dropped; the query is otherwise kept as written (its order may mean
something to the server). It must not fetch anything nor match lists.
"""

from __future__ import annotations

import re

from swg.urlcategories import CategoryListError, normalise_host
from ztcore.errors import ZTError

MAX_URL_CHARS = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://").match
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]").search
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class UrlError(ZTError):
    """Not an absolute http(s) URL; the message says what is wrong."""


class UrlSchemeError(UrlError):
    """An absolute URL, but its scheme is not http or https (ftp://, ...)."""


def canonical_url(text: str) -> str:
    """`scheme://host[:port]/path[?query]` in canonical form, or UrlError."""
    if len(text) > MAX_URL_CHARS:
        raise UrlError(f"URL longer than {MAX_URL_CHARS} characters")
    if _SPACE_OR_CONTROL(text):
        raise UrlError("a URL may not contain spaces or control characters")
    scheme_match = _SCHEME(text)
    if scheme_match is None:
        raise UrlError("a URL needs a scheme (http:// or https://)")
    scheme = scheme_match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlSchemeError(f"scheme {scheme[:20]!r} is not http or https")
    rest = text[scheme_match.end():].split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut].rpartition("@")[2], rest[cut:]
    host, port = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        after = authority[end + 1:]
        if end < 0 or (after and not after.startswith(":")):
            raise UrlError("bad IPv6 literal in the URL")
        host, port = authority[:end + 1], after[1:]
    elif ":" in authority:
        host, _, port = authority.partition(":")
    if port and (not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536):
        raise UrlError(f"bad port {port[:10]!r}")
    try:
        host = normalise_host(host)
    except CategoryListError as exc:
        raise UrlError(f"bad host in the URL: {exc}") from None
    if ":" in host:
        host = f"[{host}]"
    if port and int(port) != DEFAULT_PORTS[scheme]:
        host = f"{host}:{int(port)}"
    path, _, query = target.partition("?")
    path = remove_dot_segments(_escapes(path) or "/")
    query = _escapes(query)
    return f"{scheme}://{host}{path}{'?' + query if query else ''}"


def _escapes(part: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    if "%" in part:
        # A '%' that starts no escape is itself escaped first, so that decoding a neighbour
        # cannot make a new escape of it (`%a%41` → `%25aA`, not `%aA`, which reads as `%AA`).
        part = _PERCENT.sub(one, _LONE_PERCENT.sub("%25", part))
    if part.isascii():
        return part
    return "".join(c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                   for c in part)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on an absolute path: `/a/./b/../c` is `/a/c`."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        if segment in (".", ".."):
            if segment == ".." and out:
                out.pop()
            if i == len(segments) - 1:
                out.append("")   # `/a/b/..` is the folder `/a/`
        else:
            out.append(segment)
    return "/" + "/".join(out)
