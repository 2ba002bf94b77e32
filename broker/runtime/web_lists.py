"""The lists in force for the gateway: URL categories (`[lists]`), IOC feeds and the tenants'
own allow/block lists (in the data directory), loaded into one `swg.web_verdict.WebLists`.

Layout under the data directory:
  lists/ioc/<tenant>/<feed>.csv | <feed>.json    IOC feeds (CSV or STIX 2.1); a prefecture's
                                                 feeds apply to all its municipalities
  lists/custom/<tenant>.json                     {"allow": [patterns], "block": [patterns]}

`reload_if_changed` rebuilds only when a file's size or time changed, and builds the complete
new snapshot before swapping it in: a bad file leaves the lists in force as they were and the
problem is logged and returned. Category lists, the heavy part, are rebuilt only when they changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from broker.config import BrokerConfig
from broker.devices import Tenant
from swg.ioc import IocFeedError, IocIndex, ParsedFeed, parse_csv, parse_stix
from swg.runtime.category_import import ListSource, import_lists, squidguard_sources
from swg.urlcategories import EMPTY_INDEX, CategoryIndex, CategoryListError, TenantLists
from swg.web_verdict import WebLists
from ztcore.errors import ZTError

log = logging.getLogger("sekimori.lists")
FEED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_FEED_BYTES = 64 * 1024 * 1024


def ioc_dir(config: BrokerConfig, tenant: str) -> Path:
    return config.data_dir / "lists" / "ioc" / tenant


def custom_path(config: BrokerConfig, tenant: str) -> Path:
    return config.data_dir / "lists" / "custom" / f"{tenant}.json"


def parse_feed_file(path: Path, now: float) -> ParsedFeed:
    """One feed file by its suffix; IocFeedError names the file."""
    try:
        if path.stat().st_size > MAX_FEED_BYTES:
            raise IocFeedError(f"{path}: larger than {MAX_FEED_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise IocFeedError(f"{path}: {exc.strerror or exc}") from None
    feed = path.stem
    if path.suffix.lower() == ".json":
        return parse_stix(data, feed, now=now)
    return parse_csv(data, feed)


def load_custom(path: Path) -> TenantLists:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CategoryListError(f"{path}: {exc}") from None
    if not isinstance(raw, dict) or set(raw) - {"allow", "block"}:
        raise CategoryListError(f"{path}: expected {{\"allow\": [...], \"block\": [...]}}")
    return TenantLists(tuple(raw.get("allow", ())), tuple(raw.get("block", ())))


def save_custom(path: Path, lists: TenantLists) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".new")
    tmp.write_text(json.dumps({"allow": list(lists.allow), "block": list(lists.block)}, ensure_ascii=False,
                              indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _signature(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class WebListsService:
    config: BrokerConfig
    tenants: Callable[[], list[Tenant]]
    clock: Callable[[], float] = time.time
    # (tenant, host, expires_at) of approved unblock requests: allowed past category blocks
    unblocks: Callable[[float], list[tuple[str, str, float]]] | None = None
    current: WebLists = field(default_factory=WebLists)
    problems: list[str] = field(default_factory=list)
    _categories: tuple[str, CategoryIndex] = ("", EMPTY_INDEX)
    _signature: str = ""

    def _category_sources(self) -> list[ListSource]:
        cfg = self.config.lists
        sources = squidguard_sources(Path(cfg.categories_dir), cfg.categories) if cfg.categories_dir else []
        sources += [ListSource(name, Path(path), "hosts") for name, path in cfg.host_lists]
        return sources

    def _files(self, tenants: list[Tenant]) -> tuple[list[Path], list[Path]]:
        category_files: list[Path] = []
        for source in self._category_sources():
            if source.path.is_dir():
                category_files += [p for p in source.path.iterdir() if p.is_file()]
            else:
                category_files.append(source.path)
        own: list[Path] = []
        for tenant in tenants:
            folder = ioc_dir(self.config, tenant.id)
            if folder.is_dir():
                own += [p for p in folder.iterdir() if p.suffix.lower() in (".csv", ".json")]
            custom = custom_path(self.config, tenant.id)
            if custom.exists():
                own.append(custom)
        return category_files, own

    def reload_if_changed(self) -> bool:
        """Rebuild when anything changed; True when a new snapshot is in force."""
        try:
            tenants = self.tenants()
            category_files, own = self._files(tenants)
            approved = sorted(self.unblocks(self.clock())) if self.unblocks is not None else []
            signature = _signature(category_files + own) + ",".join(
                f"{t.id}>{t.parent or ''}" for t in tenants) + repr(approved)
            if signature == self._signature:
                return False
            categories = self._load_categories(_signature(category_files))
            self.current = self._build(tenants, categories, signature[:16], approved)
            self._signature = signature
            self.problems = []
            return True
        except (ZTError, OSError) as exc:
            problem = f"lists not reloaded, the previous ones stay in force: {exc}"
            if problem not in self.problems:
                log.error("%s", problem)
                self.problems = [problem]
            return False

    def _load_categories(self, signature: str) -> CategoryIndex:
        if self._categories[0] == signature:
            return self._categories[1]
        sources = self._category_sources()
        if not sources:
            index = EMPTY_INDEX
        else:
            index, report = import_lists(sources)
            log.info("URL categories loaded: %d entries in %d categories (%.1f s)", report.entries,
                     len(report.categories), report.seconds)
        self._categories = (signature, index)
        return index

    def _build(self, tenants: list[Tenant], categories: CategoryIndex, version: str,
               approved: list[tuple[str, str, float]]) -> WebLists:
        now = self.clock()
        feeds: dict[str, list[ParsedFeed]] = {}
        custom: dict[str, TenantLists] = {}
        for tenant in tenants:
            folder = ioc_dir(self.config, tenant.id)
            if folder.is_dir():
                feeds[tenant.id] = [parse_feed_file(p, now) for p in sorted(folder.iterdir())
                                    if p.suffix.lower() in (".csv", ".json")]
            path = custom_path(self.config, tenant.id)
            if path.exists():
                custom[tenant.id] = load_custom(path)
        for tenant_id, host, _ in approved:
            current = custom.get(tenant_id, TenantLists())
            if host not in current.allow:
                custom[tenant_id] = TenantLists((*current.allow, host), current.block)
        parents = {t.id: t.parent for t in tenants}
        iocs = {}
        for tenant in tenants:
            mine = feeds.get(tenant.id, []) + (feeds.get(parents[tenant.id] or "", []))
            if mine:
                iocs[tenant.id] = IocIndex.merge(mine)
        return WebLists(categories, MappingProxyType(iocs), MappingProxyType(custom),
                        frozenset(self.config.lists.block_categories), version)
