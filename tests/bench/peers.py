"""Processes the tunnel benchmark compares against or reads from: the origins process, Squid,
mitmdump, and CPU time from /proc.

Owns starting each peer on loopback with its own files in a work directory and stopping it by
its PID. It must not measure anything itself (tests/bench/tunnel.py does).
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from broker.demo import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROXY_ENV_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
                   "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def clean_env() -> dict[str, str]:
    """The environment without proxy variables: every client here names its proxy itself."""
    return {k: v for k, v in os.environ.items() if k not in PROXY_ENV_NAMES}


# -- CPU time ----------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on; comm may hold spaces


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    for _ in range(10_000):  # a process tree here is a handful of processes
        if not todo:
            break
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its living descendants, in seconds."""
    total = 0
    for p in _descendants(pid):
        fields = _stat_fields(p)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # stat fields 14 and 15
    return total / CLOCK_TICKS


# -- readiness and stopping --------------------------------------------------------------------

def wait_port(host: str, port: int, timeout_seconds: float, what: str,
              proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{what}: port {port} not listening after {timeout_seconds} s")


# -- the origins process -----------------------------------------------------------------------

class OriginsProcess:
    def __init__(self, workdir: Path, payload: Path) -> None:
        self.log = open(workdir / "origins.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.origins", "--workdir", str(workdir / "origins"),
             "--payload", str(payload)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.info = self._read_info(timeout_seconds=30)

    def _read_info(self, timeout_seconds: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_seconds)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"origins did not start (see {self.log.name})")
        info: dict[str, Any] = json.loads(line)
        return info

    def stop(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, 10)
        self.log.close()


# -- Squid -------------------------------------------------------------------------------------

SQUID_CONF = """\
# Written by tests/bench/tunnel.py: a plain forwarding proxy, no cache, CONNECT to any port.
http_port 127.0.0.1:{port}
visible_hostname sekimori-bench
pid_filename {dir}/squid.pid
cache_log {dir}/cache.log
access_log stdio:{dir}/access.log
cache_store_log none
coredump_dir {dir}
netdb_filename none
logfile_rotate 0
cache deny all
cache_mem 8 MB
pinger_enable off
shutdown_lifetime 0 seconds
http_access allow all
{user}
"""


class SquidProcess:
    def __init__(self, workdir: Path) -> None:
        # Its own directory, not inside `workdir` (mode 0700): Squid drops root privileges
        # and must reach this one.
        self.dir = Path(tempfile.mkdtemp(prefix="sekimori-bench-squid-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        user = ""
        if os.geteuid() == 0:
            # Squid will not run as root: it switches to cache_effective_user, which must be
            # able to write the logs and pid file in our directory.
            name = "proxy"
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                name, pw = "nobody", pwd.getpwnam("nobody")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            user = f"cache_effective_user {name}"
        conf = self.dir / "squid.conf"
        conf.write_text(SQUID_CONF.format(port=self.port, dir=self.dir, user=user))
        self.log = open(workdir / "squid.out", "ab")
        self.proc = subprocess.Popen(["squid", "-N", "-f", str(conf)], stdout=self.log,
                                     stderr=self.log, env=clean_env())
        wait_port("127.0.0.1", self.port, 20, "squid", self.proc)

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- mitmdump ------------------------------------------------------------------------------------

def find_mitmdump() -> str | None:
    candidates = [os.environ.get("MITMDUMP"), shutil.which("mitmdump"), "/tmp/mitm-venv/bin/mitmdump"]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


class MitmdumpProcess:
    def __init__(self, workdir: Path, exe: str) -> None:
        confdir = workdir / "mitmproxy"
        confdir.mkdir()
        self.port = free_port()
        self.log = open(workdir / "mitmdump.log", "ab")
        self.proc = subprocess.Popen(
            [exe, "--mode", "regular", "--ignore-hosts", ".*", "--listen-host", "127.0.0.1",
             "--listen-port", str(self.port), "--set", f"confdir={confdir}", "-q"],
            stdout=self.log, stderr=self.log, env=clean_env())
        wait_port("127.0.0.1", self.port, 60, "mitmdump", self.proc)

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.log.close()
