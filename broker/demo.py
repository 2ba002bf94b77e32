"""`sekimori demo`: the whole path on loopback, offline, on the embedded defaults.

Starts local origins (HTTP and HTTPS, with their own demo CA), a broker with a demo
municipality, enrols an agent for a demo staff member's laptop and runs it, then sends requests
through the agent's proxy with a real HTTP client (the stdlib's http.client) and prints what
happened. The broker and the agent run as their own processes, exactly as in production.

The process helpers here are also what the integration tests and the benchmark use.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
from cryptography import x509
from rich.console import Console

from broker.demo_directory import STAFF, start_demo_directory, unavailable
from broker.enrolment import format_code, hash_code
from broker.pki import cert_pem, key_pem, make_ca, make_server_cert, new_key
from broker.runtime.datadir import init_data_dir, load_ca
from broker.runtime.store import Store
from ztcore.headers import AGENT_STATUS_PATH
from ztcore.keys import spki_pin

DEMO_TENANT = "demo-city"
DEMO_TENANT_NAME = "デモ市"
DEMO_STAFF = "yamada-taro"
OTHER_STAFF = "suzuki-hanako"
DEMO_BODY = "Sekimori demo origin: こんにちは、関守です。\n".encode()


# -- local origins ------------------------------------------------------------------------------

class _OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response, no Nagle: otherwise head and body leave as two segments and
    # the client's delayed ACK adds 40 ms to every keep-alive request.
    wbufsize = 256 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith("/bytes/"):
            size = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("content-length", str(size))
            self.end_headers()
            chunk = b"\0" * min(size, 1 << 20)
            left = size
            while left > 0:
                n = min(left, len(chunk))
                self.wfile.write(chunk[:n])
                left -= n
            return
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(DEMO_BODY)))
        self.end_headers()
        self.wfile.write(DEMO_BODY)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        answer = json.dumps({"received_bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


ORIGIN_HOST = "127.0.0.2"  # not 127.0.0.1: the demo allows exactly this address, no other loopback


class LocalOrigins:
    """An HTTP and an HTTPS origin on 127.0.0.2 (ports chosen by the OS), with a demo CA."""

    def __init__(self, workdir: Path, host: str = ORIGIN_HOST) -> None:
        self.host = host
        now = time.time()
        ca_key = new_key()
        ca = make_ca(ca_key, "Sekimori demo origin CA", now, 7 * 86400, x509.random_serial_number())
        key = new_key()
        cert = make_server_cert(ca, ca_key, key, ["localhost", host], now, 7 * 86400,
                                x509.random_serial_number())
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca_path = workdir / "origin-ca.crt"
        self.ca_path.write_bytes(cert_pem(ca))
        (workdir / "origin.crt").write_bytes(cert_pem(cert))
        (workdir / "origin.key").write_bytes(key_pem(key))
        self.http = ThreadingHTTPServer((host, 0), _OriginHandler)
        self.https = ThreadingHTTPServer((host, 0), _OriginHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(workdir / "origin.crt"), str(workdir / "origin.key"))
        self.https.socket = ctx.wrap_socket(self.https.socket, server_side=True)
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True)
                        for s in (self.http, self.https)]
        for t in self.threads:
            t.start()

    @property
    def http_port(self) -> int:
        return int(self.http.server_address[1])

    @property
    def https_port(self) -> int:
        return int(self.https.server_address[1])

    def close(self) -> None:
        for s in (self.http, self.https):
            s.shutdown()
            s.server_close()


# -- broker and agent processes -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class BrokerProcess:
    """A broker in its own process with its own data directory (`sekimori serve`)."""

    def __init__(self, data_dir: Path, *, allowed_ports: list[int | str] | None = None,
                 allowed_networks: list[str] | None = None, database: str | None = None,
                 device_cert_validity_seconds: int = 7 * 86400, tunnel_port: int = 0,
                 static_hosts: dict[str, list[str]] | None = None, event_loop: str = "auto",
                 identity_toml: str | None = None, extra_toml: str = "") -> None:
        """`identity_toml` replaces the `[identity]` section `sekimori init` wrote; `extra_toml`
        (further sections, such as `[inspection]`) is appended."""
        self.data_dir = data_dir
        if not (data_dir / "sekimori.toml").exists():
            init_data_dir(data_dir, time.time(), server_names=["localhost", "127.0.0.1", "::1"],
                          tunnel_listen=f"127.0.0.1:{tunnel_port}", api_listen="127.0.0.1:0", database=database,
                          allowed_ports=[80, 443, *(allowed_ports or [])],
                          allowed_networks=allowed_networks or [],
                          device_cert_validity_seconds=device_cert_validity_seconds)
            if identity_toml is not None:
                path = data_dir / "sekimori.toml"
                text = path.read_text()
                path.write_text(text[:text.index("[identity]\n")] + identity_toml.strip() + "\n")
            if static_hosts:
                lines = "".join(f'"{name}" = {json.dumps(addrs)}\n' for name, addrs in static_hosts.items())
                with open(data_dir / "sekimori.toml", "a") as toml:
                    toml.write(f"\n[destinations.hosts]\n{lines}")
            if extra_toml:
                with open(data_dir / "sekimori.toml", "a") as toml:
                    toml.write("\n" + extra_toml.strip() + "\n")
        from broker.runtime.datadir import load_config
        self.config = load_config(data_dir)
        self.store = Store(self.config.database_url)
        self.store.migrate()
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.event_loop = event_loop

    @property
    def ca_pin(self) -> str:
        return spki_pin(load_ca(self.config)[0])

    def add_tenant(self, tenant_id: str, name: str) -> None:
        if self.store.get_tenant(tenant_id) is None:
            self.store.add_tenant(tenant_id, name, time.time())

    def enrolment_code(self, tenant_id: str, ttl_seconds: int = 86400) -> str:
        code = format_code(secrets.token_bytes(10))
        now = time.time()
        self.store.create_enrolment_code(tenant_id, hash_code(code), now, now + ttl_seconds)
        return code

    def enrol_totp(self, tenant_id: str, username: str) -> str:
        """Enrol a user's TOTP factor with the admin command; returns the secret it printed."""
        out = subprocess.run([sys.executable, "-P", "-m", "broker", "user", "totp-enrol", username,
                              "--tenant", tenant_id, "--no-qr", "--data-dir", str(self.data_dir)],
                             capture_output=True, text=True, timeout=60)
        match = re.search(r"secret \(manual entry\): ([A-Z2-7]+)", out.stdout)
        if out.returncode != 0 or match is None:
            raise RuntimeError(f"TOTP enrolment failed: {out.stdout}{out.stderr}")
        return match.group(1)

    def start(self, timeout: float = 20) -> dict[str, Any]:
        state = self.config.state_path
        if state.exists():
            state.unlink()
        log = open(self.data_dir / "broker.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "broker", "serve", "--data-dir",
                                      str(self.data_dir), "-v", "--loop", self.event_loop],
                                     stdout=log, stderr=log)
        self.info = _wait_for(lambda: state.exists() and json.loads(state.read_text()), timeout,
                              "broker", self.proc)
        return self.info

    @property
    def api_url(self) -> str:
        return str(self.info["api_url"])

    def stop(self, timeout: float = 15) -> None:
        stop_process(self.proc, timeout)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.store.close()


class AgentProcess:
    """An enrolled agent in its own process (`sekimori-agent run`)."""

    def __init__(self, data_dir: Path, proxy_port: int | None = None, event_loop: str = "auto") -> None:
        self.data_dir = data_dir
        self.event_loop = event_loop
        self.proxy_port = proxy_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def enrol(self, broker: BrokerProcess, code: str, hostname: str = "demo-laptop") -> None:
        """Enrol with the agent's own command, as a staff member would."""
        out = subprocess.run([sys.executable, "-P", "-m", "agent", "enroll", "--broker",
                              broker.api_url, "--code", code, "--ca-pin", broker.ca_pin,
                              "--hostname", hostname, "--proxy-port", str(self.proxy_port),
                              "--data-dir", str(self.data_dir)],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"enrolment failed: {out.stdout}{out.stderr}")

    def login(self, username: str, password: str, totp: str = "",
              method: str | None = None) -> subprocess.CompletedProcess[str]:
        """`sekimori-agent login` with the password on stdin, as a script would run it."""
        args = [sys.executable, "-P", "-m", "agent", "login", "--data-dir", str(self.data_dir),
                "--username", username, "--password-stdin", "--totp", totp]
        if method:
            args += ["--method", method]
        return subprocess.run(args, input=password + "\n", capture_output=True, text=True,
                              timeout=60)

    def logout(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-P", "-m", "agent", "logout", "--data-dir",
                               str(self.data_dir)], capture_output=True, text=True, timeout=60)

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def status(self) -> dict[str, Any] | None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.proxy_port}{AGENT_STATUS_PATH}", timeout=3) as r:
                data: dict[str, Any] = json.loads(r.read())
                return data
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 20, wait_connected: bool = True) -> None:
        log = open(self.data_dir / "agent.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "agent", "run", "--data-dir",
                                      str(self.data_dir), "-v", "--loop", self.event_loop],
                                     stdout=log, stderr=log)

        def ready() -> bool:
            st = self.status()
            return st is not None and (not wait_connected or st["state"] == "connected")
        _wait_for(ready, timeout, "agent", self.proc)

    def stop(self, timeout: float = 10) -> None:
        stop_process(self.proc, timeout)
        self.proc = None


# -- the demo ---------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    target: str
    expect: str
    got: str
    reason: str
    ok: bool


def fetch(proxy_port: int, url: str, origin_ca: Path | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET `url` through the agent's proxy with http.client (CONNECT for https)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        host, port, path = parts.hostname or "", parts.port or 443, parts.path.lstrip("/")
        ctx = ssl.create_default_context(cafile=str(origin_ca) if origin_ca else None)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", proxy_port, timeout=15, context=ctx)
        conn.set_tunnel(host, port)
        target = "/" + path
    else:
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=15)
        target = url
    try:
        conn.request("GET", target, headers={"user-agent": "sekimori-demo"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except OSError as exc:  # CONNECT refused: http.client reports the status in the message
        text = str(exc)
        match = re.match(r"Tunnel connection failed: (\d{3})", text)
        status = int(match.group(1)) if match else 0
        return status, {}, text.encode()
    finally:
        conn.close()


def make_check(agent: AgentProcess, origins: LocalOrigins, checks: list[Check], trust: Path | None = None
               ) -> Callable[[str, str, int, str | None], None]:
    def check(name: str, url: str, expect_status: int, expect_reason: str | None) -> None:
        status, hdrs, body = fetch(agent.proxy_port, url, trust or origins.ca_path)
        if url.startswith("https") and status == 403:
            hdrs = {"sekimori-reason": (agent.status() or {}).get("last_denial", {}).get("reason", "")}
        reason = hdrs.get("sekimori-reason", "")
        ok = status == expect_status and (expect_reason is None or reason == expect_reason)
        if expect_status == 200:
            ok = ok and body == DEMO_BODY
        checks.append(Check(name, url, f"{expect_status} {expect_reason or ''}".strip(),
                            str(status), reason, ok))
    return check


def run_checks(agent: AgentProcess, origins: LocalOrigins,
               checks: list[Check] | None = None, trust: Path | None = None) -> list[Check]:
    checks = [] if checks is None else checks
    check = make_check(agent, origins, checks, trust)
    check("HTTP through the tunnel", f"http://{origins.host}:{origins.http_port}/", 200, None)
    check("HTTPS through the tunnel", f"https://{origins.host}:{origins.https_port}/", 200, None)
    check("cloud metadata address", "http://169.254.169.254/latest/meta-data/", 403, "address-metadata")
    check("private address", "http://10.0.0.1/", 403, "address-private")
    check("loopback spelt as a number", "http://2130706433/", 403, "address-loopback")
    check("IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]/", 403, "address-ipv4-mapped")
    check("name resolving to loopback", "http://localhost/", 403, "address-loopback")
    check("port not allowed (SMTP)", "http://198.51.100.7:25/", 403, "port-not-allowed")
    return checks


def run_demo(*, once: bool, data_dir: Path | None, console: Console) -> int:
    from broker.demo_breakout import check_breakout, import_endpoints, point_agent
    from broker.demo_gateway import VALID as MYNUMBER
    from broker.demo_gateway import check_gateway, client_trust, inspection_toml, no_trust_store
    from broker.demo_output import print_audit, print_checks
    from broker.demo_policy import HOSTS as POLICY_HOSTS
    from broker.demo_policy import JYUKI_HOST, TAX_HOST, import_policy
    from broker.demo_posture import (
        COMPLIANT_LAPTOP,
        NONCOMPLIANT_LAPTOP,
        failed_checks,
        posture_toml,
        simulate_facts,
    )
    root = data_dir or Path(tempfile.mkdtemp(prefix="sekimori-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]Sekimori demo[/bold] in {root} (loopback only, offline)")
    why = unavailable()
    if why:
        console.print(f"[red]the demo needs its directory server: {why}[/red]")
        return 2
    origins = LocalOrigins(root / "origins")
    with console.status("starting the demo municipality's directory (OpenLDAP, LDAPS)…"):
        directory = start_demo_directory(root / "directory", free_port())
    console.print(f"  directory: {directory.url} (LDAPS, nested groups 税務課 ⊂ 総務部 ⊂ 全職員)")
    broker = BrokerProcess(root / "broker-data", allowed_ports=[origins.http_port, origins.https_port],
                           allowed_networks=[f"{ORIGIN_HOST}/32"],
                           identity_toml=directory.identity_toml(DEMO_TENANT) + posture_toml(DEMO_TENANT),
                           static_hosts={host: [ORIGIN_HOST] for host in POLICY_HOSTS},
                           extra_toml=inspection_toml(origins))
    agent = AgentProcess(root / "agent-data")
    other = AgentProcess(root / "agent2-data")
    try:
        with console.status("starting the broker…"):
            broker.start()
            broker.add_tenant(DEMO_TENANT, DEMO_TENANT_NAME)
        console.print(f"  broker: tunnel 127.0.0.1:{broker.info['tunnel_port']}, API {broker.api_url}")
        # applied by the broker within half a second, long before the first request below
        console.print(f"  admin:  sekimori policy import → {import_policy(broker.data_dir, DEMO_TENANT)}")
        console.print(f"  admin:  sekimori m365 import → {import_endpoints(broker.data_dir, origins)}")
        with console.status("enrolling the demo laptops…"):
            for laptop, staff, facts in ((agent, DEMO_STAFF, COMPLIANT_LAPTOP),
                                         (other, OTHER_STAFF, NONCOMPLIANT_LAPTOP)):
                if not (laptop.data_dir / "agent.json").exists():
                    laptop.enrol(broker, broker.enrolment_code(DEMO_TENANT), hostname=f"{staff}-laptop")
                    simulate_facts(laptop, facts)
                    point_agent(laptop, ORIGIN_HOST)
                    no_trust_store(laptop)
                laptop.start()
        st = agent.status() or {}
        console.print(f"  agent: proxy {agent.proxy}, device {st.get('device')} ({DEMO_TENANT_NAME})")
        checks: list[Check] = []
        make_check(agent, origins, checks)("before login", f"http://{origins.host}:{origins.http_port}/",
                                           403, "login-required")
        with console.status(f"enrolling {DEMO_STAFF}'s TOTP and logging in (password + TOTP)…"):
            secret = broker.enrol_totp(DEMO_TENANT, DEMO_STAFF)
            name, password, _ = STAFF[DEMO_STAFF]
            login = agent.login(DEMO_STAFF, password, pyotp.TOTP(secret).now())
        console.print(f"  admin:  sekimori user totp-enrol {DEMO_STAFF} --tenant {DEMO_TENANT}")
        console.print(f"  staff:  sekimori-agent login → {' '.join(login.stdout.split())}")
        checks.append(Check("login (password + TOTP)", f"{DEMO_STAFF} / {name}", "0", str(login.returncode),
                            "login-ok" if login.returncode == 0 else "", login.returncode == 0))
        trust = client_trust(root, origins, broker)
        run_checks(agent, origins, checks, trust)
        check = make_check(agent, origins, checks, trust)
        check("LGWAN tax system (rule r-001)", f"http://{TAX_HOST}:{origins.http_port}/", 200, None)
        check("My Number system (guard)", f"http://{JYUKI_HOST}:{origins.http_port}/", 403,
              "zone-mynumber-forbidden")
        check_breakout(agent, origins, broker.config.audit_path, checks)
        check_gateway(agent, origins, checks, trust)
        with console.status(f"{OTHER_STAFF} logs in on a laptop with its firewall off…"):
            other_secret = broker.enrol_totp(DEMO_TENANT, OTHER_STAFF)
            other.login(OTHER_STAFF, STAFF[OTHER_STAFF][1], pyotp.TOTP(other_secret).now())
            failed = failed_checks(other) or []
        make_check(other, origins, checks)(f"{OTHER_STAFF}: firewall off, no EDR",
                                           f"http://{origins.host}:{origins.http_port}/", 403,
                                           "device-noncompliant")
        print_checks(console, checks, agent)
        for failure in failed:
            console.print(f"  {OTHER_STAFF}'s laptop fails [bold]{failure['check']}[/bold]: "
                          f"{failure['message_ja']} → {failure['fix_ja']}")
        passed = all(c.ok for c in checks)
        time.sleep(0.1)  # the last stream's event is acknowledged a few ms after it closes
        print_audit(console, broker.config.audit_path)
        if once:
            console.print("[green]all demo checks passed[/green]" if passed
                          else "[red]some demo checks failed[/red]")
            return 0 if passed else 1
        console.print("\nTry it yourself (Ctrl-C to stop):")
        print(f"  curl -x {agent.proxy} http://{origins.host}:{origins.http_port}/")
        print(f"  curl -x {agent.proxy} --cacert {trust} https://{origins.host}:{origins.https_port}/   "
              "# inspected: the broker's leaf")
        print(f"  curl -x {agent.proxy} --cacert {trust} --data-binary '個人番号 {MYNUMBER}' "
              f"https://{origins.host}:{origins.https_port}/upload   # DLP: the block page")
        print(f"  curl -i -x {agent.proxy} http://169.254.169.254/")
        bin_dir = Path(sys.executable).parent
        print(f"  SEKIMORI_AGENT_DIR={agent.data_dir} {bin_dir / 'sekimori-agent'} status")
        print(f"  SEKIMORI_AGENT_DIR={other.data_dir} {bin_dir / 'sekimori-agent'} status   "
              f"# {OTHER_STAFF}'s non-compliant laptop: what to fix")
        print(f"  {bin_dir / 'sekimori'} device list --data-dir {broker.data_dir}")
        print(f"  curl -i -x {agent.proxy} http://{JYUKI_HOST}:{origins.http_port}/   # three-layer guard")
        print(f"  {bin_dir / 'sekimori'} policy test --tenant {DEMO_TENANT} --url http://{JYUKI_HOST}/ "
              f"--group all-staff --mfa-minutes-ago 1 --posture standard --data-dir {broker.data_dir}")
        print(f"  {bin_dir / 'sekimori'} policy lint --tenant {DEMO_TENANT} --data-dir {broker.data_dir}")
        print(f"  curl -x {agent.proxy} http://outlook.office365.com:{origins.http_port}/   "
              "# Microsoft 365 breakout: direct, yet audited")
        print(f"  {bin_dir / 'sekimori'} m365 check outlook.office365.com --tenant {DEMO_TENANT} "
              f"--data-dir {broker.data_dir}")
        print(f"  SEKIMORI_AGENT_DIR={agent.data_dir} {bin_dir / 'sekimori-agent'} logout")
        print(f"  SEKIMORI_AGENT_DIR={agent.data_dir} {bin_dir / 'sekimori-agent'} login   "
              f"# {DEMO_STAFF} / {STAFF[DEMO_STAFF][1]} + a code from the TOTP secret {secret}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        return 0 if passed else 1
    finally:
        agent.stop()
        other.stop()
        broker.close()
        origins.close()
        directory.stop()
        if data_dir is None and once:
            import shutil
            shutil.rmtree(root, ignore_errors=True)
        os.environ.pop("SEKIMORI_DEMO", None)
