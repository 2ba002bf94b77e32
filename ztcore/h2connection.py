"""An H2Connection whose output keeps DATA payloads as they are instead of copying them.

h2 serialises every frame into one growing bytearray and hands it out as a fresh bytes object:
a DATA payload is copied three to four times before the TLS layer copies it once more. Here a
DATA frame's 9-byte header and its payload go out as separate chunks (`chunks_to_send`), which
the shell passes to `transport.writelines`; the TLS layer reads the payload in place.

Ordering is kept: whatever h2 wrote straight into its own buffer (the preface, for one) is moved
into the chunk list before anything newer. Payloads handed to `send_data` must be immutable
(bytes) — the shell copies its reusable read buffer once before sending.
"""

from __future__ import annotations

import struct

from h2.connection import H2Connection
from hyperframe.frame import DataFrame, Frame, GoAwayFrame

_DATA_HEADER = struct.Struct(">HBBBL")
_DATA_TYPE = 0x0
_END_STREAM = 0x1


class TunnelH2Connection(H2Connection):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._chunks: list[bytes | memoryview] = []

    def _move_buffered(self) -> None:
        if self._data_to_send:
            self._chunks.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        if not frames:
            return
        self._move_buffered()
        chunks = self._chunks
        limit = self.max_outbound_frame_size
        for frame in frames:
            if type(frame) is DataFrame and "PADDED" not in frame.flags:
                size = len(frame.data)
                assert size <= limit
                flags = _END_STREAM if "END_STREAM" in frame.flags else 0
                chunks.append(_DATA_HEADER.pack((size >> 8) & 0xFFFF, size & 0xFF, _DATA_TYPE,
                                                flags, frame.stream_id & 0x7FFFFFFF))
                if size:
                    chunks.append(frame.data)
            else:
                chunks.append(frame.serialize())
                assert frame.body_len <= limit

    def chunks_to_send(self) -> list[bytes | memoryview]:
        """Everything queued for the peer, in order, as a list for `writelines`."""
        self._move_buffered()
        chunks, self._chunks = self._chunks, []
        return chunks

    def data_to_send(self, amount: int | None = None) -> bytes:
        self._move_buffered()
        if self._chunks:
            self._data_to_send = bytearray(b"".join(self._chunks))
            self._chunks = []
        return super().data_to_send(amount)

    def send_graceful_goaway(self) -> None:
        """Queue GOAWAY(NO_ERROR) naming the last stream we accepted, without closing h2's state.

        h2 moves its connection to CLOSED as soon as it sends or receives GOAWAY and then
        refuses every later frame, so open streams could not finish (RFC 9113 §6.8 says they
        should). We write the frame ourselves; the peer's ChunkedFrameBuffer keeps it from its
        own h2 for the same reason.
        """
        self._move_buffered()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.highest_inbound_stream_id
        frame.error_code = 0
        self._chunks.append(frame.serialize())

    def clear_outbound_data_buffer(self) -> None:
        self._chunks = []
        super().clear_outbound_data_buffer()
