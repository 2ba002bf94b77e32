"""Tunnel benchmark: bulk download, small-request latency and new-flow time, on loopback.

    .venv/bin/python tests/bench/tunnel.py [--size-mib 1024] [--repeat 3] [--skip-peers]

A script, not a test: it prints numbers and compares them with the targets, it asserts nothing.
Every process it starts (origins, broker, agent, Squid, mitmdump) is stopped by its PID and its
work directory removed on exit, Ctrl-C included. All traffic stays on 127.0.0.0/8.

1. Download of one file over plain HTTP with real curl, `-p` forcing a CONNECT tunnel so every
   proxy carries the same bytes: direct, agent + broker, Squid, mitmproxy (passthrough).
2. 2,000 sequential HTTPS requests over one keep-alive connection, tunnel vs direct.
3. Time from TCP connect to the agent until `HTTP/1.1 200` for a CONNECT, vs a TCP connect.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `tests.bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.demo import AgentProcess, BrokerProcess
from tests.bench.peers import (
    MitmdumpProcess,
    OriginsProcess,
    SquidProcess,
    clean_env,
    cpu_seconds,
    find_mitmdump,
)

GIB = 1 << 30
MB = 1_000_000  # MB/s here is 10^6 bytes per second, as curl's speed_download is bytes/s
TENANT = "bench-city"

TARGET_VS_MITM = 1.3
TARGET_BROKER_CPU_PER_GIB = 1.2
TARGET_ADDED_P50_US = 200.0
TARGET_NEW_FLOW_ADDED_MS = 0.6
PAUSE_BETWEEN_FLOWS_SECONDS = 0.0005


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


# -- 1. bulk download ----------------------------------------------------------------------------

@dataclass
class PathSetup:
    name: str
    proxy: str | None
    processes: dict[str, int]  # label -> PID whose CPU time is charged to this path


@dataclass
class Download:
    ok: bool
    mb_per_s: float = 0.0
    wall_seconds: float = 0.0
    size_bytes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # label -> CPU-s per GiB
    error: str = ""


def curl_download(url: str, proxy: str | None, size_bytes: int, pids: dict[str, int]) -> Download:
    # Abort a stall (< 1 MB/s for 10 s) instead of waiting out the whole budget.
    max_seconds = 60 + size_bytes // (10 * MB)
    cmd = ["curl", "-sS", "-o", "/dev/null", "--max-time", str(max_seconds),
           "--speed-limit", str(MB), "--speed-time", "10",
           "-w", "%{http_code} %{size_download} %{speed_download} %{time_total}"]
    cmd += ["-p", "-x", proxy] if proxy else ["--noproxy", "*"]
    cmd.append(url)
    before = {label: cpu_seconds(pid) for label, pid in pids.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=max_seconds + 30)
    wall = time.perf_counter() - t0
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = {label: cpu_seconds(pid) for label, pid in pids.items()}
    try:
        code, size, speed, _total = out.stdout.split()
    except ValueError:
        return Download(False, error=f"curl exit {out.returncode}: {out.stderr.strip()}")
    if out.returncode != 0 or code != "200" or int(size) != size_bytes:
        return Download(False, error=f"curl exit {out.returncode}, HTTP {code}, {size} of "
                                     f"{size_bytes} bytes: {out.stderr.strip()}")
    gib = size_bytes / GIB
    cpu = {label: (after[label] - before[label]) / gib for label in pids}
    cpu["curl"] = ((children_after.ru_utime + children_after.ru_stime)
                   - (children_before.ru_utime + children_before.ru_stime)) / gib
    return Download(True, float(speed) / MB, wall, size_bytes, cpu)


def run_downloads(console: Console, setups: list[PathSetup], url: str, size_bytes: int,
                  repeat: int) -> dict[str, list[Download]]:
    results: dict[str, list[Download]] = {s.name: [] for s in setups}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("downloads", total=repeat * len(setups))
        # Rounds interleave the paths so that drift in the machine's load hits all of them.
        for round_no in range(repeat):
            for s in setups:
                progress.update(task, description=f"round {round_no + 1}/{repeat}: {s.name}")
                results[s.name].append(curl_download(url, s.proxy, size_bytes, s.processes))
                progress.advance(task)
    return results


def best_and_median(runs: list[Download]) -> tuple[float, float] | None:
    speeds = [r.mb_per_s for r in runs if r.ok]
    return (max(speeds), statistics.median(speeds)) if speeds else None


def print_downloads(console: Console, results: dict[str, list[Download]], size_bytes: int) -> None:
    table = Table(title=f"1. download of {size_bytes / GIB:.3g} GiB over plain HTTP (curl -p), "
                        "MB = 10^6 bytes")
    for col in ("path", "runs ok", "best MB/s", "median MB/s", "all runs MB/s",
                "CPU-s/GiB (median of runs)"):
        table.add_column(col)
    for name, runs in results.items():
        ok = [r for r in runs if r.ok]
        bm = best_and_median(runs)
        labels = list(ok[0].cpu) if ok else []
        cpu = ", ".join(f"{label} {statistics.median(r.cpu[label] for r in ok):.2f}" for label in labels)
        table.add_row(name, f"{len(ok)}/{len(runs)}", f"{bm[0]:.0f}" if bm else "-",
                      f"{bm[1]:.0f}" if bm else "-",
                      " ".join(f"{r.mb_per_s:.0f}" if r.ok else "fail" for r in runs), cpu)
    console.print(table)
    for name, runs in results.items():
        for i, r in enumerate(runs, 1):
            if not r.ok:
                console.print(f"  [red]{name} run {i} failed:[/red] {r.error}")
            else:
                cpu = ", ".join(f"{label} {v:.2f}" for label, v in r.cpu.items())
                console.print(f"  {name} run {i}: {r.mb_per_s:.0f} MB/s, {r.wall_seconds:.2f} s wall, "
                              f"CPU-s/GiB: {cpu}")
    tunnel = best_and_median(results.get("agent + broker", []))
    if tunnel is None:
        return
    for peer in ("mitmproxy passthrough", "squid", "direct"):
        other = best_and_median(results.get(peer, []))
        if other:
            console.print(f"  tunnel ÷ {peer}: best {tunnel[0] / other[0]:.2f}×, "
                          f"median {tunnel[1] / other[1]:.2f}×")


# -- 2. small-request latency ----------------------------------------------------------------------

def request_latencies(make_conn: Callable[[], http.client.HTTPSConnection], warmup: int,
                      count: int) -> tuple[list[float], bool]:
    """Microseconds per GET / over one keep-alive connection, and whether it stayed one."""
    conn = make_conn()
    times: list[float] = []
    try:
        def one() -> None:
            conn.request("GET", "/", headers={"user-agent": "sekimori-bench"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or not body:
                raise RuntimeError(f"GET / answered {response.status}")
        for _ in range(warmup):
            one()
        sock = conn.sock
        gc.collect()
        gc.disable()
        try:
            for _ in range(count):
                t0 = time.perf_counter_ns()
                one()
                times.append((time.perf_counter_ns() - t0) / 1000)
        finally:
            gc.enable()
        return sorted(times), conn.sock is sock
    finally:
        conn.close()


# -- 3. new flow -------------------------------------------------------------------------------------

def connect_times(target: tuple[str, int], connect_request: bytes | None, warmup: int,
                  count: int) -> list[float]:
    """Microseconds from starting a TCP connect to `target` until it is usable: connected, or
    (with `connect_request`) until the proxy's `HTTP/1.1 200` head has arrived."""
    times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup + count):
            t0 = time.perf_counter_ns()
            sock = socket.create_connection(target, timeout=10)
            try:
                if connect_request is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.sendall(connect_request)
                    head = b""
                    for _ in range(64):
                        chunk = sock.recv(4096)
                        head += chunk
                        if not chunk or b"\r\n\r\n" in head:
                            break
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"CONNECT answered {head[:80]!r}")
                elapsed = (time.perf_counter_ns() - t0) / 1000
            finally:
                sock.close()
            if i >= warmup:
                times.append(elapsed)
            # Untimed pause, the same for both paths: a connect-and-close loop faster than the
            # origin accepts would overflow its listen queue, and a dropped SYN costs 1 s.
            time.sleep(PAUSE_BETWEEN_FLOWS_SECONDS)
    finally:
        gc.enable()
    return sorted(times)


# -- the run ---------------------------------------------------------------------------------------

def scan_logs(console: Console, logs: list[Path]) -> None:
    words = ("ERROR", "CRITICAL", "Traceback", "WARNING", "Exception")
    for log in logs:
        if not log.exists():
            continue
        lines = log.read_text(errors="replace").splitlines()
        bad = [line for line in lines if any(w in line for w in words)]
        console.print(f"  {log.parent.name}/{log.name}: {len(lines)} lines, "
                      f"{len(bad)} with {'/'.join(words)}")
        for line in list(dict.fromkeys(bad))[:8]:
            console.print(f"    {line[:200]}", markup=False, highlight=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="download size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="downloads per path (default 3)")
    parser.add_argument("--skip-peers", action="store_true", help="no Squid, no mitmproxy")
    parser.add_argument("--requests", type=int, default=2000, help="latency requests (default 2000)")
    parser.add_argument("--flows", type=int, default=500, help="new flows (default 500)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 140)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)
    # Also when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    size_bytes = args.size_mib * 1024 * 1024
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="sekimori-bench-"))
        if not args.keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        # The payload is sparse: on tmpfs its holes are the shared zero page, so sendfile()
        # moves data without touching a disk or filling the page cache.
        shm = Path("/dev/shm")
        payload_dir = Path(tempfile.mkdtemp(prefix="sekimori-bench-", dir=shm if shm.is_dir() else work))
        stack.callback(shutil.rmtree, payload_dir, ignore_errors=True)
        payload = payload_dir / "payload.bin"
        with open(payload, "wb") as f:
            f.truncate(size_bytes)
        try:
            return run(console, args, work, payload, size_bytes, stack)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping every process[/yellow]")
            return 130
        finally:
            if args.keep:
                console.print(f"work directory kept: {work}")
    return 0


def run(console: Console, args: argparse.Namespace, work: Path, payload: Path, size_bytes: int,
        stack: ExitStack) -> int:
    started = time.monotonic()
    with console.status("starting origins, broker and agent…"):
        origins = OriginsProcess(work, payload)
        stack.callback(origins.stop)
        o = origins.info
        host = o["host"]
        broker = BrokerProcess(work / "broker", allowed_ports=[o["http_port"], o["https_port"], o["bulk_port"]],
                               allowed_networks=[f"{host}/32"],
                               identity_toml="[identity]\nrequire_login = false\n")
        stack.callback(broker.close)
        broker.start()
        broker.add_tenant(TENANT, "ベンチ市")
        agent = AgentProcess(work / "agent")
        stack.callback(agent.stop)
        agent.enrol(broker, broker.enrolment_code(TENANT), hostname="bench-laptop")
        agent.start()
    assert broker.proc is not None and agent.proc is not None
    console.print(f"origins pid {origins.proc.pid} ({host}: http {o['http_port']}, https {o['https_port']}, "
                  f"bulk {o['bulk_port']}); broker pid {broker.proc.pid}; agent pid {agent.proc.pid} "
                  f"(proxy {agent.proxy})")

    setups = [PathSetup("direct", None, {"origins": origins.proc.pid}),
              PathSetup("agent + broker", agent.proxy, {"broker": broker.proc.pid,
                                                        "agent": agent.proc.pid})]
    notes: list[str] = []
    if args.skip_peers:
        notes.append("peers skipped (--skip-peers)")
    else:
        if shutil.which("squid"):
            with console.status("starting squid…"):
                squid = SquidProcess(work)
                stack.callback(squid.stop)
            setups.append(PathSetup("squid", squid.proxy, {"squid": squid.proc.pid}))
        else:
            notes.append("squid row skipped: `squid` is not on PATH")
        exe = find_mitmdump()
        if exe:
            with console.status("starting mitmdump…"):
                mitm = MitmdumpProcess(work, exe)
                stack.callback(mitm.stop)
            setups.append(PathSetup("mitmproxy passthrough", mitm.proxy, {"mitmdump": mitm.proc.pid}))
        else:
            notes.append("mitmproxy row skipped: no mitmdump in $MITMDUMP, on PATH or at "
                         "/tmp/mitm-venv/bin/mitmdump (python3 -m venv /tmp/mitm-venv && "
                         "/tmp/mitm-venv/bin/pip install mitmproxy)")
    for note in notes:
        console.print(f"  [yellow]{note}[/yellow]")

    bulk_url = f"http://{host}:{o['bulk_port']}/file"
    for s in setups:  # a small fetch first: a broken path fails here, not after a GiB
        check = curl_download(f"http://{host}:{o['bulk_port']}/bytes/4096", s.proxy, 4096, {})
        if not check.ok:
            console.print(f"  [red]sanity fetch through {s.name} failed:[/red] {check.error}")

    # 1.
    downloads = run_downloads(console, setups, bulk_url, size_bytes, args.repeat)
    print_downloads(console, downloads, size_bytes)

    # 2. No rich live display from here on: its refresh thread would share our GIL.
    console.print(f"2. measuring {args.requests} keep-alive HTTPS requests, direct then tunnel…")
    ctx = ssl.create_default_context(cafile=o["ca_path"])

    def direct_conn() -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(host, o["https_port"], context=ctx, timeout=10)

    def tunnel_conn() -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection("127.0.0.1", agent.proxy_port, context=ctx, timeout=10)
        conn.set_tunnel(host, o["https_port"])
        return conn

    lat: dict[str, tuple[list[float], bool]] = {}
    lat_cpu: dict[str, float] = {}
    lat["direct"] = request_latencies(direct_conn, 100, args.requests)
    cpu0 = {"broker": cpu_seconds(broker.proc.pid), "agent": cpu_seconds(agent.proc.pid)}
    lat["tunnel"] = request_latencies(tunnel_conn, 100, args.requests)
    lat_cpu = {k: (cpu_seconds(p) - cpu0[k]) * 1e6 / (args.requests + 100)
               for k, p in (("broker", broker.proc.pid), ("agent", agent.proc.pid))}
    table = Table(title=f"2. {args.requests} sequential HTTPS GET / on one keep-alive connection "
                        "(after 100 warm-up), µs")
    for col in ("path", "p50", "p99", "mean", "max", "one connection"):
        table.add_column(col)
    for name, (times, same) in lat.items():
        table.add_row(name, f"{percentile(times, 50):.0f}", f"{percentile(times, 99):.0f}",
                      f"{statistics.fmean(times):.0f}", f"{times[-1]:.0f}", "yes" if same else "NO")
    console.print(table)
    added_p50 = percentile(lat["tunnel"][0], 50) - percentile(lat["direct"][0], 50)
    added_p99 = percentile(lat["tunnel"][0], 99) - percentile(lat["direct"][0], 99)
    console.print(f"  added by the tunnel: p50 {added_p50:.0f} µs, p99 {added_p99:.0f} µs; CPU per "
                  f"request: broker {lat_cpu['broker']:.0f} µs, agent {lat_cpu['agent']:.0f} µs")

    # 3.
    console.print(f"3. measuring {args.flows} new flows (after 50 warm-up), direct then tunnel…")
    # Both against the bulk origin: http.server's listen backlog of 5 overflows under a
    # connect-and-close loop, and a dropped SYN costs a 1 s retransmit.
    authority = f"{host}:{o['bulk_port']}".encode()
    request = b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n\r\n"
    direct_flow = connect_times((host, o["bulk_port"]), None, 50, args.flows)
    cpu0 = {"broker": cpu_seconds(broker.proc.pid), "agent": cpu_seconds(agent.proc.pid)}
    tunnel_flow = connect_times(("127.0.0.1", agent.proxy_port), request, 50, args.flows)
    flow_cpu = {k: (cpu_seconds(p) - cpu0[k]) * 1e6 / (args.flows + 50)
                for k, p in (("broker", broker.proc.pid), ("agent", agent.proc.pid))}
    table = Table(title="3. new flow: TCP connect → usable (direct: connected; tunnel: "
                        "`HTTP/1.1 200` to CONNECT), µs")
    for col in ("path", "p50", "p99", "mean", "max"):
        table.add_column(col)
    for name, times in (("direct TCP connect", direct_flow), ("agent CONNECT → 200", tunnel_flow)):
        table.add_row(name, f"{percentile(times, 50):.0f}", f"{percentile(times, 99):.0f}",
                      f"{statistics.fmean(times):.0f}", f"{times[-1]:.0f}")
    console.print(table)
    flow_p50 = (percentile(tunnel_flow, 50) - percentile(direct_flow, 50)) / 1000
    flow_p99 = (percentile(tunnel_flow, 99) - percentile(direct_flow, 99)) / 1000
    console.print(f"  added by the tunnel: p50 {flow_p50:.3f} ms, p99 {flow_p99:.3f} ms; CPU per flow: "
                  f"broker {flow_cpu['broker']:.0f} µs, agent {flow_cpu['agent']:.0f} µs")

    # 4.
    print_targets(console, downloads, added_p50, flow_p50)
    console.print("logs (lines mentioning errors or warnings, first 8 distinct):")
    scan_logs(console, [work / "broker" / "broker.log", work / "agent" / "agent.log"])
    audit = broker.config.audit_path
    events = audit.read_text().splitlines() if audit.exists() else []
    allowed = sum('"decision":"allow"' in e for e in events)
    console.print(f"  audit log: {len(events)} stream events ({allowed} allowed)")
    console.print(f"total time {time.monotonic() - started:.0f} s")
    return 0


def print_targets(console: Console, downloads: dict[str, list[Download]], added_p50: float,
                  flow_added_ms: float) -> None:
    table = Table(title="4. against the targets")
    for col in ("target", "measured", "met"):
        table.add_column(col)

    def row(target: str, measured: str, met: bool | None) -> None:
        table.add_row(target, measured, "-" if met is None else ("[green]yes[/green]" if met else "[red]NO[/red]"))

    tunnel = best_and_median(downloads.get("agent + broker", []))
    mitm = best_and_median(downloads.get("mitmproxy passthrough", []))
    if tunnel and mitm:
        ratio = tunnel[0] / mitm[0]
        row(f"tunnel ≥ {TARGET_VS_MITM}× mitmproxy passthrough (best vs best)",
            f"{ratio:.2f}× (median vs median {tunnel[1] / mitm[1]:.2f}×)", ratio >= TARGET_VS_MITM)
    else:
        row(f"tunnel ≥ {TARGET_VS_MITM}× mitmproxy passthrough", "not measured", None)
    ok = [r for r in downloads.get("agent + broker", []) if r.ok]
    if ok:
        broker_cpu = statistics.median(r.cpu["broker"] for r in ok)
        row(f"broker ≤ {TARGET_BROKER_CPU_PER_GIB} CPU-s per GiB (median)", f"{broker_cpu:.2f} CPU-s/GiB",
            broker_cpu <= TARGET_BROKER_CPU_PER_GIB)
    else:
        row(f"broker ≤ {TARGET_BROKER_CPU_PER_GIB} CPU-s per GiB", "no successful download", False)
    row(f"added p50 ≤ {TARGET_ADDED_P50_US:.0f} µs (keep-alive HTTPS)", f"{added_p50:.0f} µs",
        added_p50 <= TARGET_ADDED_P50_US)
    row(f"new flow ≤ +{TARGET_NEW_FLOW_ADDED_MS} ms (p50)", f"+{flow_added_ms:.3f} ms",
        flow_added_ms <= TARGET_NEW_FLOW_ADDED_MS)
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
