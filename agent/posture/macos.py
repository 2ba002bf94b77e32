"""macOS posture: the commands to run and pure parsers of what they print.

The tools print English whatever the user's language (sw_vers, fdesetup, socketfilterfw,
sysadminctl, ioreg), except softwareupdate's dates, which follow the user's region: the
US form (06/13/2024, 10:21:47) and the Japanese one (2024/06/13 10:21:47) are read. No command
is run here (see collect.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Final

from agent.posture.findings import (
    DiskEncryption,
    DomainInfo,
    OsInfo,
    Reading,
    ScreenLock,
    as_int,
    clean,
    known,
    label_value,
    lines,
    parse_uuid,
    snippet,
    unknown,
)
from ztcore.posture import parse_version

SW_VERS: Final = ("sw_vers",)
FDESETUP: Final = ("fdesetup", "status")
SOCKETFILTERFW: Final = ("/usr/libexec/ApplicationFirewall/socketfilterfw", "--getglobalstate")
DSCONFIGAD: Final = ("dsconfigad", "-show")
IOREG: Final = ("ioreg", "-rd1", "-c", "IOPlatformExpertDevice")
SYSTEM_PROFILER: Final = ("system_profiler", "SPHardwareDataType")
SOFTWAREUPDATE_HISTORY: Final = ("softwareupdate", "--history")
SCREEN_LOCK: Final = ("sysadminctl", "-screenLock", "status")   # answers on stderr
SCREENSAVER_IDLE: Final = ("defaults", "-currentHost", "read", "com.apple.screensaver", "idleTime")
PMSET: Final = ("pmset", "-g")
PROCESSES: Final = ("ps", "-axo", "comm=")
UTC_OFFSET: Final = ("date", "+%z")

# OS patches. XProtect, MRT and Gatekeeper data are signature updates that arrive whatever the
# OS patch level, so they would make a never-patched Mac look current.
_SECURITY_TITLES: Final = re.compile(
    r"^(macOS|OS X|Security Update|Security Response|Rapid Security Response|"
    r"Background Security Improvement)\b", re.IGNORECASE)
_DATE_FORMATS: Final = ("%m/%d/%Y, %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S",
                        "%Y/%m/%d, %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y, %H:%M:%S")


def parse_sw_vers(text: str) -> Reading[OsInfo]:
    """ProductName / ProductVersion / BuildVersion: ("macOS (build 23F79)", "14.5")."""
    fields = {}
    for line in lines(text):
        pair = label_value(line)
        if pair is not None:
            fields[pair[0]] = pair[1]
    name, version = fields.get("ProductName", ""), fields.get("ProductVersion", "")
    if not name or parse_version(version) is None:
        return unknown(f"no ProductName/ProductVersion in {snippet(text)}")
    build = fields.get("BuildVersion", "")
    return known(OsInfo(f"{name} (build {build})" if build else name, version))


def parse_fdesetup(text: str) -> Reading[DiskEncryption]:
    """`fdesetup status`: "FileVault is On." only when fully on; "Off", "On, but ..." (a pending
    change), "Encryption in progress" and "Decryption in progress" are not encrypted yet."""
    body = " ".join(lines(text))
    state = re.search(r"FileVault is (On|Off)(\S?)", body)
    if state is None:
        return unknown(f"unrecognised fdesetup output: {snippet(text)}")
    if state[1] == "Off" or "in progress" in body.lower() or state[2] != ".":
        return known(DiskEncryption(False, ""))
    return known(DiskEncryption(True, "FileVault"))


def parse_socketfilterfw(text: str) -> Reading[bool]:
    """"Firewall is enabled. (State = 1)" (2: block all incoming), "... disabled. (State = 0)"."""
    body = " ".join(lines(text))
    match = re.search(r"State\s*=\s*(\d+)", body)
    if match:
        return known(int(match[1]) > 0)
    if re.search(r"Firewall is (enabled|blocking)", body):
        return known(True)
    if "Firewall is disabled" in body:
        return known(False)
    return unknown(f"unrecognised socketfilterfw output: {snippet(text)}")


def parse_dsconfigad(text: str) -> Reading[DomainInfo]:
    """`dsconfigad -show`: nothing when the Mac is not bound to Active Directory, else
    "Active Directory Domain = corp.example.lg.jp" among others."""
    if not lines(text):
        return known(DomainInfo(False, ""))
    for line in lines(text):
        name, _, value = line.partition("=")
        if name.strip() == "Active Directory Domain" and value.strip():
            return known(DomainInfo(True, value.strip()))
    return unknown(f"no Active Directory Domain in {snippet(text)}")


def parse_ioreg_uuid(text: str) -> Reading[str]:
    """`ioreg -rd1 -c IOPlatformExpertDevice`: "IOPlatformUUID" = "564D...". """
    match = re.search(r'"IOPlatformUUID"\s*=\s*"([^"]*)"', clean(text))
    if match is None:
        return unknown(f"no IOPlatformUUID in {snippet(text)}")
    return parse_uuid(match[1])


def parse_system_profiler_uuid(text: str) -> Reading[str]:
    """`system_profiler SPHardwareDataType`: "Hardware UUID: 564D...". """
    for line in lines(text):
        pair = label_value(line)
        if pair is not None and pair[0] == "Hardware UUID":
            return parse_uuid(pair[1])
    return unknown(f"no Hardware UUID in {snippet(text)}")


def _local_time(text: str, utc_offset_seconds: int) -> float | None:
    zone = timezone(timedelta(seconds=utc_offset_seconds))
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=zone).timestamp()
        except ValueError:
            continue
    return None


def parse_softwareupdate_history(text: str, utc_offset_seconds: int) -> Reading[float]:
    """The newest OS security update in `softwareupdate --history`: a table of Display Name,
    Version and Date columns, dates in local time."""
    newest: float | None = None
    rows = 0
    for line in lines(text):
        match = re.match(r"(.+?)\s{2,}(?:(\S+)\s{2,})?(\d[\d/.,: -]+\d)$", line)
        if match is None or line.startswith(("Display Name", "---")):
            continue
        when = _local_time(match[3].strip(), utc_offset_seconds)
        if when is None:
            continue
        rows += 1
        if _SECURITY_TITLES.match(match[1].strip()) and (newest is None or when > newest):
            newest = when
    if newest is None:
        why = "no macOS or security update" if rows else "no dated update"
        return unknown(f"{why} in the history: {snippet(text)}")
    return known(newest)


def parse_screen_lock(text: str) -> Reading[ScreenLock]:
    """`sysadminctl -screenLock status` (NSLog lines on stderr): "screenLock delay is 300
    seconds" / "... is immediate" / "screenLock is off". The delay counts from the moment the
    screen saver starts or the display sleeps; collect.py adds that idle time."""
    body = clean(text)
    if re.search(r"screenLock is off", body, re.IGNORECASE):
        return known(ScreenLock(False, None))
    match = re.search(r"screenLock delay is (immediate|-?\d+(?:\.\d+)?)(?: seconds?)?", body,
                      re.IGNORECASE)
    if match is None:
        return unknown(f"unrecognised sysadminctl output: {snippet(text)}")
    if match[1].lower() == "immediate":
        return known(ScreenLock(True, 0))
    delay = float(match[1])
    if delay < 0:
        return known(ScreenLock(False, None))
    return known(ScreenLock(True, int(delay)))


def parse_idle_seconds(text: str) -> Reading[int]:
    """`defaults -currentHost read com.apple.screensaver idleTime`: seconds, 0 = never."""
    value = as_int(lines(text)[0]) if len(lines(text)) == 1 else None
    if value is None or value < 0:
        return unknown(f"no screen saver idle time: {snippet(text)}")
    return known(value)


def parse_display_sleep(text: str) -> Reading[int]:
    """`pmset -g`: " displaysleep         10" minutes (0 = never), as seconds."""
    for line in lines(text):
        match = re.match(r"displaysleep\s+(\d+)\b", line)
        if match:
            return known(int(match[1]) * 60)
    return unknown(f"no displaysleep in {snippet(text)}")


def combine_screen_lock(lock: Reading[ScreenLock], idle: Reading[int],
                        display_sleep: Reading[int]) -> Reading[ScreenLock]:
    """The password is asked `delay` seconds after the screen saver starts or the display
    sleeps, whichever comes first; neither ever starting means no idle lock."""
    if lock.value is None or not lock.value.enabled:
        return lock
    starts = [r.value for r in (idle, display_sleep) if r.value is not None and r.value > 0]
    delay = lock.value.timeout_seconds or 0
    if starts:
        return known(ScreenLock(True, min(starts) + delay))
    if idle.value is not None and display_sleep.value is not None:
        return known(ScreenLock(False, None))
    return known(ScreenLock(True, None))
