"""The agent's local HTTP proxy on 127.0.0.1: CONNECT, absolute-form http://, the PAC file.

Each client connection is parsed up to the end of its request head (h11 validates the head;
the bytes after it are passed through untouched), then carried as one CONNECT stream through
the tunnel. A deny from the broker, or no broker at all, becomes an HTTP error with the reason
in headers and body; nothing ever goes direct.

Local paths: `/proxy.pac` (PAC) and `/__sekimori/status` (JSON status for `sekimori-agent
status`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import h11

from agent.blockpage import render_block
from agent.runtime.tunnel_client import TunnelClient
from ztcore import headers as zh
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


class ProxyConnection(StreamPipe):
    """One client connection: head phase (parse, decide), then a byte pipe to its stream."""

    def __init__(self, tunnel: TunnelClient, pac: Callable[[], str],
                 status: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self.tunnel = tunnel
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
                await self._tunnel(request.target.decode("ascii", "replace"), request, b"", rest)
            elif request.target.startswith(b"http://"):
                authority, head = _origin_form(request)
                await self._tunnel(authority, request, head, rest)
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
                      status: Callable[[], dict[str, Any]]) -> asyncio.AbstractServer:
    loop = asyncio.get_event_loop()
    return await loop.create_server(lambda: ProxyConnection(tunnel, pac, status), host, port,
                                    reuse_address=True)
