"""URL categories: list formats, a precompiled index, and tenant allow/block lists on top.

Owns the list formats SWGs exchange (squidGuard/e2guardian `domains`, `urls`, `expressions`, as
UT1 publishes them; one-host-per-line and hosts files, as the Block List Project does), their
validation and normalisation (a bad line is skipped and reported, never fatal), and
`CategoryIndex`: a URL's categories in about one dict lookup. It must not read files or decide
access: the shell (`swg/runtime/category_import.py`) reads the lists, which the product never
ships (UT1 is CC BY-SA), and swaps the index in force; the policy decides what categories mean.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address
from typing import Generic, Literal, TypeVar

from ztcore.errors import ZTError

MAX_REASONS = 5                    # reasons kept per file; the count of skipped lines is exact
MAX_HOST_LENGTH = 253              # RFC 1035 section 2.3.4, without the trailing dot
MAX_LABEL_LENGTH = 63
MAX_LINE_LENGTH = 4096             # longer lines are refused before any parsing
MAX_EXPRESSION_URL_LENGTH = 2048   # expressions see at most this much of a URL (backtracking)

T = TypeVar("T")
Custom = Literal["allow", "block"]

_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_DIGITS = frozenset("0123456789")
_IPV4_CHARS = _DIGITS | {"."}
# The common case: LDH/underscore labels, the last not a number (see normalise_host); canonical IPv4.
_NAME = r"(?:[a-z0-9_-]{1,63}\.)*(?!0x)(?=[0-9]*[a-z_-])[a-z0-9_-]{1,63}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_NAME = re.compile(_NAME).fullmatch
_PLAIN_ENTRY = re.compile(rf"{_NAME}|(?:{_OCTET}\.){{3}}{_OCTET}").fullmatch
_INNER_SPACES = " \t\x0b\x0c\x1c\x1d\x1e\x1f"   # ASCII whitespace but "\n" and "\r"
_URL_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]").search
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WWW = re.compile(r"www[0-9]*\.")  # squidGuard strips it from URLs before matching its urllists
# squidGuard's expressions are POSIX EREs; Python's re would read "[[:alpha:]]" as a set.
_POSIX_CLASSES = {"[:alpha:]": "a-zA-Z", "[:digit:]": "0-9", "[:alnum:]": "a-zA-Z0-9", "[:space:]": r"\s",
                  "[:upper:]": "A-Z", "[:lower:]": "a-z", "[:xdigit:]": "0-9a-fA-F",
                  "[:punct:]": r"!-/:-@\[-`{-~"}
_HOSTS_FILE_NAMES = frozenset({"localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0"} |
                              {f"ip6-{n}" for n in ("localhost", "loopback", "localnet", "mcastprefix",
                                                    "allnodes", "allrouters", "allhosts")})
_REGEX_ERRORS = (re.error, OverflowError, RecursionError, ValueError)


class CategoryListError(ZTError):
    """Not text at all, a bad category name or tenant pattern; names the file or field (`block[2]`)."""


class _Refused(CategoryListError):
    """One line refused: the parsers count it and keep the first reasons."""


@dataclass(frozen=True, slots=True)
class ParseReport:
    """One file: entries accepted (no duplicates), lines skipped, the first reasons (`line 12: ...`)."""

    where: str
    entries: int
    skipped: int
    duplicates: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)   # not slotted: a slotted generic dataclass breaks `Parsed[str](...)`
class Parsed(Generic[T]):
    """A parser's result: the normalised entries, in file order without duplicates, and the report."""

    entries: tuple[T, ...]
    report: ParseReport


class _Collector:
    __slots__ = ("where", "skipped", "reasons")

    def __init__(self, where: str) -> None:
        self.where, self.skipped, self.reasons = where, 0, list[str]()

    def refuse(self, number: int, reason: str, line: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            shown = line if len(line) <= 60 else line[:57] + "..."
            self.reasons.append(f"line {number}: {reason}: {shown!r}")

    def result(self, entries: list[T]) -> Parsed[T]:
        unique = tuple(dict.fromkeys(entries))
        return Parsed(unique, ParseReport(self.where, len(unique), self.skipped,
                                          len(entries) - len(unique), tuple(self.reasons)))


def _text(data: str | bytes, where: str) -> str:
    """The text, or CategoryListError for a NUL. Bytes not UTF-8 become surrogates: see `_lines`."""
    if not isinstance(data, (str, bytes)):
        raise CategoryListError(f"{where}: expected text or bytes, not {type(data).__name__}")
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    if "\x00" in text:
        raise CategoryListError(f"{where}: not a text file (NUL at offset {text.index(chr(0))})")
    return text.removeprefix("\ufeff")


def _plain_entries(text: str) -> list[str] | None:
    """The entries of a file of plain names and IPv4 addresses only (UT1's and the Block List
    Project's), checked in C without a Python loop; None: go line by line."""
    if "#" in text:  # a comment header, as the Block List Project's files have
        text = "\n".join(line for line in text.split("\n") if line[:1] != "#")
    if not text.isascii() or any(c in text for c in _INNER_SPACES) \
            or text.count("\r") != text.count("\r\n"):
        return None  # a space inside a line: split() would cut it in two
    entries = text.split()
    if entries and max(map(len, entries)) <= MAX_HOST_LENGTH and all(map(_PLAIN_ENTRY, entries)):
        return entries
    return None


def _lines(text: str, collector: _Collector) -> list[tuple[int, str]]:
    """(number, line) of lines neither blank nor comments; more not UTF-8 than UTF-8: not text."""
    out: list[tuple[int, str]] = []
    undecodable = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        if not line.isascii() and any("\ud800" <= c <= "\udfff" for c in line):
            undecodable += 1
            collector.refuse(number, "not UTF-8", line.encode("utf-8", "replace").decode())
        else:
            out.append((number, line))
    if undecodable > len(out):
        raise CategoryListError(f"{collector.where}: not a text file ({undecodable} lines are not "
                                f"UTF-8, {len(out)} are)")
    return out


def normalise_host(text: str, *, leading_dot: bool = False) -> str:
    """A host name or IP literal in the canonical form of the index and of `ztcore.authority`:
    lower case, IDNA `xn--` labels, no trailing dot, canonical address text; or CategoryListError
    saying what is wrong. With `leading_dot`, squid's `.example.com` is `example.com`."""
    host = text[1:] if leading_dot and text.startswith(".") else text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            address = ip_address(host)
        except ValueError:
            raise _Refused("not a host name or IP address") from None
        if isinstance(address, IPv6Address) and address.scope_id:
            raise _Refused("an IPv6 zone names an interface of this machine, not a site")
        return str(address)
    if not host.isascii():
        try:  # the stdlib codec is IDNA 2003 (nameprep): it also maps full-width forms and "。"
            host = host.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            raise _Refused("not a valid internationalised name (IDNA)") from None
    host = host.lower().rstrip(".")
    if not host or len(host) > MAX_HOST_LENGTH:
        raise _Refused(f"host name empty or longer than {MAX_HOST_LENGTH} characters")
    labels = host.split(".")
    for label in labels:
        # Hyphens at a label's edge (UT1's `w-w-i-s-.com`) break RFC 952 but resolve: accepted.
        if not label:
            raise _Refused("empty label (leading or double dot)")
        if len(label) > MAX_LABEL_LENGTH:
            raise _Refused(f"label longer than {MAX_LABEL_LENGTH} characters")
        if not _LABEL_CHARS.issuperset(label):
            raise _Refused("a label may hold only a-z, 0-9, '-' and '_'")
    last = labels[-1]
    # WHATWG URL "ends in a number": such a host is an IPv4 address in every browser, never a name.
    if _DIGITS.issuperset(last) or (last.startswith("0x") and set(last[2:]) <= set("0123456789abcdef")):
        try:
            address = ip_address(host)
        except ValueError:
            raise _Refused("ends in a number but is not an IPv4 address (a.b.c.d)") from None
        if str(address) != host:
            raise _Refused(f"write the address as {address}")
    return host


def _is_address(host: str) -> bool:  # of a normalised entry: names never end in all digits
    return ":" in host or (host[-1:] in _DIGITS and _IPV4_CHARS.issuperset(host))


def parse_squidguard_domains(data: str | bytes, where: str) -> Parsed[str]:
    """A squidGuard `domains` file: one domain a line, covering itself and every host below it
    (an IP address covers only itself). `#` starts a comment; squid's `.example.com` is allowed."""
    return _parse_names(data, where, hosts_file=False)


def parse_host_list(data: str | bytes, where: str) -> Parsed[str]:
    """One host a line, or a hosts file (`0.0.0.0 evil.example other`): exact hosts, not their
    subdomains; `#` starts a comment; the hosts file's own `localhost`... are skipped, reported."""
    return _parse_names(data, where, hosts_file=True)


def _parse_names(data: str | bytes, where: str, *, hosts_file: bool) -> Parsed[str]:
    collector, text = _Collector(where), _text(data, where)
    found = _plain_entries(text)
    if found is not None and not (hosts_file and not _HOSTS_FILE_NAMES.isdisjoint(found)):
        return collector.result(found)
    out: list[str] = []
    for number, line in _lines(text, collector):
        tokens = line.split("#", 1)[0].split()
        if len(tokens) > 1:
            try:
                ip_address(tokens[0])
            except ValueError:
                collector.refuse(number, "one host a line, or an address and host names", line)
                continue
            del tokens[0]
        for token in tokens:
            try:
                if len(token) > MAX_LINE_LENGTH or token.startswith("*"):
                    raise _Refused("too long, or a wildcard (not part of this format)")
                plain = len(token) <= MAX_HOST_LENGTH and _PLAIN_NAME(token)
                host = token if plain else normalise_host(token, leading_dot=not hosts_file)
                if hosts_file and host in _HOSTS_FILE_NAMES:
                    raise _Refused("a hosts file's own name, not a listed site")
                out.append(host)
            except _Refused as exc:
                collector.refuse(number, str(exc), line)
    return collector.result(out)


def parse_squidguard_urls(data: str | bytes, where: str) -> Parsed[tuple[str, str]]:
    """A squidGuard `urls` file of `host/path` prefixes: (host without squidGuard's `www.`, as the
    lookup drops it from requests, path from `/`, case kept, no fragment: browsers send none)."""
    collector, out = _Collector(where), list[tuple[str, str]]()
    for number, line in _lines(_text(data, where), collector):
        try:
            out.append(_url_prefix(line))
        except _Refused as exc:
            collector.refuse(number, str(exc), line)
    return collector.result(out)


def _url_prefix(line: str) -> tuple[str, str]:
    if len(line) > MAX_LINE_LENGTH:
        raise _Refused(f"longer than {MAX_LINE_LENGTH} characters")
    if _URL_SPACE_OR_CONTROL(line) or not line.isprintable():
        raise _Refused("a URL may not contain spaces or control characters")
    scheme = _SCHEME.match(line)
    text = line[scheme.end():] if scheme else line
    cut = min((i for i in (text.find("/"), text.find("?")) if i >= 0), default=len(text))
    host, path = text[:cut], text[cut:].split("#", 1)[0]
    head, colon, port = host.rpartition(":")
    if colon and port and _DIGITS.issuperset(port) and (head.endswith("]") or ":" not in head):
        host = head  # a port: squidGuard drops it too
    if len(host) > MAX_HOST_LENGTH or not _PLAIN_ENTRY(host):
        host = normalise_host(host)
    www = _WWW.match(host)
    if www and "." in host[www.end():] and not _is_address(host):
        host = host[www.end():]
    return host, path if path.startswith("/") else "/" + path


def parse_expressions(data: str | bytes, where: str) -> Parsed[str]:
    """A squidGuard `expressions` file: one regex a line, searched ignoring case in `host/path?query`;
    POSIX classes translated; one that does not compile is skipped. Gives the pattern sources."""
    collector, out = _Collector(where), list[str]()
    for number, line in _lines(_text(data, where), collector):
        source = line
        for posix, python in _POSIX_CLASSES.items():
            source = source.replace(posix, python)
        try:
            if len(line) > MAX_LINE_LENGTH:
                raise ValueError(f"longer than {MAX_LINE_LENGTH} characters")
            out.append(_compile(source).pattern)
        except _REGEX_ERRORS as exc:
            collector.refuse(number, f"not a valid regular expression ({exc})", line)
    return collector.result(out)


def _compile(source: str) -> re.Pattern[str]:
    with warnings.catch_warnings():  # "possible nested set" and friends: the pattern still works
        warnings.simplefilter("ignore")
        return re.compile(source, re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CategoryList:
    """One category's entries, normalised as the parsers give them."""

    domains: tuple[str, ...] = ()               # each: the domain and every host below it
    hosts: tuple[str, ...] = ()                 # each: exactly that host
    urls: tuple[tuple[str, str], ...] = ()      # (host, path prefix)
    expressions: tuple[str, ...] = ()           # regex sources, searched in host + path

    @property
    def size(self) -> int:
        return len(self.domains) + len(self.hosts) + len(self.urls) + len(self.expressions)


@dataclass(frozen=True, slots=True, eq=False)
class CategoryIndex:
    """The lists compiled by `CategoryIndex.build({category: CategoryList})`: an immutable value (a
    reload builds a new one, then swaps the reference). One dict maps names to small ints: bit i
    "category i lists this domain (and below)", bit n+i "... exactly this host" (host lists,
    addresses), bit 2n (`deeper`) "entries lie below". A lookup walks the host's suffixes from
    the right, from two labels (one if a list names a top-level domain), and stops at the first
    one missing or with nothing below: one dict lookup for most hosts, listed or not."""

    categories: tuple[str, ...]
    sizes: Mapping[str, int] = field(repr=False)
    keys: int
    _get: Callable[[str], int | None] = field(repr=False)   # the dict's bound `get`
    _shift: int = field(repr=False)
    _low: int = field(repr=False)
    _deeper: int = field(repr=False)
    _single_labels: bool = field(repr=False)
    _named: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = field(repr=False)  # (suffix, host)
    _results: dict[int, tuple[str, ...]] = field(repr=False)     # category bits → categories
    _urls: dict[str, tuple[tuple[str, int], ...]] = field(repr=False)
    _expressions: tuple[tuple[re.Pattern[str], int], ...] = field(repr=False)

    @classmethod
    def build(cls, lists: Mapping[str, CategoryList]) -> CategoryIndex:
        categories = tuple(lists)
        if bad := [c for c in categories if not isinstance(c, str) or [c] != c.split()
                   or not c.isprintable()]:
            raise CategoryListError(f"invalid category name {bad[0]!r}")
        n = len(categories)
        low, deeper = (1 << n) - 1, 1 << 2 * n
        single = any("." not in d and ":" not in d for e in lists.values() for d in e.domains)
        names: dict[str, int] = {}
        get = names.get
        urls: dict[str, list[tuple[str, int]]] = {}
        expressions: list[tuple[re.Pattern[str], int]] = []
        for i, category in enumerate(categories):
            entries, bit, exact = lists[category], 1 << i, 1 << (n + i)
            for domain in entries.domains:
                address = (":" in domain or domain[-1:] in _DIGITS) and _is_address(domain)
                names[domain] = get(domain, 0) | (exact if address else bit)
            for host in entries.hosts:
                names[host] = get(host, 0) | exact
            for host, path in entries.urls:
                for alias in (host,) if _is_address(host) else (host, "www." + host):
                    urls.setdefault(alias, []).append((path, bit))
            for source in entries.expressions:
                try:
                    expressions.append((_compile(source), bit))
                except _REGEX_ERRORS as exc:
                    raise CategoryListError(f"{category}: expression {source!r}: {exc}") from None
        for key in list(names):  # mark the ancestors the walk passes on its way to each name
            dot = key.find(".")
            while dot >= 0:
                ancestor = key[dot + 1:]
                if not single and "." not in ancestor:
                    break
                value = get(ancestor)
                if value is not None and value >= deeper:
                    break  # marked already, and so are its own ancestors
                names[ancestor] = deeper if value is None else value | deeper
                dot = key.find(".", dot + 1)
        shared: dict[int, int] = {}  # one int object per distinct value, not one per name
        for key, value in names.items():
            names[key] = shared.setdefault(value, value)
        named = {v: (_categories_of(categories, v & low), _categories_of(categories, (v | v >> n) & low))
                 for v in shared}
        results = {v & low: pair[0] for v, pair in named.items()}
        results |= {(v | v >> n) & low: pair[1] for v, pair in named.items()}
        return cls(categories, {c: lists[c].size for c in categories}, len(names), get, n, low,
                   deeper, single, named, {0: ()} | results,
                   {host: tuple(found) for host, found in urls.items()}, tuple(expressions))

    def lookup_host(self, host: str) -> tuple[str, ...]:
        """The categories whose `domains` or `hosts` lists cover the canonical `host` (lower case,
        IDNA, no trailing dot: `Authority.host`): what a decision on a CONNECT or a DNS name can
        know. URL prefixes and expressions need the path: see `lookup`."""
        dot = host.rfind(".")  # as `lookup`, inlined: the hot path, where most hosts end at once
        if not self._single_labels:
            dot = host.rfind(".", 0, dot)
        value = self._get(host[dot + 1:])
        if value is None:
            return ()
        if dot < 0:
            return self._named[value][1]
        if value < self._deeper:
            return self._named[value][0]
        return self._result(self._descend(host, dot, value))

    def lookup(self, host: str, path: str = "/") -> tuple[str, ...]:
        """Every category of the URL, in the categories' order; `host` canonical (see `lookup_host`),
        `path` the target's path and query. Domains match on label boundaries (`example.com`
        covers `a.example.com`, not `badexample.com`); URL prefixes on the host (or it without
        `www.`) and path segments; expressions searched in `host + path`."""
        dot = host.rfind(".")
        if not self._single_labels:
            dot = host.rfind(".", 0, dot)
        value = self._get(host[dot + 1:])
        bits = 0 if value is None else self._descend(host, dot, value)
        for prefix, bit in self._urls.get(host, ()):
            # Whole segments: "/adm" does not cover "/admin"; a prefix ending in "/" or holding a
            # query covers whatever follows.
            if path.startswith(prefix) and (len(path) == len(prefix) or prefix[-1] in "/?&="
                                            or path[len(prefix)] in "/?#;" or "?" in prefix):
                bits |= bit
        if self._expressions:
            url = (host + path)[:MAX_EXPRESSION_URL_LENGTH]
            for pattern, bit in self._expressions:
                if not bits & bit and pattern.search(url):
                    bits |= bit
        return self._result(bits)

    def _descend(self, host: str, dot: int, value: int) -> int:
        """The category bits, from a suffix found (its value, where it starts) towards the host."""
        bits = 0
        while dot >= 0:
            bits |= value
            if value < self._deeper:
                return bits
            dot = host.rfind(".", 0, dot)
            found = self._get(host[dot + 1:])
            if found is None:
                return bits
            value = found
        return bits | value | value >> self._shift

    def _result(self, bits: int) -> tuple[str, ...]:
        bits &= self._low
        found = self._results.get(bits)
        return found if found is not None else _categories_of(self.categories, bits)


def _categories_of(categories: tuple[str, ...], bits: int) -> tuple[str, ...]:
    return tuple(name for i, name in enumerate(categories) if bits >> i & 1)


EMPTY_INDEX = CategoryIndex.build({})


@dataclass(frozen=True, slots=True)
class TenantLists:
    """A tenant's own allow and block host patterns: `example.com` that host, `*.example.com` any
    host below it, `.example.com` both. The most specific pattern wins (the host, then the longest
    suffix); of an allow and a block equally specific, the block. CategoryListError names a bad one."""

    allow: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    _exact: dict[str, tuple[Custom, str]] = field(init=False, repr=False, compare=False)
    _below: dict[str, tuple[Custom, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, tuple[Custom, str]] = {}
        below: dict[str, tuple[Custom, str]] = {}
        verdicts: tuple[Custom, Custom] = ("allow", "block")
        for verdict in verdicts:  # block second: it replaces an equally specific allow
            given = getattr(self, verdict)
            patterns = tuple(given) if isinstance(given, (tuple, list)) else (None,)
            if not all(isinstance(p, str) for p in patterns):
                raise CategoryListError(f"{verdict}: expected a list of host patterns")
            object.__setattr__(self, verdict, patterns)
            for i, pattern in enumerate(patterns):
                text = pattern.strip()
                wildcard, dotted = text.startswith("*."), text.startswith(".")
                try:
                    host = normalise_host(text[2:] if wildcard else text[1:] if dotted else text)
                    if (wildcard or dotted) and _is_address(host):
                        raise _Refused("an address has no subdomains")
                except CategoryListError as exc:
                    raise CategoryListError(f"{verdict}[{i}]: {pattern!r}: {exc}") from None
                for table, applies in ((exact, not wildcard), (below, wildcard or dotted)):
                    if applies and table.get(host, ("",))[0] != verdict:  # the first of a verdict
                        table[host] = (verdict, pattern)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_below", below)

    def match(self, host: str) -> tuple[Custom, str] | None:
        """(verdict, pattern) of the most specific pattern covering the canonical `host`."""
        found = self._exact.get(host)
        dot = host.find(".")
        while found is None and dot >= 0 and self._below:
            found = self._below.get(host[dot + 1:])
            dot = host.find(".", dot + 1)
        return found


NO_TENANT_LISTS = TenantLists()


@dataclass(frozen=True, slots=True)
class Classification:
    """A URL's categories and the tenant's verdict on its host, if any: the policy decides."""

    categories: tuple[str, ...]
    custom: Custom | None = None
    custom_pattern: str | None = None


def classify(index: CategoryIndex, lists: TenantLists, host: str, path: str = "/") -> Classification:
    """Categories from the index (always: the audit log shows them) and the tenant's verdict."""
    found = lists.match(host)
    categories = index.lookup(host, path)
    return Classification(categories) if found is None else Classification(categories, *found)
