"""ChunkedFrameBuffer (ztcore/h2buffer.py) against h2's own FrameBuffer, the reference.

The buffer replaces h2's storage only, so whatever frames h2's FrameBuffer yields for a byte
stream, cut anywhere, ours must yield too: same type, stream, flags and payload. Where the two
are meant to differ (a graceful GOAWAY is kept from h2; unpadded DATA payloads are views) the
tests say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest
from h2.exceptions import FrameDataMissingError, FrameTooLargeError, ProtocolError
from h2.frame_buffer import FrameBuffer
from hyperframe.exceptions import HyperframeError, InvalidPaddingError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ztcore.h2buffer import ChunkedFrameBuffer

PREAMBLE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 16_384



def new_buffer(cls: type[FrameBuffer], server: bool = False) -> FrameBuffer:
    buf = cls(server=server)
    buf.max_frame_size = MAX_FRAME  # h2 sets this from its settings; 0 until then
    return buf


def describe(frame: Frame) -> tuple[object, ...]:
    """Everything h2 reads from a frame, as plain values."""
    fields: tuple[object, ...] = (type(frame).__name__, frame.stream_id, sorted(frame.flags))
    if isinstance(frame, DataFrame):
        fields += (bytes(frame.data), frame.flow_controlled_length)
    elif isinstance(frame, HeadersFrame):
        fields += (bytes(frame.data),)
    elif isinstance(frame, SettingsFrame):
        fields += (dict(frame.settings),)
    elif isinstance(frame, PingFrame):
        fields += (bytes(frame.opaque_data),)
    elif isinstance(frame, WindowUpdateFrame):
        fields += (frame.window_increment,)
    elif isinstance(frame, RstStreamFrame | GoAwayFrame):
        fields += (frame.error_code,)
    elif isinstance(frame, ExtensionFrame):
        fields += (frame.type, frame.flag_byte, bytes(frame.body))
    # serialize() turns a memoryview payload into bytes, so it goes last.
    return fields + (frame.serialize(),)


def drain(buf: FrameBuffer) -> list[Frame]:
    return list(buf)


def feed(buf: FrameBuffer, chunks: Iterable[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        buf.add_data(chunk)
        frames += drain(buf)
    return frames


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c for c in cuts if 0 <= c <= len(data))})
    return [data[a:b] for a, b in zip(points, points[1:])]


# -- frames, built with hyperframe ---------------------------------------------------------------

stream_ids = st.integers(1, 2**31 - 1)
error_codes = st.integers(0, 2**32 - 1)


@st.composite
def data_frames(draw: st.DrawFn) -> list[Frame]:
    frame = DataFrame(draw(stream_ids), draw(st.binary(max_size=300)))
    if draw(st.booleans()):
        frame.flags.add("END_STREAM")
    pad = draw(st.none() | st.integers(0, 255))
    if pad is not None:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    return [frame]


@st.composite
def header_blocks(draw: st.DrawFn) -> list[Frame]:
    """HEADERS and its CONTINUATIONs; h2's buffer hands them on as one HEADERS frame."""
    stream_id = draw(stream_ids)
    pieces = draw(st.lists(st.binary(max_size=60), min_size=1, max_size=5))
    headers = HeadersFrame(stream_id, pieces[0])
    if draw(st.booleans()):
        headers.flags.add("END_STREAM")
    if pieces[0] and draw(st.booleans()):
        # (hyperframe refuses padding on an empty fragment: pad length == body length)
        headers.flags.add("PADDED")
        headers.pad_length = draw(st.integers(0, 20))
    frames: list[Frame] = [headers]
    for piece in pieces[1:]:
        frames.append(ContinuationFrame(stream_id, piece))
    frames[-1].flags.add("END_HEADERS")
    return frames


@st.composite
def settings_frames(draw: st.DrawFn) -> list[Frame]:
    if draw(st.booleans()):
        return [SettingsFrame(0, flags=["ACK"])]
    values = draw(st.dictionaries(st.integers(1, 6), st.integers(0, 2**31 - 1), max_size=6))
    return [SettingsFrame(0, settings=values)]


@st.composite
def ping_frames(draw: st.DrawFn) -> list[Frame]:
    flags = ["ACK"] if draw(st.booleans()) else []
    return [PingFrame(0, opaque_data=draw(st.binary(min_size=8, max_size=8)), flags=flags)]


@st.composite
def window_updates(draw: st.DrawFn) -> list[Frame]:
    stream_id = draw(st.just(0) | stream_ids)
    return [WindowUpdateFrame(stream_id, window_increment=draw(st.integers(1, 2**31 - 1)))]


@st.composite
def resets(draw: st.DrawFn) -> list[Frame]:
    return [RstStreamFrame(draw(stream_ids), error_code=draw(error_codes))]


@st.composite
def other_frames(draw: st.DrawFn) -> list[Frame]:
    """PRIORITY, an error GOAWAY (a graceful one is handled apart) and an unknown type."""
    kind = draw(st.sampled_from(["priority", "goaway", "extension"]))
    if kind == "priority":
        return [PriorityFrame(draw(stream_ids), depends_on=draw(st.integers(0, 2**31 - 1)),
                              stream_weight=draw(st.integers(0, 255)))]
    if kind == "goaway":
        return [GoAwayFrame(0, last_stream_id=draw(st.integers(0, 2**31 - 1)),
                            error_code=draw(st.integers(1, 2**32 - 1)),
                            additional_data=draw(st.binary(max_size=20)))]
    body = draw(st.binary(max_size=40))
    frame = ExtensionFrame(type=draw(st.integers(0x0B, 0xFF)), stream_id=draw(st.integers(0, 9)),
                           flag_byte=draw(st.integers(0, 255)), body=body)
    frame.body_len = len(body)  # hyperframe's serialize() reads it; the constructor leaves it 0
    return [frame]


frame_groups = st.lists(
    st.one_of(data_frames(), header_blocks(), settings_frames(), ping_frames(), window_updates(),
              resets(), other_frames()),
    max_size=12)


def wire_of(groups: Sequence[Sequence[Frame]]) -> bytes:
    return b"".join(frame.serialize() for group in groups for frame in group)


# -- the reference comparison -------------------------------------------------------------------

@settings(max_examples=300)
@given(groups=frame_groups, server=st.booleans(), data=st.data())
def test_same_frames_as_h2_for_any_chunking(groups: list[list[Frame]], server: bool,
                                            data: st.DataObject) -> None:
    wire = (PREAMBLE if server else b"") + wire_of(groups)
    chunks = split(wire, data.draw(st.lists(st.integers(0, len(wire)), max_size=30)))
    ours, reference = new_buffer(ChunkedFrameBuffer, server), new_buffer(FrameBuffer, server)
    got: list[tuple[object, ...]] = []
    want: list[tuple[object, ...]] = []
    for chunk in chunks:
        ours.add_data(chunk)
        reference.add_data(chunk)
        # Frame for frame after every read, not only at the end.
        got += [describe(f) for f in drain(ours)]
        want += [describe(f) for f in drain(reference)]
        assert got == want
    assert len(want) == len(groups)  # one frame out per group: the test is not vacuous


@settings(max_examples=300)
@given(groups=frame_groups.filter(bool), data=st.data())
def test_mutated_input_gives_the_same_frames_or_the_same_error(groups: list[list[Frame]],
                                                               data: st.DataObject) -> None:
    wire = bytearray(wire_of(groups))
    for _ in range(data.draw(st.integers(1, 3))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    chunks = split(bytes(wire), data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))

    def run(buf: FrameBuffer) -> tuple[list[tuple[object, ...]], type[Exception] | None, int]:
        frames: list[tuple[object, ...]] = []
        for index, chunk in enumerate(chunks):
            buf.add_data(chunk)
            try:
                frames += [describe(f) for f in drain(buf)]
            except (ProtocolError, HyperframeError) as exc:  # h2 maps the latter at receive_data
                return frames, type(exc), index
        return frames, None, len(chunks)

    want = run(new_buffer(FrameBuffer))
    # A frame inside a header block is covered by its own tests below.
    assume(want[1] is None or "header block" not in _reference_error(chunks))
    assert run(new_buffer(ChunkedFrameBuffer)) == want


def _reference_error(chunks: list[bytes]) -> str:
    buf = new_buffer(FrameBuffer)
    try:
        feed(buf, chunks)
    except (ProtocolError, HyperframeError) as exc:
        return str(exc)
    return ""


# -- preamble (server side) ---------------------------------------------------------------------

@given(st.lists(st.integers(0, len(PREAMBLE) + 17), max_size=10))
def test_preamble_split_anywhere_is_accepted(cuts: list[int]) -> None:
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    frames = feed(new_buffer(ChunkedFrameBuffer, server=True), split(PREAMBLE + ping, cuts))
    assert [describe(f) for f in frames] == [describe(PingFrame(0, opaque_data=b"12345678"))]


@given(position=st.integers(0, len(PREAMBLE) - 1), value=st.integers(0, 255),
       cuts=st.lists(st.integers(0, len(PREAMBLE)), max_size=6))
def test_wrong_preamble_byte_is_refused_in_the_read_that_carries_it(
        position: int, value: int, cuts: list[int]) -> None:
    assume(PREAMBLE[position] != value)
    bad = PREAMBLE[:position] + bytes([value]) + PREAMBLE[position + 1:]
    buf = new_buffer(ChunkedFrameBuffer, server=True)
    offset = 0
    for chunk in split(bad, cuts):
        if offset <= position < offset + len(chunk):
            with pytest.raises(ProtocolError, match="preamble"):
                buf.add_data(chunk)
            return
        buf.add_data(chunk)  # the good bytes before it are fine
        offset += len(chunk)
    pytest.fail("the bad byte was never fed")


def test_client_side_expects_no_preamble() -> None:
    ping = PingFrame(0, opaque_data=b"abcdefgh")
    buf = new_buffer(ChunkedFrameBuffer, server=False)
    buf.add_data(ping.serialize())
    assert [describe(f) for f in drain(buf)] == [describe(ping)]


def test_preamble_followed_by_a_frame_in_the_same_read() -> None:
    settings_ack = SettingsFrame(0, flags=["ACK"])
    buf = new_buffer(ChunkedFrameBuffer, server=True)
    buf.add_data(PREAMBLE + settings_ack.serialize())
    assert [describe(f) for f in drain(buf)] == [describe(settings_ack)]


# -- frame length -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [FrameBuffer, ChunkedFrameBuffer])
@pytest.mark.parametrize("size, too_large", [(MAX_FRAME, False), (MAX_FRAME + 1, True)])
def test_overlong_frame_is_refused(cls: type[FrameBuffer], size: int, too_large: bool) -> None:
    buf = new_buffer(cls)
    buf.add_data(DataFrame(1, b"x" * size).serialize())
    if too_large:
        with pytest.raises(FrameTooLargeError, match="overlong"):
            drain(buf)
    else:
        [frame] = drain(buf)
        assert bytes(frame.data) == b"x" * size


def test_max_frame_size_is_read_when_the_frame_is_parsed() -> None:
    # h2 raises max_frame_size once our SETTINGS are acknowledged; the next frame uses it.
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(DataFrame(1, b"y" * (MAX_FRAME + 10)).serialize())
    buf.max_frame_size = MAX_FRAME + 10
    [frame] = drain(buf)
    assert len(frame.data) == MAX_FRAME + 10


@pytest.mark.parametrize("frame, error", [
    (b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"1234567", FrameDataMissingError),  # PING of 7
    (b"\x00\x00\x05\x08\x00\x00\x00\x00\x00" + b"12345", FrameDataMissingError),    # WINDOW_UPDATE
    (b"\x00\x00\x00\x00\x00\x00\x00\x00\x00", ProtocolError),                       # DATA on 0
    # PADDED DATA whose pad length is not below its body length (H2Connection maps it)
    (b"\x00\x00\x02\x00\x08\x00\x00\x00\x01" + b"\x05x", InvalidPaddingError),
])
def test_malformed_frames_raise_what_h2_raises(frame: bytes, error: type[Exception]) -> None:
    for cls in (FrameBuffer, ChunkedFrameBuffer):
        buf = new_buffer(cls)
        buf.add_data(frame)
        with pytest.raises(error):
            drain(buf)


# -- empty frames and buffer edges ---------------------------------------------------------------

@pytest.mark.parametrize("last", [
    SettingsFrame(0, flags=["ACK"]),
    DataFrame(1, b"", flags=["END_STREAM"]),
    DataFrame(3, b""),
    HeadersFrame(5, b"", flags=["END_HEADERS"]),
], ids=["settings-ack", "data-end-stream", "data-empty", "headers-empty"])
def test_zero_length_frame_at_the_end_of_the_buffer(last: Frame) -> None:
    first = DataFrame(1, b"before")
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(first.serialize() + last.serialize())
    assert [describe(f) for f in drain(buf)] == [describe(first), describe(last)]
    # Nothing left over: the next frame is parsed from its own first byte.
    after = PingFrame(0, opaque_data=b"\x00" * 8)
    buf.add_data(after.serialize())
    assert [describe(f) for f in drain(buf)] == [describe(after)]


def test_zero_length_frame_alone_is_exactly_nine_bytes() -> None:
    buf = new_buffer(ChunkedFrameBuffer)
    wire = DataFrame(1, b"", flags=["END_STREAM"]).serialize()
    assert len(wire) == 9
    buf.add_data(wire[:8])
    assert drain(buf) == []
    buf.add_data(wire[8:])
    [frame] = drain(buf)
    assert bytes(frame.data) == b"" and frame.flags == {"END_STREAM"}


def test_incomplete_frame_waits_for_its_last_byte() -> None:
    wire = DataFrame(1, b"0123456789").serialize()
    buf = new_buffer(ChunkedFrameBuffer)
    for byte in wire[:-1]:
        buf.add_data(bytes([byte]))
        assert drain(buf) == []
    buf.add_data(wire[-1:])
    [frame] = drain(buf)
    assert bytes(frame.data) == b"0123456789"


# -- payload storage -----------------------------------------------------------------------------

@pytest.mark.parametrize("cuts", [[], [20], [3, 12, 15, 40]], ids=["one-read", "split", "many"])
def test_data_payload_is_a_readonly_view_that_stays_valid(cuts: list[int]) -> None:
    first, second = b"A" * 50, b"B" * 50
    wire = DataFrame(1, first).serialize() + DataFrame(1, second).serialize()
    buf = new_buffer(ChunkedFrameBuffer)
    frames = feed(buf, split(wire[:59], cuts))
    [frame] = frames
    assert isinstance(frame.data, memoryview)
    assert frame.data.readonly  # a view of bytes: nothing can write through it or under it
    # More reads, more frames: the first payload is untouched.
    buf.add_data(wire[59:])
    [later] = drain(buf)
    buf.add_data(PingFrame(0, opaque_data=b"z" * 8).serialize())
    drain(buf)
    assert bytes(frame.data) == first
    assert bytes(later.data) == second


def test_padded_data_payload_is_stripped_of_padding() -> None:
    frame = DataFrame(1, b"payload", flags=["PADDED"])
    frame.pad_length = 4
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(frame.serialize())
    [got] = drain(buf)
    assert bytes(got.data) == b"payload"
    assert got.pad_length == 4
    assert got.flow_controlled_length == len(b"payload") + 4 + 1


@pytest.mark.parametrize("wrap", [lambda b: b, memoryview], ids=["bytearray", "memoryview"])
def test_mutating_the_callers_buffer_after_add_data_changes_nothing(
        wrap: Callable[[bytearray], bytearray | memoryview]) -> None:
    one, two = DataFrame(1, b"first-payload"), DataFrame(3, b"second-payload")
    mutable = bytearray(one.serialize() + two.serialize())
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(wrap(mutable))
    first = next(buf)
    # The caller reuses its read buffer for the next read.
    mutable[:] = b"\xee" * len(mutable)
    [second] = drain(buf)
    assert bytes(first.data) == b"first-payload"  # parsed before the change
    assert bytes(second.data) == b"second-payload"  # still buffered during the change
    assert second.stream_id == 3


def test_mutating_a_reused_read_buffer_through_a_view() -> None:
    # The shape of a BufferedProtocol: one bytearray, a view of its first n bytes per read.
    read_buffer = bytearray(64)
    view = memoryview(read_buffer)
    wire = DataFrame(1, b"x" * 30).serialize() + DataFrame(1, b"y" * 30).serialize()
    buf = new_buffer(ChunkedFrameBuffer)
    frames: list[Frame] = []
    for start in range(0, len(wire), 20):
        piece = wire[start:start + 20]
        read_buffer[:len(piece)] = piece
        buf.add_data(view[:len(piece)])
        frames += drain(buf)
    assert [bytes(f.data) for f in frames] == [b"x" * 30, b"y" * 30]


# -- GOAWAY(NO_ERROR) is kept from h2 ------------------------------------------------------------

def test_graceful_goaway_is_kept_aside_and_later_frames_still_flow() -> None:
    goaway = GoAwayFrame(0, last_stream_id=7, error_code=0)
    data = DataFrame(7, b"still flowing")
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(goaway.serialize() + data.serialize())
    assert [describe(f) for f in drain(buf)] == [describe(data)]
    assert buf.graceful_goaway is not None
    assert buf.graceful_goaway.last_stream_id == 7


def test_error_goaway_goes_to_h2() -> None:
    goaway = GoAwayFrame(0, last_stream_id=7, error_code=2)
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(goaway.serialize())
    assert [describe(f) for f in drain(buf)] == [describe(goaway)]
    assert buf.graceful_goaway is None


# -- header blocks (RFC 9113 §6.10: nothing may come between HEADERS and its last CONTINUATION) ---

def test_continuation_on_another_stream_is_refused() -> None:
    wire = (HeadersFrame(1, b"abc").serialize()
            + ContinuationFrame(3, b"def", flags=["END_HEADERS"]).serialize())
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(wire)
    with pytest.raises(ProtocolError, match="header block"):
        drain(buf)


def test_ping_inside_a_header_block_is_refused() -> None:
    wire = HeadersFrame(1, b"abc").serialize() + PingFrame(0, opaque_data=b"p" * 8).serialize()
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(wire)
    with pytest.raises(ProtocolError, match="header block"):
        drain(buf)


def test_unpadded_data_inside_a_header_block_is_refused() -> None:
    wire = HeadersFrame(1, b"abc").serialize() + DataFrame(1, b"xyz").serialize()
    reference = new_buffer(FrameBuffer)
    reference.add_data(wire)
    with pytest.raises(ProtocolError, match="header block"):
        drain(reference)
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(wire)
    with pytest.raises(ProtocolError, match="header block"):
        drain(buf)


def test_graceful_goaway_inside_a_header_block_is_refused() -> None:
    wire = (HeadersFrame(1, b"abc").serialize()
            + GoAwayFrame(0, last_stream_id=1, error_code=0).serialize())
    buf = new_buffer(ChunkedFrameBuffer)
    buf.add_data(wire)
    with pytest.raises(ProtocolError, match="header block"):
        drain(buf)


def test_a_broken_frame_inside_a_header_block_gives_h2s_error() -> None:
    """Found by Hypothesis in CI: the body is parsed before the header-block rule is applied, as
    h2 does, so a malformed frame inside an open header block is FrameDataMissingError."""
    short_priority = (4).to_bytes(3, "big") + bytes([0x2, 0]) + (1).to_bytes(4, "big") + bytes(4)
    wire = HeadersFrame(1, b"abc").serialize() + short_priority
    errors = []
    for cls in (FrameBuffer, ChunkedFrameBuffer):
        buf = new_buffer(cls)
        buf.add_data(wire)
        with pytest.raises(ProtocolError) as exc:
            drain(buf)
        errors.append(type(exc.value))
    assert errors == [FrameDataMissingError, FrameDataMissingError]
