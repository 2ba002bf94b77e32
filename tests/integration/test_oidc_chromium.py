"""One whole OpenID Connect login in a real browser: Chromium (Playwright, Debian's
/usr/bin/chromium) opens the authorization URL our relying party built, types a wrong password
and then the right one into the real provider's form (tests/peers/oidc_provider.py), and is
redirected to a small callback server on the loopback redirect URI, as the agent's login is
(public client, RFC 8252). The query that server received completes the login.

Skipped, with the reason, when Chromium, Playwright, Node.js or npm is missing.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp_bridge.oidc import PendingLogins
from tests.integration.oidc_harness import begin, oidc_a, relying_party
from tests.peers import oidc_provider as peer
from ztcore.reasons import Reason

__all__ = ["oidc_a"]   # a fixture, used by name

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM.exists():
    pytest.skip(f"Chromium is not installed ({CHROMIUM}; apt-get install chromium)", allow_module_level=True)
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("playwright is not installed (pip install playwright; the browser is Debian's)",
                allow_module_level=True)
if (_why := peer.unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)


class CallbackServer(http.server.ThreadingHTTPServer):
    """The relying party's redirect URI: records the query of each request to /callback."""

    queries: list[dict[str, str]]


class _Callback(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != "/callback":
            self.send_error(404)
            return
        self.server.queries.append(dict(urllib.parse.parse_qsl(parts.query)))  # type: ignore[attr-defined]
        body = b"<!doctype html><title>logged-in</title><p>You can close this window.</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def callback() -> Iterator[CallbackServer]:
    server = CallbackServer(("127.0.0.1", 0), _Callback)
    server.queries = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_chromium_logs_in_at_the_provider_and_the_login_completes(oidc_a: peer.OidcProvider,
                                                                  callback: CallbackServer) -> None:
    redirect_uri = f"http://127.0.0.1:{callback.server_address[1]}/callback"
    rp = relying_party(oidc_a, client_id=peer.PUBLIC_CLIENT, redirect_uri=redirect_uri)
    logins = PendingLogins()
    url, pending = begin(rp, "laptop-42", "/apps/tax")
    logins.add(pending)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.fill("input[name=login]", "alice")
            page.fill("input[name=password]", "not-her-password")
            page.click("button[type=submit]")
            page.wait_for_selector("text=Invalid credentials")
            page.fill("input[name=login]", "alice")
            page.fill("input[name=password]", "alicepw")
            page.click("button[type=submit]")
            page.wait_for_url(f"{redirect_uri}?*", timeout=15_000)
            assert page.title() == "logged-in"
        finally:
            browser.close()

    assert len(callback.queries) == 1
    params = callback.queries[0]
    assert params["iss"] == oidc_a.issuer and params["state"] == pending.state
    taken = logins.take(params["state"], "laptop-42", pending.created_at + 5)
    assert taken is pending
    outcome = rp.complete(taken, params)
    assert outcome.ok and outcome.reason is Reason.OIDC_LOGIN_OK, outcome.decision
    assert outcome.return_to == "/apps/tax"
    assert outcome.principal is not None and outcome.principal.username == "alice"
    assert outcome.principal.mfa is True and "zeimu-tantou" in outcome.principal.groups
    assert rp.complete(taken, params).reason is Reason.OIDC_CODE_REJECTED   # the browser's code, once
