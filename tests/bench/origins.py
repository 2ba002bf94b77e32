"""Origins for the benchmarks, run in their own process (`python -m tests.bench.origins`).

Owns: the demo origins (`broker.demo.LocalOrigins`: keep-alive HTTP and HTTPS with their own
CA) and a bulk origin that answers any GET with one header block and `sendfile()` of a sparse
file, so the kernel moves zero pages and the origin is never the bottleneck of a download.
Running them apart from the measuring process keeps the client's timing loops off this
process's GIL.

Prints one JSON line (ports, CA path) on stdout when ready, then serves until its stdin closes
(the parent exited or closed the pipe) or it is signalled. It must not do anything else: no
measurement lives here.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

from broker.demo import ORIGIN_HOST, LocalOrigins

MAX_HEAD_BYTES = 64 * 1024
MAX_CONNECTIONS = 100_000  # bounds the accept loop; a bench run makes a few dozen downloads
LIFETIME_SECONDS = 3 * 3600  # bounds the process even if nobody stops it
IO_TIMEOUT_SECONDS = 120.0


class BulkOrigin:
    """`GET /anything` → the whole payload; `GET /bytes/N` → its first N bytes."""

    def __init__(self, host: str, payload: Path) -> None:
        self.payload = payload
        self.size_bytes = payload.stat().st_size
        self.sock = socket.create_server((host, 0), backlog=1024)
        self.sock.settimeout(1.0)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self, deadline: float) -> None:
        for _ in range(MAX_CONNECTIONS):
            if time.monotonic() > deadline:
                return
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_head(self, conn: socket.socket) -> bytes | None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
            chunk = conn.recv(8192)
            if not chunk:
                return None
            head += chunk
        return head

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(IO_TIMEOUT_SECONDS)
            try:
                head = self._read_head(conn)
                if head is None:
                    return
                parts = head.split(b"\r\n", 1)[0].split(b" ")
                path = parts[1].decode("ascii", "replace") if len(parts) > 1 else "/"
                count = self.size_bytes
                if path.startswith("/bytes/"):
                    count = min(count, int(path.rsplit("/", 1)[1]))
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n" % count)
                if count:
                    with open(self.payload, "rb") as f:
                        conn.sendfile(f, 0, count)
                conn.shutdown(socket.SHUT_WR)
            except (OSError, ValueError):
                return  # the client went away or sent nonsense: this connection only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--payload", type=Path, required=True)
    args = parser.parse_args()
    origins = LocalOrigins(args.workdir, host=ORIGIN_HOST)
    bulk = BulkOrigin(ORIGIN_HOST, args.payload)
    threading.Thread(target=bulk.serve, args=(time.monotonic() + LIFETIME_SECONDS,),
                     daemon=True).start()
    print(json.dumps({"host": ORIGIN_HOST, "http_port": origins.http_port,
                      "https_port": origins.https_port, "bulk_port": bulk.port,
                      "ca_path": str(origins.ca_path), "payload_bytes": bulk.size_bytes}),
          flush=True)
    sys.stdin.read()  # returns at EOF: the parent closed the pipe or went away
    origins.close()


if __name__ == "__main__":
    main()
