"""Importing Suricata rule files from disk into an `HttpRuleset` (the shell around swg/httpsig).

Owns the file side: finding the `.rules` files of a directory (recursively, sorted), a single
file, or an archive as ET publishes them (`emerging.rules.tar.gz`, `.tgz`, `.zip`); reading each
with a size cap; handing the text to the pure parser; timing the load; and swapping the rule set
in force (`HttpRulesetSlot`): a reload builds a complete new rule set first, so a failed import
leaves the old one in force. OS and archive errors become HttpSignatureImportError naming the
file. A malformed rule is not an error here: it is counted in the report, the others load.

It must not parse or match anything itself, and never ships rules: the admin gives the path (ET
Open is BSD/GPLv2 and updated daily, so it stays outside the product).
"""

from __future__ import annotations

import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from swg.httpsig import EMPTY_RULESET, HttpRuleset, LoadReport, compile_ruleset, parse_rules
from swg.httpsig.parse import RuleParse
from ztcore.errors import ZTError

MAX_RULES_FILE_BYTES = 64 * 1024 * 1024    # the largest ET Open file is ~15 MB (emerging-malware)
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024      # all members together, uncompressed
RULES_SUFFIX = ".rules"


class HttpSignatureImportError(ZTError):
    """A rules path cannot be read (missing, too large, a broken archive); names the file."""


@dataclass(frozen=True, eq=False)
class HttpSignatureImport:
    ruleset: HttpRuleset
    report: LoadReport
    files: tuple[str, ...]      # the rule files read, as named in the report's errors
    read_seconds: float
    parse_seconds: float

    @property
    def seconds(self) -> float:
        return self.read_seconds + self.parse_seconds


def import_rules(path: Path, *, max_file_bytes: int = MAX_RULES_FILE_BYTES) -> HttpSignatureImport:
    """Every `.rules` file under `path` (a directory, a file, or a .tar.gz/.tgz/.zip archive)."""
    started = time.perf_counter()
    texts = list(_rule_texts(path, max_file_bytes))
    read = time.perf_counter()
    parses: list[RuleParse] = [parse_rules(text, name) for name, text in texts]
    ruleset, report = compile_ruleset(parses)
    done = time.perf_counter()
    return HttpSignatureImport(ruleset, report, tuple(name for name, _ in texts), read - started, done - read)


class HttpRulesetSlot:
    """The rule set in force. `reload` builds a complete new one, then swaps the one reference
    (a request sees the old set or the new one, never a mix); when the import fails, the old set
    stays in force and the error goes to the caller."""

    def __init__(self, ruleset: HttpRuleset = EMPTY_RULESET) -> None:
        self._ruleset = ruleset

    @property
    def ruleset(self) -> HttpRuleset:
        return self._ruleset

    def reload(self, path: Path) -> HttpSignatureImport:
        imported = import_rules(path)
        self._ruleset = imported.ruleset
        return imported


def _rule_texts(path: Path, limit: int) -> Iterator[tuple[str, str]]:
    name = path.name.lower()
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob(f"*{RULES_SUFFIX}") if p.is_file())
            if not files:
                raise HttpSignatureImportError(f"{path}: no {RULES_SUFFIX} files")
            for file in files:
                yield str(file.relative_to(path)), _decode(_read(file, limit))
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            yield from _tar_texts(path, limit)
        elif name.endswith(".zip"):
            yield from _zip_texts(path, limit)
        else:
            yield path.name, _decode(_read(path, limit))
    except OSError as exc:
        raise HttpSignatureImportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise HttpSignatureImportError(f"{path}: broken archive: {exc}") from None


def _read(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise HttpSignatureImportError(f"{path}: {size:,} bytes is more than the limit of {limit:,}")
    return path.read_bytes()


def _tar_texts(path: Path, limit: int) -> Iterator[tuple[str, str]]:
    total = 0
    with tarfile.open(path, "r:*") as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(RULES_SUFFIX)),
                         key=lambda member: member.name)
        for member in members:
            total += _check_member(path, member.name, member.size, limit, total)
            handle = archive.extractfile(member)
            if handle is None:
                continue
            with handle:
                yield member.name, _decode(handle.read(limit + 1))


def _zip_texts(path: Path, limit: int) -> Iterator[tuple[str, str]]:
    total = 0
    with zipfile.ZipFile(path) as archive:
        members = sorted((info for info in archive.infolist()
                          if not info.is_dir() and info.filename.endswith(RULES_SUFFIX)),
                         key=lambda info: info.filename)
        for info in members:
            total += _check_member(path, info.filename, info.file_size, limit, total)
            with archive.open(info) as handle:
                yield info.filename, _decode(handle.read(limit + 1))


def _check_member(path: Path, name: str, size: int, limit: int, total: int) -> int:
    if size > limit:
        raise HttpSignatureImportError(f"{path}!{name}: {size:,} bytes is more than the limit of {limit:,}")
    if total + size > MAX_ARCHIVE_BYTES:
        raise HttpSignatureImportError(f"{path}: more than {MAX_ARCHIVE_BYTES:,} bytes of rules")
    return size


def _decode(data: bytes) -> str:
    # surrogateescape: a non-UTF-8 byte in a content string goes back to the same byte
    return data.decode("utf-8", "surrogateescape")
