"""The DLP scan: keyword rules, the policy, the verdict, streaming and decoding."""

from __future__ import annotations

import re
import tracemalloc
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swg.dlp import cards, corporate_number, mynumber
from swg.dlp.keywords import DEFAULT_KEYWORD_RULES, KeywordRule, regex_problem
from swg.dlp.scan import (
    _UNSTABLE_RUN,
    DLP_REASONS,
    DetectorRule,
    DlpPolicy,
    DlpScanner,
    DlpVerdict,
    _stable,
    decode_text,
    scan_bytes,
    scan_text,
)
from ztcore.errors import ConfigError, LocalProtocolError

MYNUMBER = "123456789018"
CARD = "4111111111111111"
NTA = "7000012050002"
POLICY = DlpPolicy()
# Small windows so that short generated texts cross many window boundaries.
SMALL = DlpPolicy(
    corporate_number=DetectorRule(1), window_chars=8, max_match_chars=6,
    keywords=DEFAULT_KEYWORD_RULES + (KeywordRule("職員コード", r"[A-Z]{2}\d{3}", regex=True, block_at=2),
                                      KeywordRule("secret", "secret", ignore_case=True, block_at=None)))


def chunked(text: str, cuts: list[int], policy: DlpPolicy) -> DlpVerdict:
    scanner = DlpScanner(policy)
    start = 0
    for cut in sorted(min(c, len(text)) for c in cuts):
        scanner.feed(text[start:cut])
        start = cut
    scanner.feed(text[start:])
    return scanner.finish()


def keyword_counts(verdict: DlpVerdict) -> dict[str, int]:
    return {f.rule or "": f.count for f in verdict.findings if f.detector == "keyword"}


# --- reasons, verdict ------------------------------------------------------------------------

def test_reasons_are_the_kebab_case_constants() -> None:
    assert DLP_REASONS == ("dlp-mynumber", "dlp-corporate-number", "dlp-credit-card", "dlp-keyword")


def test_verdict_reasons_in_detector_order_without_repeats() -> None:
    text = f"部外秘 {CARD} マル秘 {MYNUMBER} {NTA}"
    verdict = scan_text(text, POLICY)
    assert verdict.blocked and not verdict.allowed
    assert verdict.reasons == ("dlp-mynumber", "dlp-credit-card", "dlp-keyword")
    assert [(f.detector, f.rule, f.count, f.blocking) for f in verdict.findings] == [
        ("mynumber", None, 1, True), ("corporate-number", None, 1, False), ("credit-card", None, 1, True),
        ("keyword", "マル秘", 1, True), ("keyword", "部外秘", 1, True)]
    assert verdict.chars_scanned == len(text)


def test_clean_text_is_allowed_with_no_findings() -> None:
    verdict = scan_text("令和6年度 住民記録システム更新のお知らせ。電話 03-1234-5678、〒100-0013", POLICY)
    assert verdict == DlpVerdict(False, (), (), verdict.chars_scanned)


def test_masked_samples_can_be_switched_off() -> None:
    verdict = scan_text(MYNUMBER, DlpPolicy(masked_samples=False))
    assert verdict.findings[0].masked_samples == ()


# --- keywords --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "rule"), [
    ("この文書はマル秘です", "マル秘"), ("㊙ 会議資料", "マル秘"), ("ﾏﾙ秘", "マル秘"), ("部外秘", "部外秘"),
    ("取扱注意", "取扱注意"), ("取り扱い注意", "取扱注意"), ("取扱い注意", "取扱注意"),
])
def test_default_keywords(text: str, rule: str) -> None:
    verdict = scan_text(text, POLICY)
    assert keyword_counts(verdict) == {rule: 1}
    assert verdict.reasons == ("dlp-keyword",)


def test_keyword_thresholds_per_rule() -> None:
    policy = DlpPolicy(keywords=(KeywordRule("部外秘", "部外秘", block_at=3),
                                 KeywordRule("内部", "内部資料", block_at=None),
                                 KeywordRule("職員番号", r"職員番号\s*[0-9]{6}", regex=True)))
    two = "部外秘 部外秘 内部資料"
    verdict = scan_text(two, policy)
    assert not verdict.blocked
    assert keyword_counts(verdict) == {"部外秘": 2, "内部": 1}
    assert scan_text(two + " 部外秘", policy).blocked
    assert scan_text("職員番号 123456", policy).reasons == ("dlp-keyword",)
    assert not scan_text("職員番号 12345", policy).findings


def test_ignore_case_and_full_width_keywords() -> None:
    policy = DlpPolicy(keywords=(KeywordRule("confidential", "Confidential", ignore_case=True),))
    assert keyword_counts(scan_text("CONFIDENTIAL / ｃｏｎｆｉｄｅｎｔｉａｌ", policy)) == {"confidential": 2}
    exact = DlpPolicy(keywords=(KeywordRule("confidential", "Confidential"),))
    assert keyword_counts(scan_text("CONFIDENTIAL Confidential", exact)) == {"confidential": 1}


def test_keyword_across_a_window_boundary_counts_once() -> None:
    policy = DlpPolicy(window_chars=8, max_match_chars=4)
    for offset in range(20):
        text = "あ" * offset + "マル秘" + "い" * 5
        assert keyword_counts(scan_text(text, policy)) == {"マル秘": 1}, offset
    assert keyword_counts(scan_text("マル秘" * 9, policy)) == {"マル秘": 9}


def test_regex_matches_are_bounded_by_the_window() -> None:
    rule = KeywordRule("秘密", "秘.{0,40}密", regex=True)
    policy = DlpPolicy(keywords=(rule,), window_chars=8, max_match_chars=4)
    assert keyword_counts(scan_text("秘ああ密", policy)) == {"秘密": 1}
    assert keyword_counts(scan_text("秘" + "あ" * 30 + "密", policy)) == {}      # longer than the window
    assert keyword_counts(scan_text("秘" + "あ" * 30 + "密", DlpPolicy(keywords=(rule,)))) == {"秘密": 1}


@pytest.mark.parametrize(("rule", "message"), [
    (dict(name="bad", pattern="([0-9]", regex=True), "keyword rule 'bad': invalid regular expression"),
    (dict(name="nested", pattern=r"x(\d+)+y", regex=True), "refused: a repetition inside"),
    (dict(name="nested2", pattern=r"b(?:a{1,8})*c", regex=True), "refused: a repetition inside"),
    (dict(name="empty", pattern=r"x*", regex=True), "can match the empty string"),
    (dict(name="look", pattern=r"(?=x)", regex=True), "can match the empty string"),
    (dict(name="backref", pattern=r"(a)b\1", regex=True), "back-references"),
    (dict(name="mail", pattern=r"\w+@\w+\.jp", regex=True), "starts with an unbounded repetition"),
    (dict(name="dotstar", pattern=r"(?:x|.*)秘", regex=True), "starts with an unbounded repetition"),
    (dict(name="zero", pattern="秘", block_at=0), "block_at must be at least 1"),
    (dict(name=" ", pattern="秘"), "name must not be empty"),
    (dict(name="blank", pattern=""), "pattern must not be empty"),
    (dict(name="long", pattern="x" * 1001, regex=True), "longer than 1000"),
])
def test_bad_keyword_rule_is_a_config_error_naming_it(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KeywordRule(**rule)  # type: ignore[arg-type]


def test_safe_regexes_are_accepted() -> None:
    for pattern in (r"(\d{4}[- ]?){3}", r"(?:部外|関係者外)秘", r"[A-Z]{2}\d{3}", r"秘密.*", r"c(?:ab)+",
                    r"\w{1,64}@city\.example\.lg\.jp"):
        assert regex_problem(pattern) is None, pattern


def test_bad_policy_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"dlp.keywords\[1\] \(a\): duplicate"):
        DlpPolicy(keywords=(KeywordRule("a", "x"), KeywordRule("a", "y")))
    with pytest.raises(ConfigError, match=r"dlp.keywords\[0\] \(long\): keyword longer than"):
        DlpPolicy(keywords=(KeywordRule("long", "秘" * 20),), max_match_chars=10)
    with pytest.raises(ConfigError, match="window_chars"):
        DlpPolicy(window_chars=0)
    with pytest.raises(ConfigError, match="max_match_chars"):
        DlpPolicy(max_match_chars=0)
    with pytest.raises(ConfigError, match="block_at"):
        DetectorRule(0)


# --- normalisation and streaming -------------------------------------------------------------

def composition_second_halves() -> set[str]:
    halves = {chr(c) for c in range(0x1161, 0x1176)} | {chr(c) for c in range(0x11A8, 0x11C3)}  # Hangul V, T
    for code in range(0x110000):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            halves.add(chr(int(parts[1], 16)))
    return halves


def test_nfkc_never_joins_across_a_stable_character() -> None:
    halves = composition_second_halves()
    stable = [chr(c) for c in range(0x110000) if _stable(chr(c))]
    assert len(stable) > 20_000
    assert all((_UNSTABLE_RUN.match(chr(c)).end() == 0) == _stable(chr(c))  # type: ignore[union-attr]
               for c in range(0x110000))
    for char in stable:
        first = unicodedata.normalize("NFKC", char)[0]
        assert unicodedata.combining(first) == 0 and first not in halves, hex(ord(char))


@settings(max_examples=300)
@given(st.text(max_size=6), st.sampled_from("a0 -マ秘０ー。、ｱ\x00"), st.text(max_size=6))
def test_normalising_the_parts_equals_normalising_the_whole(before: str, stable: str, after: str) -> None:
    assert _stable(stable)
    whole = unicodedata.normalize("NFKC", before + stable + after)
    assert whole == unicodedata.normalize("NFKC", before) + unicodedata.normalize("NFKC", stable + after)


PIECES = st.sampled_from([
    MYNUMBER, "1234 5678 9018", "１２３４　５６７８　９０１８", "1234-5678-9018", CARD, "4111 1111 1111 1111",
    NTA, "7-0000-1205-0002", "983205673214", "0", "1", "9", "12", " ", "-", "ー", "　", "０", "５", "－",
    "マル秘", "ﾏﾙ秘", "ﾏﾙ", "秘", "㊙", "部外秘", "取り扱い注意", "AB123", "Secret", "ｶ", "ﾞ", "e", "\u0301",
    "가", "\u1161", "\n", "、", "番号", "x", "1 " * 40, "9" * 70])
TEXTS = st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.lists(st.integers(0, 600), max_size=8), st.sampled_from([POLICY, SMALL]))
def test_any_chunking_gives_the_verdict_of_the_whole_text(text: str, cuts: list[int],
                                                           policy: DlpPolicy) -> None:
    assert chunked(text, cuts, policy) == scan_text(text, policy)


def test_split_at_every_position() -> None:
    text = ("番号 1234 5678 9018、" + "1 " * 40 + MYNUMBER + " 部外秘 ４１１１－１１１１－１１１１－１１１１ "
            + "9" * 80 + " " + NTA + " ﾏﾙ秘 取扱い注意 AB123 CD456 " + "1234-5678-9018-3456")
    for policy in (POLICY, SMALL):
        whole = scan_text(text, policy)
        assert whole.blocked and len(whole.findings) >= 5
        for position in range(len(text) + 1):
            assert chunked(text, [position], policy) == whole, position
        assert chunked(text, list(range(len(text))), policy) == whole      # one character at a time


def reference_number_counts(text: str) -> dict[str, int]:
    """The chain rules of the module docstring, written the plain way: normalise the whole text,
    take every maximal chain, apply the layouts."""
    separators = " -\u2010\u2012\u2013\u2014\u2015\u2212\u30fc"
    normalised = unicodedata.normalize("NFKC", text.replace("\u3299", "マル秘"))
    counts: dict[str, int] = {}
    for chain in re.finditer(f"[0-9]+(?:[{re.escape(separators)}][0-9]+)*", normalised):
        groups = re.findall("[0-9]+", chain.group())
        shape = tuple(len(group) for group in groups)
        one_separator = len(set(re.sub("[0-9]", "", chain.group()))) == 1
        for module, valid in ((mynumber, mynumber.is_valid_mynumber),
                              (corporate_number, corporate_number.is_valid_corporate_number),
                              (cards, cards.is_valid_card)):
            if len(groups) > 1 and one_separator and shape in module.LAYOUTS:
                candidates = ["".join(groups)]
            else:
                candidates = [group for group in groups if (len(group),) in module.LAYOUTS]
            found = sum(1 for candidate in candidates if valid(candidate))
            if found:
                counts[module.NAME] = counts.get(module.NAME, 0) + found
    return counts


DIGITISH = st.lists(st.one_of(st.sampled_from(list("0123456789") * 4 + list(" -ー－　x\n") + ["  ", "--"]),
                              PIECES), max_size=120).map("".join)


@settings(max_examples=300, deadline=None)
@given(DIGITISH, st.lists(st.integers(0, 900), max_size=6))
def test_numbers_match_a_plain_reference_implementation(text: str, cuts: list[int]) -> None:
    policy = DlpPolicy(corporate_number=DetectorRule(1), keywords=())
    verdict = chunked(text, cuts, policy)
    assert {f.detector: f.count for f in verdict.findings} == reference_number_counts(text)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.lists(st.integers(0, 100), max_size=5))
def test_random_text_never_raises(text: str, cuts: list[int]) -> None:
    for policy in (POLICY, SMALL):
        assert chunked(text, cuts, policy) == scan_text(text, policy)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([MYNUMBER, "983205673214", CARD, "5555555555554444", NTA]), min_size=1,
                max_size=4), st.sampled_from([" ", "、", "\n", ",", "x"]), st.lists(st.integers(0, 80)))
def test_no_full_number_in_the_verdict(numbers: list[str], glue: str, cuts: list[int]) -> None:
    text = glue.join(numbers)
    verdict = chunked(text, cuts, DlpPolicy(corporate_number=DetectorRule(1)))
    assert verdict.blocked
    for number in numbers:
        assert number not in repr(verdict) and number[4:] not in repr(verdict)


def test_scanner_lifecycle() -> None:
    scanner = DlpScanner(POLICY)
    scanner.feed("資料 ")
    assert not scanner.blocked
    scanner.feed(MYNUMBER + " です")
    assert scanner.blocked                     # known before the end: the upload can stop here
    verdict = scanner.finish()
    assert scanner.finish() is verdict
    with pytest.raises(LocalProtocolError):
        scanner.feed("more")


def test_blocked_turns_true_on_keyword_windows_too() -> None:
    scanner = DlpScanner(DlpPolicy(window_chars=8, max_match_chars=4))
    scanner.feed("部外秘" + "あ" * 20)
    assert scanner.blocked


def test_all_detectors_off() -> None:
    policy = DlpPolicy(mynumber=None, corporate_number=None, credit_card=None, keywords=())
    text = f"{MYNUMBER} マル秘 {CARD}"
    assert scan_text(text, policy) == DlpVerdict(False, (), (), len(text))


ROUNDS = 600


def test_memory_stays_bounded_while_streaming() -> None:
    pieces = ["9" * 4096, ("1 " * 2048), "가" * 4096, "あ" * 4096, "1234 5678 90", ("部外秘" * 1365)]
    scanner = DlpScanner(POLICY)
    tracemalloc.start()
    try:
        for index in range(ROUNDS):                     # 2.4M characters, ~6 MB as UTF-8
            scanner.feed(pieces[index % len(pieces)])
        scanner.feed(" " + MYNUMBER + " ")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    verdict = scanner.finish()
    assert verdict.reasons == ("dlp-mynumber", "dlp-keyword")
    counts = {f.rule or f.detector: f.count for f in verdict.findings}
    assert counts["mynumber"] == 1
    assert counts["部外秘"] == 1365 * (ROUNDS // len(pieces))


# --- bytes -----------------------------------------------------------------------------------

JAPANESE = "個人番号 １２３４５６７８９０１８ 部外秘"


@pytest.mark.parametrize(("encoding", "hint", "codec"), [
    ("utf-8", None, "utf-8"), ("utf-8", "UTF-8", "utf-8"), ("cp932", None, "cp932"),
    ("cp932", "Shift_JIS", "cp932"), ("cp932", "windows-31j", "cp932"), ("euc_jp", None, "euc_jp"),
    ("euc_jp", "EUC-JP", "euc_jp"), ("iso2022_jp", "ISO-2022-JP", "iso2022_jp"),
    ("utf-8", "utf-16", "utf-8"),                     # labels that could hide ASCII are ignored
    ("cp932", "x-unknown", "cp932"), ("utf-8", '"utf-8"', "utf-8"),
])
def test_scan_bytes_decodes_japanese_charsets(encoding: str, hint: str | None, codec: str) -> None:
    data = JAPANESE.encode(encoding)
    text, used = decode_text(data, hint)
    assert (text, used) == (JAPANESE, codec)
    verdict = scan_bytes(data, hint, POLICY)
    assert verdict.reasons == ("dlp-mynumber", "dlp-keyword")


def test_shift_jis_label_reads_windows_extensions() -> None:
    data = "①番号 123456789018".encode("cp932")        # ① is NEC's, not in plain Shift_JIS
    assert decode_text(data, "shift_jis") == ("①番号 123456789018", "cp932")


def test_truncated_utf8_is_still_utf8() -> None:
    data = f"番号 {MYNUMBER} 終わり".encode()[:-1]
    text, codec = decode_text(data, None)
    assert codec == "utf-8" and text.endswith("終わ\ufffd")
    assert scan_bytes(data, None, POLICY).blocked


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([None, "", "utf-8", "shift_jis", "euc-jp", "utf-16", "rot13",
                                                  "base64", "utf-7", "iso-2022-jp", "latin1"]))
def test_random_bytes_never_raise(data: bytes, hint: str | None) -> None:
    verdict = scan_bytes(data, hint, POLICY)
    assert isinstance(verdict, DlpVerdict)
