"""Keyword and regular-expression rules (マル秘, 部外秘, 取扱注意, custom patterns) and their counter.

Owns the rule model (validated and compiled once, at load time), the text normalisation every
DLP detector matches against, and `KeywordMatcher`, a sans-IO counter over text fed in pieces.
It must not keep matched text: only counts leave it.

Regular expressions never run over a whole body. Window k covers the normalised characters
[k·window_chars, k·window_chars + window_chars + max_match_chars) and counts the matches that
start in its first window_chars characters, so:

- the work one pattern can do on one window is bounded by the window's length (by default
  1024 + 256 characters), not by the body's size: a pattern that backtracks (`秘.*密` over a
  line of 秘秘秘…) costs at most about body × window instead of body², 1.5 s per million such
  characters with the default window against 3.9 s with a 4096-character one;
- a match longer than max_match_chars may be cut short or missed, and `^`, `$`, `\\b` and
  lookarounds see the window's edges; the windows depend only on the text, never on how it
  was chunked, so a streamed body and the same body scanned whole give the same counts;
- what the window cannot bound is refused at load time: exponential backtracking (a repetition
  inside an unbounded repetition: `(a+)+`, `(a{1,8})+`; back-references), and a pattern that
  starts with an unbounded repetition (`\\w+@…`, `.*秘`): retried from every character, it
  costs the square of the window on ordinary text, not only on hostile text (`\\w+@\\w+`
  takes 90 ms per 4 KB of Japanese prose); bounded or literal-first forms (`\\w{1,64}@…`,
  `秘.*密`) stay linear on ordinary text.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from ztcore.errors import ConfigError

NAME = "keyword"
REASON = "dlp-keyword"
DEFAULT_WINDOW_CHARS = 1024
DEFAULT_MAX_MATCH_CHARS = 256
MAX_PATTERN_CHARS = 1000
# NFKC folds the stamp ㊙ (U+3299) to a bare 秘, which would lose the マル秘 it stands for.
_BEFORE_NFKC = {"\u3299": "マル秘"}

# The stdlib's own pattern parser (re._parser since 3.11, no public equivalent): the only
# faithful view of a pattern's structure. Imported by name so that mypy sees plain modules.
_PARSER = importlib.import_module("re._parser")
_UNBOUNDED = int(importlib.import_module("re._constants").MAXREPEAT)
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


def normalise_text(text: str) -> str:
    """The form every detector matches: ㊙ spelt out, then NFKC (full-width digits and letters,
    half-width katakana and the ideographic space become their ordinary forms)."""
    for stamp, spelt in _BEFORE_NFKC.items():
        if stamp in text:
            text = text.replace(stamp, spelt)
    return unicodedata.normalize("NFKC", text)


@dataclass(frozen=True)
class KeywordRule:
    """One keyword (`regex=False`, matched literally after normalisation) or regular expression.

    `block_at`: block when the rule matched at least this many times; None reports only.
    """

    name: str
    pattern: str
    regex: bool = False
    block_at: int | None = 1
    ignore_case: bool = False
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)
    literal: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        label = f"keyword rule {self.name!r}"
        if not self.name.strip():
            raise ConfigError("keyword rule: name must not be empty")
        if not self.pattern:
            raise ConfigError(f"{label}: pattern must not be empty")
        if len(self.pattern) > MAX_PATTERN_CHARS:
            raise ConfigError(f"{label}: pattern longer than {MAX_PATTERN_CHARS} characters")
        if self.block_at is not None and self.block_at < 1:
            raise ConfigError(f"{label}: block_at must be at least 1 (or null to report only)")
        source = normalise_text(self.pattern)
        flags = re.IGNORECASE if self.ignore_case else 0
        if not self.regex:
            object.__setattr__(self, "compiled", re.compile(re.escape(source), flags))
            object.__setattr__(self, "literal", None if self.ignore_case else source)
            return
        try:
            compiled = re.compile(source, flags)
        except re.error as exc:
            raise ConfigError(f"{label}: invalid regular expression {self.pattern!r}: {exc}") from None
        problem = regex_problem(source, flags)
        if problem:
            raise ConfigError(f"{label}: regular expression {self.pattern!r} refused: {problem}")
        object.__setattr__(self, "compiled", compiled)
        object.__setattr__(self, "literal", None)

    @property
    def max_literal_chars(self) -> int:
        """The length of a literal keyword once normalised (0 for a regular expression)."""
        return 0 if self.regex else len(normalise_text(self.pattern))


def regex_problem(source: str, flags: int = 0) -> str | None:
    """Why `source` could backtrack exponentially, or None. A heuristic, not a proof: the
    window limit bounds what slips through to polynomial work on a bounded window."""
    parsed = _PARSER.parse(source, flags)
    if parsed.getwidth()[0] == 0:
        return "it can match the empty string"
    if _starts_unbounded(parsed):
        return ("it starts with an unbounded repetition, tried again from every character "
                "(bound it, e.g. \\w{1,64}@ instead of \\w+@, or start with a literal)")
    return _walk(parsed, False)


def _starts_unbounded(subpattern: object) -> bool:
    for op, value in getattr(subpattern, "data", ()):
        name = str(op)
        if name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue                                  # zero-width: the next item comes first
        if name in _REPEATS:
            low, high, body = value
            if high == _UNBOUNDED or _starts_unbounded(body):
                return True
            if low == 0:
                continue                              # optional: the next item may come first
            return False
        if name == "SUBPATTERN":
            return _starts_unbounded(value[-1])
        if name == "BRANCH":
            return any(_starts_unbounded(branch) for branch in value[1])
        return False
    return False


def _children(value: object) -> Iterator[object]:
    if hasattr(value, "data"):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _children(item)


def _walk(subpattern: object, inside_unbounded: bool) -> str | None:
    for op, value in getattr(subpattern, "data", ()):
        name = str(op)
        if name.startswith("GROUPREF"):
            return "back-references are not allowed"
        if name in _REPEATS:
            low, high, body = value
            if inside_unbounded and high > 1 and high != low:
                return "a repetition inside an unbounded repetition (write e.g. \\d{4} instead of \\d+)"
            problem = _walk(body, inside_unbounded or high == _UNBOUNDED)
        else:
            problem = next((p for child in _children(value) if (p := _walk(child, inside_unbounded))),
                           None)
        if problem:
            return problem
    return None


DEFAULT_KEYWORD_RULES: tuple[KeywordRule, ...] = (
    KeywordRule("マル秘", "マル秘"),
    KeywordRule("部外秘", "部外秘"),
    KeywordRule("取扱注意", "取り?扱い?注意", regex=True),
)


def validate_rules(rules: tuple[KeywordRule, ...], window_chars: int, max_match_chars: int) -> None:
    """The checks that need the whole rule list and the window: a ConfigError naming the field."""
    if window_chars < 1:
        raise ConfigError("dlp.window_chars must be at least 1")
    if max_match_chars < 1:
        raise ConfigError("dlp.max_match_chars must be at least 1")
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.name in seen:
            raise ConfigError(f"dlp.keywords[{index}] ({rule.name}): duplicate rule name")
        seen.add(rule.name)
        if rule.max_literal_chars > max_match_chars:
            raise ConfigError(f"dlp.keywords[{index}] ({rule.name}): keyword longer than "
                              f"dlp.max_match_chars ({max_match_chars})")


class KeywordMatcher:
    """Counts each rule's matches in normalised text fed in pieces.

    Keeps at most one window (window_chars + max_match_chars characters) plus the piece being
    fed; the windows are cut at fixed offsets of the text, so chunking never changes a count.
    """

    def __init__(self, rules: tuple[KeywordRule, ...], window_chars: int = DEFAULT_WINDOW_CHARS,
                 max_match_chars: int = DEFAULT_MAX_MATCH_CHARS) -> None:
        validate_rules(rules, window_chars, max_match_chars)
        self._rules = rules
        self._step = window_chars
        self._span = window_chars + max_match_chars
        self._counts = [0] * len(rules)
        self._parts: list[str] = []
        self._size = 0

    @property
    def counts(self) -> tuple[int, ...]:
        """The counts of the windows finished so far, per rule (never decrease)."""
        return tuple(self._counts)

    def feed(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size < self._span:
            return
        buffer = "".join(self._parts)
        start = 0
        while len(buffer) - start >= self._span:
            self._window(buffer[start:start + self._span])
            start += self._step
        rest = buffer[start:]
        self._parts = [rest]
        self._size = len(rest)

    def finish(self) -> tuple[int, ...]:
        """Counts the last, shorter windows; the matcher is spent afterwards."""
        buffer = "".join(self._parts)
        for start in range(0, len(buffer), self._step):
            self._window(buffer[start:start + self._span])
        self._parts, self._size = [], 0
        return tuple(self._counts)

    def _window(self, window: str) -> None:
        step = self._step
        for index, rule in enumerate(self._rules):
            if rule.literal is not None:
                end = min(len(window), step + len(rule.literal) - 1)
                self._counts[index] += window.count(rule.literal, 0, end)
                continue
            found = 0
            for match in rule.compiled.finditer(window):
                if match.start() >= step:
                    break
                found += 1
            self._counts[index] += found
