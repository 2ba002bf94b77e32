"""TunnelSession (ztcore/tunnel.py), as transcripts: two sessions wired back to back in memory.

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
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from ztcore.errors import RemoteProtocolError
from ztcore.h2tuning import (
    CONNECTION_WINDOW_BYTES,
    MAX_FRAME_BYTES,
    STREAM_WINDOW_BYTES,
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


# -- opening and binding -----------------------------------------------------------------------

def test_bind_resumes_the_paused_endpoint() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    assert t.upstream.calls == [("resume_reading",)]
    assert t.local.calls == [("resume_reading",)]
    assert t.client_stream.context == "agent-flow" and t.server_stream.context == "broker-flow"
    assert client.session.streams == {t.stream_id: t.client_stream}
    assert server.session.streams == {t.stream_id: t.server_stream}
    assert client.closed == [] and server.closed == []


def test_bytes_both_ways_arrive_intact_and_in_order() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    t.local.take_calls(), t.upstream.take_calls()
    client.session.send(t.stream_id, b"GET / HTTP/1.1\r\n")
    client.session.send(t.stream_id, memoryview(b"Host: example.jp\r\n\r\n"))
    deliver(client, server)
    assert t.upstream.calls == [("write", b"GET / HTTP/1.1\r\n"),
                                ("write", b"Host: example.jp\r\n\r\n")]
    server.session.send(t.stream_id, b"HTTP/1.1 200 OK\r\n\r\n")
    server.session.send(t.stream_id, b"body")
    deliver(server, client)
    assert t.local.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n"), ("write", b"body")]
    assert t.client_stream.bytes_sent == t.server_stream.bytes_received == 16 + 20
    assert t.server_stream.bytes_sent == t.client_stream.bytes_received == 19 + 4


def test_send_copies_a_reused_read_buffer() -> None:
    # StreamPipe hands the session a view of one shared read buffer, reused for the next read.
    client, server = handshake()
    t = open_stream(client, server)
    shared = bytearray(b"first read")
    client.session.send(t.stream_id, memoryview(shared))
    shared[:] = b"XXXXXXXXXX"
    deliver(client, server)
    assert bytes(t.upstream.received) == b"first read"


def test_large_send_is_cut_into_frames_and_arrives_whole() -> None:
    client, server = handshake()
    t = open_stream(client, server, record_data=False)
    data = payload(3 * MAX_FRAME_BYTES + 12_345)
    client.session.send(t.stream_id, data)
    deliver(client, server)
    assert bytes(t.upstream.received) == data
    assert t.client_stream.bytes_sent == t.server_stream.bytes_received == len(data)


# -- half-close and finish ---------------------------------------------------------------------

def test_half_close_each_way_then_the_stream_finishes_once() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    t.local.take_calls(), t.upstream.take_calls()

    client.session.send(t.stream_id, b"request")
    client.session.end(t.stream_id)  # the local client shut down its write side
    deliver(client, server)
    assert t.upstream.take_calls() == [("write", b"request"), ("write_eof",)]
    assert server.closed == [] and client.closed == []  # the other half is still open

    server.session.send(t.stream_id, b"response")  # the upstream may still answer
    deliver(server, client)
    assert t.local.take_calls() == [("write", b"response")]
    assert client.closed == []

    server.session.end(t.stream_id)
    assert t.upstream.take_calls() == [("close",)]  # both halves done on the broker
    assert server.closed == [t.server_stream] and not t.server_stream.reset
    deliver(server, client)
    assert t.local.take_calls() == [("write_eof",), ("close",)]
    assert client.closed == [t.client_stream] and not t.client_stream.reset
    assert t.stream_id not in client.session.streams and t.stream_id not in server.session.streams

    # Late calls on a finished stream change nothing and report nothing again.
    for side in (client, server):
        side.session.send(t.stream_id, b"late")
        side.session.end(t.stream_id)
        side.session.abort(t.stream_id)
        side.session.endpoint_drained(t.stream_id)
    settle(client, server)
    assert len(client.closed) == 1 and len(server.closed) == 1
    assert t.local.calls == [] and t.upstream.calls == []


def test_server_half_closes_first() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    t.local.take_calls(), t.upstream.take_calls()
    server.session.end(t.stream_id)
    deliver(server, client)
    assert t.local.take_calls() == [("write_eof",)]
    client.session.send(t.stream_id, b"after the peer's EOF")
    client.session.end(t.stream_id)
    assert client.closed == [t.client_stream]  # sent and received EOF
    assert t.local.take_calls() == [("close",)]
    deliver(client, server)
    assert t.upstream.take_calls() == [("write", b"after the peer's EOF"), ("write_eof",),
                                       ("close",)]
    assert server.closed == [t.server_stream] and not t.server_stream.reset


def test_end_waits_for_buffered_bytes() -> None:
    client, server = handshake(window=1000)
    t = open_stream(client, server, record_data=False)
    data = payload(2500)
    client.session.send(t.stream_id, data)
    client.session.end(t.stream_id)
    assert not t.client_stream.sent_eof and t.client_stream.eof_pending
    deliver(client, server)
    assert not t.upstream.eof  # END_STREAM may not overtake the buffered bytes
    settle(client, server)
    assert bytes(t.upstream.received) == data and t.upstream.eof
    assert t.client_stream.sent_eof


# -- reset ----------------------------------------------------------------------------------------

def test_abort_resets_the_stream_and_aborts_the_peer_endpoint() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    t.local.take_calls(), t.upstream.take_calls()
    client.session.send(t.stream_id, b"partial")
    client.session.abort(t.stream_id)  # the local socket failed
    assert t.local.take_calls() == [("abort",)]
    assert client.closed == [t.client_stream] and t.client_stream.reset
    deliver(client, server)
    assert t.upstream.take_calls() == [("write", b"partial"), ("abort",)]
    assert server.closed == [t.server_stream] and t.server_stream.reset
    settle(client, server)
    assert len(client.closed) == len(server.closed) == 1


@pytest.mark.parametrize("code", [ErrorCodes.CONNECT_ERROR, ErrorCodes.CANCEL,
                                  ErrorCodes.NO_ERROR])
def test_reset_from_the_server_aborts_the_local_client(code: ErrorCodes) -> None:
    client, server = handshake()
    t = open_stream(client, server)
    t.local.take_calls()
    server.session.abort(t.stream_id, code)  # a revoked device, or the upstream failed
    deliver(server, client)
    assert t.local.take_calls() == [("abort",)]
    assert client.closed == [t.client_stream] and t.client_stream.reset


def test_reset_after_half_close_still_aborts() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    client.session.end(t.stream_id)
    deliver(client, server)
    server.session.abort(t.stream_id)
    deliver(server, client)
    assert t.local.names()[-1] == "abort"
    assert client.closed == [t.client_stream] and t.client_stream.reset


def test_data_for_a_finished_stream_is_dropped() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    client.session.abort(t.stream_id)
    server.session.send(t.stream_id, b"in flight when the reset left")
    deliver(server, client)  # before the server saw the RST_STREAM
    assert b"in flight" not in t.local.received
    assert t.local.done == "abort"
    settle(client, server)
    assert server.closed == [t.server_stream]


# -- flow control -------------------------------------------------------------------------------

def test_sender_pauses_at_the_stream_window_and_resumes_when_it_opens() -> None:
    client, server = handshake(window=4096)
    t = open_stream(client, server, record_data=False)
    t.local.take_calls()
    data = payload(10_000, seed=1)
    client.session.send(t.stream_id, data)
    assert t.local.take_calls() == [("pause_reading",)]  # 4096 out, the rest waits
    assert t.client_stream.outbound_bytes == 10_000 - 4096
    assert client.conn.local_flow_control_window(t.stream_id) == 0

    deliver(client, server)  # the server acknowledges; its WINDOW_UPDATE is held back
    assert bytes(t.upstream.received) == data[:4096]
    held = server.take_wire()
    assert held
    assert t.client_stream.outbound_bytes == 10_000 - 4096 and not t.local.reading

    client.session.receive(held)  # the window opens
    client.session.flush()
    assert t.client_stream.outbound_bytes == 10_000 - 8192
    settle(client, server)
    assert bytes(t.upstream.received) == data  # no byte lost, none reordered
    assert t.client_stream.outbound_bytes == 0
    assert t.local.take_calls() == [("resume_reading",)]
    assert t.client_stream.bytes_sent == t.server_stream.bytes_received == 10_000


def test_reads_that_race_the_pause_queue_up_in_order() -> None:
    # A read already under way when pause_reading() is called still reaches the session.
    client, server = handshake(window=1000)
    t = open_stream(client, server, record_data=False)
    pieces = [payload(1500, seed=5), payload(700, seed=6), payload(10, seed=7)]
    for piece in pieces:
        client.session.send(t.stream_id, piece)
    assert t.client_stream.outbound_bytes == 2210 - 1000
    assert len(t.client_stream.outbound) == 3
    settle(client, server)
    assert bytes(t.upstream.received) == b"".join(pieces)
    assert t.local.reading


def test_congested_endpoint_withholds_the_window_until_it_drains() -> None:
    client, server = handshake(window=4096)
    t = open_stream(client, server, record_data=False)
    t.local.take_calls()
    server.session.endpoint_congested(t.stream_id)  # the upstream socket's buffer is full
    data = payload(9000, seed=2)
    client.session.send(t.stream_id, data)
    settle(client, server)
    # Written to the endpoint (its own buffer holds it) but not acknowledged to the peer.
    assert bytes(t.upstream.received) == data[:4096]
    assert t.server_stream.unacked == 4096
    assert t.client_stream.outbound_bytes == 9000 - 4096
    assert t.local.take_calls() == [("pause_reading",)]

    server.session.endpoint_drained(t.stream_id)
    settle(client, server)
    assert bytes(t.upstream.received) == data
    assert t.local.take_calls() == [("resume_reading",)]
    assert t.server_stream.unacked == 0


def test_larger_initial_window_reopens_a_blocked_stream() -> None:
    client, server = handshake(window=1000)
    t = open_stream(client, server, record_data=False)
    server.session.endpoint_congested(t.stream_id)  # no WINDOW_UPDATE will come
    data = payload(5000, seed=3)
    client.session.send(t.stream_id, data)
    settle(client, server)
    assert len(t.upstream.received) == 1000
    # RFC 9113 §6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE changes every open stream's window.
    server.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 10_000})
    server.session.flush()
    settle(client, server)
    assert bytes(t.upstream.received) == data
    assert t.local.reading


def test_data_before_bind_is_delivered_on_bind() -> None:
    client, server = handshake()
    t = open_stream(client, server, bind_client=False)
    # The upstream speaks first (an SSH or SMTP banner) and closes, all before the agent binds.
    server.session.send(t.stream_id, b"SSH-2.0-OpenSSH_9.6\r\n")
    server.session.send(t.stream_id, b"more")
    server.session.end(t.stream_id)
    deliver(server, client)
    assert t.client_stream.bytes_received == 25
    assert t.local.calls == [] and client.closed == []
    client.session.bind(t.stream_id, t.local)
    calls = [c for c in t.local.take_calls() if c != ("write", b"")]  # END_STREAM's empty DATA
    assert calls == [("write", b"SSH-2.0-OpenSSH_9.6\r\n"), ("write", b"more"),
                     ("write_eof",), ("resume_reading",)]
    client.session.end(t.stream_id)
    assert t.local.take_calls() == [("close",)]
    assert client.closed == [t.client_stream] and not t.client_stream.reset


def test_data_before_bind_is_acknowledged_on_bind() -> None:
    client, server = handshake(window=4096)
    t = open_stream(client, server, bind_client=False, record_data=False)
    data = payload(10_000, seed=4)
    server.session.send(t.stream_id, data)
    settle(client, server)
    assert t.client_stream.bytes_received == 4096  # the window is spent on early bytes
    assert t.upstream.names() == ["resume_reading", "pause_reading"]
    client.session.bind(t.stream_id, t.local)
    client.session.flush()  # as the shells do after bind
    settle(client, server)
    assert bytes(t.local.received) == data
    assert t.upstream.names()[-1] == "resume_reading"


def test_bind_sends_the_window_update_for_early_bytes() -> None:
    client, server = handshake(window=4096)
    t = open_stream(client, server, bind_client=False, record_data=False)
    server.session.send(t.stream_id, payload(10_000, seed=4))
    settle(client, server)
    assert t.client_stream.unacked == 4096
    client.session.bind(t.stream_id, t.local)  # no flush of our own afterwards
    settle(client, server)
    assert len(t.local.received) == 10_000


# -- transport back-pressure ----------------------------------------------------------------------

def test_transport_congestion_pauses_every_endpoint_and_drain_resumes_them() -> None:
    client, server = handshake()
    a = open_stream(client, server)
    b = open_stream(client, server)
    for t in (a, b):
        t.local.take_calls()
    client.session.transport_congested()
    assert a.local.take_calls() == [("pause_reading",)]
    assert b.local.take_calls() == [("pause_reading",)]
    client.session.transport_congested()  # again: nothing more to do
    assert a.local.calls == [] and b.local.calls == []
    client.session.transport_drained()
    assert a.local.take_calls() == [("resume_reading",)]
    assert b.local.take_calls() == [("resume_reading",)]
    assert a.upstream.names() == b.upstream.names() == ["resume_reading"]  # the other side


def test_transport_drain_leaves_a_window_blocked_stream_paused() -> None:
    client, server = handshake(window=1000)
    blocked = open_stream(client, server, record_data=False)
    free = open_stream(client, server)
    server.session.endpoint_congested(blocked.stream_id)
    client.session.send(blocked.stream_id, payload(3000))
    settle(client, server)
    client.session.transport_congested()
    client.session.transport_drained()
    assert not blocked.local.reading  # still waiting for its window
    assert free.local.reading


def test_bind_during_transport_congestion_stays_paused() -> None:
    client, server = handshake()
    t = open_stream(client, server, bind_client=False)
    client.session.transport_congested()
    client.session.bind(t.stream_id, t.local)
    assert t.local.calls == []
    client.session.transport_drained()
    assert t.local.calls == [("resume_reading",)]


# -- connection-level events --------------------------------------------------------------------

def test_ping_and_graceful_goaway_are_reported_in_order() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    client.conn.ping(b"keepaliv")
    client.session.flush()
    deliver(client, server)
    server.conn.send_graceful_goaway()
    server.session.flush()
    deliver(server, client)
    acks = client.take_events(ev.PingAckReceived)
    assert [a.ping_data for a in acks] == [b"keepaliv"]  # type: ignore[attr-defined]
    assert client.events == [PeerDraining(last_stream_id=t.stream_id)]
    # The open stream may finish after the GOAWAY.
    client.session.send(t.stream_id, b"still here")
    client.session.end(t.stream_id)
    server.session.end(t.stream_id)
    settle(client, server)
    assert bytes(t.upstream.received) == b"still here"
    assert client.closed == [t.client_stream] and server.closed == [t.server_stream]
    assert not t.client_stream.reset


def test_close_all_resets_unfinished_streams_only() -> None:
    client, server = handshake()
    half = open_stream(client, server)
    whole = open_stream(client, server)
    client.session.end(half.stream_id)
    client.session.close_all()  # the tunnel connection is gone
    assert half.local.done == "abort" and whole.local.done == "abort"
    assert {s.stream_id for s in client.closed} == {half.stream_id, whole.stream_id}
    assert all(s.reset for s in client.closed)
    assert client.session.streams == {}


def test_protocol_violation_by_the_peer_is_a_remote_protocol_error() -> None:
    server = Side(client_side=False)
    with pytest.raises(RemoteProtocolError, match="HTTP/2 protocol error"):
        server.session.receive(b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n")


def test_sending_beyond_the_window_is_a_remote_protocol_error() -> None:
    client, server = handshake(window=100)
    t = open_stream(client, server)
    # A peer that ignores flow control: 200 bytes of DATA against a 100-byte window.
    forged = b"\x00\x00\xc8\x00\x00" + t.stream_id.to_bytes(4, "big") + b"x" * 200
    with pytest.raises(RemoteProtocolError):
        server.session.receive(forged)


def test_windows_come_from_the_tunnel_settings() -> None:
    client, server = handshake()
    t = open_stream(client, server)
    assert client.conn.local_flow_control_window(t.stream_id) == STREAM_WINDOW_BYTES
    assert client.conn.outbound_flow_control_window == CONNECTION_WINDOW_BYTES
    assert client.conn.max_outbound_frame_size == MAX_FRAME_BYTES


# -- the connection window is given back ----------------------------------------------------------

def test_connection_window_is_returned_when_a_congested_stream_resets() -> None:
    client, server = handshake()
    per_stream = STREAM_WINDOW_BYTES
    streams = CONNECTION_WINDOW_BYTES // per_stream
    data = bytes(per_stream)
    for _ in range(streams):
        t = open_stream(client, server, record_data=False)
        server.session.endpoint_congested(t.stream_id)  # the upstream stopped reading
        client.session.send(t.stream_id, data)
        settle(client, server)
        assert t.server_stream.bytes_received == per_stream
        client.session.abort(t.stream_id)  # the user gave up on that download
        settle(client, server)
    # Every stream that held those bytes is gone: the whole connection window must be back.
    assert client.conn.outbound_flow_control_window == CONNECTION_WINDOW_BYTES
    fresh = open_stream(client, server, record_data=False)
    client.session.send(fresh.stream_id, b"x" * 1000)
    settle(client, server)
    assert fresh.server_stream.bytes_received == 1000


# -- any sizes, any chunking ----------------------------------------------------------------------

@st.composite
def operations(draw: st.DrawFn) -> list[tuple[object, ...]]:
    ops: list[tuple[object, ...]] = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["send", "send", "send", "deliver", "deliver",
                                     "congest", "drain", "transport"]))
        side = draw(st.sampled_from(["client", "server"]))
        if kind == "send":
            ops.append(("send", side, draw(st.integers(0, 40_000) | st.integers(0, 300))))
        elif kind == "deliver":
            ops.append(("deliver", side, draw(st.lists(st.integers(0, 200_000), max_size=8))))
        else:
            ops.append((kind, side))
    return ops


@settings(max_examples=150, deadline=None)
@given(window=st.sampled_from([1024, 4096, None]), ops=operations(), seed=st.integers(0, 2**32),
       close_first=st.sampled_from(["client", "server"]))
def test_what_arrives_is_what_was_sent(window: int | None, ops: list[tuple[object, ...]],
                                       seed: int, close_first: str) -> None:
    client, server = handshake(window)
    t = open_stream(client, server, record_data=False)
    sides = {"client": client, "server": server}
    endpoints = {"client": t.local, "server": t.upstream}
    sent = {"client": bytearray(), "server": bytearray()}
    rng = random.Random(seed)
    for op in ops:
        side = str(op[1])
        other = "server" if side == "client" else "client"
        session = sides[side].session
        if op[0] == "send" and endpoints[side].reading:  # a paused pipe does not read
            data = rng.randbytes(int(op[2]))  # type: ignore[call-overload]
            session.send(t.stream_id, data)
            sent[side] += data
        elif op[0] == "deliver":
            deliver(sides[side], sides[other], op[2])  # type: ignore[arg-type]
        elif op[0] == "congest":
            session.endpoint_congested(t.stream_id)
        elif op[0] == "drain":
            session.endpoint_drained(t.stream_id)
        elif op[0] == "transport":
            if session.transport_paused:
                session.transport_drained()
            else:
                session.transport_congested()
    for side, session in ((s, sides[s].session) for s in sides):
        session.endpoint_drained(t.stream_id)
        if session.transport_paused:
            session.transport_drained()
    second = "server" if close_first == "client" else "client"
    sides[close_first].session.end(t.stream_id)
    settle(client, server)
    sides[second].session.end(t.stream_id)
    settle(client, server)

    assert bytes(t.upstream.received) == bytes(sent["client"])
    assert bytes(t.local.received) == bytes(sent["server"])
    assert t.client_stream.bytes_sent == t.server_stream.bytes_received == len(sent["client"])
    assert t.server_stream.bytes_sent == t.client_stream.bytes_received == len(sent["server"])
    assert client.closed == [t.client_stream] and server.closed == [t.server_stream]
    assert not t.client_stream.reset and not t.server_stream.reset
    assert t.local.done == t.upstream.done == "close"
    assert t.local.eof and t.upstream.eof
