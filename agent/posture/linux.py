"""Linux posture: the commands and files to read, and pure parsers of their contents.

Commands run with LC_ALL=C, so their English output is what is parsed. The agent runs as the
desktop user, not root: tools that need root (nft, ufw status, iptables-save) fail and other
sources are tried. No command is run and no file is read here (see collect.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Final

from agent.posture.findings import (
    DiskEncryption,
    DomainInfo,
    OsInfo,
    Reading,
    ScreenLock,
    clean,
    known,
    lines,
    load_json,
    snippet,
    unknown,
)
from ztcore.posture import parse_version

OS_RELEASE: Final = ("/etc/os-release", "/usr/lib/os-release")
DEBIAN_VERSION: Final = "/etc/debian_version"
KERNEL: Final = "/proc/sys/kernel/osrelease"
MOUNTS: Final = "/proc/mounts"
LSBLK: Final = ("lsblk", "-J", "-s", "-o", "NAME,TYPE,FSTYPE,MOUNTPOINT")
NFT: Final = ("nft", "-j", "list", "ruleset")
UFW: Final = ("ufw", "status")
UFW_CONF: Final = "/etc/ufw/ufw.conf"
FIREWALLD: Final = ("firewall-cmd", "--state")
IPTABLES_SAVE: Final = ("iptables-save",)
ENVIRON: Final = "/proc/self/environ"
GSETTINGS_LOCK: Final = ("gsettings", "get", "org.gnome.desktop.screensaver", "lock-enabled")
GSETTINGS_IDLE: Final = ("gsettings", "get", "org.gnome.desktop.session", "idle-delay")
GSETTINGS_LOCK_DELAY: Final = ("gsettings", "get", "org.gnome.desktop.screensaver", "lock-delay")
UTC_OFFSET: Final = ("date", "+%z")
APT_SIMULATE: Final = ("apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade")
APT_SECURITY_INDEXES: Final = ("find", "/var/lib/apt/lists", "-maxdepth", "1", "-type", "f",
                               "-name", "*security*Release", "-printf", "%T@ %p\\n")
APT_HISTORY: Final = "/var/log/apt/history.log"
DNF_HISTORY: Final = ("dnf", "history", "list")
PROCESSES: Final = ("ps", "-e", "-o", "comm=")
LIST_PROC: Final = ("ls", "/proc")
REALM: Final = ("realm", "list")
SSSD_CONF: Final = "/etc/sssd/sssd.conf"
SMB_CONF: Final = "/etc/samba/smb.conf"
NSSWITCH: Final = "/etc/nsswitch.conf"
PRODUCT_UUID: Final = "/sys/class/dmi/id/product_uuid"
MACHINE_ID: Final = ("/etc/machine-id", "/var/lib/dbus/machine-id")

# Disks and their partitions, mounted directly: nothing (dm-crypt, RAID) can sit below them.
PLAIN_DISK: Final = re.compile(r"(?:[shv]d[a-z]+|xvd[a-z]+|nvme\d+n\d+|mmcblk\d+)(?:p?\d+)?")
CONTAINER_FILESYSTEMS: Final = frozenset({"overlay", "aufs", "fuse-overlayfs", "shiftfs"})
GNOME_DESKTOPS: Final = frozenset({"gnome", "unity", "ubuntu", "gnome-classic", "gnome-flashback",
                                   "pop"})
_DIRECTORY_NSS: Final = frozenset({"sss", "winbind", "ldap", "centrifydc", "lsass", "pbis"})


def _assignments(text: str) -> dict[str, str]:
    """KEY=value lines with shell quoting (os-release(5), ufw.conf)."""
    out = {}
    for line in lines(text):
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#") or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        out[key] = " ".join(words)
    return out


def parse_os_release(text: str, debian_version: str | None = None,
                     kernel: str | None = None) -> Reading[OsInfo]:
    """PRETTY_NAME and VERSION_ID, refined to the point release when the distribution says it
    (Debian's /etc/debian_version "12.11", Ubuntu's VERSION "22.04.4 LTS")."""
    fields = _assignments(text)
    name = fields.get("PRETTY_NAME") or fields.get("NAME", "")
    version = fields.get("VERSION_ID", "")
    if not name or parse_version(version) is None:
        return unknown(f"no NAME/VERSION_ID in {snippet(text)}")
    detailed = [(debian_version or "").strip() if fields.get("ID") == "debian" else "",
                fields.get("VERSION", "").split(" ")[0]]
    for candidate in detailed:
        if parse_version(candidate) is not None and candidate.startswith(version + "."):
            version = candidate
            break
    release = (kernel or "").strip()
    if release and re.fullmatch(r"[\w.+~-]{1,64}", release):
        name = f"{name}, kernel {release}"
    return known(OsInfo(name, version))


def parse_root_mount(text: str) -> Reading[tuple[str, str]]:
    """(source, fstype) of the last mount on / in /proc/mounts (octal escapes decoded)."""
    found = None
    for line in lines(text):
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "/":
            found = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[0]), parts[2])
    if found is None:
        return unknown("no / in /proc/mounts")
    return known(found)


def _walk(node: object) -> list[dict[str, object]]:
    if not isinstance(node, dict):
        return []
    out = [node]
    children = node.get("children")
    for child in children if isinstance(children, list) else []:
        out.extend(_walk(child))
    return out


def parse_lsblk(text: str, source: str) -> Reading[DiskEncryption]:
    """`lsblk -J -s`: the device mounted on / and everything below it (-s lists dependencies as
    children); a `crypt` device among them means dm-crypt, LUKS when its backing is crypto_LUKS."""
    loaded = load_json(text)
    top = loaded.value.get("blockdevices") if isinstance(loaded.value, dict) else None
    if not isinstance(top, list):
        return unknown(loaded.error or f"no blockdevices in {snippet(text)}")
    base = source.rsplit("/", 1)[-1]
    nodes = [n for device in top for n in _walk(device)]
    root = next((n for n in nodes if n.get("mountpoint") == "/"), None) \
        or next((n for n in nodes if base and n.get("name") == base), None)
    if root is None:
        return unknown(f"the root device {source!r} is not in lsblk's list")
    below = _walk(root)
    if not any(n.get("type") == "crypt" for n in below):
        return known(DiskEncryption(False, ""))
    luks = any(n.get("fstype") == "crypto_LUKS" for n in below)
    return known(DiskEncryption(True, "LUKS" if luks else "dm-crypt"))


def parse_dm_uuid(text: str) -> Reading[DiskEncryption]:
    """/sys/block/dm-N/dm/uuid: "CRYPT-LUKS2-<uuid>-<name>" is a LUKS mapping."""
    value = clean(text).strip()
    if value.startswith("CRYPT-LUKS"):
        return known(DiskEncryption(True, "LUKS"))
    if value.startswith("CRYPT-"):
        return known(DiskEncryption(True, "dm-crypt"))
    return unknown(f"device-mapper {snippet(value)} may sit on an encrypted device; lsblk is needed")


def _nft_blocks(expr: object) -> tuple[bool, set[str]]:
    """Whether a rule's expressions drop or reject, and the chains it jumps to."""
    blocks, targets = False, set()
    stack = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "drop" in item or "reject" in item:
                blocks = True
            for verb in ("jump", "goto"):
                target = item.get(verb)
                if isinstance(target, dict) and isinstance(target.get("target"), str):
                    targets.add(target["target"])
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
    return blocks, targets


def parse_nft(text: str) -> Reading[bool]:
    """`nft -j list ruleset`: on when a chain on the input hook has policy drop, or drops or
    rejects in it or in a chain it jumps to."""
    loaded = load_json(text)
    items = loaded.value.get("nftables") if isinstance(loaded.value, dict) else None
    if not isinstance(items, list):
        return unknown(loaded.error or f"no nftables list in {snippet(text)}")
    chains: dict[tuple[object, object, object], tuple[bool, set[str]]] = {}
    inputs = []
    for item in items:
        chain, rule = (item.get("chain"), item.get("rule")) if isinstance(item, dict) else (None,
                                                                                           None)
        if isinstance(chain, dict):
            key = (chain.get("family"), chain.get("table"), chain.get("name"))
            chains.setdefault(key, (False, set()))
            if chain.get("hook") == "input":
                if chain.get("policy") == "drop":
                    return known(True)
                inputs.append(key)
        if isinstance(rule, dict):
            key = (rule.get("family"), rule.get("table"), rule.get("chain"))
            blocks, targets = _nft_blocks(rule.get("expr"))
            old = chains.get(key, (False, set()))
            chains[key] = (old[0] or blocks, old[1] | targets)
    seen, todo = set(), list(inputs)
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        blocks, targets = chains.get(key, (False, set()))
        if blocks:
            return known(True)
        todo.extend((key[0], key[1], t) for t in targets)
    return known(False)


def parse_iptables_save(text: str) -> Reading[bool]:
    """`iptables-save`: on when the filter table's INPUT policy is DROP, or INPUT (or a chain it
    jumps to) has a DROP or REJECT rule. No filter table at all is off."""
    table, policies, rules = "", dict[str, str](), dict[str, list[str]]()
    for line in lines(text):
        if line.startswith("*"):
            table = line[1:]
        elif table == "filter" and line.startswith(":"):
            parts = line[1:].split()
            if len(parts) >= 2:
                policies[parts[0]] = parts[1]
        elif table == "filter" and line.startswith("-A "):
            parts = line.split()
            target = parts[parts.index("-j") + 1] if "-j" in parts[:-1] else ""
            rules.setdefault(parts[1] if len(parts) > 1 else "", []).append(target)
    if policies.get("INPUT") == "DROP":
        return known(True)
    seen, todo = set(), ["INPUT"]
    while todo:
        chain = todo.pop()
        if chain in seen:
            continue
        seen.add(chain)
        for target in rules.get(chain, []):
            if target in ("DROP", "REJECT"):
                return known(True)
            if target in rules:
                todo.append(target)
    return known(False)


def parse_ufw_status(text: str) -> Reading[bool]:
    """`ufw status`: "Status: active" / "Status: inactive"."""
    match = re.search(r"^Status:\s*(active|inactive)\b", clean(text), re.MULTILINE)
    if match is None:
        return unknown(f"unrecognised ufw output: {snippet(text)}")
    return known(match[1] == "active")


def parse_ufw_conf(text: str) -> Reading[bool]:
    """/etc/ufw/ufw.conf ENABLED=yes: ufw loads its rules at boot (what `ufw enable` sets)."""
    value = _assignments(text).get("ENABLED", "").lower()
    if value not in ("yes", "no"):
        return unknown(f"no ENABLED=yes/no in {snippet(text)}")
    return known(value == "yes")


def parse_firewalld_state(text: str) -> Reading[bool]:
    """`firewall-cmd --state`: "running" / "not running"."""
    body = " ".join(lines(text))
    if body in ("running", "not running"):
        return known(body == "running")
    return unknown(f"unrecognised firewall-cmd output: {snippet(text)}")


def parse_environ(text: str) -> dict[str, str]:
    """/proc/self/environ: NUL-separated NAME=value."""
    pairs = (item.partition("=") for item in text.split("\x00"))
    return {name: value for name, sep, value in pairs if sep and name}


def desktop_session(environ: Mapping[str, str]) -> Reading[str]:
    """The desktop ("GNOME", "ubuntu:GNOME") when this process runs in a graphical session."""
    if not (environ.get("WAYLAND_DISPLAY") or environ.get("DISPLAY")):
        return unknown("no desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set)")
    desktop = environ.get("XDG_CURRENT_DESKTOP", "")
    if not {d.strip().lower() for d in desktop.split(":")} & GNOME_DESKTOPS:
        return unknown(f"desktop {desktop or 'unnamed'!r} is not GNOME; its screen lock "
                       "settings are not read")
    return known(desktop)


def parse_gsettings_bool(text: str) -> Reading[bool]:
    body = " ".join(lines(text))
    if body in ("true", "false"):
        return known(body == "true")
    return unknown(f"unrecognised gsettings value: {snippet(text)}")


def parse_gsettings_uint(text: str) -> Reading[int]:
    """"uint32 300" (GVariant text form) or "300"."""
    match = re.fullmatch(r"(?:u?int32\s+)?(\d{1,9})", " ".join(lines(text)))
    if match is None:
        return unknown(f"unrecognised gsettings value: {snippet(text)}")
    return known(int(match[1]))


def combine_gnome_lock(enabled: Reading[bool], idle_delay: Reading[int],
                       lock_delay: Reading[int]) -> Reading[ScreenLock]:
    """GNOME blanks the screen after idle-delay (0 = never) and locks lock-delay seconds later
    when lock-enabled is true."""
    if enabled.value is None:
        return unknown(enabled.error)
    if not enabled.value or idle_delay.value == 0:
        return known(ScreenLock(False, None))
    if idle_delay.value is None or lock_delay.value is None:
        return known(ScreenLock(True, None))
    return known(ScreenLock(True, idle_delay.value + lock_delay.value))


def _local(text: str, fmt: str, utc_offset_seconds: int) -> float | None:
    try:
        parsed = datetime.strptime(" ".join(text.split()), fmt)
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone(timedelta(seconds=utc_offset_seconds))).timestamp()


def parse_apt_simulation(text: str) -> Reading[tuple[int, int]]:
    """`apt-get -s dist-upgrade`: (pending upgrades, those from a security archive), e.g.
    "Inst libssl3 [3.0.13-1~deb12u1] (3.0.14-1~deb12u1 Debian-Security:12/stable-security [amd64])"."""
    body = lines(text)
    if not any(re.match(r"\d+ upgraded, \d+ newly installed", line) for line in body):
        return unknown(f"no upgrade summary in {snippet(text)}")
    pending = [line for line in body if line.startswith("Inst ")]
    security = [line for line in pending if "security" in line.partition("(")[2].lower()]
    return known((len(pending), len(security)))


def parse_mtimes(text: str) -> Reading[float]:
    """The newest time in `find -printf '%T@ %p\\n'` output."""
    times = []
    for line in lines(text):
        match = re.match(r"(\d{1,12}(?:\.\d+)?)\s", line + " ")
        if match:
            times.append(float(match[1]))
    if not times:
        return unknown("no security index in /var/lib/apt/lists (is a security archive "
                       "configured?)")
    return known(max(times))


def parse_apt_history(text: str, utc_offset_seconds: int) -> Reading[float]:
    """The newest /var/log/apt/history.log entry that installed from a security archive:
    run by unattended-upgrade (security origins by default) or naming one ("-t
    bookworm-security"). Start-Date is local time: "2024-06-13  06:25:12"."""
    newest = None
    for entry in re.split(r"\n\s*\n", clean(text)):
        fields = {}
        for line in entry.split("\n"):
            key, sep, value = line.partition(": ")
            if sep:
                fields[key.strip()] = value.strip()
        if "Upgrade" not in fields and "Install" not in fields:
            continue
        command = fields.get("Commandline", "")
        if "unattended-upgrade" not in command and "security" not in entry.lower():
            continue
        when = _local(fields.get("Start-Date", ""), "%Y-%m-%d %H:%M:%S", utc_offset_seconds)
        if when is not None and (newest is None or when > newest):
            newest = when
    if newest is None:
        return unknown("no security upgrade recorded")
    return known(newest)


def parse_dnf_history(text: str, utc_offset_seconds: int) -> Reading[float]:
    """`dnf history list` (dnf 4): the newest transaction whose command line asked for
    security updates ("upgrade --security")."""
    newest = None
    for line in lines(text):
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4 or "security" not in cells[1]:
            continue
        when = _local(cells[2], "%Y-%m-%d %H:%M", utc_offset_seconds)
        if when is not None and (newest is None or when > newest):
            newest = when
    if newest is None:
        return unknown("no security upgrade in dnf history")
    return known(newest)


def parse_realm_list(text: str) -> Reading[DomainInfo]:
    """`realm list`: nothing when not joined; else a block per realm with "configured:
    kerberos-member" and "domain-name: corp.example.lg.jp"."""
    realm, fields = "", dict[str, str]()
    for raw in clean(text).split("\n"):
        if raw.strip() and not raw[0].isspace():
            if realm and fields.get("configured", "no") != "no":
                break
            realm, fields = raw.strip(), {}
        elif ":" in raw:
            key, _, value = raw.strip().partition(":")
            fields[key.strip()] = value.strip()
    if realm and fields.get("configured", "no") != "no":
        return known(DomainInfo(True, fields.get("domain-name") or realm))
    return known(DomainInfo(False, ""))


def _ini(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for line in lines(text):
        if line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            current[" ".join(key.lower().split())] = value.strip()
    return sections


def parse_sssd_conf(text: str) -> Reading[DomainInfo]:
    """sssd.conf: a [domain/X] with id_provider ad or ipa is a domain join."""
    for section, values in _ini(text).items():
        if section.startswith("domain/") and values.get("id_provider") in ("ad", "ipa"):
            return known(DomainInfo(True, values.get("ad_domain") or section[len("domain/"):]))
    return known(DomainInfo(False, ""))


def parse_smb_conf(text: str) -> Reading[DomainInfo]:
    """smb.conf [global]: winbind membership ("security = ads") or an AD domain controller."""
    glob = _ini(text).get("global", {})
    member = glob.get("security", "").lower() == "ads" or \
        glob.get("server role", "").lower() in ("member server", "active directory domain controller")
    if member and glob.get("realm"):
        return known(DomainInfo(True, glob["realm"].lower()))
    return known(DomainInfo(False, ""))


def parse_nsswitch(text: str) -> Reading[DomainInfo]:
    """A domain member resolves users through a directory (sss, winbind, ...); passwd resolved
    from local sources only means no domain membership."""
    for line in lines(text):
        database, sep, sources = line.partition(":")
        if sep and database.strip() == "passwd":
            used = {word.strip("[]").lower() for word in sources.split()} & _DIRECTORY_NSS
            if used:
                return unknown(f"users are resolved through {', '.join(sorted(used))}, but "
                               "no membership could be read")
            return known(DomainInfo(False, ""))
    return unknown("no passwd line in nsswitch.conf")


def parse_proc_listing(text: str) -> tuple[str, ...]:
    """The process ids in `ls /proc`."""
    return tuple(name for name in lines(text) if name.isdigit())
