"""法人番号 (財務省令 第2条) and payment card numbers (Luhn, brand IINs), alone and in text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swg.dlp import cards, corporate_number
from swg.dlp.cards import card_brand, is_valid_card, luhn_valid
from swg.dlp.corporate_number import corporate_check_digit, is_valid_corporate_number
from swg.dlp.scan import DetectorRule, DlpPolicy, scan_text
from ztcore.errors import LocalProtocolError

POLICY = DlpPolicy()
NTA = "7000012050002"            # 国税庁 (National Tax Agency)
NICHIZEIREN = "7010705000725"    # 日本税理士会連合会
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def count(text: str, reason: str, policy: DlpPolicy = POLICY) -> int:
    return sum(f.count for f in scan_text(text, policy).findings if f.reason == reason)


def reference_corporate_check(base: str) -> int:
    """From the published description: from the right, odd positions ×1, even ×2; 9 − sum mod 9."""
    total = sum(int(d) * (2 if position % 2 == 0 else 1) for position, d in enumerate(reversed(base), 1))
    return 9 - total % 9


# --- 法人番号 -------------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "weighted_sum"), [
    (NTA, 11),                   # 2·1 + 5·1 + 2·1 + 1·2 = 11 → 11 mod 9 = 2 → 9 − 2 = 7
    (NICHIZEIREN, 29),           # 5 + 2·2 + 7 + 5 + 7 + 1 = 29 → 2 → 7
    ("7123456789012", 74),       # a worked example in a public write-up of the formula → 74 mod 9 = 2 → 7
])
def test_published_corporate_numbers(number: str, weighted_sum: int) -> None:
    assert 9 - weighted_sum % 9 == int(number[0])
    assert corporate_check_digit(number[1:]) == int(number[0])
    assert is_valid_corporate_number(number)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_corporate_check_digit_matches_the_description(base: str) -> None:
    check = corporate_check_digit(base)
    assert check == reference_corporate_check(base)
    assert 1 <= check <= 9
    assert is_valid_corporate_number(f"{check}{base}") == (base != "0" * 12)
    assert not any(is_valid_corporate_number(f"{wrong}{base}") for wrong in range(10) if wrong != check)


@pytest.mark.parametrize("value", ["", NTA[1:], NTA + "0", "8000012050002", "9000000000000",
                                   "７000012050002"])
def test_invalid_corporate_numbers(value: str) -> None:
    assert not is_valid_corporate_number(value)


def test_corporate_check_digit_needs_twelve_digits() -> None:
    with pytest.raises(LocalProtocolError):
        corporate_check_digit("12")


@pytest.mark.parametrize("text", [
    NTA, f"法人番号 {NTA}", "7-0000-1205-0002", "7 0000 1205 0002", NTA.translate(FULL_WIDTH),
    f'{{"houjin_bangou": "{NICHIZEIREN}"}}', f"T{NTA}",             # インボイス登録番号: T + 法人番号
])
def test_corporate_number_in_text(text: str) -> None:
    assert count(text, corporate_number.REASON) == 1


@pytest.mark.parametrize("text", [
    "8000012050002", "1" + NTA, NTA + "1", "7000-0120-5000-2", "7-0000-1205-0002-1", "70 0001 2050 002",
])
def test_no_corporate_number(text: str) -> None:
    assert count(text, corporate_number.REASON) == 0


def test_corporate_numbers_are_reported_but_do_not_block_by_default() -> None:
    verdict = scan_text(f"国税庁 {NTA}", POLICY)
    assert not verdict.blocked and verdict.reasons == ()
    assert verdict.findings[0].detector == "corporate-number" and not verdict.findings[0].blocking
    blocking = DlpPolicy(corporate_number=DetectorRule(2))
    assert not scan_text(NTA, blocking).blocked
    assert scan_text(f"{NTA} {NICHIZEIREN}", blocking).reasons == ("dlp-corporate-number",)
    assert count(NTA, corporate_number.REASON, DlpPolicy(corporate_number=None)) == 0


# --- cards ----------------------------------------------------------------------------------

BRAND_TEST_NUMBERS = [   # the brands' published test PANs
    ("visa", "4111111111111111"), ("visa", "4012888888881881"), ("visa", "4222222222222"),
    ("mastercard", "5555555555554444"), ("mastercard", "5105105105105100"),
    ("mastercard", "2223003122003222"),
    ("amex", "378282246310005"), ("amex", "371449635398431"),
    ("jcb", "3530111333300000"), ("jcb", "3566002020360505"),
    ("diners", "30569309025904"), ("diners", "36227206271667"),
    ("discover", "6011111111111117"), ("discover", "6011000990139424"), ("discover", "6445644564456445"),
]


@pytest.mark.parametrize(("brand", "number"), BRAND_TEST_NUMBERS)
def test_brand_test_numbers(brand: str, number: str) -> None:
    assert luhn_valid(number)
    assert card_brand(number) == brand
    assert is_valid_card(number)
    assert count(number, cards.REASON) == 1


@pytest.mark.parametrize("number", [
    "4111111111111112",            # Luhn fails
    "1111111111111117",            # Luhn passes, no brand starts with 1
    "9111111111111119", "5611111111111110",                 # no brand (56, 9)
    "41111111111111",              # Visa is never 14 digits
    "37828224631000",              # Amex is 15 digits
    "38520000023237",              # Diners 38 is not in the list
    "411111111111111111111",       # longer than 19
])
def test_invalid_cards(number: str) -> None:
    assert not is_valid_card(number)
    assert count(number, cards.REASON) == 0


def test_luhn_reference() -> None:
    assert luhn_valid("79927398713")          # the classic example
    assert not luhn_valid("79927398710")
    assert not luhn_valid("") and not luhn_valid("7992739871a")


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "４１１１　１１１１　１１１１　１１１１",
    "3782 822463 10005", "3056 930902 5904", "カード番号: 4111111111111111 有効期限 12/29",
    '{"pan":"5555555555554444"}', "a4111111111111111b", "6011 0009 9013 9424",
])
def test_card_in_text(text: str) -> None:
    assert count(text, cards.REASON) == 1


@pytest.mark.parametrize("text", [
    "14111111111111111", "41111111111111110", "4111 1111 1111 1111 1111 1",   # longer runs
    "4111 1111 1111-1111", "41 11 11 11 11 11 11 11", "411 1111 1111 1111 1",
    "4111111111111111" + "0" * 4, "03-1234-5678", "2024-05-01 12:34:56.123456",
])
def test_no_card(text: str) -> None:
    assert count(text, cards.REASON) == 0


def test_two_cards_separated_by_a_space_are_two() -> None:
    assert count("4111111111111111 5555555555554444", cards.REASON) == 2
    assert count("4111 1111 1111 1111, 5555 5555 5555 4444", cards.REASON) == 2


def test_card_verdict_hides_the_number() -> None:
    verdict = scan_text("4111 1111 1111 1111 と 4012888888881881", POLICY)
    assert verdict.blocked and verdict.reasons == ("dlp-credit-card",)
    (finding,) = verdict.findings
    assert finding.masked_samples == ("4111************", "4012************")
    for secret in ("4111111111111111", "4111 1111 1111 1111", "4012888888881881", "888888881881"):
        assert secret not in repr(verdict)


@settings(max_examples=200)
@given(st.sampled_from([n for _, n in BRAND_TEST_NUMBERS]), st.integers(1, 9), st.booleans())
def test_a_card_inside_a_longer_digit_run_is_no_card(number: str, digit: int, before: bool) -> None:
    text = f"{digit}{number}" if before else f"{number}{digit}"
    assert count(text, cards.REASON) == (1 if is_valid_card(text) else 0)
