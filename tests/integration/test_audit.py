"""Audit durability: an event the broker has acknowledged survives a crash (SIGKILL)."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from broker.demo import LocalOrigins
from tests.integration.conftest import make_agent, make_broker, require_curl


def metric(api_url: str, ca: Path, name: str) -> float:
    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"{api_url}/metrics", context=ctx, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text[:500]
    return float(match.group(1))


def test_acknowledged_events_survive_sigkill(origins: LocalOrigins, tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "broker", origins)
    agent = make_agent(tmp_path / "agent", broker)
    try:
        urls = [f"http://{origins.host}:{origins.http_port}/n{i}" for i in range(20)]
        urls.append("http://10.0.0.1/denied")
        for url in urls:
            subprocess.run([require_curl(), "-sS", "-x", agent.proxy, "-o", "/dev/null", url],
                           capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while metric(broker.api_url, broker.config.ca_cert_path, "sekimori_streams_open") > 0:
            assert time.monotonic() < deadline, "streams never reported closed"
            time.sleep(0.05)
        written = metric(broker.api_url, broker.config.ca_cert_path, "sekimori_audit_events_written")
        assert written >= len(urls) + 1  # the streams and the enrolment
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGKILL)   # no shutdown, no flush: a crash
        broker.proc.wait(timeout=10)
        events = [json.loads(line) for line in broker.config.audit_path.read_text().splitlines()]
        seen = {e["destination"] for e in events if e["kind"] == "stream"}
        assert {f"{origins.host}:{origins.http_port}", "10.0.0.1:80"} <= seen
        allowed = [e for e in events if e["kind"] == "stream" and e["decision"] == "allow"]
        assert len(allowed) == 20
        assert all(e["bytes_down"] > 0 for e in allowed)
    finally:
        agent.stop()
        broker.close()
