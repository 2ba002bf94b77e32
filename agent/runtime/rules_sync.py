"""The agent's copy of its rules (breakout, split DNS, captive-portal window): asked for on every
tunnel connection and every minute after, verified (agent/rules.py), kept on disk so that
breakout and private names keep working when the broker is out of reach.

Files in the agent's folder: `rules.jws` (the broker's signed document, as received) and
`override.key` (0600: the device's override-code secret, which came with it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from agent.config import AgentConfig
from agent.rules import RulesError, newer, verify_rules
from agent.runtime.trust_store import TrustStore
from agent.runtime.tunnel_client import TunnelClient, TunnelClientProtocol
from ztcore.agent_rules import PATH_RULES, AgentRules, empty_rules
from ztcore.breakout import BreakoutMatcher
from ztcore.runtime.files import write_private

log = logging.getLogger("sekimori.agent.rules")
RULES_FILE = "rules.jws"
OVERRIDE_KEY_FILE = "override.key"
REFRESH_SECONDS = 60.0


@dataclass
class RulesStatus:
    version: str = ""
    source_version: str = "none"
    received_at: float = 0.0
    checked_at: float = 0.0
    last_error: str = ""


@dataclass
class RulesKeeper:
    config: AgentConfig
    client: TunnelClient
    refresh_seconds: float = REFRESH_SECONDS
    on_change: Callable[[AgentRules], None] | None = None
    status: RulesStatus = field(default_factory=RulesStatus)
    trust: TrustStore | None = None       # installs the inspection CA the rules carry

    def __post_init__(self) -> None:
        self.rules = empty_rules(self.config.tenant_id, self.config.device_id)
        self.matcher = BreakoutMatcher(self.rules.breakout)
        self.override_secret: bytes | None = None
        self._updated = asyncio.Event()

    @property
    def rules_path(self) -> Path:
        return self.config.data_dir / RULES_FILE

    def load_cached(self) -> None:
        """The rules kept from the last run, checked again (a tampered copy is ignored)."""
        try:
            token = self.rules_path.read_text()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.status.last_error = f"cannot read {self.rules_path}: {exc}"
            return
        try:
            rules = verify_rules(token, self._ca(), self.config.tenant_id, self.config.device_id,
                                 now=None)
        except (RulesError, OSError, ValueError) as exc:
            self.status.last_error = f"cached rules refused: {exc}"
            log.error("cached rules refused: %s", exc)
            return
        with contextlib.suppress(OSError, ValueError):
            self.override_secret = base64.b64decode(
                (self.config.data_dir / OVERRIDE_KEY_FILE).read_bytes(), validate=True)
        self._install(rules)

    def _ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.config.ca_path.read_bytes())

    def _install(self, rules: AgentRules) -> None:
        self.rules, self.matcher = rules, BreakoutMatcher(rules.breakout)
        self.status.version = rules.version
        self.status.source_version = rules.breakout.source_version
        self.status.received_at = rules.issued_at
        self._updated.set()
        if self.on_change is not None:
            self.on_change(rules)
        trust = self.trust
        if trust is not None and (rules.inspection_ca or trust.status.installed):
            try:   # update-ca-certificates takes a second: not on the event loop
                asyncio.get_running_loop().run_in_executor(None, trust.ensure, rules.inspection_ca,
                                                           rules.tenant_id)
            except RuntimeError:
                trust.ensure(rules.inspection_ca, rules.tenant_id)

    async def run(self) -> None:
        asked_on: TunnelClientProtocol | None = None
        asked_at = 0.0
        while True:
            protocol = self.client.protocol
            if protocol is None or not protocol.usable:
                await asyncio.sleep(0.1)
                continue
            if protocol is asked_on and time.monotonic() - asked_at < self.refresh_seconds:
                await asyncio.sleep(min(1.0, self.refresh_seconds))
                continue
            asked_on, asked_at = protocol, time.monotonic()
            await self.refresh(protocol)

    async def refresh(self, protocol: TunnelClientProtocol) -> bool:
        """Ask the broker; True if new rules were installed."""
        body = json.dumps({"have": self.rules.version if self.rules.issued_at else None}).encode()
        try:
            reply = await asyncio.wait_for(protocol.request("POST", PATH_RULES, body), 30)
        except Exception as exc:  # a timeout or a closed tunnel: the rules in force stay
            self.status.last_error = f"rules request failed: {type(exc).__name__}"
            return False
        self.status.checked_at = time.time()
        if reply.status != 200:
            self.status.last_error = (f"rules refused: {reply.decision.reason.value} "
                                      f"{reply.decision.detail}")
            return False
        try:
            payload = json.loads(reply.body)
            if payload.get("unchanged"):
                self.status.last_error = ""
                return False
            token, secret = payload["rules"], base64.b64decode(payload["override_secret"])
            rules = verify_rules(token, self._ca(), self.config.tenant_id, self.config.device_id,
                                 now=time.time())
        except (ValueError, KeyError, TypeError, AttributeError, RulesError, OSError) as exc:
            self.status.last_error = f"rules refused: {exc}"
            log.error("rules from the broker refused: %s", exc)
            return False
        if not newer(rules, self.rules):
            self.status.last_error = "rules older than those in force were ignored"
            return False
        tmp = self.rules_path.with_suffix(".jws.new")
        write_private(tmp, token.encode())
        os.replace(tmp, self.rules_path)
        write_private(self.config.data_dir / OVERRIDE_KEY_FILE, base64.b64encode(secret))
        self.override_secret = secret
        self.status.last_error = ""
        self._install(rules)
        log.info("rules %s installed (%d breakout rules, Microsoft data %s)", rules.version,
                 len(rules.breakout.rules), rules.breakout.source_version)
        return True

    async def wait_updated(self, timeout_seconds: float) -> bool:
        self._updated.clear()
        try:
            await asyncio.wait_for(self._updated.wait(), timeout_seconds)
        except asyncio.TimeoutError:
            return False
        return True
