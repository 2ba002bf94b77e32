"""TunnelSession (ztcore/tunnel.py) transcripts: opening, binding, half-close, reset.

See tunnel_harness.py for how two sessions are wired back to back in memory.
"""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes

from tests.unit.ztcore.tunnel_harness import (
    deliver,
    handshake,
    open_stream,
    payload,
    settle,
)
from ztcore.h2tuning import (
    MAX_FRAME_BYTES,
)

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
