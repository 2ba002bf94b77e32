"""Cost of h2's per-frame debug repr on bulk DATA: `H2Connection.receive_data` on 1 MiB frames.

    .venv/bin/python tests/bench/h2_repr.py [--size-mib 1024] [--repeat 2]

A client-side H2Connection produces DATA frames on one stream; a server-side H2Connection with
the tunnel's settings (`ztcore.h2tuning.start`: 16 MiB stream window, 64 MiB connection
window, 1 MiB frames) receives them, one whole frame per `receive_data` call, and acknowledges
every one so that the windows never run out. Only `receive_data` is timed.

Variants, each in its own subprocess because the patch is process-global:
  plain  - h2 as shipped: every received frame is repr()'d, hex-encoding its whole body
  cheap  - the same after `ztcore.h2tuning.install_cheap_frame_repr()`
  tunnel - the tunnel's own receiver (`h2tuning.new_connection`: cheap repr, chunked frame
           buffer, TunnelH2Connection), for context

A script, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived

from ztcore import h2tuning

MIB = 1 << 20
MB = 1_000_000
VARIANTS = ("plain", "cheap", "tunnel")
HEADERS = [(b":method", b"CONNECT"), (b":authority", b"127.0.0.2:80")]


def _exchange(a: H2Connection, b: H2Connection) -> None:
    """Pass bytes both ways until neither side has anything to say (SETTINGS and their ACKs)."""
    for _ in range(16):
        ab, ba = a.data_to_send(), b.data_to_send()
        if not ab and not ba:
            return
        if ab:
            b.receive_data(ab)
        if ba:
            a.receive_data(ba)
    raise RuntimeError("handshake did not settle")


def measure(variant: str, total_bytes: int) -> dict[str, float]:
    if variant == "cheap":
        h2tuning.install_cheap_frame_repr()
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    if variant == "tunnel":
        server: H2Connection = h2tuning.new_connection(client_side=False)
    else:
        server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    h2tuning.start(client)
    h2tuning.start(server)
    _exchange(client, server)
    if client.max_outbound_frame_size != h2tuning.MAX_FRAME_BYTES:
        raise RuntimeError(f"frame size not negotiated: {client.max_outbound_frame_size}")
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, HEADERS)
    server.receive_data(client.data_to_send())
    payload = bytes(h2tuning.MAX_FRAME_BYTES)
    frames = total_bytes // len(payload)
    received = 0
    receive_ns = 0
    for _ in range(frames):
        if client.local_flow_control_window(stream_id) < len(payload):
            raise RuntimeError("flow-control window ran out: acknowledgements are not reaching the client")
        client.send_data(stream_id, payload)
        wire = client.data_to_send()
        t0 = time.perf_counter_ns()
        events = server.receive_data(wire)
        receive_ns += time.perf_counter_ns() - t0
        for event in events:
            if isinstance(event, DataReceived):
                received += len(event.data)
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        client.receive_data(server.data_to_send())
    if received != frames * len(payload):
        raise RuntimeError(f"received {received} of {frames * len(payload)} bytes")
    seconds = receive_ns / 1e9
    return {"bytes": received, "seconds": seconds, "mb_per_s": received / MB / seconds,
            "ms_per_mib": seconds * 1000 / (received / MIB)}


def run_child(variant: str, size_mib: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--size-mib", str(size_mib)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} failed: {out.stderr.strip()}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="bytes received per run (default 1024)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant (default 2)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size_mib * MIB)))
        return 0
    import h2
    import hyperframe
    print(f"h2 {h2.__version__}, hyperframe {hyperframe.__version__}, Python {sys.version.split()[0]}; "
          f"{args.size_mib} MiB in {h2tuning.MAX_FRAME_BYTES // MIB} MiB DATA frames, "
          "one frame per receive_data call; MB = 10^6 bytes")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeat):  # interleaved, so that machine drift hits every variant
        for variant in VARIANTS:
            results[variant].append(run_child(variant, args.size_mib))
    print(f"{'variant':<8} {'best MB/s':>10} {'median MB/s':>12} {'ms per MiB':>11}   all runs MB/s")
    for variant, runs in results.items():
        speeds = [r["mb_per_s"] for r in runs]
        best = max(runs, key=lambda r: r["mb_per_s"])
        print(f"{variant:<8} {max(speeds):>10.0f} {statistics.median(speeds):>12.0f} "
              f"{best['ms_per_mib']:>11.3f}   " + " ".join(f"{s:.0f}" for s in speeds))
    plain = max(r["mb_per_s"] for r in results["plain"])
    cheap = max(r["mb_per_s"] for r in results["cheap"])
    print(f"cheap repr ÷ plain: {cheap / plain:.1f}× (best vs best); receive time saved per GiB: "
          f"{(1024 * MIB / MB) * (1 / plain - 1 / cheap):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
