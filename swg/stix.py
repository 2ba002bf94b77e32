"""STIX 2.1 bundles and patterns: the indicators a bundle holds, as comparisons that each alone
satisfy their pattern.

Owns what STIX means: a bundle (a JSON object with `"type": "bundle"` and a list of `objects`;
anything else is a StixError), `indicator` objects with `pattern_type` `stix` (absent, as in STIX
2.0, reads as `stix`), `revoked`, `valid_until` at or before `now` (`valid_from` is not checked: a
clock behind the publisher's would otherwise drop fresh indicators), `created_by_ref` resolved to
the name of an `identity` in the bundle; and the pattern grammar (section 9; a tokenizer and a
recursive-descent parser with length and depth limits, keywords in any case). Of a pattern it
keeps the equality comparisons (`=`, or `IN (...)`) joined by OR, through brackets and
parentheses: each alone satisfies the whole pattern, so a matcher can load them as separate
indicators and never add a false hit. A branch that needs more than one observation or
comparison (AND, FOLLOWEDBY), a qualified observation (WITHIN, REPEATS, START/STOP) and any other
operator (`!=`, `LIKE`, `MATCHES`, `NOT =`, ...) is dropped with a reason. A bad object is
reported against its id, never fatal. It must not know what object types mean (`swg/ioc.py`
maps `domain-name:value` and friends) nor read files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from ztcore.errors import ZTError

MAX_PATTERN_CHARS = 16384
MAX_DEPTH = 32                    # nested brackets and parentheses

# why an object or a pattern's branch was skipped
SKIP_NOT_INDICATOR = "not-an-indicator"           # identity, malware, relationship, ...
SKIP_PATTERN_TYPE = "pattern-type-not-stix"       # sigma, yara, snort, ...
SKIP_REVOKED = "revoked"
SKIP_EXPIRED = "expired"
SKIP_AND = "and-combination"
SKIP_SEQUENCE = "followedby-sequence"
SKIP_QUALIFIED = "qualified-observation"
SKIP_OPERATOR = "unsupported-operator"

_SPACE = re.compile(r"\s*")
_TOKEN = re.compile(r"""
    (?P<string>[tbhTBH]?'(?:[^'\\]|\\.)*')
  | (?P<number>[+-]?[0-9]+(?:\.[0-9]+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>!=|<>|<=|>=|[=<>])
  | (?P<punct>[\[\]():.,*])
""", re.VERBOSE | re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d{1,9})?Z", re.ASCII).fullmatch
_WORD_OPERATORS = ("LIKE", "MATCHES", "IN", "ISSUBSET", "ISSUPERSET")
_Token = tuple[str, str, int]     # (kind, text, offset)


class StixError(ZTError):
    """Not a STIX bundle (not JSON, not a bundle); the message says which. (A bad object inside a
    bundle is not raised: `bundle_indicators` reports it as a StixBad.)"""


class PatternError(ZTError):
    """Not a STIX pattern: the message says what was expected at which offset."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """`object_type:path = value` (or `IN (values)`). `path` joins properties with dots, quotes
    removed (`hashes.SHA-256`); a value is None when it is not a plain quoted string (a number,
    `true`, `t'...'`, `b'...'`, `h'...'`)."""

    object_type: str
    path: str
    values: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class StixIndicator:
    """One usable indicator object: `where` its id (or `objects[3]` when it has none), the
    comparisons kept and the reasons of the branches dropped."""

    where: str
    comparisons: tuple[Comparison, ...]
    skipped: tuple[str, ...]
    description: str                # its description, else its name
    source: str                     # the name of the identity that created it, if in the bundle


@dataclass(frozen=True, slots=True)
class StixSkipped:
    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class StixBad:
    where: str
    problem: str


StixObject = StixIndicator | StixSkipped | StixBad
_Branch = tuple[list[Comparison], list[str]]


def bundle_indicators(data: str | bytes, *, now: float) -> list[StixObject]:
    """Each object of the bundle `data`, read: an indicator, a skip or a problem, in order.
    `now` (seconds since the epoch) decides `valid_until`. StixError when it is not a bundle."""
    if not isinstance(data, (str, bytes)):
        raise StixError(f"expected text or bytes, not {type(data).__name__}")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        raise StixError(f"not JSON ({str(exc)[:200]})") from None
    objects = document.get("objects", []) if isinstance(document, dict) else None
    if not isinstance(objects, list) or document.get("type") != "bundle":
        raise StixError("not a STIX bundle (a JSON object with \"type\": \"bundle\" and a list "
                        "of \"objects\")")
    identities = {o["id"]: o["name"] for o in objects if isinstance(o, dict) and o.get("type") == "identity"
                  and isinstance(o.get("id"), str) and isinstance(o.get("name"), str)}
    out: list[StixObject] = []
    for i, obj in enumerate(objects):
        ident = obj.get("id") if isinstance(obj, dict) else None
        where = ident if isinstance(ident, str) and 0 < len(ident) <= 120 and ident.isprintable() \
            else f"objects[{i}]"
        try:
            out.append(_read_object(obj, where, identities, now))
        except (StixError, PatternError) as exc:
            out.append(StixBad(where, str(exc)))
    return out


def _read_object(obj: object, where: str, identities: Mapping[str, str], now: float) -> StixObject:
    if not isinstance(obj, dict):
        raise StixError("not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise StixError("no \"type\"")
    if kind != "indicator":
        return StixSkipped(where, SKIP_NOT_INDICATOR)
    revoked, valid_until = obj.get("revoked", False), obj.get("valid_until")
    pattern_type, pattern = obj.get("pattern_type", "stix"), obj.get("pattern")
    if not isinstance(revoked, bool):
        raise StixError("\"revoked\" is not true or false")
    if revoked:
        return StixSkipped(where, SKIP_REVOKED)
    if valid_until is not None and timestamp(valid_until) <= now:
        return StixSkipped(where, SKIP_EXPIRED)
    if not isinstance(pattern_type, str):
        raise StixError("\"pattern_type\" is not a string")
    if pattern_type != "stix":
        return StixSkipped(where, SKIP_PATTERN_TYPE)
    if not isinstance(pattern, str):
        raise StixError("no \"pattern\" string")
    try:
        comparisons, skipped = pattern_comparisons(pattern)
    except PatternError as exc:
        raise PatternError(f"pattern: {exc}") from None
    text = next((t for t in (obj.get("description"), obj.get("name")) if isinstance(t, str) and t), "")
    creator = obj.get("created_by_ref")
    return StixIndicator(where, comparisons, skipped, text,
                         identities.get(creator, "") if isinstance(creator, str) else "")


def timestamp(value: object) -> float:
    """A STIX timestamp (`2026-04-01T00:00:00Z`, `...00.123Z`) in seconds since the epoch."""
    match = _TIMESTAMP(value) if isinstance(value, str) else None
    if match is None:
        raise StixError(f"{str(value)[:40]!r} is not a STIX timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z)")
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError as exc:
        raise StixError(f"{match.group()!r}: {exc}") from None
    return moment.timestamp() + float(match.group(7) or 0)


def pattern_comparisons(pattern: str) -> tuple[tuple[Comparison, ...], tuple[str, ...]]:
    """(the comparisons that each alone satisfy `pattern`, the reasons of the branches dropped),
    or PatternError."""
    if not isinstance(pattern, str):
        raise PatternError(f"a pattern is a string, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"longer than {MAX_PATTERN_CHARS} characters")
    parser = _Parser(_tokenize(pattern))
    found, skipped = parser.observations()
    parser.expect("end")
    return tuple(found), tuple(skipped)


def _tokenize(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = _end_of_space(pattern, 0)
    while pos < len(pattern):
        match = _TOKEN.match(pattern, pos)
        if match is None or match.lastgroup is None:
            what = "an unterminated string" if pattern[pos] == "'" else repr(pattern[pos:pos + 12])
            raise PatternError(f"unexpected {what} at offset {pos}")
        tokens.append((match.lastgroup, match.group(), pos))
        pos = _end_of_space(pattern, match.end())
    tokens.append(("end", "", len(pattern)))
    return tokens


def _end_of_space(pattern: str, pos: int) -> int:
    match = _SPACE.match(pattern, pos)
    return match.end() if match else pos


def _unquote(token: str, offset: int) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in "\\'":
            raise PatternError(f"invalid escape \\{match.group(1)} in the string at offset {offset}")
        return match.group(1)

    return _ESCAPE.sub(one, token[1:-1])


class _Parser:
    """observations := and (OR and)*;  and := seq (AND seq)*;  seq := qualified (FOLLOWEDBY
    qualified)*;  qualified := atom qualifier*;  atom := '[' comparisons ']' | '(' observations ')';
    comparisons := c_and (OR c_and)*;  c_and := c_atom (AND c_atom)*;
    c_atom := '(' comparisons ')' | path [NOT] operator value | EXISTS path."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.i, self.depth = tokens, 0, 0

    # -- tokens

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def keyword(self, *words: str) -> str | None:
        kind, text, _ = self.tokens[self.i]
        if kind == "word" and text.upper() in words:
            self.i += 1
            return text.upper()
        return None

    def punct(self, text: str) -> bool:
        if self.tokens[self.i][:2] == ("punct", text):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> str:
        found, found_text, offset = self.tokens[self.i]
        if found != kind or (text is not None and found_text.upper() != text):
            wanted = repr(text) if text is not None else ("the end" if kind == "end" else f"a {kind}")
            shown = repr(found_text[:20]) if found_text else "the end"
            raise PatternError(f"expected {wanted} at offset {offset}, found {shown}")
        self.i += 1
        return found_text

    def nested(self, inner: Callable[[], _Branch], close: str) -> _Branch:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise PatternError(f"nested deeper than {MAX_DEPTH} brackets at offset {self.peek()[2]}")
        branch = inner()
        self.expect("punct", close)
        self.depth -= 1
        return branch

    # -- observation expressions

    def observations(self) -> _Branch:
        found, skipped = self.observations_and()
        while self.keyword("OR"):
            more, more_skipped = self.observations_and()
            found, skipped = found + more, skipped + more_skipped
        return found, skipped

    def observations_and(self) -> _Branch:
        return self._joined(self.sequence, "AND", SKIP_AND)

    def sequence(self) -> _Branch:
        return self._joined(self.qualified, "FOLLOWEDBY", SKIP_SEQUENCE)

    def _joined(self, part: Callable[[], _Branch], word: str, reason: str) -> _Branch:
        branch, joined = part(), False
        while self.keyword(word):
            part()
            joined = True
        return ([], [reason]) if joined else branch

    def qualified(self) -> _Branch:
        if self.punct("["):
            branch = self.nested(self.comparisons, "]")
        elif self.punct("("):
            branch = self.nested(self.observations, ")")
        else:
            _, text, offset = self.peek()
            raise PatternError(f"expected '[' at offset {offset}, found {repr(text[:20]) if text else 'the end'}")
        qualified = False
        while (word := self.keyword("WITHIN", "REPEATS", "START")) is not None:
            qualified = True
            if word == "START":
                self.expect("string")
                self.expect("word", "STOP")
                self.expect("string")
            else:
                self.expect("number")
                self.expect("word", "SECONDS" if word == "WITHIN" else "TIMES")
        return ([], [SKIP_QUALIFIED]) if qualified else branch

    # -- comparison expressions (inside one observation)

    def comparisons(self) -> _Branch:
        found, skipped = self.comparisons_and()
        while self.keyword("OR"):
            more, more_skipped = self.comparisons_and()
            found, skipped = found + more, skipped + more_skipped
        return found, skipped

    def comparisons_and(self) -> _Branch:
        return self._joined(self.comparison, "AND", SKIP_AND)

    def comparison(self) -> _Branch:
        if self.punct("("):
            return self.nested(self.comparisons, ")")
        if self.keyword("EXISTS"):
            self.object_path()
            return [], [SKIP_OPERATOR]
        object_type, path = self.object_path()
        negated = self.keyword("NOT") is not None
        kind, text, offset = self.peek()
        if kind == "op":
            self.i += 1
            operator: str | None = text
        else:
            operator = self.keyword(*_WORD_OPERATORS)
        if operator is None:
            raise PatternError(f"expected a comparison operator at offset {offset}, "
                               f"found {repr(text[:20]) if text else 'the end'}")
        values = self.value_list() if operator in ("IN", "ISSUBSET", "ISSUPERSET") else (self.value(),)
        if negated or operator not in ("=", "IN"):
            return [], [SKIP_OPERATOR]
        return [Comparison(object_type, path, values)], []

    def object_path(self) -> tuple[str, str]:
        object_type = self.expect("word")
        self.expect("punct", ":")
        parts = [self.expect("word")]
        while True:
            if self.punct("."):
                kind, text, offset = self.peek()
                if kind == "word":
                    parts.append(text)
                elif kind == "string" and text.startswith("'"):
                    parts.append(_unquote(text, offset))
                else:
                    raise PatternError(f"expected a property name at offset {offset}")
                self.i += 1
            elif self.punct("["):
                kind, text, offset = self.peek()
                if kind != "number" and (kind, text) != ("punct", "*"):
                    raise PatternError(f"expected a list index or '*' at offset {offset}")
                self.i += 1
                self.expect("punct", "]")
                parts[-1] += f"[{text}]"
            else:
                return object_type, ".".join(parts)

    def value(self) -> str | None:
        kind, text, offset = self.peek()
        if kind == "string":
            self.i += 1
            return _unquote(text, offset) if text.startswith("'") else None
        if kind == "number" or (kind == "word" and text.lower() in ("true", "false")):
            self.i += 1
            return None
        raise PatternError(f"expected a value at offset {offset}, found {repr(text[:20]) if text else 'the end'}")

    def value_list(self) -> tuple[str | None, ...]:
        self.expect("punct", "(")
        values = [self.value()]
        while self.punct(","):
            values.append(self.value())
        self.expect("punct", ")")
        return tuple(values)

