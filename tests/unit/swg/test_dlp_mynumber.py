"""My Number (個人番号): the check digit of 総務省令 第5条 and finding numbers in text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swg.dlp.mynumber import REASON, is_valid_mynumber, mynumber_check_digit
from swg.dlp.scan import DlpPolicy, scan_text
from ztcore.errors import LocalProtocolError

POLICY = DlpPolicy()
VALID = "123456789018"          # Σ P_n·Q_n = 212, 212 mod 11 = 3, 11 − 3 = 8
VALID_2 = "983205673214"        # a worked example in a public write-up of the formula
INVALID = "123456789017"        # wrong check digit


def reference_check_digit(base: str) -> int:
    """Written from the published description, independently of the module: multiply the
    eleven digits by 2,3,4,5,6,7,2,3,4,5,6 from the END, sum, take the remainder by 11;
    11 − remainder, but 0 when the remainder is 0 or 1."""
    weights_from_end = [2, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6]
    total = 0
    for position in range(11):
        total += int(base[10 - position]) * weights_from_end[position]
    remainder = total % 11
    return 0 if remainder in (0, 1) else 11 - remainder


def with_check_digit(base: str) -> str:
    return base + str(mynumber_check_digit(base))


def mynumber_count(text: str) -> int:
    verdict = scan_text(text, POLICY)
    return sum(f.count for f in verdict.findings if f.reason == REASON)


@pytest.mark.parametrize(("base", "check"), [
    ("12345678901", 8),   # Σ = 1·6+2·5+3·4+4·3+5·2+6·7+7·6+8·5+9·4+0·3+1·2 = 212 → 3 → 8
    ("98320567321", 4),
    ("00000000006", 0),   # Σ = 6·2 = 12, remainder 1 → 0
    ("00000000031", 0),   # Σ = 1·2 + 3·3 = 11, remainder 0 → 0
    ("00000000050", 7),   # Σ = 5·3 = 15, remainder 4 → 7
    ("10000000000", 5),   # P_11 has weight Q_11 = 6: remainder 6 → 5
    ("00000100000", 4),   # P_6 has weight Q_6 = 7: remainder 7 → 4
    ("00001000000", 9),   # P_7 has weight Q_7 = 2: remainder 2 → 9
])
def test_check_digit_worked_examples(base: str, check: int) -> None:
    assert mynumber_check_digit(base) == check
    assert is_valid_mynumber(base + str(check))


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_check_digit_matches_the_published_description(base: str) -> None:
    assert mynumber_check_digit(base) == reference_check_digit(base)
    valid = base + str(reference_check_digit(base))
    assert is_valid_mynumber(valid) == (base != "0" * 11)
    for wrong in range(10):
        if wrong != int(valid[-1]):
            assert not is_valid_mynumber(base + str(wrong))


@pytest.mark.parametrize("value", ["", "12345678901", "1234567890188", "12345678901a",
                                   "１２３４５６７８９０１８", "000000000000", " 23456789018"])
def test_not_twelve_ascii_digits_or_blank_is_invalid(value: str) -> None:
    assert not is_valid_mynumber(value)


def test_check_digit_needs_eleven_digits() -> None:
    with pytest.raises(LocalProtocolError):
        mynumber_check_digit("123")


@pytest.mark.parametrize("text", [
    VALID, VALID_2, f"個人番号:{VALID}です", f"番号 {VALID}\n", "1234 5678 9018", "1234-5678-9018",
    "１２３４５６７８９０１８", "１２３４　５６７８　９０１８", "１２３４－５６７８－９０１８",
    "1234ー5678ー9018",
    "1234‐5678‐9018", f"No{VALID}", f"({VALID})", f"1,{VALID},山田太郎", f"\t{VALID}\t", f"{VALID}.",
    json.dumps({"mynumber": VALID}), json.dumps({"番号": "1234 5678 9018"}, ensure_ascii=False),
    f"電話 03-1234-5678 {VALID}", f"1 {VALID}", f"{VALID} 5",
    "¹²³⁴⁵⁶⁷⁸⁹⁰¹⁸",                                   # NFKC makes superscripts digits too
])
def test_valid_my_number_in_text(text: str) -> None:
    verdict = scan_text(text, POLICY)
    assert verdict.blocked
    assert verdict.reasons == (REASON,)
    assert mynumber_count(text) == 1


@pytest.mark.parametrize("text", [
    INVALID, "1234 5678 9017", "１２３４５６７８９０１７",       # wrong check digit
    "1" + VALID, VALID + "1", "9" + VALID + "9",                    # inside a longer digit run
    "4" + VALID[:3] + " " + VALID[3:],                               # 4-3-… is no layout
    "1 1234 5678 9018", "1234 5678 9018 3", "1234-5678-9018-3456",  # a longer chain
    "1234 5678-9018", "1234  5678  9018", "12345 678 9018", "123 456 789 018",
    "03-1234-5678", "〒100-0013", "090-1234-5678", "2024-05-01 12:34:56", "1,234,567,890,18",
    "000000000000", "0000 0000 0000"
])
def test_no_my_number(text: str) -> None:
    assert mynumber_count(text) == 0


def test_sixteen_digit_card_never_yields_a_my_number() -> None:
    # 4111 1111 1111 1111 does not contain a valid My Number, so build cards that do.
    for prefix in ("4", "5"):
        found = 0
        for n in range(2000):
            head = with_check_digit(f"{prefix}{n:010d}")             # a valid My Number first
            card = head + "0000"
            for text in (card, " ".join(card[i:i + 4] for i in range(0, 16, 4)),
                         "-".join(card[i:i + 4] for i in range(0, 16, 4))):
                found += mynumber_count(text)
        assert found == 0


def test_counts_every_number_and_keeps_three_masked_samples() -> None:
    numbers = [with_check_digit(f"{n:011d}") for n in range(1, 6)]
    text = "、".join(numbers + [numbers[0]])
    verdict = scan_text(text, POLICY)
    (finding,) = verdict.findings
    assert finding.count == 6
    assert finding.masked_samples == ("0000********",)                 # duplicates folded
    other = [with_check_digit(f"{n}0000000000") for n in range(1, 6)]
    finding = scan_text(" ".join(other), POLICY).findings[0]
    assert finding.masked_samples == ("1000********", "2000********", "3000********")


def test_threshold_counts_numbers() -> None:
    from swg.dlp.scan import DetectorRule
    policy = DlpPolicy(mynumber=DetectorRule(block_at=3))
    two = f"{VALID} {VALID_2}"
    assert not scan_text(two, policy).blocked
    assert scan_text(two, policy).findings[0].count == 2
    assert scan_text(f"{two} {VALID}", policy).blocked
    assert not scan_text(VALID, DlpPolicy(mynumber=None)).findings


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=11, max_size=11),
       st.sampled_from(["{}", "{} ", "番号{}。", '{{"n": "{}"}}', "１{}"]))
def test_full_number_never_in_the_verdict(base: str, template: str) -> None:
    number = with_check_digit(base)
    for written in (number, f"{number[:4]} {number[4:8]} {number[8:]}"):
        verdict = scan_text(template.format(written), POLICY)
        assert number not in repr(verdict)
        assert written not in repr(verdict)
        assert number[4:] not in repr(verdict)
