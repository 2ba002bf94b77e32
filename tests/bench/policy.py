"""Policy decisions per second on one core: a municipality with 10,000 apps and 1,000 rules
under a prefecture baseline (300 apps, 100 rules), uncached (`engine.decide`: host index, rule
candidates per segment and app) and through the `DecisionCache` hit path.

    .venv/bin/python -m tests.bench.policy [--requests 20000] [--seed 1]

Requests are drawn over the apps' hosts (exact and below wildcards), unknown hosts and URL
categories, every segment, a handful of groups, users and posture profiles, and the whole week.
A script, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from broker.policy.engine import DecisionCache, compile_policy, decide
from broker.policy.model import (
    Action,
    ActionKind,
    App,
    AppKind,
    Conditions,
    Policy,
    PolicyRequest,
    PrivateKind,
    Rule,
    SecurityModel,
    SpecificCommunication,
    Tenant,
    TimeWindow,
    Zone,
)

GROUPS = [f"課{i:02d}" for i in range(50)]
CATEGORIES = ["news", "social", "gambling", "shopping", "finance", "health", "search", "video"]
PROFILES = ["standard", "strict", "kiosk"]
WINDOWS = [TimeWindow((0, 1, 2, 3, 4), 510, 1035), TimeWindow(tuple(range(7)), 1320, 360),
           TimeWindow((5, 6), 540, 1020)]


def make_apps(rng: random.Random, prefix: str, count: int) -> list[App]:
    apps = []
    for i in range(count):
        roll = rng.random()
        app_id = f"{prefix}app-{i}"
        if roll < 0.55:
            apps.append(App(app_id, app_id, AppKind.INTERNET, Zone.INTERNET, (f"www.{prefix}site{i}.example.jp",)))
        elif roll < 0.75:
            apps.append(App(app_id, app_id, AppKind.SAAS, Zone.INTERNET, (f"*.{prefix}saas{i}.example.com",
                                                                          f"{prefix}saas{i}.example.com")))
        elif roll < 0.93:
            apps.append(App(app_id, app_id, AppKind.PRIVATE, Zone.LGWAN, (f"{prefix}sys{i}.city.lg.jp",), (443,),
                            (), rng.choice([PrivateKind.WEB, PrivateKind.VDI])))
        elif roll < 0.98:
            apps.append(App(app_id, app_id, AppKind.PRIVATE, Zone.MYNUMBER, (f"{prefix}my{i}.city.lg.jp",), (),
                            (), PrivateKind.WEB))
        else:
            apps.append(App(app_id, app_id, AppKind.INTERNET, Zone.INTERNET, (), (), (rng.choice(CATEGORIES),)))
    return apps


def make_rules(rng: random.Random, prefix: str, count: int, app_ids: list[str]) -> list[Rule]:
    rules = []
    for i in range(count):
        pick = rng.random
        by_app = pick() < 0.95          # the others name URL categories ("deny gambling")
        when = Conditions(
            users=(f"user{rng.randrange(200)}",) if pick() < 0.05 else (),
            groups=tuple(rng.sample(GROUPS, rng.randint(1, 3))) if pick() < 0.6 else (),
            posture_profiles=(rng.choice(PROFILES),) if pick() < 0.15 else (),
            segments=(rng.choice(list(Zone)),) if pick() < 0.4 else (),
            apps=tuple(rng.sample(app_ids, rng.randint(1, 3))) if by_app else (),
            categories=(rng.choice(CATEGORIES),) if not by_app or pick() < 0.05 else (),
            time_windows=(rng.choice(WINDOWS),) if pick() < 0.15 else (),
            source_networks=("10.0.0.0/8",) if pick() < 0.03 else ())
        kind = rng.choices(list(ActionKind), weights=[50, 20, 10, 5, 15])[0]
        action = Action(kind, rng.choice([15, 30, 60]) if kind is ActionKind.REQUIRE_MFA else None)
        rules.append(Rule(f"{prefix}r-{i:04d}", f"rule {i}", when, action))
    return rules


def build(rng: random.Random) -> tuple[Policy, Policy]:
    pref_apps = make_apps(rng, "p", 300)
    baseline = Policy(
        Tenant("pref", "県"), tuple(pref_apps), (),
        tuple(SpecificCommunication(f"sc{i}", f"特定通信{i}", f"sc{i}.lgwan.example", f"203.0.113.{i}", 443)
              for i in range(20)),
        tuple(make_rules(rng, "b", 100, [a.id for a in pref_apps])))
    city_apps = make_apps(rng, "c", 10_000)
    visible = [a.id for a in city_apps] + [a.id for a in pref_apps]
    city = Policy(Tenant("city", "市", "pref", SecurityModel.BETA), tuple(city_apps), (), (),
                  tuple(make_rules(rng, "c", 1_000, visible)))
    return baseline, city


def make_requests(rng: random.Random, apps: list[App], n: int) -> list[PolicyRequest]:
    hosts = []
    for app in apps:
        for host in app.hosts:
            hosts.append(f"api.{host[2:]}" if host.startswith("*.") else host)
    out = []
    for _ in range(n):
        roll = rng.random()
        host = rng.choice(hosts) if roll < 0.8 else f"unknown{rng.randrange(10**6)}.example.org"
        segment = rng.choices(list(Zone), weights=[6, 3, 1])[0]
        out.append(PolicyRequest(
            tenant="city", user=f"user{rng.randrange(200)}",
            groups=frozenset(rng.sample(GROUPS, rng.randint(1, 3))), mfa=rng.random() < 0.8,
            mfa_age_seconds=rng.uniform(0, 7200), device_id="d", segment=segment,
            posture_compliant=rng.random() < 0.9, posture_profile=rng.choice(PROFILES), host=host,
            port=rng.choice([443, 443, 443, 80]), address=None,
            url_category=rng.choice(CATEGORIES) if rng.random() < 0.5 else None,
            source_address=f"10.{rng.randrange(256)}.0.{rng.randrange(1, 255)}",
            weekday=rng.randrange(7), minute_of_day=rng.randrange(1440)))
    return out


def rate(fn: object, items: list[PolicyRequest], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for request in items:
            fn(request)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    baseline, city = build(rng)
    start = time.perf_counter()
    compiled = compile_policy(city, baseline)
    compile_seconds = time.perf_counter() - start
    requests = make_requests(rng, list(city.apps) + list(baseline.apps), args.requests)
    print(f"policy: {len(city.apps)} apps and {len(city.rules)} rules, baseline {len(baseline.apps)} apps "
          f"and {len(baseline.rules)} rules; compiled in {compile_seconds * 1000:.0f} ms")

    decide(compiled, requests[0])
    first = time.perf_counter()
    for request in requests:                     # cold: the per-(segment, app) rule lists get built
        decide(compiled, request)
    cold = len(requests) / (time.perf_counter() - first)
    uncached = rate(lambda r: decide(compiled, r), requests)
    allowed = sum(decide(compiled, r).allowed for r in requests)
    layers: dict[str, int] = {}
    for r in requests:
        layer = decide(compiled, r).layer
        layers[layer] = layers.get(layer, 0) + 1
    print(f"uncached (engine.decide): {uncached:>10,.0f} decisions/s  (first pass {cold:,.0f}/s); "
          f"{allowed / len(requests):.0%} allowed; by layer {dict(sorted(layers.items()))}")

    cache = DecisionCache(max_entries=len(requests) * 2)
    for request in requests:
        cache.decide(compiled, request)
    cache.hits = cache.misses = 0
    cached = rate(lambda r: cache.decide(compiled, r), requests)
    print(f"cached (DecisionCache hit path): {cached:>10,.0f} decisions/s  "
          f"(hits {cache.hits:,}, misses {cache.misses:,})")
    never = sum(1 for count in compiled.hits.values() if count == 0)
    print(f"rules never hit: {never} of {len(city.rules) + len(baseline.rules)}")


if __name__ == "__main__":
    main()
