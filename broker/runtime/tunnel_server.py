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

Posture: a stream opens only for a device that is not quarantined and whose last signed
posture report is fresh and compliant, unless its destination is a repair destination
(`[posture] quarantine_allow`); every second, and at once on a new verdict or quarantine, open
streams that no longer pass are reset (`broker.runtime.posture_service`).

The gates and the re-checks of open streams live in `broker.runtime.stream_gates`.
Non-CONNECT requests on the tunnel (`broker.runtime.tunnel_control`): `POST /v1/renew`, the login
service's requests and `POST /v1/posture`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from ipaddress import IPv4Address, IPv6Address, ip_address
from urllib.parse import urlsplit

import h2.events as ev
from cryptography import x509
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from broker.pki import DeviceIdentity, device_identity
from broker.registry import RegistrySnapshot
from broker.runtime.broker_state import BrokerState
from broker.runtime.stream_gates import Flow, StreamGates
from broker.runtime.tunnel_control import ControlRequests
from broker.sessions import SessionDecision, thumbprint_of
from swg.inspection import HttpRecord
from swg.runtime.interceptor import Interceptor, RequestCheck
from swg.web_verdict import judge
from ztcore import h2tuning, headers
from ztcore.audit import AuditEvent
from ztcore.authority import AuthorityError, parse_authority
from ztcore.decision import Decision, allow, deny
from ztcore.destinations import check_addresses, check_port
from ztcore.errors import RemoteProtocolError
from ztcore.reasons import Reason
from ztcore.runtime.pipe import StreamPipe
from ztcore.tunnel import PeerDraining, Stream, TunnelSession

__all__ = ["BrokerState", "Flow", "TunnelConnection"]
log = logging.getLogger("sekimori.tunnel")
IpAddress = IPv4Address | IPv6Address


class TunnelConnection(StreamGates, ControlRequests, asyncio.Protocol):
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
        self.peer_address: str | None = None
        self.thumbprint = ""
        self.public_key: object = None
        self._session_cache: tuple[bytes, SessionDecision] | None = None

    # -- connection lifecycle ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        transport.set_write_buffer_limits(high=h2tuning.TUNNEL_WRITE_HIGH_WATER_BYTES)
        peername = transport.get_extra_info("peername")
        self.peer = str(peername)
        self.peer_address = str(peername[0]) if isinstance(peername, tuple) and peername else None
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der or (ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2"):
            log.warning("tunnel from %s without client certificate or ALPN h2: closing", self.peer)
            transport.abort()
            return
        certificate = x509.load_der_x509_certificate(der)
        self.identity = device_identity(certificate)
        self.thumbprint = thumbprint_of(der)
        self.public_key = certificate.public_key()
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
        self.recheck_posture(now)     # quarantined or released

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
            refused = self._take_share(flow)
            if refused is None:
                refused = self._check_session(fields, flow)
            if refused is not None:
                self._refuse(stream, refused)
            else:
                self.loop.create_task(self._open(stream, authority))
        elif method == b"POST" and self.route_control(
                stream, fields.get(b":path", b"").decode("ascii", "replace")):
            pass
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
                                  authority_text: str) -> tuple[Decision, StreamPipe | Interceptor | None]:
        config = self.state.config
        policy = config.destinations
        try:
            authority = parse_authority(authority_text)
        except AuthorityError as exc:
            return deny(Reason.AUTHORITY_INVALID, status=400, detail=str(exc)), None
        flow: Flow = stream.context
        flow.host, flow.port = authority.host, authority.port
        refused = self._posture_gate(authority.host, authority.port)
        if refused is None:
            refused = self._policy_gate(flow)
            if refused is not None and check_port(authority, policy) is None:
                page = self._block_page(flow, refused)
                if page is not None:
                    return allow(), page
        if refused is None:
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
        refused = self._address_gate(flow, [str(a) for a in addresses])
        if refused is not None:
            return refused, None
        inspection, ident = self.state.inspection, self.identity
        # Without a policy in force the internet default applies: allowed, inspected.
        stances = flow.obligations if flow.policy is not None else "inspect"
        categories = flow.web.categories if flow.web is not None else ()
        if inspection is not None and ident is not None and inspection.wants(
                ident.tenant_id, stances, authority.host, authority.port, categories):
            refused, interceptor, used = await inspection.open(
                authority.host, authority.port, [str(a) for a in addresses],
                sanitise="sanitise" in flow.obligations.split(","),
                on_record=lambda record: self._http_record(flow, record),
                check_request=self._request_check(ident.tenant_id, authority.host, authority.port),
                signatures=inspection.signatures_for(
                    ident.tenant_id, self.state.web_lists.current if self.state.web_lists else None))
            flow.address, flow.inspected = used or None, interceptor is not None
            flow.interceptor = interceptor
            return (refused or allow()), interceptor
        last = deny(Reason.UPSTREAM_UNREACHABLE, status=502, detail=f"{authority} refused")
        for address in addresses:
            flow.address = str(address)
            try:
                async with asyncio.timeout(config.connect_timeout_seconds):
                    _, pipe = await self.loop.create_connection(self._pipe_factory(),
                                                                str(address), authority.port)
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
        if flow.counted and self.identity is not None:
            flow.counted = False
            counts = self.state.tenant_streams
            counts[self.identity.tenant_id] = counts.get(self.identity.tenant_id, 1) - 1
        decision = flow.refused_with_page or flow.decision or deny(
            Reason.REQUEST_INVALID, detail="stream ended before a decision")
        if not flow.audited and decision.allowed:
            self.state.streams_open -= 1
            return
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
            duration_seconds=round(time.monotonic() - flow.started_monotonic, 6),
            extra={k: v for k, v in (("rule", decision.rule_id or ""),
                                     ("obligations", flow.obligations),
                                     ("inspected", "yes" if flow.inspected else ""),
                                     ("client_tls_error", flow.interceptor.client_error or ""
                                      if flow.interceptor is not None else "")) if v}
            | (flow.web.audit_extra() if flow.web is not None else {}))
        durable = self.state.audit.write(event)
        durable.add_done_callback(self._stream_recorded)

    def _block_page(self, flow: Flow, refusal: Decision) -> Interceptor | None:
        inspection, ident = self.state.inspection, self.identity
        if inspection is None or ident is None:
            return None
        if inspection.do_not_decrypt(ident.tenant_id, flow.host, flow.port) is not None:
            return None
        page = inspection.block_page(flow.host, flow.port, refusal,
                                     lambda record: self._http_record(flow, record))
        if page is not None:
            flow.refused_with_page = refusal
        return page

    def _request_check(self, tenant: str, host: str, port: int) -> RequestCheck | None:
        """Per inspected request: IOC URLs and URL categories with the path, then the HTTP
        signatures (their sids go to the audit event whether they block or not)."""
        lists, inspection = self.state.web_lists, self.state.inspection

        def check(method: str, url: str, head: list[tuple[bytes, bytes]]) -> tuple[Decision | None, tuple[str, ...]]:
            if lists is not None:
                verdict = judge(lists.current, tenant, host, url=url, path=urlsplit(url).path or "/")
                if verdict.decision is not None:
                    return verdict.decision, ()
            if inspection is not None:
                return inspection.check_signatures(method, url, head, port)
            return None, ()
        return check

    def _http_record(self, flow: Flow, record: HttpRecord) -> None:
        """One inspected request: its own audit event (kind `http`), with what the content
        pipeline found (counts and names, never the values)."""
        ident, decision = self.identity, record.decision
        extra = record.audit_extra() | (flow.web.audit_extra() if flow.web is not None else {})
        if record.unblock_request is not None:
            extra.update({f"unblock_{k}": v for k, v in record.unblock_request.items()})
        event = AuditEvent(
            time=self.state.clock(), kind="unblock-request" if record.unblock_request else "http",
            tenant=ident.tenant_id if ident else None, device=ident.device_id if ident else None,
            user=flow.user, destination=flow.authority or None, address=flow.address,
            decision=decision.action.value, reason=decision.reason.value,
            message_ja=None if decision.allowed else decision.message_ja,
            message_en=None if decision.allowed else decision.message_en,
            detail=decision.detail or None, bytes_up=record.bytes_up, bytes_down=record.bytes_down,
            extra=extra)
        self.state.audit.write(event).add_done_callback(_logged_if_lost)
        if record.unblock_request is not None and ident is not None and self.state.record_unblock:
            self.loop.create_task(self._store_unblock(ident.tenant_id, ident.device_id, flow, record))

    async def _store_unblock(self, tenant: str, device: str, flow: Flow, record: HttpRecord) -> None:
        asked = record.unblock_request or {}
        url = asked.get("url") or record.url
        host = flow.host.lower()   # the site the form was posted on, not what the form says
        try:
            assert self.state.record_unblock is not None
            await asyncio.to_thread(
                self.state.record_unblock, tenant_id=tenant, device_id=device, username=flow.user,
                host=host, url=url, reason_code=asked.get("reason_code", ""),
                request_id=asked.get("request_id", ""), justification=asked.get("justification", ""),
                now=self.state.clock())
        except Exception:  # the audit event above already holds the request
            log.exception("unblock request of %s not stored", tenant)

    def _stream_recorded(self, future: asyncio.Future[None]) -> None:
        self.state.streams_open -= 1
        if future.exception() is not None:
            log.error("audit event lost: %s", future.exception())


def _logged_if_lost(future: asyncio.Future[None]) -> None:
    if future.exception() is not None:
        log.error("audit event lost: %s", future.exception())
