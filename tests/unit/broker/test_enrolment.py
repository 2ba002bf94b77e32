"""Enrolment codes and durations: broker/enrolment.py."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.enrolment import (
    ALPHABET,
    DEFAULT_CODE_TTL_SECONDS,
    format_code,
    hash_code,
    normalise_code,
    parse_duration,
)

CANONICAL = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}")
codes = st.binary(min_size=10, max_size=10).map(format_code)


# -- format_code ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (bytes(10), "0000-0000-0000-0000"),
    (b"\xff" * 10, "ZZZZ-ZZZZ-ZZZZ-ZZZZ"),
    # 80 bits read as 16 five-bit symbols, most significant first.
    (b"\x00" * 9 + b"\x01", "0000-0000-0000-0001"),
    (b"\x00" * 9 + b"\x20", "0000-0000-0000-0010"),
    (b"\x80" + b"\x00" * 9, "G000-0000-0000-0000"),
    (bytes(range(10)), "000G-40R4-0M30-E209"),
])
def test_format_code_known_values(raw: bytes, expected: str) -> None:
    assert format_code(raw) == expected


@pytest.mark.parametrize("size", [0, 9, 11, 16])
def test_format_code_needs_ten_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="exactly 10 random bytes"):
        format_code(bytes(size))


@given(st.binary(min_size=10, max_size=10))
def test_format_code_is_canonical_and_injective(raw: bytes) -> None:
    code = format_code(raw)
    assert CANONICAL.fullmatch(code)
    # Decoding the symbols gives back the bytes: no two byte strings share a code.
    value = 0
    for symbol in code.replace("-", ""):
        value = value * 32 + ALPHABET.index(symbol)
    assert value.to_bytes(10, "big") == raw


@given(st.binary(min_size=10, max_size=10))
def test_format_code_agrees_with_stdlib_base32(raw: bytes) -> None:
    # RFC 4648 base32 has the same bit order; only the alphabet differs from Crockford's.
    rfc4648 = base64.b32encode(raw).decode("ascii")
    crockford = rfc4648.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET))
    assert format_code(raw).replace("-", "") == crockford


# -- normalise_code ------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, expected", [
    ("ABCD-EFGH-JKMN-PQRS", "ABCD-EFGH-JKMN-PQRS"),
    ("abcd-efgh-jkmn-pqrs", "ABCD-EFGH-JKMN-PQRS"),
    ("ABCDEFGHJKMNPQRS", "ABCD-EFGH-JKMN-PQRS"),
    ("  abcd efgh\tjkmn pqrs \n", "ABCD-EFGH-JKMN-PQRS"),
    ("AB-CD--EFGH-JKMN-PQRS-", "ABCD-EFGH-JKMN-PQRS"),
    ("-ABCD-EFGH-JKMN-PQRS", "ABCD-EFGH-JKMN-PQRS"),
    # Crockford confusables: O is zero, I and L are one, in either case.
    ("OOOO-oooo-IIII-LLLL", "0000-0000-1111-1111"),
    ("iIlL-0000-0000-0000", "1111-0000-0000-0000"),
    # Typed with a Japanese IME: full-width letters, full-width hyphen, ideographic space, "ー".
    ("ＡＢＣＤ－ＥＦＧＨ　ＪＫＭＮーＰＱＲＳ", "ABCD-EFGH-JKMN-PQRS"),
    ("abcd\u2013efgh\u2014jkmn\u2212pqrs", "ABCD-EFGH-JKMN-PQRS"),
])
def test_normalise_code_accepts(typed: str, expected: str) -> None:
    assert normalise_code(typed) == expected


@pytest.mark.parametrize("typed", [
    "",
    "----",
    "ABCD-EFGH-JKMN-PQR",          # 15 symbols
    "ABCD-EFGH-JKMN-PQRST",        # 17 symbols
    "ABCD-EFGH-JKMN-PQRU",         # U is not Crockford
    "ABCD-EFGH-JKMN-PQR*",
    "ABCD_EFGH_JKMN_PQRS",
    "ABCD.EFGH.JKMN.PQRS",
    "ABCD-EFGH-JKMN-PQRS=",
    "ÀBCD-EFGH-JKMN-PQRS",
    "ABCD-EFGH-JKMN-PQRÉ",
    "АBCD-EFGH-JKMN-PQRS",         # Cyrillic А
    "ABCD-EFGH-JKMN-PQR٣",         # Arabic-Indic digit three
])
def test_normalise_code_rejects(typed: str) -> None:
    assert normalise_code(typed) is None


@given(codes)
def test_normalise_round_trips_a_formatted_code(code: str) -> None:
    assert normalise_code(code) == code


@given(codes, st.data())
def test_normalise_undoes_what_people_do_to_a_code(code: str, data: st.DataObject) -> None:
    typed = []
    for ch in code.replace("-", ""):
        if ch == "0":
            ch = data.draw(st.sampled_from("0Oo"))
        elif ch == "1":
            ch = data.draw(st.sampled_from("1IiLl"))
        elif data.draw(st.booleans()):
            ch = ch.lower()
        typed.append(ch + data.draw(st.sampled_from(["", "", "-", " ", "--", "\u3000"])))
    assert normalise_code("".join(typed)) == code


@given(st.text(max_size=40))
def test_normalise_gives_none_or_a_canonical_fixed_point(text: str) -> None:
    result = normalise_code(text)
    if result is not None:
        assert CANONICAL.fullmatch(result)
        assert normalise_code(result) == result


@given(codes, st.integers(min_value=0, max_value=15), st.sampled_from("UuÜ!#?*_"))
def test_normalise_rejects_a_code_with_one_bad_symbol(code: str, index: int, bad: str) -> None:
    symbols = list(code.replace("-", ""))
    symbols[index] = bad
    assert normalise_code("".join(symbols)) is None


# -- hash_code -----------------------------------------------------------------------------------

def test_hash_code_is_sha256_of_the_canonical_code() -> None:
    code = "ABCD-EFGH-JKMN-PQRS"
    assert hash_code(code) == hashlib.sha256(b"ABCD-EFGH-JKMN-PQRS").hexdigest()


def test_hash_code_of_typed_variants_agree_after_normalising() -> None:
    canonical = [normalise_code(t) for t in ("abcd efgh jkmn pqrs", "ABCDEFGHJKMNPQRS")]
    assert canonical[0] is not None and canonical[1] is not None
    assert hash_code(canonical[0]) == hash_code(canonical[1])


@pytest.mark.parametrize("not_canonical", [
    "abcd-efgh-jkmn-pqrs", "ABCDEFGHJKMNPQRS", "OOOO-0000-0000-0000", "", "nonsense",
])
def test_hash_code_refuses_non_canonical_input(not_canonical: str) -> None:
    with pytest.raises(ValueError, match="canonical"):
        hash_code(not_canonical)


@given(codes, codes)
def test_different_codes_hash_differently(a: str, b: str) -> None:
    assert (hash_code(a) == hash_code(b)) == (a == b)


# -- parse_duration ------------------------------------------------------------------------------

def test_default_ttl_is_a_day() -> None:
    assert DEFAULT_CODE_TTL_SECONDS == 86400


@pytest.mark.parametrize("text, seconds", [
    ("3600", 3600),
    ("1", 1),
    ("90s", 90),
    ("30m", 1800),
    ("24h", 86400),
    ("7d", 604800),
    (" 24H ", 86400),
    ("0090s", 90),
    ("3650d", 3650 * 86400),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, message", [
    ("", "invalid duration"),
    ("h", "invalid duration"),
    ("24 h", "invalid duration"),
    ("1h30m", "invalid duration"),
    ("1.5h", "invalid duration"),
    ("-5m", "invalid duration"),
    ("+5m", "invalid duration"),
    ("5w", "invalid duration"),
    ("5 days", "invalid duration"),
    ("٣h", "invalid duration"),
    ("0", "greater than zero"),
    ("0h", "greater than zero"),
    ("3651d", "at most"),
    ("9" * 400, "at most"),
])
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=3650), st.sampled_from([("s", 1), ("m", 60),
                                                                   ("h", 3600), ("d", 86400)]))
def test_parse_duration_units(amount: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit
    assert parse_duration(f"{amount}{suffix}") == amount * factor
