"""`sekimori m365 …` (Microsoft's endpoint data: import, update, versions, diff, check) and
`sekimori routing …` (a tenant's breakout, split DNS and fail-closed settings), plus
`sekimori device override` (a time-limited override code for one device)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from broker.m365 import STORE_INSTANCE, EndpointDataError, render_diff
from broker.policy_cli import DEFAULT_DIR, DataDir, _fail, _store, actor
from broker.routing import load_routing
from broker.runtime.datadir import load_config, load_seal_key
from broker.runtime.m365_fetch import EndpointFetchError, fetch_endpoint_data, fetch_url
from broker.runtime.m365_import import ImportResult, diff_versions, import_endpoint_data, stored_data
from broker.runtime.override_service import issue_override
from broker.runtime.routing_lookup import routing_in_force, tenant_breakout
from broker.runtime.store import Store, StoreError
from ztcore.breakout import BreakoutMatcher, BreakoutRules, format_ports
from ztcore.errors import ConfigError

m365_app = typer.Typer(no_args_is_help=True, help="Microsoft 365 endpoint data (local breakout).")
routing_app = typer.Typer(no_args_is_help=True,
                          help="A tenant's routing: M365 breakout, split DNS, captive portal.")
console = Console()


def _show_import(result: ImportResult) -> None:
    counts = result.data.category_counts()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if result.record is None:
        assert result.previous is not None
        console.print(f"unchanged: version {result.previous.version} (imported "
                      f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(result.previous.imported_at))})"
                      " is the same data")
        return
    console.print(f"[green]imported[/green] Microsoft 365 endpoint data version "
                  f"{result.record.version}: {len(result.data.sets)} sets ({summary}), "
                  f"{result.data.url_count} URLs, {result.data.ip_count} networks")
    if result.diff is None:
        console.print("first import: no earlier version to compare with")
    else:
        console.print(f"changes since {result.previous.version if result.previous else '-'}:")
        console.print(render_diff(result.diff), markup=False, highlight=False)
        if result.diff.direct_categories_changed:
            console.print("[yellow]Optimize/Allow sets changed: agents get new breakout rules "
                          "within a minute[/yellow]")


def _import(store: Store, raw: bytes, version: str | None, source: str) -> None:
    try:
        result = import_endpoint_data(store, raw, instance=STORE_INSTANCE, version=version,
                                      source=source, actor=actor(), now=time.time())
    except EndpointDataError as exc:
        raise _fail(f"refused, the version in force stays: {exc}") from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    _show_import(result)


@m365_app.command("import")
def m365_import(file: Annotated[Optional[Path], typer.Option(help="A JSON file of the endpoints "
                                                             "web service")] = None,
                url: Annotated[Optional[str], typer.Option(help="A URL of such a file")] = None,
                version: Annotated[Optional[str], typer.Option(help="Its version, e.g. "
                                                               "2024041700")] = None,
                data_dir: DataDir = DEFAULT_DIR) -> None:
    """Import Microsoft's endpoint data from a file or a URL, validated; shows the diff."""
    if (file is None) == (url is None):
        raise _fail("give exactly one of --file or --url")
    try:
        raw = file.read_bytes() if file is not None else fetch_url(url or "")
    except (OSError, EndpointFetchError) as exc:
        raise _fail(f"cannot read the data: {exc}") from None
    with _store(data_dir) as store:
        _import(store, raw, version, str(file.resolve()) if file is not None else str(url))


@m365_app.command("update")
def m365_update(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Fetch the data configured in [m365] (Microsoft's web service by default): the version is
    checked first, and nothing is downloaded when it is the one in force. Run it hourly (a
    systemd timer or cron) as Microsoft recommends."""
    try:
        source = load_config(data_dir).m365
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    with _store(data_dir) as store:
        found = store.m365_data(None, STORE_INSTANCE)
        try:
            if source.url:
                raw, version, where = fetch_url(source.url), None, source.url
            else:
                result = fetch_endpoint_data(source.service_url, source.instance,
                                             str(uuid.uuid4()),
                                             found[0].version if found else None)
                if result.unchanged:
                    console.print(f"unchanged: version {found[0].version if found else '?'} is "
                                  "the latest")
                    return
                raw, version, where = result.raw, result.version, source.service_url
        except EndpointFetchError as exc:
            raise _fail(f"update failed, the version in force stays: {exc}") from None
        _import(store, raw or b"", version, f"{where} ({source.instance})")


@m365_app.command("versions")
def m365_versions(data_dir: DataDir = DEFAULT_DIR) -> None:
    """The imported versions, newest last (the newest is in force)."""
    with _store(data_dir) as store:
        table = Table("id", "version", "imported", "by", "source", "changes")
        for r in store.m365_versions(STORE_INSTANCE):
            diff = json.loads(r.diff) if r.diff else None
            changes = ("first" if diff is None else
                       f"+{len(diff.get('added', []))} -{len(diff.get('removed', []))} "
                       f"~{len(diff.get('changed', []))}")
            table.add_row(str(r.id), r.version,
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(r.imported_at)),
                          r.imported_by, r.source[-50:], changes)
        console.print(table)


@m365_app.command("diff")
def m365_diff(to: Annotated[Optional[int], typer.Option(help="Version id (default: newest)")] = None,
              json_out: Annotated[bool, typer.Option("--json")] = False,
              data_dir: DataDir = DEFAULT_DIR) -> None:
    """What changed with a version, against the one imported before it."""
    with _store(data_dir) as store:
        versions = store.m365_versions(STORE_INSTANCE)
        index = next((i for i, r in enumerate(versions) if to is None or r.id == to), None)
        if to is None and versions:
            index = len(versions) - 1
        if index is None:
            raise _fail("no such version (sekimori m365 versions lists them)" if versions else
                        "no Microsoft 365 data imported (sekimori m365 import --file ...)")
        record = versions[index]
        if index == 0:
            console.print(f"version {record.version} (id {record.id}) is the first import")
            return
        new = stored_data(store, record.id, STORE_INSTANCE)
        old = stored_data(store, versions[index - 1].id, STORE_INSTANCE)
    assert new is not None and old is not None
    diff = diff_versions(old[1], new[1])
    if json_out:
        console.print_json(json.dumps(diff.to_json_dict(), ensure_ascii=False))
        return
    console.print(f"{old[0].version} (id {old[0].id}) → {record.version} (id {record.id}), "
                  f"imported by {record.imported_by} from {record.source}")
    console.print(render_diff(diff, limit=1000), markup=False, highlight=False)


@m365_app.command("check")
def m365_check(destination: str, tenant: Annotated[str, typer.Option()],
               data_dir: DataDir = DEFAULT_DIR) -> None:
    """Would `host[:port]` break out for this tenant, and by which endpoint set?"""
    host, _, port_text = destination.rpartition(":") if destination.count(":") == 1 \
        else (destination, "", "443")
    port = int(port_text) if port_text.isdigit() else 443
    with _store(data_dir) as store:
        rules = _tenant_rules(store, tenant)
    match = BreakoutMatcher(rules).route(host or destination, port)
    where = "DIRECT (breakout)" if match.direct else "TUNNEL (through the broker)"
    rule = match.rule
    console.print(f"{host or destination}:{port} → {where}")
    console.print(f"  rule: {rule.label} {rule.pattern} ports {format_ports(rule.ports)}" if rule else
                  "  rule: none matched (not Microsoft 365)")


def _tenant_rules(store: Store, tenant_id: str) -> BreakoutRules:
    try:
        return tenant_breakout(store, tenant_id)
    except (StoreError, ConfigError) as exc:
        raise _fail(str(exc)) from None


@routing_app.command("import")
def routing_import(file: Path, tenant: Annotated[str, typer.Option()],
                   data_dir: DataDir = DEFAULT_DIR) -> None:
    """Validate a routing document (YAML) and make it the tenant's; agents get it within a
    minute. A file with an error changes nothing and says where the error is."""
    try:
        text = file.read_text(encoding="utf-8")
        policy = load_routing(text)
    except (OSError, ConfigError) as exc:
        raise _fail(f"{file}: {exc}") from None
    with _store(data_dir) as store:
        try:
            revision = store.put_routing(tenant, text, actor=actor(), now=time.time())
        except StoreError as exc:
            raise _fail(str(exc)) from None
    b = policy.breakout
    console.print(f"[green]routing of {tenant} is now revision {revision}[/green]: direct "
                  f"{', '.join(sorted(b.categories)) or 'nothing'}; {len(b.include)} included, "
                  f"{len(b.exclude)} excluded; {len(policy.dns.zones)} private DNS zones; "
                  f"captive-portal window {policy.captive_portal_minutes} min")


@routing_app.command("show")
def routing_show(tenant: Annotated[str, typer.Option()], data_dir: DataDir = DEFAULT_DIR) -> None:
    """The tenant's routing in force (its own, its prefecture's or the defaults)."""
    with _store(data_dir) as store:
        try:
            policy, origin = routing_in_force(store, tenant)
        except (StoreError, ConfigError) as exc:
            raise _fail(str(exc)) from None
        rules = _tenant_rules(store, tenant)
    console.print(f"routing of {tenant} ({origin}):")
    console.print_json(json.dumps(policy.to_json_dict(), ensure_ascii=False))
    direct = sum(1 for r in rules.rules if r.direct)
    console.print(f"compiled: {len(rules.rules)} rules ({direct} direct), Microsoft data "
                  f"{rules.source_version}, rules version {rules.version}")


def device_override(device_id: str,
                    minutes: Annotated[int, typer.Option(help="How long enforcement is lifted")],
                    reason: Annotated[str, typer.Option(help="The support case (audited)")],
                    data_dir: DataDir = DEFAULT_DIR) -> None:
    """Issue a code that lifts enforcement on one device for MINUTES (`sekimori-agent override
    CODE` on the laptop; it works offline). Audited; the code is not stored."""
    try:
        config = load_config(data_dir)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    with _store(data_dir) as store:
        try:
            code = issue_override(store, load_seal_key(config), device_id, minutes=minutes,
                                  reason=reason, actor=actor(), now=time.time())
        except StoreError as exc:
            raise _fail(str(exc)) from None
    console.print(f"override code for {device_id}: [bold]{code.code}[/bold]")
    console.print(f"valid until {time.strftime('%Y-%m-%d %H:%M', time.localtime(code.expires_at))}"
                  f" (code id {code.code_id}); read it to the user, it is shown only once")
