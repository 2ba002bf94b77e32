"""The agent's local HTTP proxy on 127.0.0.1: CONNECT, absolute-form http://, the PAC file.

Each client connection is parsed up to the end of its request head (h11 validates the head;
the bytes after it are passed through untouched), then carried as one CONNECT stream through
the tunnel — unless the agent's routing sends it direct (a Microsoft 365 breakout rule, an
open captive-portal window, an admin override; agent/router.py), in which case it goes from the
laptop itself and the agent logs and reports it. A deny from the broker, or no broker at all,
becomes an HTTP error with the reason in headers and body.

Local paths: `/proxy.pac` (PAC), `/__sekimori/status` (JSON status for `sekimori-agent status`),
and, POST only, `/__sekimori/captive-portal`, `/__sekimori/override` (the code in the
`sekimori-override-code` header) and `/__sekimori/override/clear`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import h11

from agent.router import Route, direct_event
from agent.runtime.direct import DirectUpstream, open_direct
from agent.runtime.routing import AgentRouting
from agent.runtime.tunnel_client import TunnelClient
from ztcore import headers as zh
from ztcore.authority import AuthorityError, parse_authority
from ztcore.blockpage import render_block
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason
from ztcore.runtime.pipe import StreamPipe

log = logging.getLogger("sekimori.agent.proxy")
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 30.0
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
              b"proxy-authenticate", b"te", b"trailer", b"upgrade"}
PAC_PATH = b"/proxy.pac"
STATUS_PATH = zh.AGENT_STATUS_PATH.encode()
CAPTIVE_PATH = b"/__sekimori/captive-portal"
OVERRIDE_PATH = b"/__sekimori/override"
OVERRIDE_CLEAR_PATH = b"/__sekimori/override/clear"
CONTROL_HEADER = b"sekimori-local-control"


class ProxyConnection(StreamPipe):
    """One client connection: head phase (parse, decide), then a byte pipe to its stream."""

    def __init__(self, tunnel: TunnelClient, pac: Callable[[], str],
                 status: Callable[[], dict[str, Any]], routing: AgentRouting | None = None) -> None:
        super().__init__()
        self.tunnel = tunnel
        self.routing = routing
        self.pac, self.status = pac, status
        self.head = bytearray()
        self.in_head = True
        self._head_timer: asyncio.TimerHandle | None = None

    def on_connected(self) -> None:  # the head phase reads; the relay phase starts paused
        self._head_timer = asyncio.get_event_loop().call_later(HEAD_TIMEOUT_SECONDS, self.close)

    def buffer_updated(self, nbytes: int) -> None:
        if not self.in_head:
            super().buffer_updated(nbytes)
            return
        self.head += self._view[:nbytes]
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD_BYTES:
                self._reply_local(431, b"request head too large\n")
            return
        self.in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
        assert self.transport is not None
        self.transport.pause_reading()
        head, rest = bytes(self.head[:end + 4]), bytes(self.head[end + 4:])
        self.head = bytearray()
        parser = h11.Connection(h11.SERVER)
        parser.receive_data(head)
        try:
            request = parser.next_event()
        except h11.RemoteProtocolError as exc:
            self._reply_local(400, f"malformed request: {exc}\n".encode())
            return
        if not isinstance(request, h11.Request):
            self._reply_local(400, b"malformed request\n")
            return
        asyncio.get_event_loop().create_task(self._route(request, rest))

    def eof_received(self) -> bool:
        if self.in_head:
            self.close()
            return False
        return super().eof_received()

    async def _route(self, request: h11.Request, rest: bytes) -> None:
        try:
            if request.method == b"CONNECT":
                await self._forward(request.target.decode("ascii", "replace"), request, b"", rest)
            elif request.target.startswith(b"http://"):
                authority, head = _origin_form(request)
                await self._forward(authority, request, head, rest)
            elif request.method == b"POST" and self.routing is not None \
                    and request.target in (CAPTIVE_PATH, OVERRIDE_PATH, OVERRIDE_CLEAR_PATH):
                self._control(request)
            elif request.target == PAC_PATH:
                self._reply_local(200, self.pac().encode(), b"application/x-ns-proxy-autoconfig")
            elif request.target == STATUS_PATH:
                self._reply_local(200, json.dumps(self.status(), ensure_ascii=False).encode(),
                                  b"application/json")
            else:
                self._reply_local(400, b"This is the Sekimori agent proxy: send CONNECT or an "
                                       b"absolute http:// URL.\n")
        except ValueError as exc:
            self._reply_local(400, f"bad request target: {exc}\n".encode())
        except Exception:  # fail closed: the client gets a reasoned error, not a hang
            log.exception("proxy request failed")
            self._deny(request, deny(Reason.INTERNAL_ERROR, status=500))

    async def _forward(self, authority: str, request: h11.Request, head: bytes, rest: bytes) -> None:
        if self.routing is not None:
            try:
                target = parse_authority(authority)
            except AuthorityError as exc:  # the broker would refuse it the same way
                self._deny(request, deny(Reason.AUTHORITY_INVALID, status=400, detail=str(exc)))
                return
            route = self.routing.route(target.host, target.port)
            if route.direct:
                await self._direct(target.host, target.port, str(target), route, request,
                                   head + rest)
                return
        await self._tunnel(authority, request, head, rest)

    async def _direct(self, host: str, port: int, destination: str, route: Route,
                      request: h11.Request, first: bytes) -> None:
        """Send this connection from the laptop itself; its event is logged when it ends."""
        routing = self.routing
        assert routing is not None
        started, t0, user = time.time(), time.monotonic(), routing.user()

        def closed(upstream: DirectUpstream) -> None:
            routing.direct_open -= 1
            routing.record_direct(direct_event(route, destination, user, started,
                                               time.monotonic() - t0, upstream.bytes_up,
                                               upstream.bytes_down))
        try:
            await open_direct(self, host, port, routing.resolve, closed)
        except (OSError, asyncio.TimeoutError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            routing.record_direct(direct_event(route, destination, user, started,
                                               time.monotonic() - t0, 0, 0, error=why))
            self._reply_local(502, f"Direct connection to {destination} failed ({route.mode.value}): "
                                   f"{why}\n".encode())
            return
        routing.direct_open += 1
        routing.direct_total += 1
        if self.transport is None or self.transport.is_closing():
            self.abort_link()
            return
        if request.method == b"CONNECT":
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if first:
            assert self.session is not None
            self.session.send(self.stream_id, first)
        self.transport.resume_reading()

    def abort_link(self) -> None:
        if self.session is not None:
            self.session.abort(self.stream_id)

    def _control(self, request: h11.Request) -> None:
        routing = self.routing
        assert routing is not None
        if not any(k == CONTROL_HEADER for k, _ in request.headers):
            # A web page can make the browser POST here; it cannot add this header without a
            # CORS preflight, which the agent never grants.
            self._reply_local(403, b"local control requests need the sekimori-local-control "
                                   b"header (sekimori-agent sends it)\n")
            return
        if request.target == CAPTIVE_PATH:
            answer = routing.open_captive_portal()
        elif request.target == OVERRIDE_CLEAR_PATH:
            answer = routing.clear_override()
        else:
            code = next((v.decode("ascii", "replace") for k, v in request.headers
                         if k == b"sekimori-override-code"), "")
            answer = routing.apply_override(code)
        body = json.dumps(answer.to_json_dict(), ensure_ascii=False).encode("utf-8")
        self._reply_local(200 if answer.ok else 409, body, b"application/json")

    async def _tunnel(self, authority: str, request: h11.Request, head: bytes, rest: bytes) -> None:
        decision, session, stream_id = await self.tunnel.open_stream(authority, self)
        if self.transport is None or self.transport.is_closing():
            if session is not None:
                session.abort(stream_id)
            return
        if session is None:
            self._deny(request, decision)
            return
        self.session, self.stream_id = session, stream_id
        if request.method == b"CONNECT":
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        session.bind(stream_id, self)
        if head or rest:
            session.send(stream_id, head + rest)

    def _deny(self, request: h11.Request, decision: Decision) -> None:
        wants_html = any(k == b"accept" and b"text/html" in v for k, v in request.headers)
        body, ctype = render_block(decision, request.target.decode("ascii", "replace"), wants_html)
        extra = [(k.encode(), v.encode("ascii", "replace")) for k, v in zh.decision_headers(decision)]
        # The agent, not the app, logs the user in: a 401 would make a browser ask for a
        # password it has no business knowing, so session refusals reach the app as 403.
        status = 403 if decision.status in (401, 407) else decision.status
        self._send_response(status, body, ctype, extra)

    def _reply_local(self, status: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8") -> None:
        self._send_response(status, body, ctype, [])

    def _send_response(self, status: int, body: bytes, ctype: bytes,
                       extra: list[tuple[bytes, bytes]]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: agent\r\n\r\n")
        conn.next_event()
        head = conn.send(h11.Response(status_code=status, reason=_phrase(status), headers=[
            (b"content-type", ctype), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), (b"cache-control", b"no-store"), *extra]))
        self.transport.write((head or b"") + body)
        self.transport.close()


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _origin_form(request: h11.Request) -> tuple[str, bytes]:
    """Absolute-form http:// request → (host:port, the head rewritten to origin form).

    The request is sent with `Connection: close`: one request per client connection, so the
    response can be passed through without parsing it.
    """
    url = urlsplit(request.target.decode("ascii"))
    if not url.hostname:
        raise ValueError("no host in URL")
    host = url.hostname
    port = url.port or 80
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [request.method + b" " + path.encode("ascii") + b" HTTP/1.1"]
    has_host = False
    for name, value in request.headers:
        if name in HOP_BY_HOP:
            continue
        has_host = has_host or name == b"host"
        lines.append(name + b": " + value)
    if not has_host:
        lines.insert(1, b"host: " + url.netloc.encode("ascii"))
    lines.append(b"connection: close")
    return authority, b"\r\n".join(lines) + b"\r\n\r\n"


async def serve_proxy(tunnel: TunnelClient, host: str, port: int, pac: Callable[[], str],
                      status: Callable[[], dict[str, Any]],
                      routing: AgentRouting | None = None) -> asyncio.AbstractServer:
    loop = asyncio.get_event_loop()
    return await loop.create_server(lambda: ProxyConnection(tunnel, pac, status, routing), host, port,
                                    reuse_address=True)
