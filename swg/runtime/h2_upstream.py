"""HTTP/2 towards the origin, when the origin chose it by ALPN: one connection shared by the
exchanges of an inspected client connection, a stream each.

`H2OriginStream` has the interface of `UpstreamLink` (swg/runtime/exchange.py), so an exchange
does not know which it talks to: it sends h11 `Request` / `Data` / `EndOfMessage` events and
reads h11 `Response` / `Data` / `EndOfMessage` back. Received data is acknowledged as the
exchange consumes it, so a client that cannot keep up slows the origin down.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.events as ev
import h2.exceptions
import h2.settings
import h11
from h2.errors import ErrorCodes

from swg.runtime.exchange import HOP_BY_HOP, READ_BYTES, Blocked
from ztcore.decision import deny
from ztcore.reasons import Reason

log = logging.getLogger("sekimori.inspect")
WINDOW_BYTES = 16 * 1024 * 1024
_NOT_TO_H2 = HOP_BY_HOP | {b"host"}
Item = tuple[h11.Event, int] | BaseException


class H2Origin:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                 may_read: Callable[[], Awaitable[None]]) -> None:
        self.reader, self.writer, self.host, self.may_read = reader, writer, host, may_read
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                         header_encoding=None))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW_BYTES,
                                   h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.increment_flow_control_window(WINDOW_BYTES)
        self.streams: dict[int, H2OriginStream] = {}
        self.failure: str | None = None
        self.flush()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @property
    def usable(self) -> bool:
        return self.failure is None and not self.writer.is_closing() and self.conn.open_outbound_streams \
            < self.conn.remote_settings.max_concurrent_streams

    def open_stream(self) -> H2OriginStream:
        stream = H2OriginStream(self, self.conn.get_next_available_stream_id())
        self.streams[stream.stream_id] = stream
        return stream

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        try:
            while True:
                await self.may_read()
                data = await self.reader.read(READ_BYTES)
                if not data:
                    raise ConnectionError("the origin closed the connection")
                for event in self.conn.receive_data(data):
                    self._event(event)
                self.flush()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError) as exc:
            self._fail(f"{self.host}: {exc}")

    def _fail(self, why: str) -> None:
        self.failure = why
        for stream in list(self.streams.values()):
            stream.queue.put_nowait(ConnectionError(why))
        self.streams.clear()
        self.close()

    def _event(self, event: ev.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, ev.ResponseReceived) and stream is not None:
            raw = event.headers or []
            status = next((v for k, v in raw if k == b":status"), b"")
            headers = [(k, v) for k, v in raw if not k.startswith(b":")]
            try:
                stream.queue.put_nowait((h11.Response(status_code=int(status), headers=headers), 0))
            except (ValueError, h11.LocalProtocolError) as exc:
                stream.queue.put_nowait(h2.exceptions.ProtocolError(f"bad response head: {exc}"))
        elif isinstance(event, ev.InformationalResponseReceived):
            pass
        elif isinstance(event, ev.DataReceived):
            if stream is not None:
                stream.queue.put_nowait((h11.Data(data=event.data), event.flow_controlled_length))
            else:
                self.ack(event.stream_id, event.flow_controlled_length)
        elif isinstance(event, ev.StreamEnded) and stream is not None:
            stream.queue.put_nowait((h11.EndOfMessage(), 0))
        elif isinstance(event, ev.StreamReset) and stream is not None:
            stream.queue.put_nowait(ConnectionError(f"the origin reset the stream ({event.error_code})"))
        elif isinstance(event, ev.WindowUpdated):
            targets = list(self.streams.values()) if event.stream_id == 0 else [stream] if stream else []
            for target in targets:
                target.window.set()
        elif isinstance(event, ev.ConnectionTerminated):
            self._fail(f"{self.host} ended the HTTP/2 connection ({event.error_code})")

    def ack(self, stream_id: int, length: int) -> None:
        try:
            self.conn.acknowledge_received_data(length, stream_id)
        except h2.exceptions.ProtocolError:
            pass
        self.flush()

    def abort(self) -> None:
        self._task.cancel()
        if not self.writer.is_closing():
            self.writer.transport.abort()

    def close(self) -> None:
        self._task.cancel()
        if not self.writer.is_closing():
            self.writer.close()


class H2OriginStream:
    """One request on the shared connection (the `UpstreamLink` interface)."""
    protocol = "h2"

    def __init__(self, origin: H2Origin, stream_id: int) -> None:
        self.origin, self.stream_id = origin, stream_id
        self.writer = origin.writer
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.window = asyncio.Event()

    async def send(self, event: h11.Event) -> None:
        conn, origin = self.origin.conn, self.origin
        try:
            if isinstance(event, h11.Request):
                headers = dict(event.headers)
                authority = headers.get(b"host", origin.host.encode())
                out = [(b":method", event.method), (b":scheme", b"https"), (b":authority", authority),
                       (b":path", event.target)]
                out += [(k.lower(), v) for k, v in event.headers if k.lower() not in _NOT_TO_H2]
                conn.send_headers(self.stream_id, out)
            elif isinstance(event, h11.Data):
                view = memoryview(event.data)
                while view:
                    window = min(conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size)
                    if window <= 0:
                        self.window.clear()
                        origin.flush()
                        await self.window.wait()
                        continue
                    conn.send_data(self.stream_id, bytes(view[:window]))
                    view = view[window:]
                    origin.flush()
                    await origin.writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                conn.end_stream(self.stream_id)
        except h2.exceptions.ProtocolError as exc:
            raise Blocked(deny(Reason.UPSTREAM_PROTOCOL_ERROR, status=502,
                               detail=f"{origin.host}: {exc}"), True) from None
        origin.flush()

    async def event(self) -> h11.Event:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            reason = (Reason.UPSTREAM_PROTOCOL_ERROR if isinstance(item, h2.exceptions.ProtocolError)
                      else Reason.UPSTREAM_UNREACHABLE)
            raise Blocked(deny(reason, status=502, detail=str(item)), True)
        event, length = item
        if length:
            self.origin.ack(self.stream_id, length)
        return event

    @property
    def reusable(self) -> bool:
        return False          # the connection is shared; a stream is used once

    def next_cycle(self) -> None:
        return None

    def abort(self) -> None:
        try:
            self.origin.conn.reset_stream(self.stream_id, ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            pass
        self.origin.flush()
        self.origin.streams.pop(self.stream_id, None)

    def close(self) -> None:
        self.origin.streams.pop(self.stream_id, None)
