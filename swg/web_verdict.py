"""The gateway's verdict on a destination before any content: IOCs, the tenant's own allow and
block lists, and URL categories. Pure: the lists in force come in as a `WebLists` snapshot.

Order, where the issue left it open:
1. an IOC hit (host, resolved address, URL) blocks, whatever the tenant's allow list says: an
   allow list is for sites the categories got wrong, not for known-bad infrastructure;
2. the tenant's block list, then its allow list (which skips the category blocks);
3. a category in `block_categories` (by default malware and phishing) blocks;
4. otherwise the first category goes to the access policy as the request's URL category, where
   rules can match it (`when: categories: [...]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from swg.ioc import IocHit, IocIndex
from swg.signatures import BuiltinSignatures, Signature
from swg.urlcategories import EMPTY_INDEX, NO_TENANT_LISTS, CategoryIndex, TenantLists, classify
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason

DEFAULT_BLOCK_CATEGORIES = frozenset({"malware", "phishing"})
EMPTY_IOCS = IocIndex.build(())


@dataclass(frozen=True)
class WebLists:
    """The lists in force; a reload builds a new snapshot and swaps one reference."""
    categories: CategoryIndex = EMPTY_INDEX
    iocs: Mapping[str, IocIndex] = field(default_factory=lambda: MappingProxyType({}))  # by tenant
    custom: Mapping[str, TenantLists] = field(default_factory=lambda: MappingProxyType({}))
    block_categories: frozenset[str] = DEFAULT_BLOCK_CATEGORIES
    version: str = "empty"


@dataclass(frozen=True)
class WebVerdict:
    decision: Decision | None            # None: nothing here refuses it
    categories: tuple[str, ...] = ()
    ioc: str | None = None               # "feed: value" of the hit
    custom: str | None = None            # "allow: pattern" / "block: pattern"

    @property
    def url_category(self) -> str | None:
        return self.categories[0] if self.categories else None

    def audit_extra(self) -> dict[str, str]:
        extra = {}
        if self.categories:
            extra["categories"] = ",".join(self.categories)
        if self.ioc:
            extra["ioc"] = self.ioc
        if self.custom:
            extra["custom_list"] = self.custom
        return extra


def file_signatures(lists: WebLists, tenant: str, builtin: BuiltinSignatures) -> BuiltinSignatures:
    """The built-in signatures plus the tenant's SHA-256 IOCs, named `IOC <feed>: <description>`."""
    iocs = lists.iocs.get(tenant)
    if iocs is None:
        return builtin
    extra = []
    for digest, hit in iocs.sha256_entries():
        name = f"IOC {hit.feed}" + (f": {hit.description}" if hit.description else "")
        extra.append(Signature(" ".join(name.split())[:100] or "IOC", digest))
    return BuiltinSignatures.of((*builtin.by_sha256.values(), *extra)) if extra else builtin


def _ioc(hits: tuple[IocHit, ...]) -> str | None:
    if not hits:
        return None
    hit = hits[0]
    return f"{hit.feed}: {hit.kind} {hit.value}" + (f" ({hit.description})" if hit.description else "")


def judge(lists: WebLists, tenant: str, host: str, *, address: str | IPv4Address | IPv6Address | None = None,
          url: str | None = None, path: str = "/") -> WebVerdict:
    iocs = lists.iocs.get(tenant, EMPTY_IOCS)
    hit = _ioc(iocs.match_host(host))
    if hit is None and address is not None:
        hit = _ioc(iocs.match_address(address))
    if hit is None and url is not None:
        hit = _ioc(iocs.match_url(url))
    found = classify(lists.categories, lists.custom.get(tenant, NO_TENANT_LISTS), host, path)
    custom = f"{found.custom}: {found.custom_pattern}" if found.custom else None
    if hit is not None:
        return WebVerdict(deny(Reason.IOC_MATCH, detail=hit), found.categories, hit, custom)
    if found.custom == "block":
        return WebVerdict(deny(Reason.URL_CATEGORY_BLOCKED, detail=f"the municipality's block list "
                                                                  f"({found.custom_pattern})"),
                          found.categories, None, custom)
    if found.custom == "allow":
        return WebVerdict(None, found.categories, None, custom)
    blocked = [c for c in found.categories if c in lists.block_categories]
    if blocked:
        return WebVerdict(deny(Reason.URL_CATEGORY_BLOCKED, detail=f"category {blocked[0]}"),
                          found.categories, None, None)
    return WebVerdict(None, found.categories, None, None)
