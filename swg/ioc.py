"""Indicators of compromise (IOC): the feeds a prefecture shares with its municipalities, and
`IocIndex`, which says whether a host, address, URL or file hash is listed, and by which feed.

Owns two feed formats and their validation (a bad row or object is reported with its line number
or STIX id and skipped, never fatal; `IocFeedError` only for a document that cannot be read):

* CSV, one record a line (a quoted field may not span lines); blank lines and lines starting with
  `#` are skipped. The first other line is the header. Column names are matched ignoring case,
  spaces, `_` and `-`: the kind is `type` (or `indicator_type`, `ioc_type`, `kind`), the value
  `value` (or `indicator`, `ioc`, `observable`), optional `source` and `description` (or
  `comment`). Others (`first_seen`, `confidence`, ...) are ignored. So MISP's
  `uuid,event_id,category,type,value,comment,...` and `indicator,type` both read. Kinds: `_KINDS`.
* STIX 2.1 JSON bundles, read by `swg/stix.py` (revoked and expired indicators skipped; of a
  pattern, the equality comparisons joined by OR, each alone enough to match). This module maps
  `domain-name:value`, `ipv4-addr:value`, `ipv6-addr:value`, `url:value` and
  `file:hashes.'SHA-256'` to indicators; other object types, properties and hashes are skipped
  with a reason. `source` is the name of the identity that created the indicator.

Matching, on values normalised by `normalise_value`: a domain (lower case, IDNA, no trailing
dot; a lone TLD is refused) covers itself and every host below it; an IPv4/IPv6 address or
network matches by longest prefix (an IPv4-mapped IPv6 address as its IPv4); a URL (http(s),
canonical as `swg.url_canonical` says) matches exactly, and one whose path ends in `/` with no
query also matches every URL below that path (`http://e.example/kit/`); a SHA-256 any case.

It must not read files, fetch feeds or decide access: the shell fetches and reads them, builds a
new index and swaps one reference; the policy decides what a hit means.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Literal

from swg.stix import Comparison, StixBad, StixError, StixIndicator, StixSkipped, bundle_indicators
from swg.url_canonical import UrlError, UrlSchemeError, canonical_url
from swg.urlcategories import MAX_HOST_LENGTH, CategoryListError, normalise_host
from ztcore.errors import ZTError

IocKind = Literal["domain", "ip", "url", "sha256"]
MAX_BAD_SHOWN = 100            # bad entries kept in a report; `bad_count` is exact
MAX_LINE_CHARS = 8192
MAX_TEXT_CHARS = 512           # description and source are cut to this
MAX_FEED_CHARS = 64

# why an entry was skipped (a valid entry we do not match on), the keys of `FeedReport.skipped`
SKIP_DUPLICATE = "duplicate"
SKIP_KIND = "unsupported-kind"                    # a CSV kind we do not match on (md5, email)
SKIP_URL_SCHEME = "unsupported-url-scheme"        # ftp://, ...
SKIP_OBJECT = "unsupported-object-type"           # email-addr, mac-addr, x-..., in a STIX pattern
SKIP_PROPERTY = "unsupported-property"            # file:name, url:x_score, ...
SKIP_HASH = "unsupported-hash-algorithm"          # file:hashes.MD5, ...
# and swg.stix's SKIP_*: revoked, expired, not-an-indicator, and-combination, ...

_SHA256 = re.compile(r"[0-9a-f]{64}").fullmatch
_SURROGATE = re.compile("[\ud800-\udfff]").search     # bytes that were not UTF-8
# the common case, in canonical form already: LDH labels, at least two, the last not a number
_PLAIN_DOMAIN = re.compile(r"(?:[a-z0-9_-]{1,63}\.)+(?!0x)(?=[0-9]*[a-z_-])[a-z0-9_-]{1,63}").fullmatch
_KINDS: dict[str, tuple[IocKind, int]] = {   # CSV kind (lower, `_` and spaces as `-`) → kind, IP version
    **{k: ("domain", 0) for k in ("domain", "domain-name", "hostname", "host", "fqdn")},
    **{k: ("ip", 0) for k in ("ip", "ip-addr", "ip-address", "ip-dst", "ip-src", "cidr", "network")},
    **{k: ("ip", 4) for k in ("ipv4", "ipv4-addr", "ipv4-address", "ipv4-cidr")},
    **{k: ("ip", 6) for k in ("ipv6", "ipv6-addr", "ipv6-address", "ipv6-cidr")},
    **{k: ("url", 0) for k in ("url", "uri")},
    **{k: ("sha256", 0) for k in ("sha256", "sha-256", "filehash-sha256", "file-sha256",
                                  "hash-sha256", "sha256-hash")},
}
_COLUMNS = {"kind": ("type", "indicatortype", "ioctype", "kind"),
            "value": ("value", "indicator", "ioc", "observable"),
            "source": ("source",), "description": ("description", "comment")}
_STIX_OBJECTS: dict[str, tuple[str, int]] = {
    "domain-name": ("domain", 0), "ipv4-addr": ("ip", 4), "ipv6-addr": ("ip", 6), "url": ("url", 0),
    "file": ("sha256", 0)}


class IocFeedError(ZTError):
    """A feed that cannot be read at all (not text, not JSON, not a STIX bundle, a CSV without a
    header naming the kind and value columns), a bad feed name, or a bad value given to
    `indicator`; the message names the feed and what is wrong."""


class _Refused(IocFeedError):
    """One value refused: the parsers report it against its line or object."""


class _Unsupported(Exception):
    """A valid entry we do not match on: the parsers count `reason` as skipped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IocHit:
    """One listed indicator (`value` normalised; a network as `198.51.100.0/24`, one address
    without a prefix length), and what a match returns: which `feed` listed it, the `source` the
    feed names (a CSV column, a STIX identity), and its description."""

    kind: IocKind
    value: str
    feed: str
    description: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class BadEntry:
    where: str      # "line 12", a STIX id ("indicator--..."), or "objects[3]" when it has none
    problem: str


@dataclass(frozen=True)
class FeedReport:
    """One feed: indicators loaded (no duplicates), entries skipped by reason, bad entries."""

    feed: str
    loaded: int
    skipped: Counter[str]
    bad: tuple[BadEntry, ...]     # the first MAX_BAD_SHOWN
    bad_count: int


@dataclass(frozen=True)
class ParsedFeed:
    indicators: tuple[IocHit, ...]
    report: FeedReport


class _Collector:
    __slots__ = ("feed", "hits", "skipped", "bad", "bad_count")

    def __init__(self, feed: str) -> None:
        if not isinstance(feed, str) or not feed or len(feed) > MAX_FEED_CHARS \
                or not feed.isprintable() or feed != feed.strip():
            raise IocFeedError(f"invalid feed name {feed!r}: 1 to {MAX_FEED_CHARS} printable "
                               "characters without surrounding spaces")
        self.feed = feed
        self.hits: dict[tuple[str, str], IocHit] = {}
        self.skipped: Counter[str] = Counter()
        self.bad: list[BadEntry] = []
        self.bad_count = 0

    def add(self, kind: str, value: str, version: int, description: str, source: str) -> None:
        found, normal = _normalise(kind, value, version)
        if (found, normal) in self.hits:
            self.skipped[SKIP_DUPLICATE] += 1
            return
        self.hits[found, normal] = IocHit(found, normal, self.feed, _cut(description), _cut(source))

    def refuse(self, where: str, problem: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_BAD_SHOWN:
            self.bad.append(BadEntry(where, problem if len(problem) <= 300 else problem[:297] + "..."))

    def result(self) -> ParsedFeed:
        return ParsedFeed(tuple(self.hits.values()),
                          FeedReport(self.feed, len(self.hits), self.skipped, tuple(self.bad),
                                     self.bad_count))


def _cut(text: str) -> str:
    if not text:
        return text
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS - 3] + "..."


# -- values ----------------------------------------------------------------------------------------

def normalise_value(kind: str, value: str, version: int = 0) -> tuple[IocKind, str]:
    """(kind, value) as the index keeps them, or IocFeedError saying what is wrong. A domain that
    is an IP literal becomes an `ip`; `version` 4 or 6 requires that IP version."""
    try:
        return _normalise(kind, value, version)
    except _Unsupported as exc:
        raise IocFeedError(f"{kind} {str(value)[:80]!r} cannot be matched: {exc.reason}") from None


def _normalise(kind: str, value: str, version: int) -> tuple[IocKind, str]:
    if not isinstance(value, str):
        raise _Refused(f"the value must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise _Refused("empty value")
    if kind == "domain":
        return _domain(text)
    if kind == "ip":
        return "ip", _network(text, version)
    if kind == "url":
        try:
            return "url", canonical_url(text)
        except UrlSchemeError:
            raise _Unsupported(SKIP_URL_SCHEME) from None
        except UrlError as exc:
            raise _Refused(str(exc)) from None
    if kind == "sha256":
        digest = text.lower()
        if not _SHA256(digest):
            raise _Refused("not a SHA-256 (64 hexadecimal digits)")
        return "sha256", digest
    raise _Refused(f"unknown kind {kind!r}")


def indicator(kind: str, value: str, feed: str, description: str = "", source: str = "") -> IocHit:
    """One indicator built in code (a tenant's own list), normalised; IocFeedError if invalid."""
    found, normal = normalise_value(kind, value)
    return IocHit(found, normal, _Collector(feed).feed, _cut(description), _cut(source))


def _domain(text: str) -> tuple[IocKind, str]:
    if len(text) <= MAX_HOST_LENGTH and _PLAIN_DOMAIN(text):
        return "domain", text
    try:
        host = normalise_host(text[2:] if text.startswith("*.") else text, leading_dot=True)
    except CategoryListError as exc:
        raise _Refused(f"not a domain name: {exc}") from None
    if ":" in host or host.replace(".", "").isdigit():
        return "ip", host
    if "." not in host:
        raise _Refused("a top-level domain alone would match every site under it")
    return "domain", host


def _network(text: str, version: int) -> str:
    if "%" in text:
        raise _Refused("not an IP address or network: an IPv6 zone names an interface of this machine")
    try:
        network = ip_network(text, strict=True)
    except ValueError as exc:
        raise _Refused(f"not an IP address or network: {exc}") from None
    if version and network.version != version:
        raise _Refused(f"not an IPv{version} address or network")
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


# -- CSV -------------------------------------------------------------------------------------------

def parse_csv(data: str | bytes, feed: str) -> ParsedFeed:
    """A CSV feed (see the module docstring); IocFeedError when it is not text or has no header
    naming a kind and a value column."""
    collector = _Collector(feed)
    if not isinstance(data, (str, bytes)):
        raise IocFeedError(f"{feed}: expected text or bytes, not {type(data).__name__}")
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    columns: dict[str, int] | None = None
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"line {number}"
        row = _csv_row(line)
        if columns is None:
            if isinstance(row, str):
                raise IocFeedError(f"{feed}: {where}: the header is not valid CSV ({row})")
            columns = _header(row, feed, where)
            continue
        if isinstance(row, str):
            collector.refuse(where, row)
            continue
        cells = {role: row[i].strip() if i < len(row) else None for role, i in columns.items()}
        kind, value = cells["kind"], cells["value"]
        if kind is None or value is None:
            collector.refuse(where, f"{len(row)} columns, the header has more")
            continue
        if not kind:
            collector.refuse(where, f"no kind for {value[:80]!r}")
            continue
        known = _KINDS.get(kind) or _KINDS.get(re.sub(r"[\s_]+", "-", kind.lower()))
        if known is None:
            collector.skipped[SKIP_KIND] += 1
            continue
        try:
            collector.add(known[0], value, known[1], cells.get("description") or "",
                          cells.get("source") or "")
        except _Refused as exc:
            collector.refuse(where, f"{kind} {value[:80]!r}: {exc}")
        except _Unsupported as exc:
            collector.skipped[exc.reason] += 1
    if columns is None:
        raise IocFeedError(f"{feed}: no header row (e.g. `type,value`)")
    return collector.result()


def _csv_row(line: str) -> list[str] | str:
    """The cells of one line, or what is wrong with it."""
    if len(line) > MAX_LINE_CHARS:
        return f"longer than {MAX_LINE_CHARS} characters"
    if "\x00" in line or not line.isascii() and _SURROGATE(line):
        return "not UTF-8 text"
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as exc:
        return f"not valid CSV ({exc})"


def _header(row: list[str], feed: str, where: str) -> dict[str, int]:
    names = [re.sub(r"[\s_-]+", "", name.lower()) for name in row]
    columns: dict[str, int] = {}
    for role, aliases in _COLUMNS.items():
        found = next((names.index(a) for a in aliases if a in names), None)
        if found is not None:
            columns[role] = found
    for role in ("kind", "value"):
        if role not in columns:
            raise IocFeedError(f"{feed}: {where}: the header {','.join(row)[:120]!r} names no "
                               f"{role} column (one of {', '.join(_COLUMNS[role])})")
    return columns


# -- STIX 2.1 --------------------------------------------------------------------------------------

def parse_stix(data: str | bytes, feed: str, *, now: float) -> ParsedFeed:
    """A STIX 2.1 bundle (see `swg/stix.py`); `now` in seconds since the epoch decides
    `valid_until`. IocFeedError when it is not JSON or not a bundle."""
    collector = _Collector(feed)
    try:
        objects = bundle_indicators(data, now=now)
    except StixError as exc:
        raise IocFeedError(f"{feed}: {exc}") from None
    for obj in objects:
        if isinstance(obj, StixSkipped):
            collector.skipped[obj.reason] += 1
        elif isinstance(obj, StixBad):
            collector.refuse(obj.where, obj.problem)
        else:
            collector.skipped.update(obj.skipped)
            problems = [problem for comparison in obj.comparisons
                        for problem in _stix_comparison(comparison, obj, collector)]
            if problems:
                more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
                collector.refuse(obj.where, "; ".join(problems[:3]) + more)
    return collector.result()


def _stix_comparison(comparison: Comparison, obj: StixIndicator, collector: _Collector) -> list[str]:
    """Loads the comparison's values; gives what was wrong with them."""
    try:
        kind, version = _stix_kind(comparison)
    except _Unsupported as exc:
        collector.skipped[exc.reason] += 1
        return []
    problems = []
    for value in comparison.values:
        try:
            if value is None:
                raise _Refused("the value must be a quoted string")
            collector.add(kind, value, version, obj.description, obj.source)
        except _Refused as exc:
            shown = "" if value is None else f" {value[:80]!r}"
            problems.append(f"{comparison.object_type}:{comparison.path}{shown}: {exc}")
        except _Unsupported as exc:
            collector.skipped[exc.reason] += 1
    return problems


def _stix_kind(comparison: Comparison) -> tuple[str, int]:
    spec = _STIX_OBJECTS.get(comparison.object_type)
    if spec is None:
        raise _Unsupported(SKIP_OBJECT)
    if spec[0] != "sha256":
        if comparison.path != "value":
            raise _Unsupported(SKIP_PROPERTY)
        return spec
    head, _, algorithm = comparison.path.partition(".")
    if head != "hashes" or not algorithm:
        raise _Unsupported(SKIP_PROPERTY)
    if algorithm.upper().replace("-", "").replace("_", "") != "SHA256":
        raise _Unsupported(SKIP_HASH)
    return spec


# -- the index -------------------------------------------------------------------------------------

_Hits = tuple[IocHit, ...]


@dataclass(frozen=True, slots=True, eq=False)
class IocIndex:
    """Every feed's indicators, built once by `IocIndex.build` or `merge`; a reload builds a new
    one and swaps the reference. A match gives the hits of the most specific listed value (the
    longest domain suffix, network prefix or URL path), one per feed that lists it, in feed
    order; () when nothing matches or the input cannot be read."""

    feeds: tuple[str, ...]
    size: int
    _domains: Mapping[str, _Hits]
    _networks: Mapping[int, tuple[tuple[int, Mapping[int, _Hits]], ...]]   # version → longest first
    _urls: Mapping[str, _Hits]
    _url_prefixes: Mapping[str, _Hits]
    _sha256: Mapping[str, _Hits]

    @classmethod
    def build(cls, indicators: Iterable[IocHit]) -> IocIndex:
        """From indicators as the parsers and `indicator` give them (values normalised)."""
        tables: dict[str, dict[str, list[IocHit]]] = {k: {} for k in ("domain", "url", "prefix", "sha256")}
        networks: dict[int, dict[int, dict[int, list[IocHit]]]] = {4: {}, 6: {}}
        feeds: dict[str, None] = {}
        seen: set[tuple[str, str, str]] = set()
        for hit in indicators:
            if (hit.kind, hit.value, hit.feed) in seen:
                continue
            seen.add((hit.kind, hit.value, hit.feed))
            feeds[hit.feed] = None
            if hit.kind == "ip":
                net = ip_network(hit.value)
                bits = net.max_prefixlen - net.prefixlen
                by_length = networks[net.version].setdefault(net.prefixlen, {})
                by_length.setdefault(int(net.network_address) >> bits, []).append(hit)
                continue
            table = "prefix" if hit.kind == "url" and hit.value.endswith("/") and "?" not in hit.value \
                else hit.kind
            tables[table].setdefault(hit.value, []).append(hit)
        frozen = {name: {key: tuple(hits) for key, hits in table.items()} for name, table in tables.items()}
        nets = {version: tuple((length, {key: tuple(h) for key, h in by_key.items()})
                               for length, by_key in sorted(by_length.items(), reverse=True))
                for version, by_length in networks.items()}
        return cls(tuple(feeds), len(seen), frozen["domain"], nets, frozen["url"], frozen["prefix"],
                   frozen["sha256"])

    @classmethod
    def merge(cls, feeds: Iterable[ParsedFeed]) -> IocIndex:
        """The prefecture's feed and the municipality's own (...) in one index; each hit keeps its feed."""
        return cls.build(hit for parsed in feeds for hit in parsed.indicators)

    def match_host(self, host: str) -> _Hits:
        """Domain IOCs covering `host` (a name, or an IP literal: then `match_address`)."""
        if not (host.isascii() and host.islower() and host[-1:] not in ".]" and ":" not in host):
            try:
                host = normalise_host(host)
            except CategoryListError:
                return ()
        if not host or ":" in host or host[-1] in "0123456789":
            try:
                return self.match_address(ip_address(host))
            except ValueError:
                pass
        get, key = self._domains.get, host
        while True:
            hits = get(key)
            if hits:
                return hits
            dot = key.find(".")
            if dot < 0:
                return ()
            key = key[dot + 1:]

    def match_address(self, address: str | IPv4Address | IPv6Address) -> _Hits:
        """Address IOCs covering `address`: the longest listed prefix."""
        if isinstance(address, str):
            try:
                address = ip_address(address.strip("[]"))
            except ValueError:
                return ()
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        value, max_length = int(address), address.max_prefixlen
        for length, by_key in self._networks[address.version]:
            hits = by_key.get(value >> (max_length - length))
            if hits:
                return hits
        return ()

    def match_url(self, url: str) -> _Hits:
        """URL IOCs matching `url`: exactly, else the longest path prefix ending in `/`."""
        try:
            normal = canonical_url(url)
        except UrlError:
            return ()
        hits = self._urls.get(normal)
        if hits:
            return hits
        origin_end = normal.index("/", normal.index("://") + 3)
        end = normal.find("?")
        slash = normal.rfind("/", origin_end, len(normal) if end < 0 else end)
        while slash >= origin_end:
            hits = self._url_prefixes.get(normal[:slash + 1])
            if hits:
                return hits
            slash = normal.rfind("/", origin_end, slash)
        return ()

    def match_sha256(self, digest: str) -> _Hits:
        return self._sha256.get(digest.strip().lower(), ())

    def sha256_entries(self) -> tuple[tuple[str, IocHit], ...]:
        """Every file-hash indicator (digest, its first hit): for the content scanner's table."""
        return tuple((digest, hits[0]) for digest, hits in self._sha256.items() if hits)


EMPTY_INDEX = IocIndex.build(())
