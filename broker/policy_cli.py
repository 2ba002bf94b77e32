"""`sekimori policy …` and the tenancy commands: policy as code (import/export), the simulator
(`policy test`) and the analyser (`policy lint`)."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

import typer
from rich.console import Console

from broker.policy.engine import compile_policy, decide
from broker.policy.explain import explain
from broker.policy.lint import lint
from broker.policy.model import Policy, PolicyRequest, SecurityModel, Tenant, Zone
from broker.policy.yaml_io import PolicyError, dump_policy_yaml, load_policy_yaml
from broker.runtime.datadir import load_config
from broker.runtime.policy_service import build_policies, local_time
from broker.runtime.store import Store, StoreError
from ztcore.errors import ConfigError

policy_app = typer.Typer(no_args_is_help=True, help="Access policy: import, export, test, lint.")
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="SEKIMORI_DATA",
                                       help="The broker's data directory.")]
DEFAULT_DIR = Path("sekimori-data")
console = Console()
HITS_FILE = "policy-hits.json"


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _store(data_dir: Path) -> Store:
    try:
        store = Store(load_config(data_dir).database_url)
        store.migrate()
        return store
    except (ConfigError, StoreError) as exc:
        raise _fail(str(exc)) from None


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def _policy_of(store: Store, tenant_id: str) -> Policy | None:
    """A tenant's stored policy (a municipality's read with its prefecture's as the baseline)."""
    doc = store.get_policy(tenant_id)
    if doc is None:
        return None
    parent = next((t.parent for t in store.list_tenants() if t.id == tenant_id), None)
    return load_policy_yaml(doc.document, _policy_of(store, parent) if parent else None)


@policy_app.command("import")
def policy_import(file: Path, tenant: Annotated[str, typer.Option()],
                  data_dir: DataDir = DEFAULT_DIR) -> None:
    """Validate a YAML policy and make it the tenant's policy (every broker applies it within a
    second; a file with an error changes nothing and says where the error is)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{file}: {exc}") from None
    store = _store(data_dir)
    with store:
        stored = {t.id: t for t in store.list_tenants()}
        if tenant not in stored:
            raise _fail(f"unknown tenant {tenant!r}")
        parent = stored[tenant].parent
        try:
            baseline = _policy_of(store, parent) if parent else None
            policy = load_policy_yaml(text, baseline)
            if policy.tenant.id != tenant:
                raise PolicyError(f"tenant.id: {policy.tenant.id!r} is not {tenant!r}")
            compile_policy(policy, baseline)
        except PolicyError as exc:
            raise _fail(f"{file}: {exc}\nthe policy in force is unchanged") from None
        revision = store.put_policy(tenant, text, actor=actor(), now=time.time())
    console.print(f"[green]policy of {tenant} is now revision {revision}[/green] "
                  f"({len(policy.apps)} apps, {len(policy.rules)} rules)")


@policy_app.command("export")
def policy_export(tenant: Annotated[str, typer.Option()], data_dir: DataDir = DEFAULT_DIR) -> None:
    """Print the tenant's policy as YAML (to review and keep in git)."""
    with _store(data_dir) as store:
        doc = store.get_policy(tenant)
    if doc is None:
        raise _fail(f"tenant {tenant!r} has no policy yet", 1)
    print(dump_policy_yaml(load_policy_yaml(doc.document)), end="")


@policy_app.command("lint")
def policy_lint(tenant: Annotated[str, typer.Option()],
                file: Annotated[Optional[Path], typer.Option(help="Lint this file instead")] = None,
                data_dir: DataDir = DEFAULT_DIR) -> None:
    """Shadowed, contradictory, guard-overruled, never-hit and too-broad rules."""
    with _store(data_dir) as store:
        stored = {t.id: t for t in store.list_tenants()}
        try:
            parent = stored[tenant].parent if tenant in stored else None
            baseline = _policy_of(store, parent) if parent else None
            policy = load_policy_yaml(file.read_text(encoding="utf-8"), baseline) if file else \
                _policy_of(store, tenant)
        except (OSError, PolicyError) as exc:
            raise _fail(str(exc)) from None
    if policy is None:
        raise _fail(f"tenant {tenant!r} has no policy yet", 1)
    hits_path = data_dir / "run" / HITS_FILE
    hits = None
    if hits_path.exists():
        hits = json.loads(hits_path.read_text()).get(tenant)
    findings = lint(policy, baseline, hits)
    colours = {"error": "red", "warning": "yellow", "info": "dim"}
    for f in findings:
        other = f" (← {f.other_rule_id})" if f.other_rule_id else ""
        colour = colours.get(f.severity, "white")
        console.print(f"[{colour}]{f.severity:7}[/{colour}] {f.kind:16} {f.rule_id}{other}")
        console.print(f"          {f.message_ja}")
        console.print(f"          {f.message_en}")
    console.print(f"{len(findings)} finding(s)" + ("" if hits is not None else
                  "; never-hit rules need the broker's hit counters (run/policy-hits.json)"))
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)


@policy_app.command("test")
def policy_test(tenant: Annotated[str, typer.Option()],
                url: Annotated[str, typer.Option(help="The destination, e.g. https://tax.city.lg.jp/")],
                user: Annotated[Optional[str], typer.Option()] = None,
                group: Annotated[list[str], typer.Option(help="The user's groups (repeat)")] = [],  # noqa: B006
                device: Annotated[Optional[str], typer.Option(help="A device id: its segment and posture")] = None,
                segment: Annotated[Optional[str], typer.Option(help="mynumber / lgwan / internet")] = None,
                mfa_minutes_ago: Annotated[Optional[float], typer.Option(help="Minutes since MFA (none: no MFA)")] = None,
                posture: Annotated[Optional[str], typer.Option(
                    help="Simulate a device compliant with this posture profile (default: the "
                         "device's last verdict, or non-compliant)")] = None,
                at: Annotated[Optional[str], typer.Option(help="Local time, e.g. '2026-11-24 09:30'")] = None,
                data_dir: DataDir = DEFAULT_DIR) -> None:
    """Which rule decides this request, and every reason, without sending any traffic."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (80 if parts.scheme == "http" else 443)
    with _store(data_dir) as store:
        tenants = store.list_tenants()
        compiled, problems = build_policies(tenants, store.list_policies(), {})
        dev = next((d for d in store.list_devices(tenant) if d.id == device), None) if device else None
        if device and dev is None:
            raise _fail(f"no device {device} in tenant {tenant}")
        record = store.device_postures(tenant).get(device) if device else None
        policy = _policy_of(store, tenant)
    if tenant not in compiled:
        raise _fail(f"unknown tenant {tenant!r}")
    now = time.time() if at is None else time.mktime(time.strptime(at, "%Y-%m-%d %H:%M"))
    weekday, minute = local_time(now)
    verdict = json.loads(record.verdict_json) if record else {}
    posture_name = posture
    request = PolicyRequest(
        tenant=tenant, user=user, groups=frozenset(group), mfa=mfa_minutes_ago is not None,
        mfa_age_seconds=None if mfa_minutes_ago is None else mfa_minutes_ago * 60,
        device_id=device or "-", segment=Zone(segment or (dev.segment if dev else "internet")),
        posture_compliant=bool(posture_name) or bool(record and record.compliant),
        posture_profile=posture_name or (verdict.get("profile") if record and record.compliant
                                         else None),
        host=host, port=port, address=None, url_category=None, source_address=None,
        weekday=weekday, minute_of_day=minute)
    decision = decide(compiled[tenant], request)
    colour = "green" if decision.allowed else "red"
    console.print(f"[{colour}]{'ALLOW' if decision.allowed else 'DENY'}[/{colour}] "
                  f"{host}:{port} for {user or '(no user)'} on a {request.segment.value}-segment device")
    stored = next(t for t in tenants if t.id == tenant)
    shown = policy or Policy(tenant=Tenant(stored.id, stored.name, stored.parent,
                                           SecurityModel(stored.model)))
    for line in explain(decision, request, shown):
        console.print(f"  {line}")
    for problem in problems:
        console.print(f"[yellow]note: {problem}[/yellow]")
