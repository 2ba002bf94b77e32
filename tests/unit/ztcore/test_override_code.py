"""Admin override codes (ztcore/override_code.py): issued by the broker, verified offline by the agent."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztcore.errors import ConfigError, LocalProtocolError
from ztcore.override_code import (
    ALPHABET,
    CLOCK_SKEW_SECONDS,
    CODE_LENGTH,
    MAX_MINUTES,
    NONCE_BYTES,
    OverrideCode,
    OverrideCodeError,
    OverrideCodeReason,
    OverrideGrant,
    derive_device_secret,
    issue_override_code,
    normalise_code,
    verify_override_code,
)

NOW = 1_750_000_000.0          # 2025-06-15T15:06:40Z: 40 seconds into a minute
MINUTE = 1_749_999_960.0       # NOW rounded down to its minute
MASTER = bytes(range(32))
DEVICE = "dev-7f3a9c"
SECRET = derive_device_secret(MASTER, "kita-city", DEVICE)
CODE_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){4}")


def issue(minutes: int = 60, nonce: bytes = b"\x5a\xc3", now: float = NOW,
          device: str = DEVICE) -> OverrideCode:
    return issue_override_code(SECRET, device, now, minutes, nonce)


def refused(code: str, now: float = NOW, device: str = DEVICE,
            secret: bytes = SECRET) -> OverrideCodeReason:
    with pytest.raises(OverrideCodeError) as info:
        verify_override_code(secret, device, code, now)
    return info.value.reason


def other_symbol(symbol: str, step: int) -> str:
    """A symbol with a different value (never a Crockford alias of the same one)."""
    return ALPHABET[(ALPHABET.index(symbol) + step) % 32]


# -- the device secret --------------------------------------------------------------------------

def test_device_secret_is_32_bytes_and_bound_to_master_tenant_and_device() -> None:
    assert len(SECRET) == 32
    assert derive_device_secret(MASTER, "kita-city", DEVICE) == SECRET
    assert derive_device_secret(MASTER, "minami-town", DEVICE) != SECRET
    assert derive_device_secret(MASTER, "kita-city", "dev-7f3a9d") != SECRET
    assert derive_device_secret(bytes(32), "kita-city", DEVICE) != SECRET


@pytest.mark.parametrize("master, tenant, device", [
    (b"short", "kita-city", DEVICE),
    (MASTER, "Kita City", DEVICE),
    (MASTER, "kita-city", ""),
    (MASTER, "kita-city", "dev\n1"),
])
def test_device_secret_refuses_bad_inputs(master: bytes, tenant: str, device: str) -> None:
    with pytest.raises(ConfigError):
        derive_device_secret(master, tenant, device)


# -- issuing and the round trip -----------------------------------------------------------------

def test_round_trip() -> None:
    code = issue(minutes=90)
    assert (code.issued_at, code.expires_at, code.minutes) == (MINUTE, MINUTE + 90 * 60, 90)
    assert code.device_id == DEVICE
    grant = verify_override_code(SECRET, DEVICE, code.code, NOW + 5)
    assert grant == OverrideGrant(code_id=code.code_id, issued_at=MINUTE,
                                  expires_at=MINUTE + 90 * 60, minutes=90)


def test_code_length_and_alphabet() -> None:
    code = issue().code
    assert len(code) == CODE_LENGTH == 24
    assert CODE_RE.fullmatch(code), code
    assert not set(code) & set("ILOU")
    assert re.fullmatch(r"[0-9a-f]{12}", issue().code_id)


def test_the_code_id_does_not_reveal_the_code() -> None:
    code = issue()
    assert code.code_id.upper() not in code.code.replace("-", "")


def test_same_inputs_give_the_same_code() -> None:
    assert issue() == issue()
    assert issue(now=MINUTE) == issue(now=MINUTE + 59.9)   # a code is issued for its minute


@pytest.mark.parametrize("minutes", [0, -1, MAX_MINUTES + 1, 10_000])
def test_duration_out_of_range_is_refused_when_issuing(minutes: int) -> None:
    with pytest.raises(OverrideCodeError) as info:
        issue(minutes=minutes)
    assert info.value.reason is OverrideCodeReason.DURATION_INVALID
    assert "1440" in info.value.message_en and "1440" in info.value.message_ja


@pytest.mark.parametrize("minutes", [1, MAX_MINUTES])
def test_duration_limits_are_accepted(minutes: int) -> None:
    code = issue(minutes=minutes)
    grant = verify_override_code(SECRET, DEVICE, code.code, code.expires_at - 1)
    assert grant.minutes == minutes and grant.expires_at == MINUTE + 60 * minutes
    assert refused(code.code, now=code.expires_at) is OverrideCodeReason.EXPIRED


def test_issuing_refuses_bad_arguments() -> None:
    with pytest.raises(LocalProtocolError):
        issue(nonce=b"\x01")
    with pytest.raises(LocalProtocolError):
        issue(nonce=bytes(NONCE_BYTES + 1))
    with pytest.raises(LocalProtocolError):
        issue(now=1_600_000_000.0)          # before 2024: the clock is broken
    with pytest.raises(LocalProtocolError):
        issue(now=float("nan"))
    with pytest.raises(ConfigError):
        issue_override_code(b"short", DEVICE, NOW, 60, b"\x00\x00")


# -- refusals -----------------------------------------------------------------------------------

def test_wrong_device_is_invalid() -> None:
    assert refused(issue().code, device="dev-7f3a9d") is OverrideCodeReason.INVALID


def test_wrong_secret_is_invalid() -> None:
    other = derive_device_secret(MASTER, "minami-town", DEVICE)
    assert refused(issue().code, secret=other) is OverrideCodeReason.INVALID


def test_every_single_changed_character_is_invalid() -> None:
    code = issue().code
    positions = [i for i, ch in enumerate(code) if ch != "-"]
    assert len(positions) == 20
    for position in positions:
        for step in range(1, 32):
            typo = code[:position] + other_symbol(code[position], step) + code[position + 1:]
            assert refused(typo) is OverrideCodeReason.INVALID, (position, typo)


def test_a_wrong_device_and_a_typo_get_the_same_words() -> None:
    code = issue().code
    with pytest.raises(OverrideCodeError) as wrong_device:
        verify_override_code(SECRET, "dev-other", code, NOW)
    typo = other_symbol(code[0], 1) + code[1:]
    with pytest.raises(OverrideCodeError) as wrong_symbol:
        verify_override_code(SECRET, DEVICE, typo, NOW)
    assert str(wrong_device.value) == str(wrong_symbol.value) == wrong_device.value.message_en
    assert wrong_device.value.message_ja == wrong_symbol.value.message_ja


def test_expiry_boundary() -> None:
    code = issue(minutes=30)
    assert verify_override_code(SECRET, DEVICE, code.code, MINUTE + 30 * 60 - 0.001).minutes == 30
    assert refused(code.code, now=MINUTE + 30 * 60) is OverrideCodeReason.EXPIRED
    assert refused(code.code, now=NOW + 86_400 * 400) is OverrideCodeReason.EXPIRED


def test_not_yet_valid_beyond_the_clock_skew() -> None:
    code = issue()
    assert verify_override_code(SECRET, DEVICE, code.code, MINUTE - CLOCK_SKEW_SECONDS).minutes == 60
    assert refused(code.code, now=MINUTE - CLOCK_SKEW_SECONDS - 1) is OverrideCodeReason.NOT_YET_VALID


@pytest.mark.parametrize("text", [
    "", "-", "28T0-BNSN-0ET9-W807", "28T0-BNSN-0ET9-W807-RKYA-Q", "28T0-BNSN-0ET9-W807-RKYU",
    "28T0-BNSN-0ET9-W807-RKY*", "28T0_BNSN_0ET9_W807_RKYA", "ＡＢＣ", "x" * 500,
    "28T0-BNSN-0ET9-W807-RKYÄ", "٢٨T0-BNSN-0ET9-W807-RKYA",
])
def test_malformed(text: str) -> None:
    assert refused(text) is OverrideCodeReason.MALFORMED


def test_refusals_carry_english_and_japanese() -> None:
    for reason in OverrideCodeReason:
        error = OverrideCodeError(reason)
        assert error.reason is reason and str(error) == error.message_en
        assert re.fullmatch(r"[a-z]+(-[a-z]+)+", reason.value)
        assert error.message_en.endswith(".") and error.message_ja.endswith("。")


def test_verify_refuses_a_bad_secret_or_clock() -> None:
    code = issue().code
    with pytest.raises(ConfigError):
        verify_override_code(b"", DEVICE, code, NOW)
    for now in (float("nan"), float("inf")):
        with pytest.raises(LocalProtocolError):
            verify_override_code(SECRET, DEVICE, code, now)


# -- what a person types ------------------------------------------------------------------------

def test_case_spaces_and_hyphens_do_not_matter() -> None:
    code = issue().code
    bare = code.replace("-", "")
    pairs = "-".join(bare[i:i + 2] for i in range(0, 20, 2))
    for typed in (code.lower(), bare, bare.lower(), " ".join(code.split("-")), f"  {code}\n",
                  " ".join(bare), code.replace("-", " - "), pairs):
        assert verify_override_code(SECRET, DEVICE, typed, NOW).minutes == 60, typed


def code_with_0_and_1() -> OverrideCode:
    for n in range(1000):
        code = issue(nonce=n.to_bytes(2, "big"))
        if "0" in code.code and "1" in code.code:
            return code
    raise AssertionError("no code with both 0 and 1")


def test_crockford_confusables_are_read_as_digits() -> None:
    code = code_with_0_and_1()
    for zero, one in (("O", "I"), ("o", "l"), ("O", "L"), ("o", "i")):
        typed = code.code.replace("0", zero).replace("1", one)
        assert verify_override_code(SECRET, DEVICE, typed, NOW).code_id == code.code_id, typed


def test_full_width_and_japanese_separators_are_accepted() -> None:
    code = issue().code
    # what a Japanese input method types: full-width letters and digits, ー (U+30FC) for "-"
    full_width = "".join("ー" if ch == "-" else chr(ord(ch) + 0xFEE0) for ch in code)
    assert verify_override_code(SECRET, DEVICE, full_width, NOW).minutes == 60
    assert verify_override_code(SECRET, DEVICE, full_width.lower(), NOW).minutes == 60
    assert verify_override_code(SECRET, DEVICE, code.replace("-", "\u3000"), NOW).minutes == 60
    assert verify_override_code(SECRET, DEVICE, code.replace("-", "－"), NOW).minutes == 60


def test_normalise_code_reads_100_bits() -> None:
    assert normalise_code("0000-0000-0000-0000-0000") == 0
    assert normalise_code("ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ") == 2**100 - 1
    assert normalise_code("oooo iiii llll 0000 0001") == normalise_code("0000-1111-1111-0000-0001")


# -- the grant's JSON form ------------------------------------------------------------------------

def test_grant_json_round_trip() -> None:
    grant = verify_override_code(SECRET, DEVICE, issue().code, NOW)
    assert OverrideGrant.parse(grant.to_json_dict()) == grant


@pytest.mark.parametrize("raw", [
    None, [], {},
    {"code_id": "abc", "issued_at": MINUTE, "expires_at": MINUTE + 60, "minutes": 1},
    {"code_id": "0123456789ab", "issued_at": MINUTE, "expires_at": MINUTE + 120, "minutes": 1},
    {"code_id": "0123456789ab", "issued_at": MINUTE, "expires_at": MINUTE + 60, "minutes": True},
    {"code_id": "0123456789ab", "issued_at": -1, "expires_at": 59, "minutes": 1},
    {"code_id": "0123456789ab", "issued_at": MINUTE, "expires_at": MINUTE + 60, "minutes": 1, "x": 1},
    {"code_id": "0123456789ab", "issued_at": MINUTE, "minutes": 1},
])
def test_grant_parse_refuses_bad_json(raw: object) -> None:
    with pytest.raises(ConfigError):
        OverrideGrant.parse(raw)


# -- properties -----------------------------------------------------------------------------------

TYPED = st.text(alphabet=ALPHABET + ALPHABET.lower() + "OILUoilu- \u3000ー－", max_size=40)


@settings(max_examples=500)
@given(st.one_of(st.text(max_size=120), TYPED))
def test_arbitrary_text_only_ever_raises_override_code_error(text: str) -> None:
    with pytest.raises(OverrideCodeError) as info:
        verify_override_code(SECRET, DEVICE, text, NOW)
    assert info.value.reason in (OverrideCodeReason.MALFORMED, OverrideCodeReason.INVALID)


@settings(max_examples=200)
@given(st.binary(min_size=2, max_size=2), st.binary(min_size=2, max_size=2))
def test_codes_with_different_nonces_differ(a: bytes, b: bytes) -> None:
    if a == b:
        assert issue(nonce=a) == issue(nonce=b)
        return
    first, second = issue(nonce=a), issue(nonce=b)
    assert first.code != second.code and first.code_id != second.code_id


@settings(max_examples=300)
@given(nonce=st.binary(min_size=2, max_size=2), minutes=st.integers(1, MAX_MINUTES),
       now=st.floats(1_704_067_200, 3_000_000_000), elapsed=st.floats(0, 1))
def test_round_trip_property(nonce: bytes, minutes: int, now: float, elapsed: float) -> None:
    code = issue(minutes=minutes, nonce=nonce, now=now)
    assert CODE_RE.fullmatch(code.code)
    at = code.issued_at + elapsed * (code.expires_at - code.issued_at) * 0.999
    grant = verify_override_code(SECRET, DEVICE, code.code, at)
    assert (grant.code_id, grant.issued_at, grant.expires_at) == (code.code_id, code.issued_at,
                                                                  code.expires_at)


@settings(max_examples=500)
@given(nonce=st.binary(min_size=2, max_size=2), minutes=st.integers(1, MAX_MINUTES),
       position=st.integers(0, CODE_LENGTH - 1), replacement=st.characters())
def test_changing_any_character_never_yields_a_grant(nonce: bytes, minutes: int, position: int,
                                                     replacement: str) -> None:
    code = issue(minutes=minutes, nonce=nonce).code
    typo = code[:position] + replacement + code[position + 1:]
    try:
        same = normalise_code(typo) == normalise_code(code)
    except OverrideCodeError:
        same = False
    if same:        # a case change, an alias (O for 0) or a separator: still the same code
        return
    with pytest.raises(OverrideCodeError) as info:
        verify_override_code(SECRET, DEVICE, typo, NOW)
    assert info.value.reason in (OverrideCodeReason.INVALID, OverrideCodeReason.MALFORMED)
