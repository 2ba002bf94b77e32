"""A broker with a posture profile for the test tenant, agents whose facts come from a file the
test edits (the agent's `posture_facts_file`: we cannot switch this machine's firewall off and
on), and a way to send hand-made reports over a device's own tunnel."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.runtime.app import load_config
from agent.runtime.tunnel_client import BrokerReply, TunnelClient
from broker.demo import AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import NO_LOGIN, make_broker

TENANT = "test-city"
UPDATES_HOST = "updates.city.test"
INTERVAL_SECONDS = 2
MAX_AGE_SECONDS = 6


def posture_toml(origins: LocalOrigins) -> str:
    return f"""{NO_LOGIN}
[posture]
report_interval_seconds = {INTERVAL_SECONDS}
quarantine_allow = ["{UPDATES_HOST}:{origins.http_port}"]

[[posture.profile]]
tenant = "{TENANT}"
name = "standard"
min_os_version = {{ windows = "10.0.19045", macos = "14.0", linux = "12" }}
require_disk_encryption = true
require_firewall = true
require_edr = ["ClamAV", "Microsoft Defender"]
max_screen_lock_seconds = 600
max_report_age_seconds = {MAX_AGE_SECONDS}
"""


def posture_broker(root: Path, origins: LocalOrigins) -> BrokerProcess:
    return make_broker(root, origins, identity_toml=posture_toml(origins),
                       static_hosts={UPDATES_HOST: [origins.host]})


GOOD_FACTS: dict[str, Any] = {
    "os_family": "linux", "os_name": "Debian GNU/Linux 12 (bookworm)", "os_version": "12.7",
    "last_security_update": None, "disk_encrypted": True, "encryption_method": "LUKS",
    "firewall_on": True, "screen_lock": True, "screen_lock_timeout_seconds": 300,
    "edr_running": ["ClamAV"], "domain_joined": False, "domain": "", "hardware_id": "hw-1",
    "errors": []}


def write_facts(agent: AgentProcess, **changes: Any) -> None:
    path = agent.data_dir / "facts.json"
    tmp = path.with_suffix(".new")
    tmp.write_text(json.dumps({**GOOD_FACTS, **changes}))
    tmp.replace(path)


def posture_agent(root: Path, broker: BrokerProcess, name: str, **facts: Any) -> AgentProcess:
    agent = AgentProcess(root)
    agent.enrol(broker, broker.enrolment_code(TENANT), hostname=name)
    write_facts(agent, **facts)
    config = root / "agent.json"
    raw = json.loads(config.read_text())
    raw["posture_facts_file"] = str(root / "facts.json")
    config.write_text(json.dumps(raw))
    agent.start()
    return agent


def wait_reported(agent: AgentProcess, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        posture = (agent.status() or {}).get("posture") or {}
        if posture.get("verdict"):
            return posture
        time.sleep(0.05)
    raise AssertionError(f"no verdict within {timeout} s: {agent.status()}")


def send_reports(data_dir: Path, tokens: list[bytes]) -> list[BrokerReply]:
    """POST each token to /v1/posture over a tunnel made with this agent folder's certificate."""
    config: AgentConfig = load_config(data_dir)

    async def run() -> list[BrokerReply]:
        client = TunnelClient(config)
        client.start()
        try:
            deadline = time.monotonic() + 10
            while client.protocol is None or not client.protocol.usable:
                assert time.monotonic() < deadline, client.status.last_error
                await asyncio.sleep(0.05)
            return [await asyncio.wait_for(client.protocol.request("POST", "/v1/posture", t), 10)
                    for t in tokens]
        finally:
            await client.stop()
    return asyncio.run(run())
