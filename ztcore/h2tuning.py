"""HTTP/2 settings of the tunnel, and the work-around for h2's per-frame debug repr.

Why the work-around: h2 4.x calls ``logger.trace("Received frame: %s", repr(frame))`` for every
received frame, building the string even when logging is off. hyperframe's DataFrame has no
``_body_repr`` of its own, so its repr serialises the whole body and hex-encodes it: about
4.4 ms per MiB on this machine, i.e. seconds per GiB — more than everything else the tunnel
does. We give DataFrame a repr that looks at the first ten bytes only (the text it returns is
the same: hyperframe truncates the hex to 20 characters anyway). See tests/bench/h2_repr.py.
"""

from __future__ import annotations

import binascii

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame

from ztcore.h2buffer import ChunkedFrameBuffer
from ztcore.h2connection import TunnelH2Connection

# A bulk stream must never wait on flow control: a stream moves at most window/RTT, so 16 MiB
# keeps a 20 ms path above 800 MB/s. The connection window bounds memory per tunnel.
STREAM_WINDOW_BYTES = 16 * 1024 * 1024
CONNECTION_WINDOW_BYTES = 64 * 1024 * 1024
# Big frames keep the Python cost per byte low (one h2 event per MiB instead of per 16 KiB).
MAX_FRAME_BYTES = 1024 * 1024
MAX_CONCURRENT_STREAMS = 256
MAX_HEADER_LIST_BYTES = 16 * 1024
H2_DEFAULT_WINDOW_BYTES = 65_535
# The tunnel transport buffers this much before the session stops its endpoints reading.
TUNNEL_WRITE_HIGH_WATER_BYTES = 8 * 1024 * 1024


def _data_frame_body_repr(self: DataFrame) -> str:
    head = bytes(self.data[:10]) if self.data else b""
    if not head:
        return "None"
    text = binascii.hexlify(head).decode("ascii")
    if len(self.data) > 10:
        text += "..."
    return "<hex:" + text + ">"


def install_cheap_frame_repr() -> None:
    """Replace DataFrame's repr body with one that costs O(1) (idempotent)."""
    if getattr(DataFrame, "_body_repr", None) is not _data_frame_body_repr:
        DataFrame._body_repr = _data_frame_body_repr  # type: ignore[method-assign,assignment]


def new_connection(*, client_side: bool) -> TunnelH2Connection:
    """An H2Connection with the tunnel's settings; call `initiate_connection()` on it next."""
    install_cheap_frame_repr()
    # Inbound headers come from the peer and are validated; outbound ones are built by our own
    # code from fixed names, so h2's per-header outbound checks are skipped (they cost ~10 µs
    # per stream).
    config = H2Configuration(client_side=client_side, header_encoding=None,
                             validate_inbound_headers=True, normalize_inbound_headers=True,
                             validate_outbound_headers=False, normalize_outbound_headers=False)
    conn = TunnelH2Connection(config=config)
    conn.incoming_buffer = ChunkedFrameBuffer(server=not client_side)
    return conn


def start(conn: H2Connection) -> None:
    """Send the preface and our SETTINGS, and open the connection-level window.

    The settings go through `update_settings` so that h2 applies them (frame size, stream
    windows) when the peer acknowledges them, as RFC 9113 §6.5.3 requires.
    """
    conn.initiate_connection()
    settings: dict[SettingCodes | int, int] = {
        SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
        SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_BYTES,
        SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
        SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_BYTES,
    }
    if conn.config.client_side:
        settings[SettingCodes.ENABLE_PUSH] = 0
    conn.update_settings(settings)
    conn.increment_flow_control_window(CONNECTION_WINDOW_BYTES - H2_DEFAULT_WINDOW_BYTES)
