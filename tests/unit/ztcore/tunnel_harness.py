"""Harness for the TunnelSession transcript tests (test_tunnel*.py).

The client (agent) and the server (broker) are each a real TunnelSession over a real
TunnelH2Connection from `h2tuning.new_connection` + `start`. Each side's `write` callable keeps
the lists of chunks it is given; `deliver` feeds them to the other side's `receive` as bytes and
then flushes, as both shells do after every read. Endpoints are fakes that record every call and
check the contract the shells rely on (bound paused; pause and resume alternate; nothing after
close or abort).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import h2.events as ev
from h2.settings import SettingCodes

from ztcore.h2tuning import (
    new_connection,
    start,
)
from ztcore.tunnel import PeerDraining, Stream, TunnelSession

REQUEST = [(b":method", b"CONNECT"), (b":authority", b"example.jp:443")]
OK = [(b":status", b"200")]


@dataclass(eq=False)
class FakeEndpoint:
    """Records what the session asks of the pipe; the pipe starts with reading paused."""

    record_data: bool = True
    calls: list[tuple[str, ...] | tuple[str, bytes]] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    reading: bool = False
    eof: bool = False
    done: str = ""  # "close" or "abort"

    def _check_open(self, call: str) -> None:
        assert not self.done, f"{call}() after {self.done}()"

    def write(self, data: bytes) -> None:
        self._check_open("write")
        assert not self.eof, "write() after write_eof()"
        assert isinstance(data, bytes | memoryview)
        self.received += data
        if self.record_data:
            self.calls.append(("write", bytes(data)))

    def write_eof(self) -> None:
        self._check_open("write_eof")
        assert not self.eof, "write_eof() twice"
        self.eof = True
        self.calls.append(("write_eof",))

    def close(self) -> None:
        self._check_open("close")
        self.done = "close"
        self.calls.append(("close",))

    def abort(self) -> None:
        self._check_open("abort")
        self.done = "abort"
        self.calls.append(("abort",))

    def pause_reading(self) -> None:
        self._check_open("pause_reading")
        assert self.reading, "pause_reading() while paused"
        self.reading = False
        self.calls.append(("pause_reading",))

    def resume_reading(self) -> None:
        self._check_open("resume_reading")
        assert not self.reading, "resume_reading() while reading"
        self.reading = True
        self.calls.append(("resume_reading",))

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def take_calls(self) -> list[tuple[str, ...] | tuple[str, bytes]]:
        calls, self.calls = self.calls, []
        return calls


class Side:
    """One end of the tunnel: a session, what it wrote, what it reported."""

    def __init__(self, client_side: bool) -> None:
        self.conn = new_connection(client_side=client_side)
        self.writes: list[list[bytes | memoryview]] = []
        self.closed: list[Stream] = []
        self.events: list[ev.Event | PeerDraining] = []
        self.session = TunnelSession(self.conn, self.writes.append, self.closed.append,
                                     self.events.append)
        start(self.conn)
        self.session.flush()

    def take_wire(self) -> bytes:
        wire = b"".join(b"".join(chunks) for chunks in self.writes)
        self.writes.clear()
        return wire

    def take_events(self, kind: type) -> list[object]:
        found = [e for e in self.events if isinstance(e, kind)]
        self.events[:] = [e for e in self.events if not isinstance(e, kind)]  # same list
        return found


def deliver(src: Side, dst: Side, cuts: Iterable[int] = ()) -> int:
    """Move what `src` wrote to `dst`, cut at `cuts`; returns the number of bytes moved."""
    wire = src.take_wire()
    points = sorted({0, len(wire), *(c for c in cuts if 0 < c < len(wire))})
    for a, b in zip(points, points[1:]):
        dst.session.receive(wire[a:b])
        dst.session.flush()
    return len(wire)


def settle(a: Side, b: Side) -> None:
    for _ in range(1000):
        if not deliver(a, b) + deliver(b, a):
            return
    raise AssertionError("the two sessions never went quiet")


def handshake(window: int | None = None) -> tuple[Side, Side]:
    """Client and server with prefaces and SETTINGS exchanged and acknowledged.

    `window`: both then advertise this INITIAL_WINDOW_SIZE, so either may send only that much
    per stream before the other's WINDOW_UPDATE.
    """
    client, server = Side(client_side=True), Side(client_side=False)
    settle(client, server)
    if window is not None:
        for side in (client, server):
            side.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
            side.session.flush()
        settle(client, server)
    client.events.clear()
    server.events.clear()
    return client, server


@dataclass
class Tunnel:
    stream_id: int
    client_stream: Stream
    server_stream: Stream
    local: FakeEndpoint  # the agent's local client socket
    upstream: FakeEndpoint  # the broker's upstream socket


def open_stream(client: Side, server: Side, *, record_data: bool = True,
                bind_client: bool = True) -> Tunnel:
    """The agent opens a CONNECT stream; the broker answers 200 and binds, then the agent binds."""
    sid = client.conn.get_next_available_stream_id()
    client.conn.send_headers(sid, REQUEST)
    client_stream = client.session.add_stream(sid, context="agent-flow")
    client.session.flush()
    deliver(client, server)
    [request] = server.take_events(ev.RequestReceived)
    assert isinstance(request, ev.RequestReceived) and request.stream_id == sid
    assert dict(request.headers or [])[b":method"] == b"CONNECT"
    server_stream = server.session.add_stream(sid, context="broker-flow")
    server.conn.send_headers(sid, OK)
    upstream = FakeEndpoint(record_data)
    server.session.bind(sid, upstream)
    server.session.flush()
    deliver(server, client)
    [response] = client.take_events(ev.ResponseReceived)
    assert isinstance(response, ev.ResponseReceived)
    assert dict(response.headers or [])[b":status"] == b"200"
    local = FakeEndpoint(record_data)
    if bind_client:
        client.session.bind(sid, local)
    return Tunnel(sid, client_stream, server_stream, local, upstream)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)
