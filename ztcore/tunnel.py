"""The tunnel's stream core: one HTTP/2 connection whose CONNECT streams are bound to byte pipes.

Both ends use it: on the agent a stream is bound to the local client's socket, on the broker to
the upstream socket. The core owns the H2Connection and moves bytes between streams and their
endpoints with back-pressure both ways:

- bytes from the peer are written to the endpoint and acknowledged (h2 flow control) at once,
  unless the endpoint said its write buffer is full; then they are acknowledged when it drains,
  so a slow client stops the sender through the stream window, not through our memory;
- bytes from an endpoint are sent as DATA frames as far as the flow-control window allows; the
  rest waits in the stream and the endpoint stops reading until a WINDOW_UPDATE arrives;
- when the tunnel's own transport is congested, every endpoint stops reading.

It does no I/O of its own: the shell passes in a `write` callable for the tunnel transport and
`Endpoint` objects for the pipes, and calls `receive`/`send`/`end` as bytes arrive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import h2.events as ev
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, StreamClosedError

from ztcore.errors import RemoteProtocolError
from ztcore.h2connection import TunnelH2Connection

SMALL_WRITE_BYTES = 64 * 1024


class Endpoint(Protocol):
    """The byte pipe bound to one stream (a socket transport wrapped by the shell)."""

    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class BodyEndpoint:
    """An endpoint that collects a small message body in memory instead of a socket.

    Used for the few requests the agent and the broker make of each other on the tunnel
    (certificate renewal); `limit_bytes` bounds what a peer can make us hold.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.body = bytearray()
        self.limit_bytes = limit_bytes
        self.overflowed = False

    def write(self, data: bytes) -> None:
        if len(self.body) + len(data) > self.limit_bytes:
            self.overflowed = True
            return
        self.body += data

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@dataclass(slots=True, eq=False)
class Stream:
    stream_id: int
    context: Any = None
    endpoint: Endpoint | None = None
    outbound: deque[memoryview] = field(default_factory=deque)  # views of immutable bytes
    eof_pending: bool = False
    sent_eof: bool = False
    received_eof: bool = False
    reset: bool = False
    early: list[bytes] = field(default_factory=list)
    unacked: int = 0
    endpoint_write_paused: bool = False
    reading_paused: bool = False
    bytes_sent: int = 0
    bytes_received: int = 0
    finished: bool = False


StreamClosed = Callable[[Stream], None]


@dataclass(frozen=True, slots=True)
class PeerDraining:
    """The peer sent a graceful GOAWAY: open no new streams; the open ones may finish."""
    last_stream_id: int


class TunnelSession:
    """Streams of one HTTP/2 connection and the pumps between them and their endpoints."""

    def __init__(self, conn: TunnelH2Connection, write: Callable[[list[bytes | memoryview]], None],
                 on_stream_closed: StreamClosed,
                 on_event: Callable[[ev.Event | PeerDraining], None]) -> None:
        self.conn = conn
        self._write = write
        self._on_stream_closed = on_stream_closed
        self._on_event = on_event
        self.streams: dict[int, Stream] = {}
        self.transport_paused = False
        self.closed = False  # the tunnel transport is gone: nothing more may be written

    # -- the tunnel transport ------------------------------------------------------------

    def flush(self) -> None:
        chunks = self.conn.chunks_to_send()
        if not chunks or self.closed:
            return
        if len(chunks) > 1 and sum(map(len, chunks)) <= SMALL_WRITE_BYTES:
            # One TLS record instead of one per chunk (a DATA frame's 9-byte header would
            # otherwise travel, and be encrypted and authenticated, on its own).
            chunks = [b"".join(chunks)]
        self._write(chunks)

    def receive(self, data: bytes) -> None:
        """Feed bytes from the tunnel.

        Handled here: DATA, END_STREAM, RST_STREAM, WINDOW_UPDATE and settings changes. Passed to
        `on_event` in order (a response must be seen before the END_STREAM that follows it):
        requests, responses, pings, GOAWAY. A protocol violation by the peer raises
        RemoteProtocolError; h2 has queued the GOAWAY, so the shell flushes and closes.
        """
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            raise RemoteProtocolError(f"HTTP/2 protocol error from peer: {exc}") from exc
        buffer = self.conn.incoming_buffer
        goaway = getattr(buffer, "graceful_goaway", None)
        if goaway is not None:
            buffer.graceful_goaway = None  # type: ignore[attr-defined]
            events.append(PeerDraining(goaway.last_stream_id))  # type: ignore[arg-type]
        for event in events:
            kind = type(event)
            if kind is ev.DataReceived:
                self._data_received(event)  # type: ignore[arg-type]
            elif kind is ev.StreamEnded:
                self._stream_ended(event.stream_id)  # type: ignore[attr-defined]
            elif kind is ev.StreamReset:
                self._stream_reset(event.stream_id)  # type: ignore[attr-defined]
            elif kind is ev.WindowUpdated or kind is ev.RemoteSettingsChanged:
                self._window_opened(getattr(event, "stream_id", 0))
            else:
                self._on_event(event)

    def transport_congested(self) -> None:
        self.transport_paused = True
        for stream in self.streams.values():
            self._update_reading(stream)

    def transport_drained(self) -> None:
        self.transport_paused = False
        for stream in list(self.streams.values()):
            self._update_reading(stream)

    # -- streams -------------------------------------------------------------------------

    def add_stream(self, stream_id: int, context: Any = None) -> Stream:
        stream = Stream(stream_id, context)
        self.streams[stream_id] = stream
        return stream

    def bind(self, stream_id: int, endpoint: Endpoint) -> None:
        """Attach the endpoint; bytes that arrived before it are delivered now.

        An endpoint is bound with its reading paused (nothing may be sent on a stream before its
        response headers); the core resumes it once it may read.
        """
        stream = self.streams[stream_id]
        stream.endpoint = endpoint
        stream.reading_paused = True
        early, stream.early = stream.early, []
        for chunk in early:
            endpoint.write(chunk)
        if stream.unacked and not stream.endpoint_write_paused:
            self._ack(stream)
            self.flush()
        if stream.received_eof:
            endpoint.write_eof()
        self._update_reading(stream)
        self._maybe_finish(stream)

    def send(self, stream_id: int, data: bytes | memoryview) -> None:
        """Bytes read from the stream's endpoint, to go to the peer."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.sent_eof or stream.eof_pending:
            return
        conn = self.conn
        if type(data) is not bytes:
            data = bytes(data)  # the caller may reuse its buffer; h2 now keeps the payload as is
        if not stream.outbound:
            size = len(data)
            try:
                if size <= conn.max_outbound_frame_size and size <= conn.local_flow_control_window(stream_id):
                    conn.send_data(stream_id, data)
                    stream.bytes_sent += size
                    self.flush()
                    return
            except StreamClosedError:
                self._finish(stream, reset=True)
                return
        stream.outbound.append(memoryview(data))
        self._pump(stream)

    def end(self, stream_id: int) -> None:
        """The endpoint reached EOF: end our half of the stream once pending bytes are out."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.sent_eof:
            return
        stream.eof_pending = True
        self._pump(stream)

    def abort(self, stream_id: int, code: ErrorCodes = ErrorCodes.CONNECT_ERROR) -> None:
        """The endpoint failed: reset the stream (RFC 9113 §8.5: CONNECT_ERROR)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        try:
            self.conn.reset_stream(stream_id, code)
        except StreamClosedError:
            pass
        self.flush()
        self._finish(stream, reset=True)

    def endpoint_congested(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.endpoint_write_paused = True

    def endpoint_drained(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.endpoint_write_paused = False
            if stream.unacked:
                self._ack(stream)
                self.flush()

    def close_all(self) -> None:
        """The tunnel is gone: close every endpoint and report every stream closed."""
        self.closed = True
        for stream in list(self.streams.values()):
            self._finish(stream, reset=not (stream.sent_eof and stream.received_eof))

    # -- internals -----------------------------------------------------------------------

    def _data_received(self, event: ev.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length or 0
        if stream is None:
            # A stream we already finished: give the window back and drop the bytes.
            if size:
                self.conn.acknowledge_received_data(size, event.stream_id)
            return
        data = event.data or b""
        stream.bytes_received += len(data)
        endpoint = stream.endpoint
        if endpoint is None:
            if data:
                stream.early.append(data)
            stream.unacked += size
            return
        if data:
            endpoint.write(data)
        if stream.endpoint_write_paused:
            stream.unacked += size
        elif size:
            self.conn.acknowledge_received_data(size, event.stream_id)

    def _ack(self, stream: Stream) -> None:
        size, stream.unacked = stream.unacked, 0
        if size:
            self.conn.acknowledge_received_data(size, stream.stream_id)

    def _stream_ended(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        stream.received_eof = True
        if stream.endpoint is not None:
            stream.endpoint.write_eof()
        self._maybe_finish(stream)

    def _stream_reset(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._finish(stream, reset=True)

    def _window_opened(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None and (stream.outbound or stream.eof_pending):
                self._pump(stream)
            return
        for stream in list(self.streams.values()):
            if stream.outbound or (stream.eof_pending and not stream.sent_eof):
                self._pump(stream)

    def _pump(self, stream: Stream) -> None:
        conn = self.conn
        stream_id = stream.stream_id
        try:
            while stream.outbound:
                window = conn.local_flow_control_window(stream_id)
                if window <= 0:
                    break
                room = min(window, conn.max_outbound_frame_size)
                head = stream.outbound[0]
                if len(head) <= room:
                    stream.outbound.popleft()
                    chunk = head
                else:
                    chunk = head[:room]
                    stream.outbound[0] = head[room:]
                conn.send_data(stream_id, chunk)
                stream.bytes_sent += len(chunk)
            if stream.eof_pending and not stream.outbound and not stream.sent_eof:
                conn.end_stream(stream_id)
                stream.sent_eof = True
        except StreamClosedError:
            self._finish(stream, reset=True)
            return
        self.flush()
        self._update_reading(stream)
        self._maybe_finish(stream)

    def _update_reading(self, stream: Stream) -> None:
        endpoint = stream.endpoint
        if endpoint is None or stream.finished:
            return
        should_pause = bool(stream.outbound) or self.transport_paused
        if should_pause and not stream.reading_paused:
            stream.reading_paused = True
            endpoint.pause_reading()
        elif not should_pause and stream.reading_paused:
            stream.reading_paused = False
            endpoint.resume_reading()

    def _maybe_finish(self, stream: Stream) -> None:
        if stream.sent_eof and stream.received_eof and not stream.early:
            self._finish(stream, reset=False)

    def _finish(self, stream: Stream, *, reset: bool) -> None:
        if stream.finished:
            return
        stream.finished = True
        stream.reset = reset
        self.streams.pop(stream.stream_id, None)
        if stream.unacked and not self.closed:
            # Bytes held back for a congested or unbound endpoint still count against the
            # connection window: give them back, or the whole tunnel would stall.
            self._ack(stream)
            self.flush()
        if stream.endpoint is not None:
            # A reset stream drops what is still buffered (the client must not get more of a
            # revoked flow); a finished one is flushed before closing.
            if reset:
                stream.endpoint.abort()
            else:
                stream.endpoint.close()
        self._on_stream_closed(stream)
