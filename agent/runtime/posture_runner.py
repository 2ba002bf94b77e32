"""The real posture Runner: commands as subprocesses, files as text; and `collect_here`.

Commands run without a shell, with a timeout (the whole process group is killed when it
expires), from a fixed list of system directories rather than the user's PATH (a posture check
must not run a `ufw` the user dropped in ~/bin), and with LC_ALL=C on POSIX so tools print the
English the parsers read. Output is UTF-8 (PowerShell is told to use it; a BOM is dropped) or,
on Windows, the console's OEM code page (manage-bde, netsh and powercfg in Japanese: cp932).
Results of the slow, rarely changing sources (collect.RARELY_CHANGING) are kept for a while:
the posture loop collects every few seconds.
"""

from __future__ import annotations

import codecs
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final

from agent.posture import RARELY_CHANGING, CommandResult, collect
from ztcore.posture import PostureFacts

POSIX_PATH: Final = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")
CACHE_SECONDS: Final = 600.0
MAX_OUTPUT_BYTES: Final = 16 * 1024 * 1024
_KILL_GRACE_SECONDS: Final = 5.0


class SubprocessRunner:
    """collect.Runner over subprocess and open(); never raises from run() or read()."""

    def __init__(self, env: Mapping[str, str], search_path: Sequence[str], *,
                 windows: bool = False, cacheable: Collection[tuple[str, ...]] = RARELY_CHANGING,
                 cache_seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.env = dict(env)
        self.search_path = os.pathsep.join(search_path)
        self.env["PATH"] = self.search_path
        if not windows:
            self.env.update(LC_ALL="C", LANG="C")
        self.windows = windows
        self.cacheable = frozenset(cacheable)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, CommandResult]] = {}
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()
        self._stopping = False

    def stop(self) -> None:
        """The agent is stopping: kill the commands still running and start no more, so that
        the collection thread ends at once instead of holding the agent's exit for seconds."""
        with self._lock:
            self._stopping = True
            live = list(self._live)
        for proc in live:   # the signal only: the thread running it reaps it
            try:
                if self.windows:
                    proc.kill()
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def run(self, argv: Sequence[str], timeout_seconds: float) -> CommandResult:
        key = tuple(argv)
        if key in self.cacheable:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] > self.clock():
                return hit[1]
        result = self._run(key, timeout_seconds)
        if key in self.cacheable:
            with self._lock:
                self._cache[key] = (self.clock() + self.cache_seconds, result)
        return result

    def _run(self, argv: tuple[str, ...], timeout_seconds: float) -> CommandResult:
        if not argv:
            return CommandResult(None, error="empty command")
        program = self._resolve(argv[0])
        if program is None:
            return CommandResult(None, error="not found")
        extra: dict[str, object] = {}
        if self.windows:
            extra["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            extra["start_new_session"] = True   # so a timeout can kill its children too
        with self._lock:
            if self._stopping:
                return CommandResult(None, error="the agent is stopping")
            try:
                proc = subprocess.Popen([program, *argv[1:]], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                        **extra)  # type: ignore[call-overload]
            except PermissionError:
                return CommandResult(None, error="permission denied")
            except OSError as exc:
                return CommandResult(None, error=f"cannot start: {exc.strerror or exc}")
            self._live.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            return CommandResult(None, error=f"timed out after {timeout_seconds:g} s")
        finally:
            with self._lock:
                self._live.discard(proc)
        if self._stopping:
            return CommandResult(None, error="the agent is stopping")
        return CommandResult(proc.returncode, self._decode(out), self._decode(err))

    def _resolve(self, name: str) -> str | None:
        if os.path.isabs(name):
            return name if os.access(name, os.X_OK) else None
        return shutil.which(name, path=self.search_path)

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            if self.windows:
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.communicate(timeout=_KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # a grandchild holds the pipes: leave them
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    def _decode(self, data: bytes) -> str:
        data = data[:MAX_OUTPUT_BYTES]
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("oem" if self.windows else "utf-8", errors="replace")

    def read(self, path: str) -> str | None:
        """The file's text (its last MAX_OUTPUT_BYTES when longer: logs grow at the end)."""
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size > MAX_OUTPUT_BYTES:
                    file.seek(size - MAX_OUTPUT_BYTES)
                data = file.read(MAX_OUTPUT_BYTES)
        except (OSError, ValueError):
            return None
        return self._decode(data)


def os_family(platform: str) -> str:
    """The PostureFacts os_family of a sys.platform value."""
    if platform == "win32":
        return "windows"
    if platform == "darwin":
        return "macos"
    if platform.startswith("linux"):
        return "linux"
    return "unknown"


def system_runner(platform: str = sys.platform,
                  environ: Mapping[str, str] = os.environ) -> SubprocessRunner:
    """A runner for this machine: its system directories, the agent's environment otherwise
    (a desktop session's DISPLAY and D-Bus address reach gsettings)."""
    if platform == "win32":
        root = environ.get("SystemRoot") or environ.get("SYSTEMROOT") or r"C:\Windows"
        path = [os.path.join(root, "System32"),
                os.path.join(root, "System32", "WindowsPowerShell", "v1.0"), root]
        return SubprocessRunner(environ, path, windows=True)
    return SubprocessRunner(environ, POSIX_PATH)


_runner: SubprocessRunner | None = None
_runner_lock = threading.Lock()


def collect_here(agent_version: str, now: float) -> PostureFacts:
    """The posture facts of the machine this agent runs on (blocking: a few seconds on a cold
    cache; call it from a thread)."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = system_runner()
        runner = _runner
    return collect(os_family(sys.platform), runner, now, agent_version)


def stop_collection() -> None:
    """Kill the commands of a collection under way (the agent is stopping)."""
    with _runner_lock:
        runner = _runner
    if runner is not None:
        runner.stop()
