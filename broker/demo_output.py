"""What the demo prints: the table of checks with every reason in Japanese and English, and the
audit events the SOC would receive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from broker.demo import AgentProcess, Check


def print_checks(console: Console, checks: list[Check], agent: AgentProcess) -> None:
    table = Table(title="Sekimori demo — デモ市 / yamada-taro's laptop")
    for col in ("check", "destination", "expected", "got", "reason", ""):
        table.add_column(col)
    for c in checks:
        table.add_row(c.name, c.target, c.expect, c.got, c.reason,
                      "[green]ok[/green]" if c.ok else "[red]FAIL[/red]")
    console.print(table)
    from ztcore.reasons import REASON_TEXT, Reason
    for reason in sorted({c.reason for c in checks if c.reason}):
        text = REASON_TEXT[Reason(reason)]
        console.print(f"  [bold]{reason}[/bold]: {text.ja} / {text.en}")


def print_audit(console: Console, path: Path) -> None:
    """What the SOC sees: the broker's audit events of this demo, one row per event."""
    lines = path.read_text().splitlines() if path.exists() else []
    table = Table(title=f"audit log (what the SOC receives): {path}")
    for col in ("time", "kind", "user", "destination", "decision", "reason", "bytes ↑/↓"):
        table.add_column(col)
    for line in lines[-14:]:
        event = json.loads(line)
        table.add_row(event["time_iso"][11:23], event["kind"], event.get("user", "-"),
                      event.get("destination", "-"),
                      event.get("decision", "-"), event.get("reason", "-"),
                      f"{event.get('bytes_up', 0)}/{event.get('bytes_down', 0)}")
    console.print(table)
