"""The clamd client (swg/runtime/clamd.py) against a real ClamAV clamd (tests/peers/clamav.py) on a
unix socket and on 127.0.0.1, with a signature database of our own: EICAR, our custom signature,
a clean body, EICAR inside a zip, a body over StreamMaxLength, and a clamd that is stopped, not
there, or never answers. One clamd serves the module; one more is started to be stopped.

Skipped, with the reason, only when clamd is not installed.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import clamav as peer

if (_why := peer.unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)

from swg.clamd_reply import ClamdConfig, ClamdVerdict
from swg.runtime.clamd import ClamdClient, ClamdUnavailableError
from ztcore.reasons import Reason

TRANSPORTS = ["unix", "tcp"]


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peer.Clamd]:
    server = peer.start_clamd(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


def address(server: peer.Clamd, transport: str) -> str:
    return server.unix_address if transport == "unix" else server.tcp_address


def scan(address: str, data: bytes, **config: object) -> ClamdVerdict:
    return asyncio.run(ClamdClient(ClamdConfig(address, **config)).scan(data))  # type: ignore[arg-type]


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])   # closed again on return: connections are refused


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ping_and_version(clamd: peer.Clamd, transport: str) -> None:
    client = ClamdClient(ClamdConfig(address(clamd, transport)))
    assert asyncio.run(client.ping())
    version = asyncio.run(client.version())
    assert version.engine.startswith("ClamAV 1.")
    assert version.database_version is None     # only our unofficial database is loaded


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("body,signature", [
    (peer.EICAR, peer.EICAR_NAME),
    (peer.EICAR + b"\r\n", peer.EICAR_NAME),
    (b"x" * 5000 + b"some text " + peer.CUSTOM_MARKER + b" more text", peer.CUSTOM_NAME),
    (zipped("docs/readme.txt", peer.EICAR), peer.EICAR_NAME),
    (zipped("outer.zip", zipped("inner/eicar.com", peer.EICAR)), peer.EICAR_NAME),
    (zipped("notes.txt", b"hello " + peer.CUSTOM_MARKER), peer.CUSTOM_NAME),
], ids=["eicar", "eicar-crlf", "custom", "eicar-in-zip", "eicar-in-zip-in-zip", "custom-in-zip"])
def test_found(clamd: peer.Clamd, transport: str, body: bytes, signature: str) -> None:
    verdict = scan(address(clamd, transport), body)
    assert verdict.outcome == "infected", verdict
    assert verdict.signature is not None and verdict.signature.startswith(signature)
    assert "EICAR" in verdict.signature if signature == peer.EICAR_NAME else True
    assert verdict.reasons == (Reason.MALWARE_DETECTED.value,)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("body", [b"", b"Hello, Sekimori\n", bytes(range(256)) * 4000,
                                  zipped("clean.txt", b"nothing to see" * 100),
                                  peer.EICAR[:40]],
                         ids=["empty", "text", "binary-1MB", "clean-zip", "half-eicar"])
def test_clean(clamd: peer.Clamd, transport: str, body: bytes) -> None:
    assert scan(address(clamd, transport), body) == ClamdVerdict.clean()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_signature_across_chunks(clamd: peer.Clamd, transport: str) -> None:
    # 7-byte chunks: the signature never sits in one chunk; clamd scans the stream, not chunks
    verdict = scan(address(clamd, transport), b"y" * 1000 + peer.EICAR, chunk_bytes=7)
    assert verdict.outcome == "infected"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("chunk_bytes", [1 << 20, 64 * 1024])
def test_over_stream_max_length(clamd: peer.Clamd, transport: str, chunk_bytes: int) -> None:
    body = b"\0" * (clamd.stream_max_bytes + 1024 * 1024)
    verdict = scan(address(clamd, transport), body, chunk_bytes=chunk_bytes)
    assert verdict.outcome == "unscannable"
    assert verdict.reason is Reason.CONTENT_UNSCANNABLE, verdict
    assert "StreamMaxLength" in verdict.detail


def test_just_under_stream_max_length(clamd: peer.Clamd) -> None:
    body = b"\0" * (clamd.stream_max_bytes - 100) + peer.EICAR
    assert scan(clamd.tcp_address, body).outcome == "infected"


def test_known_limit_is_refused_without_asking(clamd: peer.Clamd) -> None:
    # nothing listens there: a round trip would say "unavailable"
    verdict = scan(f"tcp:127.0.0.1:{closed_port()}", b"x" * 101, max_stream_bytes=100)
    assert verdict.reason is Reason.CONTENT_UNSCANNABLE
    assert "larger than clamd's StreamMaxLength (100 bytes)" in verdict.detail


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_many_scans_at_once(clamd: peer.Clamd, transport: str) -> None:
    client = ClamdClient(ClamdConfig(address(clamd, transport)))

    async def run() -> list[ClamdVerdict]:
        return await asyncio.gather(*[client.scan(peer.EICAR if i % 2 else b"ok %d" % i)
                                      for i in range(24)])

    outcomes = [v.outcome for v in asyncio.run(run())]
    assert outcomes == ["clean", "infected"] * 12


def test_stopped_clamd_is_unavailable(tmp_path: Path) -> None:
    server = peer.start_clamd(tmp_path / "stopped")
    addresses = [server.unix_address, server.tcp_address]
    try:
        assert [scan(a, peer.EICAR).outcome for a in addresses] == ["infected", "infected"]
    finally:
        server.stop()
    for where in addresses:
        verdict = scan(where, peer.EICAR)
        assert (verdict.outcome, verdict.reason) == ("unscannable", Reason.MALWARE_SCANNER_UNAVAILABLE)
        assert f"cannot connect to clamd at {where}" in verdict.detail
        client = ClamdClient(ClamdConfig(where))
        assert asyncio.run(client.ping()) is False
        with pytest.raises(ClamdUnavailableError, match="cannot connect"):
            asyncio.run(client.version())


@pytest.mark.parametrize("where", ["unix:/nonexistent/clamd.ctl", "tcp:127.0.0.1:{port}",
                                   "tcp:no-such-host.invalid:3310", "tcp:a..b:3310"])
def test_unreachable_is_unavailable(where: str) -> None:
    verdict = scan(where.format(port=closed_port()), b"data", connect_timeout_seconds=5)
    assert (verdict.outcome, verdict.reason) == ("unscannable", Reason.MALWARE_SCANNER_UNAVAILABLE)
    assert verdict.detail.startswith("cannot connect to clamd at ")


class SilentPeer:
    """Accepts, reads a command to its end, and answers `reply` (None: never): a clamd gone wrong."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply, self.listener = reply, socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conns = []
        self.listener.settimeout(0.1)
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            conns.append(conn)
            conn.settimeout(0.2)
            try:
                received = b""
                while not received.endswith((b"\0\0\0\0", b"zPING\0")):   # INSTREAM's end, or PING
                    data = conn.recv(65536)
                    if not data:
                        break
                    received += data
                if self.reply is not None:
                    conn.sendall(self.reply)
                    conn.close()
            except OSError:
                pass
        for conn in conns:
            conn.close()
        self.listener.close()

    def __enter__(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.done.set()


def test_no_reply_times_out() -> None:
    with SilentPeer(None) as where:
        verdict = scan(where, b"data", scan_timeout_seconds=0.3)
    assert verdict.reason is Reason.MALWARE_SCANNER_UNAVAILABLE
    assert "within 0.3 s" in verdict.detail


@pytest.mark.parametrize("reply,reason,detail", [
    (b"", Reason.MALWARE_SCANNER_UNAVAILABLE, "without a reply"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", Reason.MALWARE_SCANNER_UNAVAILABLE, "not one INSTREAM gives"),
    (b"x" * 10_000, Reason.MALWARE_SCANNER_UNAVAILABLE, "longer than 4096 bytes"),
])
def test_a_peer_that_is_not_clamd(reply: bytes, reason: Reason, detail: str) -> None:
    with SilentPeer(reply) as where:
        verdict = scan(where, b"data", scan_timeout_seconds=5)
        assert asyncio.run(ClamdClient(ClamdConfig(where)).ping()) is False
    assert verdict.reason is reason and detail in verdict.detail, verdict
