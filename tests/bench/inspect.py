"""Inspection benchmark: a 256 MiB upload over HTTPS, decrypted and scanned, beside mitmproxy.

    .venv/bin/python -m tests.bench.inspect [--size-mib 256] [--repeat 2]

A script, not a test: it prints numbers, it asserts nothing. On loopback:

1. curl → agent → tunnel → broker (TLS interception: minted leaf, upstream validated, DLP over
   the streamed text body with My Number / card / corporate-number detectors) → HTTPS origin.
2. curl → mitmdump (regular mode, interception with its own CA, upstream validated against
   the same test CA) → the same origin. mitmproxy runs no DLP; it is the interception baseline.
   It is taken from $MITMDUMP, PATH or /tmp/mitm-venv (`python3 -m venv /tmp/mitm-venv &&
   /tmp/mitm-venv/bin/pip install mitmproxy`); skipped with a note when absent.

The body (`--body dense`, the default, or `prose`) is Japanese and English text with no valid My
Number, so nothing is blocked and every byte passes the detectors; `dense` has two long digit
chains on every line (reference numbers, dates, amounts, phone numbers), the detectors' worst case.
The broker runs twice: with DLP, and with `[inspection.dlp] enabled = false` (interception and
the malware hash only, what mitmproxy's number compares with). The goal (issue 7): the
inspected path at least 1.5 × mitmproxy's throughput.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from broker.demo import AgentProcess, BrokerProcess
from tests.bench.peers import clean_env, find_mitmdump, free_port, stop_process, wait_port
from tests.peers.tls_origins import CASES, TlsOrigins

LOOPBACK = "127.0.0.1"
# Two bodies: `dense`, a reference number, a date, an amount and a phone number on every line (the
# DLP detectors' worst case: two long digit chains per 170 bytes), and `prose`, ordinary text.
PROSE = ("関守市では、住民の皆様に安心して暮らしていただけるよう、防災・福祉・子育ての各分野で取り組みを"
         "進めています。The city publishes its annual report in June; questions may be sent to the "
         "information desk on the 3rd floor.\n")
LINE = ("関守市役所 住民課 2026年11月23日 受付番号 4821 件名: 転入届の確認 金額 12,800円 "
        "Sekimori city hall, ward office 3-12-7, tel 03-1234-5678, ref 20261123-0042\n")


def make_body(path: Path, size_mib: int, line: str = LINE) -> None:
    block = (line * (65536 // len(line.encode()) + 1)).encode()[:65536]
    with open(path, "wb") as f:
        for _ in range(size_mib * 16):
            f.write(block)


def upload(curl_args: list[str], url: str, body: Path) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "--max-time", "600", *curl_args, "--data-binary", f"@{body}",
                          "-H", "content-type: text/plain; charset=utf-8", "-H", "expect:", url],
                         capture_output=True, text=True, timeout=900)
    return time.perf_counter() - started, out.stdout + out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--body", choices=("dense", "prose"), default="dense")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sekimori-bench-inspect-"))
    origins = broker = agent = None
    mitm = None
    try:
        body = work / "body.txt"
        make_body(body, args.size_mib, LINE if args.body == "dense" else PROSE)
        size = body.stat().st_size
        # "localhost" on 127.0.0.1: a name mitmdump can resolve too (no hosts file to edit)
        origins = TlsOrigins(work / "origins", {case: ["localhost"] for case in CASES}, host=LOOPBACK)
        port = origins.port["good"]
        url = f"https://localhost:{port}/upload"
        print(f"body: {size / 2**20:.0f} MiB of {args.body} text; {args.repeat} runs each, best shown")
        results: dict[str, float] = {}
        for name, dlp in (("sekimori (inspect + DLP)", True), ("sekimori (inspect, DLP off)", False)):
            broker = BrokerProcess(
                work / f"broker-{dlp}", allowed_ports=[port], allowed_networks=[f"{LOOPBACK}/32"],
                static_hosts={"localhost": [LOOPBACK]}, identity_toml="[identity]\nrequire_login = false\n",
                extra_toml=(f'[inspection]\nenabled = true\nupstream_ca_file = "{origins.ca_path}"\n'
                            f"[inspection.dlp]\nenabled = {'true' if dlp else 'false'}\n"))
            broker.start()
            broker.add_tenant("bench-city", "ベンチ市")
            agent = AgentProcess(work / f"agent-{dlp}")
            agent.enrol(broker, broker.enrolment_code("bench-city"))
            config = agent.data_dir / "agent.json"
            config.write_text(config.read_text().replace('"install_inspection_ca": true',
                                                         '"install_inspection_ca": false'))
            agent.start()
            ca = broker.data_dir / "pki" / "inspection-ca.crt"
            runs = [upload(["-x", agent.proxy, "--cacert", str(ca)], url, body) for _ in range(args.repeat)]
            results[name] = min(took for took, _ in runs)
            if f'"bytes": {size}' not in runs[-1][1]:
                print(f"  warning: the origin did not get the whole body: {runs[-1][1][-300:]}")
            agent.stop()
            broker.close()
            agent = broker = None
        exe = find_mitmdump()
        if exe is None:
            print("mitmdump not found (see the module docstring): no baseline")
        else:
            confdir = work / "mitmproxy"
            confdir.mkdir()
            mport = free_port()
            log = open(work / "mitmdump.log", "ab")
            mitm = subprocess.Popen(
                [exe, "--mode", "regular", "--listen-host", "127.0.0.1", "--listen-port", str(mport),
                 "--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={origins.ca_path}",
                 "-q"], stdout=log, stderr=log, env=clean_env())
            wait_port("127.0.0.1", mport, 60, "mitmdump", mitm)
            mca = confdir / "mitmproxy-ca-cert.pem"
            for _ in range(100):
                if mca.exists():
                    break
                time.sleep(0.1)
            timings = []
            for _ in range(args.repeat):
                took, text = upload(["-x", f"http://127.0.0.1:{mport}", "--cacert", str(mca)], url, body)
                timings.append(took)
            if f'"bytes": {size}' not in text:
                print(f"  warning: mitmproxy's upload did not complete: {text[-300:]}")
            results["mitmproxy (interception only)"] = min(timings)
        for name, seconds in results.items():
            print(f"  {name:32s} {seconds:7.2f} s  {size / 2**20 / seconds:8.1f} MiB/s")
        theirs = results.get("mitmproxy (interception only)")
        if theirs:
            for name in ("sekimori (inspect + DLP)", "sekimori (inspect, DLP off)"):
                print(f"  {name}: {theirs / results[name]:.2f} × mitmproxy's throughput (goal ≥ 1.5)")
    finally:
        if agent is not None:
            agent.stop()
        if broker is not None:
            broker.close()
        if mitm is not None:
            stop_process(mitm, 10)
        if origins is not None:
            origins.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
