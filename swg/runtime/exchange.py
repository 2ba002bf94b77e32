"""One inspected request and its response, whatever the client speaks (HTTP/1.1 or HTTP/2):
the gateway's own answers (block page, unblock form), the per-request check (IOC URLs,
categories with the path), the body gate on the way up and down, and the upstream exchange
over HTTP/1.1 (h11).

The client side is a `ClientChannel` (swg/runtime/interceptor.py for HTTP/1.1,
swg/runtime/h2_client.py for HTTP/2); bodies travel as h11 `Data` / `EndOfMessage` events.
Bodies pass the gate described in swg/inspection.py; a refusal is raised as `Blocked`.
"""

from __future__ import annotations

import asyncio
import codecs
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

import h11

from swg.dlp.scan import DlpScanner
from swg.filetypes import detect_file_type
from swg.inspection import (
    HOLD_BACK_BYTES,
    HttpRecord,
    InspectionSettings,
    block_decision,
    charset_of,
    filename_of,
    stream_whole,
)
from ztcore.blockpage import UNBLOCK_PATH, render_block
from ztcore.decision import Decision, allow, deny
from ztcore.headers import decision_headers
from ztcore.reasons import Reason

READ_BYTES = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024
UNBLOCK_BODY_MAX_BYTES = 16 * 1024
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
                        b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect"})
Headers = list[tuple[bytes, bytes]]
BodyEvent = h11.Data | h11.EndOfMessage


@dataclass(frozen=True)
class BodyVerdict:
    """The whole-body scan's answer: a deny, or the body to send (sanitised where it was)."""
    decision: Decision | None
    body: bytes
    findings: dict[str, int]
    malware: str | None = None
    sanitised: tuple[str, ...] = ()
    new_filename: str | None = None


# (body, filename, content type, upload?) → verdict; built by the composition root from the
# content cores, the sanitiser and clamd.
WholeScan = Callable[[bytes, str | None, str | None, bool], Awaitable[BodyVerdict]]
RequestCheck = Callable[[str, str, Headers], tuple[Decision | None, tuple[str, ...]]]


class Blocked(Exception):
    """A refusal; `head_sent`: the message it stopped had already started on its way."""

    def __init__(self, decision: Decision, head_sent: bool) -> None:
        super().__init__(decision.reason.value)
        self.decision, self.head_sent = decision, head_sent


class ClientChannel(Protocol):
    async def body_event(self) -> BodyEvent: ...
    async def respond(self, status: int, headers: Headers, reason: bytes = b"") -> None: ...
    async def send(self, event: BodyEvent) -> None: ...
    async def continue_100(self) -> None: ...
    def response_started(self) -> bool: ...
    def abort(self) -> None: ...


class OriginLink(Protocol):
    """A request's way to the origin: an HTTP/1.1 connection (`UpstreamLink`) or a stream of a
    shared HTTP/2 connection (swg/runtime/h2_upstream.py)."""

    protocol: str

    async def event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]: ...
    async def send(self, event: h11.Event) -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class RequestHead:
    method: bytes
    target: bytes
    headers: Headers          # HTTP/1.1 style, with `host`


class UpstreamLink:
    """One HTTP/1.1 connection to the origin (already validated when TLS)."""
    protocol = "http/1.1"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                 may_read: Callable[[], Awaitable[None]]) -> None:
        self.reader, self.writer, self.host, self.may_read = reader, writer, host, may_read
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise Blocked(deny(Reason.UPSTREAM_PROTOCOL_ERROR, status=502,
                                   detail=f"{self.host}: {exc}"), True) from None
            if event is not h11.NEED_DATA:
                return event
            await self.may_read()   # the client cannot take more: stop reading the origin
            try:
                self.conn.receive_data(await self.reader.read(READ_BYTES))
            except (ConnectionError, ssl.SSLError) as exc:
                raise Blocked(deny(Reason.UPSTREAM_UNREACHABLE, status=502,
                                   detail=f"{self.host}: {exc}"), True) from None

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    @property
    def reusable(self) -> bool:
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()

    def abort(self) -> None:
        if not self.writer.is_closing():
            self.writer.transport.abort()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


@dataclass
class ExchangeContext:
    host: str
    scheme: str
    settings: InspectionSettings
    scan_whole: WholeScan
    on_record: Callable[[HttpRecord], None]
    check_request: RequestCheck | None = None
    refusal: Decision | None = None   # no upstream: every request gets this block page


async def run_exchange(ctx: ExchangeContext, request: RequestHead, client: ClientChannel,
                       upstream: Callable[[], Awaitable[OriginLink]]) -> tuple[bool, OriginLink | None]:
    """(whether the client connection may carry another request, the upstream link used)."""
    target = request.target.decode("latin-1")
    host_header = header(request.headers, b"host") or ""
    url = f"{ctx.scheme}://{host_header or ctx.host}{target}"
    method = request.method.decode("latin-1")
    record = HttpRecord(uuid.uuid4().hex[:16], method, url, allow())
    link: OriginLink | None = None
    try:
        if method == "POST" and target.split("?", 1)[0] == UNBLOCK_PATH:
            await _unblock_request(client, record)
            return False, None
        if ctx.refusal is not None:
            raise Blocked(ctx.refusal, head_sent=False)
        if ctx.check_request is not None:
            refused, sigs = ctx.check_request(method, url, request.headers)
            record.signatures = sigs
            if refused is not None:
                raise Blocked(refused, head_sent=False)
        link = await upstream()
        record.origin_protocol = link.protocol
        await _forward(ctx, request, url, record, client, link)
        keep = await _respond(ctx, request, url, record, client, link)
        return keep, link
    except Blocked as blocked:
        record.decision = blocked.decision
        if link is not None and blocked.head_sent:
            link.abort()
        if not client.response_started():
            record.status = blocked.decision.status
            await respond_block(client, blocked.decision, url, record.request_id)
        else:
            client.abort()
        return False, None
    finally:
        ctx.on_record(record)


async def _forward(ctx: ExchangeContext, request: RequestHead, url: str, record: HttpRecord,
                   client: ClientChannel, link: OriginLink) -> None:
    headers = [(k, v) for k, v in request.headers if k not in HOP_BY_HOP]
    restrictions = ctx.settings.tenant_restrictions
    if restrictions is not None:
        extra = restrictions.headers_for(ctx.host)
        if extra:
            names = {k for k, _ in extra}
            headers = [(k, v) for k, v in headers if k not in names] + extra
    await client.continue_100()
    ctype = header(request.headers, b"content-type")
    filename = filename_of(url, header(request.headers, b"content-disposition"))

    async def send_head(length: int | None, new_name: str | None) -> None:
        await link.send(h11.Request(method=request.method, target=request.target,
                                    headers=framed(headers, length, request.headers)))

    record.bytes_up = await relay_body(ctx, client.body_event, send_head, link.send, upload=True,
                                       ctype=ctype, filename=filename, record=record)


async def _respond(ctx: ExchangeContext, request: RequestHead, url: str, record: HttpRecord,
                   client: ClientChannel, link: OriginLink) -> bool:
    while True:
        event = await link.event()
        if isinstance(event, h11.InformationalResponse):
            continue    # 100 was ours to send; 103 hints are dropped
        if isinstance(event, h11.Response):
            break
        raise Blocked(deny(Reason.UPSTREAM_UNREACHABLE, status=502, detail=(
            f"{ctx.host} closed the connection without answering")), True)
    response = event
    original = list(response.headers)
    record.status = response.status_code
    close = response.http_version == b"1.0" or any(
        k == b"connection" and b"close" in v.lower() for k, v in response.headers)
    headers = [(k, v) for k, v in response.headers if k not in HOP_BY_HOP]
    if close:
        headers.append((b"connection", b"close"))
    ctype = header(original, b"content-type")
    filename = filename_of(url, header(original, b"content-disposition"))
    bodyless = request.method == b"HEAD" or response.status_code in (204, 304)

    async def send_head(length: int | None, new_name: str | None) -> None:
        out = headers if bodyless else framed(headers, length, original)
        if new_name:
            out = [(k, v) for k, v in out if k != b"content-disposition"]
            out.append((b"content-disposition", f'attachment; filename="{new_name}"'.encode()))
        await client.respond(response.status_code, out, response.reason)

    async def next_event() -> BodyEvent:
        event = await link.event()
        if isinstance(event, (h11.Data, h11.EndOfMessage)):
            return event
        raise Blocked(deny(Reason.UPSTREAM_UNREACHABLE, status=502,
                           detail=f"{ctx.host} closed the connection during the response"), True)

    record.bytes_down = await relay_body(ctx, next_event, send_head, client.send, upload=False,
                                         ctype=ctype, filename=filename, record=record)
    return not close


async def relay_body(ctx: ExchangeContext, next_event: Callable[[], Awaitable[BodyEvent]],
                     send_head: Callable[[int | None, str | None], Awaitable[None]],
                     send: Callable[[BodyEvent], Awaitable[None]], *, upload: bool,
                     ctype: str | None, filename: str | None, record: HttpRecord) -> int:
    """Pass one body through the gate; returns its size. Raises Blocked."""
    settings = ctx.settings
    held = bytearray()
    ended = False
    while len(held) < settings.whole_scan_bytes and not ended:
        event = await next_event()
        if isinstance(event, h11.Data):
            held += event.data
        else:
            ended = True
    if ended and not held:
        await send_head(None, None)
        await send(h11.EndOfMessage())
        return 0
    file_type = detect_file_type(bytes(held[:4096]), filename)
    record.file_types += (file_type.kind,)
    if file_type.kind in settings.blocked_file_kinds:
        raise Blocked(deny(Reason.FILE_TYPE_BLOCKED, detail=f"{file_type.kind} file"), False)
    if not ended and stream_whole(file_type):
        while not ended:
            event = await next_event()
            if isinstance(event, h11.Data):
                held += event.data
                if len(held) > settings.max_buffer_bytes:
                    raise Blocked(deny(Reason.CONTENT_UNSCANNABLE, detail=(
                        f"a {file_type.kind} file larger than {settings.max_buffer_bytes} bytes "
                        "cannot be scanned")), False)
            else:
                ended = True
    if ended:
        verdict = await ctx.scan_whole(bytes(held), filename, ctype, upload)
        _note(record, verdict)
        if verdict.decision is not None:
            raise Blocked(verdict.decision, False)
        await send_head(len(verdict.body), verdict.new_filename)
        await send(h11.Data(data=verdict.body))
        await send(h11.EndOfMessage())
        return len(verdict.body)
    return await _stream(ctx, held, next_event, send_head, send, upload=upload, ctype=ctype,
                         record=record)


async def _stream(ctx: ExchangeContext, held: bytearray, next_event: Callable[[], Awaitable[BodyEvent]],
                  send_head: Callable[[int | None, str | None], Awaitable[None]],
                  send: Callable[[BodyEvent], Awaitable[None]], *, upload: bool,
                  ctype: str | None, record: HttpRecord) -> int:
    """A long text or media body: DLP (uploads) and hashes as it passes, `HOLD_BACK_BYTES`
    behind, so a number is found before its bytes leave."""
    dlp = ctx.settings.dlp if upload else None
    scanner = DlpScanner(dlp) if dlp is not None else None
    decoder = codecs.getincrementaldecoder(_codec(charset_of(ctype)))(errors="replace")
    hashes = ctx.settings.signatures.scanner()
    await send_head(None, None)
    total = 0
    pending = held
    chunk = bytes(held)
    while True:
        hashes.feed(chunk)
        if scanner is not None:
            scanner.feed(decoder.decode(chunk))
            if scanner.blocked:
                _dlp_blocked(scanner, record)
        if len(pending) > HOLD_BACK_BYTES:
            cut = len(pending) - HOLD_BACK_BYTES
            await send(h11.Data(data=bytes(pending[:cut])))
            total += cut
            del pending[:cut]
        event = await next_event()
        if isinstance(event, h11.EndOfMessage):
            break
        chunk = bytes(event.data)
        pending += chunk
    if scanner is not None:
        scanner.feed(decoder.decode(b"", final=True))
        verdict = scanner.finish()
        record.findings.update({f.detector: f.count for f in verdict.findings})
        if verdict.blocked:
            _dlp_blocked(scanner, record)
    malware = hashes.scan_result()
    if malware.infected:
        record.malware = malware.name
        raise Blocked(deny(Reason.MALWARE_DETECTED, detail=f"{malware.name}"), True)
    await send(h11.Data(data=bytes(pending)))
    await send(h11.EndOfMessage())
    return total + len(pending)


def _dlp_blocked(scanner: DlpScanner, record: HttpRecord) -> None:
    verdict = scanner.finish()
    record.findings.update({f.detector: f.count for f in verdict.findings})
    reason = verdict.reasons[0] if verdict.reasons else "dlp-keyword"
    counts = ", ".join(f"{f.count} × {f.detector}" for f in verdict.findings if f.blocking)
    raise Blocked(block_decision(reason, f"found {counts} in the upload"), True)


# -- answers of our own -------------------------------------------------------------------------

async def _unblock_request(client: ClientChannel, record: HttpRecord) -> None:
    body = bytearray()
    while True:
        event = await client.body_event()
        if isinstance(event, h11.EndOfMessage):
            break
        body += event.data
        if len(body) > UNBLOCK_BODY_MAX_BYTES:
            raise Blocked(deny(Reason.REQUEST_INVALID, status=413, detail="unblock request too long"), False)
    form = dict(parse_qsl(body.decode("utf-8", "replace"), max_num_fields=8))
    record.unblock_request = {k: form.get(k, "")[:1000] for k in
                              ("request_id", "url", "reason_code", "justification")}
    record.decision = allow()
    page = ("<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\">"
            "<title>Sekimori</title></head><body><h1>申請を受け付けました / Request received</h1>"
            "<p>情報システム課が確認します。/ Your IT department will review it.</p>"
            f"<p>申請ID / request id: <code>{record.request_id}</code></p></body></html>")
    data = page.encode()
    record.status = 200
    await client.respond(200, [(b"content-type", b"text/html; charset=utf-8"),
                               (b"content-length", str(len(data)).encode()), (b"cache-control", b"no-store"),
                               (b"connection", b"close")])
    await client.send(h11.Data(data=data))
    await client.send(h11.EndOfMessage())


async def respond_block(client: ClientChannel, decision: Decision, url: str, request_id: str | None) -> None:
    """The block page, with the decision's reason headers; the connection closes after it."""
    body, ctype = render_block(decision, url, True, request_id, UNBLOCK_PATH if request_id else None)
    status = decision.status if 400 <= decision.status < 600 else 403
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"connection", b"close")]
    headers += [(k.encode(), v.encode("ascii", "replace")) for k, v in decision_headers(decision)]
    if request_id:
        headers.append((b"sekimori-request-id", request_id.encode()))
    await client.respond(status, headers)
    await client.send(h11.Data(data=body))
    await client.send(h11.EndOfMessage())


def _note(record: HttpRecord, verdict: BodyVerdict) -> None:
    for reason, count in verdict.findings.items():
        record.findings[reason] = record.findings.get(reason, 0) + count
    if verdict.malware:
        record.malware = verdict.malware
    if verdict.sanitised:
        record.sanitised += verdict.sanitised


def header(headers: Headers, name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def framed(headers: Headers, length: int | None, original: Headers) -> Headers:
    """Headers with the body's framing: a known length, or the original's (h11 chunks a body
    of unknown length)."""
    out = [(k, v) for k, v in headers if k != b"content-length"]
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    else:
        original_length = header(original, b"content-length")
        if original_length is not None:
            out.append((b"content-length", original_length.encode()))
    return out


def _codec(charset: str | None) -> str:
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            pass
    return "utf-8"
