"""TunnelSession (ztcore/tunnel.py) transcripts: flow control, back-pressure, connection events.

See tunnel_harness.py for how two sessions are wired back to back in memory.
"""

from __future__ import annotations

import random

import h2.events as ev
import pytest
from h2.settings import SettingCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.ztcore.tunnel_harness import (
    Side,
    deliver,
    handshake,
    open_stream,
    payload,
    settle,
)
from ztcore.errors import RemoteProtocolError
from ztcore.h2tuning import (
    CONNECTION_WINDOW_BYTES,
    MAX_FRAME_BYTES,
    STREAM_WINDOW_BYTES,
)
from ztcore.tunnel import PeerDraining, Stream


def queued(stream: Stream) -> int:
    """Bytes waiting in the stream for flow-control window."""
    return sum(len(chunk) for chunk in stream.outbound)


# -- flow control -------------------------------------------------------------------------------

def test_sender_pauses_at_the_stream_window_and_resumes_when_it_opens() -> None:
    client, server = handshake(window=4096)
    t = open_stream(client, server, record_data=False)
    t.local.take_calls()
    data = payload(10_000, seed=1)
    client.session.send(t.stream_id, data)
    assert t.local.take_calls() == [("pause_reading",)]  # 4096 out, the rest waits
    assert queued(t.client_stream) == 10_000 - 4096
    assert client.conn.local_flow_control_window(t.stream_id) == 0

    deliver(client, server)  # the server acknowledges; its WINDOW_UPDATE is held back
    assert bytes(t.upstream.received) == data[:4096]
    held = server.take_wire()
    assert held
    assert queued(t.client_stream) == 10_000 - 4096 and not t.local.reading

    client.session.receive(held)  # the window opens
    client.session.flush()
    assert queued(t.client_stream) == 10_000 - 8192
    settle(client, server)
    assert bytes(t.upstream.received) == data  # no byte lost, none reordered
    assert queued(t.client_stream) == 0
    assert t.local.take_calls() == [("resume_reading",)]
    assert t.client_stream.bytes_sent == t.server_stream.bytes_received == 10_000


def test_reads_that_race_the_pause_queue_up_in_order() -> None:
    # A read already under way when pause_reading() is called still reaches the session.
    client, server = handshake(window=1000)
    t = open_stream(client, server, record_data=False)
    pieces = [payload(1500, seed=5), payload(700, seed=6), payload(10, seed=7)]
    for piece in pieces:
        client.session.send(t.stream_id, piece)
    assert queued(t.client_stream) == 2210 - 1000
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
    assert queued(t.client_stream) == 9000 - 4096
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
