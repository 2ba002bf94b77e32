"""What a new stream must pass, and the re-checks of open ones: the tenant's fair share, the
session token, quarantine and posture, and the access policy. A mixin of `TunnelConnection`;
the decisions themselves are the cores' (broker.sessions, broker.posture_gate, broker.policy),
these methods gather their inputs and carry out the result on the connection's streams."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from broker.policy.model import PolicyRequest, Zone
from broker.runtime.metered_pipe import MeteredPipe
from broker.runtime.policy_service import as_decision, local_time
from broker.sessions import SessionDecision, still_valid
from swg.web_verdict import WebVerdict, judge
from ztcore.decision import Decision, deny
from ztcore.principal import Principal
from ztcore.reasons import Reason
from ztcore.runtime.pipe import StreamPipe

if TYPE_CHECKING:
    from broker.pki import DeviceIdentity
    from broker.runtime.broker_state import BrokerState
    from swg.runtime.interceptor import Interceptor
    from ztcore.tunnel import TunnelSession

log = logging.getLogger("sekimori.tunnel")


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
    host: str = ""        # the parsed destination, for the posture re-check of open streams
    port: int = 0
    principal: Principal | None = None
    policy: PolicyRequest | None = None     # what the policy decided on, for re-checks
    obligations: str = ""
    counted: bool = False     # holds one of its tenant's share of streams
    inspected: bool = False   # decrypted and passed through the content pipeline
    web: WebVerdict | None = None   # IOC, categories and the tenant's lists for the host
    refused_with_page: Decision | None = None   # refused, answered with the block page in TLS
    interceptor: Interceptor | None = None      # the inspected stream's endpoint
    audited: bool = True      # False: routine agent traffic (an unchanged rules check, an
                              # events batch whose events are themselves audited)


class StreamGates:
    """Mixin of `TunnelConnection`, which provides these."""

    session: TunnelSession | None
    identity: DeviceIdentity | None
    thumbprint: str
    state: BrokerState
    peer: str
    peer_address: str | None
    _session_cache: tuple[bytes, SessionDecision] | None

    def _posture_gate(self, host: str, port: int) -> Decision | None:
        posture, ident = self.state.posture, self.identity
        if posture is None or ident is None:
            return None
        return posture.gate(self.state.registry.devices.get(ident.device_id), ident.tenant_id,
                            ident.device_id, host, port, self.state.clock())

    def _take_share(self, flow: Flow) -> Decision | None:
        """Count the stream against its tenant's fair share of the broker (`[quotas]`)."""
        if self.identity is None:
            return None
        tenant = self.identity.tenant_id
        counts = self.state.tenant_streams
        quota = self.state.config.quota(tenant).max_streams
        if counts.get(tenant, 0) >= quota:
            return deny(Reason.TENANT_QUOTA_EXCEEDED, status=503,
                        detail=f"{quota} concurrent connections for {tenant} in use")
        counts[tenant] = counts.get(tenant, 0) + 1
        flow.counted = True
        return None

    def _pipe_factory(self) -> Callable[[], StreamPipe]:
        """Plain pipes, or metered ones when the tenant has a bandwidth share."""
        ident = self.identity
        if ident is None or not self.state.config.quota(ident.tenant_id).max_bytes_per_second:
            return StreamPipe
        bucket = self.state.bucket(ident.tenant_id)
        return lambda: MeteredPipe(bucket, self.state.clock)

    def _web_gate(self, flow: Flow) -> WebVerdict | None:
        """IOCs, the tenant's lists and URL categories for the host (swg.web_verdict)."""
        lists, ident = self.state.web_lists, self.identity
        if lists is None or ident is None:
            return None
        flow.web = judge(lists.current, ident.tenant_id, flow.host)
        return flow.web

    def _address_gate(self, flow: Flow, addresses: list[str]) -> Decision | None:
        """IOC addresses among those the name resolved to."""
        lists, ident = self.state.web_lists, self.identity
        if lists is None or ident is None:
            return None
        for address in addresses:
            verdict = judge(lists.current, ident.tenant_id, flow.host, address=address)
            if verdict.ioc is not None:
                flow.web = verdict
                return verdict.decision
        return None

    def _policy_gate(self, flow: Flow) -> Decision | None:
        """The access policy's decision (guard, baseline, municipality, defaults) for this flow."""
        service, ident = self.state.policy, self.identity
        if service is None or ident is None:
            return None
        now = self.state.clock()
        device = self.state.registry.devices.get(ident.device_id)
        posture = self.state.posture.devices.get(ident.device_id) if self.state.posture else None
        principal = flow.principal
        weekday, minute = local_time(now)
        web = self._web_gate(flow)
        if web is not None and web.decision is not None:
            return web.decision
        request = PolicyRequest(
            tenant=ident.tenant_id, user=principal.username if principal else None,
            groups=principal.groups if principal else frozenset(),
            mfa=bool(principal and principal.mfa),
            mfa_age_seconds=principal.auth_age_seconds(now) if principal else None,
            device_id=ident.device_id, segment=Zone(device.segment if device else "internet"),
            posture_compliant=bool(posture and posture.verdict.compliant),
            posture_profile=posture.verdict.profile if posture and posture.verdict.compliant else None,
            host=flow.host, port=flow.port, address=None,
            url_category=web.url_category if web is not None else None,
            source_address=self.peer_address, weekday=weekday, minute_of_day=minute)
        decided = service.decide(request)
        if decided is None:
            return None
        flow.policy = request
        flow.obligations = ",".join(sorted(o.value for o in decided.obligations))
        return None if decided.allowed else as_decision(decided)

    def recheck_policy(self) -> None:
        """The policy changed: open streams it now refuses are reset."""
        service, session = self.state.policy, self.session
        if service is None or session is None:
            return
        cut = 0
        for stream_id, stream in list(session.streams.items()):
            flow = stream.context
            if not isinstance(flow, Flow) or flow.policy is None:
                continue
            decided = service.decide(flow.policy)
            if decided is not None and not decided.allowed:
                flow.decision = as_decision(decided)
                session.abort(stream_id, ErrorCodes.CANCEL)
                cut += 1
        if cut:
            log.info("policy change: reset %d open streams of %s", cut, self.peer)
            session.flush()

    def recheck_posture(self, now: float) -> None:
        """Reset the open streams that the posture gate would now refuse (repair paths stay)."""
        posture, ident, session = self.state.posture, self.identity, self.session
        if posture is None or ident is None or session is None or not session.streams:
            return
        refused = posture.device_refusal(self.state.registry.devices.get(ident.device_id),
                                         ident.tenant_id, ident.device_id, now)
        if refused is None:
            return
        cut = 0
        for stream_id, stream in list(session.streams.items()):
            flow = stream.context
            if not isinstance(flow, Flow) or flow.kind != "stream" or not flow.port \
                    or posture.config.quarantine_allows(flow.host, flow.port):
                continue
            if flow.decision is not None and flow.decision.allowed:
                flow.decision = deny(refused.reason, status=refused.status,
                                     detail=f"ended while open: {refused.detail}")
            session.abort(stream_id, ErrorCodes.CANCEL)
            cut += 1
        if cut:
            log.info("device %s: %s; reset %d open streams", ident.device_id,
                     refused.reason.value, cut)
            session.flush()

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
            flow.user, flow.principal = checked.principal.username, checked.principal
        if checked.session is not None:
            flow.sid, flow.jti = checked.session.sid, checked.session.jti
        return None if checked.allowed else checked.decision
