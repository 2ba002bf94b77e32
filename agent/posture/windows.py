"""Windows posture: the commands to run and pure parsers of what they print.

PowerShell's ConvertTo-Json is preferred (not localised); the text forms of manage-bde, netsh and
powercfg are parsed in English and Japanese as fallbacks, because they are what works without
the BitLocker module or in a constrained session. Windows PowerShell 5.1 and PowerShell 7
serialise differently (booleans and enums as 1/0 or True/"On", dates as "\\/Date(ms)\\/" or
ISO 8601); both are read. No command is run here (see collect.py).
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
    as_bool,
    as_int,
    json_objects,
    known,
    label_value,
    lines,
    snippet,
    unknown,
)
from ztcore.posture import parse_version

# Setting the console encoding fails when there is no console (CREATE_NO_WINDOW): the output is
# then in the OEM code page, which the runner decodes.
_PS_PREFIX: Final = ("$ProgressPreference='SilentlyContinue'; $ErrorActionPreference='Stop'; "
                     "try { [Console]::OutputEncoding=[Text.Encoding]::UTF8 } catch {}; ")


def powershell(script: str) -> tuple[str, ...]:
    """argv running `script` in Windows PowerShell, errors terminating, output in UTF-8."""
    return ("powershell", "-NoProfile", "-NonInteractive", "-Command", _PS_PREFIX + script)


OS_INFO: Final = powershell(
    "$o = Get-CimInstance Win32_OperatingSystem; "
    "$u = (Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion' "
    "-ErrorAction SilentlyContinue).UBR; "
    "[pscustomobject]@{Caption=$o.Caption; Version=$o.Version; BuildNumber=$o.BuildNumber; "
    "UBR=$u} | ConvertTo-Json")
BITLOCKER: Final = powershell(
    "Get-BitLockerVolume -MountPoint $env:SystemDrive | Select-Object MountPoint,VolumeStatus,"
    "ProtectionStatus,EncryptionPercentage | ConvertTo-Json")
MANAGE_BDE: Final = ("manage-bde", "-status")
# The Explorer shell property needs no administrator rights, unlike the two above.
BITLOCKER_SHELL: Final = powershell(
    "(New-Object -ComObject Shell.Application).NameSpace($env:SystemDrive).Self."
    "ExtendedProperty('System.Volume.BitLockerProtection')")
DEFENDER: Final = powershell(
    "Get-MpComputerStatus | Select-Object AMServiceEnabled,AntivirusEnabled,"
    "RealTimeProtectionEnabled,AMProductVersion | ConvertTo-Json")
FIREWALL: Final = powershell("Get-NetFirewallProfile | Select-Object Name,Enabled | ConvertTo-Json")
NETSH_FIREWALL: Final = ("netsh", "advfirewall", "show", "allprofiles", "state")
HOTFIX: Final = powershell(
    "Get-HotFix | Where-Object InstalledOn | Sort-Object InstalledOn -Descending | "
    "Select-Object -First 1 HotFixID,Description,InstalledOn | ConvertTo-Json")
UTC_OFFSET: Final = powershell("Get-Date -Format zzz")
LOCK_REGISTRY: Final = powershell(
    "function v($p, $n) { (Get-ItemProperty -Path $p -Name $n -ErrorAction SilentlyContinue).$n }; "
    "$s = 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System'; "
    "$d = 'HKCU:\\Control Panel\\Desktop'; "
    "$g = 'HKCU:\\Software\\Policies\\Microsoft\\Windows\\Control Panel\\Desktop'; "
    "[pscustomobject]@{InactivityTimeoutSecs=(v $s 'InactivityTimeoutSecs'); "
    "ScreenSaveActive=(v $d 'ScreenSaveActive'); ScreenSaverIsSecure=(v $d 'ScreenSaverIsSecure'); "
    "ScreenSaveTimeOut=(v $d 'ScreenSaveTimeOut'); PolicyScreenSaveActive=(v $g 'ScreenSaveActive'); "
    "PolicyScreenSaverIsSecure=(v $g 'ScreenSaverIsSecure'); "
    "PolicyScreenSaveTimeOut=(v $g 'ScreenSaveTimeOut')} | ConvertTo-Json")
# Sleep after STANDBYIDLE, and a sign-in on wake (CONSOLELOCK), lock on every kind of machine;
# turning the display off (VIDEOIDLE) locks only on Modern Standby machines.
POWERCFG_STANDBY: Final = ("powercfg", "/query", "SCHEME_CURRENT", "SUB_SLEEP", "STANDBYIDLE")
POWERCFG_CONSOLELOCK: Final = ("powercfg", "/query", "SCHEME_CURRENT", "SUB_NONE", "CONSOLELOCK")
PROCESSES: Final = powershell("Get-Process | Select-Object -ExpandProperty ProcessName")
SERVICES: Final = powershell(
    "Get-Service | Where-Object Status -eq 'Running' | Select-Object -ExpandProperty Name")
DOMAIN: Final = powershell(
    "Get-CimInstance Win32_ComputerSystem | Select-Object PartOfDomain,Domain | ConvertTo-Json")
DSREGCMD: Final = ("dsregcmd", "/status")
HARDWARE_UUID: Final = powershell("(Get-CimInstance Win32_ComputerSystemProduct).UUID")
MACHINE_GUID: Final = powershell(
    "(Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Cryptography').MachineGuid")

_VOLUME_STATUS: Final = {0: "FullyDecrypted", 1: "FullyEncrypted", 2: "EncryptionInProgress",
                         3: "DecryptionInProgress", 4: "EncryptionPaused", 5: "DecryptionPaused"}
_PROFILES: Final = ("domain", "private", "public")
_MS_DATE: Final = re.compile(r"/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/")
_EARLIEST: Final = 946684800.0   # 2000-01-01: older dates are placeholders (DateTime.MinValue)


def _first(text: str) -> tuple[dict[str, object] | None, str]:
    objects = json_objects(text)
    if objects.value is None:
        return None, objects.error
    return objects.value[0], ""


def parse_os(text: str) -> Reading[OsInfo]:
    """Caption, Version and the registry's UBR: ("Windows 11 Pro", "10.0.22631.3880")."""
    obj, error = _first(text)
    if obj is None:
        return unknown(error)
    caption, version, ubr = obj.get("Caption"), obj.get("Version"), as_int(obj.get("UBR"))
    if not isinstance(version, str) or parse_version(version) is None:
        return unknown(f"no Version in {snippet(text)}")
    version = version.strip()
    if ubr is not None and ubr >= 0 and len(version.split(".")) == 3:
        version = f"{version}.{ubr}"
    name = caption.strip() if isinstance(caption, str) else ""
    name = name.removeprefix("Microsoft ").strip() or "Windows"
    return known(OsInfo(name, version))


def parse_bitlocker(text: str) -> Reading[DiskEncryption]:
    """Get-BitLockerVolume: encrypted when protection is on and the volume fully encrypted."""
    obj, error = _first(text)
    if obj is None:
        return unknown(error)
    protection = as_bool(obj.get("ProtectionStatus"))
    if protection is None:
        return unknown(f"ProtectionStatus unknown: {snippet(text)}")
    status = obj.get("VolumeStatus")
    number = as_int(status)
    status = _VOLUME_STATUS.get(number, "") if number is not None else str(status or "")
    percentage = obj.get("EncryptionPercentage")
    full = status == "FullyEncrypted" or (not status and percentage in (100, 100.0))
    return known(DiskEncryption(True, "BitLocker") if protection and full
                 else DiskEncryption(False, ""))


def parse_manage_bde(text: str) -> Reading[DiskEncryption]:
    """`manage-bde -status` in English or Japanese; the OS volume when several are listed."""
    blocks: list[list[str]] = [[]]
    for line in lines(text):
        if re.match(r"(Volume|ボリューム)\s+[A-Za-z]:", line) and blocks[-1]:
            blocks.append([])
        blocks[-1].append(line)
    volumes = [b for b in blocks if any(re.match(r"(Volume|ボリューム)\s+[A-Za-z]:", x) for x in b)]
    chosen = [b for b in volumes if any(re.search(r"\[OS (Volume|ボリューム)\]", x) for x in b)]
    block = (chosen or volumes or blocks)[0] if len(chosen) == 1 or len(volumes) <= 1 else None
    if block is None:
        return unknown("several volumes and none marked as the OS volume")
    fields = {}
    for line in block:
        pair = label_value(line)
        if pair is not None:
            fields[pair[0].lower()] = pair[1].lower()
    protection = fields.get("protection status", fields.get("保護状態"))
    conversion = fields.get("conversion status", fields.get("変換状態", ""))
    percent = fields.get("percentage encrypted", fields.get("暗号化された割合", ""))
    if protection is None:
        return unknown(f"no protection status in {snippet(text)}")
    if "protection off" in protection or "保護はオフ" in protection:
        return known(DiskEncryption(False, ""))
    if "protection on" not in protection and "保護はオン" not in protection:
        return unknown(f"protection status {protection!r} not recognised")
    full = any(word in conversion for word in ("fully encrypted", "used space only encrypted",
                                               "完全に暗号化", "使用済み領域のみ暗号化"))
    full = full or (not conversion and percent.startswith("100"))
    return known(DiskEncryption(True, "BitLocker") if full else DiskEncryption(False, ""))


def parse_bitlocker_shell(text: str) -> Reading[DiskEncryption]:
    """System.Volume.BitLockerProtection: 1 on, 6 on and locked; 2 off, 3 encrypting,
    4 decrypting, 5 suspended; anything else (empty, 0) says nothing."""
    value = as_int(lines(text)[0]) if lines(text) else None
    if value in (1, 6):
        return known(DiskEncryption(True, "BitLocker"))
    if value in (2, 3, 4, 5):
        return known(DiskEncryption(False, ""))
    return unknown(f"BitLockerProtection {snippet(text)} not recognised")


def parse_defender(text: str) -> Reading[bool]:
    """Get-MpComputerStatus: Defender is protecting when its service, anti-virus and real-time
    protection are all enabled (it goes passive when another product takes over)."""
    obj, error = _first(text)
    if obj is None:
        return unknown(error)
    states = [as_bool(obj.get(k)) for k in ("AMServiceEnabled", "AntivirusEnabled",
                                            "RealTimeProtectionEnabled")]
    if False in states:
        return known(False)
    if None in states:
        return unknown(f"Defender state incomplete: {snippet(text)}")
    return known(True)


def parse_firewall(text: str) -> Reading[bool]:
    """Get-NetFirewallProfile: on only when the Domain, Private and Public profiles all are."""
    objects = json_objects(text)
    if objects.value is None:
        return unknown(objects.error)
    states = {str(o.get("Name", "")).strip().lower(): as_bool(o.get("Enabled"))
              for o in objects.value}
    if False in states.values():
        return known(False)
    if all(states.get(p) is True for p in _PROFILES):
        return known(True)
    return unknown(f"profiles incomplete: {snippet(text)}")


def parse_netsh_firewall(text: str) -> Reading[bool]:
    """`netsh advfirewall show allprofiles state` in English ("State  ON") or Japanese
    ("状態  オン"); on only when all three profiles are."""
    states = []
    for line in lines(text):
        match = re.fullmatch(r"(State|状態)\s+(\S+)", line)
        if match:
            word = match[2].lower()
            states.append(True if word in ("on", "オン") else False if word in ("off", "オフ")
                          else None)
    if False in states:
        return known(False)
    if len(states) == 3 and all(states):
        return known(True)
    return unknown(f"expected three profile states: {snippet(text)}")


def _date(value: object, utc_offset_seconds: int | None) -> float | None:
    if isinstance(value, dict):
        value = value.get("value", value.get("DateTime"))
    if not isinstance(value, str):
        return None
    value = value.strip()
    match = _MS_DATE.fullmatch(value.replace("\\/", "/"))
    if match:
        when = int(match[1]) / 1000
        return when if when >= _EARLIEST else None
    value = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        if utc_offset_seconds is None:
            return None
        parsed = parsed.replace(tzinfo=timezone(timedelta(seconds=utc_offset_seconds)))
    when = parsed.timestamp()
    return when if when >= _EARLIEST else None


def parse_hotfix(text: str, utc_offset_seconds: int | None) -> Reading[float]:
    """The newest Get-HotFix InstalledOn ("\\/Date(1718236800000)\\/", or ISO 8601 from
    PowerShell 7, local time unless it carries an offset). Monthly cumulative updates are
    security updates; Defender's signature updates are not hotfixes."""
    objects = json_objects(text)
    if objects.value is None:
        return unknown(objects.error)
    times = [_date(o.get("InstalledOn"), utc_offset_seconds) for o in objects.value]
    found = [t for t in times if t is not None]
    if not found:
        local = " (local time, UTC offset unknown)" if utc_offset_seconds is None else ""
        return unknown(f"no usable InstalledOn{local} in {snippet(text)}")
    return known(max(found))


def parse_lock_registry(text: str) -> Reading[ScreenLock]:
    """The registry's idle locks: the machine inactivity limit (InactivityTimeoutSecs) and a
    password-protected screen saver (policy values over the user's)."""
    obj, error = _first(text)
    if obj is None:
        return unknown(error)

    def pick(name: str) -> object:
        policy = obj.get("Policy" + name)
        return policy if policy not in (None, "") else obj.get(name)

    timeouts = []
    inactivity = as_int(obj.get("InactivityTimeoutSecs"))
    if inactivity is not None and inactivity > 0:
        timeouts.append(inactivity)
    saver = as_int(pick("ScreenSaveTimeOut"))
    if as_bool(pick("ScreenSaveActive")) and as_bool(pick("ScreenSaverIsSecure")) and saver \
            and saver > 0:
        timeouts.append(saver)
    return known(ScreenLock(True, min(timeouts)) if timeouts else ScreenLock(False, None))


def parse_powercfg(text: str) -> Reading[tuple[int, int]]:
    """(AC, DC) indexes of one `powercfg /query` setting, in any language: only the AC/DC token
    and the hex value are stable ("Current AC Power Setting Index: 0x0000012c",
    "現在の AC 電源設定のインデックス: 0x0000012c")."""
    found: dict[str, int] = {}
    for line in lines(text):
        match = re.search(r"\b(AC|DC)\b[^:：]*[:：]\s*0x([0-9a-fA-F]{1,8})\s*$", line)
        if match:
            found.setdefault(match[1], int(match[2], 16))
    if "AC" not in found or "DC" not in found:
        return unknown(f"no AC/DC setting index in {snippet(text)}")
    return known((found["AC"], found["DC"]))


def combine_screen_lock(registry: Reading[ScreenLock], standby: Reading[tuple[int, int]],
                        consolelock: Reading[tuple[int, int]]) -> Reading[ScreenLock]:
    """The earliest idle lock: registry locks, or sleeping with a sign-in required on wake in
    both power states (0 = never sleeps). Off only when every source is known and none locks."""
    timeouts = []
    if registry.value is not None and registry.value.enabled:
        timeouts.append(registry.value.timeout_seconds)
    if standby.value is not None and consolelock.value is not None:
        sleeps = [s for s, lock in zip(standby.value, consolelock.value) if s > 0 and lock == 1]
        if len(sleeps) == 2:
            timeouts.append(max(sleeps))
    if timeouts:
        numbers = [t for t in timeouts if t is not None]
        return known(ScreenLock(True, min(numbers) if numbers else None))
    missing = [r.error for r in (registry, standby, consolelock) if r.value is None]
    if missing:
        return unknown("; ".join(missing))
    return known(ScreenLock(False, None))


def parse_domain(text: str) -> Reading[DomainInfo]:
    """Win32_ComputerSystem PartOfDomain and Domain (a workgroup name when not joined)."""
    obj, error = _first(text)
    if obj is None:
        return unknown(error)
    joined, domain = as_bool(obj.get("PartOfDomain")), obj.get("Domain")
    if joined is None:
        return unknown(f"PartOfDomain unknown: {snippet(text)}")
    if joined:
        return known(DomainInfo(True, domain.strip() if isinstance(domain, str) else ""))
    return known(DomainInfo(False, ""))


def parse_dsregcmd(text: str) -> Reading[DomainInfo]:
    """`dsregcmd /status`: Entra ID (Azure AD) join, and the tenant's name."""
    fields: dict[str, str] = {}
    for line in lines(text):
        pair = label_value(line)
        if pair is not None:
            fields.setdefault(pair[0].lower(), pair[1])
    joined = as_bool(fields.get("azureadjoined", ""))
    if joined is None:
        return unknown(f"no AzureAdJoined in {snippet(text)}")
    if not joined:
        return known(DomainInfo(False, ""))
    return known(DomainInfo(True, fields.get("tenantname") or fields.get("domainname") or ""))
