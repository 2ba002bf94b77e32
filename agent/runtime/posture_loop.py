"""The agent's posture reporter: collect the machine's facts, sign them, send them to the broker.

A report goes at once on every new tunnel connection, whenever the facts change (checked every
few seconds), and otherwise at the interval the broker asks for; the broker's verdict (compliant,
or the failed checks with what to do) is kept for `sekimori-agent status`.

`posture_facts_file` in agent.json replaces collection with a JSON file of facts, re-read when it
changes. It is for labs and tests: a boundary we cannot drive on a CI machine (turning its
firewall or disk encryption off and on); everything after collection (signing, sending, the
broker's checks, cutting streams) is the real path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from agent.config import AgentConfig
from agent.posture_report import same_facts, sign_report
from agent.runtime.tunnel_client import TunnelClient, TunnelClientProtocol
from ztcore.errors import ConfigError
from ztcore.posture import PostureError, PostureFacts, facts_from_json
from ztcore.runtime.files import write_private

log = logging.getLogger("sekimori.agent.posture")
DEFAULT_INTERVAL_SECONDS = 60.0
COLLECT_EVERY_SECONDS = 10.0
FILE_CHECK_EVERY_SECONDS = 0.25
SEQ_FILE = "posture.seq"


def agent_version() -> str:
    try:
        return metadata.version("sekimori")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass
class PostureStatus:
    facts: PostureFacts | None = None
    verdict: dict[str, Any] | None = None
    sent_at: float = 0.0
    last_error: str = ""
    reports_sent: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {"facts": self.facts.to_json_dict() if self.facts else None,
                "verdict": self.verdict, "sent_at": self.sent_at,
                "last_error": self.last_error, "reports_sent": self.reports_sent}


@dataclass
class PostureReporter:
    config: AgentConfig
    client: TunnelClient
    collect: Callable[[float], PostureFacts]
    status: PostureStatus = field(default_factory=PostureStatus)
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS

    async def run(self) -> None:
        sent_on: TunnelClientProtocol | None = None
        sent_at = 0.0
        checked_at = 0.0
        file_stamp: tuple[int, int] | None = None
        period = FILE_CHECK_EVERY_SECONDS if self.config.posture_facts_file else COLLECT_EVERY_SECONDS
        while True:
            protocol = self.client.protocol
            if protocol is None or not protocol.usable:
                await asyncio.sleep(0.1)
                continue
            now = time.monotonic()
            stamp = _stamp(self.config.posture_facts_file)
            due = (protocol is not sent_on or now - sent_at >= self.interval_seconds
                   or now - checked_at >= period or stamp != file_stamp)
            if not due:
                await asyncio.sleep(min(FILE_CHECK_EVERY_SECONDS, period))
                continue
            checked_at, file_stamp = now, stamp
            started = time.monotonic()
            try:
                facts = await asyncio.to_thread(self.collect, time.time())
            except Exception as exc:  # a collector bug must not stop the reporting
                log.exception("posture collection failed")
                self.status.last_error = f"collection failed: {exc}"
                await asyncio.sleep(period)
                continue
            if not self.config.posture_facts_file:
                # Real collection runs commands (apt, PowerShell): keep it under ~10 % of a core.
                period = max(COLLECT_EVERY_SECONDS, 10 * (time.monotonic() - started))
            changed = not same_facts(self.status.facts, facts)
            if protocol is not sent_on or changed or now - sent_at >= self.interval_seconds:
                if await self.send(protocol, facts):
                    sent_on, sent_at = protocol, time.monotonic()

    async def send(self, protocol: TunnelClientProtocol, facts: PostureFacts) -> bool:
        try:
            key = _load_key(self.config)
        except (OSError, ValueError) as exc:
            self.status.last_error = f"cannot read the device key: {exc}"
            return False
        token = sign_report(key, self.config.device_id, self.config.tenant_id, self._next_seq(),
                            time.time(), facts)
        try:
            reply = await asyncio.wait_for(protocol.request("POST", "/v1/posture", token), 30)
        except (asyncio.TimeoutError, Exception) as exc:
            self.status.last_error = f"report not answered: {type(exc).__name__}"
            return False
        self.status.facts = facts
        if reply.status != 200:
            d = reply.decision
            self.status.last_error = f"{d.reason.value}: {d.message_en} {d.detail}".strip()
            log.warning("posture report refused: %s", self.status.last_error)
            return False
        try:
            answer = json.loads(reply.body)
            self.status.verdict = answer["verdict"]
            self.interval_seconds = max(5.0, float(answer.get("report_interval_seconds",
                                                              DEFAULT_INTERVAL_SECONDS)))
        except (ValueError, KeyError, TypeError) as exc:
            self.status.last_error = f"unreadable verdict: {exc}"
            return False
        self.status.sent_at, self.status.last_error = time.time(), ""
        self.status.reports_sent += 1
        return True

    def _next_seq(self) -> int:
        """Strictly increasing across restarts (persisted) and clock steps (max with the last)."""
        path = self.config.data_dir / SEQ_FILE
        try:
            last = int(path.read_text().strip())
        except (OSError, ValueError):
            last = 0
        seq = max(last + 1, int(time.time() * 1000))
        write_private(path, str(seq).encode())
        return seq


def _stamp(path: os.PathLike[str] | str | None) -> tuple[int, int] | None:
    if not path:
        return None
    with contextlib.suppress(OSError):
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    return None


def _load_key(config: AgentConfig) -> EllipticCurvePrivateKey:
    key = load_pem_private_key(config.key_path.read_bytes(), password=None)
    if not isinstance(key, EllipticCurvePrivateKey):
        raise ValueError("the device key is not an EC key")
    return key


def facts_file_collector(path: os.PathLike[str] | str) -> Callable[[float], PostureFacts]:
    """Facts from a JSON file (see the module docstring), stamped with the collection time."""
    def collect(now: float) -> PostureFacts:
        try:
            raw = json.loads(open(path, encoding="utf-8").read())
            if not isinstance(raw, dict):
                raise PostureError("the facts file must hold a JSON object")
            return facts_from_json({**raw, "collected_at": now, "agent_version": agent_version()})
        except (OSError, ValueError, PostureError, ConfigError, TypeError) as exc:
            return PostureFacts("unknown", "", "", None, None, "", None, None, None, (), None, "",
                                agent_version(), "", now, (f"facts file {path}: {exc}",))
    return collect
