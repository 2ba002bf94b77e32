"""Posture collection: run each OS's commands through a Runner and combine what the parsers say.

Pure but for the Runner, which does the I/O (agent/runtime/posture_runner.py runs real commands;
tests pass recorded outputs). Every failure (a missing tool, a timeout, a refusal, output not
understood, even a bug in a parser) leaves that fact unknown (None) with an entry in `errors`
saying why; collection itself never raises and never guesses. When a source fails and a
fallback answers, the fact is known and the failure is not reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from agent.posture import linux, macos, windows
from agent.posture.findings import (
    DiskEncryption,
    DomainInfo,
    OsInfo,
    Reading,
    ScreenLock,
    known,
    lines,
    parse_machine_id,
    parse_names,
    parse_utc_offset,
    parse_uuid,
    unknown,
)
from agent.posture.products import PRODUCTS, Product, running_products
from ztcore.posture import MAX_LIST, MAX_TEXT, OS_FAMILIES, PostureFacts, parse_version

T = TypeVar("T")
TIMEOUT_SECONDS: Final = 15.0
SLOW_TIMEOUT_SECONDS: Final = 60.0
MAX_LOCK_SECONDS: Final = 10**7          # PostureFacts' bound

# Sources that change rarely and cost a lot (a second or more of CPU): a Runner may answer them
# from a cache for some minutes. Firewall, encryption, screen lock and processes are not here:
# turning one of them off must show in the next report.
RARELY_CHANGING: Final[frozenset[tuple[str, ...]]] = frozenset({
    windows.OS_INFO, windows.HOTFIX, windows.UTC_OFFSET, windows.DOMAIN, windows.DSREGCMD,
    windows.HARDWARE_UUID, windows.MACHINE_GUID,
    macos.SW_VERS, macos.SOFTWAREUPDATE_HISTORY, macos.UTC_OFFSET, macos.DSCONFIGAD, macos.IOREG,
    macos.SYSTEM_PROFILER,
    linux.APT_SIMULATE, linux.APT_SECURITY_INDEXES, linux.DNF_HISTORY, linux.REALM,
})
_LABELS: Final = {
    windows.OS_INFO: "Win32_OperatingSystem", windows.BITLOCKER: "Get-BitLockerVolume",
    windows.BITLOCKER_SHELL: "Shell BitLockerProtection", windows.DEFENDER: "Get-MpComputerStatus",
    windows.FIREWALL: "Get-NetFirewallProfile", windows.HOTFIX: "Get-HotFix",
    windows.UTC_OFFSET: "Get-Date", windows.LOCK_REGISTRY: "lock registry values",
    windows.PROCESSES: "Get-Process", windows.SERVICES: "Get-Service",
    windows.DOMAIN: "Win32_ComputerSystem", windows.HARDWARE_UUID: "Win32_ComputerSystemProduct",
    windows.MACHINE_GUID: "MachineGuid", windows.POWERCFG_STANDBY: "powercfg STANDBYIDLE",
    windows.POWERCFG_CONSOLELOCK: "powercfg CONSOLELOCK",
}


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int | None      # None when the command did not run to its end (see `error`)
    stdout: str = ""
    stderr: str = ""
    error: str = ""             # "not found", "timed out after 15 s", "permission denied", ...


class Runner(Protocol):
    def run(self, argv: Sequence[str], timeout_seconds: float) -> CommandResult:
        """Run argv (no shell) and wait at most timeout_seconds; never raises."""

    def read(self, path: str) -> str | None:
        """The text of a file, or None when it is missing or unreadable; never raises."""


@dataclass
class _Draft:
    os_name: str = ""
    os_version: str = ""
    last_security_update: float | None = None
    disk: DiskEncryption | None = None
    firewall_on: bool | None = None
    screen: ScreenLock | None = None
    edr_running: tuple[str, ...] = ()
    domain: DomainInfo | None = None
    hardware_id: str = ""
    errors: list[str] = field(default_factory=list)

    def take(self, fact: str, reading: Reading[T]) -> T | None:
        if reading.value is None:
            self.errors.append(f"{fact}: {reading.error}")
        return reading.value


def label(argv: Sequence[str]) -> str:
    return _LABELS.get(tuple(argv)) or argv[0].rsplit("/", 1)[-1]


def _command(runner: Runner, argv: tuple[str, ...], parse: Callable[[str], Reading[T]], *,
             timeout: float = TIMEOUT_SECONDS, ok_codes: tuple[int, ...] = (0,),
             stderr: bool = False) -> Reading[T]:
    """`parse` of argv's output (stdout, and stderr too when asked), or why there is none."""
    result = runner.run(argv, timeout)
    name = label(argv)
    if result.error:
        return unknown(f"{name}: {result.error}")
    if result.returncode not in ok_codes:
        why = (lines(result.stderr) or lines(result.stdout) or [""])[0][:120]
        return unknown(f"{name}: exit status {result.returncode}" + (f": {why}" if why else ""))
    reading = parse(result.stdout + ("\n" + result.stderr if stderr else ""))
    return reading if reading.value is not None else unknown(f"{name}: {reading.error}")


def _file(runner: Runner, path: str, parse: Callable[[str], Reading[T]]) -> Reading[T]:
    text = runner.read(path)
    if text is None:
        return unknown(f"{path}: missing or not readable")
    reading = parse(text)
    return reading if reading.value is not None else unknown(f"{path}: {reading.error}")


def _first(*attempts: Callable[[], Reading[T]]) -> Reading[T]:
    """The first attempt that knows; else unknown with every attempt's reason."""
    errors = []
    for attempt in attempts:
        reading = attempt()
        if reading.value is not None:
            return reading
        errors.append(reading.error)
    return unknown("; ".join(errors))


def _missing(reading: Reading[T]) -> bool:
    return reading.value is None and reading.error.endswith(": not found")


def _windows(runner: Runner, draft: _Draft, products: Sequence[Product]) -> list[Callable[[], None]]:
    ps = SLOW_TIMEOUT_SECONDS / 2

    def os_info() -> None:
        _set_os(draft, _command(runner, windows.OS_INFO, windows.parse_os, timeout=ps))

    def disk() -> None:
        draft.disk = draft.take("disk_encryption", _first(
            lambda: _command(runner, windows.BITLOCKER, windows.parse_bitlocker, timeout=ps),
            lambda: _command(runner, windows.MANAGE_BDE, windows.parse_manage_bde),
            lambda: _command(runner, windows.BITLOCKER_SHELL, windows.parse_bitlocker_shell,
                             timeout=ps)))

    def firewall() -> None:
        draft.firewall_on = draft.take("firewall", _first(
            lambda: _command(runner, windows.FIREWALL, windows.parse_firewall, timeout=ps),
            lambda: _command(runner, windows.NETSH_FIREWALL, windows.parse_netsh_firewall)))

    def updates() -> None:
        offset = _command(runner, windows.UTC_OFFSET, parse_utc_offset, timeout=ps)
        draft.last_security_update = draft.take("last_security_update", _command(
            runner, windows.HOTFIX, lambda t: windows.parse_hotfix(t, offset.value), timeout=ps))

    def screen() -> None:
        sources = (_command(runner, windows.LOCK_REGISTRY, windows.parse_lock_registry, timeout=ps),
                   _command(runner, windows.POWERCFG_STANDBY, windows.parse_powercfg),
                   _command(runner, windows.POWERCFG_CONSOLELOCK, windows.parse_powercfg))
        _set_screen(draft, windows.combine_screen_lock(*sources), sources)

    def edr() -> None:
        processes = _command(runner, windows.PROCESSES, parse_names, timeout=ps)
        services = _command(runner, windows.SERVICES, parse_names, timeout=ps)
        defender = _command(runner, windows.DEFENDER, windows.parse_defender, timeout=ps)
        found = list(running_products(processes.value or (), products,
                                      service_names=services.value or ()))
        if defender.value is False and "Microsoft Defender" in found:
            found.remove("Microsoft Defender")   # installed but passive or switched off
        elif defender.value and "Microsoft Defender" not in found:
            found.insert(0, "Microsoft Defender")
        draft.edr_running = tuple(found)
        if processes.value is None and services.value is None:
            draft.errors.append(f"edr: {processes.error}; {services.error}")

    def domain() -> None:
        ad = _command(runner, windows.DOMAIN, windows.parse_domain, timeout=ps)
        if ad.value is not None and not ad.value.joined:
            entra = _command(runner, windows.DSREGCMD, windows.parse_dsregcmd)
            ad = entra if entra.value is not None else unknown(
                f"not in an AD domain, Entra ID join unknown: {entra.error}")
        draft.domain = draft.take("domain", ad)

    def hardware() -> None:
        draft.hardware_id = draft.take("hardware_id", _first(
            lambda: _command(runner, windows.HARDWARE_UUID, parse_uuid, timeout=ps),
            lambda: _command(runner, windows.MACHINE_GUID, parse_uuid, timeout=ps))) or ""

    return [os_info, disk, firewall, updates, screen, edr, domain, hardware]


def _macos(runner: Runner, draft: _Draft, products: Sequence[Product]) -> list[Callable[[], None]]:
    def os_info() -> None:
        _set_os(draft, _command(runner, macos.SW_VERS, macos.parse_sw_vers))

    def disk() -> None:
        draft.disk = draft.take("disk_encryption",
                                _command(runner, macos.FDESETUP, macos.parse_fdesetup))

    def firewall() -> None:
        draft.firewall_on = draft.take("firewall", _command(runner, macos.SOCKETFILTERFW,
                                                            macos.parse_socketfilterfw))

    def updates() -> None:
        offset = _command(runner, macos.UTC_OFFSET, parse_utc_offset)
        if offset.value is None:
            draft.errors.append(f"last_security_update: local time zone unknown: {offset.error}")
            return
        utc_offset = offset.value
        draft.last_security_update = draft.take("last_security_update", _command(
            runner, macos.SOFTWAREUPDATE_HISTORY,
            lambda t: macos.parse_softwareupdate_history(t, utc_offset),
            timeout=SLOW_TIMEOUT_SECONDS))

    def screen() -> None:
        sources = (_command(runner, macos.SCREEN_LOCK, macos.parse_screen_lock, stderr=True),
                   _command(runner, macos.SCREENSAVER_IDLE, macos.parse_idle_seconds),
                   _command(runner, macos.PMSET, macos.parse_display_sleep))
        _set_screen(draft, macos.combine_screen_lock(*sources), sources)

    def edr() -> None:
        processes = _command(runner, macos.PROCESSES, parse_names)
        draft.edr_running = running_products(processes.value or (), products)
        if processes.value is None:
            draft.errors.append(f"edr: {processes.error}")

    def domain() -> None:
        draft.domain = draft.take("domain", _command(runner, macos.DSCONFIGAD,
                                                     macos.parse_dsconfigad))

    def hardware() -> None:
        draft.hardware_id = draft.take("hardware_id", _first(
            lambda: _command(runner, macos.IOREG, macos.parse_ioreg_uuid),
            lambda: _command(runner, macos.SYSTEM_PROFILER, macos.parse_system_profiler_uuid,
                             timeout=SLOW_TIMEOUT_SECONDS))) or ""

    return [os_info, disk, firewall, updates, screen, edr, domain, hardware]


def _linux(runner: Runner, draft: _Draft, products: Sequence[Product]) -> list[Callable[[], None]]:
    def os_info() -> None:
        kernel = runner.read(linux.KERNEL)
        if kernel is None:
            uname = runner.run(("uname", "-r"), TIMEOUT_SECONDS)
            kernel = uname.stdout if uname.returncode == 0 else None
        debian = runner.read(linux.DEBIAN_VERSION)
        _set_os(draft, _first(*(
            lambda path=path: _file(runner, path, lambda t: linux.parse_os_release(t, debian,
                                                                                  kernel))
            for path in linux.OS_RELEASE)))

    def disk() -> None:
        draft.disk = draft.take("disk_encryption", _linux_disk(runner))

    def firewall() -> None:
        draft.firewall_on = draft.take("firewall", _linux_firewall(runner))

    def updates() -> None:
        draft.last_security_update = draft.take("last_security_update", _linux_updates(runner))

    def screen() -> None:
        session = linux.desktop_session(linux.parse_environ(runner.read(linux.ENVIRON) or ""))
        if session.value is None:
            draft.errors.append(f"screen_lock: {session.error}")
            return
        sources = (_command(runner, linux.GSETTINGS_LOCK, linux.parse_gsettings_bool),
                   _command(runner, linux.GSETTINGS_IDLE, linux.parse_gsettings_uint),
                   _command(runner, linux.GSETTINGS_LOCK_DELAY, linux.parse_gsettings_uint))
        _set_screen(draft, linux.combine_gnome_lock(*sources), sources)

    def edr() -> None:
        processes = _command(runner, linux.PROCESSES, parse_names)
        if processes.value is None:
            listing = runner.run(linux.LIST_PROC, TIMEOUT_SECONDS)
            names = [runner.read(f"/proc/{pid}/comm") for pid in
                     linux.parse_proc_listing(listing.stdout)]
            found = parse_names("\n".join(n for n in names if n))
            processes = found if found.value is not None else unknown(
                f"{processes.error}; /proc/*/comm: {found.error}")
        draft.edr_running = running_products(processes.value or (), products)
        if processes.value is None:
            draft.errors.append(f"edr: {processes.error}")

    def domain() -> None:
        readings = [_command(runner, linux.REALM, linux.parse_realm_list),
                    _file(runner, linux.SSSD_CONF, linux.parse_sssd_conf),
                    _file(runner, linux.SMB_CONF, linux.parse_smb_conf)]
        nss = _file(runner, linux.NSSWITCH, linux.parse_nsswitch)
        joined = next((r for r in readings if r.value is not None and r.value.joined), None)
        says_no = next((r for r in (readings[0], nss) if r.value is not None), None)
        draft.domain = draft.take("domain", joined or says_no or unknown(
            "; ".join(r.error for r in [*readings, nss] if r.value is None)))

    def hardware() -> None:
        draft.hardware_id = draft.take("hardware_id", _first(
            lambda: _file(runner, linux.PRODUCT_UUID, parse_uuid),
            *(lambda path=path: _file(runner, path, parse_machine_id)
              for path in linux.MACHINE_ID))) or ""

    return [os_info, disk, firewall, updates, screen, edr, domain, hardware]


def _linux_disk(runner: Runner) -> Reading[DiskEncryption]:
    root = _file(runner, linux.MOUNTS, linux.parse_root_mount)
    if root.value is None:
        return unknown(root.error)
    source, fstype = root.value
    if fstype in linux.CONTAINER_FILESYSTEMS:
        return unknown(f"the root filesystem is {fstype}: running in a container, the host's "
                       "disk is not visible")
    by_lsblk = _command(runner, linux.LSBLK, lambda t: linux.parse_lsblk(t, source))
    if by_lsblk.value is not None:
        return by_lsblk
    base = source.rsplit("/", 1)[-1]
    if source == f"/dev/{base}" and base.startswith("dm-"):
        return _file(runner, f"/sys/block/{base}/dm/uuid", linux.parse_dm_uuid)
    if source == f"/dev/{base}" and linux.PLAIN_DISK.fullmatch(base):
        return known(DiskEncryption(False, ""))   # a disk or its partition: no dm-crypt under it
    return by_lsblk


def _linux_firewall(runner: Runner) -> Reading[bool]:
    """Any source that sees filtering wins. "Off" needs a whole ruleset seen (nft, iptables):
    ufw or firewalld being off says nothing about rules loaded by other means."""
    ufw = _command(runner, linux.UFW, linux.parse_ufw_status)
    if ufw.value is None and not _missing(ufw):
        by_conf = _file(runner, linux.UFW_CONF, linux.parse_ufw_conf)
        ufw = by_conf if by_conf.value is not None else ufw
    firewalld = _command(runner, linux.FIREWALLD, linux.parse_firewalld_state, ok_codes=(0, 252))
    nft = _command(runner, linux.NFT, linux.parse_nft)
    iptables = _command(runner, linux.IPTABLES_SAVE, linux.parse_iptables_save)
    readings = (ufw, firewalld, nft, iptables)
    if any(r.value for r in readings):
        return known(True)
    if nft.value is False or iptables.value is False:
        return known(False)
    if all(_missing(r) for r in readings):
        return unknown("no firewall tool found (ufw, firewall-cmd, nft, iptables-save)")
    return unknown("no ruleset could be read (" + "; ".join(
        r.error if r.value is None else f"{label(argv)}: off" for r, argv in
        zip(readings, (linux.UFW, linux.FIREWALLD, linux.NFT, linux.IPTABLES_SAVE))) + ")")


def _linux_updates(runner: Runner) -> Reading[float]:
    """Debian/Ubuntu: patched as of the security index's fetch time when no security upgrade
    is pending; else the newest security upgrade in apt's history. Fedora/RHEL: dnf history."""
    offset = _command(runner, linux.UTC_OFFSET, parse_utc_offset)
    if offset.value is None:
        return unknown(f"local time zone unknown: {offset.error}")
    utc_offset = offset.value
    pending = _command(runner, linux.APT_SIMULATE, linux.parse_apt_simulation,
                       timeout=SLOW_TIMEOUT_SECONDS)
    if _missing(pending):
        dnf = _command(runner, linux.DNF_HISTORY, lambda t: linux.parse_dnf_history(t, utc_offset),
                       timeout=SLOW_TIMEOUT_SECONDS)
        return dnf if not _missing(dnf) else unknown("neither apt-get nor dnf found")
    index = _command(runner, linux.APT_SECURITY_INDEXES, linux.parse_mtimes, ok_codes=(0, 1))
    if pending.value is not None and pending.value[1] == 0 and index.value is not None:
        return index
    history = _file(runner, linux.APT_HISTORY, lambda t: linux.parse_apt_history(t, utc_offset))
    if history.value is not None:
        return history
    why = [pending.error if pending.value is None else
           f"{pending.value[1]} security updates pending (of {pending.value[0]})",
           index.error, history.error]
    return unknown("; ".join(w for w in why if w))


def _set_os(draft: _Draft, reading: Reading[OsInfo]) -> None:
    info = draft.take("os", reading)
    if info is not None:
        draft.os_name, draft.os_version = info.name, info.version


def _set_screen(draft: _Draft, reading: Reading[ScreenLock],
                sources: Sequence[Reading[Any]]) -> None:
    draft.screen = draft.take("screen_lock", reading)
    if draft.screen is not None and draft.screen.enabled and draft.screen.timeout_seconds is None:
        why = "; ".join(s.error for s in sources if s.value is None) or "no idle time set"
        draft.errors.append(f"screen_lock_timeout: {why}")


def _check(draft: _Draft, now: float) -> None:
    """Values a parser should never produce but that PostureFacts would refuse: unknown instead."""
    if draft.os_version and parse_version(draft.os_version) is None:
        draft.errors.append(f"os: version {draft.os_version!r} is not dotted numbers")
        draft.os_version = ""
    when = draft.last_security_update
    if when is not None and not (math.isfinite(when) and 0 <= when <= now + 86400):
        draft.errors.append(f"last_security_update: implausible time {when!r}")
        draft.last_security_update = None
    screen = draft.screen
    if screen is not None and screen.timeout_seconds is not None \
            and not 0 <= screen.timeout_seconds <= MAX_LOCK_SECONDS:
        draft.errors.append(f"screen_lock_timeout: implausible {screen.timeout_seconds} seconds")
        draft.screen = ScreenLock(screen.enabled, None)


def _text(value: str) -> str:
    flat = "".join(ch if ch.isprintable() else " " for ch in value).strip()
    return flat if len(flat) <= MAX_TEXT else flat[:MAX_TEXT - 3] + "..."


def collect(os_family: str, runner: Runner, now: float, agent_version: str, *,
            products: Sequence[Product] = PRODUCTS) -> PostureFacts:
    """The posture facts of this machine as `runner` sees it; `os_family` is one of
    "windows", "macos", "linux" (anything else collects nothing and says so)."""
    draft = _Draft()
    plans = {"windows": _windows, "macos": _macos, "linux": _linux}
    family = os_family if os_family in plans else "unknown"
    if family == "unknown":
        draft.errors.append(f"os: unsupported platform {os_family!r}: nothing collected")
    for step in plans[family](runner, draft, products) if family in plans else []:
        before = len(draft.errors)
        try:
            step()
        except Exception as exc:  # a parser bug leaves its fact unknown, never the whole report
            del draft.errors[before:]
            draft.errors.append(f"{step.__name__}: internal error: {type(exc).__name__}: {exc}")
    _check(draft, now)
    errors = [_text(e) for e in draft.errors]
    if len(errors) > MAX_LIST:
        errors = errors[:MAX_LIST - 1] + [f"... and {len(errors) - MAX_LIST + 1} more errors"]
    disk, screen, domain = draft.disk, draft.screen, draft.domain
    return PostureFacts(
        os_family=family if family in OS_FAMILIES else "unknown",
        os_name=_text(draft.os_name), os_version=_text(draft.os_version),
        last_security_update=draft.last_security_update,
        disk_encrypted=disk.encrypted if disk else None,
        encryption_method=_text(disk.method) if disk and disk.encrypted else "",
        firewall_on=draft.firewall_on,
        screen_lock=screen.enabled if screen else None,
        screen_lock_timeout_seconds=screen.timeout_seconds if screen else None,
        edr_running=tuple(_text(p) for p in draft.edr_running)[:MAX_LIST],
        domain_joined=domain.joined if domain else None,
        domain=_text(domain.domain) if domain else "",
        agent_version=_text(agent_version), hardware_id=_text(draft.hardware_id),
        collected_at=now, errors=tuple(errors))
