"""TunnelH2Connection (ztcore/h2connection.py): the same bytes as h2, delivered as chunks.

The reference is a plain `h2.connection.H2Connection` given the same calls: whatever it puts
in `data_to_send()`, ours must put, byte for byte and in order, in `chunks_to_send()` joined
(and in `data_to_send()`, which still works), however the two drains are interleaved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame, GoAwayFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from ztcore.h2connection import TunnelH2Connection

REQUEST = [(b":method", b"CONNECT"), (b":authority", b"example.jp:443")]
RESPONSE = [(b":status", b"200")]


def config(client_side: bool) -> H2Configuration:
    return H2Configuration(client_side=client_side, header_encoding=None)


def pair(client_side: bool = True) -> tuple[H2Connection, TunnelH2Connection]:
    return H2Connection(config=config(client_side)), TunnelH2Connection(config=config(client_side))


def drain_chunks(conn: TunnelH2Connection) -> bytes:
    chunks = conn.chunks_to_send()
    assert all(isinstance(c, bytes | memoryview) for c in chunks)
    return b"".join(chunks)


def frames_of(wire: bytes, server: bool = False) -> list[Frame]:
    buf = FrameBuffer(server=server)  # h2's own parser, the independent reference
    buf.max_frame_size = 2**24 - 1
    buf.add_data(wire)
    return list(buf)


# -- a script of calls, run on both connections ---------------------------------------------------

Op = Callable[[H2Connection], None]


@dataclass
class Step:
    name: str
    run: Op

    def __repr__(self) -> str:
        return self.name


def client_steps(draw: st.DrawFn) -> list[Step]:
    """A valid client call sequence: streams opened before use, within flow-control windows."""
    steps: list[Step] = [Step("initiate", lambda c: c.initiate_connection())]
    open_streams: list[int] = []
    next_id = 1
    budget = {0: 65_535}
    for _ in range(draw(st.integers(0, 15))):
        kind = draw(st.sampled_from(["open", "data", "data", "end", "ping", "reset", "settings",
                                     "window", "drain"]))
        if kind == "open" or (kind in ("data", "end", "reset") and not open_streams):
            sid, next_id = next_id, next_id + 2
            open_streams.append(sid)
            budget[sid] = 65_535
            steps.append(Step(f"headers({sid})", lambda c, s=sid: c.send_headers(s, REQUEST)))
        elif kind == "data":
            sid = draw(st.sampled_from(open_streams))
            pad = draw(st.none() | st.integers(1, 255))
            room = min(budget[0], budget[sid], 16_384) - (0 if pad is None else pad + 1)
            if room < 0:
                continue
            size = draw(st.integers(0, min(room, 3000)))
            end = draw(st.booleans())
            payload = draw(st.binary(min_size=size, max_size=size))
            cost = size + (0 if pad is None else pad + 1)
            budget[0] -= cost
            budget[sid] -= cost
            if end:
                open_streams.remove(sid)
            steps.append(Step(f"data({sid}, {size}, pad={pad}, end={end})",
                              lambda c, s=sid, p=payload, e=end, pl=pad:
                              c.send_data(s, p, end_stream=e, pad_length=pl)))
        elif kind == "end":
            sid = open_streams.pop(draw(st.integers(0, len(open_streams) - 1)))
            steps.append(Step(f"end({sid})", lambda c, s=sid: c.end_stream(s)))
        elif kind == "reset":
            sid = open_streams.pop(draw(st.integers(0, len(open_streams) - 1)))
            code = draw(st.sampled_from(list(ErrorCodes)))
            steps.append(Step(f"reset({sid}, {code.name})",
                              lambda c, s=sid, e=code: c.reset_stream(s, e)))
        elif kind == "ping":
            opaque = draw(st.binary(min_size=8, max_size=8))
            steps.append(Step("ping", lambda c, o=opaque: c.ping(o)))
        elif kind == "settings":
            window = draw(st.integers(0, 2**20))
            steps.append(Step(f"settings({window})", lambda c, w=window: c.update_settings(
                {SettingCodes.INITIAL_WINDOW_SIZE: w, SettingCodes.MAX_CONCURRENT_STREAMS: 100})))
        elif kind == "window":
            increment = draw(st.integers(1, 2**20))
            steps.append(Step(f"window(+{increment})",
                              lambda c, i=increment: c.increment_flow_control_window(i)))
        else:
            steps.append(Step("drain", lambda c: None))  # a flush point, see the runner
    if draw(st.booleans()):
        code = draw(st.sampled_from([ErrorCodes.NO_ERROR, ErrorCodes.PROTOCOL_ERROR]))
        steps.append(Step(f"goaway({code.name})",
                          lambda c, e=code: c.close_connection(e, additional_data=b"bye")))
    return steps


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list[Step], list[str]]:
    steps = client_steps(draw)
    # After each step: no drain, chunks_to_send(), or data_to_send() (whole or a prefix).
    drains = [draw(st.sampled_from(["none", "none", "chunks", "data", "data-part"])) for _ in steps]
    return steps, drains


@settings(max_examples=300)
@given(script=scripts(), amount=st.integers(0, 40))
def test_chunks_join_to_what_h2_sends(script: tuple[list[Step], list[str]], amount: int) -> None:
    steps, drains = script
    reference, ours = pair()
    want = bytearray()
    got = bytearray()
    for step, drain in zip(steps, drains):
        step.run(reference)
        step.run(ours)
        want += reference.data_to_send()
        if drain == "chunks":
            got += drain_chunks(ours)
        elif drain == "data":
            got += ours.data_to_send()
        elif drain == "data-part":
            part = ours.data_to_send(amount)
            assert len(part) <= amount
            got += part
    got += drain_chunks(ours)
    assert bytes(got) == bytes(want)
    assert reference.outbound_flow_control_window == ours.outbound_flow_control_window


# -- the named cases of the brief, as a table ---------------------------------------------------

def _open(c: H2Connection) -> None:
    c.initiate_connection()
    c.send_headers(1, REQUEST)


CASES: list[tuple[str, Op]] = [
    ("preface", lambda c: c.initiate_connection()),
    ("settings", lambda c: (c.initiate_connection(),
                            c.update_settings({SettingCodes.MAX_FRAME_SIZE: 2**20}))),
    ("headers", _open),
    ("data", lambda c: (_open(c), c.send_data(1, b"hello"))),
    ("empty-data-end-stream", lambda c: (_open(c), c.send_data(1, b"", end_stream=True))),
    ("data-end-stream", lambda c: (_open(c), c.send_data(1, b"bye", end_stream=True))),
    ("padded-data", lambda c: (_open(c), c.send_data(1, b"secret", pad_length=9))),
    ("padded-data-end-stream", lambda c: (_open(c), c.send_data(1, b"x", end_stream=True,
                                                                  pad_length=255))),
    ("max-size-data", lambda c: (_open(c), c.send_data(1, b"m" * 16_384))),
    ("memoryview-data", lambda c: (_open(c), c.send_data(1, memoryview(b"viewed")))),
    ("ping", lambda c: (c.initiate_connection(), c.ping(b"01234567"))),
    ("reset", lambda c: (_open(c), c.send_data(1, b"a"), c.reset_stream(1, ErrorCodes.CANCEL))),
    ("end-stream", lambda c: (_open(c), c.send_data(1, b"a"), c.end_stream(1))),
    ("goaway", lambda c: (_open(c), c.close_connection(ErrorCodes.NO_ERROR, b"done"))),
    ("window", lambda c: (_open(c), c.increment_flow_control_window(1000),
                          c.increment_flow_control_window(5, stream_id=1))),
    ("two-streams-interleaved", lambda c: (_open(c), c.send_headers(3, REQUEST),
                                           c.send_data(1, b"one"), c.send_data(3, b"three"),
                                           c.ping(b"pingping"), c.send_data(1, b"uno", end_stream=True),
                                           c.reset_stream(3))),
]


@pytest.mark.parametrize("name, calls", CASES, ids=[c[0] for c in CASES])
def test_named_sequences_match_h2(name: str, calls: Op) -> None:
    reference, ours = pair()
    calls(reference)
    calls(ours)
    want = reference.data_to_send()
    assert want  # every case sends something
    assert drain_chunks(ours) == want
    assert ours.chunks_to_send() == []  # taken once


@pytest.mark.parametrize("name, calls", CASES, ids=[c[0] for c in CASES])
def test_data_to_send_still_gives_everything(name: str, calls: Op) -> None:
    reference, ours = pair()
    calls(reference)
    calls(ours)
    assert ours.data_to_send() == reference.data_to_send()
    assert ours.data_to_send() == b"" and ours.chunks_to_send() == []


def test_data_to_send_with_an_amount_leaves_the_rest_in_order() -> None:
    reference, ours = pair()
    for conn in (reference, ours):
        _open(conn)
        conn.send_data(1, b"abcdefgh" * 10)
    want = reference.data_to_send()
    head = ours.data_to_send(30)
    ours.send_data(1, b"later")  # queued behind what is still buffered
    reference.send_data(1, b"later")
    want += reference.data_to_send()
    assert head + drain_chunks(ours) == want


def test_server_side_matches_h2() -> None:
    client = H2Connection(config=config(True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    client.send_data(1, b"from the client")
    preface = client.data_to_send()
    reference, ours = pair(client_side=False)
    for conn in (reference, ours):
        conn.initiate_connection()
        conn.receive_data(preface)  # SETTINGS ACK and the request
        conn.send_headers(1, RESPONSE)
        conn.acknowledge_received_data(15, 1)
        conn.send_data(1, b"from the server", end_stream=True)
        conn.reset_stream(1, ErrorCodes.NO_ERROR)
    want = reference.data_to_send()
    assert drain_chunks(ours) == want


# -- chunking is what the module is for ------------------------------------------------------------

def test_unpadded_data_payload_is_sent_as_the_same_object() -> None:
    conn = TunnelH2Connection(config=config(True))
    _open(conn)
    conn.chunks_to_send()
    payload = b"p" * 5000
    conn.send_data(1, payload, end_stream=True)
    header, body = conn.chunks_to_send()
    assert body is payload  # not copied on the way out
    assert header == b"\x00\x13\x88\x00\x01\x00\x00\x00\x01"  # 5000 bytes, DATA, END_STREAM, 1


def test_data_frame_header_carries_a_24_bit_length_and_the_stream() -> None:
    reference, ours = pair()
    for conn in (reference, ours):
        conn.initiate_connection()
        conn.update_settings({SettingCodes.MAX_FRAME_SIZE: 2**20})
        # Peer's settings raise our outbound frame size and windows.
        peer = H2Connection(config=config(False))
        peer.initiate_connection()
        peer.update_settings({SettingCodes.MAX_FRAME_SIZE: 2**20,
                              SettingCodes.INITIAL_WINDOW_SIZE: 2**21})
        peer.increment_flow_control_window(2**21)
        conn.receive_data(peer.data_to_send())
        conn.send_headers(2**31 - 1, REQUEST)
        conn.send_data(2**31 - 1, b"L" * 70_000)  # over 16 bits of length
    wire = drain_chunks(ours)
    assert wire == reference.data_to_send()
    data = [f for f in frames_of(wire, server=True) if isinstance(f, DataFrame)]
    assert [(len(f.data), f.stream_id) for f in data] == [(70_000, 2**31 - 1)]


def test_frames_written_straight_to_h2s_buffer_keep_their_place() -> None:
    conn = TunnelH2Connection(config=config(True))
    conn.initiate_connection()  # h2 writes the preface into its own buffer
    conn.send_headers(1, REQUEST)  # ours goes through the chunk list
    wire = drain_chunks(conn)
    assert wire.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    kinds = [type(f).__name__ for f in frames_of(wire[24:])]
    assert kinds == ["SettingsFrame", "HeadersFrame"]


def test_clear_outbound_data_buffer_clears_both_stores() -> None:
    conn = TunnelH2Connection(config=config(True))
    conn.initiate_connection()
    conn.send_headers(1, REQUEST)  # the preface moves to the chunk list, the headers follow
    conn.send_data(1, b"dropped")
    conn.ping(b"pingping")
    conn.data_to_send(5)  # the rest now sits in h2's own buffer...
    conn.send_data(1, b"dropped too")  # ...and this in the chunk list
    conn.clear_outbound_data_buffer()
    assert conn.chunks_to_send() == []
    assert conn.data_to_send() == b""
    conn.send_data(1, b"kept", end_stream=True)
    [frame] = frames_of(drain_chunks(conn))
    assert bytes(frame.data) == b"kept" and "END_STREAM" in frame.flags


@pytest.mark.parametrize("fill", [
    lambda c: c.initiate_connection(),  # h2 writes the preface straight into its buffer
    lambda c: (_open(c), c.data_to_send(5)),  # a partial read leaves the rest there
], ids=["preface", "partial-read"])
def test_clear_empties_h2s_own_buffer(fill: Op) -> None:
    conn = TunnelH2Connection(config=config(True))
    fill(conn)
    conn.clear_outbound_data_buffer()
    assert conn.chunks_to_send() == []
    assert conn.data_to_send() == b""


def test_graceful_goaway_is_queued_in_order_and_leaves_streams_open() -> None:
    client = H2Connection(config=config(True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    client.send_headers(3, REQUEST)
    server = TunnelH2Connection(config=config(False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.send_headers(1, RESPONSE)
    server.send_graceful_goaway()
    server.send_data(3, b"still open")  # h2 would refuse this after close_connection()
    frames = frames_of(drain_chunks(server))
    kinds = [type(f).__name__ for f in frames]
    assert kinds == ["SettingsFrame", "SettingsFrame", "HeadersFrame", "GoAwayFrame", "DataFrame"]
    goaway = frames[3]
    assert isinstance(goaway, GoAwayFrame)
    assert (goaway.last_stream_id, goaway.error_code) == (3, 0)


def test_padded_data_with_zero_padding_matches_h2() -> None:
    reference, ours = pair()
    for conn in (reference, ours):
        _open(conn)
        conn.send_data(1, b"hello", pad_length=0)
    assert drain_chunks(ours) == reference.data_to_send()
