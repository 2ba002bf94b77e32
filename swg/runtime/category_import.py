"""Importing URL category lists from disk into a `CategoryIndex` (the shell around
swg/urlcategories.py).

Owns the file side: finding a squidGuard/UT1 tree's categories (`<category>/domains`, `urls`,
`expressions`), reading each file with a size cap, handing the bytes to the pure parsers, timing
each category, showing a rich progress bar when given a console, and swapping the index in force
(`CategoryIndexSlot`): a reload builds a complete new index first, so a failed import leaves the
old one in force. OS errors become CategoryListError naming the file.

It must not parse or match anything itself, and never ships a list: the admin gives the path
(UT1 is CC BY-SA, so lists stay outside the product).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from swg.urlcategories import (
    EMPTY_INDEX,
    MAX_REASONS,
    CategoryIndex,
    CategoryList,
    CategoryListError,
    ParseReport,
    parse_expressions,
    parse_host_list,
    parse_squidguard_domains,
    parse_squidguard_urls,
)

if TYPE_CHECKING:
    from rich.console import Console

MAX_LIST_BYTES = 256 * 1024 * 1024   # room for UT1's largest list (adult, ~4.6 M names)
SQUIDGUARD_FILES = ("domains", "urls", "expressions")

_Advance = Callable[[Path, int], None]


@dataclass(frozen=True, slots=True)
class ListSource:
    """One category's source: a squidGuard category directory or a host list file. Several
    sources may feed one category (UT1's phishing and a Block List Project phishing list)."""

    category: str
    path: Path
    kind: Literal["squidguard", "hosts"]


@dataclass(frozen=True, slots=True)
class CategoryImport:
    """What one category's import made: accepted entries, skipped lines, the first reasons
    (prefixed with their file) and the seconds spent reading and parsing."""

    category: str
    entries: int
    skipped: int
    duplicates: int
    reasons: tuple[str, ...]
    seconds: float
    files: tuple[ParseReport, ...]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """A whole import: per category, then the time to build the index and in all."""

    categories: tuple[CategoryImport, ...]
    build_seconds: float       # compiling the index, after parsing
    seconds: float             # everything: reading, parsing, building
    keys: int                  # names in the index: the listed ones and the ancestors walked

    @property
    def entries(self) -> int:
        return sum(c.entries for c in self.categories)

    @property
    def skipped(self) -> int:
        return sum(c.skipped for c in self.categories)

    def category(self, name: str) -> CategoryImport:
        for item in self.categories:
            if item.category == name:
                return item
        raise KeyError(name)


def squidguard_sources(root: Path, categories: Iterable[str] | None = None) -> list[ListSource]:
    """The categories under a squidGuard tree (UT1's `blacklists/`): every directory holding a
    `domains`, `urls` or `expressions` file, or only the named ones (a missing one is an error)."""
    if not root.is_dir():
        raise CategoryListError(f"{root}: not a directory")
    try:
        found = {p.name: p for p in sorted(root.iterdir())
                 if p.is_dir() and any((p / name).is_file() for name in SQUIDGUARD_FILES)}
    except OSError as exc:
        raise CategoryListError(f"{root}: cannot list: {exc.strerror or exc}") from None
    if categories is None:
        if not found:
            raise CategoryListError(f"{root}: no squidGuard categories (<category>/domains, urls "
                                    "or expressions)")
        return [ListSource(name, path, "squidguard") for name, path in found.items()]
    wanted = list(categories)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise CategoryListError(f"{root}: no category {', '.join(missing)}")
    return [ListSource(name, found[name], "squidguard") for name in wanted]


def import_lists(sources: Sequence[ListSource], *, console: Console | None = None,
                 max_file_bytes: int = MAX_LIST_BYTES) -> tuple[CategoryIndex, ImportReport]:
    """Read and parse every source, then build one index. Raises CategoryListError (a file that
    cannot be read, is too large or is not text); a bad line is only counted and reported."""
    started = time.perf_counter()
    files = [(source, path, _size(path, max_file_bytes)) for source in sources
             for path in _files_of(source)]
    parts: dict[str, list[tuple[CategoryList, ParseReport]]] = {}
    seconds: dict[str, float] = {}
    with _progress(console, sum(size for _, _, size in files)) as advance:
        for source, path, size in files:
            began = time.perf_counter()
            parsed = _parse(source, path, max_file_bytes)
            seconds[source.category] = seconds.get(source.category, 0.0) + time.perf_counter() - began
            parts.setdefault(source.category, []).append(parsed)
            advance(path, size)
    lists = {category: _merge([part for part, _ in found]) for category, found in parts.items()}
    reports = tuple(_category_report(category, lists[category], [r for _, r in parts[category]],
                                     seconds[category]) for category in lists)
    build_started = time.perf_counter()
    index = CategoryIndex.build(lists)
    now = time.perf_counter()
    return index, ImportReport(reports, now - build_started, now - started, index.keys)


def import_squidguard_directory(root: Path, *, categories: Iterable[str] | None = None,
                                console: Console | None = None) -> tuple[CategoryIndex, ImportReport]:
    """A UT1-style tree (`<root>/<category>/{domains,urls,expressions}`), all or some categories."""
    return import_lists(squidguard_sources(root, categories), console=console)


def import_host_list(path: Path, category: str, *,
                     console: Console | None = None) -> tuple[CategoryIndex, ImportReport]:
    """One host list (one host a line, or a hosts file) as one category of exact host names."""
    return import_lists([ListSource(category, path, "hosts")], console=console)


class CategoryIndexSlot:
    """The index in force. `reload` builds a complete new index, then swaps the one reference
    (a single attribute store: a lookup sees the old index or the new one, never a mix); when the
    import fails, the old index stays in force and the error goes to the caller."""

    def __init__(self, index: CategoryIndex = EMPTY_INDEX) -> None:
        self._index = index

    @property
    def index(self) -> CategoryIndex:
        return self._index

    def reload(self, sources: Sequence[ListSource], *,
               console: Console | None = None) -> ImportReport:
        index, report = import_lists(sources, console=console)
        self._index = index
        return report


# --- helpers ----------------------------------------------------------------------------------------


def _files_of(source: ListSource) -> list[Path]:
    if source.kind == "hosts":
        return [source.path]
    found = [source.path / name for name in SQUIDGUARD_FILES if (source.path / name).is_file()]
    if not found:
        raise CategoryListError(f"{source.path}: no squidGuard list ({', '.join(SQUIDGUARD_FILES)})")
    return found


def _size(path: Path, limit: int) -> int:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CategoryListError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size > limit:
        raise CategoryListError(f"{path}: {size:,} bytes is more than the limit of {limit:,}")
    return size


def _read(path: Path, limit: int) -> bytes:
    """The file's bytes, read in chunks so that the cap bounds memory too (one read(limit)
    would allocate the whole limit up front)."""
    chunks, total = [], 0
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise CategoryListError(f"{path}: more than the limit of {limit:,} bytes")
                chunks.append(chunk)
    except OSError as exc:
        raise CategoryListError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return b"".join(chunks)


def _parse(source: ListSource, path: Path, limit: int) -> tuple[CategoryList, ParseReport]:
    data = _read(path, limit)
    where = f"{source.category}/{path.name}"
    if source.kind == "hosts":
        hosts = parse_host_list(data, where)
        return CategoryList(hosts=hosts.entries), hosts.report
    if path.name == "domains":
        domains = parse_squidguard_domains(data, where)
        return CategoryList(domains=domains.entries), domains.report
    if path.name == "urls":
        urls = parse_squidguard_urls(data, where)
        return CategoryList(urls=urls.entries), urls.report
    expressions = parse_expressions(data, where)
    return CategoryList(expressions=expressions.entries), expressions.report


def _merge(parts: Sequence[CategoryList]) -> CategoryList:
    if len(parts) == 1:
        return parts[0]
    return CategoryList(
        tuple(dict.fromkeys(d for p in parts for d in p.domains)),
        tuple(dict.fromkeys(h for p in parts for h in p.hosts)),
        tuple(dict.fromkeys(u for p in parts for u in p.urls)),
        tuple(dict.fromkeys(e for p in parts for e in p.expressions)))


def _category_report(category: str, merged: CategoryList, reports: Sequence[ParseReport],
                     seconds: float) -> CategoryImport:
    reasons = tuple(f"{r.where}: {reason}" for r in reports for reason in r.reasons)[:MAX_REASONS]
    parsed = sum(r.entries for r in reports)
    return CategoryImport(category, merged.size, sum(r.skipped for r in reports),
                          sum(r.duplicates for r in reports) + parsed - merged.size, reasons,
                          seconds, tuple(reports))


class _NoProgress:
    def __enter__(self) -> _Advance:
        return lambda path, size: None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(console: Console | None, total: int) -> _NoProgress | _RichProgress:
    return _NoProgress() if console is None else _RichProgress(console, total)


class _RichProgress:
    """A bar over the bytes of all files, named after the file just parsed."""

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn(),
                                  TimeElapsedColumn(), console=console, transient=False)
        self._task = self._progress.add_task("category lists", total=total)

    def __enter__(self) -> _Advance:
        self._progress.start()
        return self._advance

    def _advance(self, path: Path, size: int) -> None:
        self._progress.update(self._task, advance=size, description=f"{path.parent.name}/{path.name}")

    def __exit__(self, *exc: object) -> None:
        self._progress.update(self._task, description="category lists")
        self._progress.stop()

