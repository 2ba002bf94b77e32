"""Split DNS: which names the agent's DNS stub answers itself, as one frozen value.

The broker sends this value to the agent; the agent's stub (`agent/dns.py`, `agent/runtime/
dns_stub.py`) applies it to every query. This module owns the value, its JSON form and its
validation (`parse_split_dns`); it must not parse DNS packets, resolve names or do any I/O.

Semantics of a query for name N, type T:

- N is a record's name: the stub answers from this config, authoritatively. A → the record's
  IPv4 addresses, AAAA → its IPv6 addresses (NOERROR with no answer when the record has none of
  that family), any other type → NOERROR with no answers (NODATA).
- N lies inside one of the private `zones` but has no record: NXDOMAIN, authoritative. Such a
  name is never sent to the public resolver, so internal names do not leak to it. (The stub
  answers NODATA rather than NXDOMAIN for a zone apex and for a name that only has records
  below it, because an NXDOMAIN there would deny the names below too: RFC 8020.)
- Every other name is forwarded unchanged to the system resolver.

Names are ASCII (an internationalised name is written in its `xn--` form), compared without
regard to case, and stored lower-cased without the trailing dot. Each record must lie inside a
zone: the config describes private names only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address
from typing import Any

from ztcore.errors import ConfigError

MAX_TTL_SECONDS = 86400
DEFAULT_TTL_SECONDS = 60
MAX_NAME_LENGTH = 253   # RFC 1035 §2.3.4: 255 octets on the wire, 253 characters in text
MAX_LABEL_LENGTH = 63
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_TOP_KEYS = ("zones", "records", "ttl_seconds")
_RECORD_KEYS = ("name", "addresses")


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SplitDnsConfig:
    zones: tuple[str, ...] = ()
    records: tuple[DnsRecord, ...] = ()
    ttl_seconds: int = DEFAULT_TTL_SECONDS

    def to_json_dict(self) -> dict[str, Any]:
        return {"zones": list(self.zones),
                "records": [{"name": r.name, "addresses": list(r.addresses)} for r in self.records],
                "ttl_seconds": self.ttl_seconds}


def in_zone(name: str, zone: str) -> bool:
    """Whether normalised `name` is `zone` or lies below it (label-wise, not string-wise)."""
    return name == zone or name.endswith("." + zone)


def normalise_name(value: object, path: str) -> str:
    """A DNS name lower-cased, without its trailing dot; ConfigError naming `path` if invalid."""
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a DNS name, got {value!r}")
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ConfigError(f"{path}: expected a DNS name, got {value!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"{path}: name is {len(name)} characters long (at most {MAX_NAME_LENGTH})")
    for label in name.split("."):
        if not 1 <= len(label) <= MAX_LABEL_LENGTH:
            raise ConfigError(f"{path}: {value!r} has a label of {len(label)} characters "
                              f"(1-{MAX_LABEL_LENGTH})")
        bad = next((c for c in label if c not in _LABEL_CHARS), None)
        if bad is not None:
            raise ConfigError(f"{path}: {value!r} contains {bad!r} (letters, digits and '-' only)")
    return name


def parse_split_dns(raw: object, where: str = "dns") -> SplitDnsConfig:
    """Validate a JSON value from outside into a SplitDnsConfig, or raise ConfigError.

    The error message starts with the path of the bad field (`dns.records[2].addresses[0]: ...`).
    """
    top = _mapping(raw, where, _TOP_KEYS)
    zones = _zones(top.get("zones", []), f"{where}.zones")
    records = _records(top.get("records", []), f"{where}.records", zones)
    ttl = top.get("ttl_seconds", DEFAULT_TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL_SECONDS:
        raise ConfigError(f"{where}.ttl_seconds: expected an integer 0-{MAX_TTL_SECONDS}, got {ttl!r}")
    return SplitDnsConfig(zones=zones, records=records, ttl_seconds=ttl)


def _mapping(raw: object, path: str, keys: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {key!r} is not a string")
        if key not in keys:
            raise ConfigError(f"{path}.{key}: unknown key (expected {', '.join(keys)})")
    return raw


def _sequence(raw: object, path: str) -> list[object] | tuple[object, ...]:
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{path}: expected a list, got {type(raw).__name__}")
    return raw


def _zones(raw: object, path: str) -> tuple[str, ...]:
    zones: list[str] = []
    for i, item in enumerate(_sequence(raw, path)):
        zone = normalise_name(item, f"{path}[{i}]")
        if zone in zones:
            raise ConfigError(f"{path}[{i}]: duplicate zone {zone!r} (also {path}[{zones.index(zone)}])")
        zones.append(zone)
    return tuple(zones)


def _records(raw: object, path: str, zones: tuple[str, ...]) -> tuple[DnsRecord, ...]:
    records: list[DnsRecord] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(_sequence(raw, path)):
        here = f"{path}[{i}]"
        fields = _mapping(item, here, _RECORD_KEYS)
        for key in _RECORD_KEYS:
            if key not in fields:
                raise ConfigError(f"{here}.{key}: missing")
        name = normalise_name(fields["name"], f"{here}.name")
        if not any(in_zone(name, zone) for zone in zones):
            raise ConfigError(f"{here}.name: {name!r} is not inside any zone "
                              f"({', '.join(zones) or 'no zones configured'}); "
                              "split DNS holds private names only")
        if name in seen:
            raise ConfigError(f"{here}.name: duplicate record {name!r} (also {path}[{seen[name]}])")
        seen[name] = i
        records.append(DnsRecord(name=name, addresses=_addresses(fields["addresses"],
                                                                 f"{here}.addresses")))
    return tuple(records)


def _addresses(raw: object, path: str) -> tuple[str, ...]:
    items = _sequence(raw, path)
    if not items:
        raise ConfigError(f"{path}: expected at least one address")
    addresses: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigError(f"{path}[{i}]: not an IP address: {item!r}")
        try:
            address = ip_address(item)
        except ValueError:
            raise ConfigError(f"{path}[{i}]: not an IP address: {item!r}") from None
        if isinstance(address, IPv6Address) and address.scope_id is not None:
            raise ConfigError(f"{path}[{i}]: a DNS record cannot carry a scope id: {item!r}")
        text = str(address)
        if text in addresses:
            raise ConfigError(f"{path}[{i}]: duplicate address {text!r}")
        addresses.append(text)
    return tuple(addresses)
