"""The broker's own requests on a tunnel: certificate renewal, the login service and posture
reports. A mixin of `TunnelConnection`: each request's small body is collected, handled in a
worker thread (store, directory and IdP I/O), and answered on its stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from broker.runtime.identity_service import CONTROL_KINDS, ControlReply
from broker.runtime.posture_service import PATH_POSTURE
from ztcore import headers
from ztcore.agent_rules import PATH_EVENTS, PATH_RULES
from ztcore.decision import allow, deny
from ztcore.reasons import Reason
from ztcore.tunnel import BodyEndpoint, Stream

if TYPE_CHECKING:
    from broker.pki import DeviceIdentity
    from broker.runtime.broker_state import BrokerState
    from ztcore.tunnel import TunnelSession

log = logging.getLogger("sekimori.tunnel")
MAX_CONTROL_BODY_BYTES = 1024 * 1024   # a batch of agent events is the largest


class ControlRequests:
    """Mixin of `TunnelConnection`, which provides these."""

    session: TunnelSession | None
    identity: DeviceIdentity | None
    thumbprint: str
    public_key: object
    state: BrokerState
    loop: asyncio.AbstractEventLoop

    def recheck_posture(self, now: float) -> None:
        raise NotImplementedError

    def route_control(self, stream: Stream, path: str) -> bool:
        """Bind a collector for a control request on `path`; False if the path is not one."""
        assert self.session is not None
        flow = stream.context
        if path == "/v1/renew":
            flow.kind = "renewal"
            answer: Callable[[Stream, bytes], Coroutine[Any, Any, None]] = self.renew
        elif path == PATH_POSTURE and self.state.posture is not None:
            flow.kind = "posture-report"
            answer = self.posture_report
        elif path == PATH_RULES and self.state.routing is not None:
            flow.kind = "agent-rules"
            answer = self.agent_rules
        elif path == PATH_EVENTS and self.state.routing is not None:
            flow.kind = "agent-events"
            answer = self.agent_events
        elif path in CONTROL_KINDS and self.state.identity is not None:
            flow.kind = CONTROL_KINDS[path]
            async def answer(s: Stream, body: bytes) -> None:
                await self.control(s, path, body)
        else:
            return False
        self.session.bind(stream.stream_id, _Collector(self, stream, answer))
        return True

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
        flow = stream.context
        flow.decision, flow.user = reply.audit or reply.decision, reply.user
        self._reply(stream, reply)


    async def posture_report(self, stream: Stream, body: bytes) -> None:
        """Check, record and judge a posture report; the verdict goes back to the agent, and a
        device judged non-compliant loses its other streams at once."""
        service = self.state.posture
        assert service is not None and self.identity is not None
        try:
            reply = await asyncio.to_thread(service.handle_report, self.identity,
                                            self.public_key, body)
        except Exception:
            log.exception("posture report failed")
            reply = ControlReply(deny(Reason.INTERNAL_ERROR, status=500))
        if stream.finished:
            return
        stream.context.decision = reply.audit or reply.decision
        self._reply(stream, reply)
        self.recheck_posture(self.state.clock())

    # -- agent routing: rules out, events in ---------------------------------------------------

    async def agent_rules(self, stream: Stream, body: bytes) -> None:
        service = self.state.routing
        assert service is not None and self.identity is not None
        reply = await asyncio.to_thread(service.handle_rules, self.identity, body)
        if not stream.finished:
            stream.context.decision = reply.decision
            # An unchanged check happens every minute per agent: only new rules are audited.
            stream.context.audited = not (reply.payload or {}).get("unchanged", False)
            self._reply(stream, reply)

    async def agent_events(self, stream: Stream, body: bytes) -> None:
        """Events of what the agent sent without the tunnel: on disk before they are
        acknowledged, so the agent deletes its copy only once the audit log has them."""
        service = self.state.routing
        assert service is not None and self.identity is not None
        reply, events = service.events_from(self.identity, body, self.state.clock())
        try:
            await asyncio.gather(*(self.state.audit.write(e) for e in events))
        except Exception as exc:
            log.error("agent events from %s not recorded: %s", self.identity.device_id, exc)
            reply = ControlReply(deny(Reason.INTERNAL_ERROR, status=503, detail="audit log unavailable"))
        if not stream.finished:
            stream.context.decision = reply.decision
            stream.context.audited = not events   # the events themselves are in the log
            self._reply(stream, reply)

    def _reply(self, stream: Stream, reply: ControlReply) -> None:
        if reply.payload is not None and reply.decision.allowed:
            out = [(b":status", b"200"), (b"content-type", b"application/json"),
                   (b"cache-control", b"no-store")]
            body_out = json.dumps(reply.payload, ensure_ascii=False).encode("utf-8")
        else:
            out, body_out = headers.response_headers(reply.decision), b""
        self._answer(stream, out, body_out)


class _Collector(BodyEndpoint):
    """Gathers a small request body (a CSR, a login request); at its end `answer` runs."""

    def __init__(self, owner: ControlRequests, stream: Stream,
                 answer: Callable[[Stream, bytes], Coroutine[Any, Any, None]]) -> None:
        super().__init__(MAX_CONTROL_BODY_BYTES)
        self.owner, self.stream, self.answer = owner, stream, answer

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.overflowed:
            assert self.owner.session is not None
            self.owner.session.abort(self.stream.stream_id, ErrorCodes.REFUSED_STREAM)

    def write_eof(self) -> None:
        if not self.overflowed:
            self.owner.loop.create_task(self.answer(self.stream, bytes(self.body)))
