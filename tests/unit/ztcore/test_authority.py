"""parse_authority: canonical hosts, legacy IPv4 spellings, and clear errors for bad input."""

from __future__ import annotations

import string
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztcore.authority import Authority, AuthorityError, parse_authority
from ztcore.errors import ZTError

V4 = IPv4Address
V6 = IPv6Address

# (text, host, port, ip)
VALID = [
    ("example.jp:443", "example.jp", 443, None),
    ("EXAMPLE.JP.:443", "example.jp", 443, None),
    ("xn--eckwd4c7c.xn--zckzah:443", "xn--eckwd4c7c.xn--zckzah", 443, None),
    ("a:1", "a", 1, None),
    ("_dmarc.example.com:65535", "_dmarc.example.com", 65535, None),
    ("my-host.example:8443", "my-host.example", 8443, None),
    ("1a.example:80", "1a.example", 80, None),            # a digit-led label is still a name
    ("ex.0xg:80", "ex.0xg", 80, None),                    # "0xg" is not a number
    ("localhost:80", "localhost", 80, None),              # a name: resolved, then checked
    ("example.jp:0443", "example.jp", 443, None),         # RFC 3986: port = *DIGIT
    ("[2001:4860:4860::8888]:443", "2001:4860:4860::8888", 443, V6("2001:4860:4860::8888")),
    ("[2001:4860:4860:0:0:0:0:8888]:443", "2001:4860:4860::8888", 443,
     V6("2001:4860:4860::8888")),
    ("[::1]:443", "::1", 443, V6("::1")),
    ("[::FFFF:127.0.0.1]:443", str(V6("::ffff:127.0.0.1")), 443, V6("::ffff:127.0.0.1")),
    ("8.8.8.8:53", "8.8.8.8", 53, V4("8.8.8.8")),
    ("8.8.8.8.:53", "8.8.8.8", 53, V4("8.8.8.8")),
    # legacy numeric IPv4 (WHATWG URL standard, IPv4 parser)
    ("169.254.169.254:80", "169.254.169.254", 80, V4("169.254.169.254")),
    ("10.0.0.1:443", "10.0.0.1", 443, V4("10.0.0.1")),
    ("2130706433:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("0x7f.1:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("0X7F.1:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("0177.0.0.1:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("127.1:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("127.0.1:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("0x7f000001:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("017700000001:80", "127.0.0.1", 80, V4("127.0.0.1")),
    ("0xA9.0xFE.0xA9.0xFE:80", "169.254.169.254", 80, V4("169.254.169.254")),
    ("169.254.43518:80", "169.254.169.254", 80, V4("169.254.169.254")),
    ("0:80", "0.0.0.0", 80, V4("0.0.0.0")),
    ("0x:80", "0.0.0.0", 80, V4("0.0.0.0")),               # "0x" is zero in the standard
    ("00:80", "0.0.0.0", 80, V4("0.0.0.0")),
    ("4294967295:80", "255.255.255.255", 80, V4("255.255.255.255")),
    ("1.2.3.0x4:80", "1.2.3.4", 80, V4("1.2.3.4")),
]


@pytest.mark.parametrize(("text", "host", "port", "ip"), VALID)
def test_valid_authorities(text: str, host: str, port: int,
                           ip: IPv4Address | IPv6Address | None) -> None:
    authority = parse_authority(text)
    assert authority == Authority(host=host, port=port, ip=ip)
    assert type(authority.ip) is type(ip)


# (text, a fragment the error message must contain)
INVALID = [
    ("", "empty"),
    ("example.jp", "port is missing"),
    ("example.jp:", "port is missing"),
    (":443", "host is empty"),
    (".:443", "empty"),
    ("example.jp:0", "port 0 out of range 1-65535"),
    ("example.jp:65536", "port 65536 out of range 1-65535"),
    ("example.jp:999999", "out of range"),
    ("example.jp:+443", "not a decimal number"),
    ("example.jp:4_43", "not a decimal number"),
    ("example.jp:٤٤٣", "not a decimal number"),          # Arabic-Indic digits
    ("example.jp:0x1bb", "not a decimal number"),
    ("example.jp:443:443", "must be in brackets"),
    ("a..b:443", "empty label"),
    (".example.jp:443", "empty label"),
    ("example.jp..:443", "empty label"),
    ("-a.example:443", "hyphen"),
    ("a-.example:443", "hyphen"),
    ("a" * 64 + ".example:443", "at most 63"),
    (".".join(["a" * 63] * 4) + ":443", "at most 253"),
    ("exa mple.jp:443", "whitespace"),
    ("example.jp:443 ", "whitespace"),
    ("example.jp\x00:443", "U+0000"),
    ("example.jp\r\n:443", "U+000D"),
    ("example.jp\x7f:443", "U+007F"),
    ("\u200bexample.jp:443", "U+200B"),
    ("例え.jp:443", "IDNA"),
    ("ｅｘａｍｐｌｅ.jp:443", "IDNA"),
    ("user@example.jp:443", "'@'"),
    ("example.jp/path:443", "'/'"),
    ("exa%mple.jp:443", "'%'"),
    ("x" * 301, "at most 300"),
    # IPv6
    ("::1:443", "must be in brackets"),
    ("[::1]", "port is missing"),
    ("[::1]:", "port is missing"),
    ("[::1]443", "port is missing"),
    ("[::1:443", "no closing"),
    ("[]:443", "empty"),
    ("[fe80::1%eth0]:443", "zone id"),
    ("[fe80::1%25eth0]:443", "zone id"),
    ("[127.0.0.1]:443", "not an IPv6 address"),
    ("[example.jp]:443", "not an IPv6 address"),
    ("[v1.fe]:443", "not an IPv6 address"),
    ("[::1]]:443", "port is missing"),
    ("[1::2::3]:443", "not an IPv6 address"),
    ("ex[a]mple:443", "bracket"),
    # hosts ending in a number that are not IPv4 addresses
    ("1.2.3.4.5:80", "more than 4 parts"),
    ("256.0.0.1:80", "more than 255"),
    ("1.2.3.256:80", "does not fit"),
    ("1.2.65536:80", "does not fit"),
    ("4294967296:80", "does not fit"),
    ("09:80", "not an IPv4 number"),
    ("0x7g.1:80", "not an IPv4 number"),
    ("example.123:80", "not an IPv4 number"),
    ("1..2:80", "not an IPv4 number"),
    ("example.0x1:80", "not an IPv4 number"),
    ("foo_.1:80", "not an IPv4 number"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_authorities(text: str, fragment: str) -> None:
    with pytest.raises(AuthorityError) as info:
        parse_authority(text)
    assert fragment in str(info.value)


def test_authority_error_is_a_zterror() -> None:
    assert issubclass(AuthorityError, ZTError)


@pytest.mark.parametrize(("text", "rendered"), [
    ("EXAMPLE.JP.:443", "example.jp:443"),
    ("[2001:DB8::1]:8443", "[2001:db8::1]:8443"),
    ("0x7f.1:80", "127.0.0.1:80"),
])
def test_str(text: str, rendered: str) -> None:
    assert str(parse_authority(text)) == rendered


# --- properties -------------------------------------------------------------------------------

AUTHORITY_ALPHABET = string.ascii_letters + string.digits + ".:-_[]%xX \x00é例"


@given(st.one_of(st.text(max_size=400),
                 st.text(alphabet=AUTHORITY_ALPHABET, max_size=60)))
def test_only_authority_error_escapes(text: str) -> None:
    try:
        authority = parse_authority(text)
    except AuthorityError:
        return
    # Whatever is accepted is canonical: rendering it and parsing again gives the same value.
    assert parse_authority(str(authority)) == authority
    assert 1 <= authority.port <= 65535
    assert authority.host == authority.host.lower()
    assert not authority.host.endswith(".")


ports = st.integers(min_value=1, max_value=65535)
ipv4s = st.integers(min_value=0, max_value=2**32 - 1).map(IPv4Address)


@given(ipv4s, ports)
def test_dotted_ipv4_round_trips(ip: IPv4Address, port: int) -> None:
    authority = parse_authority(f"{ip}:{port}")
    assert authority == Authority(host=str(ip), port=port, ip=ip)
    assert parse_authority(str(authority)) == authority


@st.composite
def legacy_spellings(draw: st.DrawFn, ip: IPv4Address) -> str:
    """Any WHATWG spelling of `ip`: 1 to 4 parts, each decimal, 0x-hex or 0-octal."""
    count = draw(st.integers(min_value=1, max_value=4))
    packed = ip.packed
    numbers = list(packed[:count - 1]) + [int.from_bytes(packed[count - 1:], "big")]
    parts = []
    for number in numbers:
        style = draw(st.sampled_from(["dec", "hex", "HEX", "oct"]))
        if style == "dec":
            parts.append(str(number))
        elif style == "hex":
            parts.append(f"0x{number:x}")
        elif style == "HEX":
            parts.append(f"0X{number:X}")
        else:
            parts.append(f"0{number:o}")
    trailing_dot = draw(st.booleans())
    return ".".join(parts) + ("." if trailing_dot else "")


@given(st.data(), ipv4s, ports)
def test_every_legacy_ipv4_spelling_decodes_to_the_address(data: st.DataObject,
                                                           ip: IPv4Address, port: int) -> None:
    spelling = data.draw(legacy_spellings(ip))
    authority = parse_authority(f"{spelling}:{port}")
    assert authority.ip == ip
    assert authority.host == str(ip)


@given(st.integers(min_value=0, max_value=2**128 - 1).map(IPv6Address), ports)
def test_ipv6_literal_round_trips(ip: IPv6Address, port: int) -> None:
    authority = parse_authority(f"[{ip.exploded}]:{port}")
    assert authority == Authority(host=str(ip), port=port, ip=ip)
    assert str(authority) == f"[{ip}]:{port}"


labels = st.from_regex(r"\A[a-z_]([a-z0-9_-]{0,61}[a-z0-9_])?\Z")


@given(st.lists(labels, min_size=1, max_size=3), ports)
def test_ldh_names_are_names(name_labels: list[str], port: int) -> None:
    host = ".".join(name_labels)
    authority = parse_authority(f"{host.upper()}.:{port}")
    assert authority == Authority(host=host, port=port, ip=None)
