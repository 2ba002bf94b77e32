"""Importing Microsoft's endpoint data into the store: validate, compare with the version in
force, record it with its diff. A document that fails validation changes nothing (the previous
version stays in force) and the error names the bad field. Shared by `sekimori m365` and the
admin API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from broker.m365 import EndpointData, EndpointDiff, diff_endpoint_data, parse_endpoint_data
from broker.runtime.routing_store import M365VersionRecord
from broker.runtime.store import Store


@dataclass(frozen=True, slots=True)
class ImportResult:
    record: M365VersionRecord | None     # None: the same data was already in force
    data: EndpointData
    diff: EndpointDiff | None            # None: the first import
    previous: M365VersionRecord | None


def import_endpoint_data(store: Store, raw: bytes, *, instance: str, version: str | None,
                         source: str, actor: str, now: float) -> ImportResult:
    """Raises EndpointDataError (bad document) or StoreError; nothing is stored then."""
    data = parse_endpoint_data(raw)
    found = store.m365_data(None, instance)
    previous, diff = None, None
    if found is not None:
        previous = found[0]
        diff = diff_versions(parse_endpoint_data(found[1].encode("utf-8")), data)
        if previous.sha256 == data.sha256:
            return ImportResult(None, data, diff, previous)
    record_id = store.add_m365_version(
        instance=instance, version=version or f"sha256:{data.sha256[:12]}", sha256=data.sha256,
        data=raw.decode("utf-8"), source=source, actor=actor, now=now,
        diff=None if diff is None else json.dumps(diff.to_json_dict(), ensure_ascii=False))
    record = next(r for r in store.m365_versions(instance) if r.id == record_id)
    return ImportResult(record, data, diff, previous)


def diff_versions(old: EndpointData, new: EndpointData) -> EndpointDiff:
    """A copy fetched without IPv6 (NoIPv6=true) would show every IPv6 network as removed."""
    return diff_endpoint_data(old, new, ignore_ipv6=not (old.ipv6_count and new.ipv6_count))


def stored_data(store: Store, record_id: int | None, instance: str) -> tuple[M365VersionRecord,
                                                                            EndpointData] | None:
    found = store.m365_data(record_id, instance)
    if found is None:
        return None
    return found[0], parse_endpoint_data(found[1].encode("utf-8"))
