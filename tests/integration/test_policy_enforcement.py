"""The broker decides every stream with the access policy (issue 5): the three-layer guard, the
municipality's rules on directory groups, default deny for private apps, a policy change applied
to new streams at once and to open ones within 2 s, and `sekimori policy test` / `lint`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo import AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import make_broker
from tests.integration.login_harness import TENANT, fetch, next_code
from tests.integration.posture_harness import posture_agent
from tests.peers import slapd as peer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policy"
POLICY = """tenant: {{id: test-city, name: テスト市, model: beta}}
apps:
  - {{id: tax, name: 税務システム, kind: private, zone: lgwan, hosts: [tax.city.test], private_kind: web}}
  - {{id: portal, name: 庁内ポータル, kind: private, zone: lgwan, hosts: [portal.city.test], private_kind: web}}
  - {{id: wiki, name: 庁内Wiki, kind: private, zone: lgwan, hosts: [wiki.city.test], private_kind: web}}
  - {{id: jyuki, name: 住民記録システム, kind: private, zone: mynumber, hosts: [jyuki.city.test], private_kind: web}}
rules:
  - id: r-001
    description: 税務部門は税務システムを使える
    when: {{groups: [tax-dept], apps: [tax]}}
    action: allow
  - id: r-002
    description: 住民記録システムを許可（三層分離の誤設定）
    when: {{apps: [jyuki]}}
    action: allow
{extra}"""
PORTAL_RULE = """  - id: r-003
    description: 全職員は庁内ポータルを使える
    when: {groups: [all-staff], apps: [portal]}
    action: allow
"""
HOSTS = ("tax.city.test", "portal.city.test", "wiki.city.test", "jyuki.city.test")


def identity_and_posture(server: peer.Slapd) -> str:
    return f"""[identity]
require_login = true
require_mfa = true

[[identity.directory]]
tenant = "{TENANT}"
name = "city-ldap"
kind = "generic"
servers = ["{server.ldaps_url}"]
base_dn = "{peer.SUFFIX}"
bind_dn = "{peer.SERVICE_DN}"
bind_password = "{peer.SERVICE_PASSWORD}"
ca_file = "{server.ca_file}"

[posture]
report_interval_seconds = 2

[[posture.profile]]
tenant = "{TENANT}"
name = "standard"
min_os_version = {{ linux = "12" }}
require_disk_encryption = true
require_firewall = true
max_report_age_seconds = 6
"""


def cli(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "broker", *args, "--data-dir",
                           str(broker.data_dir)], capture_output=True, text=True, timeout=60)


def set_policy(broker: BrokerProcess, tmp: Path, extra: str) -> None:
    path = tmp / f"policy-{time.monotonic_ns()}.yaml"
    path.write_text(POLICY.format(extra=extra))
    out = cli(broker, "policy", "import", str(path), "--tenant", TENANT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins,
           directory: peer.Slapd) -> Iterator[BrokerProcess]:
    b = make_broker(tmp_path_factory.mktemp("broker"), origins,
                    identity_toml=identity_and_posture(directory),
                    static_hosts={h: [origins.host] for h in HOSTS})
    set_policy(b, tmp_path_factory.mktemp("policy"), PORTAL_RULE)
    yield b
    b.close()


@pytest.fixture(scope="module")
def secrets(broker: BrokerProcess) -> dict[str, str]:
    return {user: broker.enrol_totp(TENANT, user) for user in ("alice", "bob", "carol")}


def logged_in(tmp: Path, broker: BrokerProcess, user: str, secrets: dict[str, str]) -> AgentProcess:
    agent = posture_agent(tmp / user, broker, f"{user}-pc")
    out = agent.login(user, peer.PASSWORDS[user], next_code(secrets[user]))
    assert out.returncode == 0, out.stdout
    return agent


def url(origins: LocalOrigins, host: str) -> str:
    return f"http://{host}:{origins.http_port}/"


def test_rules_on_groups_the_guard_and_default_deny(
        tmp_path: Path, broker: BrokerProcess, origins: LocalOrigins, secrets: dict[str, str]) -> None:
    alice = logged_in(tmp_path, broker, "alice", secrets)    # tax-clerks ⊂ tax-dept ⊂ all-staff
    carol = logged_in(tmp_path, broker, "carol", secrets)    # all-staff only
    try:
        assert fetch(alice, url(origins, "tax.city.test"))[0] == 200
        status, body = fetch(carol, url(origins, "tax.city.test"))
        assert status == 403 and "private-app-default-deny" in body
        assert fetch(carol, url(origins, "portal.city.test"))[0] == 200
        status, body = fetch(alice, url(origins, "jyuki.city.test"))   # r-002 cannot lift the guard
        assert status == 403 and "zone-mynumber-forbidden" in body
        assert fetch(alice, url(origins, "wiki.city.test"))[1].count("private-app-default-deny") == 1
    finally:
        alice.stop()
        carol.stop()


def test_a_policy_change_cuts_open_streams_within_two_seconds(
        tmp_path: Path, broker: BrokerProcess, origins: LocalOrigins, secrets: dict[str, str]) -> None:
    bob = logged_in(tmp_path, broker, "bob", secrets)     # all-staff through tax-dept
    try:
        sock = socket.create_connection(("127.0.0.1", bob.proxy_port), timeout=10)
        target = f"portal.city.test:{origins.http_port}"
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        set_policy(broker, tmp_path, "")          # the portal rule is gone
        started = time.monotonic()
        sock.settimeout(5)
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        elapsed = time.monotonic() - started
        assert data == b"" and elapsed <= 2.0, f"open stream still there after {elapsed:.2f} s"
        status, body = fetch(bob, url(origins, "portal.city.test"))
        assert status == 403 and "private-app-default-deny" in body
    finally:
        set_policy(broker, tmp_path, PORTAL_RULE)
        bob.stop()


def test_policy_test_explains_and_lint_finds_the_guard_violation(broker: BrokerProcess) -> None:
    out = cli(broker, "policy", "test", "--tenant", TENANT, "--url", "http://tax.city.test/",
              "--user", "alice", "--group", "tax-dept", "--mfa-minutes-ago", "1",
              "--posture", "standard")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "r-001" in out.stdout and "税務部門は税務システムを使える" in out.stdout
    denied = cli(broker, "policy", "test", "--tenant", TENANT, "--url", "http://jyuki.city.test/",
                 "--user", "alice", "--group", "tax-dept", "--mfa-minutes-ago", "1")
    assert "DENY" in denied.stdout and "zone-mynumber-forbidden" in denied.stdout
    lint = cli(broker, "policy", "lint", "--tenant", TENANT)
    assert lint.returncode == 1 and "guard-overrules" in lint.stdout and "r-002" in lint.stdout


def test_a_bad_policy_file_is_refused_with_its_path_and_changes_nothing(
        tmp_path: Path, broker: BrokerProcess) -> None:
    before = broker.store.get_policy(TENANT)
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.format(extra=PORTAL_RULE).replace("apps: [tax]", "apps: [taxx]"))
    out = cli(broker, "policy", "import", str(bad), "--tenant", TENANT)
    assert out.returncode == 2 and "rules[0].when.apps" in out.stdout
    assert broker.store.get_policy(TENANT) == before


def test_the_sample_policies_import_and_lint(tmp_path: Path, broker: BrokerProcess) -> None:
    for tenant, name, parent in (("sample-pref", "サンプル県", None), ("sample-city", "サンプル市", "sample-pref")):
        args = ["tenant", "add", tenant, "--name", name] + (["--parent", parent] if parent else [])
        assert cli(broker, *args).returncode == 0
    assert cli(broker, "policy", "import", str(EXAMPLES / "sample-pref.yaml"), "--tenant",
               "sample-pref").returncode == 0
    imported = cli(broker, "policy", "import", str(EXAMPLES / "sample-city.yaml"), "--tenant",
                   "sample-city")
    assert imported.returncode == 0, imported.stdout
    lint = cli(broker, "policy", "lint", "--tenant", "sample-city")
    for planted in ("r-005", "r-014", "r-006", "r-024", "r-025", "r-032"):
        assert planted in lint.stdout, lint.stdout
    # three sample requests, explained (README: "Access policy")
    for args, verdict, rule in (
            (["--url", "https://tax.sample-city.lg.jp/", "--user", "sato", "--group", "税務課",
              "--segment", "lgwan"], "ALLOW", "r-020"),
            (["--url", "https://jyuki.mn.sample-city.lg.jp/", "--user", "tanaka", "--group", "住民課",
              "--segment", "internet", "--mfa-minutes-ago", "1", "--posture", "standard"],
             "DENY", "guard:internet-to-mynumber"),
            (["--url", "https://chatgpt.com/", "--user", "suzuki", "--group", "会計年度任用職員"],
             "DENY", "r-001")):
        out = cli(broker, "policy", "test", "--tenant", "sample-city", *args)
        assert out.returncode == 0 and verdict in out.stdout and rule in out.stdout, out.stdout
