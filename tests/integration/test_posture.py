"""Device posture through the tunnel (issue 4): signed reports, the gate on new streams, open
streams cut within 2 s when the posture flips or an admin quarantines, repair destinations kept,
refused reports, and the audit trail."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from agent.posture_report import sign_report
from broker.demo import AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import require_curl
from tests.integration.login_harness import audit_events, fetch, wait_for
from tests.integration.posture_harness import (
    GOOD_FACTS,
    TENANT,
    UPDATES_HOST,
    posture_agent,
    posture_broker,
    send_reports,
    wait_reported,
    write_facts,
)
from ztcore.posture import facts_from_json


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins) -> Iterator[BrokerProcess]:
    b = posture_broker(tmp_path_factory.mktemp("broker"), origins)
    yield b
    b.close()


@pytest.fixture
def agent(tmp_path: Path, broker: BrokerProcess) -> Iterator[AgentProcess]:
    a = posture_agent(tmp_path / "agent", broker, f"pc-{tmp_path.name[-10:]}")
    yield a
    a.stop()


def target(origins: LocalOrigins) -> str:
    return f"http://{origins.host}:{origins.http_port}/"


def device_id(agent: AgentProcess) -> str:
    return str(json.loads((agent.data_dir / "agent.json").read_text())["device_id"])


def test_a_compliant_device_works_and_status_shows_its_facts(agent: AgentProcess,
                                                             origins: LocalOrigins) -> None:
    posture = wait_reported(agent)
    assert posture["verdict"]["compliant"] is True and posture["facts"]["firewall_on"] is True
    assert fetch(agent, target(origins))[0] == 200
    out = subprocess.run([sys.executable, "-P", "-m", "agent", "status", "--data-dir",
                          str(agent.data_dir)], capture_output=True, text=True, timeout=30)
    assert "compliant" in out.stdout and "LUKS" in out.stdout


def test_firewall_off_is_refused_with_the_check_named_and_what_to_do(
        agent: AgentProcess, broker: BrokerProcess, origins: LocalOrigins) -> None:
    wait_reported(agent)
    write_facts(agent, firewall_on=False)
    wait_for(lambda: not (((agent.status() or {}).get("posture") or {}).get("verdict") or {})
             .get("compliant", True), 5, "the non-compliant verdict")
    status, body = fetch(agent, target(origins))
    assert status == 403 and "device-noncompliant" in body and "firewall" in body
    verdict = (agent.status() or {})["posture"]["verdict"]
    assert [f["check"] for f in verdict["failed"]] == ["firewall"]
    assert verdict["failed"][0]["fix_ja"] and verdict["failed"][0]["fix_en"]
    out = subprocess.run([sys.executable, "-P", "-m", "agent", "status", "--data-dir",
                          str(agent.data_dir)], capture_output=True, text=True, timeout=30)
    assert "firewall" in out.stdout and "not compliant" in out.stdout
    from broker.cli import posture_summary  # the device list's posture column
    record = broker.store.device_postures(TENANT)[device_id(agent)]
    assert not record.compliant and "not compliant[/red]: firewall" in posture_summary(record)
    # the repair destination stays reachable
    assert fetch(agent, f"http://{UPDATES_HOST}:{origins.http_port}/")[0] == 200
    write_facts(agent)   # fixed
    wait_for(lambda: fetch(agent, target(origins))[0] == 200, 5, "the device to be let back in")
    events = audit_events(broker)
    assert any(e["kind"] == "posture-report" and e["reason"] == "device-noncompliant"
               and e["device"] == device_id(agent) for e in events)
    assert any(e["kind"] == "stream" and e["reason"] == "device-noncompliant" for e in events)


def _download(agent: AgentProcess, origins: LocalOrigins) -> subprocess.Popen[bytes]:
    """A download that would take about 100 s: 2 GB at 20 MB/s."""
    return subprocess.Popen([require_curl(), "-sS", "-x", agent.proxy, "--limit-rate", "20M",
                             "-o", "/dev/null", f"http://{origins.host}:{origins.http_port}/bytes/"
                             f"{2000 * 1024 * 1024}"], stderr=subprocess.PIPE)


def _cut_within(download: subprocess.Popen[bytes], seconds: float) -> float:
    started = time.monotonic()
    try:
        download.wait(timeout=seconds + 3)
    except subprocess.TimeoutExpired:
        download.kill()
        pytest.fail("the download was not cut")
    elapsed = time.monotonic() - started
    assert download.returncode != 0
    return elapsed


def test_flipping_posture_cuts_a_long_download_within_two_seconds(
        agent: AgentProcess, origins: LocalOrigins) -> None:
    wait_reported(agent)
    download = _download(agent, origins)
    time.sleep(1.0)
    assert download.poll() is None
    write_facts(agent, disk_encrypted=False)
    elapsed = _cut_within(download, 2.0)
    assert elapsed <= 2.0, f"cut after {elapsed:.2f} s"


def test_quarantine_cuts_within_two_seconds_keeps_the_repair_path_and_release_restores(
        agent: AgentProcess, broker: BrokerProcess, origins: LocalOrigins) -> None:
    wait_reported(agent)
    download = _download(agent, origins)
    time.sleep(1.0)
    out = subprocess.run([sys.executable, "-P", "-m", "broker", "device", "quarantine",
                          device_id(agent), "--reason", "EDR alert: Emotet", "--data-dir",
                          str(broker.data_dir)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    elapsed = _cut_within(download, 2.0)    # from the moment the command returned
    assert elapsed <= 2.0, f"cut after {elapsed:.2f} s"
    status, body = fetch(agent, target(origins))
    assert status == 403 and "device-quarantined" in body and "Emotet" in body
    assert fetch(agent, f"http://{UPDATES_HOST}:{origins.http_port}/")[0] == 200
    subprocess.run([sys.executable, "-P", "-m", "broker", "device", "release", device_id(agent),
                    "--data-dir", str(broker.data_dir)], check=True, capture_output=True, timeout=30)
    wait_for(lambda: fetch(agent, target(origins))[0] == 200, 5, "the release")
    def kinds() -> set[str]:
        return {str(e["kind"]) for e in audit_events(broker) if e.get("device") == device_id(agent)}
    wait_for(lambda: {"device-quarantined", "device-released"} <= kinds(), 5,
             "the quarantine and release audit events")


def test_the_admin_api_quarantines_with_a_token_and_is_audited(
        agent: AgentProcess, broker: BrokerProcess, origins: LocalOrigins) -> None:
    wait_reported(agent)
    made = subprocess.run([sys.executable, "-P", "-m", "broker", "admin-token", "create",
                           f"soc-{device_id(agent)[:8]}", "--data-dir", str(broker.data_dir)],
                          capture_output=True, text=True, timeout=30)
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("skm_"), made.stdout
    api = httpx.Client(base_url=broker.api_url,
                       verify=ssl.create_default_context(cafile=str(broker.config.ca_cert_path)),
                       trust_env=False, timeout=10)
    url = f"/v1/admin/devices/{device_id(agent)}/quarantine"
    assert api.post(url, json={"reason": "x"}).status_code == 401
    refused = api.post(url, json={"reason": "x"}, headers={"authorization": "Bearer skm_wrong"})
    assert refused.status_code == 401 and refused.json()["reason"] == "admin-unauthorized"
    auth = {"authorization": f"Bearer {token}"}
    assert api.post(url, json={"reason": ""}, headers=auth).status_code == 422
    done = api.post(url, json={"reason": "SOC: C2 beacon"}, headers=auth)
    assert done.status_code == 200 and done.json()["changed"] is True
    wait_for(lambda: "device-quarantined" in fetch(agent, target(origins))[1], 5, "the quarantine")
    listed = api.get("/v1/admin/devices", params={"tenant": TENANT}, headers=auth).json()
    mine = next(d for d in listed["devices"] if d["id"] == device_id(agent))
    assert mine["quarantined"] and mine["posture"]["compliant"] is True
    assert api.delete(url, headers=auth).json()["changed"] is True
    wait_for(lambda: fetch(agent, target(origins))[0] == 200, 5, "the release")
    assert any(e["kind"] == "admin-change" and e.get("user", "").startswith("admin:soc-")
               and "device.quarantine" in e.get("detail", "") for e in audit_events(broker))
    trail = broker.store.admin_audit(TENANT)
    assert [r.action for r in trail[:2]] == ["device.release", "device.quarantine"]
    assert json.loads(trail[1].after or "{}") == {"quarantined": True, "reason": "SOC: C2 beacon"}


def test_replayed_tampered_old_and_other_device_reports_are_refused(
        agent: AgentProcess, broker: BrokerProcess) -> None:
    wait_reported(agent)
    agent.stop()   # the test speaks for this device now
    key = load_pem_private_key((agent.data_dir / "device.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    facts = facts_from_json({**GOOD_FACTS, "collected_at": time.time(), "agent_version": "test"})
    dev = device_id(agent)
    seq = int(time.time() * 1000) + 10_000
    good = sign_report(key, dev, TENANT, seq, time.time(), facts)
    head, payload, sig = good.split(b".")
    flipped = b"AAAA" if payload[-4:] != b"AAAA" else b"BBBB"
    tampered = head + b"." + payload[:-4] + flipped + b"." + sig
    old = sign_report(key, dev, TENANT, seq + 1, time.time() - 3600, facts)
    other = sign_report(ec.generate_private_key(ec.SECP256R1()), dev, TENANT, seq + 2, time.time(),
                        facts)
    replies = send_reports(agent.data_dir, [good, good, tampered, old, other])
    reasons = [r.status if r.status == 200 else r.decision.reason.value for r in replies]
    assert reasons == [200, "posture-report-replayed", "posture-report-invalid",
                       "posture-report-too-old", "posture-report-invalid"], reasons
    def audited() -> set[str]:
        return {str(e["reason"]) for e in audit_events(broker)
                if e["kind"] == "posture-report" and e["device"] == dev}
    wait_for(lambda: {"posture-report-replayed", "posture-report-invalid",
                      "posture-report-too-old"} <= audited(), 5, "the refused reports' audit events")
