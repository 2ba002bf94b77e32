"""The broker's composition root: store, PKI, audit, tunnel server and control-plane API.

The one place that builds concrete collaborators and wires them. `serve` runs until `stop` is
set (or SIGTERM/SIGINT when it owns the signals), then shuts down gracefully: GOAWAY to every
agent, a grace period for open streams, then close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from prometheus_client import CollectorRegistry, Gauge

from broker.api.admin import AdminApi
from broker.api.app import TunnelEndpoint, create_app
from broker.config import BrokerConfig
from broker.pki import cert_pem
from broker.registry import RegistrySnapshot
from broker.runtime.audit_sink import AuditSink
from broker.runtime.datadir import load_ca, load_inspection_ca, load_seal_key, load_session_keys
from broker.runtime.device_authority import DeviceAuthority
from broker.runtime.identity_service import IdentityService
from broker.runtime.inspection import InspectionService
from broker.runtime.policy_service import PolicyService, write_hits
from broker.runtime.posture_service import PostureService
from broker.runtime.routing_service import RoutingService
from broker.runtime.store import Store
from broker.runtime.tunnel_server import BrokerState, TunnelConnection
from broker.runtime.web_lists import WebListsService
from broker.sessions import KeyRing, PreviousKey, SessionAuthority, SessionConfig
from ztcore.errors import ConfigError

log = logging.getLogger("sekimori.broker")
HITS_EVERY_SECONDS = 10.0
LISTS_EVERY_SECONDS = 2.0    # IOC feeds and tenants' lists: a change is in force within seconds
REGISTRY_POLL_SECONDS = 0.25  # revocations, quarantines and stale posture act within a second


def tunnel_ssl_context(config: BrokerConfig) -> ssl.SSLContext:
    """TLS 1.3 only, ALPN h2, a client certificate from the broker CA required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(config.server_cert_path), str(config.server_key_path))
    ctx.load_verify_locations(cafile=str(config.ca_cert_path))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _ApiServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the broker owns the signals, not uvicorn
        yield


def public_host(listen_host: str, server_name: str) -> str:
    """The address agents should dial: the listen address, unless it is a wildcard."""
    return server_name if listen_host in ("0.0.0.0", "::", "") else listen_host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Metrics:
    def __init__(self, state: BrokerState, audit: AuditSink) -> None:
        self.registry = CollectorRegistry()
        Gauge("sekimori_tunnel_connections", "Agent tunnels connected", registry=self.registry
              ).set_function(lambda: len(state.connections))
        Gauge("sekimori_streams_open", "Streams open or closing", registry=self.registry
              ).set_function(lambda: state.streams_open)
        Gauge("sekimori_audit_events_written", "Audit events on disk since the broker started",
              registry=self.registry).set_function(lambda: audit.written)


async def _poll_registry(store: Store, state: BrokerState, stop: asyncio.Event,
                         own_ring: KeyRing) -> None:
    """Devices, session revocations and policies: their three revisions, read in one query four
    times a second; what changed is reloaded (off the loop) and acted on."""
    sessions_revision = policy_revision = -1
    hits_written = lists_checked = time.monotonic()
    while not stop.is_set():
        if state.web_lists is not None and time.monotonic() - lists_checked > LISTS_EVERY_SECONDS:
            lists_checked = time.monotonic()
            await asyncio.to_thread(state.web_lists.reload_if_changed)
        if state.policy is not None and time.monotonic() - hits_written > HITS_EVERY_SECONDS:
            hits_written = time.monotonic()
            with contextlib.suppress(OSError):
                write_hits(state.policy, state.config.state_path.parent / "policy-hits.json")
        try:
            devices_now, sessions_now, policy_now = await asyncio.to_thread(store.revisions)
        except Exception:  # the store may be briefly unavailable; keep what we have
            log.exception("reading the store's revisions failed")
            devices_now, sessions_now, policy_now = (state.registry.revision, sessions_revision,
                                                     policy_revision)
        try:
            revision = devices_now
            if revision != state.registry.revision:
                devices = await asyncio.to_thread(store.list_devices)
                state.registry_changed(RegistrySnapshot.build(revision, devices))
        except Exception:  # the store may be briefly unavailable; keep the last snapshot
            log.exception("device registry refresh failed")
        try:
            revision = sessions_now
            if revision != sessions_revision:
                revoked = await asyncio.to_thread(store.revoked_ids, time.time())
                if state.identity is not None:
                    await asyncio.to_thread(reload_peer_keys, state.identity, own_ring, store,
                                            time.time())
                state.revocations_changed(revoked)
                sessions_revision = revision
        except Exception:
            log.exception("session revocation refresh failed")
        state.posture_tick()
        try:
            if state.policy is not None and policy_now != policy_revision \
                    and await asyncio.to_thread(state.policy.reload_if_changed):
                state.policy_changed()
            policy_revision = policy_now
        except Exception:
            log.exception("policy refresh failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), REGISTRY_POLL_SECONDS)


def identity_service(config: BrokerConfig, store: Store) -> IdentityService:
    """The login service, with this broker's signing keys published to the store for the
    other brokers (and theirs accepted here)."""
    identity = config.identity
    ring = load_session_keys(config)
    now = time.time()
    store.publish_session_keys(config.name, [
        (ring.active_kid, _raw(ring.active.public_key()), None),
        *((key.kid, _raw(key.public_key), key.accept_until) for key in ring.previous)], now)
    sessions = SessionAuthority(
        SessionConfig(issuer=identity.issuer, audience="sekimori:tunnel",
                      max_lifetime_seconds=identity.token_lifetime_seconds,
                      max_session_seconds=identity.max_session_seconds),
        ring)
    service = IdentityService(identity, sessions, store, load_seal_key(config))
    reload_peer_keys(service, ring, store, now)
    return service


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def reload_peer_keys(service: IdentityService, own: KeyRing, store: Store, now: float) -> None:
    """Accept the keys the other brokers published (one reference swapped)."""
    peers = [PreviousKey(kid, Ed25519PublicKey.from_public_bytes(raw),
                         float("inf") if until is None else until)
             for kid, raw, until in store.session_keys(now)]
    service.sessions = SessionAuthority(service.sessions.config, own.with_peer_keys(peers))


def routing_service(config: BrokerConfig, store: Store, state: BrokerState) -> RoutingService:
    """Agent rules signed with the broker's TLS key (its certificate chain travels with them);
    override-code secrets derived from the broker's sealing key."""
    key = load_pem_private_key(config.server_key_path.read_bytes(), password=None)
    if not isinstance(key, EllipticCurvePrivateKey):
        raise ConfigError(f"{config.server_key_path}: expected a P-256 key to sign agent rules")
    chain = x509.load_pem_x509_certificates(config.server_cert_path.read_bytes())
    policy = state.policy
    return RoutingService(store, key, chain, load_seal_key(config),
                          revision=lambda: policy.revision if policy is not None else 0,
                          clock=time.time)


def inspection_service(config: BrokerConfig, state: BrokerState) -> InspectionService:
    ca_cert, ca_key = load_inspection_ca(config, time.time())
    routing = state.routing
    return InspectionService(
        config.inspection, ca_cert, ca_key,  # type: ignore[arg-type]
        optimize_rules=(lambda tenant: routing.tenant_routing(tenant).breakout) if routing else None,
        connect_timeout_seconds=config.connect_timeout_seconds)


async def serve(config: BrokerConfig, *, stop: asyncio.Event | None = None,
                on_ready: Callable[[dict[str, Any]], None] | None = None,
                handle_signals: bool = True) -> None:
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    store = Store(config.database_url)
    await asyncio.to_thread(store.migrate)
    ca_cert, ca_key = load_ca(config)
    authority = DeviceAuthority(store, ca_cert, ca_key, config.device_cert_validity_seconds)
    audit = AuditSink(config.audit_path)
    state = BrokerState(config, audit, renew=lambda ident, csr: authority.renew(ident, csr, time.time()),
                        lookup_device=store.get_device, touch_device=store.touch_device)
    state.identity = await asyncio.to_thread(identity_service, config, store)
    state.identity.revoked = await asyncio.to_thread(store.revoked_ids, time.time())
    state.posture = PostureService(config.posture, store)
    state.policy = PolicyService(store)
    await asyncio.to_thread(state.policy.reload_if_changed)
    state.routing = routing_service(config, store, state)
    state.web_lists = WebListsService(config, store.list_tenants, unblocks=store.active_unblocks)
    state.record_unblock = store.add_unblock_request
    await asyncio.to_thread(state.web_lists.reload_if_changed)
    if config.inspection.enabled:
        state.inspection = await asyncio.to_thread(inspection_service, config, state)
        state.routing.inspection_ca = cert_pem(state.inspection.ca_cert).decode("ascii")
    revision = await asyncio.to_thread(store.devices_revision)
    state.registry = RegistrySnapshot.build(revision, await asyncio.to_thread(store.list_devices))
    metrics = Metrics(state, audit)

    tunnel_sock = _bind(config.tunnel_listen.host, config.tunnel_listen.port)
    tunnel_port = tunnel_sock.getsockname()[1]
    tunnel_server = await loop.create_server(lambda: TunnelConnection(state), sock=tunnel_sock,
                                             ssl=tunnel_ssl_context(config),
                                             ssl_handshake_timeout=10)
    advertised = public_host(config.tunnel_listen.host, config.server_names[0])
    endpoint = TunnelEndpoint(advertised, tunnel_port, config.server_names[0])
    app = create_app(authority, cert_pem(ca_cert), lambda: endpoint, audit.write, metrics.registry,
                     admin=AdminApi(store, load_seal_key(config), config.posture, audit.write))
    api_sock = _bind(config.api_listen.host, config.api_listen.port)
    api_port = api_sock.getsockname()[1]
    api = _ApiServer(uvicorn.Config(app, log_level="warning", lifespan="off",
                                    ssl_certfile=str(config.server_cert_path),
                                    ssl_keyfile=str(config.server_key_path)))
    api_task = loop.create_task(api.serve(sockets=[api_sock]))
    poller = loop.create_task(_poll_registry(store, state, stop, load_session_keys(config)))

    info = {"pid": os.getpid(), "tunnel": f"{config.tunnel_listen.host}:{tunnel_port}",
            "tunnel_port": tunnel_port, "api_url": f"https://{_url_host(public_host(config.api_listen.host, advertised))}:{api_port}",
            "api_port": api_port, "server_name": advertised}
    config.state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.state_path.with_suffix(".new")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, config.state_path)
    log.info("broker ready: tunnel %s, API %s", info["tunnel"], info["api_url"])
    if on_ready is not None:
        on_ready(info)
    try:
        await stop.wait()
    finally:
        await _shutdown(state, tunnel_server, api, config.shutdown_grace_seconds)
        api_task.cancel()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await api_task
        audit.close()
        store.close()
        if state.inspection is not None:
            state.inspection.close()
        with contextlib.suppress(FileNotFoundError):
            config.state_path.unlink()


async def _shutdown(state: BrokerState, tunnel_server: asyncio.AbstractServer, api: uvicorn.Server,
                    grace_seconds: float) -> None:
    state.shutting_down = True
    tunnel_server.close()
    api.should_exit = True
    for conn in list(state.connections):
        conn.goaway()
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(c.session and c.session.streams for c in state.connections):
        await asyncio.sleep(0.05)
    for conn in list(state.connections):
        if conn.transport is not None:
            conn.transport.close()
    await asyncio.sleep(0)
