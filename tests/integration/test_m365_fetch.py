"""broker/runtime/m365_fetch.py against a real HTTP server on 127.0.0.1 (stdlib http.server)
that serves Microsoft's `/version/<instance>` and `/endpoints/<instance>` paths: the real 2024
endpoint file when the project's ../shared is there, else a small document of the same format."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from broker.m365 import MAX_ENDPOINT_BYTES, parse_endpoint_data
from broker.runtime.m365_fetch import (
    DEFAULT_BASE_URL,
    EndpointFetchError,
    FetchResult,
    fetch_endpoint_data,
    fetch_url,
    service_urls,
)

REAL = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "m365-endpoints"
        / "worldwide_2024-04-17_full_slivertea.json")
SYNTHETIC = json.dumps([
    {"id": 1, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online",
     "urls": ["outlook.office.com"], "ips": ["13.107.6.152/31"], "tcpPorts": "80,443",
     "expressRoute": True, "category": "Optimize", "required": True},
    {"id": 46, "serviceArea": "Common", "serviceAreaDisplayName": "Microsoft 365 Common and Office",
     "urls": ["*.office.net"], "tcpPorts": "443", "expressRoute": False, "category": "Default",
     "required": False}], indent=4).encode()
DOCUMENT = REAL.read_bytes() if REAL.is_file() else SYNTHETIC
VERSION = "2024041700"
REQUEST_ID = "b10c5ed1-bad1-445f-b386-b919946339a7"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    delay_seconds: float = 0.0
    chunks: int = 1  # > 1: the body is written in pieces, `delay_seconds` before each
    content_length: bool = True
    headers: dict[str, str] = field(default_factory=dict)


class MirrorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: MirrorServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        self.server.requests.append((parts.path, parse_qs(parts.query), dict(self.headers.items())))
        route = self.server.routes.get(parts.path, Route(404, b'{"error": "not found"}'))
        if route.chunks == 1:
            time.sleep(route.delay_seconds)
        self.send_response(route.status)
        self.send_header("Content-Type", "application/json")
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.content_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        try:
            size = max(1, -(-len(route.body) // route.chunks))
            for start in range(0, len(route.body), size):
                if route.chunks > 1:
                    time.sleep(route.delay_seconds)
                self.wfile.write(route.body[start:start + size])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def mirror() -> Iterator[MirrorServer]:
    server = MirrorServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    server.routes = {
        "/version/Worldwide": Route(body=json.dumps({"instance": "Worldwide",
                                                     "latest": VERSION}).encode()),
        "/endpoints/Worldwide": Route(body=DOCUMENT),
    }
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def base(server: MirrorServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def fetch(server: MirrorServer, known: str | None, *, timeout_seconds: float = 20.0,
          max_bytes: int = MAX_ENDPOINT_BYTES) -> FetchResult:
    return fetch_endpoint_data(base(server), "Worldwide", REQUEST_ID, known,
                               timeout_seconds=timeout_seconds, max_bytes=max_bytes)


def failure(call: Callable[[], object]) -> str:
    with pytest.raises(EndpointFetchError) as caught:
        call()
    return str(caught.value)


def test_a_known_version_is_not_downloaded(mirror: MirrorServer) -> None:
    result = fetch_endpoint_data(base(mirror), "Worldwide", REQUEST_ID, VERSION)
    assert result.unchanged and result.version == VERSION and result.raw is None
    assert [(path, query) for path, query, _ in mirror.requests] == [
        ("/version/Worldwide", {"clientrequestid": [REQUEST_ID]})]


@pytest.mark.parametrize("known", [None, "2024030100"])
def test_a_new_version_is_downloaded(mirror: MirrorServer, known: str | None) -> None:
    result = fetch_endpoint_data(base(mirror), "Worldwide", REQUEST_ID, known)
    assert not result.unchanged and result.version == VERSION and result.raw == DOCUMENT
    assert [(path, query) for path, query, _ in mirror.requests] == [
        ("/version/Worldwide", {"clientrequestid": [REQUEST_ID]}),
        ("/endpoints/Worldwide", {"clientrequestid": [REQUEST_ID]})]
    assert result.raw is not None
    data = parse_endpoint_data(result.raw)
    assert len(data.sets) == (72 if REAL.is_file() else 2)
    assert mirror.requests[0][2]["User-Agent"] == "Sekimori-M365-Import"


def test_no_ipv6_and_a_callers_client(mirror: MirrorServer) -> None:
    with httpx.Client(headers={"X-Deployment": "city-a"}, trust_env=False) as client:
        result = fetch_endpoint_data(base(mirror) + "/", "Worldwide", REQUEST_ID, None, client=client,
                                     no_ipv6=True)
    assert result.raw == DOCUMENT
    assert mirror.requests[1][1] == {"clientrequestid": [REQUEST_ID], "NoIPv6": ["true"]}
    assert all(headers["X-Deployment"] == "city-a" for _, _, headers in mirror.requests)


def test_a_server_error_names_the_url_and_status(mirror: MirrorServer) -> None:
    mirror.routes["/version/Worldwide"] = Route(500, b"oops")
    message = failure(lambda: fetch(mirror, None))
    assert message == (f"GET {base(mirror)}/version/Worldwide?clientrequestid={REQUEST_ID}: "
                       "HTTP 500 Internal Server Error")
    mirror.routes["/version/Worldwide"] = Route(body=b'{"latest": "2025010100"}')
    mirror.routes["/endpoints/Worldwide"] = Route(503, b"")
    message = failure(lambda: fetch(mirror, VERSION))
    assert message.startswith(f"GET {base(mirror)}/endpoints/Worldwide?clientrequestid=")
    assert message.endswith(": HTTP 503 Service Unavailable")


@pytest.mark.parametrize(("reply", "detail"), [
    (b"<html>Service unavailable</html>", "not a version reply: $: not valid JSON"),
    (b'{"instance": "Worldwide", "latest": "soon"}', "not a version reply: latest: expected 10 digits"),
    (b'{"instance": "China", "latest": "2024041700"}',
     "not a version reply: instance: expected 'Worldwide', got 'China'"),
    (b"[" * 70_000, "body is more than the limit of 65536 bytes"),
])
def test_a_bad_version_reply(mirror: MirrorServer, reply: bytes, detail: str) -> None:
    mirror.routes["/version/Worldwide"] = Route(body=reply, content_length=False)
    message = failure(lambda: fetch(mirror, None))
    assert message.startswith(f"GET {base(mirror)}/version/Worldwide?clientrequestid={REQUEST_ID}: ")
    assert detail in message
    assert [path for path, _, _ in mirror.requests] == ["/version/Worldwide"]


def test_a_slow_server_times_out(mirror: MirrorServer) -> None:
    mirror.routes["/endpoints/Worldwide"] = Route(body=DOCUMENT, delay_seconds=1.5)
    started = time.monotonic()
    message = failure(lambda: fetch(mirror, None, timeout_seconds=0.3))
    assert time.monotonic() - started < 1.4
    assert message.startswith(f"GET {base(mirror)}/endpoints/Worldwide?")
    assert "timed out after 0.3 s (ReadTimeout)" in message


def test_a_trickling_body_hits_the_overall_deadline(mirror: MirrorServer) -> None:
    # Each piece comes within the read timeout; the whole takes longer than the deadline.
    mirror.routes["/endpoints/Worldwide"] = Route(body=DOCUMENT, delay_seconds=0.15, chunks=8)
    message = failure(lambda: fetch(mirror, None, timeout_seconds=0.5))
    assert "timed out after 0.5 s (body still arriving)" in message


@pytest.mark.parametrize("content_length", [True, False])
def test_an_oversized_body_is_refused(mirror: MirrorServer, content_length: bool) -> None:
    mirror.routes["/endpoints/Worldwide"] = Route(body=DOCUMENT, content_length=content_length)
    message = failure(lambda: fetch(mirror, None, max_bytes=len(DOCUMENT) - 1))
    assert message.startswith(f"GET {base(mirror)}/endpoints/Worldwide?")
    expected = (f"body of {len(DOCUMENT)} bytes is more than the limit of {len(DOCUMENT) - 1}"
                if content_length else f"body is more than the limit of {len(DOCUMENT) - 1} bytes")
    assert message.endswith(expected)
    result = fetch_endpoint_data(base(mirror), "Worldwide", REQUEST_ID, None, max_bytes=len(DOCUMENT))
    assert result.raw == DOCUMENT


def test_redirects_are_not_followed(mirror: MirrorServer) -> None:
    mirror.routes["/m365.json"] = Route(302, b"", headers={"Location": "http://elsewhere.example/x"})
    message = failure(lambda: fetch_url(base(mirror) + "/m365.json"))
    assert message == (f"GET {base(mirror)}/m365.json: HTTP 302 Found (redirect to "
                       "http://elsewhere.example/x; configure that URL directly)")


def test_tls_to_a_plain_http_server_is_a_tls_error(mirror: MirrorServer) -> None:
    url = f"https://127.0.0.1:{mirror.server_address[1]}/m365.json"
    message = failure(lambda: fetch_url(url, timeout_seconds=5))
    assert message.startswith(f"GET {url}: TLS error: "), message


def test_nobody_listening() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = failure(lambda: fetch_url(f"http://127.0.0.1:{port}/m365.json", timeout_seconds=5))
    assert message.startswith(f"GET http://127.0.0.1:{port}/m365.json: ConnectError: ")


def test_fetch_url_returns_the_body(mirror: MirrorServer) -> None:
    mirror.routes["/mirror/m365.json"] = Route(body=DOCUMENT, content_length=False)
    assert fetch_url(base(mirror) + "/mirror/m365.json") == DOCUMENT
    assert failure(lambda: fetch_url(base(mirror) + "/missing.json")).endswith(": HTTP 404 Not Found")
    assert "expected an http:// or https:// URL" in failure(lambda: fetch_url("file:///etc/passwd"))


def test_service_urls() -> None:
    urls = service_urls(DEFAULT_BASE_URL, "Worldwide", REQUEST_ID.upper())
    assert urls.version == f"https://endpoints.office.com/version/Worldwide?clientrequestid={REQUEST_ID}"
    assert urls.endpoints == f"https://endpoints.office.com/endpoints/Worldwide?clientrequestid={REQUEST_ID}"
    mirrored = service_urls("http://mirror.city.local:8080/m365/", "USGovDoD", REQUEST_ID, no_ipv6=True)
    assert mirrored.version == ("http://mirror.city.local:8080/m365/version/USGovDoD"
                                f"?clientrequestid={REQUEST_ID}")
    assert mirrored.endpoints.endswith(f"/m365/endpoints/USGovDoD?clientrequestid={REQUEST_ID}&NoIPv6=true")
    assert str(uuid.UUID(parse_qs(urlsplit(urls.version).query)["clientrequestid"][0])) == REQUEST_ID
    for bad, problem in [(("ftp://x", "Worldwide", REQUEST_ID), "base URL"),
                         (("https://x?a=1", "Worldwide", REQUEST_ID), "base URL"),
                         (("https://x", "World wide", REQUEST_ID), "instance"),
                         (("https://x", "../admin", REQUEST_ID), "instance"),
                         (("https://x", "Worldwide", "not-a-guid"), "client request id")]:
        assert failure(functools.partial(service_urls, *bad)).startswith(problem)
