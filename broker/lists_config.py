"""`[lists]` in sekimori.toml: the URL category lists the broker loads (a squidGuard/UT1 tree
and one-host-per-line lists, which the admin provides: the product ships none) and the
categories blocked before the access policy. Pure; a bad field raises ConfigError with its path.

```toml
[lists]
categories_dir = "/srv/ut1/blacklists"        # squidGuard/UT1 tree ("" : none)
categories = ["malware", "phishing", "gambling"]   # only these of the tree (default: all)
host_lists = { phishing = "/srv/lists/phishing-domains.txt" }
block_categories = ["malware", "phishing"]    # the default
```
IOC feeds and a tenant's own allow/block lists live in the data directory (`lists/ioc/<tenant>/`,
`lists/custom/<tenant>.json`), written by `sekimori ioc import` and `sekimori lists allow|block`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ztcore.errors import ConfigError

CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
DEFAULT_BLOCK = ("malware", "phishing")


@dataclass(frozen=True, slots=True)
class ListsConfig:
    categories_dir: str = ""
    categories: tuple[str, ...] | None = None
    host_lists: tuple[tuple[str, str], ...] = ()
    block_categories: tuple[str, ...] = DEFAULT_BLOCK


def _names(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of category names, got {value!r}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not CATEGORY.match(name):
            raise ConfigError(f"{where}[{i}]: {name!r} is not a category name")
    return tuple(value)


def parse_lists(table: Mapping[str, Any]) -> ListsConfig:
    unknown = set(table) - {"categories_dir", "categories", "host_lists", "block_categories"}
    if unknown:
        raise ConfigError(f"lists.{sorted(unknown)[0]}: unknown key")
    directory = table.get("categories_dir", "")
    if not isinstance(directory, str):
        raise ConfigError(f"lists.categories_dir: expected a directory path, got {directory!r}")
    subset = _names(table["categories"], "lists.categories") if "categories" in table else None
    host_lists = table.get("host_lists", {})
    if not isinstance(host_lists, Mapping):
        raise ConfigError(f"lists.host_lists: expected a table of category = path, got {host_lists!r}")
    for name, path in host_lists.items():
        if not CATEGORY.match(str(name)):
            raise ConfigError(f"lists.host_lists.{name}: not a category name")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"lists.host_lists.{name}: expected a file path, got {path!r}")
    block = (_names(table["block_categories"], "lists.block_categories")
             if "block_categories" in table else DEFAULT_BLOCK)
    return ListsConfig(directory, subset, tuple(sorted(host_lists.items())), block)
