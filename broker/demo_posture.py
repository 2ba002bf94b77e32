"""The demo's device posture: デモ市's posture profile and two simulated laptops.

The demo runs every "laptop" on this one machine, so their posture facts come from files
(agent.json `posture_facts_file`): yamada-taro's is a managed Windows 11 PC that meets the
profile; suzuki-hanako's has its firewall off and no anti-malware running. Everything after
collection is real: signed reports, the broker's verdict, refusals with the failed checks.
"""

from __future__ import annotations

import json
import time
from typing import Any

from broker.demo import AgentProcess

COMPLIANT_LAPTOP: dict[str, Any] = {
    "os_family": "windows", "os_name": "Windows 11 Pro", "os_version": "10.0.22631.4460",
    "last_security_update": None, "disk_encrypted": True, "encryption_method": "BitLocker",
    "firewall_on": True, "screen_lock": True, "screen_lock_timeout_seconds": 300,
    "edr_running": ["Microsoft Defender"], "domain_joined": True,
    "domain": "demo-city.example.lg.jp", "hardware_id": "4C4C4544-0042-3510-8056-B4C04F4E3332",
    "errors": []}
NONCOMPLIANT_LAPTOP: dict[str, Any] = {
    **COMPLIANT_LAPTOP, "firewall_on": False, "edr_running": [],
    "hardware_id": "4C4C4544-0037-4B10-8032-C2C04F4E3332"}


def posture_toml(tenant: str) -> str:
    return f"""
[posture]
report_interval_seconds = 30
quarantine_allow = []

[[posture.profile]]
tenant = "{tenant}"
name = "standard"
min_os_version = {{ windows = "10.0.19045", macos = "14.0", linux = "12" }}
require_disk_encryption = true
require_firewall = true
require_edr = ["Microsoft Defender", "CrowdStrike Falcon", "Trend Micro Apex One"]
max_screen_lock_seconds = 600
max_report_age_seconds = 90
"""


def simulate_facts(agent: AgentProcess, facts: dict[str, Any]) -> None:
    """Point an enrolled (not yet started) agent at a facts file."""
    path = agent.data_dir / "facts.json"
    path.write_text(json.dumps({**facts, "last_security_update": time.time() - 7 * 86400}))
    config = agent.data_dir / "agent.json"
    raw = json.loads(config.read_text())
    raw["posture_facts_file"] = str(path)
    config.write_text(json.dumps(raw, indent=2))


def failed_checks(agent: AgentProcess, timeout: float = 10.0) -> list[dict[str, str]] | None:
    """The agent's latest verdict's failed checks (None until it has one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        verdict = ((agent.status() or {}).get("posture") or {}).get("verdict")
        if verdict:
            return list(verdict.get("failed", []))
        time.sleep(0.05)
    return None
