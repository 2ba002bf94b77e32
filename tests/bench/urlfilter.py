"""URL category import and lookups per second on one core, on the real UT1 malware and phishing
lists (≈218k domains each, plus their URL prefixes and expression), read from ../shared/data
(never shipped with the product; the script stops with a message when the data is absent).

    .venv/bin/python -m tests.bench.urlfilter [--hosts 60000] [--seed 1] [--repeats 40]

Prints the import time (read, parse, build), the peak memory of the import (tracemalloc, in a
second pass: tracing slows allocation) and the memory the index keeps per entry, then lookups
per second over a mix of listed hosts, subdomains of listed hosts and unlisted hosts, every one
a distinct, freshly built string (no hash cached, no result cache: the index has none):

- `lookup_host` (domains and host lists: what a CONNECT or a DNS name allows),
- `lookup` (plus URL prefixes and the expression, path `/`),
- the set-with-suffix-walk prototype (one set per category, `split`/`join` suffixes), for scale,
- the same calls on 1,000 hosts repeated (CPU caches warm; still no result cache).

Each rate is the best of `--repeats` chunks (the median is shown too): on a shared VM, CPU steal
makes single runs swing by 2x. A script, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from swg.runtime.category_import import import_squidguard_directory
from swg.urlcategories import parse_squidguard_domains

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
UT1 = DATA / "ut1-blacklists" / "blacklists"
CATEGORIES = ("malware", "phishing")
WORDS = ("city", "news", "shop", "mail", "cdn", "api", "portal", "kankou", "kosodate", "bousai",
         "library", "travel", "static", "img", "login", "support")
TLDS = ("com", "jp", "co.jp", "lg.jp", "net", "org", "go.jp", "io", "info", "de", "fr")


def steal_ticks() -> int:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0
    return int(fields[8]) if len(fields) > 8 else 0


def make_hosts(rng: random.Random, domains: list[str], count: int) -> tuple[list[str], dict[str, int]]:
    """A third each: listed hosts, hosts one or two labels below a listed name (an address has
    nothing below it), unlisted hosts."""
    hosts, kinds = [], {"listed": 0, "below listed": 0, "unlisted": 0}
    names = [d for d in domains if not d[-1].isdigit()]
    for i in range(count):
        roll = rng.random()
        if roll < 1 / 3:
            hosts.append(rng.choice(domains))
            kinds["listed"] += 1
        elif roll < 2 / 3:
            word = rng.choice(WORDS)
            below = f"{word}{i}." if rng.random() < 0.7 else f"a{i}.{word}."
            hosts.append(below + rng.choice(names))
            kinds["below listed"] += 1
        else:
            shape = rng.randrange(3)
            word, tld = rng.choice(WORDS), rng.choice(TLDS)
            hosts.append(f"www.{word}{i}.{tld}" if shape == 0 else f"{word}{i}.{tld}" if shape == 1
                         else f"{rng.choice(WORDS)}.{word}{i}.example.{tld}")
            kinds["unlisted"] += 1
    return list(dict.fromkeys(hosts)), kinds


def rate(fn: Callable[[str], object], hosts: list[str], repeats: int,
         chunk: int) -> tuple[float, float]:
    """(best, median) calls per second over `repeats` chunks of fresh strings."""
    times = []
    for rep in range(repeats):
        start = (rep * chunk) % max(1, len(hosts) - chunk)
        fresh = [(h + ".")[:-1] for h in hosts[start:start + chunk]]  # new objects: no cached hash
        gc.collect()
        began = time.perf_counter()
        for host in fresh:
            fn(host)
        times.append(time.perf_counter() - began)
    return chunk / min(times), chunk / statistics.median(times)


def baseline(lists: dict[str, frozenset[str]]) -> Callable[[str], tuple[str, ...]]:
    """The prototype this index replaces: one set per category, every suffix joined anew."""
    def lookup(host: str) -> tuple[str, ...]:
        labels = host.split(".")
        suffixes = [".".join(labels[i:]) for i in range(len(labels))]
        return tuple(name for name, entries in lists.items() if any(s in entries for s in suffixes))
    return lookup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--chunk", type=int, default=5_000)
    args = parser.parse_args()
    if not (UT1 / "malware" / "domains").is_file():
        sys.exit(f"UT1 lists not found under {UT1} (../shared/data, outside the repository)")

    index, report = import_squidguard_directory(UT1, categories=CATEGORIES)
    for item in report.categories:
        files = ", ".join(f"{f.where.rpartition('/')[2]} {f.entries:,}" for f in item.files)
        print(f"{item.category:>9}: {item.entries:,} entries ({files}), {item.skipped} skipped, "
              f"{item.duplicates} duplicates, {item.seconds:.2f} s read+parse")
    print(f"import: {report.seconds:.2f} s in all, of which index build {report.build_seconds:.2f} s; "
          f"{report.entries:,} entries, {report.keys:,} names in the index")
    del index
    gc.collect()
    tracemalloc.start()
    index, report = import_squidguard_directory(UT1, categories=CATEGORIES)
    gc.collect()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory: import peak {peak / 2**20:.0f} MiB (tracemalloc), index keeps {kept / 2**20:.1f} MiB "
          f"= {kept / report.entries:.0f} bytes per entry ({kept / report.keys:.0f} per name); "
          f"process max RSS {rss:.0f} MiB")

    rng = random.Random(args.seed)
    domains = list(parse_squidguard_domains((UT1 / "malware" / "domains").read_bytes(), "m").entries)
    hosts, kinds = make_hosts(rng, domains, args.hosts)
    found = sum(1 for h in hosts if index.lookup_host(h))
    print(f"hosts: {len(hosts):,} distinct ({', '.join(f'{k} {v:,}' for k, v in kinds.items())}); "
          f"{found:,} categorised")
    sets = {c: frozenset(parse_squidguard_domains((UT1 / c / "domains").read_bytes(), c).entries)
            for c in CATEGORIES}
    proto = baseline(sets)
    assert all(proto(h) == index.lookup_host(h) for h in hosts[:5000])
    warm = hosts[:1000] * (args.chunk // 1000 + 1)
    steal = steal_ticks()
    began = time.perf_counter()
    rows = [("lookup_host, uncached", index.lookup_host, hosts),
            ("lookup (urls + expression), uncached", index.lookup, hosts),
            ("set-with-suffix-walk prototype", proto, hosts),
            ("lookup_host, 1,000 hosts repeated", index.lookup_host, warm),
            ("lookup, 1,000 hosts repeated", index.lookup, warm)]
    for label, fn, items in rows:
        best, median = rate(fn, items, args.repeats, args.chunk)
        print(f"{label:<40} {best:>11,.0f} lookups/s best  ({median:,.0f} median)")
    elapsed = time.perf_counter() - began
    stolen = (steal_ticks() - steal) / 100
    if stolen:
        print(f"CPU steal during the lookups: {stolen:.1f} s of {elapsed:.1f} s (shared VM)")
    print("cached: none (CategoryIndex has no result cache)")


if __name__ == "__main__":
    main()
