"""Breakout on one core: compiling a tenant's rules from Microsoft's endpoint data, building the
matcher, routing decisions per second (uncached and through the per-(host, port) cache), the PAC
file's size and rendering time, and signing (broker) and verifying (agent) the rules document.

    .venv/bin/python -m tests.bench.breakout [--lookups 200000] [--seed 1]

Uses Microsoft's real 2024 data from ../shared/data when present (else a synthetic document of
the same shape: 72 sets, ~220 URLs, ~130 networks). Lookups mix Microsoft hosts (wildcards
instantiated), unrelated hosts and IP literals in and out of Microsoft's ranges.
A script, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.pac import render_pac
from agent.rules import verify_rules
from broker.agent_rules import sign_rules
from broker.m365 import parse_endpoint_data
from broker.pki import make_ca, make_server_cert
from broker.routing import DEFAULT_ROUTING, compile_breakout
from ztcore.agent_rules import AgentRules
from ztcore.breakout import BreakoutMatcher
from ztcore.keys import new_key
from ztcore.split_dns import SplitDnsConfig

REAL = (Path(__file__).resolve().parents[3] / "shared" / "data" / "m365-endpoints"
        / "worldwide_2024-04-17_full_slivertea.json")


def synthetic(rng: random.Random) -> bytes:
    sets = []
    for i in range(1, 73):
        category = "Optimize" if i <= 3 else "Allow" if i <= 10 else "Default"
        urls = [f"*.svc{i}-{j}.example.com" if j % 2 else f"host{j}.svc{i}.example.com"
                for j in range(3)]
        ips = [f"{rng.randrange(1, 223)}.{rng.randrange(256)}.0.0/16" for _ in range(2)]
        sets.append({"id": i, "serviceArea": "Common", "urls": urls, "ips": ips,
                     "tcpPorts": "80,443", "category": category, "required": True,
                     "expressRoute": False})
    return json.dumps(sets).encode()


def timed(fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    raw = REAL.read_bytes() if REAL.exists() else synthetic(rng)
    source = "Microsoft 2024-04-17 (real)" if REAL.exists() else "synthetic"
    data, t_parse = timed(lambda: parse_endpoint_data(raw), 20)
    rules, t_compile = timed(lambda: compile_breakout("city", DEFAULT_ROUTING.breakout, data.sets,
                                                      "2024041700"), 20)
    matcher, t_build = timed(lambda: BreakoutMatcher(rules), 20)
    print(f"data: {source}: {len(data.sets)} sets, {len(rules.rules)} rules "
          f"({sum(r.direct for r in rules.rules)} direct)")
    print(f"parse {t_parse * 1e3:.2f} ms, compile {t_compile * 1e3:.2f} ms, "
          f"matcher build {t_build * 1e3:.2f} ms")

    hosts: list[tuple[str, int]] = []
    for s in data.sets:
        for url in s.urls:
            hosts.append((url.replace("*.", f"h{rng.randrange(1000)}.").replace("*", "x"), 443))
        for net in s.ips:
            network = ipaddress.ip_network(net)
            hosts.append((str(network.network_address + rng.randrange(min(network.num_addresses,
                                                                            1 << 16))), 443))
    hosts += [(f"www{i}.example{rng.randrange(500)}.jp", 443) for i in range(len(hosts))]
    hosts += [(str(ipaddress.IPv4Address(rng.getrandbits(32))), 443) for _ in range(200)]
    queries = [rng.choice(hosts) for _ in range(args.lookups)]

    uncached = [(f"{h}" if ":" in h or h[0].isdigit() else f"u{i % 50_000}.{h}", p)
                for i, (h, p) in enumerate(queries)]
    route = matcher._route  # the lookup itself, without the per-(host, port) cache
    start = time.perf_counter()
    direct = sum(route(h, p).direct for h, p in uncached)
    t = time.perf_counter() - start
    print(f"uncached: {len(uncached) / t:,.0f} lookups/s ({t / len(uncached) * 1e6:.2f} µs each; "
          f"{direct / len(uncached):.0%} direct)")
    for h, p in queries:           # warm the cache
        matcher.route(h, p)
    start = time.perf_counter()
    for h, p in queries:
        matcher.route(h, p)
    t = time.perf_counter() - start
    print(f"cached:   {len(queries) / t:,.0f} lookups/s ({t / len(queries) * 1e6:.3f} µs each)")

    pac, t_pac = timed(lambda: render_pac("127.0.0.1", 8877, rules), 20)
    print(f"PAC: {len(pac.encode()):,} bytes, rendered in {t_pac * 1e3:.2f} ms")

    ca_key, server_key = new_key(), new_key()
    now = time.time()
    ca = make_ca(ca_key, "bench CA", now - 60, 86400, 1)
    server = make_server_cert(ca, ca_key, server_key, ["broker"], now - 60, 86400, 2)
    doc = AgentRules("city", "dev-1", now, rules, SplitDnsConfig(), 5)
    token, t_sign = timed(lambda: sign_rules(doc, server_key, [server, ca]), 50)
    _, t_verify = timed(lambda: verify_rules(token, ca, "city", "dev-1", now), 50)
    print(f"rules document: {len(token):,} bytes; sign {t_sign * 1e3:.2f} ms (broker, per "
          f"device and change), verify+parse {t_verify * 1e3:.2f} ms (agent)")


if __name__ == "__main__":
    main()
