"""Durable JSON-lines audit sink with group commit.

`await sink.write(event)` returns only after the line is written and fdatasync'ed: an event that
was acknowledged survives a crash. A writer thread batches every event queued while the previous
sync ran, plus those arriving within `commit_delay_seconds` after the first of a batch, so a busy
broker pays one sync per batch, not per stream (each costs ~0.3 ms of kernel time here), and
the event loop never blocks on the disk. Nothing in the data path waits for the acknowledgement;
it only delays when a stream counts as closed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from pathlib import Path

from ztcore.audit import AuditEvent


class AuditSink:
    def __init__(self, path: Path, commit_delay_seconds: float = 0.005) -> None:
        self.path = path
        self.commit_delay_seconds = commit_delay_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._queue: deque[tuple[bytes, asyncio.Future[None], asyncio.AbstractEventLoop]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        self.written = 0

    def write(self, event: AuditEvent) -> asyncio.Future[None]:
        """Queue an event; the returned future completes once it is on disk."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        line = (event.to_json() + "\n").encode("utf-8")
        with self._cond:
            if self._closed:
                future.set_exception(RuntimeError("audit sink is closed"))
                return future
            self._queue.append((line, future, loop))
            if len(self._queue) == 1:  # later ones join the batch the writer is gathering
                self._cond.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                if not self._closed and self.commit_delay_seconds > 0:
                    self._cond.wait(self.commit_delay_seconds)  # let a batch form
                batch = list(self._queue)
                self._queue.clear()
            error: BaseException | None = None
            try:
                data = b"".join(line for line, _, _ in batch)
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                os.fdatasync(self._fd)
                self.written += len(batch)
            except OSError as exc:
                error = exc
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, future, loop in batch:
                by_loop.setdefault(loop, []).append(future)
            for loop, futures in by_loop.items():  # one wake-up per loop, not per event
                loop.call_soon_threadsafe(_settle_all, futures, error)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)
        os.close(self._fd)


def _settle_all(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
