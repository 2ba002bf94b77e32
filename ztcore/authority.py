"""The `:authority` of an HTTP/2 CONNECT, parsed into a checked, canonical `Authority`.

This module owns the syntax of a destination: `host:port` or `[v6]:port`, the hostname rules
(ASCII LDH labels, lengths) and the legacy numeric IPv4 forms (`2130706433`, `0x7f.1`,
`0177.0.0.1`, `127.1`), which are decoded exactly as the WHATWG URL standard's IPv4 parser does
so that no spelling of an address slips past the address checks as a "hostname".

It must not resolve names, judge whether a destination is allowed (see `addresses.py` and
`destinations.py`) or do any I/O. Anything it cannot parse raises `AuthorityError`, and only
that: the shell turns it into a deny with reason `authority-invalid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ztcore.errors import ZTError

MAX_AUTHORITY_LENGTH = 300
MAX_HOSTNAME_LENGTH = 253  # RFC 1035 section 2.3.4, without the trailing dot
MAX_LABEL_LENGTH = 63

_DIGITS = frozenset("0123456789")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_OCTAL_DIGITS = frozenset("01234567")
# LDH plus "_": underscores are not valid in host names (RFC 952) but appear in real DNS names
# (SRV-style labels, some CDN names), and refusing them buys no safety.
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class AuthorityError(ZTError):
    """The authority text is not a valid `host:port`; the message says what was wrong."""


@dataclass(frozen=True, slots=True)
class Authority:
    """A parsed destination. `host` is lowercase, without trailing dot or brackets; for an IP
    literal it is the canonical text of `ip`, and `ip` is set."""

    host: str
    port: int
    ip: IPv4Address | IPv6Address | None

    def __str__(self) -> str:
        if isinstance(self.ip, IPv6Address):
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_authority(text: str) -> Authority:
    """Parse `host:port` or `[v6]:port` into an `Authority`, or raise `AuthorityError`."""
    if not isinstance(text, str):
        raise AuthorityError(f"authority must be text, not {type(text).__name__}")
    if not text:
        raise AuthorityError("authority is empty")
    if len(text) > MAX_AUTHORITY_LENGTH:
        raise AuthorityError(
            f"authority is {len(text)} characters long (at most {MAX_AUTHORITY_LENGTH})")
    for char in text:
        if char.isspace() or not char.isprintable():  # NUL, CR, LF, DEL, U+200B, ...
            raise AuthorityError(
                f"authority contains a control or whitespace character U+{ord(char):04X}")
    if text.startswith("["):
        return _parse_bracketed(text)
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise AuthorityError(f"port is missing in {text!r} (expected host:port)")
    if ":" in host:
        raise AuthorityError(f"IPv6 address {host!r} must be in brackets: [{host}]:port")
    port = _parse_port(port_text)
    if "[" in host or "]" in host:
        raise AuthorityError(f"host {host!r} contains a bracket")
    return _parse_host(host, port)


def _parse_bracketed(text: str) -> Authority:
    close = text.find("]")
    if close < 0:
        raise AuthorityError(f"no closing ']' in {text!r}")
    literal, rest = text[1:close], text[close + 1:]
    if not rest.startswith(":"):
        raise AuthorityError(f"port is missing after {text[:close + 1]!r} (expected [v6]:port)")
    port = _parse_port(rest[1:])
    if "%" in literal:
        # A zone id names an interface of the broker itself: never a destination for an agent.
        raise AuthorityError(f"IPv6 zone id is not allowed in {literal!r}")
    if not literal:
        raise AuthorityError("IPv6 address between brackets is empty")
    if not all(c in _HEX_DIGITS or c in ":." for c in literal):
        raise AuthorityError(f"{literal!r} is not an IPv6 address")
    try:
        ip = IPv6Address(literal)
    except ValueError as exc:
        raise AuthorityError(f"{literal!r} is not an IPv6 address: {exc}") from None
    return Authority(host=str(ip), port=port, ip=ip)


def _parse_port(port_text: str) -> int:
    if not port_text:
        raise AuthorityError("port is missing (expected host:port)")
    # str.isdigit() would accept other scripts' digits (for example "٤٤٣"); int() would accept
    # "+443" and "4_43". Only ASCII decimal digits are a port.
    if not all(c in _DIGITS for c in port_text):
        raise AuthorityError(f"port {port_text!r} is not a decimal number")
    if len(port_text) > 5:
        raise AuthorityError(f"port {port_text} out of range 1-65535")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise AuthorityError(f"port {port} out of range 1-65535")
    return port


def _parse_host(raw_host: str, port: int) -> Authority:
    if not raw_host:
        raise AuthorityError("host is empty")
    if not raw_host.isascii():
        raise AuthorityError(
            f"host {raw_host!r} is not ASCII: send the IDNA (punycode, xn--) form of the name")
    host = raw_host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise AuthorityError(f"host {raw_host!r} is empty")
    if _ends_in_number(host):
        ip = _parse_legacy_ipv4(host)
        return Authority(host=str(ip), port=port, ip=ip)
    _check_hostname(host)
    return Authority(host=host, port=port, ip=None)


def _check_hostname(host: str) -> None:
    if len(host) > MAX_HOSTNAME_LENGTH:
        raise AuthorityError(
            f"host name is {len(host)} characters long (at most {MAX_HOSTNAME_LENGTH})")
    for label in host.split("."):
        if not label:
            raise AuthorityError(f"host {host!r} has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise AuthorityError(
                f"label {label[:20]!r}... is {len(label)} characters long "
                f"(at most {MAX_LABEL_LENGTH})")
        bad = next((c for c in label if c not in _LABEL_CHARS), None)
        if bad is not None:
            raise AuthorityError(f"label {label!r} contains {bad!r} (letters, digits, '-', '_')")
        if label.startswith("-") or label.endswith("-"):
            raise AuthorityError(f"label {label!r} starts or ends with a hyphen")


# --- WHATWG URL standard, "IPv4 parser" and "ends in a number checker" (host parsing) --------
# A host whose last label is a number is an IPv4 address in every browser and in curl; it must
# never be treated as a name, or `0x7f.1` would reach the loopback interface as "a hostname".
# The caller has already lowercased the host and removed one trailing dot.


def _ends_in_number(host: str) -> bool:
    last = host.rsplit(".", 1)[-1]
    if last and all(c in _DIGITS for c in last):
        return True
    return _parse_ipv4_number(last) is not None


def _parse_ipv4_number(part: str) -> int | None:
    """A decimal, 0x-hex or 0-octal number, or None. An empty part is not a number."""
    if not part:
        return None
    digits, radix, allowed = part, 10, _DIGITS
    if len(part) >= 2 and part[:2] in ("0x", "0X"):
        digits, radix, allowed = part[2:], 16, _HEX_DIGITS
    elif len(part) >= 2 and part[0] == "0":
        digits, radix, allowed = part[1:], 8, _OCTAL_DIGITS
    if not digits:
        return 0  # "0x" is zero, as the standard says
    if not all(c in allowed for c in digits):
        return None
    return int(digits, radix)


def _parse_legacy_ipv4(host: str) -> IPv4Address:
    parts = host.split(".")
    if len(parts) > 4:
        raise AuthorityError(f"host {host!r} ends in a number but has more than 4 parts")
    numbers: list[int] = []
    for part in parts:
        number = _parse_ipv4_number(part)
        if number is None:
            raise AuthorityError(
                f"host {host!r} ends in a number but {part!r} is not an IPv4 number")
        numbers.append(number)
    *leading, last = numbers
    for number in leading:
        if number > 255:
            raise AuthorityError(f"IPv4 address {host!r}: part {number} is more than 255")
    limit = 256 ** (5 - len(numbers))
    if last >= limit:
        raise AuthorityError(
            f"IPv4 address {host!r}: last part {last} does not fit in {5 - len(numbers)} bytes")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return IPv4Address(value)
