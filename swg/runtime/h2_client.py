"""HTTP/2 towards the client of an inspected connection (ALPN "h2"): each request stream is
one `run_exchange` running concurrently, over a connection to the origin taken from the
interceptor's pool; requests go to the origin as HTTP/1.1.

The h2 connection is the server side (python-hyper h2): large windows, received data
acknowledged only as the exchange consumes it (so a slow origin slows the client down), our
DATA sent within the client's windows. A stream the gateway refuses mid-response is reset; the
connection and its other streams go on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events as ev
import h2.exceptions
import h2.settings
import h11
from h2.errors import ErrorCodes

from swg.runtime.exchange import HOP_BY_HOP, BodyEvent, Headers, RequestHead, run_exchange

if TYPE_CHECKING:
    from swg.runtime.interceptor import Interceptor

log = logging.getLogger("sekimori.inspect")
WINDOW_BYTES = 16 * 1024 * 1024
MAX_CONCURRENT_STREAMS = 100
# Not forwarded from an HTTP/1.1 origin to an HTTP/2 client (RFC 9113 §8.2.2).
H2_FORBIDDEN = HOP_BY_HOP | {b"host"}


class _Stream:
    """One request stream: the ClientChannel its exchange talks to."""

    def __init__(self, server: _H2Server, stream_id: int) -> None:
        self.server, self.stream_id = server, stream_id
        self.queue: asyncio.Queue[tuple[BodyEvent, int] | None] = asyncio.Queue()
        self.window = asyncio.Event()
        self.started = False
        self.remote_ended = False     # the client sent END_STREAM
        self.task: asyncio.Task[None] | None = None

    async def body_event(self) -> BodyEvent:
        item = await self.queue.get()
        if item is None:
            raise ConnectionError("the client reset the stream")
        event, length = item
        if length:
            self.server.ack(self.stream_id, length)
        return event

    async def respond(self, status: int, headers: Headers, reason: bytes = b"") -> None:
        out = [(b":status", str(status).encode())]
        out += [(k.lower(), v) for k, v in headers if k.lower() not in H2_FORBIDDEN]
        self.server.conn.send_headers(self.stream_id, out)
        self.started = True
        self.server.flush()

    async def send(self, event: BodyEvent) -> None:
        conn, server = self.server.conn, self.server
        if isinstance(event, h11.EndOfMessage):
            conn.end_stream(self.stream_id)
            server.flush()
            return
        view = memoryview(event.data)
        while view:
            await server.interceptor.may_send()
            window = min(conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                self.window.clear()
                await self.window.wait()
                continue
            conn.send_data(self.stream_id, bytes(view[:window]))
            view = view[window:]
            server.flush()

    async def continue_100(self) -> None:
        return None

    def response_started(self) -> bool:
        return self.started

    def abort(self) -> None:
        try:
            self.server.conn.reset_stream(self.stream_id, ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            pass
        self.server.flush()


class _H2Server:
    def __init__(self, interceptor: Interceptor) -> None:
        self.interceptor = interceptor
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.streams: dict[int, _Stream] = {}

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.interceptor.write_client(data)

    def ack(self, stream_id: int, length: int) -> None:
        try:
            self.conn.acknowledge_received_data(length, stream_id)
        except h2.exceptions.ProtocolError:   # the stream is gone: its window no longer matters
            pass
        self.flush()

    async def serve(self) -> None:
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW_BYTES,
                                   h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS})
        self.conn.increment_flow_control_window(WINDOW_BYTES)
        self.flush()
        try:
            while True:
                data = await self.interceptor.client_data()
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.info("HTTP/2 error from the client of %s: %s", self.interceptor.host, exc)
                    self.flush()
                    break
                for event in events:
                    self._event(event)
                self.flush()
                if any(isinstance(e, ev.ConnectionTerminated) for e in events):
                    break
        finally:
            for stream in self.streams.values():
                if stream.task is not None and not stream.task.done():
                    stream.task.cancel()
            tasks = [s.task for s in self.streams.values() if s.task is not None]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def _event(self, event: ev.Event) -> None:
        if isinstance(event, ev.RequestReceived):
            stream = _Stream(self, event.stream_id)
            self.streams[event.stream_id] = stream
            stream.task = asyncio.get_running_loop().create_task(self._exchange(stream, event.headers or []))
        elif isinstance(event, ev.DataReceived):
            found = self.streams.get(event.stream_id)
            if found is not None:
                found.queue.put_nowait((h11.Data(data=event.data), event.flow_controlled_length))
            else:
                self.ack(event.stream_id, event.flow_controlled_length)
        elif isinstance(event, ev.StreamEnded):
            found = self.streams.get(event.stream_id)
            if found is not None:
                found.remote_ended = True
                found.queue.put_nowait((h11.EndOfMessage(), 0))
        elif isinstance(event, ev.StreamReset):
            found = self.streams.pop(event.stream_id, None)
            if found is not None:
                found.queue.put_nowait(None)
                if found.task is not None:
                    found.task.cancel()
        elif isinstance(event, ev.WindowUpdated):
            targets = self.streams.values() if event.stream_id == 0 else \
                [s for s in (self.streams.get(event.stream_id),) if s is not None]
            for stream in targets:
                stream.window.set()

    async def _exchange(self, stream: _Stream, raw: list[tuple[bytes, bytes]]) -> None:
        pseudo = {k: v for k, v in raw if k.startswith(b":")}
        headers: Headers = [(b"host", pseudo.get(b":authority", self.interceptor.host.encode()))]
        cookies = [v for k, v in raw if k == b"cookie"]
        headers += [(k, v) for k, v in raw if not k.startswith(b":") and k not in (b"cookie", b"host")]
        if cookies:
            headers.append((b"cookie", b"; ".join(cookies)))
        head = RequestHead(pseudo.get(b":method", b"GET"), pseudo.get(b":path", b"/"), headers)
        try:
            self.interceptor.requests += 1
            keep, link = await run_exchange(self.interceptor.ctx, head, stream, self.interceptor.upstream)
            self.interceptor.release(link, keep)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("stream %d to %s ended: %s", stream.stream_id, self.interceptor.host, exc)
            stream.abort()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inspected stream %d to %s failed", stream.stream_id, self.interceptor.host)
            stream.abort()
        finally:
            self.streams.pop(stream.stream_id, None)
            self._settle(stream)

    def _settle(self, stream: _Stream) -> None:
        """An exchange that ended before the client's body did (a block page, an error): give
        back the window of what was received and not read, and tell the client to stop sending
        (RST_STREAM NO_ERROR after a complete response, RFC 9113 §8.1), or the connection's
        window would leak and its other streams stall."""
        while not stream.queue.empty():
            item = stream.queue.get_nowait()
            if item is not None and item[1]:
                self.ack(stream.stream_id, item[1])
        if not stream.remote_ended:
            try:
                self.conn.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)
            except h2.exceptions.ProtocolError:
                pass
            self.flush()


async def serve_h2(interceptor: Interceptor) -> None:
    await _H2Server(interceptor).serve()
