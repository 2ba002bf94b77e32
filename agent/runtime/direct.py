"""A connection the agent sends directly (Microsoft 365 breakout, a captive-portal window, an
admin override): the client's bytes go to a TCP connection of the laptop's own, not into the
tunnel. Both sides are asyncio protocols; back-pressure is passed across (a slow side pauses
the other's reads), and the bytes each way are counted for the event that reports it.

`_DirectLink` stands where a tunnel stream would be, so the proxy's client protocol
(`StreamPipe`) works unchanged whichever way its connection goes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from ztcore.runtime.pipe import WRITE_HIGH_WATER_BYTES, StreamPipe

CONNECT_TIMEOUT_SECONDS = 10.0
Resolver = Callable[[str, int], Sequence[str]]


class DirectUpstream(asyncio.BufferedProtocol):
    """The laptop's own connection to the destination."""

    def __init__(self, client: StreamPipe, on_closed: Callable[[DirectUpstream], None]) -> None:
        self.client = client
        self.on_closed = on_closed
        self.transport: asyncio.Transport | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.started = time.monotonic()
        self._buffer = memoryview(bytearray(256 * 1024))
        self._closed = False
        self.client_eof = False      # the client has sent all it will send
        self.upstream_eof = False    # so has the destination

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_down += nbytes
        self.client.write(bytes(self._buffer[:nbytes]))

    def eof_received(self) -> bool:
        self.upstream_eof = True
        self.client.write_eof()
        if self.client_eof:
            self.close_both()
        return True

    def close_both(self) -> None:
        """Both sides are done: a half-closed TCP connection that nobody closes would stay open."""
        self.client.close()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()
        self._finish()

    def pause_writing(self) -> None:
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self.on_closed(self)


class _DirectLink:
    """What the client protocol calls instead of a tunnel session."""

    def __init__(self, upstream: DirectUpstream) -> None:
        self.upstream = upstream
        self.streams = {1}

    def send(self, stream_id: int, data: Any) -> None:
        transport = self.upstream.transport
        self.upstream.bytes_up += len(data)
        if transport is not None and not transport.is_closing():
            transport.write(bytes(data))    # the client's read buffer is shared: copy

    def end(self, stream_id: int) -> None:
        self.upstream.client_eof = True
        if self.upstream.upstream_eof:
            self.upstream.close_both()
            return
        transport = self.upstream.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                transport.abort()

    def abort(self, stream_id: int) -> None:
        self.streams.discard(stream_id)
        if self.upstream.transport is not None:
            self.upstream.transport.close()

    def endpoint_congested(self, stream_id: int) -> None:
        if self.upstream.transport is not None and not self.upstream.transport.is_closing():
            self.upstream.transport.pause_reading()

    def endpoint_drained(self, stream_id: int) -> None:
        if self.upstream.transport is not None and not self.upstream.transport.is_closing():
            self.upstream.transport.resume_reading()


async def open_direct(client: StreamPipe, host: str, port: int, resolve: Resolver,
                      on_closed: Callable[[DirectUpstream], None]) -> DirectUpstream:
    """Connect to `host:port` from the laptop; OSError (or TimeoutError) if it cannot."""
    loop = asyncio.get_running_loop()
    last: Exception = OSError(f"no address for {host}")
    for target in resolve(host, port):
        try:
            _, upstream = await asyncio.wait_for(loop.create_connection(
                lambda: DirectUpstream(client, on_closed), target, port), CONNECT_TIMEOUT_SECONDS)
        except (OSError, asyncio.TimeoutError) as exc:
            last = exc
            continue
        sock = upstream.transport.get_extra_info("socket") if upstream.transport else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        client.session = _DirectLink(upstream)  # type: ignore[assignment]
        client.stream_id = 1
        return upstream
    raise last

