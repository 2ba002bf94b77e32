"""`sekimori ioc …` (IOC feeds a prefecture or municipality shares) and `sekimori lists …` (URL
categories and a tenant's own allow/block lists). A running broker picks changes up within
seconds (it watches the files); a bad feed is refused here and never reaches it."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from broker.policy_cli import DEFAULT_DIR, DataDir, _fail, _store, actor
from broker.runtime.datadir import load_config
from broker.runtime.store import StoreError
from broker.runtime.web_lists import (
    FEED_NAME,
    WebListsService,
    custom_path,
    ioc_dir,
    load_custom,
    parse_feed_file,
    save_custom,
)
from swg.ioc import IocFeedError
from swg.urlcategories import CategoryListError, TenantLists
from swg.web_verdict import judge
from ztcore.errors import ConfigError

ioc_app = typer.Typer(no_args_is_help=True, help="IOC feeds (domains, addresses, URLs, SHA-256).")
lists_app = typer.Typer(no_args_is_help=True, help="URL categories and a tenant's allow/block lists.")
unblock_app = typer.Typer(no_args_is_help=True, help="Unblock requests from the block page.")
# Logs and CI are not terminals: rich would wrap the tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
Tenant = Annotated[str, typer.Option(help="The tenant (a prefecture's feeds apply to its municipalities)")]


def _known(data_dir: Path, tenant: str) -> None:
    with _store(data_dir) as store:
        if store.get_tenant(tenant) is None:
            raise _fail(f"unknown tenant {tenant!r}")


@ioc_app.command("import")
def ioc_import(file: Annotated[Path, typer.Argument(help="CSV (type,value,...) or STIX 2.1 JSON bundle")],
               tenant: Tenant, feed: Annotated[Optional[str], typer.Option(help="Feed name (default: "
                                                                            "the file name)")] = None,
               data_dir: DataDir = DEFAULT_DIR) -> None:
    """Check a feed and put it in force for the tenant (replacing a feed of the same name)."""
    _known(data_dir, tenant)
    name = feed or file.stem
    if not FEED_NAME.match(name):
        raise _fail(f"feed name {name!r}: letters, digits, '.', '_' and '-' only")
    suffix = ".json" if file.suffix.lower() == ".json" else ".csv"
    try:
        parsed = parse_feed_file(file, time.time())
    except IocFeedError as exc:
        raise _fail(f"refused, nothing changed: {exc}") from None
    report = parsed.report
    if not parsed.indicators:
        raise _fail(f"refused: {file} holds no usable indicator ({sum(report.skipped.values())} skipped)")
    config = load_config(data_dir)
    target = ioc_dir(config, tenant) / f"{name}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f"{name}.*"):
        stale.unlink()
    tmp = target.with_suffix(".new")
    shutil.copyfile(file, tmp)
    tmp.replace(target)
    console.print(f"[green]feed {name}[/green] for {tenant}: {report.loaded} indicators loaded, "
                  f"{sum(report.skipped.values())} skipped")
    for reason, count in report.skipped.most_common():
        console.print(f"  skipped {count}: {reason}")
    for bad in report.bad[:10]:
        console.print(f"  bad: {bad.where}: {bad.problem}", markup=False)
    if report.bad_count > len(report.bad[:10]):
        console.print(f"  ... {report.bad_count} bad entries in all")


@ioc_app.command("list")
def ioc_list(data_dir: DataDir = DEFAULT_DIR) -> None:
    """The feeds in force per tenant."""
    config = load_config(data_dir)
    table = Table("tenant", "feed", "indicators", "file")
    root = config.data_dir / "lists" / "ioc"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        for path in sorted(folder.iterdir()):
            try:
                loaded = str(parse_feed_file(path, time.time()).report.loaded)
            except IocFeedError as exc:
                loaded = f"unreadable: {exc}"
            table.add_row(folder.name, path.stem, loaded, str(path))
    console.print(table)


def _edit(data_dir: Path, tenant: str, verdict: str, pattern: str, remove: bool) -> None:
    _known(data_dir, tenant)
    path = custom_path(load_config(data_dir), tenant)
    try:
        current = load_custom(path) if path.exists() else TenantLists()
        allow, block = list(current.allow), list(current.block)
        target = allow if verdict == "allow" else block
        if remove:
            if pattern not in target:
                raise _fail(f"{pattern} is not on {tenant}'s {verdict} list")
            target.remove(pattern)
        elif pattern not in target:
            target.append(pattern)
        updated = TenantLists(tuple(allow), tuple(block))   # validates every pattern
    except CategoryListError as exc:
        raise _fail(f"refused, nothing changed: {exc}") from None
    save_custom(path, updated)
    console.print(f"{tenant} {verdict} list: {len(target)} pattern(s)")


@lists_app.command("allow")
def lists_allow(pattern: str, tenant: Tenant, remove: bool = False, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Add (or --remove) a host pattern (example.jp, *.example.jp, .example.jp) the tenant allows
    whatever its category (never over an IOC)."""
    _edit(data_dir, tenant, "allow", pattern, remove)


@lists_app.command("block")
def lists_block(pattern: str, tenant: Tenant, remove: bool = False, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Add (or --remove) a host pattern the tenant blocks."""
    _edit(data_dir, tenant, "block", pattern, remove)


@lists_app.command("check")
def lists_check(url: Annotated[str, typer.Argument(help="A host or URL")], tenant: Tenant,
                data_dir: DataDir = DEFAULT_DIR) -> None:
    """Why would this host or URL be blocked (IOC, list, category) for the tenant?"""
    try:
        config = load_config(data_dir)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    with _store(data_dir) as store:
        service = WebListsService(config, store.list_tenants)
        service.reload_if_changed()
    if service.problems:
        raise _fail("; ".join(service.problems))
    parts = urlsplit(url if "://" in url else f"http://{url}")
    verdict = judge(service.current, tenant, (parts.hostname or "").lower(),
                    url=url if "://" in url else None, path=parts.path or "/")
    console.print(f"categories: {', '.join(verdict.categories) or '-'}")
    if verdict.ioc:
        console.print(f"IOC: {verdict.ioc}", markup=False)
    if verdict.custom:
        console.print(f"tenant list: {verdict.custom}", markup=False)
    if verdict.decision is None:
        console.print("[green]not blocked here[/green] (the access policy decides)")
    else:
        d = verdict.decision
        console.print(f"[red]blocked[/red]: {d.reason.value} — {d.message_ja} / {d.message_en} ({d.detail})")


@unblock_app.command("list")
def unblock_list(tenant: Annotated[Optional[str], typer.Option()] = None,
                 status: Annotated[Optional[str], typer.Option(help="pending, approved or denied")] = "pending",
                 data_dir: DataDir = DEFAULT_DIR) -> None:
    """Requests staff sent from the block page (pending ones by default; --status '' for all)."""
    with _store(data_dir) as store:
        rows = store.list_unblock_requests(tenant, status or None)
    table = Table("id", "tenant", "when", "user / device", "host", "blocked for", "why", "status")
    for r in rows:
        state = r.status if r.expires_at is None else (
            f"{r.status} until {time.strftime('%m-%d %H:%M', time.localtime(r.expires_at))}")
        table.add_row(str(r.id), r.tenant_id, time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
                      r.username or (r.device_id or "")[:8], r.host, r.reason_code, r.justification[:60],
                      state)
    console.print(table)


def _decide(request_id: int, approve: bool, minutes: int, note: str, data_dir: Path) -> None:
    with _store(data_dir) as store:
        try:
            done = store.decide_unblock(request_id, approve=approve, minutes=minutes, actor=actor(),
                                        note=note, now=time.time())
        except StoreError as exc:
            raise _fail(str(exc)) from None
    if approve:
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(done.expires_at or 0))
        console.print(f"[green]approved[/green]: {done.host} is allowed for {done.tenant_id} until {until} "
                      "(past category and list blocks; never past IOC, DLP or malware blocks)")
    else:
        console.print(f"denied: request {done.id} for {done.host}")


@unblock_app.command("approve")
def unblock_approve(request_id: int, minutes: Annotated[int, typer.Option(min=1, max=30 * 24 * 60)] = 60,
                    note: str = "", data_dir: DataDir = DEFAULT_DIR) -> None:
    """Approve a pending request: its host is allowed for the tenant for --minutes."""
    _decide(request_id, True, minutes, note, data_dir)


@unblock_app.command("deny")
def unblock_deny(request_id: int, note: str = "", data_dir: DataDir = DEFAULT_DIR) -> None:
    """Deny a pending request."""
    _decide(request_id, False, 0, note, data_dir)
