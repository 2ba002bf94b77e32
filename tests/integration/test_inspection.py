"""TLS inspection end to end (issue 7): real broker and agent processes, real curl, local HTTPS
origins with valid, expired, wrong-host, self-signed and untrusted-chain certificates.

- a valid upstream is inspected: the client sees a leaf from the broker's inspection CA with
  the origin's subjectAltName copied exactly;
- every invalid upstream is refused at CONNECT with `upstream-certificate-invalid` and the
  validator's words, and no leaf is ever shown for it;
- a do-not-decrypt host passes untouched (the client sees the origin's own certificate);
- uploads with a valid My Number get the block page (`dlp-mynumber`), invalid ones pass;
  EICAR downloads are blocked; the tenant-restriction headers reach Microsoft's login host;
  the block page's unblock-request form is recorded.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from broker.demo import AgentProcess, BrokerProcess, free_port
from swg.dlp.mynumber import mynumber_check_digit
from tests.integration.conftest import NO_LOGIN, require_curl
from tests.peers import clamav
from tests.peers.clamav import Clamd
from tests.peers.tls_origins import CASES, HOST, Nghttpd, TlsOrigins

DOMAIN = "inspect.test"
EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def valid_mynumber(base: str = "12345678901") -> str:
    return base + str(mynumber_check_digit(base))


def invalid_mynumber(base: str = "12345678901") -> str:
    return base + str((mynumber_check_digit(base) + 1) % 10)


def host(case: str) -> str:
    return f"{case}.{DOMAIN}"


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


ANCHORS = Path("/usr/local/share/ca-certificates")


def remove_our_anchors() -> None:
    found = list(ANCHORS.glob("sekimori-inspection-*.crt")) if ANCHORS.is_dir() else []
    for path in found:
        path.unlink()
    if found:
        subprocess.run(["update-ca-certificates", "--fresh"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, broker: BrokerProcess) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path_factory.mktemp("agent"))
    a.enrol(broker, broker.enrolment_code("test-city"), hostname="inspected-laptop")
    a.start()
    yield a
    a.stop()
    remove_our_anchors()   # the machine's trust store as we found it


def inspection_ca(broker: BrokerProcess) -> Path:
    return broker.data_dir / "pki" / "inspection-ca.crt"


def curl(agent: AgentProcess, url: str, *args: str, ca: Path | None = None) -> tuple[int, str, str]:
    """(last status, headers + body, stderr) of curl through the agent."""
    cmd = [require_curl(), "-sS", "--max-time", "20", "-x", agent.proxy, "-D", "-", *args, url]
    if ca is not None:
        cmd[1:1] = ["--cacert", str(ca)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    status = re.findall(r"^HTTP/\S+ (\d{3})", out.stdout, re.M)
    return (int(status[-1]) if status else 0), out.stdout, out.stderr


def peer_certificate(agent: AgentProcess, target: str, port: int, ca: Path) -> x509.Certificate:
    """The certificate the client is shown for `target` through the agent (CONNECT + TLS)."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.proxy_port, timeout=20)
    conn.set_tunnel(target, port)
    conn.connect()
    ctx = ssl.create_default_context(cafile=str(ca))
    assert conn.sock is not None
    tls = ctx.wrap_socket(conn.sock, server_hostname=target)
    try:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)
    finally:
        tls.close()


def audit(broker: BrokerProcess) -> list[dict[str, Any]]:
    path = broker.config.audit_path
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_audit(broker: BrokerProcess, predicate: Any, what: str) -> dict[str, Any]:
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for event in audit(broker):
            if predicate(event):
                return event
        time.sleep(0.1)
    raise AssertionError(f"no audit event: {what}")


def sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def test_valid_upstream_is_inspected_with_a_minted_leaf(agent: AgentProcess, broker: BrokerProcess,
                                                         origins: TlsOrigins) -> None:
    port = origins.port["good"]
    status, out, err = curl(agent, f"https://{host('good')}:{port}/", ca=inspection_ca(broker))
    assert status == 200, out + err
    assert "hello from good" in out
    leaf = peer_certificate(agent, host("good"), port, inspection_ca(broker))
    assert "Sekimori inspection CA" in leaf.issuer.rfc4514_string()
    assert sans(leaf) == sans(origins.certs["good"])          # copied exactly, in order
    assert leaf.not_valid_after_utc <= origins.certs["good"].not_valid_after_utc
    # The client that trusts only the origin's CA refuses our leaf: it is not the origin's.
    status, out, err = curl(agent, f"https://{host('good')}:{port}/", ca=origins.ca_path)
    assert "hello from" not in out and "certificate" in err.lower(), out + err
    refused = wait_audit(broker, lambda e: e.get("kind") == "stream" and "client_tls_error" in e.get("extra", {}),
                         "the client refusing our leaf")
    assert "unknown ca" in refused["extra"]["client_tls_error"].lower().replace("_", " ")
    event = wait_audit(broker, lambda e: e.get("kind") == "http" and host("good") in e.get("extra", {}).get("url", ""),
                       "the inspected request")
    assert event["decision"] == "allow" and event["extra"]["status"] == "200"


@pytest.mark.parametrize("case, words", [
    ("expired", "expired"), ("wronghost", "hostname mismatch"), ("selfsigned", "self-signed"),
    ("untrusted", "unable to get local issuer"),
])
def test_invalid_upstream_certificates_are_blocked(agent: AgentProcess, broker: BrokerProcess,
                                                   origins: TlsOrigins, case: str, words: str) -> None:
    port = origins.port[case]
    status, out, err = curl(agent, f"https://{host(case)}:{port}/", "-k", ca=inspection_ca(broker))
    # -k would accept any leaf: the connection must be refused before TLS even starts.
    assert status == 502, out + err
    assert re.search(r"^sekimori-reason: upstream-certificate-invalid", out, re.M | re.I), out
    assert "hello from" not in out
    detail = re.search(r"^sekimori-detail: (.*)$", out, re.M | re.I)
    assert detail and words in detail.group(1).lower().replace("%20", " "), out
    event = wait_audit(broker, lambda e: e.get("kind") == "stream" and e.get("destination") == f"{host(case)}:{port}",
                       f"the refused {case} stream")
    assert event["reason"] == "upstream-certificate-invalid"


def test_do_not_decrypt_host_passes_untouched(agent: AgentProcess, broker: BrokerProcess,
                                              origins: TlsOrigins) -> None:
    port = origins.port["passthrough"]
    cert = peer_certificate(agent, host("passthrough"), port, origins.ca_path)
    assert cert == origins.certs["passthrough"]
    status, out, _ = curl(agent, f"https://{host('passthrough')}:{port}/", ca=origins.ca_path)
    assert status == 200 and "hello from passthrough" in out


def test_banking_category_passes_untouched(agent: AgentProcess, broker: BrokerProcess,
                                          origins: TlsOrigins) -> None:
    """A host in the bank category (a list of the admin's) is never decrypted."""
    cert = peer_certificate(agent, host("bank"), origins.port["passthrough"], origins.ca_path)
    assert cert == origins.certs["passthrough"]
    event = wait_audit(broker, lambda e: e.get("kind") == "stream"
                       and e.get("destination") == f"{host('bank')}:{origins.port['passthrough']}", "bank")
    assert event["extra"]["categories"] == "bank" and "inspected" not in event["extra"]


def test_upload_with_a_valid_my_number_gets_the_block_page(agent: AgentProcess, broker: BrokerProcess,
                                                           origins: TlsOrigins, tmp_path: Path) -> None:
    url = f"https://{host('good')}:{origins.port['good']}/upload"
    before = len(origins.uploads)
    form = tmp_path / "申請書.txt"
    form.write_text(f"氏名: 関守 太郎\n個人番号: {valid_mynumber()}\n", encoding="utf-8")
    status, out, _ = curl(agent, url, "-F", f"file=@{form}", "-H", "accept: text/html",
                          ca=inspection_ca(broker))
    assert status == 403, out
    assert "dlp-mynumber" in out and "アクセスが遮断されました" in out and "unblock-request" in out
    request_id = re.search(r"^sekimori-request-id: (\w+)", out, re.M | re.I)
    assert request_id, out
    assert len(origins.uploads) == before            # the origin never got it
    event = wait_audit(broker, lambda e: e.get("extra", {}).get("request_id") == request_id.group(1),
                       "the blocked upload")
    assert event["kind"] == "http" and event["reason"] == "dlp-mynumber"
    assert event["extra"]["dlp"] == "mynumber:1"
    assert valid_mynumber() not in json.dumps(event, ensure_ascii=False)   # never the value

    form.write_text(f"個人番号: {invalid_mynumber()}\n", encoding="utf-8")
    status, out, _ = curl(agent, url, "-F", f"file=@{form}", ca=inspection_ca(broker))
    assert status == 200 and '"bytes"' in out, out
    assert len(origins.uploads) == before + 1


def test_large_streamed_upload_is_stopped_before_the_number_leaves(
        agent: AgentProcess, broker: BrokerProcess, origins: TlsOrigins, tmp_path: Path) -> None:
    url = f"https://{host('good')}:{origins.port['good']}/upload"
    before = len(origins.uploads)
    line = "関守市 住民記録 照会 test line 0123\n" * 1000
    body = tmp_path / "big.txt"
    with open(body, "w", encoding="utf-8") as f:
        for i in range(120):
            f.write(line)
            if i == 60:
                f.write(f"番号 {valid_mynumber()}\n")
    status, out, _ = curl(agent, url, "--data-binary", f"@{body}", "-H", "content-type: text/plain",
                          ca=inspection_ca(broker))
    assert status == 403 and "dlp-mynumber" in out, out
    assert len(origins.uploads) == before   # aborted mid-way: no complete request reached it


def test_eicar_downloads_are_blocked(agent: AgentProcess, broker: BrokerProcess,
                                     origins: TlsOrigins) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("eicar.com", EICAR)
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("inner.zip", inner.getvalue())
    origins.files.update({"eicar.com": EICAR.encode(), "eicar.zip": inner.getvalue(),
                          "nested.zip": outer.getvalue(), "clean.txt": b"nothing to see\n"})
    base = f"https://{host('good')}:{origins.port['good']}/file/"
    for name in ("eicar.com", "eicar.zip", "nested.zip"):
        status, out, _ = curl(agent, base + name, ca=inspection_ca(broker))
        assert status == 403 and "malware-detected" in out, (name, out)
    status, out, _ = curl(agent, base + "clean.txt", ca=inspection_ca(broker))
    assert status == 200 and "nothing to see" in out


def test_plain_http_is_inspected_too(agent: AgentProcess, broker: BrokerProcess,
                                     origins: TlsOrigins) -> None:
    url = f"http://{host('plain')}:{origins.port['plain']}/upload"
    status, out, _ = curl(agent, url, "--data-binary", f"mynumber={valid_mynumber()}")
    assert status == 403 and "dlp-mynumber" in out, out
    status, out, _ = curl(agent, f"http://{host('plain')}:{origins.port['plain']}/")
    assert status == 200 and "hello from plain" in out


def test_tenant_restriction_headers_reach_the_login_endpoint(agent: AgentProcess, broker: BrokerProcess,
                                                              origins: TlsOrigins) -> None:
    status, out, _ = curl(agent, f"https://login.microsoftonline.com:{origins.port['good']}/headers",
                          "-H", "Restrict-Access-To-Tenants: attacker.example", ca=inspection_ca(broker))
    assert status == 200, out
    seen = json.loads(out[out.index("{"):])
    assert seen["restrict-access-to-tenants"] == "city.example.lg.jp,pref.example.lg.jp"
    assert seen["restrict-access-context"] == "5f0a3b1e-0000-4000-8000-000000000001"
    status, out, _ = curl(agent, f"https://{host('good')}:{origins.port['good']}/headers",
                          ca=inspection_ca(broker))
    assert "restrict-access" not in out


def test_unblock_request_from_the_block_page_is_recorded(agent: AgentProcess, broker: BrokerProcess,
                                                         origins: TlsOrigins) -> None:
    url = f"https://{host('good')}:{origins.port['good']}/.sekimori/unblock-request"
    status, out, _ = curl(agent, url, "--data-urlencode", "request_id=abc123",
                          "--data-urlencode", "url=https://good.inspect.test/upload",
                          "--data-urlencode", "reason_code=dlp-mynumber",
                          "--data-urlencode", "justification=住民票の写しの送付のため",
                          ca=inspection_ca(broker))
    assert status == 200 and "Request received" in out
    event = wait_audit(broker, lambda e: e.get("kind") == "unblock-request", "the unblock request")
    assert event["extra"]["unblock_justification"] == "住民票の写しの送付のため"
    assert event["extra"]["unblock_reason_code"] == "dlp-mynumber"


def test_non_tls_bytes_on_an_inspected_port_end_the_stream(agent: AgentProcess,
                                                           origins: TlsOrigins) -> None:
    with socket.create_connection(("127.0.0.1", agent.proxy_port), timeout=10) as s:
        target = f"{host('good')}:{origins.port['good']}"
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert b" 200 " in s.recv(4096)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        assert b"hello from" not in s.recv(65536)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("update-ca-certificates") is None,
                    reason="installing a CA in the Linux trust store needs root and ca-certificates")
def test_agent_installs_the_inspection_ca_in_the_linux_trust_store(agent: AgentProcess, broker: BrokerProcess,
                                                                   origins: TlsOrigins) -> None:
    """The agent got the inspection CA with its signed rules and put it in the OS store: curl
    with the system's trust (no --cacert) now accepts the inspected site."""
    import time
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = (agent.status() or {}).get("routing", {}).get("inspection_ca", {})
        if status.get("installed"):
            break
        time.sleep(0.2)
    assert status.get("sent") and status.get("installed"), status
    anchor = next(ANCHORS.glob("sekimori-inspection-*.crt"))
    assert anchor.read_bytes() == inspection_ca(broker).read_bytes()
    system = subprocess.run(["openssl", "verify", "-CApath", "/etc/ssl/certs", str(inspection_ca(broker))],
                            capture_output=True, text=True, timeout=30)
    assert system.returncode == 0, system.stdout + system.stderr
    code, out, err = curl(agent, f"https://{host('good')}:{origins.port['good']}/")
    assert code == 200 and "hello from good" in out, out + err


def test_clamd_finds_what_the_builtin_signatures_do_not(agent: AgentProcess, broker: BrokerProcess,
                                                        origins: TlsOrigins, clamd: Clamd | None) -> None:
    if clamd is None:
        pytest.skip(clamav.unavailable() or "clamd unavailable")
    origins.files["report.bin"] = b"header\n" + clamav.CUSTOM_MARKER + b"\ntrailer\n"
    status, out, _ = curl(agent, f"https://{host('good')}:{origins.port['good']}/file/report.bin",
                          ca=inspection_ca(broker))
    assert status == 403 and "malware-detected" in out, out
    event = wait_audit(broker, lambda e: e.get("kind") == "http" and "report.bin" in e.get("extra", {}).get("url", ""),
                       "the clamd block")
    assert event["extra"]["malware"].startswith(clamav.CUSTOM_NAME)


def sekimori(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "broker", *args, "--data-dir", str(broker.data_dir)],
                          capture_output=True, text=True, timeout=60)


def eventually_status(agent: AgentProcess, url: str, ca: Path, want: int) -> tuple[int, str]:
    import time
    deadline = time.monotonic() + 15
    while True:
        status, out, _ = curl(agent, url, ca=ca)
        if status == want or time.monotonic() > deadline:
            return status, out
        time.sleep(0.5)


def test_iocs_categories_and_tenant_lists_block_with_reasons(agent: AgentProcess, broker: BrokerProcess,
                                                             origins: TlsOrigins, tmp_path: Path) -> None:
    port, ca = origins.port["good"], inspection_ca(broker)
    # A category from a one-host-per-line list ([lists] host_lists), blocked by default.
    status, out, _ = curl(agent, f"https://{host('phish')}:{port}/", ca=ca)
    assert re.search(r"^sekimori-reason: url-category-blocked", out, re.M | re.I), out
    event = wait_audit(broker, lambda e: e.get("destination") == f"{host('phish')}:{port}"
                       and e.get("kind") == "stream", "phishing")
    assert event["reason"] == "url-category-blocked"
    assert event["extra"]["categories"] == "phishing"
    # IOC feed from the prefecture's SOC: a domain and a URL prefix, refused with the feed's name.
    invoice = b"Invoice 2026-11 (a file the SOC saw in a phishing campaign)\n"
    origins.files["invoice.txt"] = invoice
    feed = tmp_path / "soc-feed.csv"
    feed.write_text("type,value,description\n"
                    f"domain,{host('evil')},C2 server\n"
                    f"url,https://{host('good')}:{port}/payload/,dropper path\n"
                    f"sha256,{hashlib.sha256(invoice).hexdigest()},phishing attachment\n"
                    "domain,not a domain!,broken row\n")
    done = sekimori(broker, "ioc", "import", str(feed), "--tenant", "test-city")
    assert done.returncode == 0 and "3 indicators loaded" in done.stdout, done.stdout + done.stderr
    assert "bad: line 5" in done.stdout, done.stdout
    status, out = eventually_status(agent, f"https://{host('evil')}:{port}/", ca, 403)
    assert re.search(r"^sekimori-reason: ioc-match", out, re.M | re.I), out
    status, out, _ = curl(agent, f"https://{host('good')}:{port}/payload/x.exe", ca=ca)
    assert status == 403 and "ioc-match" in out and "soc-feed" in out, out   # the block page
    status, out, _ = curl(agent, f"https://{host('good')}:{port}/", ca=ca)
    assert status == 200
    status, out, _ = curl(agent, f"https://{host('good')}:{port}/file/invoice.txt", ca=ca)
    assert status == 403 and "malware-detected" in out and "IOC soc-feed" in out, out
    # The municipality's own block list.
    done = sekimori(broker, "lists", "block", host("blocked"), "--tenant", "test-city")
    assert done.returncode == 0, done.stdout + done.stderr
    status, out = eventually_status(agent, f"https://{host('blocked')}:{port}/", ca, 403)
    assert re.search(r"^sekimori-reason: url-category-blocked", out, re.M | re.I), out
    check = sekimori(broker, "lists", "check", f"https://{host('evil')}/", "--tenant", "test-city")
    assert "ioc-match" in check.stdout and "soc-feed" in check.stdout, check.stdout + check.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "not-a-bundle"}')
    refused = sekimori(broker, "ioc", "import", str(bad), "--tenant", "test-city")
    assert refused.returncode != 0 and "refused" in refused.stdout + refused.stderr


def test_refused_sites_get_the_block_page_and_an_approved_unblock_request_opens_them(
        agent: AgentProcess, broker: BrokerProcess, origins: TlsOrigins) -> None:
    """A category block shown as a page inside the site's TLS (a browser shows nothing readable
    for a refused CONNECT); its unblock form is stored; the admin approves it for 30 minutes and
    the site opens; the CLI lists the request as approved."""
    port, ca = origins.port["good"], inspection_ca(broker)
    url = f"https://{host('phish')}:{port}/"
    status, out, _ = curl(agent, url, "-H", "accept: text/html", ca=ca)
    assert status == 403 and "url-category-blocked" in out and "unblock-request" in out, out
    request_id = re.search(r"^sekimori-request-id: (\w+)", out, re.M | re.I)
    assert request_id, out
    status, out, _ = curl(agent, f"https://{host('phish')}:{port}/.sekimori/unblock-request", ca=ca,
                          *("--data-urlencode", f"request_id={request_id.group(1)}",
                            "--data-urlencode", f"url={url}", "--data-urlencode", "reason_code=url-category-blocked",
                            "--data-urlencode", "justification=県の防災訓練サイトです"))
    assert status == 200 and "Request received" in out, out
    import time
    deadline = time.monotonic() + 10
    def mine() -> list[Any]:
        return [r for r in broker.store.list_unblock_requests("test-city", "pending") if r.host == host("phish")]
    while time.monotonic() < deadline and not mine():
        time.sleep(0.1)
    [pending] = mine()
    assert pending.host == host("phish") and pending.justification == "県の防災訓練サイトです"
    assert pending.reason_code == "url-category-blocked" and pending.request_id == request_id.group(1)
    done = sekimori(broker, "unblock", "approve", str(pending.id), "--minutes", "30")
    assert done.returncode == 0 and "approved" in done.stdout, done.stdout + done.stderr
    status, out = eventually_status(agent, url, ca, 200)
    assert status == 200 and "hello from good" in out, out   # the phish name is served by the good origin
    listed = sekimori(broker, "unblock", "list", "--status", "approved")
    assert host("phish") in listed.stdout and "approved until" in listed.stdout, listed.stdout
    api = broker.store.get_unblock_request(pending.id)
    assert api is not None and api.decided_by and api.decided_by.startswith("cli:")
    again = sekimori(broker, "unblock", "approve", str(pending.id))
    assert again.returncode != 0 and "already approved" in again.stdout + again.stderr


def test_downloads_are_sanitised_docm_to_docx_and_pdf_without_javascript(
        agent: AgentProcess, broker: BrokerProcess, origins: TlsOrigins, tmp_path: Path) -> None:
    import docx  # python-docx: an independent reader

    from tests.unit.swg.content_samples import active_pdf, decompressed_streams, poppler
    from tests.unit.swg.test_content_sanitise import docm
    origins.files["minutes.docm"] = docm("議事録 第3回")
    origins.files["report.pdf"] = active_pdf("Quarterly report page one")
    base = f"https://{host('good')}:{origins.port['good']}/file/"
    got = tmp_path / "minutes"
    status, out, _ = curl(agent, base + "minutes.docm", "-o", str(got), ca=inspection_ca(broker))
    assert status == 200 and 'filename="minutes.docx"' in out, out
    with zipfile.ZipFile(got) as z:
        assert not [n for n in z.namelist() if "vbaProject" in n]
    assert "議事録 第3回" in [p.text for p in docx.Document(str(got)).paragraphs]
    event = wait_audit(broker, lambda e: "minutes.docm" in e.get("extra", {}).get("url", ""), "the docm")
    assert "vbaProject" in event["extra"]["sanitised"]
    pdf = tmp_path / "report.pdf"
    status, out, _ = curl(agent, base + "report.pdf", "-o", str(pdf), ca=inspection_ca(broker))
    assert status == 200, out
    cleaned = pdf.read_bytes()
    assert b"/JavaScript" not in decompressed_streams(cleaned) and b"/OpenAction" not in cleaned
    checked = poppler("pdfinfo", cleaned)
    if checked is not None:
        assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("flag, version", [("--http1.1", "1.1"), ("--http2", "2")])
def test_clients_speak_http1_or_http2_to_the_inspecting_broker(
        agent: AgentProcess, broker: BrokerProcess, origins: TlsOrigins, tmp_path: Path,
        flag: str, version: str) -> None:
    """curl negotiates HTTP/1.1 or HTTP/2 (ALPN) with our leaf; the origin speaks HTTP/1.1.
    Several requests on one connection, a DLP block on one stream of an HTTP/2 connection
    leaves the others working."""
    port, ca = origins.port["good"], inspection_ca(broker)
    base = f"https://{host('good')}:{port}"
    form = tmp_path / "form.txt"
    form.write_text(f"番号 {valid_mynumber()}\n")
    common = ["-sS", "--cacert", str(ca), "-x", agent.proxy, flag, "-w", "\n%{http_version} %{response_code}\n"]
    out = subprocess.run([require_curl(), *common, f"{base}/", "--next", *common, f"{base}/headers",
                          "--next", *common, "--data-binary", f"@{form}", f"{base}/upload"],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    codes = [line for line in lines if re.fullmatch(r"[0-9.]+ \d{3}", line)]
    assert codes == [f"{version} 200", f"{version} 200", f"{version} 403"], out.stdout + out.stderr
    assert "hello from good" in out.stdout and "dlp-mynumber" in out.stdout


def test_chromium_through_the_inspecting_broker(agent: AgentProcess, broker: BrokerProcess,
                                                origins: TlsOrigins, tmp_path: Path) -> None:
    """A real browser (HTTP/2 to our leaf, trusted by the inspection CA's key) gets the site, and
    the bilingual block page with its unblock button for a refused one."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"Chromium is not installed ({chromium}; apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    import base64

    from cryptography.hazmat.primitives import serialization
    ca = x509.load_pem_x509_certificate(inspection_ca(broker).read_bytes())
    spki = base64.b64encode(hashlib.sha256(ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()).decode()
    flags = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-quic",
             "--disable-background-networking", "--disable-component-update",
             f"--proxy-server={agent.proxy}", f"--ignore-certificate-errors-spki-list={spki}"]
    port = origins.port["good"]
    done = sekimori(broker, "lists", "block", host("blocked"), "--tenant", "test-city")
    assert done.returncode == 0, done.stdout + done.stderr
    eventually_status(agent, f"https://{host('blocked')}:{port}/", inspection_ca(broker), 403)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=flags)
        try:
            page = browser.new_page()
            response = page.goto(f"https://{host('good')}:{port}/", timeout=20_000)
            assert response is not None and response.status == 200
            assert "hello from good" in page.content()
            page.goto(f"https://{host('blocked')}:{port}/", timeout=20_000)
            assert "アクセスが遮断されました" in page.content() and "url-category-blocked" in page.content()
            assert page.locator("#unblock-request").count() == 1
            page.screenshot(path=str(tmp_path / "block-page.png"))
        finally:
            browser.close()
    event = wait_audit(broker, lambda e: e.get("kind") == "http" and host("good") in e.get("extra", {}).get("url", "")
                       and e.get("extra", {}).get("status") == "200", "Chromium's request")
    assert event["decision"] == "allow"


def test_http_signatures_drop_blocks_and_alert_is_logged(agent: AgentProcess, broker: BrokerProcess,
                                                         origins: TlsOrigins) -> None:
    base, ca = f"https://{host('good')}:{origins.port['good']}", inspection_ca(broker)
    status, out, _ = curl(agent, f"{base}/CGI-BIN/exploit?x=1", ca=ca)
    assert status == 403 and "http-signature" in out and "9000001" in out, out
    status, out, _ = curl(agent, f"{base}/", "-A", "EvilScanner/1.0", ca=ca)
    assert status == 200 and "hello from good" in out, out
    event = wait_audit(broker, lambda e: e.get("extra", {}).get("signatures") == "9000002:1", "the alert")
    assert event["decision"] == "allow"
    blocked = wait_audit(broker, lambda e: e.get("reason") == "http-signature", "the drop")
    assert blocked["extra"]["signatures"] == "9000001:2"
    log = (broker.data_dir / "broker.log").read_text()
    assert "HTTP signatures from" in log and "loaded 2, skipped 1" in log, log[-2000:]


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_an_http2_origin_is_spoken_to_in_http2(agent: AgentProcess, broker: BrokerProcess,
                                               h2_origin: Nghttpd | None, flag: str, tmp_path: Path) -> None:
    """nghttpd chooses h2 by ALPN: the broker speaks HTTP/2 to it whatever the client speaks;
    the content is still inspected (EICAR refused)."""
    if h2_origin is None:
        pytest.skip("nghttpd is not installed (apt-get install nghttp2-server)")
    (h2_origin.docroot / "hello.txt").write_text("hello over h2\n")
    (h2_origin.docroot / "eicar.com").write_text(EICAR)
    base, ca = f"https://{host('h2')}:{h2_origin.port}", inspection_ca(broker)
    status, out, err = curl(agent, f"{base}/hello.txt", flag, ca=ca)
    assert status == 200 and "hello over h2" in out, out + err
    event = wait_audit(broker, lambda e: e.get("kind") == "http" and "hello.txt" in e.get("extra", {}).get("url", ""),
                       "the h2 request")
    assert event["extra"]["origin_protocol"] == "h2"
    status, out, _ = curl(agent, f"{base}/eicar.com", flag, ca=ca)
    assert status == 403 and "malware-detected" in out, out
