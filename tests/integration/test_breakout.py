"""Microsoft 365 local breakout end to end (issue 6): real broker and agent processes, real curl.

A Microsoft-format endpoint document is imported with `sekimori m365 import`; the agent gets the
compiled rules (signed) over the tunnel. curl through the agent reaches an Optimize host
directly — the broker sees no stream for it, yet its audit log records the breakout, reported
by the agent — and a Default host through the broker. With the broker stopped, breakout keeps
working, tunnelled traffic gets 503 broker-unreachable, the captive-portal window opens for web
ports only, and the events queued meanwhile reach the audit log once the broker is back. An
admin override code lifts enforcement for its device, once.

The names are Microsoft's; the agent's `static_hosts` and the broker's `[destinations.hosts]`
send them to the local origin (127.0.0.2), since these machines have no internet.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.demo import DEMO_BODY, AgentProcess, BrokerProcess, LocalOrigins, free_port
from broker.demo_breakout import DEFAULT_HOST, endpoint_document
from tests.integration.conftest import make_broker, require_curl

OPTIMIZE_HOST = "outlook.office365.com"   # in the demo document's Optimize set 1
SHAREPOINT_HOST = "city.sharepoint.com"   # below set 31's *.sharepoint.com


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", *args], capture_output=True, text=True,
                          timeout=60)


def curl(agent: AgentProcess, url: str) -> tuple[int, str, str]:
    out = subprocess.run([require_curl(), "-sS", "-k", "--max-time", "10", "-x", agent.proxy,
                          "-D", "-", url], capture_output=True, text=True, timeout=30)
    status = re.findall(r"^HTTP/\S+ (\d{3})", out.stdout, re.M)
    reason = re.search(r"^sekimori-reason: (\S+)", out.stdout, re.M | re.I)
    return (int(status[-1]) if status else 0, out.stdout, reason.group(1) if reason else "")


def audit(broker: BrokerProcess) -> list[dict[str, Any]]:
    path = broker.config.audit_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins
          ) -> Iterator[tuple[BrokerProcess, AgentProcess, LocalOrigins]]:
    root = tmp_path_factory.mktemp("breakout")
    broker = make_broker(root / "broker", origins, tunnel_port=free_port(),
                         static_hosts={DEFAULT_HOST: [origins.host]})
    doc = root / "endpoints.json"
    doc.write_text(json.dumps(endpoint_document(origins.http_port, origins.https_port)))
    out = cli("broker", "m365", "import", "--file", str(doc), "--version", "2026112300",
              "--data-dir", str(broker.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    agent = AgentProcess(root / "agent")
    agent.enrol(broker, broker.enrolment_code("test-city"), hostname="breakout-laptop")
    config_path = agent.data_dir / "agent.json"
    config = json.loads(config_path.read_text())
    config["static_hosts"] = {OPTIMIZE_HOST: origins.host, SHAREPOINT_HOST: origins.host,
                              DEFAULT_HOST: origins.host}
    config["dns_port"] = free_port()
    config["rules_refresh_seconds"] = 0.5
    config_path.write_text(json.dumps(config))
    try:
        agent.start()
        wait_for(lambda: ((agent.status() or {}).get("routing") or {}).get("rules", {})
                 .get("breakout_rules") == 5, 15, "the agent's breakout rules")
        yield broker, agent, origins
    finally:
        agent.stop()
        broker.close()


def test_optimize_host_goes_direct_and_is_audited(setup: tuple[BrokerProcess, AgentProcess,
                                                                LocalOrigins]) -> None:
    broker, agent, origins = setup
    status, out, _ = curl(agent, f"http://{OPTIMIZE_HOST}:{origins.http_port}/hello")
    assert status == 200 and DEMO_BODY.decode() in out
    status, out, _ = curl(agent, f"https://{SHAREPOINT_HOST}:{origins.https_port}/")
    assert status == 200 and DEMO_BODY.decode() in out
    device = json.loads((agent.data_dir / "agent.json").read_text())["device_id"]

    def breakouts() -> list[dict[str, Any]]:
        return [e for e in audit(broker) if e["kind"] == "breakout"]
    events = wait_for(lambda: len(breakouts()) >= 2 and breakouts(), 10, "breakout events")
    first = next(e for e in events if e["destination"] == f"{OPTIMIZE_HOST}:{origins.http_port}")
    assert first["device"] == device and first["tenant"] == "test-city"
    assert first["reason"] == "breakout-direct" and first["extra"]["rule"] == "m365:1:optimize"
    assert first["bytes_down"] > len(DEMO_BODY) and first["extra"]["reported_by"] == "agent"
    assert "ローカルブレイクアウト" in first["message_ja"]
    # The broker carried no stream for either host.
    streams = [e for e in audit(broker) if e["kind"] == "stream"]
    assert not [e for e in streams if OPTIMIZE_HOST in (e.get("destination") or "")
                or SHAREPOINT_HOST in (e.get("destination") or "")]
    # The agent's own log has them too.
    local = (agent.data_dir / "events.jsonl").read_text()
    assert OPTIMIZE_HOST in local and SHAREPOINT_HOST in local


def test_default_host_goes_through_the_broker(setup: tuple[BrokerProcess, AgentProcess,
                                                           LocalOrigins]) -> None:
    broker, agent, origins = setup
    status, out, _ = curl(agent, f"http://{DEFAULT_HOST}:{origins.http_port}/")
    assert status == 200 and DEMO_BODY.decode() in out
    wait_for(lambda: [e for e in audit(broker) if e["kind"] == "stream"
                      and e.get("destination") == f"{DEFAULT_HOST}:{origins.http_port}"], 10,
             "the broker's stream event for the Default host")
    assert not [e for e in audit(broker) if e["kind"] == "breakout"
                and DEFAULT_HOST in e["destination"]]


def test_pac_and_status_show_the_rules(setup: tuple[BrokerProcess, AgentProcess, LocalOrigins]) -> None:
    _, agent, _ = setup
    pac = subprocess.run([require_curl(), "-sS", "--noproxy", "*",
                          f"{agent.proxy}/proxy.pac"], capture_output=True, text=True).stdout
    assert OPTIMIZE_HOST in pac and "*.sharepoint.com" in pac and "DIRECT" in pac
    out = cli("agent", "status", "--data-dir", str(agent.data_dir))
    assert "breakout" in out.stdout and "5 rules" in out.stdout


def test_a_web_page_cannot_drive_the_local_controls(
        setup: tuple[BrokerProcess, AgentProcess, LocalOrigins]) -> None:
    """A cross-site form POST (no custom header possible without a CORS preflight) is refused."""
    _, agent, _ = setup
    out = subprocess.run([require_curl(), "-sS", "--noproxy", "*", "-o", "/dev/null", "-w",
                          "%{http_code}", "-X", "POST", "-H", "Origin: https://evil.example",
                          f"{agent.proxy}/__sekimori/captive-portal"], capture_output=True, text=True)
    assert out.stdout == "403"


CHROMIUM = Path("/usr/bin/chromium")


def test_chromium_follows_the_pac(setup: tuple[BrokerProcess, AgentProcess, LocalOrigins]) -> None:
    """A real browser with the agent's PAC file: the Optimize host is fetched DIRECT (the
    agent never sees it), the Default host through the agent and the broker."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed ({CHROMIUM}; apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; the browser is Debian's)")
    broker, agent, origins = setup

    def agent_saw() -> int:
        return int((agent.status() or {})["routing"]["direct"]["total"])
    direct_before = agent_saw()
    streams_before = len([e for e in audit(broker) if e["kind"] == "stream"
                          and e.get("destination") == f"{DEFAULT_HOST}:{origins.http_port}"])
    flags = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-quic", "--disable-background-networking", "--disable-component-update",
             f"--proxy-pac-url={agent.proxy}/proxy.pac",
             f"--host-resolver-rules=MAP {OPTIMIZE_HOST} {origins.host}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        try:
            page = browser.new_page()
            page.goto(f"http://{OPTIMIZE_HOST}:{origins.http_port}/by-pac", timeout=20_000)
            assert DEMO_BODY.decode() in page.content()
            page.goto(f"http://{DEFAULT_HOST}:{origins.http_port}/by-pac", timeout=20_000)
            assert DEMO_BODY.decode() in page.content()
        finally:
            browser.close()
    assert agent_saw() == direct_before          # DIRECT by the PAC: not even through the agent
    wait_for(lambda: len([e for e in audit(broker) if e["kind"] == "stream"
                          and e.get("destination") == f"{DEFAULT_HOST}:{origins.http_port}"])
             > streams_before, 10, "the Default host through the broker")


def test_broker_down_breakout_works_tunnel_fails_closed(
        setup: tuple[BrokerProcess, AgentProcess, LocalOrigins]) -> None:
    broker, agent, origins = setup
    broker.stop()
    wait_for(lambda: (agent.status() or {}).get("state") == "disconnected", 10, "disconnect")
    status, out, _ = curl(agent, f"http://{OPTIMIZE_HOST}:{origins.http_port}/while-down")
    assert status == 200 and DEMO_BODY.decode() in out
    status, _, reason = curl(agent, f"http://{DEFAULT_HOST}:{origins.http_port}/")
    assert (status, reason) == (503, "broker-unreachable")
    # The captive-portal window opens while the broker is away, for web ports only: the
    # origin's port is neither 80 nor 443, so the Default host still fails closed.
    out = cli("agent", "captive-portal", "--data-dir", str(agent.data_dir))
    assert out.returncode == 0, out.stdout
    status, _, reason = curl(agent, f"http://{DEFAULT_HOST}:{origins.http_port}/")
    assert (status, reason) == (503, "broker-unreachable")
    assert (agent.status() or {})["routing"]["bypass"]["window_until"] is not None
    assert (agent.status() or {})["routing"]["events"]["pending"] >= 1
    broker.start()
    wait_for(lambda: (agent.status() or {}).get("state") == "connected", 30, "reconnect")
    # The window closes once the broker is back; the queued events reach the audit log.
    wait_for(lambda: (agent.status() or {})["routing"]["bypass"]["window_until"] is None, 5,
             "the window to close")
    wait_for(lambda: [e for e in audit(broker) if e["kind"] == "breakout"
                      and e["destination"].startswith(OPTIMIZE_HOST)
                      and e["extra"].get("rule") == "m365:1:optimize"
                      and e["time"] < time.time()] and
             [e for e in audit(broker) if e["kind"] == "captive-window-opened"], 15,
             "the events queued while the broker was away")
    assert (agent.status() or {})["routing"]["events"]["pending"] == 0


def test_override_code_lifts_enforcement_once(setup: tuple[BrokerProcess, AgentProcess,
                                                           LocalOrigins]) -> None:
    broker, agent, origins = setup
    device = json.loads((agent.data_dir / "agent.json").read_text())["device_id"]
    out = cli("broker", "device", "override", device, "--minutes", "30", "--reason",
              "support case 42", "--data-dir", str(broker.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    code = re.search(r"override code for \S+: (\S+)", out.stdout)
    assert code is not None
    wrong = cli("agent", "override", "0000-0000-0000-0000-0000", "--data-dir", str(agent.data_dir))
    assert wrong.returncode == 1 and "override-code-invalid" in wrong.stdout
    applied = cli("agent", "override", code.group(1), "--data-dir", str(agent.data_dir))
    assert applied.returncode == 0, applied.stdout
    again = cli("agent", "override", code.group(1), "--data-dir", str(agent.data_dir))
    assert again.returncode == 1 and "override-code-reused" in again.stdout
    before = len([e for e in audit(broker) if e["kind"] == "stream"])
    status, out, _ = curl(agent, f"http://{DEFAULT_HOST}:{origins.http_port}/overridden")
    assert status == 200
    wait_for(lambda: [e for e in audit(broker) if e["kind"] == "override"
                      and e["destination"] == f"{DEFAULT_HOST}:{origins.http_port}"], 10,
             "the override event")
    assert len([e for e in audit(broker) if e["kind"] == "stream"]) == before
    issued = broker.store.admin_audit("test-city")
    assert any(r.action == "device.override" and "support case 42" in (r.after or "")
               for r in issued)
    cleared = cli("agent", "override", "--clear", "--data-dir", str(agent.data_dir))
    assert cleared.returncode == 0
    status, _, _ = curl(agent, f"http://{DEFAULT_HOST}:{origins.http_port}/after")
    assert status == 200
    wait_for(lambda: len([e for e in audit(broker) if e["kind"] == "stream"]) > before, 10,
             "the tunnel to carry the Default host again")


def test_bad_routing_document_changes_nothing(setup: tuple[BrokerProcess, AgentProcess,
                                                           LocalOrigins], tmp_path: Path) -> None:
    broker, _, _ = setup
    bad = tmp_path / "routing.yaml"
    bad.write_text("breakout:\n  categories: [optimise]\n")
    out = cli("broker", "routing", "import", str(bad), "--tenant", "test-city", "--data-dir",
              str(broker.data_dir))
    assert out.returncode == 2 and "breakout.categories[0]" in out.stdout
    assert broker.store.get_routing("test-city") is None


def test_routing_change_reaches_the_agent_and_its_dns(
        setup: tuple[BrokerProcess, AgentProcess, LocalOrigins], tmp_path: Path) -> None:
    """An admin's new routing document (split DNS) reaches the running agent, whose DNS stub
    then answers the private name and keeps other names of the zone from leaking."""
    from dnslib import QTYPE, RCODE, DNSRecord
    broker, agent, _ = setup
    doc = tmp_path / "routing.yaml"
    doc.write_text("dns:\n  zones: [city.test]\n  records:\n"
                   "    - {name: intranet.city.test, addresses: [10.20.30.40]}\n")
    out = cli("broker", "routing", "import", str(doc), "--tenant", "test-city", "--data-dir",
              str(broker.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: (agent.status() or {})["routing"]["rules"]["private_zones"] == ["city.test"],
             10, "the new rules on the agent")
    port = json.loads((agent.data_dir / "agent.json").read_text())["dns_port"]
    reply = DNSRecord.parse(DNSRecord.question("intranet.city.test").send("127.0.0.1", port,
                                                                           timeout=5))
    assert [str(r.rdata) for r in reply.rr if r.rtype == QTYPE.A] == ["10.20.30.40"]
    missing = DNSRecord.parse(DNSRecord.question("payroll.city.test").send("127.0.0.1", port,
                                                                            timeout=5))
    assert missing.header.rcode == RCODE.NXDOMAIN
    status = cli("agent", "status", "--data-dir", str(agent.data_dir)).stdout
    assert "split DNS" in status and "answered" in status


def test_microsofts_real_data_reaches_the_agent(
        setup: tuple[BrokerProcess, AgentProcess, LocalOrigins]) -> None:
    """The rules compiled from Microsoft's full 2024 file (tens of kilobytes, signed) travel
    over the tunnel and replace the agent's rules; its PAC then lists them."""
    real = Path(__file__).resolve().parents[3] / "shared" / "data" / "m365-endpoints" / \
        "worldwide_circa2021-2022_full_nebula.json"
    if not real.exists():
        pytest.skip(f"Microsoft 365 endpoint data not present at {real} (../shared/data)")
    broker, agent, _ = setup
    out = cli("broker", "m365", "import", "--file", str(real), "--data-dir", str(broker.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "removed" in out.stdout      # the diff against the demo document
    rules = wait_for(lambda: (agent.status() or {})["routing"]["rules"]["breakout_rules"] > 500
                     and (agent.status() or {})["routing"]["rules"], 15, "the real rules")
    assert rules["last_error"] == ""
    pac = subprocess.run([require_curl(), "-sS", "--noproxy", "*", f"{agent.proxy}/proxy.pac"],
                         capture_output=True, text=True).stdout
    assert '"*.sharepoint.com"' in pac and '"outlook.office365.com"' in pac
