"""`sekimori-agent`: enrol this device, log in, run the agent, show its status."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from agent.config import DEFAULT_PROXY_PORT, AgentConfig
from agent.pac import render_pac
from agent.runtime.app import load_config, run_agent
from agent.runtime.enrol import EnrolmentError, enrol
from agent.runtime.login import LoginError, login_methods, login_oidc, login_password, logout
from agent.runtime.proxy import STATUS_PATH
from ztcore.errors import ConfigError
from ztcore.runtime.loop import LoopOption, setup_logging
from ztcore.runtime.loop import run as run_loop

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Sekimori agent: tunnels this device's traffic to the Sekimori broker.")
# Scripts and logs are not terminals: rich would wrap at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="SEKIMORI_AGENT_DIR",
                                       help="Where the device key, certificate and settings live.")]
DEFAULT_DIR = Path.home() / ".sekimori-agent"


@app.command()
def enroll(broker: Annotated[str, typer.Option(help="Broker enrolment URL, https://host:port")],
           code: Annotated[str, typer.Option(help="One-time enrolment code from your admin")],
           ca_pin: Annotated[Optional[str], typer.Option(help="Broker CA pin (sha256:...)")] = None,
           ca_file: Annotated[Optional[Path], typer.Option(help="Broker CA certificate file")] = None,
           hostname: Annotated[Optional[str], typer.Option(help="Device name to register")] = None,
           proxy_port: Annotated[int, typer.Option(help="Local proxy port")] = DEFAULT_PROXY_PORT,
           data_dir: DataDir = DEFAULT_DIR) -> None:
    """Make a key pair on this device and enrol it with a one-time code."""
    try:
        result = enrol(broker, code, data_dir, ca_pin=ca_pin, ca_file=ca_file, hostname=hostname)
    except EnrolmentError as exc:
        console.print(f"[red]enrolment failed:[/red] {exc}")
        raise typer.Exit(2) from None
    if proxy_port != DEFAULT_PROXY_PORT:
        cfg_path = data_dir / "agent.json"
        raw = json.loads(cfg_path.read_text())
        raw["proxy_port"] = proxy_port
        cfg_path.write_text(json.dumps(raw, indent=2))
    cfg = result.config
    console.print(f"[green]enrolled[/green] device {cfg.device_id} in tenant {cfg.tenant_id}; "
                  f"certificate valid until {result.certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


@app.command("run")
def run_cmd(data_dir: DataDir = DEFAULT_DIR,
            verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
            loop: LoopOption = "auto") -> None:
    """Run the local proxy and the tunnel (until Ctrl-C / SIGTERM)."""
    setup_logging(verbose)
    config = _load(data_dir)
    console.print(f"Sekimori agent: proxy http://{config.proxy_host}:{config.proxy_port} "
                  f"(PAC /proxy.pac) → broker {config.broker}")
    run_loop(run_agent(config), use_uvloop=loop != "asyncio")


def _load(data_dir: Path) -> AgentConfig:
    """The agent's settings, or exit 2 saying what is wrong (not enrolled, a bad file)."""
    try:
        return load_config(data_dir)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def fetch_status(host: str, port: int) -> dict[str, Any] | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{host}:{port}{STATUS_PATH.decode()}", timeout=3) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _refused(what: str, exc: LoginError) -> typer.Exit:
    d = exc.decision
    console.print(f"[red]{what}: {d.reason.value}[/red]\n  {d.message_ja}\n  {d.message_en}")
    if d.detail:
        console.print(f"  [dim]{d.detail}[/dim]")
    return typer.Exit(3)


def posture_rows(posture: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The status lines about the device's posture: the verdict, and for each failed check what
    is wrong and what to do, in Japanese and English; then the facts the broker judged."""
    if not posture:
        return []
    rows: list[tuple[str, str]] = []
    verdict = posture.get("verdict") or {}
    if verdict:
        if verdict.get("compliant"):
            rows.append(("端末の状態 / posture", "[green]要件を満たしています / compliant[/green]"))
        else:
            rows.append(("端末の状態 / posture", "[red]要件を満たしていません / not compliant[/red]"))
        for failed in verdict.get("failed", []):
            rows.append((f"  ✗ {failed.get('check', '?')}",
                         f"{failed.get('message_ja', '')} / {failed.get('message_en', '')}"))
            rows.append(("    対処 / fix", f"{failed.get('fix_ja', '')}"))
            rows.append(("", f"{failed.get('fix_en', '')}"))
            if failed.get("detail"):
                rows.append(("", f"[dim]{failed['detail']}[/dim]"))
    elif posture.get("reports_sent", 0) == 0:
        rows.append(("端末の状態 / posture", "[yellow]未報告 / not reported yet[/yellow]"))
    if posture.get("last_error"):
        rows.append(("posture error", str(posture["last_error"])))
    facts = posture.get("facts") or {}
    if facts:
        def known(value: object) -> str:
            return "?" if value is None else ("on" if value is True else "off" if value is False
                                              else str(value))
        rows.append(("OS", f"{facts.get('os_name', '')} {facts.get('os_version', '')}".strip()))
        rows.append(("disk / firewall", f"encryption {known(facts.get('disk_encrypted'))}"
                                        f" {facts.get('encryption_method') or ''}, "
                                        f"firewall {known(facts.get('firewall_on'))}"))
        lock = facts.get("screen_lock_timeout_seconds")
        rows.append(("screen lock", f"{known(facts.get('screen_lock'))}"
                                    + (f" after {lock} s" if lock is not None else "")))
        rows.append(("EDR / AV", ", ".join(facts.get("edr_running") or []) or "none found"))
    return rows


def _time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


@app.command()
def login(data_dir: DataDir = DEFAULT_DIR,
          method: Annotated[Optional[str], typer.Option(help="Login method name (see the list)")] = None,
          username: Annotated[Optional[str], typer.Option(help="Directory user name")] = None,
          password_stdin: Annotated[bool, typer.Option(
              "--password-stdin", help="Read the password from standard input (one line)")] = False,
          totp: Annotated[Optional[str], typer.Option(help="6-digit one-time code")] = None,
          no_browser: Annotated[bool, typer.Option(
              "--no-browser", help="SSO: print the login URL instead of opening a browser")] = False,
          timeout: Annotated[float, typer.Option(help="SSO: seconds to wait for the browser")] = 300) -> None:
    """Log in: Active Directory password + one-time code, or single sign-on in the browser."""
    config = _load(data_dir)
    try:
        methods = asyncio.run(login_methods(config))
    except LoginError as exc:
        raise _refused("ログインできません / cannot log in", exc) from None
    if not methods:
        console.print("[red]この自治体ではログイン方法が設定されていません / "
                      "no login method is configured for your organisation[/red]")
        raise typer.Exit(3)
    chosen = next((m for m in methods if m.get("name") == method), None) if method else methods[0]
    if chosen is None:
        names = ", ".join(m.get("name", "?") for m in methods)
        console.print(f"[red]unknown method {method!r}; available: {names}[/red]")
        raise typer.Exit(2)
    try:
        if chosen.get("kind") == "oidc":
            def show(url: str) -> None:
                console.print("ブラウザでログインしてください / Log in in your browser:")
                print(url, flush=True)
            session = asyncio.run(login_oidc(config, chosen["name"], open_browser=not no_browser,
                                             show_url=show, timeout_seconds=timeout))
        else:
            user = username or typer.prompt("ユーザー名 / user name")
            if password_stdin:
                secret = sys.stdin.readline().rstrip("\r\n")
            else:
                secret = getpass.getpass("パスワード / password: ")
            code = totp if totp is not None else typer.prompt(
                "ワンタイムコード / one-time code (TOTP)", default="", show_default=False)
            session = asyncio.run(login_password(config, chosen["name"], user, secret, code.strip()))
    except LoginError as exc:
        raise _refused("ログインできませんでした / login refused", exc) from None
    console.print(f"[green]ログインしました / logged in[/green]: {session.display_name or session.user} "
                  f"({session.user}) via {session.idp} ({', '.join(session.methods)}), "
                  f"until {_time(session.session_expires_at)}")


@app.command("logout")
def logout_cmd(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Log out: end the session at the broker and forget it on this device."""
    config = _load(data_dir)
    try:
        had = asyncio.run(logout(config))
    except LoginError as exc:
        raise _refused("ログアウトをブローカーに伝えられませんでした（この端末からは削除しました） / "
                       "the broker did not confirm the logout (removed from this device)", exc) from None
    console.print("ログアウトしました / logged out" if had else "ログインしていません / not logged in")


@app.command()
def status(data_dir: DataDir = DEFAULT_DIR,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Is the tunnel up, to which broker, since when; the last refusal and why."""
    config = _load(data_dir)
    info = fetch_status(config.proxy_host, config.proxy_port)
    if as_json:
        print(json.dumps(info or {"state": "not-running"}, ensure_ascii=False, indent=2))
        raise typer.Exit(0 if info and info["state"] == "connected" else 1)
    table = Table(show_header=False, box=None)
    if info is None:
        table.add_row("状態 / state", "[red]エージェント停止中 / agent not running[/red]")
        table.add_row("broker", config.broker)
        table.add_row("device", f"{config.device_id} (tenant {config.tenant_id})")
        console.print(table)
        raise typer.Exit(1)
    colour = "green" if info["state"] == "connected" else "red"
    state_ja = {"connected": "接続中", "connecting": "接続試行中",
                "disconnected": "切断（通信は遮断されます）"}.get(info["state"], info["state"])
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"])) if info["since"] else "-"
    table.add_row("状態 / state", f"[{colour}]{state_ja} / {info['state']}[/{colour}]")
    table.add_row("broker", info["broker"])
    table.add_row("since", since)
    table.add_row("device", f"{info['device']} (tenant {info['tenant']})")
    table.add_row("proxy", f"http://{info['proxy']}  PAC: http://{info['proxy']}/proxy.pac")
    if info.get("certificate_not_after"):
        table.add_row("certificate until",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(info["certificate_not_after"])))
    session = info.get("session")
    if session:
        table.add_row("user", f"{session['display_name'] or session['user']} ({session['user']}) "
                              f"via {session['idp']}")
        table.add_row("methods", ", ".join(session["methods"]) + ("  (MFA)" if session["mfa"] else ""))
        table.add_row("session until", _time(session["session_expires_at"]))
    else:
        table.add_row("user", "[yellow]ログインしていません / not logged in[/yellow] "
                              "(sekimori-agent login)")
    for label, value in posture_rows(info.get("posture")):
        table.add_row(label, value)
    for label, value in routing_rows(info.get("routing"), info.get("dns")):
        table.add_row(label, value)
    if info.get("last_error"):
        table.add_row("last error", info["last_error"])
    denial = info.get("last_denial") or {}
    if denial:
        table.add_row("last refusal", f"{denial['destination']}: [bold]{denial['reason']}[/bold]")
        table.add_row("", denial["message_ja"])
        table.add_row("", denial["message_en"])
        if denial.get("detail"):
            table.add_row("", denial["detail"])
    console.print(table)
    raise typer.Exit(0 if info["state"] == "connected" else 1)


def routing_rows(routing: dict[str, Any] | None, dns: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Status lines about breakout rules, bypass modes and split DNS."""
    if not routing:
        return []
    rules, bypass, direct = routing["rules"], routing["bypass"], routing["direct"]
    rows = [("breakout", f"{rules['breakout_rules']} rules (version {rules['version'] or '-'}, "
                         f"Microsoft data {rules['microsoft_data']}); direct now "
                         f"{direct['open']}, total {direct['total']}")]
    if rules.get("last_error"):
        rows.append(("rules error", str(rules["last_error"])))
    if bypass.get("mode") == "override":
        rows.append(("override", f"[yellow]制御解除中 / enforcement lifted until "
                                 f"{_time(bypass['override_until'])}[/yellow]"))
    if bypass.get("window_until"):
        rows.append(("captive portal", f"[yellow]直接接続を一時許可中 / window open until "
                                       f"{_time(bypass['window_until'])}[/yellow]"))
    events = routing.get("events") or {}
    if events.get("pending"):
        rows.append(("events", f"{events['pending']} waiting for the broker"))
    if dns:
        rows.append(("split DNS", f"{dns['listen']} (answered {dns['answered']}, forwarded "
                                  f"{dns['forwarded']}, dropped {dns['dropped']})"))
    return rows


def _local_post(config: AgentConfig, path: str, headers: dict[str, str]) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://{config.proxy_host}:{config.proxy_port}{path}",
                                     data=b"", headers={"sekimori-local-control": "1", **headers},
                                     method="POST")
    try:
        with opener.open(request, timeout=10) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read() or b"{}"))
    except OSError:
        raise _refused_plain("エージェントが動いていません / the agent is not running") from None


def _refused_plain(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(1)


def _show_answer(answer: dict[str, Any]) -> None:
    colour = "green" if answer.get("ok") else "red"
    console.print(f"[{colour}]{answer.get('message_ja', '')}[/{colour}]")
    console.print(f"[{colour}]{answer.get('message_en', '')}[/{colour}] ({answer.get('reason')})")
    raise typer.Exit(0 if answer.get("ok") else 1)


@app.command("captive-portal")
def captive_portal(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Open the time-limited window for a hotel or station Wi-Fi login page (only while the
    broker cannot be reached; web ports only; logged and reported)."""
    _show_answer(_local_post(_load(data_dir), "/__sekimori/captive-portal", {}))


@app.command()
def override(code: Annotated[Optional[str], typer.Argument(help="The code your IT desk read out")] = None,
             clear: Annotated[bool, typer.Option("--clear", help="End the override now")] = False,
             data_dir: DataDir = DEFAULT_DIR) -> None:
    """Apply an administrator's override code: enforcement on this device is lifted until the
    code's time is up (it works without the broker; logged and reported)."""
    config = _load(data_dir)
    if clear:
        _show_answer(_local_post(config, "/__sekimori/override/clear", {}))
    if not code:
        raise _refused_plain("give the code, or --clear")
    _show_answer(_local_post(config, "/__sekimori/override", {"sekimori-override-code": code}))


@app.command()
def pac(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Print the PAC file the agent serves (with its breakout rules when it is running)."""
    try:
        config = load_config(data_dir)
        host, port = config.proxy_host, config.proxy_port
    except ConfigError:
        host, port = "127.0.0.1", DEFAULT_PROXY_PORT
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{host}:{port}/proxy.pac", timeout=5) as r:
            print(r.read().decode("utf-8"), end="")
            return
    except OSError:
        print("// the agent is not running: no breakout rules in this PAC", file=sys.stderr)
    print(render_pac(host, port), end="")


def main() -> None:
    app()
