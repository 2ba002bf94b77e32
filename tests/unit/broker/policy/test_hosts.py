"""broker/policy/hosts.py: the host-pattern syntax and the index's specificity order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.policy.hosts import HostIndex, host_pattern_problem


@pytest.mark.parametrize("pattern,problem", [
    ("tax.city.lg.jp", None),
    ("*.city.lg.jp", None),
    ("*.jp", None),
    ("_ldap._tcp.example.jp", None),
    ("xn--eckwd4c7c.xn--zckzah", None),
    ("192.0.2.1", None),
    ("2001:db8::1", None),
    ("2001:DB8::1", "expected a lower-case host name"),
    ("2001:0db8::1", "write the address as 2001:db8::1"),
    ("", "expected a host name, got an empty string"),
    ("Tax.city.lg.jp", "expected a lower-case host name"),
    ("*", "'*' is allowed only"),
    ("*.", "'*.' must be followed by a domain"),
    ("a.*.jp", "'*' is allowed only"),
    ("*example.jp", "'*' is allowed only"),
    ("**.example.jp", "'*' is allowed only"),
    ("example.jp.", "empty label"),
    ("a..jp", "empty label"),
    ("-a.jp", "a label may not start or end with '-'"),
    ("税務.jp", "labels may hold only"),
    ("a b.jp", "labels may hold only"),
    ("a" * 64 + ".jp", "label longer than 63 characters"),
    (("a" * 60 + ".") * 5, "host name longer than 253 characters"),
])
def test_patterns(pattern: str, problem: str | None) -> None:
    got = host_pattern_problem(pattern)
    assert (got is None) if problem is None else (got is not None and got.startswith(problem)), got


def test_lookup_order_is_most_specific_first() -> None:
    index: HostIndex[str] = HostIndex()
    for pattern, value in [("*.jp", "jp"), ("*.example.jp", "example"), ("a.example.jp", "exact"),
                           ("*.a.example.jp", "below-a"), ("*.example.jp", "example-2")]:
        index.add(pattern, value)
    assert index.lookup("a.example.jp") == ["exact", "example", "example-2", "jp"]
    assert index.lookup("x.a.example.jp") == ["below-a", "example", "example-2", "jp"]
    assert index.lookup("example.jp") == ["jp"]
    assert index.lookup("jp") == []
    assert index.lookup("example.com") == []
    assert len(index) == 5


LABELS = st.sampled_from(["a", "b", "example", "jp", "lg"])


@given(st.lists(LABELS, min_size=1, max_size=4), st.lists(st.lists(LABELS, min_size=1, max_size=3)))
def test_lookup_agrees_with_a_plain_scan(host_labels: list[str], patterns: list[list[str]]) -> None:
    host = ".".join(host_labels)
    index: HostIndex[str] = HostIndex()
    texts = [("*." if i % 2 else "") + ".".join(p) for i, p in enumerate(patterns)]
    for text in texts:
        index.add(text, text)
    expected = {t for t in texts if t == host or (t.startswith("*.") and host.endswith(t[1:]))}
    assert set(index.lookup(host)) == expected
