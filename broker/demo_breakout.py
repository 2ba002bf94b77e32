"""The demo's Microsoft 365 breakout: a document in the format of Microsoft's endpoint web service
(three sets, standing in for Microsoft's own data, which the product imports at run time and does
not ship), imported with `sekimori m365 import`; the laptop reaches the Optimize host
directly, the broker carries no stream for it, and the audit log still records the breakout.

Offline, `outlook.office365.com` is played by the demo origin: the agent's `static_hosts`
(a labs-and-tests setting) sends it there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.demo import AgentProcess, Check, LocalOrigins

M365_HOST = "outlook.office365.com"
DEFAULT_HOST = "www.microsoft.com"


def endpoint_document(http_port: int, https_port: int) -> list[dict[str, Any]]:
    ports = f"80,443,{http_port},{https_port}"
    return [
        {"id": 1, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online",
         "urls": [M365_HOST, "outlook.office.com"], "ips": ["52.96.0.0/14"], "tcpPorts": ports,
         "expressRoute": True, "category": "Optimize", "required": True},
        {"id": 31, "serviceArea": "SharePoint",
         "serviceAreaDisplayName": "SharePoint Online and OneDrive for Business",
         "urls": ["*.sharepoint.com"], "tcpPorts": ports, "expressRoute": True,
         "category": "Optimize", "required": True},
        {"id": 125, "serviceArea": "Common", "serviceAreaDisplayName": "Microsoft 365 Common",
         "urls": [DEFAULT_HOST], "tcpPorts": ports, "expressRoute": False,
         "category": "Default", "required": False},
    ]


def import_endpoints(data_dir: Path, origins: LocalOrigins) -> str:
    """`sekimori m365 import` of the demo document; returns the command's first line."""
    path = data_dir / "demo-m365-endpoints.json"
    path.write_text(json.dumps(endpoint_document(origins.http_port, origins.https_port)))
    out = subprocess.run([sys.executable, "-P", "-m", "broker", "m365", "import", "--file",
                          str(path), "--version", "2026112300", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"m365 import failed: {out.stdout}{out.stderr}")
    return " ".join(out.stdout.splitlines()[0].split()) if out.stdout else ""


def point_agent(agent: AgentProcess, origin_host: str) -> None:
    """Send the Microsoft host to the demo origin (an enrolled, not yet started agent)."""
    config = agent.data_dir / "agent.json"
    raw = json.loads(config.read_text())
    raw["static_hosts"] = {M365_HOST: origin_host}
    config.write_text(json.dumps(raw, indent=2))


def check_breakout(agent: AgentProcess, origins: LocalOrigins, audit_path: Path,
                   checks: list[Check]) -> None:
    """One request to the Optimize host: direct, and recorded by the broker all the same."""
    from broker.demo import DEMO_BODY, Check, fetch
    url = f"http://{M365_HOST}:{origins.http_port}/"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:   # the rules arrive on the agent's first connection
        rules = ((agent.status() or {}).get("routing") or {}).get("rules") or {}
        if rules.get("breakout_rules"):
            break
        time.sleep(0.1)
    status, _, body = fetch(agent.proxy_port, url)
    recorded = ""
    while time.monotonic() < deadline and not recorded:
        for line in audit_path.read_text().splitlines() if audit_path.exists() else []:
            event = json.loads(line)
            if event["kind"] == "breakout" and event.get("destination", "").startswith(M365_HOST):
                recorded = event.get("extra", {}).get("rule", "")
        time.sleep(0.1)
    tunnelled = any(M365_HOST in (json.loads(line).get("destination") or "")
                    and json.loads(line)["kind"] == "stream"
                    for line in audit_path.read_text().splitlines())
    ok = status == 200 and body == DEMO_BODY and recorded == "m365:1:optimize" and not tunnelled
    checks.append(Check("Microsoft 365 Optimize: direct (breakout)", url, "200 direct, audited",
                        f"{status} {'direct' if not tunnelled else 'tunnel'}",
                        "breakout-direct" if recorded else "", ok))
