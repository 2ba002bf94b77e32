"""The agent's composition root: load its files, start the tunnel client and the proxy."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509

from agent.config import CONFIG_FILE, AgentConfig, parse_agent_config
from agent.dns import parse_resolv_conf, upstreams_without
from agent.pac import render_pac
from agent.runtime.agent_events import AgentEventLog
from agent.runtime.dns_stub import DnsStub, serve_dns
from agent.runtime.posture_loop import PostureReporter, agent_version, facts_file_collector
from agent.runtime.proxy import serve_proxy
from agent.runtime.routing import AgentRouting
from agent.runtime.rules_sync import RulesKeeper
from agent.runtime.trust_store import TrustStore
from agent.runtime.tunnel_client import TunnelClient
from ztcore.errors import ConfigError
from ztcore.posture import PostureFacts

log = logging.getLogger("sekimori.agent")


def load_config(data_dir: Path) -> AgentConfig:
    path = data_dir / CONFIG_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: enrol this device first "
                          "(sekimori-agent enroll --broker URL --code CODE)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return parse_agent_config(raw, data_dir)


def posture_collector(config: AgentConfig) -> Callable[[float], PostureFacts]:
    if config.posture_facts_file:
        return facts_file_collector(config.posture_facts_file)
    from agent.runtime.posture_runner import collect_here
    version = agent_version()
    return lambda now: collect_here(version, now)


def status_snapshot(config: AgentConfig, tunnel: TunnelClient,
                    posture: PostureReporter | None = None, routing: AgentRouting | None = None,
                    dns: DnsStub | None = None) -> dict[str, Any]:
    st = tunnel.status
    out: dict[str, Any] = {
        "state": st.state, "broker": st.broker, "since": st.since, "last_error": st.last_error,
        "connects": st.connects, "streams_opened": st.streams_opened,
        "last_denial": st.last_denial, "tenant": config.tenant_id, "device": config.device_id,
        "proxy": f"{config.proxy_host}:{config.proxy_port}", "now": time.time(),
    }
    out["posture"] = posture.status.to_json_dict() if posture is not None else None
    out["routing"] = routing.status() if routing is not None else None
    out["dns"] = None if dns is None else {
        "listen": f"{config.proxy_host}:{dns.port}", "answered": dns.answered,
        "forwarded": dns.forwarded, "nxdomain": dns.nxdomain, "dropped": dns.dropped,
        "servfail": dns.servfail}
    session = tunnel.current_session()
    out["session"] = None if session is None else {
        "user": session.user, "display_name": session.display_name, "methods": list(session.methods),
        "mfa": session.mfa, "idp": session.idp, "auth_time": session.auth_time,
        "expires_at": session.expires_at, "session_expires_at": session.session_expires_at}
    try:
        cert = x509.load_pem_x509_certificate(config.cert_path.read_bytes())
        out["certificate_not_after"] = cert.not_valid_after_utc.timestamp()
    except (OSError, ValueError):
        out["certificate_not_after"] = None
    return out


async def run_agent(config: AgentConfig, ready: asyncio.Event | None = None) -> None:
    tunnel = TunnelClient(config)
    tunnel.start()
    posture = PostureReporter(config, tunnel, posture_collector(config))
    loop = asyncio.get_running_loop()
    pac_text = [render_pac(config.proxy_host, config.proxy_port)]
    rules = RulesKeeper(config, tunnel, refresh_seconds=config.rules_refresh_seconds, on_change=lambda r: pac_text.__setitem__(
        0, render_pac(config.proxy_host, config.proxy_port, r.breakout)))
    if config.install_inspection_ca:
        rules.trust = TrustStore()
    rules.load_cached()
    routing = AgentRouting(config, tunnel, rules, AgentEventLog(config, tunnel))
    tasks = [loop.create_task(posture.run()), loop.create_task(rules.run()),
             loop.create_task(routing.events.run()), loop.create_task(routing.run())]
    dns = await start_dns(config, rules)
    server = await serve_proxy(tunnel, config.proxy_host, config.proxy_port, lambda: pac_text[0],
                               lambda: status_snapshot(config, tunnel, posture, routing, dns),
                               routing)
    log.info("agent proxy on %s:%d, PAC at http://%s:%d/proxy.pac", config.proxy_host,
             config.proxy_port, config.proxy_host, config.proxy_port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready.set()
    await stop.wait()
    for task in tasks:
        task.cancel()
    if not config.posture_facts_file:   # a real collection may be running commands in a thread
        from agent.runtime.posture_runner import stop_collection
        stop_collection()
    if dns is not None:
        dns.close()
    server.close()
    await tunnel.stop()


async def start_dns(config: AgentConfig, rules: RulesKeeper) -> DnsStub | None:
    """The split-DNS stub on `dns_port` (if set): private names from the rules, the rest to the
    resolvers of /etc/resolv.conf."""
    if not config.dns_port:
        return None
    try:
        servers = parse_resolv_conf(Path("/etc/resolv.conf").read_text(errors="replace"))
    except OSError:
        servers = ()
    upstreams = upstreams_without(config.proxy_host, config.dns_port, servers)
    try:
        return await serve_dns(lambda: rules.rules.dns, config.proxy_host, config.dns_port,
                               upstreams)
    except OSError as exc:
        log.error("split DNS not started on %s:%d: %s", config.proxy_host, config.dns_port, exc)
        return None
