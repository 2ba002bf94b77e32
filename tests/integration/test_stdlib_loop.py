"""Agent and broker on the stdlib asyncio loop (what a Windows agent runs), not uvloop.

Found this way: asyncio's transport lets write_eof() raise ENOTCONN when a client has already
gone, which used to end the whole tunnel after a few short flows.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from broker.demo import DEMO_BODY, AgentProcess, LocalOrigins
from tests.integration.conftest import make_broker, require_curl


def test_stdlib_loop_carries_flows(origins: LocalOrigins, tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "broker", origins, event_loop="asyncio")
    agent = AgentProcess(tmp_path / "agent", event_loop="asyncio")
    try:
        agent.enrol(broker, broker.enrolment_code("test-city"))
        agent.start()
        target = f"{origins.host}:{origins.http_port}"
        tls_target = f"{origins.host}:{origins.https_port}"
        for _ in range(300):  # many short flows, each closed by the client right away
            with socket.create_connection(("127.0.0.1", agent.proxy_port), timeout=10) as sock:
                sock.sendall(f"CONNECT {tls_target} HTTP/1.1\r\nHost: {tls_target}\r\n\r\n".encode())
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        status = agent.status()
        assert status is not None and status["state"] == "connected" and status["connects"] == 1
        https = subprocess.run([require_curl(), "-sS", "-x", agent.proxy, "--cacert", str(origins.ca_path),
                                f"https://{origins.host}:{origins.https_port}/"], capture_output=True, timeout=30)
        assert https.stdout == DEMO_BODY, https.stderr
        size = 32 * 1024 * 1024
        bulk = subprocess.run([require_curl(), "-sS", "-p", "-x", agent.proxy, "-o", "/dev/null", "-w",
                               "%{size_download}", f"http://{target}/bytes/{size}"],
                              capture_output=True, text=True, timeout=60)
        assert bulk.stdout == str(size), bulk.stderr
        denied = subprocess.run([require_curl(), "-sS", "-i", "-x", agent.proxy, "http://10.0.0.1/"],
                                capture_output=True, timeout=30)
        assert b"sekimori-reason: address-private" in denied.stdout
    finally:
        agent.stop()
        broker.close()
