"""The demo's secure web gateway part: the broker inspects the demo origins (their CA is the
broker's upstream trust), the demo client trusts the broker's inspection CA, and two uploads
show DLP: a form with a valid My Number is refused with the block page (`dlp-mynumber`), one
whose check digit is wrong goes through. The demo laptops do not touch the machine's trust
store (`install_inspection_ca` off): the demo client is given the CA instead."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from swg.dlp.mynumber import mynumber_check_digit

if TYPE_CHECKING:
    from broker.demo import AgentProcess, BrokerProcess, Check, LocalOrigins

BASE = "12345678901"
VALID = BASE + str(mynumber_check_digit(BASE))
INVALID = BASE + str((mynumber_check_digit(BASE) + 1) % 10)


def inspection_toml(origins: LocalOrigins) -> str:
    return (f'[inspection]\nenabled = true\nupstream_ca_file = "{origins.ca_path}"\n'
            f"plain_http_ports = [80, {origins.http_port}]\n")


def no_trust_store(agent: AgentProcess) -> None:
    path = agent.data_dir / "agent.json"
    config = json.loads(path.read_text())
    config["install_inspection_ca"] = False
    path.write_text(json.dumps(config, indent=1))


def client_trust(root: Path, origins: LocalOrigins, broker: BrokerProcess) -> Path:
    """What the demo's HTTP client trusts: the origins' CA and the broker's inspection CA (a
    laptop has the latter in its trust store, put there by the agent)."""
    bundle = root / "client-trust.pem"
    bundle.write_bytes(origins.ca_path.read_bytes()
                       + (broker.data_dir / "pki" / "inspection-ca.crt").read_bytes())
    return bundle


def post(proxy_port: int, host: str, port: int, path: str, body: bytes, trust: Path
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, timeout=15,
                                       context=ssl.create_default_context(cafile=str(trust)))
    conn.set_tunnel(host, port)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "text/plain; charset=utf-8",
                                                       "user-agent": "sekimori-demo"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except OSError as exc:
        return 0, {}, str(exc).encode()
    finally:
        conn.close()


def check_gateway(agent: AgentProcess, origins: LocalOrigins, checks: list[Check], trust: Path) -> None:
    from broker.demo import Check
    for name, number, expect, reason in (
            ("upload with a My Number (inspected)", VALID, 403, "dlp-mynumber"),
            ("upload, check digit wrong", INVALID, 200, None)):
        body = f"転入届 氏名: 関守 花子 個人番号: {number}\n".encode()
        status, hdrs, answer = post(agent.proxy_port, origins.host, origins.https_port, "/upload", body, trust)
        got = hdrs.get("sekimori-reason", "")
        ok = status == expect and (reason is None or got == reason)
        if expect == 200:
            ok = ok and b"received_bytes" in answer
        checks.append(Check(name, f"https://{origins.host}:{origins.https_port}/upload",
                            f"{expect} {reason or ''}".strip(), str(status), got, ok))
