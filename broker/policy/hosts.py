"""Host patterns of apps: their syntax and an index that finds every app a host belongs to.

Owns the pattern language (`example.com` exactly that host, `*.example.com` any host below it
but not `example.com` itself, an IP literal in canonical form) and `HostIndex`, which answers
"which patterns cover this host" with one dict lookup for the exact host plus one per label
suffix, walking the host's labels from the left so that the longest suffix comes first: the
cost depends on the number of labels in the host, never on the number of apps. No regex, no
scan over the patterns.

It must not decide anything about access; the engine picks among the matches.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Generic, TypeVar

MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")

V = TypeVar("V")


def host_pattern_problem(pattern: str) -> str | None:
    """What is wrong with an app host pattern, or None if it is valid. Internationalised names
    are written in their ASCII (`xn--`) form, as the agent sends them."""
    if not pattern:
        return "expected a host name, got an empty string"
    if pattern != pattern.lower():
        return "expected a lower-case host name"
    if len(pattern) > MAX_HOST_LENGTH:
        return f"host name longer than {MAX_HOST_LENGTH} characters"
    if ":" in pattern or pattern[0].isdigit():
        try:
            address = ip_address(pattern)
        except ValueError:
            address = None
        if address is not None:
            return None if str(address) == pattern else f"write the address as {address}"
    name = pattern[2:] if pattern.startswith("*.") else pattern
    if not name:
        return "'*.' must be followed by a domain"
    for label in name.split("."):
        if not label:
            return "empty label (leading, trailing or double dot)"
        if "*" in label:
            return "'*' is allowed only as the whole leftmost label ('*.example.com')"
        if len(label) > MAX_LABEL_LENGTH:
            return f"label longer than {MAX_LABEL_LENGTH} characters"
        if not set(label) <= _LABEL_CHARS:
            return "labels may hold only a-z, 0-9, '-' and '_' (use the xn-- form for Japanese names)"
        if label[0] == "-" or label[-1] == "-":
            return "a label may not start or end with '-'"
    return None


class HostIndex(Generic[V]):
    """Patterns → values, built once at compile time. `lookup(host)` returns the values of
    every pattern covering `host`, most specific first (the exact host, then `*.` patterns from
    the longest suffix to the shortest); values of one pattern keep the order they were added."""

    __slots__ = ("_exact", "_below")

    def __init__(self) -> None:
        self._exact: dict[str, list[V]] = {}
        self._below: dict[str, list[V]] = {}   # "example.com" for the pattern "*.example.com"

    def add(self, pattern: str, value: V) -> None:
        if pattern.startswith("*."):
            self._below.setdefault(pattern[2:], []).append(value)
        else:
            self._exact.setdefault(pattern, []).append(value)

    def lookup(self, host: str) -> list[V]:
        found: list[V] = []
        exact = self._exact.get(host)
        if exact is not None:
            found.extend(exact)
        below = self._below
        if below:
            dot = host.find(".")
            while dot != -1:
                values = below.get(host[dot + 1:])
                if values is not None:
                    found.extend(values)
                dot = host.find(".", dot + 1)
        return found

    def __len__(self) -> int:
        return sum(map(len, self._exact.values())) + sum(map(len, self._below.values()))
