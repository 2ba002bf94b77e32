"""agent/posture/collect.py: whole collections over a Runner answering with recorded outputs.

Each scenario is a machine (which commands answer what, which files hold what) and the facts
expected from it; a command the scenario does not list is "not found", a file it does not list
is missing. Failures must leave the fact unknown with an error, never raise, never guess."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.posture import RARELY_CHANGING, CommandResult, collect, linux, macos, windows
from agent.posture.products import Product, parse_products, running_products
from tests.unit.agent.posture_samples_harness import SAMPLES, jst, sample
from ztcore.errors import ConfigError
from ztcore.posture import facts_from_json

NOW = 1_800_000_000.0
DENIED = CommandResult(1, "", "Get-BitLockerVolume : アクセスが拒否されました。\r\n")
TIMEOUT = CommandResult(None, error="timed out after 30 s")


def ok(name: str) -> CommandResult:
    return CommandResult(0, sample(name), "")


class Recorded:
    """A Runner over recorded outputs: unlisted commands are not found, unlisted files missing."""

    def __init__(self, commands: Mapping[tuple[str, ...], CommandResult],
                 files: Mapping[str, str]) -> None:
        self.commands, self.files = dict(commands), dict(files)
        self.calls: list[tuple[tuple[str, ...], float]] = []

    def run(self, argv: Sequence[str], timeout_seconds: float) -> CommandResult:
        self.calls.append((tuple(argv), timeout_seconds))
        return self.commands.get(tuple(argv), CommandResult(None, error="not found"))

    def read(self, path: str) -> str | None:
        return self.files.get(path)


WINDOWS_ADMIN = {
    windows.OS_INFO: ok("windows_os_ps51.json"),
    windows.BITLOCKER: ok("windows_bitlocker_ps51_on.json"),
    windows.DEFENDER: ok("windows_defender_on.json"),
    windows.FIREWALL: ok("windows_firewall_ps51_on.json"),
    windows.HOTFIX: ok("windows_hotfix_ps51.json"),
    windows.UTC_OFFSET: ok("windows_utc_offset.txt"),
    windows.LOCK_REGISTRY: ok("windows_lock_registry_policy.json"),
    windows.POWERCFG_STANDBY: ok("windows_powercfg_standby_en.txt"),
    windows.POWERCFG_CONSOLELOCK: ok("windows_powercfg_consolelock_en.txt"),
    windows.PROCESSES: ok("windows_processes.txt"),
    windows.SERVICES: ok("windows_services.txt"),
    windows.DOMAIN: ok("windows_domain_joined.json"),
    windows.HARDWARE_UUID: ok("windows_uuid.txt"),
}
WINDOWS_USER_JA = {
    windows.OS_INFO: ok("windows_os_ps7_no_ubr.json"),
    windows.BITLOCKER: DENIED,
    windows.MANAGE_BDE: CommandResult(2147942405, sample("windows_manage_bde_en_denied.txt"), ""),
    windows.BITLOCKER_SHELL: ok("windows_bitlocker_shell_on.txt"),
    windows.DEFENDER: ok("windows_defender_passive.json"),
    windows.FIREWALL: TIMEOUT,
    windows.NETSH_FIREWALL: ok("windows_netsh_ja.txt"),
    windows.HOTFIX: ok("windows_hotfix_ps7_local.json"),
    windows.UTC_OFFSET: ok("windows_utc_offset.txt"),
    windows.LOCK_REGISTRY: ok("windows_lock_registry_none.json"),
    windows.POWERCFG_STANDBY: ok("windows_powercfg_standby_ja_never_on_ac.txt"),
    windows.POWERCFG_CONSOLELOCK: ok("windows_powercfg_consolelock_ja.txt"),
    windows.PROCESSES: ok("windows_processes_apexone.txt"),
    windows.DOMAIN: ok("windows_domain_workgroup.json"),
    windows.DSREGCMD: ok("windows_dsregcmd_entra.txt"),
    windows.HARDWARE_UUID: ok("windows_uuid_placeholder.txt"),
    windows.MACHINE_GUID: ok("windows_machine_guid.txt"),
}
MACOS = {
    macos.SW_VERS: ok("macos_sw_vers_14.txt"),
    macos.FDESETUP: ok("macos_fdesetup_on.txt"),
    macos.SOCKETFILTERFW: ok("macos_socketfilterfw_on.txt"),
    macos.UTC_OFFSET: ok("macos_utc_offset.txt"),
    macos.SOFTWAREUPDATE_HISTORY: ok("macos_softwareupdate_history_us.txt"),
    macos.SCREEN_LOCK: CommandResult(0, "", sample("macos_sysadminctl_300.txt")),
    macos.SCREENSAVER_IDLE: ok("macos_idle_time.txt"),
    macos.PMSET: ok("macos_pmset.txt"),
    macos.PROCESSES: ok("macos_ps.txt"),
    macos.DSCONFIGAD: ok("macos_dsconfigad_bound.txt"),
    macos.IOREG: ok("macos_ioreg.txt"),
}
LINUX_LAPTOP_COMMANDS = {
    linux.LSBLK: ok("linux_lsblk_luks_lvm.json"),
    linux.UFW: CommandResult(1, "", sample("linux_ufw_not_root.txt")),
    linux.NFT: CommandResult(1, "", sample("linux_nft_not_root.txt")),
    linux.IPTABLES_SAVE: CommandResult(1, "", "iptables-save v1.8.7 (nf_tables): Could not fetch "
                                       "rule set generation id: Permission denied (you must be root)\n"),
    linux.GSETTINGS_LOCK: ok("linux_gsettings_lock_enabled_true.txt"),
    linux.GSETTINGS_IDLE: ok("linux_gsettings_idle_delay_300.txt"),
    linux.GSETTINGS_LOCK_DELAY: ok("linux_gsettings_lock_delay_30.txt"),
    linux.UTC_OFFSET: ok("linux_utc_offset.txt"),
    linux.APT_SIMULATE: ok("linux_apt_simulate_current.txt"),
    linux.APT_SECURITY_INDEXES: ok("linux_apt_security_indexes_ubuntu.txt"),
    linux.PROCESSES: ok("linux_ps.txt"),
    linux.REALM: ok("linux_realm_joined.txt"),
}
LINUX_LAPTOP_FILES = {
    "/etc/os-release": sample("linux_os_release_ubuntu.txt"),
    linux.KERNEL: sample("linux_kernel.txt"),
    linux.MOUNTS: sample("linux_mounts_laptop.txt"),
    linux.UFW_CONF: sample("linux_ufw_conf_enabled.txt"),
    linux.ENVIRON: sample("linux_environ_gnome.txt"),
    linux.APT_HISTORY: sample("linux_apt_history_unattended.txt"),
    linux.NSSWITCH: sample("linux_nsswitch_sss.txt"),
    "/etc/machine-id": sample("linux_machine_id.txt"),
}
LINUX_CONTAINER_COMMANDS: dict[tuple[str, ...], CommandResult] = {
    linux.LIST_PROC: ok("linux_proc_listing.txt"),
}
LINUX_CONTAINER_FILES = {
    "/usr/lib/os-release": sample("linux_os_release_debian.txt"),
    linux.DEBIAN_VERSION: sample("linux_debian_version.txt"),
    linux.MOUNTS: sample("linux_mounts_container.txt"),
    linux.ENVIRON: sample("linux_environ_ssh.txt"),
    linux.NSSWITCH: sample("linux_nsswitch_files.txt"),
    "/proc/1/comm": "tini\n", "/proc/2/comm": "clamd\n", "/proc/1234/comm": "python3\n",
    "/etc/machine-id": sample("linux_machine_id.txt"),
}

SCENARIOS: dict[str, tuple[str, dict[tuple[str, ...], CommandResult], dict[str, str],
                           dict[str, Any], list[str]]] = {
    "windows, administrator, English": ("windows", WINDOWS_ADMIN, {}, dict(
        os_name="Windows 11 Pro", os_version="10.0.22631.3880", last_security_update=1718236800.0,
        disk_encrypted=True, encryption_method="BitLocker", firewall_on=True, screen_lock=True,
        screen_lock_timeout_seconds=600, edr_running=("Microsoft Defender", "CrowdStrike Falcon"),
        domain_joined=True, domain="city.example.lg.jp",
        hardware_id="4C4C4544-0035-3510-8052-B4C04F4E3732"), []),
    "windows, standard user, Japanese, fallbacks": ("windows", WINDOWS_USER_JA, {}, dict(
        os_name="Windows 10 Enterprise LTSC 2021", os_version="10.0.19044",
        last_security_update=jst(2024, 6, 13), disk_encrypted=True, encryption_method="BitLocker",
        firewall_on=True, screen_lock=False, screen_lock_timeout_seconds=None,
        edr_running=("Trend Micro Apex One",), domain_joined=True, domain="Example City",
        hardware_id="6b2f0c1e-7a3d-4e5f-9a8b-0c1d2e3f4a5b"), []),
    "windows, every command times out": ("windows", {k: TIMEOUT for k in WINDOWS_USER_JA}, {},
        dict(os_name="", os_version="", last_security_update=None, disk_encrypted=None,
             firewall_on=None, screen_lock=None, edr_running=(), domain_joined=None,
             hardware_id=""),
        ["os: Win32_OperatingSystem: timed out after 30 s", "disk_encryption: Get-BitLockerVolume",
         "firewall: Get-NetFirewallProfile: timed out", "last_security_update: Get-HotFix",
         "screen_lock: lock registry values", "edr: Get-Process", "domain:", "hardware_id:"]),
    "macos": ("macos", MACOS, {}, dict(
        os_name="macOS (build 23F79)", os_version="14.5",
        last_security_update=jst(2024, 5, 14, 9, 12, 1), disk_encrypted=True,
        encryption_method="FileVault", firewall_on=True, screen_lock=True,
        screen_lock_timeout_seconds=900, edr_running=("Microsoft Defender", "CrowdStrike Falcon"),
        domain_joined=True, domain="city.example.lg.jp",
        hardware_id="8A1C2E3F-4B5D-5E6F-8A7B-9C0D1E2F3A4B"), []),
    "linux, GNOME laptop, LUKS, not root": ("linux", LINUX_LAPTOP_COMMANDS, LINUX_LAPTOP_FILES, dict(
        os_name="Ubuntu 22.04.4 LTS, kernel 6.8.0-35-generic", os_version="22.04.4",
        last_security_update=1718236800.123456789, disk_encrypted=True, encryption_method="LUKS",
        firewall_on=True, screen_lock=True, screen_lock_timeout_seconds=330,
        edr_running=("CrowdStrike Falcon", "Sophos", "ClamAV"), domain_joined=True,
        domain="city.example.lg.jp", hardware_id="3d1219c7c4c5404aaa1f6d2a48adfda4"), []),
    "linux, container, no tools": ("linux", LINUX_CONTAINER_COMMANDS, LINUX_CONTAINER_FILES, dict(
        os_name="Debian GNU/Linux 12 (bookworm)", os_version="12.11", last_security_update=None,
        disk_encrypted=None, firewall_on=None, screen_lock=None, edr_running=("ClamAV",),
        domain_joined=False, hardware_id="3d1219c7c4c5404aaa1f6d2a48adfda4"),
        ["disk_encryption: the root filesystem is overlay: running in a container",
         "firewall: no firewall tool found",
         "last_security_update: local time zone unknown: date: not found",
         "screen_lock: no desktop session"]),
    "not a supported platform": ("freebsd", {}, {}, dict(os_family="unknown", os_name=""),
                                 ["os: unsupported platform 'freebsd'"]),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name: str) -> None:
    family, commands, files, expected, errors = SCENARIOS[name]
    facts = collect(family, Recorded(commands, files), NOW, "1.2.3")
    got = facts.to_json_dict()
    for key, value in expected.items():
        want = list(value) if isinstance(value, tuple) else value
        assert got[key] == pytest.approx(want) if isinstance(value, float) else got[key] == want, key
    assert (facts.agent_version, facts.collected_at) == ("1.2.3", NOW)
    assert facts.os_family == expected.get("os_family", family)
    assert len(facts.errors) == len(errors), facts.errors
    for error, prefix in zip(facts.errors, errors):
        assert error.startswith(prefix), (error, prefix)
    assert facts_from_json(facts.to_json_dict()) == facts


def _linux(commands: Mapping[tuple[str, ...], CommandResult] = {},
           files: Mapping[str, str] = {}) -> Any:
    runner = Recorded({**LINUX_LAPTOP_COMMANDS, **commands}, {**LINUX_LAPTOP_FILES, **files})
    return collect("linux", runner, NOW, "1.2.3")


def test_pending_security_updates_without_history_are_unknown() -> None:
    facts = _linux({linux.APT_SIMULATE: ok("linux_apt_simulate_pending.txt")},
                   {linux.APT_HISTORY: sample("linux_apt_history_no_security.txt")})
    assert facts.last_security_update is None
    assert facts.errors == ("last_security_update: 5 security updates pending (of 7); "
                            "/var/log/apt/history.log: no security upgrade recorded",)


def test_pending_security_updates_fall_back_to_the_last_recorded_security_upgrade() -> None:
    facts = _linux({linux.APT_SIMULATE: ok("linux_apt_simulate_pending.txt")})
    assert facts.last_security_update == jst(2024, 6, 12, 6, 25, 59)


def test_dnf_history_when_there_is_no_apt() -> None:
    facts = _linux({linux.APT_SIMULATE: CommandResult(None, error="not found"),
                    linux.DNF_HISTORY: ok("linux_dnf_history.txt")})
    assert facts.last_security_update == jst(2024, 6, 13, 10, 21)


@pytest.mark.parametrize(("mounts", "files", "expected"), [
    ("/dev/nvme0n1p2 / ext4 rw 0 0\n", {}, False),
    ("/dev/dm-0 / ext4 rw 0 0\n", {"/sys/block/dm-0/dm/uuid": "CRYPT-LUKS2-abc-root\n"}, True),
    ("/dev/dm-0 / ext4 rw 0 0\n", {"/sys/block/dm-0/dm/uuid": "LVM-abc\n"}, None),
    ("/dev/mapper/root / ext4 rw 0 0\n", {}, None),
    ("/dev/md0 / ext4 rw 0 0\n", {}, None),
    ("rpool/ROOT/ubuntu / zfs rw 0 0\n", {}, None),
])
def test_without_lsblk_only_what_sysfs_proves_is_known(mounts: str, files: dict[str, str],
                                                       expected: bool | None) -> None:
    facts = _linux({linux.LSBLK: CommandResult(None, error="not found")},
                   {linux.MOUNTS: mounts, **files})
    assert facts.disk_encrypted is expected
    assert any(e.startswith("disk_encryption: ") for e in facts.errors) == (expected is None)


@pytest.mark.parametrize(("commands", "expected", "error"), [
    ({linux.NFT: ok("linux_nft_docker_only.json")}, False, ""),
    ({linux.NFT: ok("linux_nft_docker_only.json"),
      linux.IPTABLES_SAVE: ok("linux_iptables_save_ufw.txt")}, True, ""),
    ({linux.FIREWALLD: CommandResult(252, "not running\n", "")}, None, "firewall-cmd: off"),
    ({linux.FIREWALLD: ok("linux_firewalld_running.txt")}, True, ""),
    ({linux.UFW: ok("linux_ufw_inactive.txt")}, None, "no ruleset could be read"),
])
def test_firewall_off_needs_a_whole_ruleset(commands: dict[tuple[str, ...], CommandResult],
                                            expected: bool | None, error: str) -> None:
    facts = _linux(commands, {linux.UFW_CONF: sample("linux_ufw_conf_disabled.txt")})
    assert facts.firewall_on is expected
    assert any(error and e.startswith("firewall: ") and error in e
               for e in facts.errors) == bool(error)


def test_ufw_conf_answers_when_ufw_status_needs_root() -> None:
    assert _linux().firewall_on is True
    assert _linux({}, {linux.UFW_CONF: sample("linux_ufw_conf_disabled.txt")}).firewall_on is None


def test_a_locked_screen_with_unknown_timeout_says_why() -> None:
    facts = _linux({linux.GSETTINGS_IDLE: TIMEOUT})
    assert (facts.screen_lock, facts.screen_lock_timeout_seconds) == (True, None)
    assert facts.errors == ("screen_lock_timeout: gsettings: timed out after 30 s",)


def test_a_configured_product_list_replaces_the_default() -> None:
    products = (Product("Municipal AV", processes=("lgav",)),)
    facts = _linux({linux.PROCESSES: CommandResult(0, "systemd\nlgav\nclamd\n", "")})
    assert facts.edr_running == ("ClamAV",)
    runner = Recorded({**LINUX_LAPTOP_COMMANDS,
                       linux.PROCESSES: CommandResult(0, "systemd\nlgav\nclamd\n", "")},
                      LINUX_LAPTOP_FILES)
    assert collect("linux", runner, NOW, "1", products=products).edr_running == ("Municipal AV",)


def test_a_product_list_from_configuration() -> None:
    products = parse_products([{"name": "Municipal AV", "processes": ["lgav.exe"],
                                "services": ["LgAvService"]}])
    assert running_products(["C:\\Program Files\\LGAV\\LGAV.EXE"], products) == ("Municipal AV",)
    assert running_products([], products, service_names=["lgavservice"]) == ("Municipal AV",)
    assert running_products(["lgav-helper"], products) == ()


@pytest.mark.parametrize(("raw", "where"), [
    ({}, "edr_products: expected a list"),
    ([1], "edr_products[0]: expected an object"),
    ([{"name": ""}], "edr_products[0].name"),
    ([{"name": "x", "processes": "lgav"}], "edr_products[0].processes"),
    ([{"name": "x"}], "edr_products[0]: needs"),
    ([{"name": "x", "process": ["lgav"]}], "edr_products[0].process: unknown field"),
])
def test_a_bad_product_list_names_the_bad_field(raw: object, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_products(raw)
    assert str(caught.value).startswith(where)


def test_powershell_gets_time_to_start_and_nothing_runs_through_a_shell() -> None:
    runner = Recorded(WINDOWS_ADMIN, {})
    collect("windows", runner, NOW, "1.2.3")
    assert all(argv[0] != "cmd" and "-c" not in argv[:2] for argv, _ in runner.calls)
    assert all(timeout >= 30 for argv, timeout in runner.calls if argv[0] == "powershell")


def test_the_cacheable_sources_are_commands_collect_runs() -> None:
    runner = Recorded({linux.UTC_OFFSET: ok("linux_utc_offset.txt"),
                       windows.UTC_OFFSET: ok("windows_utc_offset.txt")}, {})
    for family in ("windows", "macos", "linux"):
        collect(family, runner, NOW, "1")
    ran = {argv for argv, _ in runner.calls}
    assert RARELY_CHANGING - ran <= {windows.MACHINE_GUID, windows.DSREGCMD, linux.DNF_HISTORY,
                                     linux.APT_SECURITY_INDEXES, macos.SOFTWAREUPDATE_HISTORY}
    assert not {windows.BITLOCKER, windows.FIREWALL, linux.NFT, macos.FDESETUP} & RARELY_CHANGING


class Exploding:
    def run(self, argv: Sequence[str], timeout_seconds: float) -> CommandResult:
        raise RuntimeError("runner bug")

    def read(self, path: str) -> str | None:
        raise RuntimeError("runner bug")


@pytest.mark.parametrize("family", ["windows", "macos", "linux"])
def test_a_failing_runner_leaves_every_fact_unknown_without_raising(family: str) -> None:
    facts = collect(family, Exploding(), NOW, "1.2.3")
    assert facts.disk_encrypted is None and facts.firewall_on is None
    assert len(facts.errors) == 8
    assert all("internal error: RuntimeError: runner bug" in e for e in facts.errors)


def test_collection_is_deterministic() -> None:
    first = collect("windows", Recorded(WINDOWS_USER_JA, {}), NOW, "1.2.3")
    assert collect("windows", Recorded(WINDOWS_USER_JA, {}), NOW, "1.2.3") == first


RESULTS = st.one_of(
    st.builds(CommandResult, st.sampled_from([0, 0, 0, 1, 252]),
              st.text(max_size=200) | st.sampled_from(sorted(p.name for p in SAMPLES.iterdir()))
              .map(sample), st.text(max_size=50)),
    st.just(CommandResult(None, error="not found")), st.just(TIMEOUT))


class Random:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def run(self, argv: Sequence[str], timeout_seconds: float) -> CommandResult:
        return self.data.draw(RESULTS)

    def read(self, path: str) -> str | None:
        return self.data.draw(st.none() | st.text(max_size=200)
                              | st.sampled_from(sorted(p.name for p in SAMPLES.iterdir())).map(sample))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from(["windows", "macos", "linux"]), data=st.data())
def test_any_command_output_gives_well_formed_facts(family: str, data: st.DataObject) -> None:
    facts = collect(family, Random(data), NOW, "1.2.3")
    assert facts_from_json(facts.to_json_dict()) == facts
    assert not any("internal error" in e for e in facts.errors), facts.errors
