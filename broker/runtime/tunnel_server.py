"""The broker's tunnel server: mutual-TLS HTTP/2 connections from agents, one CONNECT per flow.

Per connection: the device named by the client certificate is checked against the registry
snapshot; per CONNECT stream the destination is parsed, its port checked, the name resolved
once, every resolved address checked, and the broker connects only to an address it checked.
The stream's response carries the decision (200, or a deny status with reason headers). Bytes
then flow through `ztcore.tunnel.TunnelSession`. Each finished stream becomes one audit event,
durable before the stream is counted as closed.

Sessions: when `[identity] require_login` is on, every CONNECT carries the user's session token
(`proxy-authorization: Bearer <jwt>`), checked against this connection's client certificate
(RFC 8705), the revocation set and the destination's step-up limit; the last good token is
cached per connection, so a stream costs a dictionary lookup, not a signature check. When a
session is revoked, its open streams are reset within one registry poll (1 s).

Non-CONNECT requests on the tunnel: `POST /v1/renew` (a CSR → a renewed device certificate) and
the login service's control requests (`broker.runtime.identity_service`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import h2.events as ev
from cryptography import x509
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from broker.config import BrokerConfig
from broker.devices import Device
from broker.pki import DeviceIdentity, device_identity
from broker.registry import RegistrySnapshot
from broker.runtime.audit_sink import AuditSink
from broker.runtime.identity_service import CONTROL_KINDS, ControlReply, IdentityService
from broker.sessions import SessionDecision, still_valid, thumbprint_of
from ztcore import h2tuning, headers
from ztcore.audit import AuditEvent
from ztcore.authority import AuthorityError, parse_authority
from ztcore.decision import Decision, allow, deny
from ztcore.destinations import check_addresses, check_port
from ztcore.errors import RemoteProtocolError
from ztcore.reasons import REASON_TEXT, Reason
from ztcore.runtime.pipe import StreamPipe
from ztcore.tunnel import BodyEndpoint, PeerDraining, Stream, TunnelSession

log = logging.getLogger("sekimori.tunnel")
IpAddress = IPv4Address | IPv6Address
MAX_RENEW_BODY_BYTES = 16 * 1024
TOUCH_INTERVAL_SECONDS = 60.0

Renewer = Callable[[DeviceIdentity, bytes], bytes]


@dataclass
class BrokerState:
    """What the tunnel connections share; built by the composition root (broker.runtime.server)."""
    config: BrokerConfig
    audit: AuditSink
    renew: Renewer
    lookup_device: Callable[[str], Device | None]
    touch_device: Callable[[str, float], None] = lambda device_id, now: None
    last_touched: dict[str, float] = field(default_factory=dict)
    registry: RegistrySnapshot = field(default_factory=RegistrySnapshot)
    connections: set[TunnelConnection] = field(default_factory=set)
    shutting_down: bool = False
    streams_open: int = 0
    clock: Callable[[], float] = time.time
    identity: IdentityService | None = None

    def device_seen(self, device_id: str) -> None:
        """Record when a device last connected (at most once a minute per device, off the loop)."""
        now = self.clock()
        if now - self.last_touched.get(device_id, 0.0) < TOUCH_INTERVAL_SECONDS:
            return
        self.last_touched[device_id] = now
        asyncio.get_event_loop().run_in_executor(None, self._touch, device_id, now)

    def _touch(self, device_id: str, now: float) -> None:
        try:
            self.touch_device(device_id, now)
        except Exception:  # last-seen is informational: never let it hurt the tunnel
            log.exception("could not record last-seen time of %s", device_id)

    def registry_changed(self, snapshot: RegistrySnapshot) -> None:
        previous, self.registry = self.registry, snapshot
        now = self.clock()
        for device in snapshot.devices.values():
            before = previous.devices.get(device.id)
            # Newly revoked since the last snapshot (not at start-up: those are old news).
            if device.revoked and previous.revision >= 0 and (before is None or not before.revoked):
                text = REASON_TEXT[Reason.DEVICE_REVOKED]
                self.audit.write(AuditEvent(
                    time=now, kind="device-revoked", tenant=device.tenant_id, device=device.id,
                    decision="deny", reason=Reason.DEVICE_REVOKED.value, message_ja=text.ja,
                    message_en=text.en, detail=device.revoke_reason or None))
        for conn in list(self.connections):
            conn.recheck_device(now)

    def revocations_changed(self, revoked: frozenset[str]) -> None:
        """New revocation set: streams opened under a revoked session or token end now."""
        if self.identity is None:
            return
        self.identity.revoked = revoked
        for conn in list(self.connections):
            conn.recheck_sessions(revoked)


@dataclass(slots=True)
class Flow:
    """Per-stream facts that end up in the audit event."""
    authority: str
    started: float
    started_monotonic: float
    decision: Decision | None = None
    address: str | None = None
    kind: str = "stream"
    user: str | None = None
    sid: str | None = None
    jti: str | None = None


class TunnelConnection(asyncio.Protocol):
    def __init__(self, state: BrokerState) -> None:
        self.state = state
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.identity: DeviceIdentity | None = None
        self.device_denial: Decision | None = None
        self.device_lookup: asyncio.Task[None] | None = None
        self.session: TunnelSession | None = None
        self.last_received = time.monotonic()
        self._idle_handle: asyncio.TimerHandle | None = None
        self.peer = "?"
        self.thumbprint = ""
        self._session_cache: tuple[bytes, SessionDecision] | None = None

    # -- connection lifecycle ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        transport.set_write_buffer_limits(high=h2tuning.TUNNEL_WRITE_HIGH_WATER_BYTES)
        self.peer = str(transport.get_extra_info("peername"))
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der or (ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2"):
            log.warning("tunnel from %s without client certificate or ALPN h2: closing", self.peer)
            transport.abort()
            return
        self.identity = device_identity(x509.load_der_x509_certificate(der))
        self.thumbprint = thumbprint_of(der)
        self.device_denial = self.state.registry.check(self.identity, self.state.clock())
        if self.device_denial is None and self.identity is not None:
            self.state.device_seen(self.identity.device_id)
        if self.device_denial is not None and self.device_denial.reason is Reason.DEVICE_UNKNOWN \
                and self.identity is not None:
            # Enrolled moments ago (perhaps on another broker): ask the store before refusing.
            self.device_lookup = self.loop.create_task(self._lookup_device(self.identity))
        conn = h2tuning.new_connection(client_side=False)
        self.session = TunnelSession(conn, transport.writelines, self._stream_closed, self._event)
        h2tuning.start(conn)
        self.session.flush()
        self.state.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.state.connections:
            log.info("tunnel from %s closed%s", self.peer, f": {exc!r}" if exc else "")
        self.state.connections.discard(self)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self.session is not None:
            self.session.close_all()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        self.last_received = time.monotonic()
        try:
            session.receive(data)
        except RemoteProtocolError as exc:
            log.warning("closing tunnel from %s: %s", self.peer, exc)
            session.flush()
            assert self.transport is not None
            self.transport.close()
            return
        session.flush()

    def _event(self, event: ev.Event | PeerDraining) -> None:
        if isinstance(event, ev.RequestReceived):
            self._request(event)
        elif isinstance(event, ev.ConnectionTerminated):
            assert self.session is not None and self.transport is not None
            self.session.flush()
            self.transport.close()

    def _flush(self) -> None:
        if self.session is not None:
            self.session.flush()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.transport_congested()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.transport_drained()

    def _arm_idle_timer(self) -> None:
        timeout = self.state.config.idle_timeout_seconds
        self._idle_handle = self.loop.call_later(timeout / 3, self._check_idle, timeout)

    def _check_idle(self, timeout: float) -> None:
        if time.monotonic() - self.last_received > timeout and self.transport is not None:
            log.info("tunnel from %s idle for %.0f s: closing", self.peer, timeout)
            self.goaway()
            self.transport.close()
            return
        self._arm_idle_timer()

    def goaway(self) -> None:
        """Graceful GOAWAY: the agent opens new streams elsewhere; open ones may finish."""
        if self.session is None:
            return
        self.session.conn.send_graceful_goaway()
        self.session.flush()

    async def _lookup_device(self, identity: DeviceIdentity) -> None:
        try:
            device = await asyncio.to_thread(self.state.lookup_device, identity.device_id)
        except Exception:
            log.exception("device lookup failed")
            return
        if device is not None:
            snapshot = RegistrySnapshot.build(-1, [device])
            self.device_denial = snapshot.check(identity, self.state.clock())
            if self.device_denial is None:
                self.state.device_seen(identity.device_id)

    def recheck_device(self, now: float) -> None:
        """The registry changed: a revoked device loses its open streams at once."""
        self.device_denial = self.state.registry.check(self.identity, now)
        if self.device_denial is not None and self.session is not None:
            if self.session.streams:
                log.info("device %s: %s; resetting %d open streams",
                         self.identity.device_id if self.identity else "?",
                         self.device_denial.reason.value, len(self.session.streams))
            for stream_id in list(self.session.streams):
                self.session.abort(stream_id, ErrorCodes.CANCEL)

    def recheck_sessions(self, revoked: frozenset[str]) -> None:
        self._session_cache = None
        if self.session is None:
            return
        for stream_id, stream in list(self.session.streams.items()):
            flow = stream.context
            if isinstance(flow, Flow) and (flow.sid in revoked or flow.jti in revoked):
                log.info("session of %s revoked: resetting stream %d to %s", flow.user, stream_id,
                         flow.authority)
                flow.decision = deny(Reason.SESSION_REVOKED, status=401,
                                     detail="the session was revoked while the stream was open")
                self.session.abort(stream_id, ErrorCodes.CANCEL)
        self.session.flush()

    def _check_session(self, fields: dict[bytes, bytes], flow: Flow) -> Decision | None:
        """None when the stream may proceed; else the deny. Records the user on the flow."""
        service = self.state.identity
        if service is None or not service.config.require_login:
            return None
        raw = fields.get(b"proxy-authorization")
        if not raw:
            return deny(Reason.LOGIN_REQUIRED, status=401, detail="no session token on the stream")
        if raw[:7].lower() != b"bearer ":
            return deny(Reason.SESSION_INVALID, status=401,
                        detail="proxy-authorization is not a Bearer token")
        token = raw[7:].strip()
        now = self.state.clock()
        host = flow.authority.rpartition(":")[0].strip("[]").lower().rstrip(".")
        checked = None
        cached = self._session_cache
        if cached is not None and cached[0] == token and still_valid(
                cached[1], now, service.revoked, service.config.max_mfa_age_for(host)):
            checked = cached[1]
        if checked is None:
            checked = service.check_token(token, self.thumbprint, host, now)
            if checked.allowed:
                self._session_cache = (token, checked)
        if checked.principal is not None:
            flow.user = checked.principal.username
        if checked.session is not None:
            flow.sid, flow.jti = checked.session.sid, checked.session.jti
        return None if checked.allowed else checked.decision

    # -- streams ------------------------------------------------------------------------------

    def _request(self, event: ev.RequestReceived) -> None:
        assert self.session is not None
        fields = dict(event.headers or [])
        authority = fields.get(b":authority", b"").decode("ascii", "replace")
        # The stream exists from now on, so bytes that follow the headers are kept for it even
        # while its device is still being looked up.
        stream = self.session.add_stream(event.stream_id,
                                         Flow(authority, self.state.clock(), time.monotonic()))
        self.state.streams_open += 1
        lookup = self.device_lookup
        if lookup is not None and not lookup.done():
            lookup.add_done_callback(lambda _: (self._route(stream, fields), self._flush()))
            return
        self._route(stream, fields)

    def _route(self, stream: Stream, fields: dict[bytes, bytes]) -> None:
        assert self.session is not None
        if stream.finished:
            return
        flow: Flow = stream.context
        method = fields.get(b":method", b"")
        authority = flow.authority
        if self.state.shutting_down:
            self._refuse(stream, deny(Reason.BROKER_SHUTTING_DOWN, status=503))
        elif self.device_denial is not None:
            self._refuse(stream, self.device_denial)
        elif method == b"CONNECT":
            refused = self._check_session(fields, flow)
            if refused is not None:
                self._refuse(stream, refused)
            else:
                self.loop.create_task(self._open(stream, authority))
        elif method == b"POST" and fields.get(b":path") == b"/v1/renew":
            flow.kind = "renewal"
            self.session.bind(stream.stream_id, _Collector(self, stream, self.renew))
        elif method == b"POST" and self.state.identity is not None \
                and fields.get(b":path", b"").decode("ascii", "replace") in CONTROL_KINDS:
            path = fields[b":path"].decode("ascii")
            flow.kind = CONTROL_KINDS[path]
            self.session.bind(stream.stream_id, _Collector(
                self, stream, lambda s, body: self.control(s, path, body)))
        else:
            self._refuse(stream, deny(Reason.REQUEST_INVALID, status=405,
                                      detail=f"method {method.decode('ascii', 'replace')} "
                                             "not supported on the tunnel"))

    def _refuse(self, stream: Stream, decision: Decision) -> None:
        """Answer a stream with a deny and end it (RFC 9113 §8.1: RST_STREAM NO_ERROR after
        a complete response tells the peer to stop sending without an error)."""
        assert self.session is not None
        flow: Flow = stream.context
        flow.decision = decision
        conn = self.session.conn
        try:
            conn.send_headers(stream.stream_id, headers.response_headers(decision), end_stream=True)
            stream.sent_eof = True
            self.session.abort(stream.stream_id, ErrorCodes.NO_ERROR)
        except ProtocolError:
            self.session.abort(stream.stream_id, ErrorCodes.CANCEL)

    async def _open(self, stream: Stream, authority_text: str) -> None:
        try:
            decision, pipe = await self._decide_and_connect(stream, authority_text)
        except Exception:  # fail closed, and say so
            log.exception("decision for %s failed", authority_text)
            decision, pipe = deny(Reason.INTERNAL_ERROR, status=500), None
        session = self.session
        if session is None or stream.finished:
            if pipe is not None:
                pipe.close()
            return
        if pipe is None:
            self._refuse(stream, decision)
            session.flush()
            return
        flow: Flow = stream.context
        flow.decision = decision
        pipe.session, pipe.stream_id = session, stream.stream_id
        try:
            session.conn.send_headers(stream.stream_id, headers.response_headers(decision))
        except ProtocolError:
            pipe.close()
            session.abort(stream.stream_id, ErrorCodes.CANCEL)
            return
        session.bind(stream.stream_id, pipe)
        session.flush()

    async def _decide_and_connect(self, stream: Stream,
                                  authority_text: str) -> tuple[Decision, StreamPipe | None]:
        config = self.state.config
        policy = config.destinations
        try:
            authority = parse_authority(authority_text)
        except AuthorityError as exc:
            return deny(Reason.AUTHORITY_INVALID, status=400, detail=str(exc)), None
        refused = check_port(authority, policy)
        if refused is not None:
            return refused, None
        if authority.ip is not None:
            addresses: list[IpAddress] = [authority.ip]
        else:
            addresses = await self._resolve(authority.host, authority.port)
        checked = check_addresses(addresses, policy)
        if not checked.allowed:
            return checked, None
        flow: Flow = stream.context
        last = deny(Reason.UPSTREAM_UNREACHABLE, status=502, detail=f"{authority} refused")
        for address in addresses:
            flow.address = str(address)
            try:
                async with asyncio.timeout(config.connect_timeout_seconds):
                    _, pipe = await self.loop.create_connection(StreamPipe, str(address),
                                                                authority.port)
            except TimeoutError:
                last = deny(Reason.UPSTREAM_TIMEOUT, status=504,
                            detail=f"{address} port {authority.port} did not answer")
                continue
            except OSError as exc:
                last = deny(Reason.UPSTREAM_UNREACHABLE, status=502,
                            detail=f"{address} port {authority.port}: {exc.strerror or exc}")
                continue
            return allow(), pipe
        return last, None

    async def _resolve(self, host: str, port: int) -> list[IpAddress]:
        static = self.state.config.static_hosts.get(host)
        if static is not None:
            return list(static)
        try:
            async with asyncio.timeout(self.state.config.connect_timeout_seconds):
                infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            return []
        seen: dict[IpAddress, None] = {}
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                seen[ip_address(sockaddr[0])] = None
        return list(seen)

    def _stream_closed(self, stream: Stream) -> None:
        flow: Flow = stream.context
        decision = flow.decision or deny(Reason.REQUEST_INVALID, detail="stream ended before a decision")
        ident = self.identity
        event = AuditEvent(
            time=flow.started, kind=flow.kind,
            tenant=ident.tenant_id if ident else None, device=ident.device_id if ident else None,
            destination=(flow.authority or None) if flow.kind == "stream" else None,
            address=flow.address,
            decision=decision.action.value, reason=decision.reason.value,
            message_ja=None if decision.allowed else decision.message_ja,
            message_en=None if decision.allowed else decision.message_en, user=flow.user,
            detail=decision.detail or None,
            bytes_up=stream.bytes_received, bytes_down=stream.bytes_sent,
            duration_seconds=round(time.monotonic() - flow.started_monotonic, 6))
        durable = self.state.audit.write(event)
        durable.add_done_callback(self._stream_recorded)

    def _stream_recorded(self, future: asyncio.Future[None]) -> None:
        self.state.streams_open -= 1
        if future.exception() is not None:
            log.error("audit event lost: %s", future.exception())

    # -- certificate renewal --------------------------------------------------------------------

    async def renew(self, stream: Stream, csr_pem: bytes) -> None:
        """Sign a renewed certificate for this connection's own device (store I/O in a thread)."""
        assert self.session is not None and self.identity is not None
        try:
            cert = await asyncio.to_thread(self.state.renew, self.identity, csr_pem)
        except Exception as exc:  # CsrError and store errors: deny with the reason
            log.warning("renewal for %s refused: %s", self.identity.device_id, exc)
            decision = deny(Reason.CSR_INVALID, status=400, detail=str(exc))
            reply = headers.response_headers(decision)
            cert = b""
        else:
            decision = allow()
            reply = [(b":status", b"200"), (b"content-type", b"application/pem-certificate-chain")]
        if stream.finished:
            return
        stream.context.decision = decision
        self._answer(stream, reply, cert)

    def _answer(self, stream: Stream, fields: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A complete response to one of the broker's own requests on the tunnel."""
        session = self.session
        assert session is not None
        try:
            session.conn.send_headers(stream.stream_id, fields)
        except ProtocolError:
            session.abort(stream.stream_id, ErrorCodes.CANCEL)
            return
        if body:
            session.send(stream.stream_id, body)
        session.end(stream.stream_id)
        session.flush()

    # -- login service -------------------------------------------------------------------------

    async def control(self, stream: Stream, path: str, body: bytes) -> None:
        """Answer a login-service request (directory, IdP and store I/O in a thread)."""
        service = self.state.identity
        assert service is not None and self.identity is not None
        try:
            reply = await asyncio.to_thread(service.handle, path, self.identity, self.thumbprint,
                                            body)
        except Exception:  # handle() does not raise; if it ever does, fail closed
            log.exception("login request %s failed", path)
            reply = ControlReply(deny(Reason.INTERNAL_ERROR, status=500))
        if stream.finished:
            return
        flow: Flow = stream.context
        flow.decision, flow.user = reply.audit or reply.decision, reply.user
        if reply.payload is not None and reply.decision.allowed:
            out = [(b":status", b"200"), (b"content-type", b"application/json"),
                   (b"cache-control", b"no-store")]
            body_out = json.dumps(reply.payload, ensure_ascii=False).encode("utf-8")
        else:
            out, body_out = headers.response_headers(reply.decision), b""
        self._answer(stream, out, body_out)


class _Collector(BodyEndpoint):
    """Gathers a small request body (a CSR, a login request); at its end `answer` runs."""

    def __init__(self, owner: TunnelConnection, stream: Stream,
                 answer: Callable[[Stream, bytes], Coroutine[Any, Any, None]]) -> None:
        super().__init__(MAX_RENEW_BODY_BYTES)
        self.owner, self.stream, self.answer = owner, stream, answer

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.overflowed:
            assert self.owner.session is not None
            self.owner.session.abort(self.stream.stream_id, ErrorCodes.REFUSED_STREAM)

    def write_eof(self) -> None:
        if not self.overflowed:
            self.owner.loop.create_task(self.answer(self.stream, bytes(self.body)))
