"""LDAP string syntax, pure: escaping filter values (RFC 4515) and DN values (RFC 4514), parsing
and comparing DNs, and a small filter parser that checks a configured filter template.

Owns: every place where a value from outside (a typed user name, a DN read from the directory)
becomes part of an LDAP filter or DN. It must not import python-ldap or do I/O: the cores that
build filters use it, and it is tested (and fuzzed) without a directory or libldap.

Why our own escaping rather than `ldap.filter.escape_filter_chars` / `ldap.dn.escape_dn_chars`:
the filters are built in the pure core, which may not import python-ldap (a C extension that
needs libldap); and python-ldap's DN escaping writes NUL as a backslash followed by a raw NUL,
where RFC 4514 requires `\\00`. The unit tests check ours against python-ldap where both must
agree, and against python-ldap's DN parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ztcore.errors import ZTError


class LdapSyntaxError(ZTError):
    """A DN or filter is not well formed (the message says where)."""


# -- filters (RFC 4515) -----------------------------------------------------------------------------

# RFC 4515 §3: in an assertion value, '*', '(', ')', '\' and NUL must be written as '\' + two hex
# digits. Everything else (UTF-8 included) may stay as it is.
_FILTER_ESCAPES = {"\\": "\\5c", "*": "\\2a", "(": "\\28", ")": "\\29", "\x00": "\\00"}


def escape_filter_value(value: str) -> str:
    """`value` as an RFC 4515 assertion value: it can match only itself, never a wildcard, and
    cannot close or open a filter component."""
    return "".join(_FILTER_ESCAPES.get(ch, ch) for ch in value)


def unescape_filter_value(value: str) -> str:
    """The inverse of `escape_filter_value` for any RFC 4515 value (any `\\XX` pair)."""
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            pair = value[i + 1:i + 3]
            if len(pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in pair):
                raise LdapSyntaxError(f"bad escape {value[i:i + 3]!r} at offset {i}")
            out.append(int(pair, 16))
            i += 3
        else:
            out.extend(ch.encode())
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError as exc:
        raise LdapSyntaxError(f"escaped bytes are not UTF-8: {exc}") from None


@dataclass(frozen=True, slots=True)
class FilterItem:
    """One `(attr<op>value)` component; `value` is kept escaped, as written."""

    attribute: str
    operator: str  # "=", "~=", ">=", "<=", or ":" prefix forms such as ":1.2.840.113556.1.4.1941:="
    value: str


@dataclass(frozen=True, slots=True)
class FilterSet:
    """`&` or `|` over children, or `!` over exactly one."""

    operator: str
    children: tuple[FilterItem | FilterSet, ...]


Filter = FilterItem | FilterSet

# attr, then "=" / "~=" / ">=" / "<=", or the extensible form "[attr][:dn][:rule]:=" (RFC 4515 §3)
_ITEM = re.compile(r"(?P<attr>[A-Za-z0-9][A-Za-z0-9.;-]*)?"
                   r"(?P<op>(?::dn)?(?::[A-Za-z0-9.-]+)?:=|[~<>]?=)(?P<value>.*)",
                   re.DOTALL | re.IGNORECASE)


def parse_filter(text: str) -> Filter:
    """Parse an RFC 4515 filter into a tree, or raise LdapSyntaxError. Used to check configured
    filters at load time and, in the tests, that an escaped value never changes a filter's shape."""
    node, end = _parse(text, 0)
    if end != len(text):
        raise LdapSyntaxError(f"unexpected {text[end:end + 10]!r} after the filter at offset {end}")
    return node


def _parse(text: str, i: int) -> tuple[Filter, int]:
    if i >= len(text) or text[i] != "(":
        raise LdapSyntaxError(f"expected '(' at offset {i}")
    i += 1
    if i < len(text) and text[i] in "&|!":
        op = text[i]
        i += 1
        children: list[Filter] = []
        while i < len(text) and text[i] == "(":
            child, i = _parse(text, i)
            children.append(child)
        if i >= len(text) or text[i] != ")":
            raise LdapSyntaxError(f"expected ')' at offset {i}")
        if op == "!" and len(children) != 1:
            raise LdapSyntaxError(f"'!' takes exactly one filter at offset {i}")
        if not children:
            raise LdapSyntaxError(f"empty {op!r} at offset {i}")
        return FilterSet(op, tuple(children)), i + 1
    start = i
    while i < len(text) and text[i] not in "()":
        i += 1
    if i >= len(text) or text[i] != ")":
        raise LdapSyntaxError(f"unbalanced parenthesis in {text[start - 1:i + 1]!r}")
    body = text[start:i]
    match = _ITEM.fullmatch(body)
    if match is None or not (match["attr"] or len(match["op"]) > 2):
        raise LdapSyntaxError(f"not a filter item: {body!r}")
    unescape_filter_value(match["value"].replace("*", ""))  # raises on a bad escape
    return FilterItem(match["attr"] or "", match["op"], match["value"]), i + 1


# -- DNs (RFC 4514) -------------------------------------------------------------------------------

_DN_SPECIAL = set('"+,;<>\\=')


def escape_dn_value(value: str) -> str:
    """`value` as an RFC 4514 attribute value: it stays one value of one RDN, as it is."""
    out = []
    for ch in value:
        if ch in _DN_SPECIAL:
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            # NUL must be \00 (RFC 4514 §2.4); other controls may be, and libldap would
            # otherwise trim a leading or trailing TAB, CR or LF as if it were a space
            out.append(f"\\{ord(ch):02x}")
        else:
            out.append(ch)
    if out and out[0] in (" ", "#"):
        out[0] = "\\" + out[0]
    if out and out[-1] == " ":
        out[-1] = "\\ "
    return "".join(out)


Rdn = tuple[tuple[str, str], ...]


def parse_dn(dn: str) -> tuple[Rdn, ...]:
    """Parse a DN string into RDNs of (type, value) pairs, values unescaped. Lenient about spaces
    around ',', '+' and '=' (older servers write them); raises LdapSyntaxError otherwise."""
    rdns: list[Rdn] = []
    avas: list[tuple[str, str]] = []
    i, n = 0, len(dn)
    if not dn.strip():
        return ()
    while True:
        while i < n and dn[i] == " ":
            i += 1
        start = i
        while i < n and dn[i] not in "=,+;":
            i += 1
        attr = dn[start:i].strip()
        if i >= n or dn[i] != "=" or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*|(?:oid\.)?\d+(?:\.\d+)*",
                                                       attr, re.IGNORECASE):
            raise LdapSyntaxError(f"expected 'type=value' at offset {start} of {dn!r}")
        i += 1
        while i < n and dn[i] == " ":
            i += 1
        value, i = _dn_value(dn, i)
        avas.append((attr, value))
        if i >= n:
            rdns.append(tuple(avas))
            return tuple(rdns)
        if dn[i] == "+":
            i += 1
            continue
        rdns.append(tuple(avas))
        avas = []
        i += 1  # ',' or the obsolete ';'


def _dn_value(dn: str, i: int) -> tuple[str, int]:
    n = len(dn)
    if i < n and dn[i] == "#":  # BER-encoded value: kept as written, compared as a string
        j = i + 1
        while j < n and dn[j] in "0123456789abcdefABCDEF":
            j += 1
        k = j
        while k < n and dn[k] == " ":
            k += 1
        if k < n and dn[k] not in ",+;":
            raise LdapSyntaxError(f"bad hex value at offset {i} of {dn!r}")
        return dn[i:j].lower(), k
    out = bytearray()
    trailing_spaces = 0  # unescaped spaces at the end are not part of the value (RFC 4514 §3)
    while i < n:
        ch = dn[i]
        if ch in ",+;":
            break
        if ch == "\\":
            nxt = dn[i + 1:i + 2]
            if nxt and nxt in '"+,;<>\\=# ':
                out.extend(nxt.encode())
                i += 2
            elif re.fullmatch(r"[0-9a-fA-F]{2}", dn[i + 1:i + 3]):
                out.append(int(dn[i + 1:i + 3], 16))
                i += 3
            else:
                raise LdapSyntaxError(f"bad escape at offset {i} of {dn!r}")
            trailing_spaces = 0
            continue
        if ch in '"<>' or ch == "\x00":
            raise LdapSyntaxError(f"{ch!r} must be escaped, at offset {i} of {dn!r}")
        out.extend(ch.encode())
        trailing_spaces = trailing_spaces + 1 if ch == " " else 0
        i += 1
    if trailing_spaces:
        del out[-trailing_spaces:]
    try:
        return out.decode(), i
    except UnicodeDecodeError:
        raise LdapSyntaxError(f"value is not UTF-8 in {dn!r}") from None


def _normal_type(attr: str) -> str:
    attr = attr.lower()
    return attr.removeprefix("oid.")


def _normal_value(value: str) -> str:
    # caseIgnoreMatch with insignificant-space handling, which is what uid, cn, ou, dc and AD's
    # naming attributes use: good enough to compare two DNs that came from the same directory.
    return " ".join(value.split()).casefold()


def normalize_dn(dn: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """A comparison key for `dn` (raises LdapSyntaxError)."""
    return tuple(tuple(sorted((_normal_type(t), _normal_value(v)) for t, v in rdn))
                 for rdn in parse_dn(dn))


def dn_equal(a: str, b: str) -> bool:
    """Whether two DNs name the same entry (case- and space-insensitive values); False when
    either is malformed."""
    try:
        return normalize_dn(a) == normalize_dn(b)
    except LdapSyntaxError:
        return False


def first_rdn_value(dn: str) -> str:
    """The value of the first RDN (`tax-clerks` for `cn=tax-clerks,ou=groups,…`), or the DN
    itself when it cannot be parsed."""
    try:
        rdns = parse_dn(dn)
    except LdapSyntaxError:
        return dn
    return rdns[0][0][1] if rdns else dn
