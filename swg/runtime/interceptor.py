"""The interceptor: one inspected stream of the tunnel, as the client's peer.

It is the tunnel stream's endpoint (ztcore.tunnel.Endpoint): the client's bytes arrive in
`write` and are decrypted with our minted leaf (ssl.MemoryBIO, so the tunnel's own framing
carries the TLS records). The client speaks HTTP/1.1 (h11, here) or HTTP/2 (ALPN "h2",
swg/runtime/h2_client.py); each request is one `run_exchange` (swg/runtime/exchange.py) over a
connection to the origin — the first one opened, and validated, before the client got its
leaf. An origin that chose HTTP/2 is shared by all requests (swg/runtime/h2_upstream.py); with
HTTP/1.1 more connections are opened for concurrent HTTP/2 streams and kept for reuse.

Back-pressure: the session pauses us (`pause_reading`) when the client's stream window is
used up, and we stop reading the origin; while the client's bytes wait unread here we tell
the session (`endpoint_congested`) and it stops granting the client window.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

import h11

from swg.inspection import HttpRecord, InspectionSettings
from swg.runtime.exchange import (
    MAX_HEAD_BYTES,
    READ_BYTES,
    Blocked,
    BodyEvent,
    BodyVerdict,
    ExchangeContext,
    Headers,
    OriginLink,
    RequestCheck,
    RequestHead,
    UpstreamLink,
    WholeScan,
    respond_block,
    run_exchange,
)
from swg.runtime.h2_upstream import H2Origin, H2OriginStream
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason
from ztcore.tunnel import TunnelSession

__all__ = ["BodyVerdict", "Interceptor", "RequestCheck", "WholeScan"]
log = logging.getLogger("sekimori.inspect")

INBOX_HIGH_BYTES = 4 * 1024 * 1024
MAX_IDLE_UPSTREAMS = 4
# Opens another validated connection to the same origin: (reader, writer) or a deny.
Connect = Callable[[], Awaitable[tuple[Decision | None, "tuple[asyncio.StreamReader, asyncio.StreamWriter] | None"]]]


class Interceptor:
    def __init__(self, *, host: str, port: int, server_ctx: ssl.SSLContext | None,
                 reader: asyncio.StreamReader | None, writer: asyncio.StreamWriter | None,
                 settings: InspectionSettings, scan_whole: WholeScan,
                 on_record: Callable[[HttpRecord], None],
                 check_request: RequestCheck | None = None,
                 refusal: Decision | None = None, connect: Connect | None = None) -> None:
        """`refusal`: no upstream at all; every request gets the block page for this decision
        (a site refused before connecting, shown a readable page instead of a failed CONNECT).
        `connect`: opens another connection to the origin (concurrent HTTP/2 streams)."""
        self.session: TunnelSession | None = None
        self.stream_id = 0
        self.host, self.port = host, port
        self.ctx = ExchangeContext(host, "https" if server_ctx is not None else "http", settings,
                                   scan_whole, on_record, check_request, refusal)
        self._connect = connect
        self._idle: list[UpstreamLink] = []
        self._links: set[UpstreamLink | H2Origin] = set()
        self._h2: H2Origin | None = None
        if reader is not None and writer is not None:
            self._adopt(reader, writer)
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
        except ssl.SSLEOFError:       # closed without close_notify, as browsers often do
            self._client_eof = True
        except ssl.SSLError as exc:   # e.g. a pinned app refusing our leaf: logged on the stream
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

    async def _client_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self._client.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self._closed:
                return h11.ConnectionClosed()
            self._client.receive_data(await self._client_data())

    # -- for the HTTP/2 side (swg/runtime/h2_client.py) ---------------------------------------

    async def client_data(self) -> bytes:
        """The client's next decrypted bytes; b"" at its end."""
        return await self._client_data()

    async def may_send(self) -> None:
        await self._may_send.wait()

    def write_client(self, data: bytes) -> None:
        """Frames of our own (settings, window updates) go out at once; DATA waits in
        `may_send` first."""
        if self._closed or self.session is None or not data:
            return
        if self._tls is not None:
            self._tls.write(data)
            self._flush_tls()
        else:
            self.session.send(self.stream_id, data)

    @property
    def alpn(self) -> str | None:
        return self._tls.selected_alpn_protocol() if self._tls is not None else None

    # -- the origin side: a small pool of HTTP/1.1 connections ---------------------------------

    def _adopt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> UpstreamLink | None:
        """A new connection to the origin: the shared HTTP/2 one if the origin chose h2, else an
        HTTP/1.1 link (returned)."""
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            if self._h2 is not None:
                self._h2.close()
                self._links.discard(self._h2)
            self._h2 = H2Origin(reader, writer, self.host, self.may_send)
            self._links.add(self._h2)
            return None
        link = UpstreamLink(reader, writer, self.host, self.may_send)
        self._links.add(link)
        self._idle.append(link)
        return link

    async def upstream(self) -> OriginLink:
        if self._h2 is not None and self._h2.usable:
            return self._h2.open_stream()
        while self._idle:
            link = self._idle.pop()
            if not link.writer.is_closing():
                return link
            self._links.discard(link)
        if self._connect is None:
            raise ConnectionError("no further connection to the origin")
        refused, pair = await self._connect()
        if pair is None:
            raise Blocked(refused or deny(Reason.UPSTREAM_UNREACHABLE, status=502), head_sent=False)
        fresh = self._adopt(*pair)
        if fresh is None:
            assert self._h2 is not None
            return self._h2.open_stream()
        self._idle.remove(fresh)
        return fresh

    def release(self, link: OriginLink | None, keep: bool) -> None:
        if link is None:
            return
        if isinstance(link, H2OriginStream):
            link.close()
            return
        assert isinstance(link, UpstreamLink)
        if keep and link.reusable and len(self._idle) < MAX_IDLE_UPSTREAMS and not self._closed:
            link.next_cycle()
            self._idle.append(link)
        else:
            link.close()
            self._links.discard(link)

    # -- HTTP/1.1 towards the client ---------------------------------------------------------

    async def body_event(self) -> BodyEvent:
        event = await self._client_event()
        if isinstance(event, (h11.Data, h11.EndOfMessage)):
            return event
        raise ConnectionError("the client went away during the request body")

    async def respond(self, status: int, headers: Headers, reason: bytes = b"") -> None:
        await self._send_client(self._client.send(h11.Response(status_code=status, headers=headers,
                                                               reason=reason)))

    async def send(self, event: BodyEvent) -> None:
        await self._send_client(self._client.send(event))

    async def continue_100(self) -> None:
        if self._client.they_are_waiting_for_100_continue:
            await self._send_client(self._client.send(h11.InformationalResponse(status_code=100,
                                                                                 headers=[])))

    def response_started(self) -> bool:
        return self._client.our_state not in (h11.IDLE, h11.SEND_RESPONSE)

    # -- the exchange loop --------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._may_send.wait()
            while not self._handshaken and not self._client_eof and not self._closed:
                self._wake.clear()
                await self._wake.wait()
            if self.alpn == "h2":
                from swg.runtime.h2_client import serve_h2
                await serve_h2(self)
                return
            while not self._closed:
                event = await self._client_event()
                if not isinstance(event, h11.Request):
                    break
                self.requests += 1
                keep, link = await run_exchange(self.ctx, RequestHead(event.method, event.target,
                                                                      list(event.headers)),
                                                self, self.upstream)
                keep = keep and self._client.our_state is h11.DONE and self._client.their_state is h11.DONE
                self.release(link, keep)
                if not keep:
                    break
                self._client.start_next_cycle()
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
        if not self.response_started() and not self._closed and self.alpn != "h2":
            try:
                await respond_block(self, decision, "", None)
            except Exception:  # the connection is going anyway
                pass

    # -- ending ----------------------------------------------------------------------------

    def abort(self) -> None:
        """ztcore.tunnel.Endpoint.abort, and ClientChannel.abort: reset the client's stream."""
        if self.session is not None and not self._closed and self.stream_id in self.session.streams:
            self.session.abort(self.stream_id)
        self._shutdown()

    def _finish(self) -> None:
        """The exchange loop is over: close the origin side and end the client's stream."""
        for link in list(self._links):
            link.close()
        self._links.clear()
        self._idle.clear()
        self._h2 = None
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
        for link in list(self._links):
            link.abort()
        if not self._task.done():
            self._task.cancel()
