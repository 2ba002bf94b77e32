"""The Suricata rule text at the lexical level: logical lines, the header, the option list and
content strings.

Owns: joining lines continued with a trailing backslash; telling comments, blank lines and
disabled (commented-out) rules apart; splitting `action proto src sport dir dst dport (opts)`;
splitting options on unescaped `;` (as Suricata does: a `;` inside a value must be written `\\;`
or `|3b|`); decoding `"text|41 42|\\""` content strings; reading integers. It must not know
what a keyword means (parse.py does) and never reads a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_RULE_CHARS = 64 * 1024   # the longest ET Open rule is ~8 KiB
_DISABLED = re.compile(r"#+\s*(?:alert|drop|reject|rejectsrc|rejectdst|rejectboth|pass)\s+\S+\s")
_KEYWORD = re.compile(r"[A-Za-z0-9._-]+")
_OPTION = re.compile(r"\s*([A-Za-z0-9._-]+)\s*(?::([^;\\]*(?:\\.[^;\\]*)*))?;", re.DOTALL)
_ESCAPE = re.compile(r"\\(.)")
_INTEGER = re.compile(r"[+-]?[0-9]{1,10}")
_LONE = re.compile("[\ud800-\udc7f\udd00-\udfff]")   # surrogates surrogateescape cannot give back
_HEX = frozenset("0123456789abcdefABCDEF")


class RuleSyntaxError(ValueError):
    """A malformed rule; the parser turns it into a RuleProblem with the line number."""


@dataclass(frozen=True, slots=True)
class LogicalLine:
    line_number: int          # the first physical line
    text: str
    kind: str                 # "rule", "disabled", "blank" or "comment"


@dataclass(frozen=True, slots=True)
class RuleHeader:
    action: str
    proto: str
    source: str
    source_port: str
    direction: str
    destination: str
    destination_port: str


def logical_lines(text: str) -> Iterator[LogicalLine]:
    """The rules file as logical lines; a line ending in `\\` continues on the next one."""
    pending: list[str] = []
    start = 1
    for number, physical in enumerate(text.split("\n"), start=1):
        line = physical.rstrip("\r \t")
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield _classify(start, "".join(pending).strip())
        pending = []
    if pending:
        yield _classify(start, "".join(pending).strip())


def _classify(number: int, text: str) -> LogicalLine:
    if not text:
        return LogicalLine(number, text, "blank")
    if text.startswith("#"):
        disabled = _DISABLED.match(text) is not None and "(" in text and "sid" in text
        kind = "disabled" if disabled else "comment"
        return LogicalLine(number, text, kind)
    return LogicalLine(number, text, "rule")


def split_rule(text: str) -> tuple[RuleHeader, str]:
    """The header and the text between the outer parentheses."""
    if len(text) > MAX_RULE_CHARS:
        raise RuleSyntaxError(f"rule longer than {MAX_RULE_CHARS} characters")
    head, paren, rest = text.partition("(")
    if not paren:
        raise RuleSyntaxError("no options in parentheses")
    rest = rest.rstrip()
    if not rest.endswith(")"):
        raise RuleSyntaxError("options not closed with ')'")
    fields = head.split()
    if len(fields) != 7:
        raise RuleSyntaxError(f"header has {len(fields)} fields, expected "
                              "'action proto src_addr src_port direction dst_addr dst_port'")
    header = RuleHeader(*fields)
    if header.direction not in ("->", "<>"):
        raise RuleSyntaxError(f"bad direction {header.direction!r}")
    return header, rest[:-1]


def iter_options(body: str) -> Iterator[tuple[str, str]]:
    """(keyword, value) pairs in order, lazily (a caller may stop at the first keyword it cannot
    run); the value keeps its escapes and quotes."""
    position = 0
    for found in _OPTION.finditer(body):
        if found.start() != position:
            break
        position = found.end()
        keyword, value = found.groups("")
        yield keyword, value.strip()
    tail = body[position:]
    if tail.strip():
        options: list[tuple[str, str]] = []
        _tail_options(options, tail)
        yield from options


def split_options(body: str) -> list[tuple[str, str]]:
    return list(iter_options(body))


def _tail_options(options: list[tuple[str, str]], tail: str) -> None:
    """What the fast pattern stopped at: a last option without its `;`, or an error."""
    raw = tail.strip()
    if raw.startswith(";"):
        raise RuleSyntaxError("empty option (';;')")
    end = _next_separator(raw)
    if end < len(raw):
        option = raw[:end]
    elif raw.endswith("\\"):
        raise RuleSyntaxError("option ends in a dangling escape")
    else:
        option = raw
    keyword, colon, value = option.partition(":")
    keyword = keyword.strip()
    if not keyword:
        raise RuleSyntaxError(f"option without a keyword: {option[:40]!r}")
    if _KEYWORD.fullmatch(keyword) is None:
        raise RuleSyntaxError(f"bad keyword {keyword[:40]!r}")
    if end < len(raw):   # the keyword is fine, so the fast pattern failed on something else
        raise RuleSyntaxError(f"unparsable option {option[:40]!r}")
    options.append((keyword, value.strip() if colon else ""))


def _next_separator(text: str) -> int:
    index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == ";":
            return index
        index += 1
    return len(text)


def unquote(value: str) -> tuple[str, bool]:
    """A possibly `!`-negated, possibly quoted value: (inner text, negated)."""
    text = value.strip()
    negated = text.startswith("!")
    if negated:
        text = text[1:].lstrip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"' and not _escaped_at(text, len(text) - 1):
        return text[1:-1], negated
    if text.startswith('"'):
        raise RuleSyntaxError("unterminated quoted value")
    return text, negated


def _escaped_at(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def decode_content(value: str) -> tuple[bytes, bool]:
    """A content string: text with `\\"`, `\\;`, `\\\\` escapes and `|41 42|` hex runs."""
    text, negated = unquote(value)
    if "|" not in text and "\\" not in text and '"' not in text:
        if not text:
            raise RuleSyntaxError("empty content")
        return encode_text(text), negated
    out = bytearray()
    in_hex = False
    digits = ""
    index = 0
    while index < len(text):
        ch = text[index]
        if in_hex:
            if ch == "|":
                if digits:
                    raise RuleSyntaxError("odd number of hex digits in content")
                in_hex = False
            elif ch in _HEX:
                digits += ch
                if len(digits) == 2:
                    out.append(int(digits, 16))
                    digits = ""
            elif ch not in " \t":
                raise RuleSyntaxError(f"bad character {ch!r} in a content hex run")
        elif ch == "|":
            in_hex = True
        elif ch == "\\":
            index += 1
            if index >= len(text) or text[index].isalnum():
                raise RuleSyntaxError("bad escape in content")
            out += encode_text(text[index])
        elif ch == '"':
            raise RuleSyntaxError("unescaped quote in content")
        else:
            out += encode_text(ch)
        index += 1
    if in_hex:
        raise RuleSyntaxError("unterminated hex run in content")
    if not out:
        raise RuleSyntaxError("empty content")
    return bytes(out), negated


def encode_text(text: str) -> bytes:
    """UTF-8, with bytes a reader decoded with surrogateescape given back unchanged (and any
    other lone surrogate passed through rather than failing)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:   # character by character, so each surrogate is treated the same
        return b"".join(ch.encode("utf-8", "surrogatepass" if _LONE.match(ch) else "surrogateescape")
                        for ch in text)


def unescape_text(value: str) -> str:
    """msg and other free text: quotes dropped, `\\x` escapes resolved to `x`."""
    text, _ = unquote(value)
    return _ESCAPE.sub(r"\1", text) if "\\" in text else text


def integer(keyword: str, value: str, *, minimum: int | None = 0) -> int:
    text = value.strip()
    if _INTEGER.fullmatch(text) is None:
        raise RuleSyntaxError(f"{keyword}: not an integer: {text[:20]!r}")
    number = int(text)
    if minimum is not None and number < minimum:
        raise RuleSyntaxError(f"{keyword}: must be at least {minimum}")
    return number
