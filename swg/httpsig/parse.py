"""Suricata rules text to HTTP signatures: the HTTP-layer subset, and a report of the rest.

Owns the meaning of each keyword this engine runs: `content` (and `uricontent`) with `nocase`,
`depth`, `offset`, `distance`, `within`, `startswith`, `endswith`, `fast_pattern`; `pcre`;
`isdataat`; `bsize`; `urilen`; `flow`; the HTTP sticky buffers (`http.uri`, `http.host`, ...,
`file.data`) and the legacy content modifiers (`http_uri`, `http_client_body`, ...); the
descriptive `msg sid rev gid classtype metadata reference priority target tag`. A rule that
needs anything else (flowbits, byte_test, dsize, tls.*, dns.*, ...) is skipped, counted under
"unsupported keyword <first such keyword>"; a rule for another protocol under "not http
(<proto>)". A malformed rule becomes a RuleProblem with its line number and never stops the
others. `threshold: type limit` only caps how often Suricata logs an alert, so the rule is
kept (noted); `type threshold|both` and `detection_filter` count requests across a flow or
host, so those rules are skipped.

Phase: `flow:to_server` rules inspect the request, `to_client` ones the response (with the
request-only buffers of the same transaction); without a direction, a rule using a
response-only buffer is a response rule. Header: `http`, `http1`, `http2` rules, and `tcp` rules
whose contents all sit in HTTP buffers (a `tcp` content on the raw stream could be any
protocol); addresses are not checked (a forward proxy's client is the home network); the
server's port (the destination of a request rule, the source of a response rule) is kept as a
PortSet, and a rule that constrains the client's port is skipped. Content with no buffer in an
`http` rule inspects `pkt_data`, the request (or response) as it was sent. It must not read
files (runtime/httpsig_import.py does) nor evaluate anything (match.py does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from swg.httpsig.buffers import ALL_BUFFERS, RESPONSE_ONLY
from swg.httpsig.lexer import (
    RuleSyntaxError,
    decode_content,
    integer,
    iter_options,
    logical_lines,
    split_rule,
    unescape_text,
)
from swg.httpsig.model import (
    MAX_STORED_ERRORS,
    Action,
    BufferInspection,
    ContentMatch,
    DataAtCheck,
    HttpSignature,
    Item,
    LoadReport,
    PcreMatch,
    Phase,
    RuleProblem,
    SizeCheck,
    SizeOp,
)
from swg.httpsig.pcre import ParsedPcre, PcreUnsupported, compile_pcre, parse_pcre
from swg.httpsig.ports import UnknownPortVariable, parse_ports

_ACTION_OF: dict[str, Action] = {"alert": "alert", "drop": "drop", "reject": "reject",
                                 "rejectsrc": "rejectsrc", "rejectdst": "rejectdst",
                                 "rejectboth": "rejectboth"}
HTTP_PROTOCOLS = frozenset({"http", "http1", "http2"})
FILE_DATA = "file.data"      # request body in a to_server rule, response body otherwise
RAW = "pkt_data"
MODIFIERS = {
    "http_uri": "http.uri", "http_raw_uri": "http.uri.raw", "http_method": "http.method",
    "http_header": "http.header", "http_raw_header": "http.header.raw", "http_cookie": "http.cookie",
    "http_user_agent": "http.user_agent", "http_host": "http.host", "http_raw_host": "http.host.raw",
    "http_client_body": "http.request_body", "http_server_body": FILE_DATA,
    "http_stat_code": "http.stat_code", "http_stat_msg": "http.stat_msg",
}
STICKY = {name: name for name in ALL_BUFFERS} | {
    name.replace(".", "_"): name for name in ALL_BUFFERS if name.replace(".", "_") not in MODIFIERS
} | {"file.data": FILE_DATA, "file_data": FILE_DATA, "http.server_body": FILE_DATA,
     "http.client_body": "http.request_body"}
DESCRIPTIVE = frozenset({"priority", "target", "tag", "rawbytes"})
_FLOW_DIRECTIONS = {"to_server": "request", "from_client": "request",
                    "to_client": "response", "from_server": "response"}
_FLOW_IGNORED = frozenset({"established", "stateless", "only_stream", "no_stream"})


@dataclass(frozen=True, slots=True)
class RuleSkip:
    reason: str


@dataclass(frozen=True, eq=False)
class RuleParse:
    signatures: tuple[HttpSignature, ...]
    report: LoadReport


@dataclass(slots=True)
class _ContentDraft:
    """A content while its modifiers are still being read (frozen into a ContentMatch at the end)."""

    pattern: bytes
    negated: bool
    nocase: bool = False
    offset: int = 0
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False

    def freeze(self) -> ContentMatch:
        return ContentMatch(self.pattern, self.negated, self.nocase, self.offset, self.depth, self.distance,
                            self.within, self.startswith, self.endswith, self.fast_pattern)


_Draft = Item | _ContentDraft | ParsedPcre


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_rules(text: str, source: str = "") -> RuleParse:
    """Every rule of a rules file; the report says what was left out and why."""
    signatures: list[HttpSignature] = []
    reasons: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    errors: list[RuleProblem] = []
    error_count = disabled = 0
    for line in logical_lines(text):
        if line.kind == "disabled":
            disabled += 1
        if line.kind != "rule":
            continue
        outcome = parse_rule(line.text, line.line_number, source, notes)
        if isinstance(outcome, HttpSignature):
            signatures.append(outcome)
        elif isinstance(outcome, RuleSkip):
            reasons[outcome.reason] += 1
        else:
            error_count += 1
            if len(errors) < MAX_STORED_ERRORS:
                errors.append(outcome)
    report = LoadReport(len(signatures), sum(reasons.values()), disabled, reasons, notes,
                        tuple(errors), error_count)
    return RuleParse(tuple(signatures), report)


def parse_rule(text: str, line_number: int = 1, source: str = "",
               notes: Counter[str] | None = None) -> HttpSignature | RuleSkip | RuleProblem:
    """One rule: a signature, a skip with its reason, or a problem with the line number."""
    try:
        return _RuleBuilder(source, line_number, notes if notes is not None else Counter()).build(text)
    except _Skip as skip:
        return RuleSkip(skip.reason)
    except RuleSyntaxError as error:
        return RuleProblem(source, line_number, str(error))


@dataclass
class _RuleBuilder:
    source: str
    line_number: int
    notes: Counter[str]
    lists: dict[str, list[_Draft]] = field(default_factory=dict)
    sizes: dict[str, list[SizeCheck]] = field(default_factory=dict)
    sticky: str | None = None
    last: tuple[str, int] | None = None     # where the last content is: (buffer, index)
    direction: Phase | None = None
    sid: int | None = None
    rev: int = 1
    gid: int = 1
    msg: str = ""
    classtype: str = ""
    metadata: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    threshold: str = ""

    def build(self, text: str) -> HttpSignature:
        header, body = split_rule(text)
        action = _ACTION_OF.get(header.action)
        if action is None:
            if header.action == "pass":
                raise _Skip("action pass")
            raise RuleSyntaxError(f"unknown action {header.action!r}")
        proto = header.proto.lower()
        if proto not in HTTP_PROTOCOLS and proto != "tcp":
            raise _Skip(f"not http ({proto[:20]})")
        for keyword, value in iter_options(body):
            handler = _HANDLERS.get(keyword)
            if handler is None:
                raise _Skip(f"unsupported keyword {keyword[:40]}")
            handler(self, keyword, value)
        if self.sid is None:
            raise RuleSyntaxError("no sid")
        if header.direction == "<>":
            raise _Skip("bidirectional rule")
        phase = self._phase()
        if proto == "tcp" and RAW in self.lists:
            raise _Skip("not http (tcp payload)")
        server, client = ((header.destination_port, header.source_port) if phase == "request"
                          else (header.source_port, header.destination_port))
        try:
            server_ports = parse_ports(server)
            if parse_ports(client) is not None:
                raise _Skip("client port constraint")
        except UnknownPortVariable as unknown:
            raise _Skip(str(unknown)) from None
        inspections = tuple(
            BufferInspection(name, tuple(_frozen(item) for item in self.lists.get(name, ())),
                             tuple(self.sizes.get(name, ())))
            for name in dict.fromkeys([*self.lists, *self.sizes]))
        if not inspections:
            raise _Skip("no http inspection")
        return HttpSignature(self.sid, self.rev, self.msg, action, self.classtype, phase, inspections,
                             self.gid, tuple(self.metadata), tuple(self.references), self.threshold,
                             server_ports, any("tls_state plaintext" in text for text in self.metadata),
                             self.source, self.line_number)

    # -- keywords ------------------------------------------------------------------------------

    def _sticky(self, keyword: str, value: str) -> None:
        self.sticky = STICKY[keyword]

    def _modifier(self, keyword: str, value: str) -> None:
        self._move_last_content(MODIFIERS[keyword], keyword)

    def _content(self, keyword: str, value: str) -> None:
        pattern, negated = decode_content(value)
        buffer = "http.uri" if keyword == "uricontent" else (self.sticky or RAW)
        self._append(buffer, _ContentDraft(pattern, negated))
        self.last = (buffer, len(self.lists[buffer]) - 1)

    def _fast_pattern(self, keyword: str, value: str) -> None:
        if self.last is not None:   # `fast_pattern:only` and offsets: only the choice matters here
            self._modify_content(keyword, value)

    def _ignore(self, keyword: str, value: str) -> None:
        pass

    def _append(self, buffer: str, item: _Draft) -> None:
        self.lists.setdefault(buffer, []).append(item)

    def _last_content(self, keyword: str) -> tuple[str, int, _ContentDraft]:
        if self.last is None:
            raise RuleSyntaxError(f"{keyword} without a preceding content")
        buffer, index = self.last
        item = self.lists[buffer][index]
        assert isinstance(item, _ContentDraft)
        return buffer, index, item

    def _move_last_content(self, target: str, keyword: str) -> None:
        buffer, index, item = self._last_content(keyword)
        if buffer != target:
            del self.lists[buffer][index]
            if not self.lists[buffer] and buffer not in self.sizes:
                del self.lists[buffer]
            self._append(target, item)
            self.last = (target, len(self.lists[target]) - 1)

    def _modify_content(self, keyword: str, value: str) -> None:
        _, _, item = self._last_content(keyword)
        if keyword == "nocase":
            item.nocase = True
        elif keyword == "fast_pattern":
            item.fast_pattern = True
        elif keyword == "startswith":
            item.startswith = True
        elif keyword == "endswith":
            item.endswith = True
        elif keyword == "offset":
            item.offset = integer(keyword, value)
        elif keyword == "depth":
            item.depth = integer(keyword, value, minimum=1)
        elif keyword == "distance":
            item.distance = integer(keyword, value, minimum=None)
        else:
            item.within = integer(keyword, value, minimum=1)

    def _pcre(self, keyword: str, value: str) -> None:
        try:
            parsed = parse_pcre(value)
        except PcreUnsupported as unsupported:
            raise _Skip(str(unsupported)) from None
        buffer = parsed.buffer or self.sticky
        if buffer is None:
            buffer = self.last[0] if parsed.relative and self.last is not None else RAW
        self._append(buffer, parsed)

    def _isdataat(self, keyword: str, value: str) -> None:
        parts = [part.strip() for part in value.split(",")]
        relative = "relative" in parts[1:]
        if any(part not in ("relative", "rawbytes") for part in parts[1:]):
            raise RuleSyntaxError(f"isdataat: bad option in {value[:40]!r}")
        negated = parts[0].startswith("!")
        position = integer("isdataat", parts[0].lstrip("!"))
        buffer = self.sticky or (self.last[0] if relative and self.last is not None else RAW)
        self._append(buffer, DataAtCheck(position, negated, relative))

    def _size(self, keyword: str, value: str) -> None:
        text, _, modifier = value.partition(",")
        if keyword == "urilen":
            if modifier.strip() not in ("", "norm", "raw"):
                raise RuleSyntaxError(f"urilen: bad modifier {modifier.strip()[:20]!r}")
            buffer = "http.uri.raw" if modifier.strip() == "raw" else "http.uri"
        else:
            if modifier:
                raise RuleSyntaxError("bsize takes one value")
            found = self.sticky or (self.last[0] if self.last is not None else None)
            if found is None:
                raise RuleSyntaxError("bsize without a buffer")
            buffer = found
        self.sizes.setdefault(buffer, []).append(size_check(keyword, text))

    def _flow(self, keyword: str, value: str) -> None:
        for token in (part.strip() for part in value.split(",")):
            if token in _FLOW_DIRECTIONS:
                direction: Phase = "request" if _FLOW_DIRECTIONS[token] == "request" else "response"
                if self.direction is not None and self.direction != direction:
                    raise RuleSyntaxError("flow has two directions")
                self.direction = direction
            elif token not in _FLOW_IGNORED:
                raise _Skip(f"unsupported flow option {token[:30]}")

    def _threshold(self, keyword: str, value: str) -> None:
        kind = value.replace(" ", "").partition(",")[0]
        if keyword == "threshold" and kind == "typelimit":
            self.threshold = value
            self.notes["threshold type limit kept (alert rate limit left to the log)"] += 1
            return
        raise _Skip(f"unsupported keyword {keyword}" + (f" ({kind[4:]})" if kind.startswith("type") else ""))

    def _phase(self) -> Phase:
        used = set(self.lists) | set(self.sizes)
        phase: Phase = self.direction or ("response" if used & (RESPONSE_ONLY | {FILE_DATA}) else "request")
        if FILE_DATA in used:
            body = "http.request_body" if phase == "request" else "http.response_body"
            if body in used:
                raise _Skip("file.data together with " + body)
            if FILE_DATA in self.lists:
                self.lists[body] = self.lists.pop(FILE_DATA)
                if self.last is not None and self.last[0] == FILE_DATA:
                    self.last = (body, self.last[1])
            if FILE_DATA in self.sizes:
                self.sizes[body] = self.sizes.pop(FILE_DATA)
        if phase == "request":
            wrong = sorted(used & RESPONSE_ONLY)
            if wrong:
                raise _Skip(f"response buffer {wrong[0]} in a request rule")
        return phase


def _frozen(item: _Draft) -> Item:
    if isinstance(item, _ContentDraft):
        return item.freeze()
    if isinstance(item, ParsedPcre):
        try:
            regex = compile_pcre(item)
        except PcreUnsupported as unsupported:
            raise _Skip(str(unsupported)) from None
        return PcreMatch(item.source, regex, item.negated, item.relative)
    return item


_CONTENT_MODIFIERS = frozenset({"nocase", "depth", "offset", "distance", "within", "startswith",
                                "endswith"})


def _set_msg(builder: _RuleBuilder, keyword: str, value: str) -> None:
    builder.msg = unescape_text(value)


def _set_sid(builder: _RuleBuilder, keyword: str, value: str) -> None:
    builder.sid = integer("sid", value, minimum=1)


def _set_rev(builder: _RuleBuilder, keyword: str, value: str) -> None:
    builder.rev = integer("rev", value)


def _set_gid(builder: _RuleBuilder, keyword: str, value: str) -> None:
    builder.gid = integer("gid", value)


def _set_classtype(builder: _RuleBuilder, keyword: str, value: str) -> None:
    builder.classtype = value.strip()


def _add_metadata(builder: _RuleBuilder, keyword: str, value: str) -> None:
    builder.metadata.append(value)


def _add_reference(builder: _RuleBuilder, keyword: str, value: str) -> None:
    builder.references.append(value.strip())


_Handler = Callable[[_RuleBuilder, str, str], None]
_HANDLERS: dict[str, _Handler] = {
    **{keyword: _RuleBuilder._sticky for keyword in STICKY},
    **{keyword: _RuleBuilder._modifier for keyword in MODIFIERS},
    **{keyword: _RuleBuilder._modify_content for keyword in _CONTENT_MODIFIERS},
    **{keyword: _RuleBuilder._ignore for keyword in DESCRIPTIVE},
    "content": _RuleBuilder._content, "uricontent": _RuleBuilder._content,
    "fast_pattern": _RuleBuilder._fast_pattern, "pcre": _RuleBuilder._pcre,
    "isdataat": _RuleBuilder._isdataat, "bsize": _RuleBuilder._size, "urilen": _RuleBuilder._size,
    "flow": _RuleBuilder._flow, "threshold": _RuleBuilder._threshold,
    "detection_filter": _RuleBuilder._threshold,
    "msg": _set_msg, "sid": _set_sid, "rev": _set_rev, "gid": _set_gid, "classtype": _set_classtype,
    "metadata": _add_metadata, "reference": _add_reference,
}


_SIZE_PREFIXES: tuple[SizeOp, ...] = ("<=", ">=", "<", ">", "=")


def size_check(keyword: str, text: str) -> SizeCheck:
    """`N`, `<N`, `>N`, `<=N`, `>=N` or `N<>M` (spaces allowed), as bsize and urilen write them."""
    value = text.replace(" ", "")
    if "<>" in value:
        low, _, high = value.partition("<>")
        first, second = integer(keyword, low), integer(keyword, high)
        if second <= first:
            raise RuleSyntaxError(f"{keyword}: empty range {value!r}")
        return SizeCheck("<>", first, second)
    for prefix in _SIZE_PREFIXES:
        if value.startswith(prefix):
            return SizeCheck(prefix, integer(keyword, value[len(prefix):]))
    return SizeCheck("=", integer(keyword, value))
