"""The admin API (issue 5): admins log in with password + TOTP, roles and scopes hold (a
municipal admin sees only its own municipality, an auditor changes nothing, a prefecture
operator manages its municipalities), a bad YAML policy is refused with the path of the error
while the old policy stays in force, and every change is in the admin audit trail."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest

from broker.demo import BrokerProcess, LocalOrigins
from tests.integration.conftest import make_broker

PASSWORD = "correct horse battery"
POLICY = """tenant: {{id: {tenant}, name: テスト市, parent: sample-pref, model: beta}}
apps:
  - {{id: portal, name: 庁内ポータル, kind: private, zone: lgwan, hosts: [portal.{tenant}.lg.jp], private_kind: web}}
rules:
  - id: r-001
    description: 全職員は庁内ポータルを利用できる
    when: {{groups: [全職員], apps: [portal]}}
    action: allow
"""


def run(broker: BrokerProcess, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([sys.executable, "-P", "-m", "broker", *args, "--data-dir",
                          str(broker.data_dir)], input=stdin, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins) -> Iterator[BrokerProcess]:
    b = make_broker(tmp_path_factory.mktemp("broker"), origins)
    run(b, "tenant", "add", "sample-pref", "--name", "サンプル県")
    for city in ("sample-city", "other-city"):
        run(b, "tenant", "add", city, "--name", city, "--parent", "sample-pref", "--model", "beta")
    run(b, "tenant", "add", "far-city", "--name", "遠い市", "--model", "alpha")
    yield b
    b.close()


@pytest.fixture(scope="module")
def secrets(broker: BrokerProcess) -> dict[str, str]:
    made = {}
    for name, role, tenant in (("city-admin", "municipal-admin", "sample-city"),
                               ("pref-auditor", "auditor", "sample-pref"),
                               ("pref-operator", "prefecture-operator", "sample-pref")):
        out = run(broker, "admin", "add", name, "--role", role, "--tenant", tenant,
                  "--password-stdin", "--no-qr", stdin=PASSWORD + "\n")
        made[name] = re.search(r"secret \(manual entry\): ([A-Z2-7]+)", out).group(1)  # type: ignore[union-attr]
    return made


def client(broker: BrokerProcess) -> httpx.Client:
    import ssl
    return httpx.Client(base_url=broker.api_url, trust_env=False, timeout=15,
                        verify=ssl.create_default_context(cafile=str(broker.config.ca_cert_path)))


def login(broker: BrokerProcess, secrets: dict[str, str], name: str) -> dict[str, str]:
    with client(broker) as api:
        reply = api.post("/v1/admin/login", json={"name": name, "password": PASSWORD,
                                                  "totp": pyotp.TOTP(secrets[name]).now()})
    assert reply.status_code == 200, reply.text
    return {"authorization": f"Bearer {reply.json()['token']}"}


@pytest.fixture(scope="module")
def tokens(broker: BrokerProcess, secrets: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: login(broker, secrets, name) for name in secrets}


def test_login_needs_the_password_and_a_fresh_totp_code(broker: BrokerProcess,
                                                       secrets: dict[str, str]) -> None:
    with client(broker) as api:
        wrong = api.post("/v1/admin/login", json={"name": "city-admin", "password": "nope-nope-nope",
                                                  "totp": "000000"})
        assert wrong.status_code == 401 and wrong.json()["reason"] == "credentials-invalid"
        bad_code = api.post("/v1/admin/login", json={"name": "city-admin", "password": PASSWORD,
                                                     "totp": "000000"})
        assert bad_code.status_code == 401 and bad_code.json()["reason"].startswith("totp-")
        assert api.get("/v1/admin/tenants").status_code == 401
        assert "/v1/admin/login" in api.get("/openapi.json").json()["paths"]


def test_a_municipal_admin_sees_and_changes_only_its_own_municipality(
        broker: BrokerProcess, tokens: dict[str, dict[str, str]]) -> None:
    me = tokens["city-admin"]
    with client(broker) as api:
        assert [t["id"] for t in api.get("/v1/admin/tenants", headers=me).json()["tenants"]] \
            == ["sample-city"]
        put = api.put("/v1/admin/tenants/sample-city/policy", headers=me,
                      content=POLICY.format(tenant="sample-city").encode())
        assert put.status_code == 200, put.text
        assert api.get("/v1/admin/tenants/other-city/policy", headers=me).status_code == 403
        other = api.put("/v1/admin/tenants/other-city/policy", headers=me,
                        content=POLICY.format(tenant="other-city").encode())
        assert other.status_code == 403 and other.json()["reason"] == "admin-unauthorized"
        assert api.get("/v1/admin/devices", params={"tenant": "other-city"},
                       headers=me).status_code == 403
        assert api.get("/v1/admin/audit", params={"tenant": "other-city"},
                       headers=me).status_code == 403


def test_a_bad_policy_is_refused_with_the_path_and_the_old_one_stays(
        broker: BrokerProcess, tokens: dict[str, dict[str, str]]) -> None:
    me = tokens["city-admin"]
    with client(broker) as api:
        good = POLICY.format(tenant="sample-city")
        assert api.put("/v1/admin/tenants/sample-city/policy", headers=me,
                       content=good.encode()).status_code == 200
        bad = good.replace("groups: [全職員]", "groups: 全職員")
        refused = api.put("/v1/admin/tenants/sample-city/policy", headers=me, content=bad.encode())
        assert refused.status_code == 422, refused.text
        assert "rules[0].when.groups" in refused.json()["detail"]
        assert api.get("/v1/admin/tenants/sample-city/policy", headers=me).text == good
        garbage = api.put("/v1/admin/tenants/sample-city/policy", headers=me,
                          content=b"tenant: [unclosed")
        assert garbage.status_code == 422


def test_an_auditor_reads_but_changes_nothing(broker: BrokerProcess,
                                              tokens: dict[str, dict[str, str]]) -> None:
    auditor = tokens["pref-auditor"]
    with client(broker) as api:
        ids = [t["id"] for t in api.get("/v1/admin/tenants", headers=auditor).json()["tenants"]]
        assert ids == ["other-city", "sample-city", "sample-pref"]
        assert api.get("/v1/admin/tenants/sample-city/policy", headers=auditor).status_code == 200
        changes: list[Any] = [
            api.put("/v1/admin/tenants/sample-city/policy", headers=auditor,
                    content=POLICY.format(tenant="sample-city").encode()),
            api.post("/v1/admin/tenants/sample-city/enrolment-codes", headers=auditor, json={}),
            api.delete("/v1/admin/tenants/sample-city/sessions", params={"user": "x"},
                       headers=auditor),
        ]
        assert [c.status_code for c in changes] == [403, 403, 403]


def test_a_prefecture_operator_manages_its_municipalities_only(
        broker: BrokerProcess, tokens: dict[str, dict[str, str]]) -> None:
    operator = tokens["pref-operator"]
    with client(broker) as api:
        made = api.post("/v1/admin/tenants/other-city/enrolment-codes", headers=operator,
                        json={"ttl_hours": 2, "label": "窓口PC"})
        assert made.status_code == 200 and len(made.json()["code"]) > 10
        assert api.get("/v1/admin/tenants/far-city/policy", headers=operator).status_code == 403
        tested = api.post("/v1/admin/tenants/sample-city/policy/test", headers=operator,
                          json={"url": "https://portal.sample-city.lg.jp/", "groups": ["全職員"],
                                "segment": "internet", "mfa_minutes_ago": 1,
                                "posture_profile": "standard"})
        assert tested.status_code == 200, tested.text
        assert tested.json()["explanation"]


def test_every_change_is_in_the_admin_audit_trail_with_before_and_after(
        broker: BrokerProcess, tokens: dict[str, dict[str, str]]) -> None:
    with client(broker) as api:
        records = api.get("/v1/admin/audit", params={"tenant": "sample-city"},
                          headers=tokens["pref-auditor"]).json()["records"]
    puts = [r for r in records if r["action"] == "policy.put"]
    assert puts and puts[0]["actor"] == "municipal-admin:city-admin"
    assert "r-001" in (puts[0]["after"] or "")
    tenancy = [r for r in records if r["action"] == "tenant.tenancy"]
    assert tenancy and json.loads(tenancy[0]["after"])["parent"] == "sample-pref"
    assert time.time() - puts[0]["time"] < 600


def test_a_prefecture_operator_adds_a_municipality_under_its_prefecture_only(
        broker: BrokerProcess, tokens: dict[str, dict[str, str]]) -> None:
    with client(broker) as api:
        made = api.post("/v1/admin/tenants", headers=tokens["pref-operator"],
                        json={"id": "new-town", "name": "新町", "model": "beta_prime"})
        assert made.status_code == 200 and made.json()["parent"] == "sample-pref", made.text
        elsewhere = api.post("/v1/admin/tenants", headers=tokens["pref-operator"],
                             json={"id": "rogue-town", "name": "x", "parent": "far-city"})
        assert elsewhere.status_code == 403
        assert api.post("/v1/admin/tenants", headers=tokens["city-admin"],
                        json={"id": "my-town", "name": "x"}).status_code == 403
        ids = [t["id"] for t in api.get("/v1/admin/tenants",
                                        headers=tokens["pref-operator"]).json()["tenants"]]
        assert "new-town" in ids
