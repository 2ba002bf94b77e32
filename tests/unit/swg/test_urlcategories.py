"""swg/urlcategories.py: the list formats, the index's matching rules and tenant allow/block lists,
with table tests and Hypothesis checks against a brute-force reference."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swg.urlcategories import (
    EMPTY_INDEX,
    MAX_REASONS,
    CategoryIndex,
    CategoryList,
    CategoryListError,
    TenantLists,
    classify,
    normalise_host,
    parse_expressions,
    parse_host_list,
    parse_squidguard_domains,
    parse_squidguard_urls,
)

INDEX = CategoryIndex.build({
    "malware": CategoryList(domains=("example.com", "evil.co.jp", "203.0.113.7", "2001:db8::bad"),
                            urls=(("files.example.org", "/dl"), ("files.example.org", "/x/"),
                                  ("search.example.net", "/q?id=1"), ("whole.example.org", "/"))),
    "phishing": CategoryList(domains=("login.example.com", "a.b.c.example.net"),
                             hosts=("exact.example.org", "198.51.100.9")),
    "ads": CategoryList(expressions=(r"/banner/", r"^[0-9.]+/search\?q=[0-9]+$")),
})


@pytest.mark.parametrize("host,expected", [
    ("example.com", ("malware",)),
    ("www.example.com", ("malware",)),
    ("a.b.c.example.com", ("malware",)),
    ("login.example.com", ("malware", "phishing")),
    ("x.login.example.com", ("malware", "phishing")),
    ("badexample.com", ()),                     # label boundary: not below example.com
    ("example.com.evil.test", ()),
    ("xexample.com", ()),
    ("com", ()),
    ("evil.co.jp", ("malware",)),
    ("co.jp", ()),                              # an ancestor of a listed name is not listed
    ("city.lg.jp", ()),
    ("a.b.c.example.net", ("phishing",)),
    ("b.c.example.net", ()),
    ("z.a.b.c.example.net", ("phishing",)),
    ("exact.example.org", ("phishing",)),       # host lists: exactly that host
    ("www.exact.example.org", ()),
    ("203.0.113.7", ("malware",)),              # an address in a domains list: only itself
    ("2001:db8::bad", ("malware",)),
    ("198.51.100.9", ("phishing",)),
    ("203.0.113.8", ()),
    ("", ()),
])
def test_host_suffixes(host: str, expected: tuple[str, ...]) -> None:
    assert INDEX.lookup_host(host) == expected
    assert INDEX.lookup(host, "/nothing-special") == expected


@pytest.mark.parametrize("host,path,expected", [
    ("files.example.org", "/dl", ("malware",)),
    ("files.example.org", "/dl/setup.exe", ("malware",)),
    ("files.example.org", "/dl?x=1", ("malware",)),
    ("files.example.org", "/dlx", ()),              # whole path segments only
    ("files.example.org", "/x/anything", ("malware",)),
    ("files.example.org", "/x", ()),                # the prefix is "/x/"
    ("files.example.org", "/", ()),
    ("www.files.example.org", "/dl/a", ("malware",)),   # squidGuard drops www. from requests
    ("cdn.files.example.org", "/dl/a", ()),         # URL prefixes are not suffix matches
    ("search.example.net", "/q?id=1", ("malware",)),
    ("search.example.net", "/q?id=12", ("malware",)),   # a query prefix covers what follows
    ("search.example.net", "/q", ()),
    ("whole.example.org", "/", ("malware",)),
    ("whole.example.org", "/any/path", ("malware",)),
    ("files.example.org", "/DL", ()),               # paths keep their case
])
def test_url_prefixes(host: str, path: str, expected: tuple[str, ...]) -> None:
    assert INDEX.lookup(host, path) == expected
    assert INDEX.lookup_host(host) == ()            # no path, no URL prefix


@pytest.mark.parametrize("host,path,expected", [
    ("news.example.jp", "/img/banner/1.png", ("ads",)),
    ("news.example.jp", "/img/BANNER/1.png", ("ads",)),    # case-insensitive, as squidGuard
    ("192.0.2.1", "/search?q=42", ("ads",)),
    ("192.0.2.1", "/search?q=42x", ()),
    ("example.com", "/banner/", ("malware", "ads")),       # categories in the order given
])
def test_expressions(host: str, path: str, expected: tuple[str, ...]) -> None:
    assert INDEX.lookup(host, path) == expected


def test_categories_keep_their_order_and_sizes() -> None:
    assert INDEX.categories == ("malware", "phishing", "ads")
    assert INDEX.sizes == {"malware": 8, "phishing": 4, "ads": 2}
    assert len(EMPTY_INDEX.categories) == 0 and EMPTY_INDEX.lookup("example.com", "/") == ()


def test_the_index_is_an_immutable_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        INDEX.categories = ()  # type: ignore[misc]


@pytest.mark.parametrize("name", ["", "two words", "tab\there", 7])
def test_bad_category_names(name: object) -> None:
    with pytest.raises(CategoryListError, match="invalid category name"):
        CategoryIndex.build({name: CategoryList()})  # type: ignore[dict-item]


def test_a_bare_top_level_domain_covers_everything_below() -> None:
    index = CategoryIndex.build({"tld": CategoryList(domains=("zip",)),
                                 "other": CategoryList(domains=("example.com",), hosts=("intranet",))})
    assert index.lookup_host("files.zip") == ("tld",)
    assert index.lookup_host("zip") == ("tld",)
    assert index.lookup_host("a.example.com") == ("other",)
    assert index.lookup_host("intranet") == ("other",)
    assert index.lookup_host("zipper.com") == ()


# --- parsers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("line,entry", [
    ("example.com", "example.com"),
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    (".example.com", "example.com"),                # squid's "domain and below"
    ("  example.com  ", "example.com"),
    ("example.com # note", "example.com"),
    ("_dmarc.example.com", "_dmarc.example.com"),
    ("w-w-i-s-.com", "w-w-i-s-.com"),               # real UT1 entry: accepted, see normalise_host
    ("bücher.de", "xn--bcher-kva.de"),
    ("ＥＸＡＭＰＬＥ。ｊｐ", "example.jp"),           # full-width letters and the ideographic dot
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("xn--r8jz45g.xn--zckzah", "xn--r8jz45g.xn--zckzah"),
    ("192.0.2.1", "192.0.2.1"),
    ("[2001:DB8::1]", "2001:db8::1"),
    ("sites.0xzz", "sites.0xzz"),                   # not a number: a name
])
def test_domain_lines(line: str, entry: str) -> None:
    parsed = parse_squidguard_domains(line + "\n", "t")
    assert parsed.entries == (entry,), parsed.report
    assert parsed.report.skipped == 0


@pytest.mark.parametrize("line,reason", [
    ("a..example.com", "empty label"),
    ("..", "host name empty"),
    ("exa mple.com", "one host a line"),
    ("exa$mple.com", "a label may hold only"),
    ("*.example.com", "wildcard"),
    ("a" * 64 + ".com", "label longer than 63"),
    (("a" * 60 + ".") * 5 + "com", "longer than 253"),
    ("01.2.3.4", "ends in a number"),
    ("1.2.3.256", "ends in a number"),
    ("example.123", "ends in a number"),
    ("0x7f.1", "ends in a number"),
    ("a.0x1f", "ends in a number"),
    ("fe80::1%eth0", "zone"),
    ("ü" * 64 + ".de", "IDNA"),
    ("\udcff.example.com", "not UTF-8"),
])
def test_bad_domain_lines_are_reported_not_fatal(line: str, reason: str) -> None:
    parsed = parse_squidguard_domains(f"good.example\n{line}\nalso.example\n", "malware/domains")
    assert parsed.entries == ("good.example", "also.example")
    assert parsed.report.skipped == 1
    assert parsed.report.reasons[0].startswith("line 2: ") and reason in parsed.report.reasons[0]


def test_report_counts_duplicates_and_keeps_the_first_reasons() -> None:
    text = "a.example\n" * 3 + "".join(f"bad{i}..example\n" for i in range(9)) + "# comment\n\n"
    parsed = parse_squidguard_domains(text.encode(), "x/domains")
    report = parsed.report
    assert (parsed.entries, report.entries, report.duplicates, report.skipped) == (("a.example",), 1, 2, 9)
    assert len(report.reasons) == MAX_REASONS and report.where == "x/domains"


def test_the_fast_path_and_the_line_by_line_path_agree() -> None:
    plain = "b.example\n192.0.2.1\na.example\r\nb.example\n"
    odd = plain + "bad..line\n"        # forces the line-by-line path
    fast, slow = parse_squidguard_domains(plain, "f"), parse_squidguard_domains(odd, "s")
    assert fast.entries == slow.entries == ("b.example", "192.0.2.1", "a.example")
    assert (fast.report.duplicates, slow.report.duplicates, slow.report.skipped) == (1, 1, 1)


@pytest.mark.parametrize("text,entries,skipped", [
    ("evil.example\n", ("evil.example",), 0),
    ("# Title: x\n# Entries: 2\n\nevil.example\nother.example\n", ("evil.example", "other.example"), 0),
    ("0.0.0.0 evil.example\n", ("evil.example",), 0),
    ("127.0.0.1\tevil.example other.example # two\n", ("evil.example", "other.example"), 0),
    ("::1 evil.example\n", ("evil.example",), 0),
    ("127.0.0.1 localhost\n::1 ip6-localhost ip6-loopback\n0.0.0.0 0.0.0.0\n", (), 4),
    ("localhost\nevil.example\n", ("evil.example",), 1),
    ("192.0.2.1\n", ("192.0.2.1",), 0),
    ("evil.example other.example\n", (), 1),       # two names without an address
    ("0.0.0.0 *.evil.example\n", (), 1),
    ("||evil.example^\n", (), 1),                  # adblock syntax is not this format
])
def test_host_lists_and_hosts_files(text: str, entries: tuple[str, ...], skipped: int) -> None:
    parsed = parse_host_list(text, "hosts")
    assert (parsed.entries, parsed.report.skipped) == (entries, skipped), parsed.report


@pytest.mark.parametrize("line,entry", [
    ("example.org/dl", ("example.org", "/dl")),
    ("www.example.org/dl", ("example.org", "/dl")),
    ("www2.example.org/dl", ("example.org", "/dl")),
    ("WWW.Example.ORG/Path/To", ("example.org", "/Path/To")),
    ("example.org", ("example.org", "/")),
    ("example.org/#p2", ("example.org", "/")),       # fragments never reach a proxy
    ("example.org?id=1", ("example.org", "/?id=1")),
    ("http://example.org:8080/dl", ("example.org", "/dl")),
    ("192.0.2.1/search", ("192.0.2.1", "/search")),
    ("[2001:db8::1]:80/x", ("2001:db8::1", "/x")),
    ("www.com/x", ("www.com", "/x")),
])
def test_url_lines(line: str, entry: tuple[str, str]) -> None:
    parsed = parse_squidguard_urls(line + "\n", "urls")
    assert parsed.entries == (entry,), parsed.report


@pytest.mark.parametrize("line", ["/no/host", "exa mple.org/x", "a..b/x", "example.org:port/x",
                                  "user@example.org/x", "example.org/\x7f"])
def test_bad_url_lines(line: str) -> None:
    parsed = parse_squidguard_urls(f"ok.example/a\n{line}\n", "urls")
    assert parsed.entries == (("ok.example", "/a"),) and parsed.report.skipped == 1


def test_expressions_skip_what_does_not_compile() -> None:
    parsed = parse_expressions("(banner|sponsor)\n(unclosed\n[[:digit:]]+\\.exe$\n# comment\n", "e")
    assert parsed.entries == ("(banner|sponsor)", "[0-9]+\\.exe$")
    assert parsed.report.skipped == 1 and "line 2: not a valid regular expression" in parsed.report.reasons[0]


@pytest.mark.parametrize("data", [b"example.com\x00\n", b"\x00" * 10, "a.com\x00"])
def test_nul_means_not_a_text_file(data: str | bytes) -> None:
    for parse in (parse_squidguard_domains, parse_host_list, parse_squidguard_urls, parse_expressions):
        with pytest.raises(CategoryListError, match="not a text file"):
            parse(data, "f")


def test_mostly_undecodable_bytes_mean_not_a_text_file() -> None:
    with pytest.raises(CategoryListError, match="not a text file"):
        parse_squidguard_domains(b"\xff\xfe\xfa\n\xc3\x28\n", "f")
    one_bad = parse_squidguard_domains(b"a.example\n\xff.example\nb.example\n", "f")
    assert one_bad.entries == ("a.example", "b.example") and one_bad.report.skipped == 1


def test_bom_is_ignored() -> None:
    assert parse_squidguard_domains("\ufeffexample.com\n".encode(), "f").entries == ("example.com",)


def test_normalise_host_raises_the_package_error() -> None:
    assert normalise_host("Bücher.DE.") == "xn--bcher-kva.de"
    with pytest.raises(CategoryListError):
        normalise_host("a..b")


# --- tenant lists ---------------------------------------------------------------------------------

TENANT = TenantLists(
    allow=(".partner.example", "ok.bad.example", "*.shared.example", "tools.evil.co.jp"),
    block=("bad.example", ".bad.example", "*.partner.example", "shared.example", "social.example"))


@pytest.mark.parametrize("host,custom,pattern", [
    ("partner.example", "allow", ".partner.example"),       # only ".partner.example" covers it
    ("www.partner.example", "block", "*.partner.example"),  # equally specific: block wins
    ("bad.example", "block", "bad.example"),                # exact allow? none: exact block
    ("ok.bad.example", "allow", "ok.bad.example"),          # the host itself beats a suffix
    ("x.ok.bad.example", "block", ".bad.example"),
    ("shared.example", "block", "shared.example"),          # "*." does not cover the name itself
    ("a.shared.example", "allow", "*.shared.example"),
    ("social.example", "block", "social.example"),
    ("www.social.example", None, None),                     # an exact pattern covers no subdomain
    ("unrelated.example", None, None),
])
def test_tenant_precedence(host: str, custom: str | None, pattern: str | None) -> None:
    got = classify(INDEX, TENANT, host, "/")
    assert (got.custom, got.custom_pattern) == (custom, pattern)


def test_classification_keeps_categories_under_a_custom_verdict() -> None:
    lists = TenantLists(allow=("login.example.com",))
    got = classify(INDEX, lists, "login.example.com", "/")
    assert got.categories == ("malware", "phishing") and got.custom == "allow"
    assert classify(INDEX, TenantLists(), "example.com").custom is None


@pytest.mark.parametrize("allow,block,message", [
    (("ok.example", "a..b"), (), "allow[1]: 'a..b': empty label"),
    ((), ("*.192.0.2.1",), "block[0]: '*.192.0.2.1': an address has no subdomains"),
    ((), "bad.example", "block: expected a list of host patterns"),
    ((), (3,), "block: expected a list of host patterns"),
    (None, (), "allow: expected a list of host patterns"),
])
def test_bad_tenant_patterns_name_the_field(allow: object, block: object, message: str) -> None:
    with pytest.raises(CategoryListError, match=re.escape(message)):
        TenantLists(allow, block)  # type: ignore[arg-type]


def test_tenant_lists_accept_lists_and_idna() -> None:
    lists = TenantLists(allow=["例え.テスト"], block=[".BAD.example."])  # type: ignore[arg-type]
    assert lists.allow == ("例え.テスト",) and isinstance(lists.block, tuple)
    assert lists.match("xn--r8jz45g.xn--zckzah") == ("allow", "例え.テスト")
    assert lists.match("a.bad.example") == ("block", ".BAD.example.")


# --- properties -----------------------------------------------------------------------------------

LABELS = st.sampled_from(["a", "b", "c", "ab", "x1", "w-w", "_s", "www", "xn--p1ai"])
NAMES = st.lists(LABELS, min_size=1, max_size=4).map(".".join)
ADDRESSES = st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1", "10.0.0.1"])
PATHS = st.sampled_from(["/", "/a", "/a/", "/a/b", "/ab", "/a?x=1", "/A", "/banner/x"])
EXPRESSIONS = st.sampled_from([r"/banner/", r"^c\.", r"x1[./]", r"^[0-9.]+/a$"])
CATEGORY = st.fixed_dictionaries({
    "domains": st.lists(st.one_of(NAMES, ADDRESSES), max_size=8),
    "hosts": st.lists(st.one_of(NAMES, ADDRESSES), max_size=4),
    "urls": st.lists(st.tuples(st.one_of(NAMES, ADDRESSES), PATHS), max_size=4),
    "expressions": st.lists(EXPRESSIONS, max_size=2),
})


def reference(lists: dict[str, dict[str, list]], host: str, path: str) -> tuple[str, ...]:
    """The matching rules, one entry at a time."""
    def address(name: str) -> bool:
        return ":" in name or name.replace(".", "").isdigit()

    def url_match(entry_host: str, prefix: str) -> bool:
        hosts = {entry_host} if address(entry_host) else {entry_host, "www." + entry_host}
        if host not in hosts or not path.startswith(prefix):
            return False
        rest = path[len(prefix):]
        return not rest or prefix[-1] in "/?&=" or rest[0] in "/?#;" or "?" in prefix

    found = []
    for name, entries in lists.items():
        if (any(host == d or (not address(d) and host.endswith("." + d)) for d in entries["domains"])
                or host in entries["hosts"]
                or any(url_match(h, p) for h, p in entries["urls"])
                or any(re.search(e, host + path, re.IGNORECASE) for e in entries["expressions"])):
            found.append(name)
    return tuple(found)


def through_parsers(entries: dict[str, list]) -> CategoryList:
    """The generated lists written out in their file formats and parsed back."""
    return CategoryList(
        parse_squidguard_domains("\n".join(entries["domains"]), "d").entries,
        parse_host_list("\n".join(entries["hosts"]), "h").entries,
        parse_squidguard_urls("\n".join(h + p for h, p in entries["urls"]), "u").entries,
        parse_expressions("\n".join(entries["expressions"]), "e").entries)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["m", "p", "s", "t"]), CATEGORY, max_size=4),
       st.lists(st.tuples(st.one_of(NAMES, NAMES.map(lambda n: n + ".a"), ADDRESSES), PATHS),
                min_size=1, max_size=20))
def test_index_agrees_with_brute_force(lists: dict[str, dict[str, list]],
                                       requests: list[tuple[str, str]]) -> None:
    # "www.x" URL entries are stored as "x" (squidGuard's rule): the reference sees them so too.
    for entries in lists.values():
        entries["urls"] = [(h[4:] if h.startswith("www.") and "." in h[4:] else h, p)
                           for h, p in entries["urls"]]
    index = CategoryIndex.build({name: through_parsers(entries) for name, entries in lists.items()})
    no_paths = {name: dict(entries, urls=[], expressions=[]) for name, entries in lists.items()}
    for host, path in requests:
        assert index.lookup(host, path) == reference(lists, host, path), (host, path)
        assert index.lookup_host(host) == reference(no_paths, host, path), host


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["allow", "block"]), st.sampled_from(["", "*.", "."]), NAMES),
                max_size=8),
       st.lists(NAMES, min_size=1, max_size=10))
def test_tenant_lists_agree_with_brute_force(patterns: list[tuple[str, str, str]],
                                             hosts: list[str]) -> None:
    lists = TenantLists(tuple(p + n for v, p, n in patterns if v == "allow"),
                        tuple(p + n for v, p, n in patterns if v == "block"))
    for host in hosts:
        best: tuple[int, int, str, str] | None = None   # (specificity, block?, verdict, pattern)
        for verdict, prefix, name in patterns:
            if prefix != "*." and host == name:
                score = len(host) + 1
            elif prefix and host.endswith("." + name):
                score = len(name)
            else:
                continue
            candidate = (score, verdict == "block", verdict, prefix + name)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        got = lists.match(host)
        assert (got[0] if got else None) == (best[2] if best else None), (host, got, best)


PARSERS = [parse_squidguard_domains, parse_host_list, parse_squidguard_urls, parse_expressions]
SAMPLE_LINES = ["example.com", "# c", "0.0.0.0 a.example", "a..b", "bücher.de", "[::1]",
                "x.org/p?q#f", "(a|b", "[[:alpha:]]", "\t", "\r", "\u2028", "\ud800", "ＥＸ。ｊｐ"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(),
                 st.lists(st.one_of(st.sampled_from(SAMPLE_LINES), st.text(max_size=30)), max_size=20)
                 .map("\n".join),
                 st.lists(st.sampled_from(SAMPLE_LINES), max_size=20).map(lambda x: "\n".join(x).encode(
                     "utf-8", "surrogatepass"))),
       st.sampled_from(PARSERS))
def test_parsers_never_raise_anything_but_category_list_error(data: str | bytes, parse: object) -> None:
    try:
        parsed = parse(data, "fuzz")  # type: ignore[operator]
    except CategoryListError:
        return
    report = parsed.report
    assert report.entries == len(parsed.entries) and len(report.reasons) <= MAX_REASONS
    assert len(set(parsed.entries)) == len(parsed.entries)
    if parse in (parse_squidguard_domains, parse_host_list):
        for entry in parsed.entries:   # every entry is canonical: normalising again changes nothing
            assert normalise_host(entry) == entry
