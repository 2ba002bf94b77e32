"""Shared by the posture parser tests: the recorded outputs, Japan time, and the two checks every
table of recorded outputs runs (the value, and that line ends, a BOM and blank lines do not
change it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.posture.findings import Reading

SAMPLES = Path(__file__).parent / "posture_samples"
JST = 9 * 3600


def sample(name: str) -> str:
    return (SAMPLES / name).read_bytes().decode("utf-8")


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second,
                    tzinfo=timezone(timedelta(hours=9))).timestamp()


def check_recorded(name: str, parse: Callable[[str], Reading[Any]], expected: object) -> None:
    reading = parse(sample(name))
    assert reading.value == expected
    assert bool(reading.error) == (expected is None)


def check_variants(name: str, parse: Callable[[str], Reading[Any]], expected: object) -> None:
    text = sample(name)
    for variant in (text.replace("\n", "\r\n"), "\ufeff" + text, "\n" + text + "  \n\n"):
        assert parse(variant).value == expected
