"""`sekimori user …` and `sekimori session …`: TOTP enrolment and session revocation for admins."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from broker.login import totp_account
from broker.runtime.datadir import load_config, load_seal_key, rotate_session_key
from broker.runtime.store import Store, StoreError
from idp_bridge.totp import enrol, new_seal_nonce, new_secret, seal_secret
from ztcore.errors import ConfigError

user_app = typer.Typer(no_args_is_help=True, help="Users' second factor (TOTP).")
session_app = typer.Typer(no_args_is_help=True, help="Login sessions: list, revoke, signing key.")
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="SEKIMORI_DATA",
                                       help="The broker's data directory.")]
DEFAULT_DIR = Path("sekimori-data")
console = Console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _open(data_dir: Path) -> tuple[Store, bytes]:
    try:
        config = load_config(data_dir)
        store = Store(config.database_url)
        store.migrate()
        return store, load_seal_key(config)
    except (ConfigError, StoreError) as exc:
        raise _fail(str(exc)) from None


@user_app.command("totp-enrol")
def totp_enrol(username: Annotated[str, typer.Argument(help="Directory user name (sAMAccountName / uid)")],
               tenant: Annotated[str, typer.Option(help="The user's tenant")],
               data_dir: DataDir = DEFAULT_DIR,
               qr: Annotated[bool, typer.Option(help="Draw the QR code in the terminal")] = True) -> None:
    """Give a user a new TOTP secret (replacing any old one): scan the QR code with an
    authenticator app. The secret is stored sealed with the broker's TOTP key."""
    store, key = _open(data_dir)
    account = totp_account(username)
    try:
        secret = new_secret()
        shown = enrol(secret, tenant, account)
        store.put_totp_factor(tenant, account, seal_secret(secret, key, tenant, account,
                                                           new_seal_nonce()), time.time())
    except (StoreError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if qr:
        print(shown.qr_text)
    console.print(f"TOTP enrolled for [bold]{account}[/bold] in tenant {tenant}")
    print(f"otpauth URI: {shown.uri}")
    print(f"secret (manual entry): {secret}")


@user_app.command("totp-remove")
def totp_remove(username: str, tenant: Annotated[str, typer.Option()],
                data_dir: DataDir = DEFAULT_DIR) -> None:
    """Remove a user's TOTP factor (a lost phone); they cannot log in until re-enrolled."""
    store, _ = _open(data_dir)
    with store:
        removed = store.delete_totp_factor(tenant, totp_account(username))
    if not removed:
        raise _fail(f"no TOTP factor for {username!r} in tenant {tenant}", 1)
    console.print(f"TOTP factor of {username} removed")


@user_app.command("totp-list")
def totp_list(tenant: Annotated[str, typer.Option()], data_dir: DataDir = DEFAULT_DIR) -> None:
    store, _ = _open(data_dir)
    with store:
        rows = store.list_totp_users(tenant)
    table = Table("user", "enrolled", "failures in a row")
    for username, created, failures in rows:
        table.add_row(username, time.strftime("%Y-%m-%d %H:%M", time.localtime(created)), str(failures))
    console.print(table)


@session_app.command("list")
def session_list(tenant: Annotated[Optional[str], typer.Option()] = None,
                 user: Annotated[Optional[str], typer.Option()] = None,
                 all_: Annotated[bool, typer.Option("--all", help="Include ended sessions")] = False,
                 data_dir: DataDir = DEFAULT_DIR) -> None:
    store, _ = _open(data_dir)
    with store:
        rows = store.list_login_sessions(tenant, username=user,
                                         active_at=None if all_ else time.time())
    table = Table("session", "tenant", "user", "device", "via", "methods", "logged in", "until", "revoked")
    for r in rows:
        table.add_row(r.sid[:12], r.tenant_id, r.username, r.device_id[:20], r.idp, " ".join(r.methods),
                      time.strftime("%m-%d %H:%M", time.localtime(r.auth_time)),
                      time.strftime("%m-%d %H:%M", time.localtime(r.expires_at)),
                      r.revoke_reason if r.revoked_at else "")
    console.print(table)


@session_app.command("revoke")
def session_revoke(tenant: Annotated[str, typer.Option()],
                   user: Annotated[Optional[str], typer.Option(help="All sessions of this user")] = None,
                   sid: Annotated[Optional[str], typer.Option(help="One session")] = None,
                   device: Annotated[Optional[str], typer.Option(help="All sessions on this device")] = None,
                   reason: Annotated[str, typer.Option(help="Shown in the audit log")] = "revoked by an administrator",
                   data_dir: DataDir = DEFAULT_DIR) -> None:
    """End sessions now: every broker resets their open connections within about a second."""
    if user is None and sid is None and device is None:
        raise _fail("say whose sessions: --user, --sid or --device")
    store, _ = _open(data_dir)
    with store:
        try:
            count = store.revoke_login_sessions(tenant, time.time(), reason, username=user,
                                                 sid=sid, device_id=device)
        except StoreError as exc:
            raise _fail(str(exc)) from None
    console.print(f"{count} session(s) revoked")
    if count == 0:
        raise typer.Exit(1)


@session_app.command("rotate-key")
def rotate_key(grace: Annotated[int, typer.Option(help="Seconds the old key stays valid")] = 3600,
               data_dir: DataDir = DEFAULT_DIR) -> None:
    """New session-token signing key; tokens of the old one stay valid for --grace seconds.
    Restart the brokers to use it."""
    try:
        ring = rotate_session_key(load_config(data_dir), time.time(), grace)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    console.print(f"new signing key {ring.active_kid}; previous accepted for {grace} s")


admin_app = typer.Typer(no_args_is_help=True, help="Tokens for the admin API (/v1/admin/...).")
admin_account_app = typer.Typer(no_args_is_help=True, help="Admin accounts (password + TOTP).")


@admin_app.command("create")
def admin_token_create(name: Annotated[str, typer.Argument(help="Who or what uses it, e.g. soc-playbook")],
                       role: Annotated[str, typer.Option(help="prefecture-operator, municipal-admin or auditor")] = "prefecture-operator",
                       tenant: Annotated[Optional[str], typer.Option(help="Scope (none: every tenant)")] = None,
                       data_dir: DataDir = DEFAULT_DIR) -> None:
    """Make an admin API token for automation; printed once (only its SHA-256 is stored).
    People log in with `POST /v1/admin/login` (password + TOTP) instead."""
    from broker.api.admin import token_hash

    store, _ = _open(data_dir)
    token = "skm_" + secrets.token_urlsafe(32)
    with store:
        try:
            store.add_admin_token(name, token_hash(token), time.time(), role=role, tenant_id=tenant)
        except (StoreError, ValueError) as exc:
            raise _fail(str(exc)) from None
    console.print(f"admin token [bold]{name}[/bold] ({role}"
                  + (f", tenant {tenant}" if tenant else ", every tenant")
                  + "; shown once; send it as Authorization: Bearer):")
    print(token)


@admin_account_app.command("add")
def admin_add(name: Annotated[str, typer.Argument(help="The admin's login name")],
              role: Annotated[str, typer.Option(help="prefecture-operator, municipal-admin or auditor")],
              tenant: Annotated[Optional[str], typer.Option(help="Scope (none: every tenant)")] = None,
              password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
              qr: Annotated[bool, typer.Option(help="Draw the TOTP QR code")] = True,
              data_dir: DataDir = DEFAULT_DIR) -> None:
    """An admin account: a password (12+ characters) and a TOTP factor; the admin API's login
    needs both."""
    import getpass
    import os
    import sys

    from broker.admin_auth import AdminIdentity, hash_password
    from broker.api.admin import ADMIN_TOTP_TENANT

    password = (sys.stdin.readline().rstrip("\r\n") if password_stdin
                else getpass.getpass("password: "))
    store, key = _open(data_dir)
    try:
        identity = AdminIdentity(name, role, tenant)
        hashed = hash_password(password, os.urandom(16))
        secret = new_secret()
        shown = enrol(secret, ADMIN_TOTP_TENANT, name)
        with store:
            store.add_admin_account(identity, hashed, seal_secret(
                secret, key, ADMIN_TOTP_TENANT, name, new_seal_nonce()), time.time())
    except (StoreError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if qr:
        print(shown.qr_text)
    console.print(f"admin [bold]{name}[/bold] ({role}" + (f", tenant {tenant}" if tenant else "") + ")")
    print(f"otpauth URI: {shown.uri}")
    print(f"secret (manual entry): {secret}")


@admin_app.command("revoke")
def admin_token_revoke(name: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    store, _ = _open(data_dir)
    with store:
        if not store.revoke_admin_token(name, time.time()):
            raise _fail(f"no live admin token named {name!r}", 1)
    console.print(f"admin token {name} revoked")
