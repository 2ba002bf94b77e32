"""The agent's side of the tunnel: one mutual-TLS HTTP/2 connection to the broker.

Keeps the connection up (reconnect with capped, jittered backoff), sends keepalive PINGs and
drops a connection whose PING goes unanswered, follows GOAWAY by reconnecting, opens a CONNECT
stream per local flow and returns the broker's decision, and renews the device certificate
over the tunnel before it expires. When no broker can be reached, `open_stream` answers a 503
decision at once: the agent never connects anywhere directly.

The user's session token (`session.json`, written by `sekimori-agent login`) goes on every
CONNECT as `proxy-authorization: Bearer …`; the file is re-read when it changes, and the token
is refreshed over the tunnel before it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import h2.events as ev
from cryptography import x509
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, TooManyStreamsError

from agent.config import AgentConfig
from agent.identity import csr_pem, key_pem, new_key, renewal_due
from agent.session import SESSION_FILE, AgentSession, parse_session, session_from_reply
from ztcore import h2tuning, headers
from ztcore.decision import Decision, deny
from ztcore.errors import ConfigError, RemoteProtocolError
from ztcore.reasons import Reason
from ztcore.runtime.files import write_private
from ztcore.tunnel import BodyEndpoint, PeerDraining, Stream, TunnelSession

log = logging.getLogger("sekimori.agent.tunnel")
PING_TIMEOUT_SECONDS = 10.0
OPEN_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5.0
WAIT_FOR_TUNNEL_SECONDS = 2.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024   # the signed rules carry every Microsoft 365 endpoint


def tunnel_ssl_context(config: AgentConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(config.ca_path))
    ctx.load_cert_chain(str(config.cert_path), str(config.key_path))
    ctx.set_alpn_protocols(["h2"])
    return ctx


class BrokerReply(NamedTuple):
    """The broker's answer to a request of the agent's own: status, body, and the decision (its
    reason headers when it refused)."""
    status: int
    body: bytes
    decision: Decision


@dataclass
class TunnelStatus:
    state: str = "starting"          # connecting / connected / disconnected
    broker: str = ""
    since: float = 0.0
    last_error: str = ""
    connects: int = 0
    streams_opened: int = 0
    last_denial: dict[str, str] = field(default_factory=dict)


class TunnelClientProtocol(asyncio.Protocol):
    def __init__(self, client: TunnelClient) -> None:
        self.client = client
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.session: TunnelSession | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.pending: dict[int, asyncio.Future[Decision]] = {}
        self.requests: dict[int, _Response] = {}
        self.draining = False
        self._ping_sent: float | None = None
        self._ping_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        transport.set_write_buffer_limits(high=h2tuning.TUNNEL_WRITE_HIGH_WATER_BYTES)
        conn = h2tuning.new_connection(client_side=True)
        self.session = TunnelSession(conn, transport.writelines, self._stream_closed, self._event)
        h2tuning.start(conn)
        self.session.flush()
        self._ping_task = self.loop.create_task(self._keepalive())

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.client.status.last_error = f"tunnel lost: {exc!r}"
        if self._ping_task is not None:
            self._ping_task.cancel()
        if self.session is not None:
            self.session.close_all()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        session = self.session
        assert session is not None and self.transport is not None
        try:
            session.receive(data)
        except RemoteProtocolError as exc:
            log.warning("broker violated HTTP/2: %s", exc)
            session.flush()
            self.transport.close()
            return
        session.flush()

    def _event(self, event: ev.Event | PeerDraining) -> None:
        if isinstance(event, ev.ResponseReceived):
            self._response(event)
        elif isinstance(event, ev.PingAckReceived):
            self._ping_sent = None
        elif isinstance(event, (ev.ConnectionTerminated, PeerDraining)):
            self.draining = True
            code = getattr(event, "error_code", ErrorCodes.NO_ERROR)
            self.client.status.last_error = f"broker sent GOAWAY ({code!r})"
            if self.session is not None and self.transport and (
                    not self.session.streams or isinstance(event, ev.ConnectionTerminated)):
                self.transport.close()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.transport_congested()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.transport_drained()

    @property
    def usable(self) -> bool:
        return self.session is not None and not self.draining and not self.closed.done()

    def open_stream(self, authority: str, context: object,
                    token: str | None = None) -> tuple[int, asyncio.Future[Decision]]:
        assert self.session is not None
        conn = self.session.conn
        stream_id = conn.get_next_available_stream_id()
        fields = [(b":method", b"CONNECT"), (b":authority", authority.encode("ascii"))]
        if token:
            fields.append((b"proxy-authorization", b"Bearer " + token.encode("ascii")))
        conn.send_headers(stream_id, fields)
        self.session.add_stream(stream_id, context)
        future: asyncio.Future[Decision] = self.loop.create_future()
        self.pending[stream_id] = future
        self.session.flush()
        return stream_id, future

    def request(self, method: str, path: str, body: bytes) -> asyncio.Future[BrokerReply]:
        """A small request to the broker itself (certificate renewal, login, refresh)."""
        assert self.session is not None
        conn = self.session.conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, [(b":method", method.encode()), (b":scheme", b"https"),
                                      (b":authority", self.client.config.server_name.encode()),
                                      (b":path", path.encode())])
        response = _Response(self.loop.create_future())
        self.requests[stream_id] = response
        self.session.add_stream(stream_id, response)
        self.session.bind(stream_id, response)
        self.session.send(stream_id, body)
        self.session.end(stream_id)
        return response.done

    def _response(self, event: ev.ResponseReceived) -> None:
        decision = headers.decision_from_response(event.headers or [])
        future = self.pending.pop(event.stream_id, None)
        if future is not None and not future.done():
            future.set_result(decision)
        response = self.requests.get(event.stream_id)
        if response is not None:
            response.status = decision.status if not decision.allowed else 200
            response.decision = decision

    def _stream_closed(self, stream: Stream) -> None:
        future = self.pending.pop(stream.stream_id, None)
        if future is not None and not future.done():
            future.set_result(deny(Reason.BROKER_UNREACHABLE, status=503,
                                   detail="the tunnel closed before the broker answered"))
        response = self.requests.pop(stream.stream_id, None)
        if response is not None and not response.done.done():
            status = response.status if not stream.reset else 502
            decision = response.decision if status < 500 or not stream.reset else deny(
                Reason.BROKER_UNREACHABLE, status=502, detail="the broker reset the request")
            response.done.set_result(BrokerReply(status, bytes(response.body), decision))
        if self.draining and self.session is not None and not self.session.streams:
            assert self.transport is not None
            self.transport.close()

    async def _keepalive(self) -> None:
        interval = self.client.config.keepalive_seconds
        while True:
            await asyncio.sleep(interval)
            if self._ping_sent is not None and \
                    time.monotonic() - self._ping_sent > max(PING_TIMEOUT_SECONDS, interval):
                log.warning("broker did not answer PING: reconnecting")
                self.client.status.last_error = "broker did not answer keepalive PING"
                assert self.transport is not None
                self.transport.abort()
                return
            if self.session is not None and self._ping_sent is None:
                self._ping_sent = time.monotonic()
                self.session.conn.ping(os.urandom(8))
                self.session.flush()
            await self.client.renew_if_due(self)
            await self.client.refresh_if_due(self)


class _Response(BodyEndpoint):
    """The broker's answer to one of our requests, collected in memory."""

    def __init__(self, done: asyncio.Future[BrokerReply]) -> None:
        super().__init__(MAX_RESPONSE_BYTES)
        self.done = done
        self.status = 502
        self.decision: Decision = deny(Reason.BROKER_UNREACHABLE, status=502,
                                       detail="the broker did not answer")


class TunnelClient:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.status = TunnelStatus(broker=config.broker)
        self.protocol: TunnelClientProtocol | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self.certificate_not_after = float("inf")
        self._task: asyncio.Task[None] | None = None
        self.user_session: AgentSession | None = None
        self._session_stamp: tuple[int, int] | None = None

    # -- the user's session ---------------------------------------------------------------------

    @property
    def session_path(self) -> Path:
        return self.config.data_dir / SESSION_FILE

    def current_session(self) -> AgentSession | None:
        """The session in `session.json`, re-read when the file changed (one stat per call)."""
        try:
            st = os.stat(self.session_path)
        except OSError:
            self.user_session, self._session_stamp = None, None
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._session_stamp:
            self._session_stamp = stamp
            try:
                self.user_session = parse_session(json.loads(self.session_path.read_bytes()))
            except (OSError, ValueError, ConfigError) as exc:
                log.error("cannot read the login session: %s", exc)
                self.user_session = None
        return self.user_session

    async def refresh_if_due(self, protocol: TunnelClientProtocol) -> None:
        session = self.current_session()
        now = time.time()
        if session is None or not session.refresh_due(now) or session.expired(now):
            return
        reply = await protocol.request("POST", "/v1/session/refresh",
                                       json.dumps({"token": session.token}).encode())
        if reply.status != 200:
            log.warning("session refresh refused: %s %s", reply.decision.reason.value,
                        reply.decision.detail)
            if reply.status < 500:   # refused for good: the user must log in again
                self.status.last_error = f"login needed: {reply.decision.reason.value}"
                with contextlib.suppress(OSError):
                    self.session_path.unlink()
            return
        try:
            fresh = session_from_reply(json.loads(reply.body), time.time())
        except (ValueError, ConfigError) as exc:
            log.error("unreadable session refresh reply: %s", exc)
            return
        write_session(self.session_path, fresh)
        log.info("session of %s refreshed until %s", fresh.user,
                 time.strftime("%H:%M:%S", time.localtime(fresh.expires_at)))

    def start(self) -> None:
        self._task = asyncio.get_event_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self.protocol is not None and self.protocol.transport is not None:
            if self.protocol.session is not None:
                try:
                    self.protocol.session.conn.close_connection(ErrorCodes.NO_ERROR)
                    self.protocol.session.flush()
                except ProtocolError:
                    pass
            self.protocol.transport.close()
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_event_loop()
        backoff = 0.25
        while not self._stopping:
            self.status.state = "connecting"
            started = time.monotonic()
            self.certificate_not_after = _certificate_not_after(self.config)
            try:
                ctx = tunnel_ssl_context(self.config)
                _, protocol = await asyncio.wait_for(loop.create_connection(
                    lambda: TunnelClientProtocol(self), self.config.broker_host,
                    self.config.broker_port, ssl=ctx, server_hostname=self.config.server_name),
                    CONNECT_TIMEOUT_SECONDS)
            except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
                self._disconnected(f"cannot reach broker {self.config.broker}: "
                                   f"{exc.__class__.__name__}: {exc}")
            else:
                self.protocol = protocol
                self.status.state, self.status.since = "connected", time.time()
                self.status.connects += 1
                self.status.last_error = ""
                self._connected.set()
                log.info("connected to broker %s", self.config.broker)
                await protocol.closed
                self._connected.clear()
                self.protocol = None
                self._disconnected(self.status.last_error or "connection to the broker closed")
                if protocol.draining:
                    backoff = 0.05
                elif time.monotonic() - started > 10:
                    backoff = 0.25
            if self._stopping:
                return
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, 30.0)

    def _disconnected(self, why: str) -> None:
        if self.status.state != "disconnected":
            self.status.since = time.time()
        self.status.state = "disconnected"
        self.status.last_error = why

    async def _usable_protocol(self) -> TunnelClientProtocol | None:
        protocol = self.protocol
        if protocol is not None and protocol.usable:
            return protocol
        if self.status.state == "disconnected" and self.status.connects and protocol is None \
                and self.status.last_error.startswith("cannot reach"):
            return None  # known down: answer at once, do not make the user wait
        try:
            await asyncio.wait_for(self._connected.wait(), WAIT_FOR_TUNNEL_SECONDS)
        except asyncio.TimeoutError:
            return None
        protocol = self.protocol
        return protocol if protocol is not None and protocol.usable else None

    async def open_stream(self, authority: str,
                          context: object = None) -> tuple[Decision, TunnelSession | None, int]:
        """Ask the broker for a stream to `authority`; returns its decision and the stream."""
        if time.time() >= self.certificate_not_after:
            # The broker would refuse the handshake (in TLS 1.3 only after it seemed to work):
            # say what is wrong and what to do, at once.
            return deny(Reason.DEVICE_CERTIFICATE_EXPIRED, status=503,
                        detail="run `sekimori-agent enroll` with a new code"), None, 0
        protocol = await self._usable_protocol()
        if protocol is None or protocol.session is None:
            why = self.status.last_error or "no tunnel to the broker"
            return deny(Reason.BROKER_UNREACHABLE, status=503, detail=why), None, 0
        try:
            session = self.current_session()
            stream_id, future = protocol.open_stream(authority, context,
                                                     session.token if session else None)
        except TooManyStreamsError:
            return deny(Reason.TOO_MANY_STREAMS, status=503,
                        detail=f"more than {h2tuning.MAX_CONCURRENT_STREAMS} open connections"), None, 0
        except ProtocolError as exc:
            return deny(Reason.BROKER_UNREACHABLE, status=503, detail=f"tunnel refused a stream: {exc}"), None, 0
        self.status.streams_opened += 1
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
                decision = await future
        except TimeoutError:
            protocol.session.abort(stream_id, ErrorCodes.CANCEL)
            return deny(Reason.UPSTREAM_TIMEOUT, status=504, detail="the broker did not answer in time"), None, 0
        if not decision.allowed:
            self.status.last_denial = {"destination": authority, "reason": decision.reason.value,
                                       "message_ja": decision.message_ja,
                                       "message_en": decision.message_en,
                                       "detail": decision.detail, "time": str(time.time())}
            return decision, None, 0
        return decision, protocol.session, stream_id

    async def renew_if_due(self, protocol: TunnelClientProtocol) -> None:
        """Renew the device certificate over this tunnel once 2/3 of its validity passed."""
        try:
            cert = x509.load_pem_x509_certificate(self.config.cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            log.error("cannot read device certificate: %s", exc)
            return
        if not renewal_due(cert.not_valid_before_utc.timestamp(),
                           cert.not_valid_after_utc.timestamp(), time.time()):
            return
        key = new_key()
        status, body, _ = await protocol.request("POST", "/v1/renew", csr_pem(key, os.uname().nodename))
        if status != 200:
            log.error("certificate renewal refused (%s): %s", status, body[:200])
            return
        try:
            x509.load_pem_x509_certificate(body)
        except ValueError:
            log.error("broker returned an unreadable certificate")
            return
        write_private(self.config.key_path.with_suffix(".key.new"), key_pem(key))
        write_private(self.config.cert_path.with_suffix(".crt.new"), body)
        os.replace(self.config.key_path.with_suffix(".key.new"), self.config.key_path)
        os.replace(self.config.cert_path.with_suffix(".crt.new"), self.config.cert_path)
        log.info("device certificate renewed; reconnecting with it")
        protocol.draining = True
        if protocol.session is not None and not protocol.session.streams and protocol.transport:
            protocol.transport.close()


def write_session(path: Path, session: AgentSession) -> None:
    """Replace `session.json` atomically (0600): a reader sees the old or the new one."""
    tmp = path.with_suffix(".json.new")
    write_private(tmp, json.dumps(session.to_json_dict(), ensure_ascii=False).encode("utf-8"))
    os.replace(tmp, path)


def _certificate_not_after(config: AgentConfig) -> float:
    """When the device certificate expires (inf if it cannot be read: the handshake will say)."""
    try:
        cert = x509.load_pem_x509_certificate(config.cert_path.read_bytes())
    except (OSError, ValueError):
        return float("inf")
    return cert.not_valid_after_utc.timestamp()
