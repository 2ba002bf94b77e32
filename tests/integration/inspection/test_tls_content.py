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
import io
import json
import os
import re
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from broker.demo import AgentProcess, BrokerProcess
from tests.integration.conftest import require_curl
from tests.integration.inspection.harness import (
    ANCHORS,
    EICAR,
    curl,
    eventually_status,
    host,
    inspection_ca,
    invalid_mynumber,
    peer_certificate,
    sans,
    sekimori,
    valid_mynumber,
    wait_audit,
)
from tests.peers import clamav
from tests.peers.clamav import Clamd
from tests.peers.tls_origins import Nghttpd, TlsOrigins


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


def test_an_http2_upload_blocked_early_leaves_the_connection_usable(
        agent: AgentProcess, broker: BrokerProcess, origins: TlsOrigins, tmp_path: Path) -> None:
    """24 MiB with a My Number at the start over HTTP/2: the block page comes while the client
    is still sending, the upload ends there (no hang until curl's timeout), and a second upload
    on the same connection goes through."""
    base, ca = f"https://{host('good')}:{origins.port['good']}", inspection_ca(broker)
    big = tmp_path / "big.txt"
    with open(big, "w", encoding="utf-8") as f:
        f.write(f"個人番号 {valid_mynumber()}\n")
        line = "関守市 住民記録 照会 test line\n" * 2000
        while f.tell() < 24 * 1024 * 1024:
            f.write(line)
    small = tmp_path / "small.txt"
    small.write_text("議事録 " * 20000)
    common = ["-sS", "--max-time", "60", "--cacert", str(ca), "-x", agent.proxy, "--http2",
              "-H", "content-type: text/plain", "-w", "\n%{http_version} %{response_code}\n"]
    out = subprocess.run([require_curl(), *common, "--data-binary", f"@{big}", f"{base}/upload",
                          "--next", *common, "--data-binary", f"@{small}", f"{base}/upload"],
                         capture_output=True, text=True, timeout=120)
    codes = [line for line in out.stdout.splitlines() if re.fullmatch(r"[0-9.]+ \d{3}", line)]
    assert codes == ["2 403", "2 200"], out.stdout[-2000:] + out.stderr
