"""A compiled set of HTTP signatures with a literal prefilter, and the blocking decision helper.

Owns choosing, for each signature, one literal every match must contain (its anchor: the
`fast_pattern` content when it is long enough, else the longest positive content, preferring
selective buffers), and the index that finds a transaction's candidate signatures without
trying them all (see _PhaseIndex: anchors filed under 4-byte grams that ordinary traffic and
other anchors rarely contain; the transaction's lower-cased text cut into grams; an anchor whose
gram occurs checked with `in` in its own buffer; only signatures whose anchor occurs evaluated
by match.py; signatures without a positive content always evaluated). Measured on ET Open: a
browser request wakes about 10-20 of ~11,500 request signatures. Also owns merging several
parsed files (duplicate sids: the highest rev wins) and `blocking_hits`, which says which hits
block under a tenant's mode. It must not read files.
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from swg.httpsig.buffers import HttpRequestView, HttpResponseView, request_buffers, response_buffers
from swg.httpsig.match import signature_matches
from swg.httpsig.model import ContentMatch, HttpSignature, HttpSignatureError, LoadReport, Phase, SignatureHit
from swg.httpsig.parse import RuleParse

REASON = "http-signature"
GRAM = 4
STRIDE = GRAM   # sampled grams are the text read as 4-byte words (_sampled_codes)
LONG = GRAM + STRIDE - 1
DIRECT = 24      # fewer medium anchors than this in a buffer: `in` each rather than cut the buffer
BlockingMode = Literal["alert-only", "block-drop", "block-all"]
BLOCKING_MODES: tuple[BlockingMode, ...] = ("alert-only", "block-drop", "block-all")
_DROP_ACTIONS = frozenset({"drop", "reject", "rejectsrc", "rejectdst", "rejectboth"})
# buffers whose values repeat on every request: a literal there selects little
_COMMON_BUFFERS = frozenset({"http.method", "http.protocol", "http.request_line", "http.start",
                             "http.stat_code", "http.content_len", "http.connection"})

_Entry = tuple[str, bytes, tuple[int, ...]]     # (buffer, lower-cased anchor, signature indexes)
# Ordinary browser traffic: an anchor is filed under a gram absent from it when it has one, so
# ordinary requests wake few anchors.
_ORDINARY_TRAFFIC = b"\n".join([
    b"GET /index.html?id=1&page=2&lang=ja HTTP/1.1", b"POST /api/v1/search.json HTTP/2",
    b"Host: www.example.co.jp:443", b"Host: www.city.example.lg.jp", b"Host: cdn.example.com",
    b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    b"User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    b"Version/17.4 Mobile/15E148 Safari/605.1.15",
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    b"Accept: application/json, text/plain, */*", b"Accept-Language: ja,en-US;q=0.7,en;q=0.3",
    b"Accept-Encoding: gzip, deflate, br, zstd", b"Connection: keep-alive", b"Cache-Control: max-age=0",
    b"Referer: https://www.example.jp/", b"Cookie: _ga=GA1.2.3; session=abcdef; PHPSESSID=0123456789",
    b"Content-Type: application/x-www-form-urlencoded; charset=UTF-8", b"Content-Length: 128",
    b"Origin: https://www.example.jp", b"Upgrade-Insecure-Requests: 1", b"Sec-Fetch-Mode: navigate",
    b"Sec-Fetch-Site: same-origin", b"Sec-Fetch-Dest: document", b"If-None-Match: W/\"5e-1\"",
    b"X-Requested-With: XMLHttpRequest", b"DNT: 1", b"Pragma: no-cache",
    b"HTTP/1.1 200 OK", b"Server: nginx", b"Date: Mon, 22 Apr 2024 10:00:00 GMT", b"Vary: Accept-Encoding",
    b"Content-Type: text/html; charset=utf-8", b"Set-Cookie: id=1; Path=/; Secure; HttpOnly",
    b"<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>Example</title>",
    b"<script src=\"/js/app.js\"></script><link rel=\"stylesheet\" href=\"/css/style.css\">",
    b"</head><body><div class=\"content\"><a href=\"https://www.example.jp/\">link</a></div></body></html>",
    b'{"type":"click","id":1,"name":"value","items":[true,false,null]}',
]).lower()


@dataclass(frozen=True, slots=True)
class Anchor:
    buffer: str
    literal: bytes   # lower-cased


def choose_anchor(signature: HttpSignature) -> Anchor | None:
    best: tuple[tuple[bool, bool, bool, int], Anchor] | None = None
    for inspection in signature.inspections:
        for item in inspection.items:
            if not isinstance(item, ContentMatch) or item.negated:
                continue
            literal = item.pattern.lower()
            long_enough = len(literal) >= GRAM
            score = (long_enough, inspection.buffer not in _COMMON_BUFFERS,
                     item.fast_pattern and long_enough, min(len(literal), 64))
            if best is None or score > best[0]:
                best = (score, Anchor(inspection.buffer, literal))
    return None if best is None else best[1]


@dataclass(frozen=True, eq=False)
class _PhaseIndex:
    """The anchors of one phase, in three tiers by length.

    Long anchors (at least STRIDE + GRAM - 1 bytes) are filed under GRAM consecutive 4-grams
    of theirs, so a transaction's text needs cutting only every STRIDE bytes: any occurrence of
    the anchor puts one of those grams at a sampled position. The text is all buffers at once
    (`_LowerCache.universe`), and an anchor whose gram is there is then checked in its own
    buffer. Medium anchors (4 to 6 bytes) are filed under their rarest gram, per buffer, and
    that buffer is cut at every byte, unless the buffer has only a few: those, and anchors
    shorter than a gram, are checked directly."""

    long: dict[int, list[_Entry]] = field(default_factory=dict)             # gram code -> anchors
    medium: dict[str, dict[int, list[_Entry]]] = field(default_factory=dict)
    short: tuple[_Entry, ...] = ()
    always: tuple[int, ...] = ()

    @classmethod
    def build(cls, signatures: Sequence[HttpSignature], indexes: Iterable[int]) -> _PhaseIndex:
        by_anchor: dict[Anchor, list[int]] = {}
        always: list[int] = []
        for index in indexes:
            anchor = choose_anchor(signatures[index])
            if anchor is None:
                always.append(index)
            else:
                by_anchor.setdefault(anchor, []).append(index)
        frequency: Counter[bytes] = Counter()
        for anchor in by_anchor:
            frequency.update(_grams(anchor.literal))

        def cost(gram: bytes) -> int:   # a gram of ordinary traffic costs more than any count
            return frequency[gram] + (1 << 32 if gram in _ORDINARY_GRAMS else 0)

        long: dict[int, list[_Entry]] = {}
        medium: dict[str, dict[int, list[_Entry]]] = {}
        short: list[_Entry] = []
        for anchor, members in by_anchor.items():
            entry = (anchor.buffer, anchor.literal, tuple(members))
            literal = anchor.literal
            if len(literal) >= LONG:
                grams = [literal[start:start + GRAM] for start in range(len(literal) - GRAM + 1)]
                costs = [cost(gram) for gram in grams]
                first = min(range(len(grams) - STRIDE + 1), key=lambda k: sum(costs[k:k + STRIDE]))
                for gram in dict.fromkeys(grams[first:first + STRIDE]):
                    long.setdefault(_code(gram), []).append(entry)
            elif len(literal) >= GRAM:
                rarest = min(sorted(_grams(literal)), key=cost)
                medium.setdefault(anchor.buffer, {}).setdefault(_code(rarest), []).append(entry)
            else:
                short.append(entry)
        for buffer in [name for name, table in medium.items() if sum(map(len, table.values())) < DIRECT]:
            short.extend(entry for entries in medium.pop(buffer).values() for entry in entries)
        return cls(long, medium, tuple(short), tuple(always))

    def candidates(self, lowered: _LowerCache) -> list[int]:
        found: set[int] = set(self.always)
        universe = lowered.universe()   # also lower-cases every buffer into lowered.cache
        low = lowered.cache
        self._collect(self.long, _sampled_codes(universe), low, found)
        for buffer, table in self.medium.items():
            data = low.get(buffer)
            if data is not None and len(data) >= GRAM:
                self._collect(table, _gram_codes(data), low, found)
        for buffer, literal, members in self.short:
            data = low.get(buffer)
            if data is not None and literal in data:
                found.update(members)
        return sorted(found)

    @staticmethod
    def _collect(table: dict[int, list[_Entry]], codes: set[int], low: dict[str, bytes | None],
                 found: set[int]) -> None:
        for gram in codes & table.keys():
            for buffer, literal, members in table[gram]:
                data = low.get(buffer)
                if data is not None and literal in data:
                    found.update(members)


class _LowerCache:
    """Lower-cased buffers of one transaction, computed on first use."""

    __slots__ = ("buffers", "cache")

    def __init__(self, buffers: dict[str, bytes | None]) -> None:
        self.buffers = buffers
        self.cache: dict[str, bytes | None] = {}

    def __call__(self, name: str) -> bytes | None:
        try:
            return self.cache[name]
        except KeyError:
            data = self.buffers.get(name)
            lowered = None if data is None else data.lower()
            self.cache[name] = lowered
            return lowered

    def lowered(self, name: str) -> bytes:
        return self(name) or b""

    def universe(self) -> bytes:
        """Every buffer's bytes in one text (pkt_data, plus the buffers it does not contain, such
        as the decoded URI), so a request's grams are cut once: a superset for every buffer."""
        base = self("pkt_data") or b""
        parts = [base]
        for name in self.buffers:
            data = self(name)
            if data is not None and data not in base:
                parts.append(data)
        return b"\x00".join(parts)


@dataclass(frozen=True, eq=False)
class HttpRuleset:
    """The signatures in force, indexed for matching; build once, share read-only."""

    signatures: tuple[HttpSignature, ...] = ()
    _request: _PhaseIndex = field(default_factory=_PhaseIndex, repr=False)
    _response: _PhaseIndex = field(default_factory=_PhaseIndex, repr=False)
    _by_sid: dict[tuple[int, int], HttpSignature] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, signatures: Iterable[HttpSignature]) -> HttpRuleset:
        table = tuple(signatures)
        phases: dict[Phase, list[int]] = {"request": [], "response": []}
        for index, signature in enumerate(table):
            phases[signature.phase].append(index)
        return cls(table, _PhaseIndex.build(table, phases["request"]),
                   _PhaseIndex.build(table, phases["response"]), {(s.gid, s.sid): s for s in table})

    def __len__(self) -> int:
        return len(self.signatures)

    def count(self, phase: Phase) -> int:
        return sum(1 for signature in self.signatures if signature.phase == phase)

    def unanchored(self, phase: Phase) -> int:
        """How many signatures of a phase are evaluated on every transaction (no literal)."""
        return len((self._request if phase == "request" else self._response).always)

    def by_sid(self, sid: int, gid: int = 1) -> HttpSignature | None:
        return self._by_sid.get((gid, sid))

    def match(self, request: HttpRequestView) -> tuple[SignatureHit, ...]:
        """The request-phase signatures that match this request, in rule order."""
        return self._run(self._request, request_buffers(request), request)

    def match_response(self, request: HttpRequestView,
                       response: HttpResponseView) -> tuple[SignatureHit, ...]:
        """The response-phase signatures that match this response (and its request)."""
        return self._run(self._response, response_buffers(request, response), request)

    def _run(self, index: _PhaseIndex, buffers: dict[str, bytes | None],
             request: HttpRequestView) -> tuple[SignatureHit, ...]:
        lowered = _LowerCache(buffers)
        hits = []
        for position in index.candidates(lowered):
            signature = self.signatures[position]
            if not applies(signature, request):
                continue
            if signature_matches(signature, buffers, lowered.lowered):
                hits.append(SignatureHit.of(signature))
        return tuple(hits)


EMPTY_RULESET = HttpRuleset()


def applies(signature: HttpSignature, request: HttpRequestView) -> bool:
    """The header-level conditions: the server port, and plaintext-only rules on decrypted TLS."""
    if signature.plaintext_only and request.tls:
        return False
    return signature.server_ports is None or signature.server_ports.accepts(request.port)


def compile_ruleset(parses: Iterable[RuleParse]) -> tuple[HttpRuleset, LoadReport]:
    """Several parsed files as one rule set; a sid seen twice keeps its highest rev (the first
    of equal revs), the other counts as skipped "duplicate sid"."""
    kept: dict[tuple[int, int], HttpSignature] = {}
    reports: list[LoadReport] = []
    duplicates = 0
    for parsed in parses:
        reports.append(parsed.report)
        for signature in parsed.signatures:
            key = (signature.gid, signature.sid)
            previous = kept.get(key)
            if previous is not None:
                duplicates += 1
                if signature.rev <= previous.rev:
                    continue
            kept[key] = signature
    report = LoadReport.merge(reports)
    if duplicates:
        reasons = report.skip_reasons + Counter({"duplicate sid": duplicates})
        report = LoadReport(report.loaded - duplicates, report.skipped + duplicates, report.disabled,
                            reasons, report.notes, report.errors, report.error_count)
    return HttpRuleset.build(kept.values()), report


def blocking_hits(hits: Iterable[SignatureHit], mode: BlockingMode) -> tuple[SignatureHit, ...]:
    """The hits that block the transaction (reason REASON); the others are only logged.

    ET Open ships every rule as `alert`, so "block-drop" blocks only on rules the municipality
    turned into `drop`/`reject` (Suricata's drop.conf / modify), "block-all" also blocks on
    `alert` hits (an IPS that trusts the whole set), "alert-only" never blocks (IDS)."""
    if mode == "alert-only":
        return ()
    if mode == "block-drop":
        return tuple(hit for hit in hits if hit.action in _DROP_ACTIONS)
    if mode == "block-all":
        return tuple(hits)
    raise HttpSignatureError(f"unknown blocking mode {mode!r}; expected one of {', '.join(BLOCKING_MODES)}")


def _grams(literal: bytes) -> set[bytes]:
    return {literal[start:start + GRAM] for start in range(len(literal) - GRAM + 1)}


_ORDINARY_GRAMS = frozenset(_grams(_ORDINARY_TRAFFIC))
# 4-grams as machine integers: an array of 4-byte words per alignment is cut in C, several
# times faster than slicing bytes one gram at a time
_WORD = next(code for code in "IL" if array(code).itemsize == GRAM)


def _code(gram: bytes) -> int:
    return int.from_bytes(gram, sys.byteorder)


def _sampled_codes(data: bytes) -> set[int]:
    """The grams at every STRIDE-th position."""
    return set(array(_WORD, data[:len(data) // GRAM * GRAM]))


def _gram_codes(data: bytes) -> set[int]:
    codes: set[int] = set()
    for shift in range(GRAM):
        words = (len(data) - shift) // GRAM
        if words > 0:
            codes.update(array(_WORD, data[shift:shift + words * GRAM]))
    return codes
