"""The interceptor: one inspected stream of the tunnel, spoken HTTP/1.1 on both sides.

It is the tunnel stream's endpoint (ztcore.tunnel.Endpoint): the client's bytes arrive in
`write`, are decrypted with our minted leaf (ssl.MemoryBIO, so the tunnel's own framing carries
the TLS records) and parsed with h11; requests go to the upstream over a connection that was
opened — and whose certificate was validated — before the client got its leaf. Bodies pass
the gate described in swg/inspection.py; what became of each request is reported as an
`HttpRecord` through `on_record`.

Back-pressure: the session pauses us (`pause_reading`) when the client's stream window is
used up, and we stop reading the upstream; while the client's bytes wait unread here we tell
the session (`endpoint_congested`) and it stops granting the client window.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from ztcore.tunnel import TunnelSession

log = logging.getLogger("sekimori.inspect")

READ_BYTES = 256 * 1024
INBOX_HIGH_BYTES = 4 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
UNBLOCK_BODY_MAX_BYTES = 16 * 1024
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
                        b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect"})


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
RequestCheck = Callable[[str, str, list[tuple[bytes, bytes]]], tuple[Decision | None, tuple[str, ...]]]


class _Blocked(Exception):
    def __init__(self, decision: Decision, head_sent: bool) -> None:
        super().__init__(decision.reason.value)
        self.decision, self.head_sent = decision, head_sent


class Interceptor:
    def __init__(self, *, host: str, port: int, server_ctx: ssl.SSLContext | None,
                 reader: asyncio.StreamReader | None, writer: asyncio.StreamWriter | None,
                 settings: InspectionSettings, scan_whole: WholeScan,
                 on_record: Callable[[HttpRecord], None],
                 check_request: RequestCheck | None = None,
                 refusal: Decision | None = None) -> None:
        """`refusal`: no upstream at all; every request gets the block page for this decision
        (a site refused before connecting, shown a readable page instead of a failed CONNECT)."""
        self.session: TunnelSession | None = None
        self.stream_id = 0
        self.host, self.port = host, port
        self.scheme = "https" if server_ctx is not None else "http"
        self.settings, self.scan_whole, self.on_record = settings, scan_whole, on_record
        self.check_request = check_request
        self._reader, self._writer = reader, writer
        self.refusal = refusal
        self._tls: ssl.SSLObject | None = None
        if server_ctx is not None:
            self._in_bio, self._out_bio = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._tls = server_ctx.wrap_bio(self._in_bio, self._out_bio, server_side=True)
        self._handshaken = server_ctx is None
        self._inbox = bytearray()
        self._client_eof = False
        self._closed = False
        self._congested = False
        self._wake = asyncio.Event()
        self._may_send = asyncio.Event()
        self.client_error: str | None = None
        self.requests = 0
        self._client = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._upstream = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._task = asyncio.get_running_loop().create_task(self._run())

    # -- ztcore.tunnel.Endpoint: the client's side ------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._tls is not None:
            self._in_bio.write(data)
            self._tls_progress()
        else:
            self._inbox += data
        self._wake.set()
        if len(self._inbox) > INBOX_HIGH_BYTES and not self._congested and self.session is not None:
            self._congested = True
            self.session.endpoint_congested(self.stream_id)

    def write_eof(self) -> None:
        if self._tls is not None:
            self._in_bio.write_eof()
            self._tls_progress()
        self._client_eof = True
        self._wake.set()

    def close(self) -> None:
        self._shutdown()

    def abort(self) -> None:
        self._shutdown()

    def pause_reading(self) -> None:
        self._may_send.clear()

    def resume_reading(self) -> None:
        self._may_send.set()

    # -- TLS towards the client ---------------------------------------------------------------

    def _tls_progress(self) -> None:
        tls = self._tls
        assert tls is not None
        try:
            if not self._handshaken:
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    return
                self._handshaken = True
            while True:
                try:
                    chunk = tls.read(READ_BYTES)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self._client_eof = True
                    break
                if not chunk:
                    self._client_eof = True
                    break
                self._inbox += chunk
        except ssl.SSLError as exc:
            self.client_error = f"client TLS: {exc.reason or exc}"
            self._client_eof = True
        finally:
            self._flush_tls()

    def _flush_tls(self) -> None:
        if self._tls is None or self.session is None:
            return
        out = self._out_bio.read()
        if out:
            self.session.send(self.stream_id, out)

    async def _send_client(self, data: bytes | None) -> None:
        if not data or self._closed or self.session is None:
            return
        await self._may_send.wait()
        if self._tls is not None:
            self._tls.write(data)
            self._flush_tls()
        else:
            self.session.send(self.stream_id, data)

    async def _client_data(self) -> bytes:
        while not self._inbox and not self._client_eof and not self._closed:
            self._wake.clear()
            await self._wake.wait()
        data = bytes(self._inbox)
        self._inbox.clear()
        if self._congested and self.session is not None:
            self._congested = False
            self.session.endpoint_drained(self.stream_id)
        return data

    async def _client_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self._client.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self._closed:
                return h11.ConnectionClosed()
            self._client.receive_data(await self._client_data())

    # -- the upstream ------------------------------------------------------------------------

    async def _upstream_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self._upstream_next()
            if event is not h11.NEED_DATA:
                return event
            await self._may_send.wait()  # the client cannot take more: stop reading upstream
            assert self._reader is not None
            try:
                self._upstream.receive_data(await self._reader.read(READ_BYTES))
            except (ConnectionError, ssl.SSLError) as exc:
                raise _Blocked(deny(Reason.UPSTREAM_UNREACHABLE, status=502,
                                    detail=f"{self.host}: {exc}"), True) from None

    def _upstream_next(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self._upstream.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Blocked(deny(Reason.UPSTREAM_PROTOCOL_ERROR, status=502,
                                detail=f"{self.host}: {exc}"), True) from None

    async def _send_upstream(self, event: h11.Event) -> None:
        data = self._upstream.send(event)
        if data:
            assert self._writer is not None
            self._writer.write(data)
            await self._writer.drain()

    # -- the exchange loop --------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._may_send.wait()
            while not self._closed:
                event = await self._client_event()
                if not isinstance(event, h11.Request):
                    break
                keep = await self._exchange(event)
                if not keep or self._client.our_state is not h11.DONE \
                        or self._upstream.our_state is not h11.DONE \
                        or self._upstream.their_state is not h11.DONE:
                    break
                self._client.start_next_cycle()
                self._upstream.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._reply_error(deny(Reason.REQUEST_INVALID, status=400, detail=f"HTTP: {exc}"))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, h11.LocalProtocolError) as exc:
            log.info("inspected connection to %s ended: %s", self.host, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inspection of %s failed", self.host)
            await self._reply_error(deny(Reason.INTERNAL_ERROR, status=500))
        finally:
            self._finish()

    async def _reply_error(self, decision: Decision) -> None:
        if self._client.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self._closed:
            try:
                await self._respond_block(decision, "", None, close=True)
            except Exception:  # the connection is going anyway
                pass

    async def _exchange(self, request: h11.Request) -> bool:
        self.requests += 1
        target = request.target.decode("latin-1")
        host_header = next((v.decode("latin-1") for k, v in request.headers if k == b"host"), "")
        url = f"{self.scheme}://{host_header or self.host}{target}"
        method = request.method.decode("latin-1")
        record = HttpRecord(uuid.uuid4().hex[:16], method, url, allow())
        started = time.monotonic()
        try:
            if method == "POST" and target.split("?", 1)[0] == UNBLOCK_PATH:
                return await self._unblock_request(request, record)
            if self.refusal is not None:
                raise _Blocked(self.refusal, head_sent=False)
            if self.check_request is not None:
                refused, sigs = self.check_request(method, url, list(request.headers))
                record.signatures = sigs
                if refused is not None:
                    raise _Blocked(refused, head_sent=False)
            return await self._forward(request, url, record)
        except _Blocked as blocked:
            record.decision = blocked.decision
            if self._client.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                record.status = blocked.decision.status
                await self._respond_block(blocked.decision, url, record.request_id, close=True)
            else:
                self._abort_client()
            return False
        finally:
            log.debug("%s %s: %s in %.3f s", method, url, record.decision.reason.value,
                      time.monotonic() - started)
            self.on_record(record)

    async def _forward(self, request: h11.Request, url: str, record: HttpRecord) -> bool:
        headers = [(k, v) for k, v in request.headers if k not in HOP_BY_HOP]
        restrictions = self.settings.tenant_restrictions
        if restrictions is not None:
            extra = restrictions.headers_for(self.host)
            if extra:
                names = {k for k, _ in extra}
                headers = [(k, v) for k, v in headers if k not in names] + extra
        if self._client.they_are_waiting_for_100_continue:
            await self._send_client(self._client.send(h11.InformationalResponse(status_code=100,
                                                                                 headers=[])))
        ctype = _header(request.headers, b"content-type")
        filename = filename_of(url, _header(request.headers, b"content-disposition"))

        async def send_head(length: int | None, new_name: str | None) -> None:
            await self._send_upstream(h11.Request(method=request.method, target=request.target,
                                                  headers=_framed(headers, length, request.headers)))

        async def next_event() -> h11.Event:
            event = await self._client_event()
            if isinstance(event, (h11.Data, h11.EndOfMessage)):
                return event
            raise ConnectionError("client went away during the request body")

        try:
            record.bytes_up = await self._relay(next_event, send_head, self._send_upstream,
                                                upload=True, ctype=ctype, filename=filename,
                                                record=record)
        except _Blocked as blocked:
            if blocked.head_sent and self._writer is not None:
                self._writer.transport.abort()   # the upstream never gets a complete request
            raise _Blocked(blocked.decision, head_sent=False) from None
        return await self._respond(request, url, record)

    async def _respond(self, request: h11.Request, url: str, record: HttpRecord) -> bool:
        while True:
            event = await self._upstream_event()
            if isinstance(event, h11.InformationalResponse):
                continue    # 100 was ours to send; 103 hints are dropped
            if isinstance(event, h11.Response):
                break
            raise _Blocked(deny(Reason.UPSTREAM_UNREACHABLE, status=502, detail=(
                f"{self.host} closed the connection without answering")), True)
        response = event
        record.status = response.status_code
        close = response.http_version == b"1.0" or any(
            k == b"connection" and b"close" in v.lower() for k, v in response.headers)
        headers = [(k, v) for k, v in response.headers if k not in HOP_BY_HOP]
        if close:
            headers.append((b"connection", b"close"))
        ctype = _header(response.headers, b"content-type")
        disposition = _header(response.headers, b"content-disposition")
        filename = filename_of(url, disposition)
        bodyless = request.method == b"HEAD" or response.status_code in (204, 304)

        async def send_head(length: int | None, new_name: str | None) -> None:
            out = headers if bodyless else _framed(headers, length, response.headers)
            if new_name:
                out = [(k, v) for k, v in out if k != b"content-disposition"]
                out.append((b"content-disposition", f'attachment; filename="{new_name}"'.encode()))
            await self._send_client(self._client.send(h11.Response(
                status_code=response.status_code, headers=out, reason=response.reason)))

        async def next_event() -> h11.Event:
            event = await self._upstream_event()
            if isinstance(event, (h11.Data, h11.EndOfMessage)):
                return event
            raise ConnectionError("upstream closed during the response body")

        async def send_client(event: h11.Event) -> None:
            await self._send_client(self._client.send(event))

        record.bytes_down = await self._relay(next_event, send_head, send_client, upload=False,
                                              ctype=ctype, filename=filename, record=record,
                                              bodyless=bodyless)
        return not close

    async def _relay(self, next_event: Callable[[], Awaitable[h11.Event]],
                     send_head: Callable[[int | None, str | None], Awaitable[None]],
                     send: Callable[[h11.Event], Awaitable[None]], *, upload: bool,
                     ctype: str | None, filename: str | None, record: HttpRecord,
                     bodyless: bool = False) -> int:
        """Pass one body through the gate; returns its size. Raises _Blocked."""
        settings = self.settings
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
            raise _Blocked(deny(Reason.FILE_TYPE_BLOCKED, detail=f"{file_type.kind} file"), False)
        if not ended and stream_whole(file_type):
            while not ended:
                event = await next_event()
                if isinstance(event, h11.Data):
                    held += event.data
                    if len(held) > settings.max_buffer_bytes:
                        raise _Blocked(deny(Reason.CONTENT_UNSCANNABLE, detail=(
                            f"a {file_type.kind} file larger than {settings.max_buffer_bytes} bytes "
                            "cannot be scanned")), False)
                else:
                    ended = True
        if ended:
            verdict = await self.scan_whole(bytes(held), filename, ctype, upload)
            _note(record, verdict)
            if verdict.decision is not None:
                raise _Blocked(verdict.decision, False)
            await send_head(len(verdict.body), verdict.new_filename)
            await send(h11.Data(data=verdict.body))
            await send(h11.EndOfMessage())
            return len(verdict.body)
        return await self._stream(held, next_event, send_head, send, upload=upload, ctype=ctype,
                                  record=record)

    async def _stream(self, held: bytearray, next_event: Callable[[], Awaitable[h11.Event]],
                      send_head: Callable[[int | None, str | None], Awaitable[None]],
                      send: Callable[[h11.Event], Awaitable[None]], *, upload: bool,
                      ctype: str | None, record: HttpRecord) -> int:
        """A long text or media body: DLP (uploads) and hashes as it passes, `HOLD_BACK_BYTES`
        behind, so a number is found before its bytes leave."""
        dlp = self.settings.dlp if upload else None
        scanner = DlpScanner(dlp) if dlp is not None else None
        decoder = codecs.getincrementaldecoder(_codec(charset_of(ctype)))(errors="replace")
        hashes = self.settings.signatures.scanner()
        await send_head(None, None)
        total = 0
        pending = held
        chunk = bytes(held)
        while True:
            hashes.feed(chunk)
            if scanner is not None:
                scanner.feed(decoder.decode(chunk))
                if scanner.blocked:
                    self._dlp_blocked(scanner, record)
            if len(pending) > HOLD_BACK_BYTES:
                cut = len(pending) - HOLD_BACK_BYTES
                await send(h11.Data(data=bytes(pending[:cut])))
                total += cut
                del pending[:cut]
            event = await next_event()
            if isinstance(event, h11.EndOfMessage):
                break
            assert isinstance(event, h11.Data)
            chunk = bytes(event.data)
            pending += chunk
        if scanner is not None:
            scanner.feed(decoder.decode(b"", final=True))
            verdict = scanner.finish()
            record.findings.update({f.detector: f.count for f in verdict.findings})
            if verdict.blocked:
                self._dlp_blocked(scanner, record)
        malware = hashes.scan_result()
        if malware.infected:
            record.malware = malware.name
            raise _Blocked(deny(Reason.MALWARE_DETECTED, detail=f"{malware.name}"), True)
        await send(h11.Data(data=bytes(pending)))
        await send(h11.EndOfMessage())
        return total + len(pending)

    def _dlp_blocked(self, scanner: DlpScanner, record: HttpRecord) -> None:
        verdict = scanner.finish()
        record.findings.update({f.detector: f.count for f in verdict.findings})
        reason = verdict.reasons[0] if verdict.reasons else "dlp-keyword"
        counts = ", ".join(f"{f.count} × {f.detector}" for f in verdict.findings if f.blocking)
        raise _Blocked(block_decision(reason, f"found {counts} in the upload"), True)

    # -- answers of our own -------------------------------------------------------------------

    async def _unblock_request(self, request: h11.Request, record: HttpRecord) -> bool:
        body = bytearray()
        while True:
            event = await self._client_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > UNBLOCK_BODY_MAX_BYTES:
                    raise _Blocked(deny(Reason.REQUEST_INVALID, status=413,
                                        detail="unblock request too long"), False)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False
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
        await self._send_client(self._client.send(h11.Response(status_code=200, headers=[
            (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store")])))
        await self._send_client(self._client.send(h11.Data(data=data)))
        await self._send_client(self._client.send(h11.EndOfMessage()))
        return False

    async def _respond_block(self, decision: Decision, url: str, request_id: str | None,
                             close: bool) -> None:
        body, ctype = render_block(decision, url, True, request_id,
                                   UNBLOCK_PATH if request_id else None)
        status = decision.status if 400 <= decision.status < 600 else 403
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store")]
        headers += [(k.encode(), v.encode("ascii", "replace")) for k, v in decision_headers(decision)]
        if request_id:
            headers.append((b"sekimori-request-id", request_id.encode()))
        if close:
            headers.append((b"connection", b"close"))
        if self._client.their_state is h11.SEND_BODY:
            pass  # the rest of the request is not read: the connection closes after this answer
        await self._send_client(self._client.send(h11.Response(status_code=status, headers=headers)))
        await self._send_client(self._client.send(h11.Data(data=body)))
        await self._send_client(self._client.send(h11.EndOfMessage()))

    # -- ending ----------------------------------------------------------------------------

    def _abort_client(self) -> None:
        if self.session is not None and not self._closed:
            self.session.abort(self.stream_id)

    def _finish(self) -> None:
        """The exchange loop is over: close the upstream and end the client's stream."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()
        if self._closed or self.session is None:
            return
        if self._tls is not None and self._handshaken:
            try:
                self._tls.unwrap()
            except ssl.SSLError:
                pass
            self._flush_tls()
        self.session.end(self.stream_id)

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._may_send.set()
        if self._writer is not None and not self._writer.is_closing():
            self._writer.transport.abort()
        if not self._task.done():
            self._task.cancel()


def _note(record: HttpRecord, verdict: BodyVerdict) -> None:
    for reason, count in verdict.findings.items():
        record.findings[reason] = record.findings.get(reason, 0) + count
    if verdict.malware:
        record.malware = verdict.malware
    if verdict.sanitised:
        record.sanitised += verdict.sanitised


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def _framed(headers: list[tuple[bytes, bytes]], length: int | None,
            original: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers with the body's framing: a known length, or the original's (h11 chunks a body
    of unknown length)."""
    out = [(k, v) for k, v in headers if k != b"content-length"]
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    else:
        original_length = _header(original, b"content-length")
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
