"""Microsoft 365 endpoint data: parsing it, its version reply, and what changed between versions.

Owns the format of Microsoft's "Office 365 IP Address and URL web service" (the JSON array of
endpoint sets served at `/endpoints/<instance>` and the `{"instance", "latest"}` reply of
`/version/<instance>`) and the difference between two downloads of it. Every field is checked
when the data is loaded, so a bad download fails with the path of the bad field
(`[12].ips[3]: not an IP network: '1.2.3'`) and the data in force stays in force.

Pure: bytes in, frozen values out. It must not fetch anything (broker/runtime/m365_fetch.py
does) nor decide what bypasses the gateway: breakout rules built from these sets live elsewhere.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from ztcore.breakout import format_ports
from ztcore.destinations import merge_ranges
from ztcore.errors import ZTError

MAX_ENDPOINT_BYTES: Final = 8 * 1024 * 1024
MAX_VERSION_BYTES: Final = 64 * 1024
CATEGORIES: Final = ("Optimize", "Allow", "Default")
# The store keeps one line of versions, whichever instance `[m365] instance` fetches from.
STORE_INSTANCE: Final = "Worldwide"
# Microsoft recommends sending Optimize and Allow traffic directly, past any proxy: these are the
# sets an admin must look at when they change.
DIRECT_CATEGORIES: Final = frozenset({"Optimize", "Allow"})
SERVICE_AREAS: Final = ("Exchange", "Skype", "SharePoint", "Common")
# A network or pattern broader than these would send a large part of the Internet around the
# gateway; Microsoft's broadest entries are /13 (IPv4) and /46 (IPv6).
MIN_IPV4_PREFIX: Final = 8
MIN_IPV6_PREFIX: Final = 16
MAX_HOST_LENGTH: Final = 253
MAX_LABEL_LENGTH: Final = 63
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.*")
_NETWORK_SYNTAX: Final = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?")
_PORT_ITEM: Final = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_VERSION: Final = re.compile(r"[0-9]{10}")
_MAX_SET_ID: Final = 2**31 - 1

PortRanges = tuple[tuple[int, int], ...]


class EndpointDataError(ZTError):
    """Endpoint data or a version reply is malformed; the message starts with the bad field's path."""


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """One endpoint set. Ports are sorted, merged inclusive ranges; urls are lower case; ips are
    canonical network strings (`ipaddress.ip_network(..., strict=False)`)."""

    id: int
    service_area: str
    display_name: str
    urls: tuple[str, ...]
    ips: tuple[str, ...]
    tcp_ports: PortRanges
    udp_ports: PortRanges
    category: str
    required: bool
    express_route: bool
    notes: str

    def scalar_fields(self) -> dict[str, str | bool]:
        """The fields compared one to one between versions, under Microsoft's key names."""
        return {"serviceArea": self.service_area, "serviceAreaDisplayName": self.display_name,
                "category": self.category, "required": self.required,
                "expressRoute": self.express_route, "tcpPorts": format_ports(self.tcp_ports),
                "udpPorts": format_ports(self.udp_ports), "notes": self.notes}

    def to_json_dict(self) -> dict[str, Any]:
        """Microsoft's format (empty optional keys left out); `parse_endpoint_data` reads it back."""
        out: dict[str, Any] = {"id": self.id, "serviceArea": self.service_area,
                               "serviceAreaDisplayName": self.display_name}
        optional: dict[str, Any] = {"urls": list(self.urls), "ips": list(self.ips),
                                    "tcpPorts": format_ports(self.tcp_ports),
                                    "udpPorts": format_ports(self.udp_ports)}
        out.update((key, value) for key, value in optional.items() if value)
        out.update({"expressRoute": self.express_route, "category": self.category,
                    "required": self.required})
        if self.notes:
            out["notes"] = self.notes
        return out


@dataclass(frozen=True, slots=True)
class EndpointData:
    """A whole download, in the order Microsoft listed the sets; `sha256` is of the raw bytes."""

    sets: tuple[EndpointSet, ...]
    sha256: str

    def by_id(self, set_id: int) -> EndpointSet | None:
        return next((s for s in self.sets if s.id == set_id), None)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(s.id for s in self.sets)

    def category_counts(self) -> dict[str, int]:
        """Sets per category, every category present, in `CATEGORIES` order."""
        return {category: sum(s.category == category for s in self.sets) for category in CATEGORIES}

    @property
    def url_count(self) -> int:
        return sum(len(s.urls) for s in self.sets)

    @property
    def ip_count(self) -> int:
        return sum(len(s.ips) for s in self.sets)

    @property
    def ipv6_count(self) -> int:
        """IPv6 networks; 0 for data fetched with `NoIPv6=true`."""
        return sum(":" in ip for s in self.sets for ip in s.ips)


# ---- parsing --------------------------------------------------------------------------------

def _fail(path: str, problem: str) -> NoReturn:
    raise EndpointDataError(f"{path}: {problem}")


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for types, name in (((int, float), "a number"), (str, "a string"), (list, "an array"),
                        (dict, "an object")):
        if isinstance(value, types):
            return name
    return type(value).__name__


def _load_json(raw: bytes, max_bytes: int) -> Any:
    if not isinstance(raw, bytes | bytearray):
        _fail("$", f"expected bytes, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        _fail("$", f"{len(raw)} bytes is more than the limit of {max_bytes}")
    try:
        text = bytes(raw).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail("$", f"not UTF-8 (bad byte at offset {exc.start})")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        _fail("$", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except (ValueError, RecursionError) as exc:
        _fail("$", f"not valid JSON: {' '.join(str(exc).split())[:100] or type(exc).__name__}")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _text(item: dict[str, Any], key: str, path: str, *, choices: tuple[str, ...] = ()) -> str:
    """A string field; an absent or null optional one is ''. `choices` makes it required."""
    value = item.get(key)
    where = f"{path}.{key}"
    if choices:
        if key not in item:
            _fail(where, "required key is missing")
        if value not in choices:
            _fail(where, f"expected {', '.join(choices[:-1])} or {choices[-1]}, got {_show(value)}")
    if value is None:
        return ""
    if not isinstance(value, str):
        _fail(where, f"expected a string, got {_kind(value)}")
    _check_unicode(value, where)
    return value


def _check_unicode(value: str, path: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(path, "holds a lone surrogate (\\ud800-\\udfff), which is not text")


def _flag(item: dict[str, Any], key: str, path: str) -> bool:
    value = item.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        _fail(f"{path}.{key}", f"expected true or false, got {_kind(value)}")
    return value


def _strings(item: dict[str, Any], key: str, path: str) -> list[tuple[str, str]]:
    """(path, value) of each element of an optional array of strings."""
    value = item.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(f"{path}.{key}", f"expected an array of strings, got {_kind(value)}")
    out = []
    for index, element in enumerate(value):
        where = f"{path}.{key}[{index}]"
        if not isinstance(element, str):
            _fail(where, f"expected a string, got {_kind(element)}")
        out.append((where, element))
    return out


def _host_pattern(value: str, path: str) -> str:
    """Microsoft's host patterns: `*` stands for any run of characters inside a label
    (`*.contoso.com`, `*-files.sharepoint.com`, `autodiscover.*.onmicrosoft.com`)."""
    pattern = value.lower()
    if not pattern or len(pattern) > MAX_HOST_LENGTH or not set(pattern) <= _HOST_CHARS:
        _fail(path, f"not a host pattern (letters, digits, '-', '.' and '*' only, at most "
                    f"{MAX_HOST_LENGTH}): {_show(value)}")
    labels = pattern.split(".")
    if not all(labels):
        _fail(path, f"empty label (leading, trailing or double dot) in {_show(value)}")
    if any(len(label) > MAX_LABEL_LENGTH for label in labels):
        _fail(path, f"label longer than {MAX_LABEL_LENGTH} characters in {_show(value)}")
    if len(labels) < 2 or "*" in labels[-1] or "*" in labels[-2]:
        _fail(path, f"the last two labels must be a plain domain, got {_show(value)}")
    return pattern


def _network(value: str, path: str) -> str:
    try:
        if _NETWORK_SYNTAX.fullmatch(value) is None:  # refuses scope ids (`%eth0`) and spaces
            raise ValueError(value)
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        _fail(path, f"not an IP network: {_show(value)}")
    minimum = MIN_IPV4_PREFIX if network.version == 4 else MIN_IPV6_PREFIX
    if network.prefixlen < minimum:
        _fail(path, f"{network} is broader than /{minimum}")
    return str(network)


def _ports(item: dict[str, Any], key: str, path: str) -> PortRanges:
    """'80,443', '3478-3481,50000' or '143, 587' (Microsoft writes both); '' or absent: none."""
    value, where = item.get(key), f"{path}.{key}"
    if value is None:
        return ()
    if not isinstance(value, str):
        _fail(where, f"expected a port list like '80,443', got {_kind(value)}")
    if not value.strip(" \t"):
        return ()
    ranges = []
    for part in value.split(","):
        match = _PORT_ITEM.fullmatch(part.strip(" \t"))
        if match is None:
            _fail(where, f"expected a port list like '80,443' or '3478-3481', got {_show(value)}")
        low, high = int(match[1]), int(match[2] or match[1])
        if not (1 <= low <= 65535 and 1 <= high <= 65535):
            _fail(where, f"port outside 1..65535 in {_show(value)}")
        if low > high:
            _fail(where, f"range {low}-{high} runs backwards in {_show(value)}")
        ranges.append((low, high))
    return merge_ranges(ranges)


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _parse_set(item: object, path: str) -> EndpointSet:
    if not isinstance(item, dict):
        _fail(path, f"expected an endpoint set (an object), got {_kind(item)}")
    set_id = item.get("id")
    if "id" not in item:
        _fail(f"{path}.id", "required key is missing")
    if isinstance(set_id, bool) or not isinstance(set_id, int):
        _fail(f"{path}.id", f"expected a whole number, got {_kind(set_id)}")
    if not 1 <= set_id <= _MAX_SET_ID:
        _fail(f"{path}.id", f"expected 1..{_MAX_SET_ID}, got {_show(set_id)}")
    return EndpointSet(
        id=set_id,
        service_area=_text(item, "serviceArea", path, choices=SERVICE_AREAS),
        display_name=_text(item, "serviceAreaDisplayName", path),
        urls=_unique([_host_pattern(v, p) for p, v in _strings(item, "urls", path)]),
        ips=_unique([_network(v, p) for p, v in _strings(item, "ips", path)]),
        tcp_ports=_ports(item, "tcpPorts", path),
        udp_ports=_ports(item, "udpPorts", path),
        category=_text(item, "category", path, choices=CATEGORIES),
        required=_flag(item, "required", path),
        express_route=_flag(item, "expressRoute", path),
        notes=_text(item, "notes", path))


def parse_endpoint_data(raw: bytes, max_bytes: int = MAX_ENDPOINT_BYTES) -> EndpointData:
    """The checked endpoint data, or EndpointDataError naming the first bad field (never
    anything else). Unknown keys are ignored (Microsoft adds some); absent or null optional
    keys (`urls`, `ips`, `tcpPorts`, `udpPorts`, `notes`, ...) read as empty or false."""
    document = _load_json(raw, max_bytes)
    if not isinstance(document, list):
        _fail("$", f"expected a JSON array of endpoint sets, got {_kind(document)}")
    if not document:
        _fail("$", "the array holds no endpoint sets")
    sets: list[EndpointSet] = []
    seen: dict[int, int] = {}
    for index, item in enumerate(document):
        endpoint_set = _parse_set(item, f"[{index}]")
        if endpoint_set.id in seen:
            _fail(f"[{index}].id", f"duplicate id {endpoint_set.id} (also at [{seen[endpoint_set.id]}])")
        seen[endpoint_set.id] = index
        sets.append(endpoint_set)
    return EndpointData(sets=tuple(sets), sha256=hashlib.sha256(raw).hexdigest())


def parse_version_reply(raw: bytes, instance: str | None = None) -> str:
    """`latest` (yyyymmddnn) of `{"instance": "Worldwide", "latest": "2024041700"}`. With
    `instance`, a reply naming another instance is refused, and the array that `/version`
    without an instance returns is searched for it."""
    document = _load_json(raw, MAX_VERSION_BYTES)
    prefix = ""
    if isinstance(document, list):
        if instance is None:
            _fail("$", "the reply lists several instances; ask for one")
        index = next((i for i, entry in enumerate(document) if isinstance(entry, dict)
                      and str(entry.get("instance", "")).lower() == instance.lower()), None)
        if index is None:
            _fail("$", f"the reply has no entry for instance {instance!r}")
        document, prefix = document[index], f"[{index}]."
    if not isinstance(document, dict):
        _fail("$", f"expected an object like {{\"latest\": \"2024041700\"}}, got {_kind(document)}")
    named = document.get("instance")
    if instance is not None and named is not None and (
            not isinstance(named, str) or named.lower() != instance.lower()):
        _fail(f"{prefix}instance", f"expected {instance!r}, got {_show(named)}")
    latest = document.get("latest")
    if not isinstance(latest, str) or _VERSION.fullmatch(latest) is None:
        _fail(f"{prefix}latest", f"expected 10 digits (yyyymmddnn), got {_show(latest)}")
    return latest


# ---- differences between versions ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str  # Microsoft's key name: "category", "udpPorts", ... (ports in canonical form)
    old: str | bool
    new: str | bool


@dataclass(frozen=True, slots=True)
class SetChange:
    """A set present in both versions that differs; url and ip lists are sorted."""

    id: int
    old: EndpointSet
    new: EndpointSet
    urls_added: tuple[str, ...]
    urls_removed: tuple[str, ...]
    ips_added: tuple[str, ...]
    ips_removed: tuple[str, ...]
    fields: tuple[FieldChange, ...]

    @property
    def direct(self) -> bool:
        """Was or is this an Optimize or Allow set?"""
        return self.old.category in DIRECT_CATEGORIES or self.new.category in DIRECT_CATEGORIES

    def to_json_dict(self) -> dict[str, Any]:
        return {"id": self.id, "serviceArea": self.new.service_area, "category": self.new.category,
                "urlsAdded": list(self.urls_added), "urlsRemoved": list(self.urls_removed),
                "ipsAdded": list(self.ips_added), "ipsRemoved": list(self.ips_removed),
                "fields": [{"field": f.field, "old": f.old, "new": f.new} for f in self.fields]}


@dataclass(frozen=True, slots=True)
class EndpointDiff:
    """Sets added, removed and changed from one version to the next, each sorted by id."""

    added: tuple[EndpointSet, ...]
    removed: tuple[EndpointSet, ...]
    changed: tuple[SetChange, ...]
    ipv6_ignored: bool = False

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @property
    def direct_categories_changed(self) -> bool:
        """Did any Optimize or Allow set appear, go, or change (including into or out of
        those categories)?"""
        return (any(s.category in DIRECT_CATEGORIES for s in self.added + self.removed)
                or any(change.direct for change in self.changed))

    def to_json_dict(self) -> dict[str, Any]:
        """Stable (sorted, Microsoft key names) and JSON-serialisable, for the store and API."""
        return {"added": [s.to_json_dict() for s in self.added],
                "removed": [s.to_json_dict() for s in self.removed],
                "changed": [c.to_json_dict() for c in self.changed],
                "directCategoriesChanged": self.direct_categories_changed,
                "ipv6Ignored": self.ipv6_ignored}


def _compare(old: EndpointSet, new: EndpointSet, ignore_ipv6: bool) -> SetChange | None:
    def ips(s: EndpointSet) -> set[str]:
        return {ip for ip in s.ips if not (ignore_ipv6 and ":" in ip)}

    old_fields, new_fields = old.scalar_fields(), new.scalar_fields()
    change = SetChange(
        id=new.id, old=old, new=new,
        urls_added=tuple(sorted(set(new.urls) - set(old.urls))),
        urls_removed=tuple(sorted(set(old.urls) - set(new.urls))),
        ips_added=tuple(sorted(ips(new) - ips(old))), ips_removed=tuple(sorted(ips(old) - ips(new))),
        fields=tuple(FieldChange(key, old_fields[key], new_fields[key]) for key in old_fields
                     if old_fields[key] != new_fields[key]))
    differs = (change.urls_added or change.urls_removed or change.ips_added or change.ips_removed
               or change.fields)
    return change if differs else None


def diff_endpoint_data(old: EndpointData, new: EndpointData, *,
                       ignore_ipv6: bool = False) -> EndpointDiff:
    """What changed from `old` to `new`, matching sets by id. With `ignore_ipv6`, IPv6 networks
    of sets in both versions are not compared (for data fetched with `NoIPv6=true`)."""
    before = {s.id: s for s in old.sets}
    after = {s.id: s for s in new.sets}
    changes = (_compare(before[i], after[i], ignore_ipv6) for i in sorted(before.keys() & after))
    return EndpointDiff(added=tuple(after[i] for i in sorted(after.keys() - before)),
                        removed=tuple(before[i] for i in sorted(before.keys() - after)),
                        changed=tuple(c for c in changes if c is not None),
                        ipv6_ignored=ignore_ipv6)


def _listing(sign: str, items: tuple[str, ...], limit: int) -> list[str]:
    shown = [sign + item for item in items[:limit]]
    return shown + ([f"(+{len(items) - limit} more)"] if len(items) > limit else [])


def _value(field: str, value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not value:
        return "(none)"
    return _show(value, 50) if field in ("serviceAreaDisplayName", "notes") else value


def _set_line(sign: str, s: EndpointSet, limit: int) -> str:
    parts = [", ".join(_listing("", s.urls, limit))] if s.urls else []
    if s.ips:
        parts.append(f"{len(s.ips)} IP network{'s' if len(s.ips) != 1 else ''}")
    return f"{sign} set {s.id} {s.service_area} ({s.category}): {'; '.join(parts) or '(no urls or ips)'}"


def render_diff(diff: EndpointDiff, *, limit: int = 10) -> str:
    """A short text for admins: a summary line, then `+`, `-` and `~` lines, one per set;
    lists longer than `limit` are cut (the JSON form has everything)."""
    if diff.empty:
        return "no changes"
    summary = (f"{len(diff.added)} set(s) added, {len(diff.removed)} removed, "
               f"{len(diff.changed)} changed")
    if diff.direct_categories_changed:
        summary += "; Optimize/Allow sets changed"
    lines = [summary]
    lines += [_set_line("+", s, limit) for s in diff.added]
    lines += [_set_line("-", s, limit) for s in diff.removed]
    for change in diff.changed:
        parts = []
        if change.urls_added or change.urls_removed:
            parts.append(" ".join(["urls", *_listing("+", change.urls_added, limit),
                                   *_listing("-", change.urls_removed, limit)]))
        if change.ips_added or change.ips_removed:
            parts.append(" ".join(["ips", *_listing("+", change.ips_added, limit),
                                   *_listing("-", change.ips_removed, limit)]))
        parts += [f"{f.field} {_value(f.field, f.old)} → {_value(f.field, f.new)}"
                  for f in change.fields]
        lines.append(f"~ set {change.id} {change.new.service_area} ({change.new.category}): "
                     + "; ".join(parts))
    return "\n".join(lines)
