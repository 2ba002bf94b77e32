"""The admin API for routing (issue 6): Microsoft's endpoint data imported by a prefecture
operator only, a municipality's routing document validated with the path of its error while the
routing in force stays, "does this host break out and why", and override codes within scope."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from broker.demo import BrokerProcess, LocalOrigins
from tests.integration.conftest import make_broker

DOC = [{"id": 1, "serviceArea": "Exchange", "urls": ["outlook.office365.com"],
        "ips": ["52.96.0.0/14"], "tcpPorts": "80,443", "category": "Optimize", "required": True,
        "expressRoute": True},
       {"id": 125, "serviceArea": "Common", "urls": ["*.microsoft.com"], "tcpPorts": "80,443",
        "category": "Default", "required": False, "expressRoute": False}]


def run(broker: BrokerProcess, *args: str) -> str:
    out = subprocess.run([sys.executable, "-P", "-m", "broker", *args, "--data-dir",
                          str(broker.data_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def token(broker: BrokerProcess, name: str, *scope: str) -> dict[str, str]:
    out = run(broker, "admin-token", "create", name, *scope)
    return {"authorization": "Bearer " + re.findall(r"skm_\S+", out)[-1]}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins) -> Iterator[BrokerProcess]:
    b = make_broker(tmp_path_factory.mktemp("broker"), origins)
    run(b, "tenant", "add", "pref", "--name", "県")
    run(b, "tenant", "add", "city", "--name", "市", "--parent", "pref", "--model", "beta")
    run(b, "tenant", "add", "far", "--name", "遠い市", "--model", "alpha")
    yield b
    b.close()


def api(broker: BrokerProcess) -> httpx.Client:
    return httpx.Client(base_url=broker.api_url, trust_env=False, timeout=15,
                        verify=ssl.create_default_context(cafile=str(broker.config.ca_cert_path)))


def test_import_is_for_prefecture_operators(broker: BrokerProcess) -> None:
    operator = token(broker, "operator")
    city_admin = token(broker, "city-admin", "--role", "municipal-admin", "--tenant", "city")
    with api(broker) as c:
        refused = c.post("/v1/admin/m365/import", content=json.dumps(DOC), headers=city_admin)
        assert refused.status_code == 403 and refused.json()["reason"] == "admin-unauthorized"
        bad = c.post("/v1/admin/m365/import", content=b'[{"id": 1, "serviceArea": "Exchange", '
                     b'"category": "Fast"}]', headers=operator)
        assert bad.status_code == 422 and "[0].category" in bad.json()["detail"]
        ok = c.post("/v1/admin/m365/import?version=2026112300", content=json.dumps(DOC),
                    headers=operator)
        assert ok.status_code == 200 and ok.json()["changed"] and ok.json()["sets"] == 2
        again = c.post("/v1/admin/m365/import", content=json.dumps(DOC), headers=operator)
        assert again.json()["changed"] is False
        versions = c.get("/v1/admin/m365/versions", headers=city_admin).json()["versions"]
        assert [v["version"] for v in versions] == ["2026112300"]


def test_routing_document_and_breakout_check(broker: BrokerProcess) -> None:
    operator = token(broker, "operator2")
    city_admin = token(broker, "city-admin2", "--role", "municipal-admin", "--tenant", "city")
    with api(broker) as c:
        c.post("/v1/admin/m365/import", content=json.dumps(DOC), headers=operator)
        bad = c.put("/v1/admin/tenants/city/routing", content="breakout: {categories: [fast]}",
                    headers=city_admin)
        assert bad.status_code == 422 and "breakout.categories[0]" in bad.json()["detail"]
        before = c.get("/v1/admin/tenants/city/routing", headers=city_admin).json()
        assert before["origin"] == "defaults" and before["document"] is None
        check = c.get("/v1/admin/tenants/city/breakout",
                      params={"host": "outlook.office365.com"}, headers=city_admin).json()
        assert check["route"] == "direct" and check["rule"]["label"] == "m365:1:optimize"
        pref = c.put("/v1/admin/tenants/pref/routing",
                     content="breakout: {exclude: [outlook.office365.com]}", headers=operator)
        assert pref.status_code == 200, pref.text
        inherited = c.get("/v1/admin/tenants/city/routing", headers=city_admin).json()
        assert inherited["origin"] == "inherited from pref"
        check = c.get("/v1/admin/tenants/city/breakout",
                      params={"host": "outlook.office365.com"}, headers=city_admin).json()
        assert check["route"] == "tunnel" and check["rule"]["source"] == "exclude"
        check = c.get("/v1/admin/tenants/city/breakout", params={"host": "www.microsoft.com"},
                      headers=city_admin).json()
        assert check["route"] == "tunnel" and check["rule"]["category"] == "default"
        outside = c.get("/v1/admin/tenants/far/routing", headers=city_admin)
        assert outside.status_code == 403
    assert any(r.action == "routing.put" for r in broker.store.admin_audit("pref"))


def test_override_codes_respect_scope(broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory
                                      ) -> None:
    from broker.demo import AgentProcess
    agent = AgentProcess(tmp_path_factory.mktemp("agent"))
    agent.enrol(broker, broker.enrolment_code("city"), hostname="support-laptop")
    device = json.loads((agent.data_dir / "agent.json").read_text())["device_id"]
    city_admin = token(broker, "city-admin3", "--role", "municipal-admin", "--tenant", "city")
    far_admin = token(broker, "far-admin", "--role", "municipal-admin", "--tenant", "far")
    with api(broker) as c:
        body = {"minutes": 30, "reason": "support case 7"}
        assert c.post(f"/v1/admin/devices/{device}/override", json=body,
                      headers=far_admin).status_code == 403
        too_long = c.post(f"/v1/admin/devices/{device}/override",
                          json={"minutes": 600, "reason": "x"}, headers=city_admin)
        assert too_long.status_code == 422 and "override_max_minutes" in too_long.json()["detail"]
        ok = c.post(f"/v1/admin/devices/{device}/override", json=body, headers=city_admin)
        assert ok.status_code == 200 and re.fullmatch(r"([0-9A-Z]{4}-){4}[0-9A-Z]{4}", ok.json()["code"])
    assert any(r.action == "device.override" and ok.json()["code"] not in (r.after or "")
               for r in broker.store.admin_audit("city"))


def test_unblock_requests_are_listed_and_decided_within_scope(broker: BrokerProcess) -> None:
    """The admin API side of the block page's unblock form (the gateway stores the requests)."""
    import time
    first = broker.store.add_unblock_request(
        tenant_id="city", device_id="d-1", username="yamada", host="news.example.jp",
        url="https://news.example.jp/", reason_code="url-category-blocked", request_id="abc",
        justification="広報のため", now=time.time())
    second = broker.store.add_unblock_request(
        tenant_id="city", device_id="d-1", username="yamada", host="game.example.jp",
        url="https://game.example.jp/", reason_code="url-category-blocked", request_id="def",
        justification="", now=time.time())
    city_admin = token(broker, "city-admin4", "--role", "municipal-admin", "--tenant", "city")
    far_admin = token(broker, "far-admin2", "--role", "municipal-admin", "--tenant", "far")
    with api(broker) as c:
        listed = c.get("/v1/admin/tenants/city/unblock-requests", headers=city_admin).json()
        assert [r["host"] for r in listed["requests"]] == ["news.example.jp", "game.example.jp"]
        assert c.get("/v1/admin/tenants/city/unblock-requests", headers=far_admin).status_code == 403
        assert c.post(f"/v1/admin/unblock-requests/{first}/approve", json={"minutes": 60},
                      headers=far_admin).status_code == 403
        bad = c.post(f"/v1/admin/unblock-requests/{first}/approve", json={"minutes": 0}, headers=city_admin)
        assert bad.status_code == 422
        ok = c.post(f"/v1/admin/unblock-requests/{first}/approve", json={"minutes": 60, "note": "ok"},
                    headers=city_admin)
        assert ok.status_code == 200 and ok.json()["status"] == "approved"
        assert ok.json()["expires_at"] == pytest.approx(ok.json()["decided_at"] + 3600)
        again = c.post(f"/v1/admin/unblock-requests/{first}/deny", headers=city_admin)
        assert again.status_code == 409 and "already approved" in again.json()["detail"]
        denied = c.post(f"/v1/admin/unblock-requests/{second}/deny", json={"note": "業務外"}, headers=city_admin)
        assert denied.json()["status"] == "denied"
        assert c.post("/v1/admin/unblock-requests/99999/approve", headers=city_admin).status_code == 404
    assert [h for _, h, _ in broker.store.active_unblocks(time.time())] == ["news.example.jp"]
    assert any(r.action == "unblock.approve" for r in broker.store.admin_audit("city"))
