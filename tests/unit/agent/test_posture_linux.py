"""agent/posture/linux.py: recorded os-release, /proc/mounts, lsblk, nft, iptables-save, ufw,
firewalld, gsettings, apt, dnf, realm, sssd, samba and nsswitch contents, parsed into readings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.posture import linux
from agent.posture.findings import (
    DiskEncryption,
    DomainInfo,
    OsInfo,
    Reading,
    ScreenLock,
    known,
    parse_machine_id,
    parse_names,
    parse_uuid,
    unknown,
)
from agent.posture.products import running_products
from tests.unit.agent.posture_samples_harness import JST, check_recorded, check_variants, jst, sample

LUKS, PLAIN = DiskEncryption(True, "LUKS"), DiskEncryption(False, "")
CITY = "city.example.lg.jp"


CASES: list[tuple[str, Callable[[str], Reading[Any]], object]] = [
    ("linux_os_release_debian.txt",
     lambda t: linux.parse_os_release(t, sample("linux_debian_version.txt"), "6.1.0-21-amd64"),
     OsInfo("Debian GNU/Linux 12 (bookworm), kernel 6.1.0-21-amd64", "12.11")),
    ("linux_os_release_debian.txt", linux.parse_os_release,
     OsInfo("Debian GNU/Linux 12 (bookworm)", "12")),
    ("linux_os_release_ubuntu.txt",
     lambda t: linux.parse_os_release(t, "bookworm/sid\n", sample("linux_kernel.txt")),
     OsInfo("Ubuntu 22.04.4 LTS, kernel 6.8.0-35-generic", "22.04.4")),
    ("linux_os_release_rhel.txt", linux.parse_os_release,
     OsInfo("Red Hat Enterprise Linux 9.4 (Plow)", "9.4")),
    ("linux_os_release_arch.txt", linux.parse_os_release, None),
    ("linux_mounts_vm.txt", linux.parse_root_mount, ("/dev/vda", "ext4")),
    ("linux_mounts_laptop.txt", linux.parse_root_mount, ("/dev/mapper/vgubuntu-root", "ext4")),
    ("linux_mounts_container.txt", linux.parse_root_mount, ("overlay", "overlay")),
    ("linux_lsblk_vm.json", lambda t: linux.parse_lsblk(t, "/dev/vda"), PLAIN),
    ("linux_lsblk_luks_lvm.json", lambda t: linux.parse_lsblk(t, "/dev/mapper/vgubuntu-root"), LUKS),
    ("linux_lsblk_lvm_plain.json", lambda t: linux.parse_lsblk(t, "/dev/mapper/rhel-root"), PLAIN),
    ("linux_lsblk_vm.json", lambda t: linux.parse_lsblk(t.replace('"/"', "null"), "/dev/sdz1"),
     None),
    ("linux_dm_uuid_luks.txt", linux.parse_dm_uuid, LUKS),
    ("linux_dm_uuid_lvm.txt", linux.parse_dm_uuid, None),
    ("linux_nft_policy_drop.json", linux.parse_nft, True),
    ("linux_nft_firewalld.json", linux.parse_nft, True),
    ("linux_nft_docker_only.json", linux.parse_nft, False),
    ("linux_nft_empty.json", linux.parse_nft, False),
    ("linux_nft_not_root.txt", linux.parse_nft, None),
    ("linux_iptables_save_ufw.txt", linux.parse_iptables_save, True),
    ("linux_iptables_save_reject.txt", linux.parse_iptables_save, True),
    ("linux_iptables_save_docker.txt", linux.parse_iptables_save, False),
    ("linux_ufw_active.txt", linux.parse_ufw_status, True),
    ("linux_ufw_inactive.txt", linux.parse_ufw_status, False),
    ("linux_ufw_not_root.txt", linux.parse_ufw_status, None),
    ("linux_ufw_conf_enabled.txt", linux.parse_ufw_conf, True),
    ("linux_ufw_conf_disabled.txt", linux.parse_ufw_conf, False),
    ("linux_firewalld_running.txt", linux.parse_firewalld_state, True),
    ("linux_firewalld_not_running.txt", linux.parse_firewalld_state, False),
    ("linux_gsettings_lock_enabled_true.txt", linux.parse_gsettings_bool, True),
    ("linux_gsettings_lock_enabled_false.txt", linux.parse_gsettings_bool, False),
    ("linux_gsettings_idle_delay_300.txt", linux.parse_gsettings_uint, 300),
    ("linux_gsettings_idle_delay_0.txt", linux.parse_gsettings_uint, 0),
    ("linux_gsettings_idle_delay_300.txt", linux.parse_gsettings_bool, None),
    ("linux_apt_simulate_pending.txt", linux.parse_apt_simulation, (7, 5)),
    ("linux_apt_simulate_current.txt", linux.parse_apt_simulation, (0, 0)),
    ("linux_apt_simulate_ubuntu_nonsecurity.txt", linux.parse_apt_simulation, (1, 0)),
    ("linux_ufw_not_root.txt", linux.parse_apt_simulation, None),
    ("linux_apt_security_indexes.txt", linux.parse_mtimes, 1795435205.0),
    ("linux_apt_security_indexes_ubuntu.txt", linux.parse_mtimes, 1718236800.123456789),
    ("linux_apt_history_unattended.txt", lambda t: linux.parse_apt_history(t, JST),
     jst(2024, 6, 12, 6, 25, 59)),
    ("linux_apt_history_no_security.txt", lambda t: linux.parse_apt_history(t, JST), None),
    ("linux_dnf_history.txt", lambda t: linux.parse_dnf_history(t, JST), jst(2024, 6, 13, 10, 21)),
    ("linux_realm_joined.txt", linux.parse_realm_list, DomainInfo(True, CITY)),
    ("linux_realm_none.txt", linux.parse_realm_list, DomainInfo(False, "")),
    ("linux_sssd_conf.txt", linux.parse_sssd_conf, DomainInfo(True, CITY)),
    ("linux_smb_conf_member.txt", linux.parse_smb_conf, DomainInfo(True, CITY)),
    ("linux_smb_conf_standalone.txt", linux.parse_smb_conf, DomainInfo(False, "")),
    ("linux_nsswitch_files.txt", linux.parse_nsswitch, DomainInfo(False, "")),
    ("linux_nsswitch_sss.txt", linux.parse_nsswitch, None),
    ("linux_machine_id.txt", parse_machine_id, "3d1219c7c4c5404aaa1f6d2a48adfda4"),
    ("linux_product_uuid.txt", parse_uuid, "4c4c4544-0048-3510-8052-b7c04f4e3732"),
    ("linux_product_uuid.txt", parse_machine_id, None),
]


@pytest.mark.parametrize(("name", "parse", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_recorded_output(name: str, parse: Callable[[str], Reading[Any]], expected: object) -> None:
    check_recorded(name, parse, expected)


@pytest.mark.parametrize(("name", "parse", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_line_ends_and_whitespace_do_not_matter(
        name: str, parse: Callable[[str], Reading[Any]], expected: object) -> None:
    check_variants(name, parse, expected)


@pytest.mark.parametrize(("name", "expected"), [
    ("linux_environ_gnome.txt", "ubuntu:GNOME"),
    ("linux_environ_kde.txt", None),
    ("linux_environ_ssh.txt", None),
])
def test_screen_lock_settings_are_read_only_in_a_gnome_session(name: str,
                                                               expected: str | None) -> None:
    session = linux.desktop_session(linux.parse_environ(sample(name)))
    assert session.value == expected
    if name == "linux_environ_ssh.txt":
        assert session.error.startswith("no desktop session")


@pytest.mark.parametrize(("enabled", "idle", "delay", "expected"), [
    (known(True), known(300), known(30), ScreenLock(True, 330)),
    (known(True), known(0), known(0), ScreenLock(False, None)),
    (known(False), known(300), known(0), ScreenLock(False, None)),
    (known(True), unknown("gsettings: timed out"), known(0), ScreenLock(True, None)),
    (unknown("gsettings: not found"), known(300), known(0), None),
])
def test_gnome_locks_lock_delay_after_the_screen_blanks(
        enabled: Reading[bool], idle: Reading[int], delay: Reading[int],
        expected: ScreenLock | None) -> None:
    assert linux.combine_gnome_lock(enabled, idle, delay).value == expected


def test_truncated_process_names_still_match_their_product() -> None:
    names = parse_names(sample("linux_ps.txt")).value or ()
    assert running_products(names) == ("CrowdStrike Falcon", "Sophos", "ClamAV")
    assert running_products(["sophos_manageme"]) == ("Sophos",)


def test_proc_listing_keeps_process_ids_only() -> None:
    assert linux.parse_proc_listing(sample("linux_proc_listing.txt")) == ("1", "2", "1234")


TEXT_PARSERS: list[Callable[[str], Reading[Any]]] = [
    linux.parse_os_release, linux.parse_root_mount, lambda t: linux.parse_lsblk(t, "/dev/sda2"),
    linux.parse_dm_uuid, linux.parse_nft, linux.parse_iptables_save, linux.parse_ufw_status,
    linux.parse_ufw_conf, linux.parse_firewalld_state, linux.parse_gsettings_bool,
    linux.parse_gsettings_uint, linux.parse_apt_simulation, linux.parse_mtimes,
    lambda t: linux.parse_apt_history(t, JST), lambda t: linux.parse_dnf_history(t, -JST),
    linux.parse_realm_list, linux.parse_sssd_conf, linux.parse_smb_conf, linux.parse_nsswitch,
    parse_machine_id, parse_uuid,
    lambda t: linux.desktop_session(linux.parse_environ(t)),
]


@given(text=st.text(max_size=400))
def test_random_text_never_raises(text: str) -> None:
    for parse in TEXT_PARSERS:
        reading = parse(text)
        assert reading.value is not None or reading.error


@given(text=st.sampled_from([c[0] for c in CASES]).map(sample), data=st.data())
def test_mutated_samples_never_raise(text: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(max_size=30))
    for variant in (text[:cut], text[:cut] + junk + text[cut:], text.replace('"', junk[:1])):
        for parse in TEXT_PARSERS:
            parse(variant)
