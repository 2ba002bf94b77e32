"""Suricata `pcre:"/regex/flags"` to a Python bytes pattern.

Owns the flag table (i s m x A E; R relative; the buffer flags U I H D M C P Q S Y V W Z; O and B
accepted and ignored) and the translation of the PCRE constructs ET rules use that Python's `re`
spells differently: `(?<name>`, `\\z`, `\\Z`, `\\h`, `\\e`, `\\x{HH}`, `\\Q...\\E` and POSIX classes
`[:alpha:]`. Anything else Python cannot compile makes the rule skipped (PcreUnsupported), never
approximated. Patterns compile as bytes without Unicode rules, like PCRE without UTF mode.
It must not evaluate anything (match.py does).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from swg.httpsig.lexer import RuleSyntaxError, encode_text, unquote

BUFFER_FLAGS = {
    "U": "http.uri", "I": "http.uri.raw", "H": "http.header", "D": "http.header.raw",
    "M": "http.method", "C": "http.cookie", "P": "http.request_body", "Q": "file.data",
    "S": "http.stat_code", "Y": "http.stat_msg", "V": "http.user_agent", "W": "http.host",
    "Z": "http.host.raw",
}
_PYTHON_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE}
_IGNORED_FLAGS = frozenset("OBE")   # O: match limits; B: old raw-bytes; E: `$` only at the very end
_POSIX = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": r" \t\n\r\f\v", "blank": r" \t", "xdigit": "0-9A-Fa-f", "word": r"\w",
    "punct": r"!-/:-@\[-`{-~", "print": r"\x20-\x7e", "graph": r"\x21-\x7e", "cntrl": r"\x00-\x1f\x7f",
}
_UNSUPPORTED_ESCAPES = frozenset("RXKGCNpPvVH")


class PcreUnsupported(ValueError):
    """A valid PCRE that Python's `re` cannot run the same way: the rule is skipped."""


@dataclass(frozen=True, slots=True)
class ParsedPcre:
    """A pcre read and translated but not compiled yet (`compile_pcre`): a rule skipped for a
    later keyword never pays for compiling its patterns."""

    source: str
    pattern: str          # Python syntax
    flags: int
    negated: bool
    relative: bool
    buffer: str | None   # from a buffer flag (U, H, ...); None: the rule's current buffer


def parse_pcre(value: str) -> ParsedPcre:
    text, negated = unquote(value)
    if not text.startswith("/"):
        raise RuleSyntaxError("pcre must be written /regex/flags")
    end = text.rfind("/")
    if end == 0:
        raise RuleSyntaxError("pcre has no closing '/'")
    pattern, flag_text = text[1:end], text[end + 1:]
    flags = 0
    relative = anchored = False
    buffer: str | None = None
    for flag in flag_text:
        if flag in _PYTHON_FLAGS:
            flags |= _PYTHON_FLAGS[flag]
        elif flag == "R":
            relative = True
        elif flag == "A":
            anchored = True
        elif flag in BUFFER_FLAGS:
            if buffer is not None and buffer != BUFFER_FLAGS[flag]:
                raise RuleSyntaxError("pcre has two buffer flags")
            buffer = BUFFER_FLAGS[flag]
        elif flag == "G":
            raise PcreUnsupported("pcre flag G (ungreedy)")
        elif flag not in _IGNORED_FLAGS:
            raise RuleSyntaxError(f"unknown pcre flag {flag!r}")
    translated = translate(pattern)
    if anchored:
        translated = r"\A(?:" + translated + ")"
    return ParsedPcre(text, translated, flags, negated, relative, buffer)


def compile_pcre(parsed: ParsedPcre) -> re.Pattern[bytes]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(encode_text(parsed.pattern), parsed.flags)
    except (re.error, OverflowError, RecursionError) as error:
        raise PcreUnsupported("pcre not compilable by Python re") from error


def translate(pattern: str) -> str:
    """PCRE syntax to Python `re` syntax for the constructs that differ (see the module doc)."""
    out: list[str] = []
    index = 0
    in_class = False
    length = len(pattern)
    while index < length:
        ch = pattern[index]
        if ch == "\\":
            if index + 1 >= length:
                raise RuleSyntaxError("pcre ends with a backslash")
            escaped, index = _escape(pattern, index + 1, in_class)
            out.append(escaped)
            continue
        if in_class:
            if ch == "[" and pattern.startswith("[:", index):
                close = pattern.find(":]", index + 2)
                name = pattern[index + 2:close] if close > 0 else ""
                if name in _POSIX:
                    out.append(_POSIX[name])
                    index = close + 2
                    continue
                out.append(r"\[")
            elif ch == "]" and not _class_start(out):
                in_class = False
                out.append(ch)
            else:
                out.append(ch)
            index += 1
            continue
        if ch == "[":
            in_class = True
            out.append(ch)
            if pattern.startswith("^", index + 1):
                out.append("^")
                index += 1
            index += 1
            continue
        if pattern.startswith("(?<", index) and index + 3 < length and pattern[index + 3] not in "=!":
            out.append("(?P<")
            index += 3
            continue
        out.append(ch)
        index += 1
    return "".join(out)


def _class_start(out: list[str]) -> bool:
    """A `]` right after `[` or `[^` is a literal, as in PCRE."""
    return bool(out) and (out[-1] == "[" or (out[-1] == "^" and len(out) > 1 and out[-2] == "["))


def _escape(pattern: str, index: int, in_class: bool) -> tuple[str, int]:
    ch = pattern[index]
    if ch == "z":
        return r"\Z", index + 1
    if ch == "Z":
        return r"(?=\n?\Z)", index + 1
    if ch == "h":
        return (r" \t" if in_class else r"[ \t]"), index + 1
    if ch == "e":
        return r"\x1b", index + 1
    if ch == "x" and pattern.startswith("{", index + 1):
        close = pattern.find("}", index)
        digits = pattern[index + 2:close] if close > 0 else ""
        if not re.fullmatch(r"[0-9a-fA-F]{1,2}", digits):
            raise PcreUnsupported(r"pcre \x{...} above \xff")
        return rf"\x{int(digits, 16):02x}", close + 1
    if ch == "Q":
        close = pattern.find(r"\E", index)
        literal = pattern[index + 1:] if close < 0 else pattern[index + 1:close]
        return re.escape(literal), (len(pattern) if close < 0 else close + 2)
    if ch == "E":
        return "", index + 1
    if ch in _UNSUPPORTED_ESCAPES:
        raise PcreUnsupported(f"pcre escape \\{ch}")
    return "\\" + ch, index + 1
