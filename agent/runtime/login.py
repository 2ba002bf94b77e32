"""`sekimori-agent login` / `logout`: talk to the broker's login service over the mTLS tunnel.

Each command opens its own tunnel connection with the device certificate (so the session the
broker issues is bound to this device), sends its requests, writes or removes `session.json`,
and closes. The running agent notices the file change on its next stream.

OIDC follows RFC 8252 (OAuth for native apps): the broker hands back the provider's
authorization URL and the loopback redirect URI configured for it; this command listens on that
loopback address, opens the browser (or prints the URL when there is none), receives the
redirect, and passes its query to the broker, which holds the PKCE verifier, state and nonce
and redeems the code itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
import webbrowser
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

import h11

from agent.config import AgentConfig
from agent.runtime.tunnel_client import BrokerReply, TunnelClient, write_session
from agent.session import SESSION_FILE, AgentSession, session_from_reply
from ztcore.decision import Decision, deny
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

CONNECT_WAIT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_CALLBACK_BYTES = 16 * 1024


class LoginError(Exception):
    """The login could not be done; carries the broker's (or our) decision."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason.value)
        self.decision = decision


class BrokerSession:
    """One tunnel connection for the requests of one command (an SSO login's begin and complete
    go to the same broker, which holds the login's PKCE verifier, state and nonce)."""

    def __init__(self, config: AgentConfig) -> None:
        self.client = TunnelClient(config)

    async def __aenter__(self) -> BrokerSession:
        self.client.start()
        deadline = time.monotonic() + CONNECT_WAIT_SECONDS
        while self.client.protocol is None or not self.client.protocol.usable:
            if time.monotonic() > deadline:
                await self.client.stop()
                raise LoginError(deny(Reason.BROKER_UNREACHABLE, status=503,
                                      detail=self.client.status.last_error or "no tunnel"))
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.stop()

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One request to the login service; the JSON answer, or LoginError with the refusal."""
        protocol = self.client.protocol
        if protocol is None or not protocol.usable:
            raise LoginError(deny(Reason.BROKER_UNREACHABLE, status=503,
                                  detail=self.client.status.last_error or "the tunnel closed"))
        future = protocol.request("POST", path, json.dumps(payload).encode())
        return _answer(await asyncio.wait_for(future, REQUEST_TIMEOUT_SECONDS))


async def call(config: AgentConfig, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One request on a connection of its own."""
    async with BrokerSession(config) as broker:
        return await broker.call(path, payload)


def _answer(reply: BrokerReply) -> dict[str, Any]:
    if reply.status != 200:
        raise LoginError(reply.decision)
    try:
        data = json.loads(reply.body)
    except ValueError:
        raise LoginError(deny(Reason.REQUEST_INVALID, status=502,
                              detail="the broker's answer is not JSON")) from None
    if not isinstance(data, dict):
        raise LoginError(deny(Reason.REQUEST_INVALID, status=502, detail="unexpected answer"))
    return data


def _store(config: AgentConfig, payload: dict[str, Any]) -> AgentSession:
    try:
        session = session_from_reply(payload, time.time())
    except ConfigError as exc:
        raise LoginError(deny(Reason.REQUEST_INVALID, status=502, detail=str(exc))) from None
    write_session(config.data_dir / SESSION_FILE, session)
    return session


async def login_methods(config: AgentConfig) -> list[dict[str, str]]:
    data = await call(config, "/v1/login/methods", {})
    methods = data.get("methods")
    if not isinstance(methods, list):
        return []
    return [m for m in methods if isinstance(m, dict)]


async def login_password(config: AgentConfig, method: str, username: str, password: str,
                         totp: str) -> AgentSession:
    payload = {"method": method, "username": username, "password": password, "totp": totp}
    return _store(config, await call(config, "/v1/login/password", payload))


def loopback_address(redirect_uri: str) -> tuple[str, int, str]:
    """(host, port, path) of an RFC 8252 §7.3 loopback redirect; LoginError for anything else."""
    parts = urllib.parse.urlsplit(redirect_uri)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback or parts.port is None:
        raise LoginError(deny(Reason.REQUEST_INVALID, status=502,
                              detail=f"redirect URI {redirect_uri!r} is not an http loopback "
                                     "address with a port (RFC 8252 §7.3)"))
    return ("127.0.0.1" if host == "localhost" else host), parts.port, parts.path or "/"


_PAGE = """<!doctype html><html lang="ja"><meta charset="utf-8"><title>Sekimori</title>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>{title_ja}</h1><p>{text_ja}</p><h2>{title_en}</h2><p>{text_en}</p></body></html>"""


async def login_oidc(config: AgentConfig, method: str, *, open_browser: bool,
                     show_url: Callable[[str], None], timeout_seconds: float = 300.0) -> AgentSession:
    async with BrokerSession(config) as broker:
        return await _login_oidc(config, broker, method, open_browser, show_url, timeout_seconds)


async def _login_oidc(config: AgentConfig, broker: BrokerSession, method: str, open_browser: bool,
                      show_url: Callable[[str], None], timeout_seconds: float) -> AgentSession:
    begun = await broker.call("/v1/login/oidc/begin", {"method": method})
    url, redirect_uri = begun.get("authorization_url"), begun.get("redirect_uri")
    if not isinstance(url, str) or not isinstance(redirect_uri, str):
        raise LoginError(deny(Reason.REQUEST_INVALID, status=502, detail="incomplete begin answer"))
    host, port, path = loopback_address(redirect_uri)
    loop = asyncio.get_running_loop()
    params: asyncio.Future[dict[str, str]] = loop.create_future()
    result: asyncio.Future[tuple[bool, str]] = loop.create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            request = None
            while request is None:
                data = await asyncio.wait_for(reader.read(MAX_CALLBACK_BYTES), 30)
                if not data:
                    return
                conn.receive_data(data)
                event = conn.next_event()
                if isinstance(event, h11.Request):
                    request = event
            target = urllib.parse.urlsplit(request.target.decode("ascii", "replace"))
            if target.path != path or params.done():
                body, status = b"not found", 404
            else:
                params.set_result(dict(urllib.parse.parse_qsl(target.query, keep_blank_values=True)))
                ok, detail = await asyncio.wait_for(asyncio.shield(result), REQUEST_TIMEOUT_SECONDS + 10)
                body = (_PAGE.format(title_ja="ログインしました", text_ja="このウィンドウを閉じてください。",
                                     title_en="You are logged in", text_en="You can close this window.")
                        if ok else
                        _PAGE.format(title_ja="ログインできませんでした", text_ja=detail,
                                     title_en="Login failed", text_en=detail)).encode("utf-8")
                status = 200 if ok else 403
            writer.write(conn.send(h11.Response(status_code=status, headers=[
                ("content-type", "text/html; charset=utf-8"), ("content-length", str(len(body))),
                ("cache-control", "no-store"), ("connection", "close")])))
            writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (h11.ProtocolError, OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_server(serve, host, port)
    except OSError as exc:
        raise LoginError(deny(Reason.REQUEST_INVALID, status=500,
                              detail=f"cannot listen on {host}:{port} for the login redirect: {exc}")) from None
    try:
        show_url(url)
        if open_browser:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(webbrowser.open, url)
        try:
            query = await asyncio.wait_for(params, timeout_seconds)
        except asyncio.TimeoutError:
            raise LoginError(deny(Reason.OIDC_STATE_INVALID, status=408,
                                  detail=f"no login came back within {timeout_seconds:.0f} s")) from None
        try:
            session = _store(config, await broker.call("/v1/login/oidc/complete", {"params": query}))
        except LoginError as exc:
            d = exc.decision
            result.set_result((False, f"{d.reason.value}: {d.message_ja} / {d.message_en}"))
            raise
        result.set_result((True, ""))
        await asyncio.sleep(0.2)   # let the browser get its page
        return session
    finally:
        server.close()


async def logout(config: AgentConfig) -> bool:
    """Revoke the session at the broker and remove `session.json`; False if none was stored."""
    path = config.data_dir / SESSION_FILE
    try:
        token = json.loads(path.read_text()).get("token")
    except (OSError, ValueError, AttributeError):
        token = None
    if not token:
        return False
    try:
        await call(config, "/v1/logout", {"token": token})
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return True
