"""`sekimori`: initialise and run the broker, manage tenants, enrolment codes, devices, users'
TOTP factors and login sessions."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from broker.devices import validate_tenant_id
from broker.enrolment import DEFAULT_CODE_TTL_SECONDS, format_code, hash_code, parse_duration
from broker.identity_cli import admin_account_app, admin_app, session_app, user_app
from broker.lists_cli import ioc_app, lists_app, unblock_app
from broker.policy_cli import actor as policy_actor
from broker.policy_cli import policy_app
from broker.routing_cli import device_override, m365_app, routing_app
from broker.runtime.datadir import init_data_dir, load_ca, load_config
from broker.runtime.posture_store import PostureRecord
from broker.runtime.store import Store, StoreError
from ztcore.errors import ConfigError
from ztcore.keys import spki_pin
from ztcore.runtime.loop import LoopOption, setup_logging
from ztcore.runtime.loop import run as run_loop

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Sekimori broker and admin CLI (関守: the keeper of the checkpoint).")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (municipalities).")
code_app = typer.Typer(no_args_is_help=True, help="One-time device enrolment codes.")
device_app = typer.Typer(no_args_is_help=True, help="Enrolled devices.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(code_app, name="enrolment-code")
app.add_typer(device_app, name="device")
app.add_typer(user_app, name="user")
app.add_typer(session_app, name="session")
app.add_typer(admin_app, name="admin-token")
app.add_typer(admin_account_app, name="admin")
app.add_typer(policy_app, name="policy")
app.add_typer(m365_app, name="m365")
app.add_typer(routing_app, name="routing")
app.add_typer(ioc_app, name="ioc")
app.add_typer(lists_app, name="lists")
app.add_typer(unblock_app, name="unblock")
device_app.command("override")(device_override)
# Logs and CI are not terminals: rich would wrap at 80 columns and cut the demo table.
console = Console(width=None if sys.stdout.isatty() else 120)
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="SEKIMORI_DATA",
                                       help="The broker's data directory.")]
DEFAULT_DIR = Path("sekimori-data")


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _store(data_dir: Path) -> Store:
    try:
        config = load_config(data_dir)
        store = Store(config.database_url)
        store.migrate()
        return store
    except (ConfigError, StoreError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def init(data_dir: DataDir = DEFAULT_DIR,
         name: Annotated[list[str], typer.Option("--name", help="DNS names / addresses of the broker")] = ["localhost", "127.0.0.1", "::1"],  # noqa: B006
         tunnel_listen: Annotated[str, typer.Option(help="host:port of the agent tunnel")] = "127.0.0.1:8443",
         api_listen: Annotated[str, typer.Option(help="host:port of the enrolment/admin API")] = "127.0.0.1:8444",
         database: Annotated[Optional[str], typer.Option(help="postgresql://... (default: SQLite in the data dir)")] = None,
         allow_port: Annotated[list[str], typer.Option(help="Extra destination ports or ranges")] = [],  # noqa: B006
         allow_network: Annotated[list[str], typer.Option(help="Private networks the broker may reach")] = []) -> None:  # noqa: B006
    """Create the data directory: configuration, broker CA and server certificate, database."""
    try:
        config = init_data_dir(data_dir, time.time(), server_names=name, tunnel_listen=tunnel_listen,
                               api_listen=api_listen, database=database,
                               allowed_ports=[80, 443, *allow_port], allowed_networks=allow_network)
        Store(config.database_url).migrate()
    except (ConfigError, StoreError) as exc:
        raise _fail(str(exc)) from None
    ca, _ = load_ca(config)
    console.print(f"[green]initialised[/green] {config.data_dir}")
    console.print(f"  broker CA pin: {spki_pin(ca)}", soft_wrap=True)
    console.print(f"  tunnel {config.tunnel_listen}, API https://{config.api_listen}")


@app.command()
def serve(data_dir: DataDir = DEFAULT_DIR,
          verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
          loop: LoopOption = "auto") -> None:
    """Run the broker: the agent tunnel and the enrolment/admin API."""
    from broker.runtime.server import serve as serve_broker
    setup_logging(verbose)
    try:
        config = load_config(data_dir)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    console.print(f"Sekimori broker: tunnel {config.tunnel_listen}, API https://{config.api_listen}")
    run_loop(serve_broker(config), use_uvloop=loop != "asyncio")


@tenant_app.command("add")
def tenant_add(tenant_id: str, name: Annotated[str, typer.Option(help="Display name, e.g. 〇〇市")],
               parent: Annotated[Optional[str], typer.Option(help="The prefecture operating it")] = None,
               model: Annotated[str, typer.Option(help="Security model: alpha, beta or beta_prime")] = "beta",
               data_dir: DataDir = DEFAULT_DIR) -> None:
    try:
        validate_tenant_id(tenant_id)
        store = _store(data_dir)
        store.add_tenant(tenant_id, name, time.time())
        if parent is not None or model != "beta":
            store.set_tenancy(tenant_id, parent=parent, model=model, actor=policy_actor(),
                              now=time.time())
    except (ValueError, StoreError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"[green]tenant {tenant_id} added[/green] ({name}, model {model}"
                  + (f", under {parent}" if parent else "") + ")")


@tenant_app.command("set")
def tenant_set(tenant_id: str,
               model: Annotated[str, typer.Option(help="alpha, beta or beta_prime")],
               parent: Annotated[Optional[str], typer.Option(help="The prefecture (none: top level)")] = None,
               data_dir: DataDir = DEFAULT_DIR) -> None:
    """Change a tenant's security model or its prefecture (audited; applies within a second)."""
    try:
        _store(data_dir).set_tenancy(tenant_id, parent=parent, model=model, actor=policy_actor(),
                                     now=time.time())
    except StoreError as exc:
        raise _fail(str(exc)) from None
    console.print(f"tenant {tenant_id}: model {model}" + (f", under {parent}" if parent else ""))


@tenant_app.command("list")
def tenant_list(data_dir: DataDir = DEFAULT_DIR) -> None:
    table = Table("id", "name", "created")
    for t in _store(data_dir).list_tenants():
        table.add_row(t.id, t.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created_at)))
    console.print(table)


@code_app.command("create")
def code_create(tenant: Annotated[str, typer.Option(help="Tenant the device will belong to")],
                ttl: Annotated[str, typer.Option(help="Validity, e.g. 24h, 30m, 7d")] = "24h",
                label: Annotated[str, typer.Option(help="Note for the admin (who it is for)")] = "",
                data_dir: DataDir = DEFAULT_DIR) -> None:
    """Make a single-use enrolment code (stored hashed; shown once)."""
    try:
        ttl_seconds = parse_duration(ttl) if ttl else DEFAULT_CODE_TTL_SECONDS
    except ValueError as exc:
        raise _fail(str(exc)) from None
    config = load_config(data_dir)
    store = _store(data_dir)
    code = format_code(secrets.token_bytes(10))
    now = time.time()
    try:
        store.create_enrolment_code(tenant, hash_code(code), now, now + ttl_seconds, label)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    ca, _ = load_ca(config)
    console.print(f"enrolment code for tenant {tenant} (valid {ttl}, single use): [bold]{code}[/bold]")
    console.print("on the device:")
    from broker.runtime.server import public_host
    host = public_host(config.api_listen.host, config.server_names[0])
    host = f"[{host}]" if ":" in host else host
    print(f"sekimori-agent enroll --broker https://{host}:{config.api_listen.port} "
          f"--code {code} --ca-pin {spki_pin(ca)}")


@code_app.command("list")
def code_list(tenant: Annotated[Optional[str], typer.Option()] = None,
              data_dir: DataDir = DEFAULT_DIR) -> None:
    now = time.time()
    table = Table("id", "tenant", "label", "expires", "state")
    for c in _store(data_dir).list_enrolment_codes(tenant):
        state = "used" if c.used_at else ("expired" if c.expires_at <= now else "open")
        table.add_row(str(c.id), c.tenant_id, c.label,
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(c.expires_at)), state)
    console.print(table)


@device_app.command("list")
def device_list(tenant: Annotated[Optional[str], typer.Option()] = None,
                data_dir: DataDir = DEFAULT_DIR) -> None:
    """Devices with their status, posture (and the checks they fail) and last contact."""
    store = _store(data_dir)
    postures = store.device_postures(tenant)
    table = Table("device", "tenant", "name", "status", "posture", "last seen", "certificate until",
                  "reason")
    for d in store.list_devices(tenant):
        status = ("[red]revoked[/red]" if d.revoked else
                  "[red]quarantined[/red]" if d.quarantined else "[green]active[/green]")
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.last_seen_at)) if d.last_seen_at else "-"
        table.add_row(d.id, d.tenant_id, d.name, status, posture_summary(postures.get(d.id)), seen,
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(d.cert_not_after)),
                      d.revoke_reason or d.quarantine_reason)
    console.print(table)


def posture_summary(record: PostureRecord | None) -> str:
    """"compliant", or "not compliant: firewall, edr", with the report's time."""
    if record is None:
        return "[yellow]no report[/yellow]"
    when = time.strftime("%H:%M:%S", time.localtime(record.received_at))
    if record.compliant:
        return f"[green]compliant[/green] ({when})"
    try:
        failed = [f["check"] for f in json.loads(record.verdict_json).get("failed", [])]
    except (ValueError, AttributeError, KeyError, TypeError):
        failed = ["?"]
    return f"[red]not compliant[/red]: {', '.join(failed)} ({when})"


@device_app.command("revoke")
def device_revoke(device_id: str,
                  reason: Annotated[str, typer.Option(help="Why (shown to the user and audited)")],
                  data_dir: DataDir = DEFAULT_DIR) -> None:
    """Revoke a device: its tunnels lose their streams within seconds, new ones are refused."""
    if not _store(data_dir).revoke_device(device_id, reason, time.time()):
        raise _fail(f"no device {device_id}")
    console.print(f"[yellow]device {device_id} revoked[/yellow]: {reason}")


@device_app.command("segment")
def device_segment(device_id: str,
                   segment: Annotated[str, typer.Argument(help="mynumber, lgwan or internet")],
                   data_dir: DataDir = DEFAULT_DIR) -> None:
    """Say which of the three segments a device sits in (the three-layer guard uses it)."""
    try:
        changed = _store(data_dir).set_device_segment(device_id, segment, actor=policy_actor(),
                                                      now=time.time())
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if not changed:
        raise _fail(f"no device {device_id}")
    console.print(f"device {device_id} is in the {segment} segment")


def _admin_record(store: Store, action: str, device_id: str, before: str | None,
                  after: str | None) -> None:
    """The admin audit trail entry for a change made on the broker host."""
    tenant = next((d.tenant_id for d in store.list_devices() if d.id == device_id), None)
    store.record_admin_action(actor=policy_actor(), action=action, tenant_id=tenant,
                              target=device_id, before=before, after=after, now=time.time())


@device_app.command("quarantine")
def device_quarantine(device_id: str,
                      reason: Annotated[str, typer.Option(help="Why (shown to the user and audited)")],
                      data_dir: DataDir = DEFAULT_DIR) -> None:
    """Isolate a device now: within about a second it keeps only the repair destinations
    ([posture] quarantine_allow); everything else is refused with device-quarantined."""
    store = _store(data_dir)
    changed = store.set_quarantine(device_id, time.time(), reason)
    if changed is None:
        raise _fail(f"no device {device_id}")
    _admin_record(store, "device.quarantine", device_id, None, reason)
    console.print(f"[yellow]device {device_id} quarantined[/yellow]: {reason}" if changed
                  else f"device {device_id} was already quarantined")


@device_app.command("release")
def device_release(device_id: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """End a device's quarantine (its posture is still checked)."""
    store = _store(data_dir)
    changed = store.set_quarantine(device_id, time.time(), None)
    if changed is None:
        raise _fail(f"no device {device_id}")
    _admin_record(store, "device.release", device_id, None, None)
    console.print(f"[green]device {device_id} released[/green]" if changed
                  else f"device {device_id} was not quarantined")


@app.command()
def demo(once: Annotated[bool, typer.Option("--once", help="Run the checks and exit (0 = all passed)")] = False,
         data_dir: Annotated[Optional[Path], typer.Option(help="Keep demo files here (default: a temp dir)")] = None) -> None:
    """Broker + demo municipality + enrolled agent + local origins, on loopback, offline."""
    from broker.demo import run_demo
    raise typer.Exit(run_demo(once=once, data_dir=data_dir, console=console))


def main() -> None:
    app()
