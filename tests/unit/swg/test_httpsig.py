"""swg/httpsig: the Suricata HTTP-rule parser (each keyword, modifier, skip reason and error),
the evaluator (table-driven against fixed requests and responses), the prefilter (Hypothesis:
the indexed rule set finds exactly what trying every signature finds), and robustness (no input
line or request view makes the loader or the matcher raise)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swg.httpsig import (
    HttpRequestView,
    HttpResponseView,
    HttpRuleset,
    HttpSignature,
    HttpSignatureError,
    RuleProblem,
    RuleSkip,
    SignatureHit,
    blocking_hits,
    choose_anchor,
    compile_ruleset,
    normalise_host,
    normalise_uri,
    parse_rule,
    parse_rules,
    request_buffers,
)
from swg.httpsig.match import signature_matches
from swg.httpsig.ruleset import applies

HEAD = "alert http any any -> any any"

GET = HttpRequestView.of(
    "GET", "/shop/index.php?id=42&name=Foo%20Bar",
    [("Host", "WWW.Example.JP:8080"), ("User-Agent", "Mozilla/5.0 TestAgent/1.0"),
     ("Accept", "text/html"), ("Cookie", "sid=abc123; lang=ja"), ("Referer", "http://ref.example/")])
POST = HttpRequestView.of(
    "POST", "/login.cgi",
    [("Host", "router.example"), ("User-Agent", "curl/8.4.0"),
     ("Content-Type", "application/x-www-form-urlencoded")],
    b"user=admin&cmd=`id`&pass=secret", port=80)
NO_UA = HttpRequestView.of("GET", "/", [("Host", "a.example")])
SPACED = HttpRequestView.of("GET", "/my%20docs/../my%20docs/a.txt", [("Host", "a.example")])
RESPONSE = HttpResponseView.of(
    200, "OK", [("Content-Type", "text/html"), ("Server", "Apache/2.4.1"), ("Set-Cookie", "track=1")],
    b"<html><title>Sign in</title><form action=steal.php>password</form></html>")


def signature(options: str, head: str = HEAD, sid: int = 1) -> HttpSignature:
    outcome = parse_rule(f"{head} ({options} sid:{sid};)")
    assert isinstance(outcome, HttpSignature), outcome
    return outcome


def matches(options: str, request: HttpRequestView = GET, head: str = HEAD) -> bool:
    ruleset = HttpRuleset.build([signature(options, head)])
    return bool(ruleset.match(request))


# -- matching, one keyword or modifier at a time ------------------------------------------------

@pytest.mark.parametrize("options,request_,expected", [
    ('http.uri; content:"/shop/";', GET, True),
    ('http.uri; content:"/SHOP/";', GET, False),
    ('http.uri; content:"/SHOP/"; nocase;', GET, True),
    ('content:"/shop/"; http_uri;', GET, True),                        # legacy content modifier
    ('uricontent:"index.php";', GET, True),
    ('http.uri; content:"Foo%20Bar";', GET, True),                      # the query stays as sent
    ('http.uri; content:"/my docs/";', SPACED, True),                   # %20 decoded in the path
    ('http.uri; content:"/my%20docs/";', SPACED, False),
    ('http.uri.raw; content:"/my%20docs/";', SPACED, True),
    ('http.uri; content:"|2f|shop|2F|";', GET, True),                   # hex escapes
    ('http.uri; content:"/shop"; depth:5;', GET, True),
    ('http.uri; content:"/shop"; depth:4;', GET, False),
    ('http.uri; content:"shop"; offset:1; depth:4;', GET, True),
    ('http.uri; content:"shop"; offset:2;', GET, False),
    ('http.uri; content:"/shop"; startswith;', GET, True),
    ('http.uri; content:"shop"; startswith;', GET, False),
    ('http.uri; content:"Bar"; endswith;', GET, True),
    ('http.uri; content:"Foo"; endswith;', GET, False),
    ('http.uri; content:"/shop/"; content:"id="; distance:0;', GET, True),
    ('http.uri; content:"id="; content:"/shop/"; distance:0;', GET, False),   # relative: after
    ('http.uri; content:"/shop/"; content:"index"; distance:0; within:5;', GET, True),
    ('http.uri; content:"/shop/"; content:"php"; distance:0; within:5;', GET, False),
    ('http.uri; content:"/shop/"; content:"php"; distance:6; within:3;', GET, True),
    ('http.uri; content:"id="; content:"shop"; distance:-20; within:30;', GET, True),  # negative distance
    ('http.uri; content:!"admin";', GET, True),                         # negation
    ('http.uri; content:!"shop";', GET, False),
    ('http.uri; content:"/shop/"; content:!"index"; distance:0; within:3;', GET, True),
    ('http.uri; content:"/shop/"; content:!"index"; distance:0; within:5;', GET, False),
    ('http.uri; content:"name="; isdataat:1,relative;', GET, True),
    ('http.uri; content:"Bar"; isdataat:!1,relative;', GET, True),      # nothing after: the end
    ('http.uri; content:"Foo"; isdataat:!1,relative;', GET, False),
    ('http.uri; isdataat:100;', GET, False),
    ('http.method; content:"GET"; bsize:3;', GET, True),
    ('http.method; content:"GET"; bsize:>3;', GET, False),
    ('http.user_agent; bsize:<30; content:"TestAgent";', GET, True),
    ('http.user_agent; bsize:20<>30;', GET, True),
    ('http.user_agent; bsize:25<>30;', GET, False),
    ('urilen:>10;', GET, True),
    ('urilen:<10;', GET, False),
    ('urilen:30<>40;', GET, True),
    ('urilen:36, raw;', GET, True),
    ('urilen:<20;', SPACED, True),                                      # normalised: 14 bytes
    ('urilen:<20, raw;', SPACED, False),                                # as sent: 30 bytes
    ('http.host; content:"www.example.jp"; bsize:14;', GET, True),      # lower-cased, no port
    ('http.host; content:"WWW"; ', GET, False),
    ('http.host.raw; content:"WWW.Example.JP:8080";', GET, True),
    ('content:"www.example.jp"; http_host;', GET, True),
    ('http.user_agent; content:"Mozilla/5.0"; startswith;', GET, True),
    ('content:"TestAgent"; http_user_agent;', GET, True),
    ('http.user_agent; content:!"curl";', NO_UA, False),                # a missing buffer: no match
    ('http.header; content:"User-Agent|3a 20|Mozilla";', GET, True),
    ('http.header; content:"Accept|3a| text/html|0d 0a|";', GET, True),
    ('http.header; content:"Cookie";', GET, False),                     # Cookie is not in http.header
    ('http.header.raw; content:"Cookie|3a| sid=";', GET, True),
    ('http.cookie; content:"sid=abc123";', GET, True),
    ('content:"lang=ja"; http_cookie;', GET, True),
    ('http.header_names; content:"|0d 0a|Host|0d 0a|User-Agent|0d 0a|";', GET, True),
    ('http.header_names; content:!"X-Requested-With";', GET, True),
    ('http.header_names; content:"|0d 0a|Referer|0d 0a 0d 0a|"; endswith;', GET, True),
    ('http.accept; content:"text/html"; bsize:9;', GET, True),
    ('http.referer; content:"ref.example";', GET, True),
    ('http.referer; content:"x";', POST, False),
    ('http.method; content:"POST";', POST, True),
    ('content:"POST"; http_method;', GET, False),
    ('http.request_line; content:"GET /shop/index.php?id=42&name=Foo%20Bar HTTP/1.1"; bsize:49;', GET, True),
    ('http.protocol; content:"HTTP/1.1";', GET, True),
    ('http.start; content:"GET /shop/"; startswith; content:"|0d 0a|Host|3a 20|"; distance:0;', GET, True),
    ('http.request_body; content:"cmd=|60|";', POST, True),
    ('content:"pass="; http_client_body;', POST, True),
    ('flow:to_server; file.data; content:"user=admin";', POST, True),   # file.data of a request
    ('http.request_body; content:"x";', GET, False),                    # no body: no buffer
    ('http.content_type; content:"urlencoded"; endswith;', POST, True),
    ('content:"GET /shop/"; depth:10;', GET, True),                      # no buffer: the raw request
    ('content:"|0d 0a 0d 0a|user=admin";', POST, True),
    ('http.method; content:"POST"; http.uri; content:".cgi"; endswith; http.request_body; content:"admin";',
     POST, True),
    ('http.method; content:"POST"; http.uri; content:".php"; endswith;', POST, False),
    ('http.uri; content:"a\\;b";', HttpRequestView.of("GET", "/a;b", [("Host", "h")]), True),  # escaped ;
    ('http.uri; content:"say \\"hi\\"";', HttpRequestView.of("GET", '/say "hi"', [("Host", "h")]), True),
])
def test_content_and_buffers(options: str, request_: HttpRequestView, expected: bool) -> None:
    assert matches(options, request_) is expected


@pytest.mark.parametrize("options,expected", [
    ('http.uri; pcre:"/id=\\d+&/";', True),
    ('http.uri; pcre:"/ID=\\d+/";', False),
    ('http.uri; pcre:"/ID=\\d+/i";', True),
    ('pcre:"/^\\/shop\\/[a-z]+\\.php/U";', True),                         # U: the URI buffer
    ('pcre:"/^Mozilla\\/\\d/V";', True),                                  # V: the user agent
    ('pcre:"/^www\\.example\\.jp$/W";', True),                           # W: the host
    ('pcre:"/^GET$/M";', True),                                          # M: the method
    ('pcre:"/^Accept: text\\/html\\r$/Hm";', True),                      # H + m: a header line
    ('pcre:"/^Accept: text\\/html\\r$/H";', False),                      # not the whole buffer
    ('http.uri; pcre:"/index . php/x";', True),                          # x: spaces ignored
    ('http.uri; pcre:"/[[:digit:]]{2}&/";', True),                       # a POSIX class
    ('http.uri; pcre:"/(?<num>\\d+)&name/";', True),                     # a PCRE named group
    ('http.uri; content:"id="; pcre:"/^\\d+&/R";', True),                # R: anchored after "id="
    ('http.uri; content:"id="; pcre:"/^&/R";', False),
    ('http.uri; content:"/shop/"; pcre:"/^index/R"; content:".php"; distance:0;', True),
    ('http.uri; pcre:!"/admin/";', True),
    ('http.uri; pcre:!"/shop/";', False),
    ('http.uri; pcre:"/\\/shop\\//A";', True),                           # A: anchored at the start
    ('http.uri; pcre:"/index/A";', False),
    ('http.uri; pcre:"/Bar\\z/";', True),
])
def test_pcre(options: str, expected: bool) -> None:
    assert matches(options) is expected


def test_pcre_flags_s_and_body() -> None:
    request = HttpRequestView.of("POST", "/x", [("Host", "h")], b"line1\nSECRET=1")
    assert matches('pcre:"/line1.SECRET/Ps";', request)
    assert not matches('pcre:"/line1.SECRET/P";', request)


def test_relative_content_retries_earlier_matches() -> None:
    request = HttpRequestView.of("GET", "/a-x-a-b", [("Host", "h")])
    # the first "a" is followed by "-x", the second by "-b": Suricata retries the first content
    assert matches('http.uri; content:"a"; content:"-b"; distance:0; within:2;', request)
    assert not matches('http.uri; content:"a"; content:"-c"; distance:0; within:2;', request)


def test_pathological_relative_chains_stay_bounded() -> None:
    request = HttpRequestView.of("GET", "/" + "a" * 2000, [("Host", "h")])
    chain = " ".join('content:"a"; distance:0;' for _ in range(12))
    assert not matches(f'http.uri; {chain} content:"b"; distance:0;', request)


# -- response rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("options,expected", [
    ('flow:to_client; file.data; content:"<title>Sign in</title>";', True),
    ('file_data; content:"password"; content:"</form>"; distance:0;', True),     # phase: response
    ('flow:established,to_client; http.stat_code; content:"200";', True),
    ('flow:to_client; http.stat_code; content:"404";', False),
    ('flow:to_client; http.stat_msg; content:"OK";', True),
    ('flow:to_client; http.response_line; content:"HTTP/1.1 200 OK";', True),
    ('flow:to_client; http.server; content:"Apache/2.";', True),
    ('flow:to_client; http.cookie; content:"track=1";', True),                   # Set-Cookie
    ('flow:to_client; http.header; content:"Set-Cookie";', False),
    ('flow:to_client; http.content_type; content:"text/html";', True),
    ('flow:to_client; http.uri; content:"/shop/"; file.data; content:"Sign in";', True),  # request part
    ('flow:to_client; http_server_body; content:"steal.php";', False),    # a modifier needs a content
])
def test_response_rules(options: str, expected: bool) -> None:
    outcome = parse_rule(f"{HEAD} ({options} sid:1;)")
    if isinstance(outcome, RuleProblem):
        assert not expected
        return
    assert isinstance(outcome, HttpSignature) and outcome.phase == "response"
    ruleset = HttpRuleset.build([outcome])
    assert bool(ruleset.match_response(GET, RESPONSE)) is expected
    assert ruleset.match(GET) == ()     # a response rule never fires on the request


# -- header: ports and plaintext-only --------------------------------------------------------------

@pytest.mark.parametrize("head,port,expected", [
    ("alert http any any -> any 443", 443, True),
    ("alert http any any -> any 443", 80, False),
    ("alert http any any -> any 443", None, False),             # unknown port: port rules do not apply
    ("alert http any any -> any any", None, True),
    ("alert http any any -> any $HTTP_PORTS", 8080, True),      # HTTP on any port
    ("alert http any any -> any [80,8000:8100]", 8080, True),
    ("alert http any any -> any [80,8000:8100]", 8200, False),
    ("alert http any any -> any !80", 8080, True),
    ("alert http any any -> any !80", 80, False),
    ("alert http any any -> any [1024:,!8080]", 8080, False),
    ("alert http any any -> any [1024:,!8080]", 8081, True),
    ("alert http any any -> any [$HTTP_PORTS,!8080]", 9000, True),
    ("alert tcp any any -> any $HTTP_PORTS", 80, True),         # tcp with HTTP buffers only
])
def test_server_ports(head: str, port: int | None, expected: bool) -> None:
    request = HttpRequestView.of("GET", "/x", [("Host", "h")], port=port)
    assert matches('http.uri; content:"/x";', request, head) is expected


def test_request_view_port_and_tls() -> None:
    assert HttpRequestView.of("GET", "/", [("Host", "h:8080")]).port == 8080
    assert HttpRequestView.of("GET", "http://h/x").port == 80
    assert HttpRequestView.of("GET", "/", [("Host", "h")], tls=True).port == 443
    assert HttpRequestView.of("GET", "/", [("Host", "h")]).port is None
    plaintext = signature('http.uri; content:"/"; metadata:tls_state plaintext, created_at 2011_11_18;')
    assert plaintext.plaintext_only
    assert applies(plaintext, HttpRequestView.of("GET", "/", [("Host", "h")]))
    assert not applies(plaintext, HttpRequestView.of("GET", "/", [("Host", "h")], tls=True))


# -- parsing: kept fields, skips, errors ---------------------------------------------------------------

def test_descriptive_fields() -> None:
    parsed = parse_rule('drop http $HOME_NET any -> $EXTERNAL_NET any (msg:"ET TEST \\"quoted\\" msg"; '
                        'flow:established,to_server; http.uri; content:"/x"; fast_pattern; '
                        'reference:url,example.com/a; classtype:trojan-activity; sid:2000001; rev:7; '
                        'gid:1; metadata:created_at 2020_01_01, signature_severity Major;)')
    assert isinstance(parsed, HttpSignature)
    assert (parsed.sid, parsed.rev, parsed.action, parsed.classtype, parsed.phase) == (
        2000001, 7, "drop", "trojan-activity", "request")
    assert parsed.msg == 'ET TEST "quoted" msg'
    assert parsed.references == ("url,example.com/a",)
    assert parsed.metadata == ("created_at 2020_01_01, signature_severity Major",)
    assert parsed.inspections[0].items[0].fast_pattern  # type: ignore[union-attr]


@pytest.mark.parametrize("rule,reason", [
    ('alert dns any any -> any any (dns.query; content:"x"; sid:1;)', "not http (dns)"),
    ('alert tls any any -> any any (tls.sni; content:"x"; sid:1;)', "not http (tls)"),
    ('alert tcp any any -> any any (flow:to_server; content:"PRIVMSG"; sid:1;)', "not http (tcp payload)"),
    (f'{HEAD} (flowbits:set,ET.x; flowbits:noalert; http.uri; content:"x"; sid:1;)',
     "unsupported keyword flowbits"),
    (f'{HEAD} (http.uri; content:"x"; byte_test:1,>,2,0; sid:1;)', "unsupported keyword byte_test"),
    (f'{HEAD} (http.uri; content:"x"; xbits:isset,a,track ip_src; sid:1;)', "unsupported keyword xbits"),
    (f'{HEAD} (tls.sni; content:"x"; sid:1;)', "unsupported keyword tls.sni"),
    (f'{HEAD} (http.uri; content:"x"; threshold: type both, track by_src, count 5, seconds 60; sid:1;)',
     "unsupported keyword threshold (both)"),
    (f'{HEAD} (http.uri; content:"x"; detection_filter:track by_src, count 5, seconds 60; sid:1;)',
     "unsupported keyword detection_filter"),
    ('pass http any any -> any any (http.uri; content:"x"; sid:1;)', "action pass"),
    ('alert http any any <> any any (http.uri; content:"x"; sid:1;)', "bidirectional rule"),
    (f'{HEAD} (http.uri; pcre:"/a+/G"; sid:1;)', "pcre flag G (ungreedy)"),
    (f'{HEAD} (http.uri; pcre:"/a(?|b|c)/"; sid:1;)', "pcre not compilable by Python re"),
    (f'{HEAD} (http.uri; pcre:"/\\p{{Lu}}/"; sid:1;)', "pcre escape \\p"),
    ('alert http any any -> any $NOPE_PORTS (http.uri; content:"x"; sid:1;)',
     "unknown port variable $NOPE_PORTS"),
    ('alert http any 1024: -> any any (flow:to_server; http.uri; content:"x"; sid:1;)',
     "client port constraint"),
    (f'{HEAD} (flow:to_server; http.stat_code; content:"200"; sid:1;)',
     "response buffer http.stat_code in a request rule"),
    (f'{HEAD} (flow:established,to_server; sid:1;)', "no http inspection"),
    (f'{HEAD} (flow:not_established; http.uri; content:"x"; sid:1;)',
     "unsupported flow option not_established"),
])
def test_skipped_rules_say_why(rule: str, reason: str) -> None:
    assert parse_rule(rule) == RuleSkip(reason)


@pytest.mark.parametrize("rule,reason", [
    ("alert http any any -> any any", "no options in parentheses"),
    ('alert http any any -> any any (msg:"x"; sid:1;', "options not closed with ')'"),
    ('alert http any -> any any (sid:1;)', "header has 6 fields"),
    ('alert http any any => any any (sid:1;)', "bad direction"),
    ('warn http any any -> any any (sid:1;)', "unknown action 'warn'"),
    (f'{HEAD} (http.uri; content:"x";)', "no sid"),
    (f'{HEAD} (http.uri; content:"x"; sid:abc;)', "sid: not an integer"),
    (f'{HEAD} (http.uri; content:"|4|"; sid:1;)', "odd number of hex digits"),
    (f'{HEAD} (http.uri; content:"|41 zz|"; sid:1;)', "bad character"),
    (f'{HEAD} (http.uri; content:"|41"; sid:1;)', "unterminated hex run"),
    (f'{HEAD} (http.uri; content:""; sid:1;)', "empty content"),
    (f'{HEAD} (http.uri; content:"a"b"; sid:1;)', "unescaped quote"),
    (f'{HEAD} (http.uri; content:"x"; depth:-1; sid:1;)', "depth: must be at least 1"),
    (f'{HEAD} (http.uri; content:"x"; offset:two; sid:1;)', "offset: not an integer"),
    (f'{HEAD} (http.uri; nocase; sid:1;)', "nocase without a preceding content"),
    (f'{HEAD} (content:"x"; http_uri; within:0; sid:1;)', "within: must be at least 1"),
    (f'{HEAD} (http.uri; pcre:"/a/Ü"; sid:1;)', "unknown pcre flag"),
    (f'{HEAD} (http.uri; pcre:"a"; sid:1;)', "pcre must be written /regex/flags"),
    (f'{HEAD} (http.uri; content:"x"; ; sid:1;)', "empty option"),
    (f'{HEAD} (http.uri; content:"x"; bad keyword:1; sid:1;)', "bad keyword 'bad keyword'"),
    (f'{HEAD} (http.uri; urilen:5<>2; sid:1;)', "empty range"),
    (f'{HEAD} (bsize:3; sid:1;)', "bsize without a buffer"),
    ('alert http any any -> any [80, (sid:1;)', "unbalanced port list"),
    ('alert http any any -> any 70000 (http.uri; content:"x"; sid:1;)', "bad port range"),
    (f'{HEAD} (flow:to_server,to_client; http.uri; content:"x"; sid:1;)', "flow has two directions"),
])
def test_malformed_rules_are_problems(rule: str, reason: str) -> None:
    outcome = parse_rule(rule, line_number=7, source="local.rules")
    assert isinstance(outcome, RuleProblem), outcome
    assert reason in outcome.reason
    assert str(outcome).startswith("local.rules:7: ")


def test_threshold_type_limit_is_kept_and_noted() -> None:
    text = (f'{HEAD} (http.uri; content:"x"; threshold: type limit, track by_src, count 1, seconds 300; '
            'sid:1;)')
    parsed = parse_rules(text)
    assert parsed.report.loaded == 1
    assert parsed.signatures[0].threshold.startswith("type limit")
    assert sum(parsed.report.notes.values()) == 1


RULES_FILE = f"""# a comment
{HEAD} (msg:"one"; http.uri; content:"/one"; sid:10;)
{HEAD} (msg:"broken"; http.uri; content:"|zz|"; sid:11;)

#alert http any any -> any any (msg:"disabled"; http.uri; content:"/off"; sid:12;)
{HEAD} (msg:"two"; \\
    http.uri; content:"/two"; \\
    sid:13;)
alert dns any any -> any any (msg:"dns"; dns.query; content:"x"; sid:14;)
not a rule at all
{HEAD} (msg:"three"; flowbits:isset,x; http.uri; content:"/three"; sid:15;)
{HEAD} (msg:"four"; http.uri; content:"/four"; sid:16;)
"""


def test_a_rules_file_loads_around_its_bad_lines() -> None:
    parsed = parse_rules(RULES_FILE, "local.rules")
    report = parsed.report
    assert [s.sid for s in parsed.signatures] == [10, 13, 16]
    assert [s.line_number for s in parsed.signatures] == [2, 6, 12]   # a continued rule: its first line
    assert (report.loaded, report.skipped, report.disabled, report.error_count) == (3, 2, 1, 2)
    assert report.skip_reasons == {"not http (dns)": 1, "unsupported keyword flowbits": 1}
    assert [(p.line_number, p.source) for p in report.errors] == [(3, "local.rules"), (10, "local.rules")]
    assert "local.rules:10: no options in parentheses" in report.summary()


def test_duplicate_sids_keep_the_highest_rev() -> None:
    first = parse_rules(f'{HEAD} (msg:"old"; http.uri; content:"/a"; sid:5; rev:1;)', "a.rules")
    second = parse_rules(f'{HEAD} (msg:"new"; http.uri; content:"/a"; sid:5; rev:2;)\n'
                         f'{HEAD} (msg:"other"; http.uri; content:"/b"; sid:6;)', "b.rules")
    ruleset, report = compile_ruleset([first, second])
    assert len(ruleset) == 2 and ruleset.by_sid(5).msg == "new"  # type: ignore[union-attr]
    assert (report.loaded, report.skipped, report.skip_reasons["duplicate sid"]) == (2, 1, 1)


# -- anchors, decisions, normalisation ---------------------------------------------------------------

def test_anchor_prefers_fast_pattern_then_selective_buffers() -> None:
    plain = signature('http.method; content:"POST"; http.uri; content:"/a.php"; '
                      'http.request_body; content:"cmd=whoami"; content:"&x"; fast_pattern;')
    anchor = choose_anchor(plain)
    assert anchor is not None and (anchor.buffer, anchor.literal) == ("http.request_body", b"cmd=whoami")
    fast = signature('http.uri; content:"/a.php"; http.user_agent; content:"EvilBot"; fast_pattern;')
    anchor = choose_anchor(fast)
    assert anchor is not None and anchor.literal == b"evilbot"
    assert choose_anchor(signature('http.uri; content:!"x"; pcre:"/y/";')) is None


def test_blocking_modes() -> None:
    hits = (SignatureHit(1, 1, "a", "alert", "x"), SignatureHit(2, 1, "d", "drop", "x"),
            SignatureHit(3, 1, "r", "reject", "x"))
    assert blocking_hits(hits, "alert-only") == ()
    assert [h.sid for h in blocking_hits(hits, "block-drop")] == [2, 3]
    assert [h.sid for h in blocking_hits(hits, "block-all")] == [1, 2, 3]
    with pytest.raises(HttpSignatureError, match="unknown blocking mode"):
        blocking_hits(hits, "block-some")  # type: ignore[arg-type]


@pytest.mark.parametrize("target,expected", [
    ("/a/b/../c", "/a/c"),
    ("/a/./b", "/a/b"),
    ("/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"),
    ("/x%41y?q=%41&r=../s", "/xAy?q=%41&r=../s"),   # the query stays as sent
    ("http://h.example:8080/p/../q?x=1", "/q?x=1"),
    ("/bad%zz", "/bad%zz"),
    ("/a/..", "/"),
])
def test_normalise_uri(target: str, expected: str) -> None:
    assert normalise_uri(target) == expected


@pytest.mark.parametrize("authority,expected", [
    ("WWW.Example.JP:443", "www.example.jp"), ("host.example.", "host.example"),
    ("[2001:DB8::1]:8443", "2001:db8::1"), ("", ""),
])
def test_normalise_host(authority: str, expected: str) -> None:
    assert normalise_host(authority) == expected


def test_header_buffers_merge_repeated_headers() -> None:
    request = HttpRequestView.of("GET", "/", [("Host", "h"), ("X-A", " one "), ("x-a", "two"),
                                              ("User-Agent", "A"), ("User-Agent", "B")])
    buffers = request_buffers(request)
    assert buffers["http.header"] == b"Host: h\r\nX-A: one, two\r\nUser-Agent: A, B\r\n"
    assert buffers["http.user_agent"] == b"A, B"
    assert buffers["http.header_names"] == b"\r\nHost\r\nX-A\r\nUser-Agent\r\n\r\n"


# -- the prefilter finds what trying every signature finds; nothing raises ---------------------------

FRAGMENTS = ['http.uri; content:"/adm"; nocase;', 'http.uri; content:"admin/login"; nocase;',
             'http.uri; content:"in/";', 'http.user_agent; content:"bot";',
             'http.host; content:".example"; endswith;', 'http.method; content:"POST";', 'content:"GET";',
             'http.uri; pcre:"/\\d{3}/";', 'http.request_body; content:"=1";', 'http.header; content:"X-";',
             'http.uri; content:!"x";', 'urilen:>5;', 'http.cookie; content:"id";', 'content:"ab"; http_uri;',
             'http.uri; content:"a"; content:"b"; distance:0; within:3;']
COMBOS = [(0,), (1,), (2,), (3,), (4, 1), (5,), (6,), (7,), (8,), (9, 10), (11,), (12,), (13,), (0, 1),
          (2, 3), (4, 7), (6, 8), (14,), (14, 2)]
RULESET = HttpRuleset.build(signature(" ".join(FRAGMENTS[i] for i in combo), sid=n)
                            for n, combo in enumerate(COMBOS, start=1))
# many medium (4-6 byte) and long (7+) anchors on few letters, so requests hit them at every
# alignment: the per-buffer gram table and the sampled long-anchor table both get exercised
WORDS = ["abab", "baba", "abba", "aabb", "bbaa", "abaab", "babba", "aabab", "bbbab", "ababa", "baabb",
         "aaab", "bbba", "abbb", "baaa", "aaaab", "bbbba", "abbba", "baaab", "aabba", "bbaab", "ababb",
         "babab", "abaa", "baab", "aaba", "bbab", "abaaba", "bababb", "aabbaa"]
LONG_WORDS = ["abababa", "bababba", "aabbaab", "abbabbab", "baaabbba", "ababbabab", "bbabaabba"]
DENSE = HttpRuleset.build(
    [signature(f'http.uri; content:"{word}";', sid=n) for n, word in enumerate(WORDS, start=1)]
    + [signature(f'http.user_agent; content:"{word}"; nocase;', sid=100 + n)
       for n, word in enumerate(LONG_WORDS)]
    + [signature(f'http.uri; content:"{word}"; fast_pattern;', sid=200 + n)
       for n, word in enumerate(LONG_WORDS)])
TEXT = st.text(alphabet="abdegimnoxyzADMINST/-.=?&%0123456789 ", max_size=30)
PATHS = st.text(alphabet="abdegilmnoxyzADMINLOGST/-.=?&%0123456789 ", max_size=30)
REQUESTS = st.builds(
    lambda method, path, host, ua, extra, body: HttpRequestView.of(
        method, "/" + path, [("Host", host + ".example"), *([("User-Agent", ua)] if ua else []), *extra],
        body),
    st.sampled_from(["GET", "POST", "HEAD"]), st.one_of(PATHS, st.just("admin/login/x")), TEXT,
    st.one_of(st.none(), TEXT),
    st.lists(st.tuples(st.sampled_from(["X-Id", "Cookie", "Accept"]), TEXT), max_size=3),
    st.binary(max_size=40))


def brute_force(ruleset: HttpRuleset, request: HttpRequestView) -> tuple[int, ...]:
    buffers = request_buffers(request)
    return tuple(s.sid for s in ruleset.signatures if s.phase == "request" and applies(s, request)
                 and signature_matches(s, buffers, lambda name: (buffers[name] or b"").lower()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REQUESTS)
def test_prefilter_loses_nothing(request: HttpRequestView) -> None:
    assert tuple(hit.sid for hit in RULESET.match(request)) == brute_force(RULESET, request)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="abAB/", max_size=40), st.text(alphabet="abAB ", max_size=40))
def test_prefilter_loses_nothing_among_dense_anchors(path: str, ua: str) -> None:
    request = HttpRequestView.of("GET", "/" + path, [("Host", "h"), ("User-Agent", ua)])
    found = tuple(hit.sid for hit in DENSE.match(request))
    assert found == brute_force(DENSE, request)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=()), max_size=300))
def test_any_text_loads_without_raising(text: str) -> None:
    report = parse_rules(text).report
    rules = sum(1 for line in text.split("\n") if line.strip() and not line.strip().startswith("#"))
    assert report.loaded + report.skipped + report.error_count <= rules


def test_lone_surrogates_neither_raise_nor_vanish() -> None:
    parsed = parse_rules(f'{HEAD} (http.uri; content:"a\ud800b"; pcre:"/c\udc80/"; sid:1;)')
    assert parsed.report.loaded == 1
    request = HttpRequestView.of("GET", "/a\ud800b/c\udc80", [("Host", "h\ud800")])
    assert [hit.sid for hit in HttpRuleset.build(parsed.signatures).match(request)] == [1]


OPTION_WORDS = st.sampled_from([
    'content:"a|41|"', 'content:!"b"', "nocase", "depth:3", "distance:-2", "within:4", "offset:1", "http.uri",
    "http_uri", "http.header", 'pcre:"/a+/iR"', "isdataat:!1,relative", "bsize:>2", "urilen:1<>9",
    "flow:to_client", "file.data", "startswith", "endswith", "fast_pattern", "sid:3", 'pcre:"/(/"',
    'content:"|4', "depth:x", "byte_test:1,=,1,0", "http.stat_code"])


@settings(max_examples=300, deadline=None)
@given(st.lists(OPTION_WORDS, max_size=8), st.sampled_from(["http", "tcp", "dns"]))
def test_random_option_lists_load_without_raising(words: list[str], proto: str) -> None:
    text = f"alert {proto} any any -> any any ({'; '.join(words)}; sid:9;)"
    parsed = parse_rules(text)
    assert parsed.report.loaded + parsed.report.skipped + parsed.report.error_count == 1
    ruleset = HttpRuleset.build(parsed.signatures)
    ruleset.match(GET)
    ruleset.match_response(GET, RESPONSE)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60),
       st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=5), st.binary(max_size=200))
def test_any_request_view_matches_without_raising(method: str, target: str, headers: list[tuple[str, str]],
                                                  body: bytes) -> None:
    request = HttpRequestView.of(method, target, headers, body)
    RULESET.match(request)
    RULESET.match_response(request, HttpResponseView.of(200, method, headers, body))
