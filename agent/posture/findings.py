"""What one posture parser established, and the text handling every parser shares.

A parser turns one command's output (or one file) into a `Reading`: a value, or None and the
reason it could not tell. Parsers never raise on bad input and never guess: text they do not
recognise is an unknown with an error quoting a little of it. This module does no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")
_SNIPPET: Final = 60
_OFFSET: Final = re.compile(r"([+-])(\d\d):?(\d\d)")
_UUID: Final = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Reading(Generic[T]):
    """A fact as one source saw it: `value`, or None with `error` saying why it is unknown."""

    value: T | None
    error: str = ""


def known(value: T) -> Reading[T]:
    return Reading(value)


def unknown(error: str) -> Reading[T]:
    return Reading(None, error or "unknown")


@dataclass(frozen=True, slots=True)
class OsInfo:
    name: str                 # "Windows 11 Pro", "macOS (build 23F79)", "Debian GNU/Linux 12 (bookworm)"
    version: str              # dotted numbers: "10.0.22631.3880", "14.5", "12.11"


@dataclass(frozen=True, slots=True)
class DiskEncryption:
    encrypted: bool
    method: str               # "BitLocker", "FileVault", "LUKS", "dm-crypt" or "" when not encrypted


@dataclass(frozen=True, slots=True)
class ScreenLock:
    enabled: bool             # the screen locks by itself after some idle time
    timeout_seconds: int | None  # idle seconds until it locks (None: locks, but when is unknown)


@dataclass(frozen=True, slots=True)
class DomainInfo:
    joined: bool
    domain: str               # "corp.example.lg.jp", or "" when not joined


def clean(text: str) -> str:
    """Text without a UTF-8 byte order mark, NULs or CR line ends (PowerShell and cmd output)."""
    return text.replace("\ufeff", "").replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def lines(text: str) -> list[str]:
    """The stripped, non-empty lines of `text`."""
    return [line.strip() for line in clean(text).split("\n") if line.strip()]


def snippet(text: str) -> str:
    """A short, printable quote of `text` for an error message."""
    flat = " ".join(clean(text).split())
    if not flat:
        return "empty output"
    return repr(flat[:_SNIPPET] + ("..." if len(flat) > _SNIPPET else ""))


def label_value(line: str) -> tuple[str, str] | None:
    """("Protection Status", "Protection On") from "Protection Status:  Protection On"; also the
    full-width colon of Japanese output. None when the line has no colon."""
    match = re.search(r"[:：]", line)
    if match is None:
        return None
    return line[:match.start()].strip(), line[match.end():].strip()


def load_json(text: str) -> Reading[object]:
    """The JSON value in `text` (PowerShell's ConvertTo-Json, `nft -j`, `lsblk -J`)."""
    body = clean(text).strip()
    if not body:
        return unknown("empty output")
    try:
        return known(json.loads(body))
    except (ValueError, RecursionError):
        return unknown(f"not JSON: {snippet(body)}")


def json_objects(text: str) -> Reading[list[dict[str, object]]]:
    """ConvertTo-Json prints one object bare and several as an array; both as a list here."""
    loaded = load_json(text)
    if loaded.value is None:
        return unknown(loaded.error)
    items = loaded.value if isinstance(loaded.value, list) else [loaded.value]
    if not items or not all(isinstance(item, dict) for item in items):
        return unknown(f"expected JSON objects: {snippet(text)}")
    return known([item for item in items if isinstance(item, dict)])


def as_bool(value: object) -> bool | None:
    """PowerShell booleans and enums as they serialise: true/false, 1/0, "True"/"On"/"Yes"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return True if value == 1 else False if value == 0 else None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "on", "yes", "1", "enabled"):
            return True
        if word in ("false", "off", "no", "0", "disabled"):
            return False
    return None


def as_int(value: object) -> int | None:
    """A whole number from a JSON number or a decimal string (registry REG_SZ values)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,12}\s*", value):
        return int(value)
    return None


def parse_utc_offset(text: str) -> Reading[int]:
    """Seconds east of UTC from `date +%z` ("+0900", "-0500")."""
    match = _OFFSET.fullmatch(clean(text).strip())
    if match is None:
        return unknown(f"unrecognised UTC offset: {snippet(text)}")
    sign = -1 if match[1] == "-" else 1
    hours, minutes = int(match[2]), int(match[3])
    if hours > 14 or minutes > 59:
        return unknown(f"UTC offset out of range: {snippet(text)}")
    return known(sign * (hours * 3600 + minutes * 60))


def parse_names(text: str) -> Reading[tuple[str, ...]]:
    """One name a line (`ps -o comm=`, `Get-Process | Select-Object -ExpandProperty ...`)."""
    names = tuple(dict.fromkeys(lines(text)))
    if not names:
        return unknown("no names listed")
    return known(names)


def parse_uuid(text: str) -> Reading[str]:
    """A hardware UUID (SMBIOS, IOPlatformUUID, MachineGuid). All-zero and all-F UUIDs are what
    firmware without one reports: unknown, not an id shared by every such machine."""
    value = clean(text).strip()
    if not _UUID.fullmatch(value):
        return unknown(f"not a UUID: {snippet(text)}")
    digits = value.replace("-", "").lower()
    if len(set(digits)) == 1:
        return unknown(f"placeholder UUID {value}")
    return known(value)


def parse_machine_id(text: str) -> Reading[str]:
    """systemd's /etc/machine-id: 32 lower-case hex digits."""
    value = clean(text).strip()
    if not _HEX32.fullmatch(value) or len(set(value)) == 1:
        return unknown(f"not a machine id: {snippet(text)}")
    return known(value)
