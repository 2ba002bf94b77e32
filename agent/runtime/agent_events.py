"""What the agent sent without the tunnel (breakouts, captive-portal and override use), logged on
the laptop and reported to the broker, so the SOC sees it in the audit log too.

Each event is appended to `events.jsonl` in the agent's folder (the local log, rotated at
10 MB) and to `events-pending.jsonl`, the queue of events the broker has not yet acknowledged.
A sender posts the queue in batches over the tunnel whenever it is up; the broker answers only
once the events are on its disk, and only then are they dropped from the queue. A broker that
is away for days loses nothing but the oldest events past `MAX_PENDING` (counted, and said).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.config import AgentConfig
from agent.runtime.tunnel_client import TunnelClient
from ztcore.agent_rules import MAX_EVENTS_PER_REPORT, PATH_EVENTS

log = logging.getLogger("sekimori.agent.events")
LOCAL_LOG = "events.jsonl"
PENDING = "events-pending.jsonl"
MAX_LOCAL_LOG_BYTES = 10 * 1024 * 1024
MAX_PENDING = 50_000
SEND_EVERY_SECONDS = 1.0


@dataclass
class AgentEventLog:
    config: AgentConfig
    client: TunnelClient
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    reported: int = 0
    dropped: int = 0
    last_error: str = ""

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        path = self.config.data_dir / PENDING
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    item = json.loads(line)
                    if isinstance(item, dict):
                        self.pending.append(item)

    def record(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        local = self.config.data_dir / LOCAL_LOG
        try:
            if local.exists() and local.stat().st_size > MAX_LOCAL_LOG_BYTES:
                os.replace(local, local.with_suffix(".jsonl.1"))
            with open(local, "a", encoding="utf-8") as f:
                f.write(line)
            with open(self.config.data_dir / PENDING, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            self.last_error = f"cannot write the event log: {exc}"
        self.pending.append(event)
        while len(self.pending) > MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SEND_EVERY_SECONDS)
            self._wake.clear()
            protocol = self.client.protocol
            if not self.pending or protocol is None or not protocol.usable:
                continue
            batch = [self.pending[i] for i in range(min(MAX_EVENTS_PER_REPORT, len(self.pending)))]
            body = json.dumps({"events": batch}, ensure_ascii=False).encode("utf-8")
            try:
                reply = await asyncio.wait_for(protocol.request("POST", PATH_EVENTS, body), 30)
            except Exception as exc:
                self.last_error = f"events not reported: {type(exc).__name__}"
                continue
            if reply.status == 400:
                # The broker says the batch is invalid: it would be refused forever. Keep it in
                # the local log only, and say so.
                log.error("the broker refused %d events: %s", len(batch), reply.decision.detail)
                self.last_error = f"events refused: {reply.decision.detail}"
            elif reply.status != 200:
                self.last_error = f"events not recorded by the broker ({reply.status})"
                continue
            else:
                self.reported += len(batch)
                self.last_error = ""
            for _ in batch:
                self.pending.popleft()
            self._rewrite_pending()
            if self.pending:
                self._wake.set()

    def _rewrite_pending(self) -> None:
        path = self.config.data_dir / PENDING
        tmp = path.with_suffix(".jsonl.new")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for item in self.pending:
                    f.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            self.last_error = f"cannot rewrite the event queue: {exc}"

    def status(self) -> dict[str, Any]:
        return {"pending": len(self.pending), "reported": self.reported, "dropped": self.dropped,
                "last_error": self.last_error}
