"""LDAP escaping and parsing (idp_bridge/ldap_syntax.py): RFC 4515 filter values, RFC 4514 DN
values, checked by tables, by hypothesis, and against python-ldap where it is installed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idp_bridge.ldap_syntax import (
    FilterItem,
    FilterSet,
    LdapSyntaxError,
    dn_equal,
    escape_dn_value,
    escape_filter_value,
    first_rdn_value,
    parse_dn,
    parse_filter,
    unescape_filter_value,
)

# Any text, with the LDAP special characters made likely.
texts = st.text(alphabet=st.one_of(st.sampled_from('*()\\\x00 #,+";<>=田'), st.characters()),
                max_size=40).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))

TEMPLATES = [
    "(uid={username})",
    "(&(objectClass=inetOrgPerson)(uid={username}))",
    "(&(objectCategory=person)(objectClass=user)(sAMAccountName={username}))",
    "(|(uid={username})(mail={username}))",
    "(&(objectClass=user)(!(cn={username})))",
]


@pytest.mark.parametrize(("value", "escaped"), [
    ("alice", "alice"),
    ("*", "\\2a"),
    ("a*)(uid=*", "a\\2a\\29\\28uid=\\2a"),
    ("*)(uid=*", "\\2a\\29\\28uid=\\2a"),
    ("admin)(|(a=*", "admin\\29\\28|\\28a=\\2a"),
    ("back\\slash", "back\\5cslash"),
    ("nul\x00", "nul\\00"),
    ("田中", "田中"),  # UTF-8 may stay as it is (RFC 4515 §3)
    ("", ""),
])
def test_escape_filter_value_table(value: str, escaped: str) -> None:
    assert escape_filter_value(value) == escaped


@given(texts)
def test_escaped_filter_value_round_trips_and_has_no_specials(value: str) -> None:
    escaped = escape_filter_value(value)
    assert unescape_filter_value(escaped) == value
    assert not set(escaped) & set("*()\x00")
    # every backslash starts a hex pair
    assert all(escaped[i + 1:i + 3] in {"5c", "2a", "28", "29", "00"}
               for i, ch in enumerate(escaped) if ch == "\\")


def _shape(node: FilterItem | FilterSet) -> object:
    if isinstance(node, FilterItem):
        return (node.attribute, node.operator)
    return (node.operator, tuple(_shape(c) for c in node.children))


def _values(node: FilterItem | FilterSet) -> list[str]:
    if isinstance(node, FilterItem):
        return [node.value]
    return [v for c in node.children for v in _values(c)]


@pytest.mark.parametrize("template", TEMPLATES)
@given(username=texts)
def test_an_escaped_username_never_changes_the_filter_shape(template: str, username: str) -> None:
    rendered = template.replace("{username}", escape_filter_value(username))
    reference = parse_filter(template.replace("{username}", "x"))
    parsed = parse_filter(rendered)
    assert _shape(parsed) == _shape(reference)
    # each placeholder position holds exactly the typed name, as one literal value
    for ref, got in zip(_values(reference), _values(parsed), strict=True):
        if ref == "x":
            assert unescape_filter_value(got) == username
        else:
            assert got == ref


def test_unescaped_injection_would_change_the_shape() -> None:
    # the property above can fail: without escaping, the same name breaks out of its item
    with pytest.raises(LdapSyntaxError):
        parse_filter("(&(objectClass=user)(uid=admin)(|(a=*))")
    assert _shape(parse_filter("(uid=*)")) == _shape(parse_filter("(uid=x)"))  # same shape…
    assert _values(parse_filter("(uid=*)")) == ["*"]  # …but a wildcard value, which escaping prevents


@pytest.mark.parametrize("text", [
    "(uid=alice)", "(&(a=b)(c=d))", "(|(a=b)(!(c=d)))", "(uid=a*b*)", "(cn~=tanaka)",
    "(member:1.2.840.113556.1.4.1941:=cn=x,dc=y)", "(:dn:2.5.13.5:=x)", "(uid=\\2a)",
    "(objectClass=*)", "(age>=3)",
])
def test_parse_filter_accepts(text: str) -> None:
    parse_filter(text)


@pytest.mark.parametrize("text", [
    "", "uid=alice", "(uid=alice", "(uid=alice))", "(&)", "(!(a=b)(c=d))", "(=x)", "(uid=\\zz)",
    "((uid=a))", "(uid=a)(uid=b)",
])
def test_parse_filter_rejects(text: str) -> None:
    with pytest.raises(LdapSyntaxError):
        parse_filter(text)


@pytest.mark.parametrize(("value", "escaped"), [
    ("alice", "alice"),
    ("Tanaka, Taro", "Tanaka\\, Taro"),
    ("a+b", "a\\+b"),
    (' lead', '\\ lead'),
    ('trail ', 'trail\\ '),
    ('#hash', '\\#hash'),
    ('mid#dle', 'mid#dle'),
    ('q"<>;=\\', 'q\\"\\<\\>\\;\\=\\\\'),
    ("nul\x00", "nul\\00"),
    ("佐藤 花子", "佐藤 花子"),
    ("", ""),
])
def test_escape_dn_value_table(value: str, escaped: str) -> None:
    assert escape_dn_value(value) == escaped


@given(texts, texts)
def test_escaped_dn_value_parses_back_to_one_value(a: str, b: str) -> None:
    dn = f"cn={escape_dn_value(a)},ou={escape_dn_value(b)},dc=example"
    assert parse_dn(dn) == ((("cn", a),), (("ou", b),), (("dc", "example"),))


@pytest.mark.parametrize(("dn", "rdns"), [
    ("uid=alice,ou=people,dc=city", ((("uid", "alice"),), (("ou", "people"),), (("dc", "city"),))),
    ("CN=Tanaka\\, Taro,OU=Users", ((("CN", "Tanaka, Taro"),), (("OU", "Users"),))),
    ("cn=a+sn=b,dc=x", ((("cn", "a"), ("sn", "b")), (("dc", "x"),))),
    ("cn=\\e7\\94\\b0\\e4\\b8\\ad,dc=x", ((("cn", "田中"),), (("dc", "x"),))),
    ("cn = spaced , dc = x", ((("cn", "spaced"),), (("dc", "x"),))),
    ("cn=trail\\ ,dc=x", ((("cn", "trail "),), (("dc", "x"),))),
    ("1.3.6.1.4.1.1466.0=#04024869,dc=x", ((("1.3.6.1.4.1.1466.0", "#04024869"),), (("dc", "x"),))),
    ("", ()),
])
def test_parse_dn_table(dn: str, rdns: object) -> None:
    assert parse_dn(dn) == rdns


@pytest.mark.parametrize("dn", ["uid", "=x", "cn=a\\", "cn=a\\zz", "cn=a<b", "cn=a,", "cn=\\ff"])
def test_parse_dn_rejects(dn: str) -> None:
    with pytest.raises(LdapSyntaxError):
        parse_dn(dn)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("uid=alice,ou=people,dc=city", "UID=Alice, OU=People, DC=City", True),
    ("uid=alice,ou=people,dc=city", "uid=alice,ou=people,dc=town", False),
    ("cn=a+sn=b,dc=x", "sn=B+cn=A,dc=x", True),
    ("cn=Tanaka\\2C Taro,dc=x", "cn=tanaka\\, taro,dc=x", True),
    ("cn=x", "cn=x,dc=y", False),
    ("not a dn", "not a dn", False),
])
def test_dn_equal(a: str, b: str, same: bool) -> None:
    assert dn_equal(a, b) is same


def test_first_rdn_value() -> None:
    assert first_rdn_value("cn=tax-clerks,ou=groups,dc=x") == "tax-clerks"
    assert first_rdn_value("garbage") == "garbage"


# -- an independent implementation: python-ldap (skipped where it is not installed) ------------------

@given(texts)
def test_filter_escaping_agrees_with_python_ldap(value: str) -> None:
    ldap_filter = pytest.importorskip("ldap.filter")
    assert escape_filter_value(value) == ldap_filter.escape_filter_chars(value)


@given(texts, texts)
def test_python_ldap_parses_our_dn_values_back(a: str, b: str) -> None:
    ldap_dn = pytest.importorskip("ldap.dn")
    dn = f"cn={escape_dn_value(a)},ou={escape_dn_value(b)},dc=example"
    parsed = ldap_dn.str2dn(dn)
    assert [[(t, v) for t, v, _ in rdn] for rdn in parsed] == [[("cn", a)], [("ou", b)],
                                                              [("dc", "example")]]
    assert parse_dn(dn) == ((("cn", a),), (("ou", b),), (("dc", "example"),))
