"""A throwaway ClamAV clamd on 127.0.0.1 and a unix socket, with a signature database of our own,
for the clamd client's integration tests (and by hand).

It owns a temporary folder (clamd.conf, db/, the log, the socket), a free TCP port, and two body
signatures (.ndb): `Sekimori.Test.EICAR`, on the EICAR test file's body, so it is also found
inside a zip, and `Sekimori.Test.Custom`, on `CUSTOM_MARKER`. There is no official database
offline (freshclam needs the internet): clamd reports our names with `.UNOFFICIAL` appended, and
starts in about 0.2 s. `StreamMaxLength` is small (2 MiB unless told), so the size limit is cheap
to reach. clamd runs in the foreground as the caller (no `User` line) and is stopped by its own
PID. Needs the Debian package `clamav-daemon`; `unavailable()` says why not when it is missing.

    .venv/bin/python -m tests.peers.clamav [DIR]    # start, print the addresses, stop on Ctrl-C
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Built from two halves so that this file is not itself the EICAR test file's text.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Sekimori.Test.EICAR"
CUSTOM_NAME = "Sekimori.Test.Custom"
CUSTOM_MARKER = b"sekimori-custom-signature:" + b"c0ffee-0f-the-test-suite"
DEFAULT_STREAM_MAX_BYTES = 2 * 1024 * 1024
_MAX_SOCKET_PATH = 100               # sun_path is 108 bytes; keep a margin


def unavailable() -> str | None:
    """Why this peer cannot run on this machine, or None."""
    if _clamd() is None:
        return ("ClamAV clamd is not installed (apt-get install clamav-daemon; "
                "scripts/setup.sh does it with SEKIMORI_TEST_PEERS=1)")
    return None


def _clamd() -> str | None:
    found = shutil.which("clamd")
    if found:
        return found
    return "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None


def signature_database() -> str:
    """The .ndb lines: `name:target type (0, any):offset (* anywhere):hex body`."""
    eicar_body = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
    return (f"{EICAR_NAME}:0:*:{eicar_body.hex()}\n"
            f"{CUSTOM_NAME}:0:*:{CUSTOM_MARKER.hex()}\n")


def _config(root: Path, socket_path: Path, port: int, stream_max_bytes: int) -> str:
    return f"""\
Foreground yes
DatabaseDirectory {root}/db
LocalSocket {socket_path}
TCPSocket {port}
TCPAddr 127.0.0.1
PidFile {root}/clamd.pid
LogFile {root}/clamd.log
LogTime yes
StreamMaxLength {stream_max_bytes}
MaxThreads 4
SelfCheck 0
"""


@dataclass
class Clamd:
    root: Path
    pid: int
    port: int
    socket_path: Path
    stream_max_bytes: int
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _socket_dir: Path | None = field(default=None, repr=False)

    @property
    def unix_address(self) -> str:
        return f"unix:{self.socket_path}"

    @property
    def tcp_address(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.root / "clamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM our clamd by its PID, wait, SIGKILL if it hangs."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        else:
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            else:
                _wait_gone(self.pid, 10)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)


def _wait_gone(pid: int, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(socket_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(socket_path))
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
    except OSError:
        return False


def _wait_ready(server: Clamd, proc: subprocess.Popen[bytes], out: Path, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not _ping(server.socket_path):
        if proc.poll() is not None:
            raise RuntimeError(f"clamd exited with {proc.returncode}: "
                               f"{(out.read_text(errors='replace') + server.log())[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"clamd did not answer PING on {server.socket_path} within "
                               f"{timeout_seconds} s")
        time.sleep(0.02)


def start_clamd(root: Path, *, stream_max_bytes: int = DEFAULT_STREAM_MAX_BYTES,
                timeout_seconds: float = 20.0) -> Clamd:
    """Configure and start a clamd in `root` (created if missing) and wait for PONG. Retries with
    a new port if another process took it between choosing and binding."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "db").mkdir(exist_ok=True)
    (root / "db" / "sekimori-test.ndb").write_text(signature_database())
    socket_dir = None
    socket_path = root / "clamd.sock"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:   # pytest's tmp paths can be long
        socket_dir = Path(tempfile.mkdtemp(prefix="skm-clamd-"))
        socket_path = socket_dir / "clamd.sock"
    last_error = ""
    for _attempt in range(3):
        port = _free_port()
        (root / "clamd.conf").write_text(_config(root, socket_path, port, stream_max_bytes))
        out = root / "clamd.out"
        with out.open("wb") as sink:
            proc = subprocess.Popen([_clamd() or "clamd", "-c", str(root / "clamd.conf")],
                                    stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = Clamd(root, proc.pid, port, socket_path, stream_max_bytes, proc)
        try:
            _wait_ready(server, proc, out, timeout_seconds)
        except RuntimeError as exc:
            last_error = str(exc)
            server.stop()
            continue
        server._socket_dir = socket_dir
        return server
    if socket_dir is not None:
        shutil.rmtree(socket_dir, ignore_errors=True)
    raise RuntimeError(f"clamd did not start: {last_error}")


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="sekimori-clamd-"))
    why = unavailable()
    if why:
        print(why, file=sys.stderr)
        return 1
    server = start_clamd(root)
    print(f"CLAMD_DIR={root} CLAMD_PID={server.pid} CLAMD_UNIX={server.unix_address} "
          f"CLAMD_TCP={server.tcp_address} STREAM_MAX_BYTES={server.stream_max_bytes}")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
