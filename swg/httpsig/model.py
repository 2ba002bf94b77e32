"""The HTTP signature model: what a parsed Suricata rule keeps, what a match returns, and the
load report.

Owns the frozen values shared by the parser (parse.py), the evaluator (match.py) and the
rule set (ruleset.py): content, pcre, isdataat and size checks grouped by inspected buffer, the
signature, the hit, and the report of a load (rules loaded, skipped with a reason, disabled,
malformed with a line number). It must not parse, match or read anything.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from ztcore.errors import ZTError

Action = Literal["alert", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
Phase = Literal["request", "response"]
SizeOp = Literal["=", "<", ">", "<=", ">=", "<>"]
MAX_STORED_ERRORS = 1000   # a garbage file still reports how many, but keeps only the first ones


class HttpSignatureError(ZTError):
    """A value built in code is invalid (a bad size check); the message says which."""


@dataclass(frozen=True, slots=True)
class ContentMatch:
    """`content` with its modifiers. Relative when `distance` or `within` is set (Suricata's
    semantics: the window starts `distance` bytes after the previous match in the same buffer
    and ends `within` bytes after that start); otherwise absolute in [offset, offset + depth)."""

    pattern: bytes
    negated: bool = False
    nocase: bool = False
    offset: int = 0
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None


@dataclass(frozen=True, slots=True)
class PcreMatch:
    """`pcre`, translated to a Python bytes pattern; `relative` (flag R) searches from the end of
    the previous match, with `^` anchored there as PCRE does."""

    source: str
    regex: re.Pattern[bytes]
    negated: bool = False
    relative: bool = False


@dataclass(frozen=True, slots=True)
class DataAtCheck:
    """`isdataat:[!]N[,relative]`: is there a byte at position N (from the buffer start, or from
    the end of the previous match)?"""

    position: int
    negated: bool = False
    relative: bool = False


@dataclass(frozen=True, slots=True)
class SizeCheck:
    """`bsize` and `urilen`: `N`, `<N`, `>N`, `<=N`, `>=N`, or `N<>M` (strictly between)."""

    op: SizeOp
    low: int
    high: int = 0

    def __post_init__(self) -> None:
        if self.low < 0 or self.high < 0 or (self.op == "<>" and self.high <= self.low):
            raise HttpSignatureError(f"bad size check {self.op} {self.low} {self.high}")

    def accepts(self, size: int) -> bool:
        if self.op == "=":
            return size == self.low
        if self.op == "<":
            return size < self.low
        if self.op == ">":
            return size > self.low
        if self.op == "<=":
            return size <= self.low
        if self.op == ">=":
            return size >= self.low
        return self.low < size < self.high


Item = ContentMatch | PcreMatch | DataAtCheck


@dataclass(frozen=True, slots=True)
class PortSet:
    """Ports in any `include` range (all ports when there is none) and in no `exclude` range."""

    include: tuple[tuple[int, int], ...] = ()
    exclude: tuple[tuple[int, int], ...] = ()

    def accepts(self, port: int | None) -> bool:
        if port is None:   # unknown port: only a rule for any port applies
            return False
        if self.include and not any(low <= port <= high for low, high in self.include):
            return False
        return not any(low <= port <= high for low, high in self.exclude)


@dataclass(frozen=True, slots=True)
class BufferInspection:
    """Everything a rule asks of one buffer, in rule order; relative items relate to the
    previous item of this inspection only (Suricata never relates two buffers)."""

    buffer: str
    items: tuple[Item, ...] = ()
    sizes: tuple[SizeCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpSignature:
    sid: int
    rev: int
    msg: str
    action: Action
    classtype: str
    phase: Phase
    inspections: tuple[BufferInspection, ...]
    gid: int = 1
    metadata: tuple[str, ...] = ()        # each `metadata:` option's text, as written
    references: tuple[str, ...] = ()
    threshold: str = ""        # a kept `threshold: type limit, ...`: the log may rate-limit alerts
    server_ports: PortSet | None = None   # None: any port
    plaintext_only: bool = False          # metadata `tls_state plaintext`: not for decrypted TLS
    source: str = ""
    line_number: int = 0


@dataclass(frozen=True, slots=True)
class SignatureHit:
    sid: int
    rev: int
    msg: str
    action: Action
    classtype: str
    phase: Phase = "request"
    gid: int = 1

    @classmethod
    def of(cls, signature: HttpSignature) -> SignatureHit:
        return cls(signature.sid, signature.rev, signature.msg, signature.action,
                   signature.classtype, signature.phase, signature.gid)


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """A malformed rule: the file (as the caller named it), its first line, and why."""

    source: str
    line_number: int
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line_number}" if self.source else f"line {self.line_number}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, eq=False)
class LoadReport:
    """What a load made: `loaded` signatures; `skipped` valid rules this engine does not run,
    counted by reason in `skip_reasons` ("not http (dns)", "unsupported keyword flowbits", ...);
    `disabled` commented-out rules; `errors` malformed rules (the first MAX_STORED_ERRORS of
    `error_count`); `notes` what was accepted with a caveat ("threshold type limit kept")."""

    loaded: int = 0
    skipped: int = 0
    disabled: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    errors: tuple[RuleProblem, ...] = ()
    error_count: int = 0

    @classmethod
    def merge(cls, reports: Iterable[LoadReport]) -> LoadReport:
        loaded = skipped = disabled = error_count = 0
        reasons: Counter[str] = Counter()
        notes: Counter[str] = Counter()
        errors: list[RuleProblem] = []
        for report in reports:
            loaded += report.loaded
            skipped += report.skipped
            disabled += report.disabled
            error_count += report.error_count
            reasons.update(report.skip_reasons)
            notes.update(report.notes)
            errors.extend(report.errors[:MAX_STORED_ERRORS - len(errors)])
        return cls(loaded, skipped, disabled, reasons, notes, tuple(errors), error_count)

    def summary(self, top: int = 10) -> str:
        lines = [f"loaded {self.loaded}, skipped {self.skipped}, disabled {self.disabled}, "
                 f"malformed {self.error_count}"]
        lines += [f"  skipped {count:6d}  {reason}" for reason, count in self.skip_reasons.most_common(top)]
        lines += [f"  note    {count:6d}  {note}" for note, count in self.notes.most_common(top)]
        lines += [f"  error   {problem}" for problem in self.errors[:top]]
        return "\n".join(lines)
