"""Fixtures of the inspection tests: local HTTPS origins with valid, expired, wrong-host,
self-signed and untrusted-chain certificates, an HTTP/2 origin (nghttpd), a real clamd, a broker
with `[inspection]` and `[lists]`, and an enrolled agent. Module-scoped: each test module of
this folder gets its own (they override tests/integration/conftest.py's `origins`, `broker`
and `agent`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo import AgentProcess, BrokerProcess, free_port
from tests.integration.conftest import NO_LOGIN
from tests.integration.inspection.harness import host, remove_our_anchors
from tests.peers import clamav
from tests.peers.clamav import Clamd
from tests.peers.tls_origins import CASES, HOST, Nghttpd, TlsOrigins


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsOrigins]:
    names = {case: [host(case)] for case in CASES}
    names["good"] = [host("good"), f"www.{host('good')}", "login.microsoftonline.com", host("phish")]
    names["passthrough"] = [host("passthrough"), host("bank")]
    o = TlsOrigins(tmp_path_factory.mktemp("tls-origins"), names)
    yield o
    o.close()


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd | None]:
    """A real clamd with our own signatures when ClamAV is installed (setup.sh installs it)."""
    if clamav.unavailable() is not None:
        yield None
        return
    server = clamav.start_clamd(tmp_path_factory.mktemp("clamd"), stream_max_bytes=32 * 1024 * 1024)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def h2_origin(tmp_path_factory: pytest.TempPathFactory, origins: TlsOrigins) -> Iterator[Nghttpd | None]:
    """nghttpd, an HTTP/2 origin (setup.sh installs nghttp2-server)."""
    if shutil.which("nghttpd") is None and not Path("/usr/sbin/nghttpd").exists():
        yield None
        return
    server = Nghttpd(tmp_path_factory.mktemp("nghttpd"), origins, [host("h2")], free_port())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: TlsOrigins,
           clamd: Clamd | None, h2_origin: Nghttpd | None) -> Iterator[BrokerProcess]:
    scanner = f'clamd = "{clamd.unix_address}"' if clamd is not None else ""
    phishing = tmp_path_factory.mktemp("lists") / "phishing.txt"
    phishing.write_text(f"# a one-host-per-line list\n{host('phish')}\n")
    banks = phishing.parent / "bank.txt"
    banks.write_text(f"{host('bank')}\n")
    rules = phishing.parent / "local.rules"
    rules.write_text(
        'drop http any any -> any any (msg:"LOCAL exploit path"; flow:established,to_server; '
        'http.uri; content:"/cgi-bin/exploit"; nocase; sid:9000001; rev:2;)\n'
        'alert http any any -> any any (msg:"LOCAL scanner user agent"; flow:established,to_server; '
        'http.user_agent; content:"EvilScanner"; sid:9000002; rev:1;)\n'
        'alert tcp any any -> any any (msg:"not http"; flowbits:set,x; sid:9000003; rev:1;)\n')
    inspection = f"""
[lists]
host_lists = {{ phishing = "{phishing}", bank = "{banks}" }}

[inspection]
enabled = true
{scanner}
upstream_ca_file = "{origins.ca_path}"
plain_http_ports = [80, {origins.port['plain']}]
do_not_decrypt = ["{host('passthrough')}"]
whole_scan_bytes = 1048576
sanitise_downloads = true
http_signatures = "{rules}"
signature_mode = "block-drop"
[inspection.tenant_restrictions]
allowed_tenants = ["city.example.lg.jp", "pref.example.lg.jp"]
context_tenant_id = "5f0a3b1e-0000-4000-8000-000000000001"
"""
    statics = {host(case): [HOST] for case in (*CASES, "phish", "evil", "blocked", "h2", "bank")}
    ports = list(origins.port.values()) + ([h2_origin.port] if h2_origin is not None else [])
    statics["login.microsoftonline.com"] = [HOST]
    b = BrokerProcess(tmp_path_factory.mktemp("broker"), allowed_ports=ports,
                      allowed_networks=[f"{HOST}/32"], static_hosts=statics,
                      identity_toml=NO_LOGIN, extra_toml=inspection)
    b.start()
    b.add_tenant("test-city", "テスト市")
    yield b
    b.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, broker: BrokerProcess) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path_factory.mktemp("agent"))
    a.enrol(broker, broker.enrolment_code("test-city"), hostname="inspected-laptop")
    a.start()
    yield a
    a.stop()
    remove_our_anchors()   # the machine's trust store as we found it
