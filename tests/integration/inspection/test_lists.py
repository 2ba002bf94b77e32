"""The gateway's lists and requests end to end (issue 7): IOC feeds, URL categories and a
municipality's own block list refusing with their reasons (the block page inside the site's
TLS), unblock requests from the block page approved with the CLI, and HTTP signatures (a `drop`
rule blocks, an `alert` rule is logged). Real broker and agent processes, real curl."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from broker.demo import AgentProcess, BrokerProcess
from tests.integration.inspection.harness import (
    curl,
    eventually_status,
    host,
    inspection_ca,
    sekimori,
    wait_audit,
)
from tests.peers.tls_origins import TlsOrigins


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
