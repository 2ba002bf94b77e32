"""The DLP scan: a `DlpPolicy`, the streaming `DlpScanner`, `scan_text` and `scan_bytes`.

Owns finding number candidates in text, applying the policy's thresholds and building the
`DlpVerdict`. Pure: the proxy shell decodes nothing and reads nothing here, it feeds bodies in
and acts on the verdict. A verdict never carries a matched value, only counts and masked samples.

How numbers are found. Text is normalised (keywords.normalise_text: NFKC, so ０-９ are digits,
the ideographic space a space, ｰ and － separators). A *chain* is a maximal run of ASCII digit
groups joined by single separators (space, hyphens and dashes, ー). A chain in one of a
detector's layouts with one kind of separator (`1234 5678 9012`) is one candidate; otherwise
each of its groups is a candidate on its own (`1,123456789018` in a CSV row, `No.1 123456789018`).
Digits next to digits are never split: a 13-digit run is not a My Number, `1234 5678 9012 3456`
is a card layout and not a My Number, and `1 1234 5678 9012` matches no layout at all.

Streaming. `DlpScanner.feed` holds back only what the next chunk could still change: the text
from the last character at which NFKC is known to be stable (at most 4096 characters, see
`_Normaliser`), the chain touching the end (compacted beyond 64 characters, see `_DigitChains`)
and one keyword window. Chunking never changes a verdict (the one exception is in
`_Normaliser`); scan_text is the scanner fed the text in slices.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from swg.dlp import cards, corporate_number, keywords, mynumber
from swg.dlp.keywords import (
    DEFAULT_KEYWORD_RULES,
    DEFAULT_MAX_MATCH_CHARS,
    DEFAULT_WINDOW_CHARS,
    KeywordMatcher,
    KeywordRule,
    normalise_text,
)
from ztcore.errors import ConfigError, LocalProtocolError

DLP_REASONS = (mynumber.REASON, corporate_number.REASON, cards.REASON, keywords.REASON)
MAX_SAMPLES = 3
SAMPLE_VISIBLE_DIGITS = 4
MAX_HELD_CHARS = 4096


@dataclass(frozen=True)
class DetectorRule:
    """A number detector switched on: block when it found at least `block_at` numbers (None:
    report the count without blocking)."""

    block_at: int | None = 1

    def __post_init__(self) -> None:
        if self.block_at is not None and self.block_at < 1:
            raise ConfigError("dlp detector block_at must be at least 1 (or null to report only)")


@dataclass(frozen=True)
class DlpPolicy:
    """Which detectors run and when they block. A detector set to None does not run.

    法人番号 are published by the 国税庁, so they are reported but do not block by default.
    """

    mynumber: DetectorRule | None = DetectorRule(1)
    corporate_number: DetectorRule | None = DetectorRule(None)
    credit_card: DetectorRule | None = DetectorRule(1)
    keywords: tuple[KeywordRule, ...] = DEFAULT_KEYWORD_RULES
    masked_samples: bool = True
    window_chars: int = DEFAULT_WINDOW_CHARS
    max_match_chars: int = DEFAULT_MAX_MATCH_CHARS

    def __post_init__(self) -> None:
        keywords.validate_rules(self.keywords, self.window_chars, self.max_match_chars)


@dataclass(frozen=True)
class DlpFinding:
    """What one detector (or keyword rule) found: how many, never which."""

    detector: str
    reason: str
    count: int
    blocking: bool
    rule: str | None = None
    masked_samples: tuple[str, ...] = ()


@dataclass(frozen=True)
class DlpVerdict:
    """`reasons` are those of the blocking findings, in detector order, without repeats."""

    blocked: bool
    reasons: tuple[str, ...]
    findings: tuple[DlpFinding, ...]
    chars_scanned: int

    @property
    def allowed(self) -> bool:
        return not self.blocked


@dataclass(frozen=True)
class _NumberDetector:
    name: str
    reason: str
    layouts: frozenset[tuple[int, ...]]
    is_valid: Callable[[str], bool]
    rule: DetectorRule


def mask(digits: str) -> str:
    """`1234********`: the first four digits for the admin, the rest starred."""
    return digits[:SAMPLE_VISIBLE_DIGITS] + "*" * max(0, len(digits) - SAMPLE_VISIBLE_DIGITS)


def _stable(char: str) -> bool:
    """NFKC of text never joins across a character for which this is True: each starts (after
    NFKC) with a starter that is not the second half of any composition. Checked over all these
    code points in tests/unit/swg/test_dlp_scan.py."""
    code = ord(char)
    return (code < 0x80 or 0x4E00 <= code <= 0x9FFF or 0x3041 <= code <= 0x3096
            or 0x30A1 <= code <= 0x30FA or code == 0x30FC or 0x3000 <= code <= 0x3002
            or 0xFF01 <= code <= 0xFF5E or 0xFF61 <= code <= 0xFF9D)   # not ﾞ ﾟ: they join


_UNSTABLE_RUN = re.compile("[^\x00-\x7f\u4e00-\u9fff\u3041-\u3096\u30a1-\u30fa\u30fc"
                           "\u3000-\u3002\uff01-\uff5e\uff61-\uff9d]*")


class _Normaliser:
    """Normalises text fed in chunks exactly as if it came whole: it holds back the text from
    the last stable character on. A run of more than MAX_HELD_CHARS unstable characters (no
    ASCII, kana or kanji at all: Hangul, Cyrillic without spaces) is let through where the
    chunk ends, so NFKC may not join across that point; that can shift the keyword windows
    and so change a keyword count, never a digit or a separator (NFKC maps those one
    character at a time)."""

    def __init__(self) -> None:
        self._held: list[str] = []
        self._held_chars = 0

    def feed(self, chunk: str) -> str:
        if not chunk:
            return ""
        if _stable(chunk[-1]):
            cut = len(chunk) - 1
        else:
            run = _UNSTABLE_RUN.match(chunk[::-1])
            cut = len(chunk) - (run.end() if run else 0) - 1
        if cut < 0 or len(chunk) - cut > MAX_HELD_CHARS:
            self._held.append(chunk)
            self._held_chars += len(chunk)
            return self.finish() if self._held_chars > MAX_HELD_CHARS else ""
        text = "".join(self._held) + chunk[:cut]
        self._held, self._held_chars = [chunk[cut:]], len(chunk) - cut
        return normalise_text(text)

    def finish(self) -> str:
        text = "".join(self._held)
        self._held, self._held_chars = [], 0
        return normalise_text(text)


# After NFKC: space (also U+3000, U+00A0), hyphen-minus (also U+FF0D), U+2010 (also U+2011),
# figure/en/em dash, horizontal bar, minus sign, ー (also ｰ): what people put between digits.
_SEPARATORS = " -\u2010\u2012\u2013\u2014\u2015\u2212\u30fc"
_SEP = f"[{re.escape(_SEPARATORS)}]"
_DIGITS = frozenset("0123456789")
# No layout has fewer digits than a My Number.
_MIN_DIGITS = min(sum(layout) for module in (mynumber, corporate_number, cards) for layout in module.LAYOUTS)
# The maximal chains with at least _MIN_DIGITS digits (all shorter ones are skipped in C).
# The first digit comes before the lookbehinds so that the engine skips to digits in C.
_LONG_CHAIN = re.compile(
    f"[0-9](?<![0-9][0-9])(?<![0-9]{_SEP}[0-9])(?:{_SEP}?[0-9]){{{_MIN_DIGITS - 1},}}")
# A chain read backwards from the end of the text: where a chain touching the end starts.
_REVERSED_TAIL = re.compile(f"{_SEP}?[0-9]+(?:{_SEP}[0-9]+)*")
_GROUP = re.compile("[0-9]+")
_STRIP_DIGITS = str.maketrans("", "", "0123456789")
_SHAPES = frozenset(layout for module in (mynumber, corporate_number, cards)
                    for layout in module.LAYOUTS if len(layout) > 1)
_MAX_GROUP = max(max(layout) for module in (mynumber, corporate_number, cards) for layout in module.LAYOUTS)
# A chain longer than this matches no layout (the longest is 19 digits + 4 separators).
_MAX_PENDING_CHARS = 64
# Stands for the dropped head of an over-long chain: 20 digits are no candidate on their own
# and put the chain in no layout, which is all the head could still have done.
_HEAD = "0" * (_MAX_GROUP + 1)


class _DigitChains:
    """Finds the chains in normalised text fed in pieces and counts valid numbers per detector.

    Keeps back only the chain touching the end of what was fed (the next piece may extend it),
    compacted to at most _MAX_PENDING_CHARS characters.
    """

    def __init__(self, detectors: tuple[_NumberDetector, ...], keep_samples: bool) -> None:
        self.detectors = detectors
        self.counts = [0] * len(detectors)
        self.samples: list[list[str]] = [[] for _ in detectors]
        self._keep_samples = keep_samples
        self._pending = ""

    def feed(self, text: str) -> None:
        buffer = self._pending + text if self._pending else text
        self._pending = ""
        size = len(buffer)
        open_from = size              # where a chain touching the end starts, when it is short
        last = buffer[-1:]
        if last in _DIGITS or (last and last in _SEPARATORS and buffer[-2:-1] in _DIGITS):
            # Two characters beyond the limit: a chain cut by the window's edge then reaches
            # past the limit even when the edge falls just after one of its separators.
            window = buffer[-_MAX_PENDING_CHARS - 2:][::-1]
            reach = _REVERSED_TAIL.match(window)
            length = reach.end() if reach else 0
            if length <= _MAX_PENDING_CHARS:
                open_from = size - length
            else:
                open_from = -1            # longer: it is the last long chain, compacted below
        for match in _LONG_CHAIN.finditer(buffer, 0, size if open_from < 0 else open_from):
            if open_from < 0 and match.end() >= size - 1:
                self._pending = match.group() + buffer[match.end():]
                self._compact()
                return
            self._chain(match.group())
        if open_from >= 0:
            self._pending = buffer[open_from:]

    def finish(self) -> None:
        pending, self._pending = self._pending.rstrip(_SEPARATORS), ""
        if pending:
            self._chain(pending)

    def _compact(self) -> None:
        """Evaluates the finished groups of an over-long chain one by one (as the whole chain
        would be) and keeps only _HEAD and the last, possibly growing, group."""
        pending = self._pending
        trailing = pending[-1] if pending[-1] in _SEPARATORS else ""
        groups = _GROUP.findall(pending)
        for group in groups[:-1]:
            self._chain(group)
        last = groups[-1]
        if len(groups) == 1 or len(last) > _MAX_GROUP:
            self._pending = _HEAD + trailing
        else:
            joint = pending[len(pending) - len(trailing) - len(last) - 1]
            self._pending = _HEAD + joint + last + trailing

    def _chain(self, chain: str) -> None:
        groups = _GROUP.findall(chain)
        shape = tuple(len(group) for group in groups)
        if shape not in _SHAPES and max(shape) < _MIN_DIGITS:
            return                    # e.g. a phone number 03-1234-5678: nothing to check
        separators = chain.translate(_STRIP_DIGITS)
        uniform = len(set(separators)) == 1
        for index, detector in enumerate(self.detectors):
            if len(groups) > 1 and uniform and shape in detector.layouts:
                candidates = ["".join(groups)]
            else:
                candidates = [group for group in groups if (len(group),) in detector.layouts]
            for candidate in candidates:
                if detector.is_valid(candidate):
                    self.counts[index] += 1
                    sample = mask(candidate)
                    kept = self.samples[index]
                    if self._keep_samples and len(kept) < MAX_SAMPLES and sample not in kept:
                        kept.append(sample)


def _number_detectors(policy: DlpPolicy) -> tuple[_NumberDetector, ...]:
    table = ((mynumber, mynumber.is_valid_mynumber, policy.mynumber),
             (corporate_number, corporate_number.is_valid_corporate_number, policy.corporate_number),
             (cards, cards.is_valid_card, policy.credit_card))
    return tuple(_NumberDetector(module.NAME, module.REASON, module.LAYOUTS, valid, rule)
                 for module, valid, rule in table if rule is not None)


def _reached(count: int, block_at: int | None) -> bool:
    return block_at is not None and count >= block_at


class DlpScanner:
    """Sans-IO scanner: `feed` chunks of text, then `finish` for the verdict.

    Memory is bounded (see the module docstring) whatever the body size; `blocked` may be
    checked between chunks to stop an upload early (it only ever turns True).
    """

    def __init__(self, policy: DlpPolicy) -> None:
        self._policy = policy
        self._normaliser = _Normaliser()
        detectors = _number_detectors(policy)
        self._numbers = _DigitChains(detectors, policy.masked_samples) if detectors else None
        self._keywords = (KeywordMatcher(policy.keywords, policy.window_chars, policy.max_match_chars)
                          if policy.keywords else None)
        self._chars = 0
        self._verdict: DlpVerdict | None = None

    @property
    def blocked(self) -> bool:
        """True once a threshold is reached by what was fed so far."""
        numbers = self._numbers
        if numbers and any(_reached(count, detector.rule.block_at)
                           for count, detector in zip(numbers.counts, numbers.detectors)):
            return True
        found = self._keywords.counts if self._keywords else ()
        return any(_reached(count, rule.block_at) for count, rule in zip(found, self._policy.keywords))

    def feed(self, chunk: str) -> None:
        if self._verdict is not None:
            raise LocalProtocolError("DlpScanner.feed() after finish()")
        self._chars += len(chunk)
        self._push(self._normaliser.feed(chunk))

    def finish(self) -> DlpVerdict:
        """The verdict over everything fed; calling it again returns the same verdict."""
        if self._verdict is None:
            self._push(self._normaliser.finish())
            findings: list[DlpFinding] = []
            if self._numbers:
                self._numbers.finish()
                for index, detector in enumerate(self._numbers.detectors):
                    count = self._numbers.counts[index]
                    if count:
                        findings.append(DlpFinding(detector.name, detector.reason, count,
                                                   _reached(count, detector.rule.block_at),
                                                   masked_samples=tuple(self._numbers.samples[index])))
            if self._keywords:
                for rule, count in zip(self._policy.keywords, self._keywords.finish()):
                    if count:
                        findings.append(DlpFinding(keywords.NAME, keywords.REASON, count,
                                                   _reached(count, rule.block_at), rule=rule.name))
            reasons = tuple(dict.fromkeys(f.reason for f in findings if f.blocking))
            self._verdict = DlpVerdict(bool(reasons), reasons, tuple(findings), self._chars)
        return self._verdict

    def _push(self, text: str) -> None:
        if text:
            if self._numbers:
                self._numbers.feed(text)
            if self._keywords:
                self._keywords.feed(text)


# scan_text feeds slices of this size: the same verdict (chunking never changes one), fewer
# large temporary copies than one feed of the whole text.
_SLICE_CHARS = 65_536


def scan_text(text: str, policy: DlpPolicy) -> DlpVerdict:
    """The verdict on a whole text."""
    scanner = DlpScanner(policy)
    for start in range(0, len(text), _SLICE_CHARS):
        scanner.feed(text[start:start + _SLICE_CHARS])
    return scanner.finish()


# ASCII-compatible labels only: a body labelled UTF-16 or UTF-7 could otherwise hide ASCII
# digits from the scan while the receiver reads them as ASCII. Shift_JIS labels decode as
# CP932 (what Windows wrote and what browsers do per the WHATWG Encoding Standard).
_HINTS = {"utf-8": "utf-8", "utf8": "utf-8", "us-ascii": "utf-8", "ascii": "utf-8",
          "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
          "ms_kanji": "cp932", "windows-31j": "cp932", "cp932": "cp932",
          "euc-jp": "euc_jp", "eucjp": "euc_jp", "x-euc-jp": "euc_jp",
          "iso-2022-jp": "iso2022_jp", "iso-8859-1": "cp1252", "latin1": "cp1252",
          "windows-1252": "cp1252"}
# A codec whose only error is a character cut off by the end of the data (a truncated body)
# still counts as the right one.
_TRUNCATION_BYTES = 3


def decode_text(data: bytes, charset_hint: str | None) -> tuple[str, str]:
    """(text, codec): the hint if it decodes, then UTF-8, then EUC-JP, then CP932 with
    replacement characters. EUC-JP is tried strictly before CP932 because EUC-JP bytes also
    decode as CP932 (as half-width katakana mojibake), whereas CP932 kana and kanji are
    never valid EUC-JP."""
    hinted = _HINTS.get((charset_hint or "").strip().strip('"').lower())
    for codec in dict.fromkeys(c for c in (hinted, "utf-8", "euc_jp") if c):
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError as exc:
            if exc.start >= len(data) - _TRUNCATION_BYTES:
                return data.decode(codec, errors="replace"), codec
    return data.decode("cp932", errors="replace"), "cp932"


def scan_bytes(data: bytes, charset_hint: str | None, policy: DlpPolicy) -> DlpVerdict:
    """The verdict on a body in UTF-8, Shift_JIS/CP932 or EUC-JP (see decode_text)."""
    text, _codec = decode_text(data, charset_hint)
    return scan_text(text, policy)
