"""agent/posture/windows.py: recorded PowerShell (5.1 and 7), manage-bde, netsh and powercfg
output in English and Japanese, parsed into readings; bad input is an unknown, never a raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.posture import windows
from agent.posture.findings import (
    DiskEncryption,
    DomainInfo,
    OsInfo,
    Reading,
    ScreenLock,
    known,
    parse_names,
    parse_utc_offset,
    parse_uuid,
    unknown,
)
from tests.unit.agent.posture_samples_harness import JST, check_recorded, jst, sample

ON, OFF = DiskEncryption(True, "BitLocker"), DiskEncryption(False, "")


CASES: list[tuple[str, Callable[[str], Reading[Any]], object]] = [
    ("windows_os_ps51.json", windows.parse_os, OsInfo("Windows 11 Pro", "10.0.22631.3880")),
    ("windows_os_ps7_no_ubr.json", windows.parse_os,
     OsInfo("Windows 10 Enterprise LTSC 2021", "10.0.19044")),
    ("windows_bitlocker_ps51_on.json", windows.parse_bitlocker, ON),
    ("windows_bitlocker_ps7_strings_on.json", windows.parse_bitlocker, ON),
    ("windows_bitlocker_ps51_off.json", windows.parse_bitlocker, OFF),
    ("windows_bitlocker_ps51_suspended.json", windows.parse_bitlocker, OFF),
    ("windows_bitlocker_ps7_encrypting.json", windows.parse_bitlocker, OFF),
    ("windows_bitlocker_denied.txt", windows.parse_bitlocker, None),
    ("windows_manage_bde_en_on.txt", windows.parse_manage_bde, ON),
    ("windows_manage_bde_en_two_volumes.txt", windows.parse_manage_bde, ON),
    ("windows_manage_bde_en_suspended.txt", windows.parse_manage_bde, OFF),
    ("windows_manage_bde_ja_on.txt", windows.parse_manage_bde, ON),
    ("windows_manage_bde_ja_off.txt", windows.parse_manage_bde, OFF),
    ("windows_manage_bde_en_denied.txt", windows.parse_manage_bde, None),
    ("windows_bitlocker_shell_on.txt", windows.parse_bitlocker_shell, ON),
    ("windows_bitlocker_shell_off.txt", windows.parse_bitlocker_shell, OFF),
    ("windows_defender_on.json", windows.parse_defender, True),
    ("windows_defender_passive.json", windows.parse_defender, False),
    ("windows_firewall_ps51_on.json", windows.parse_firewall, True),
    ("windows_firewall_ps7_public_off.json", windows.parse_firewall, False),
    ("windows_firewall_strings_on.json", windows.parse_firewall, True),
    ("windows_netsh_en.txt", windows.parse_netsh_firewall, True),
    ("windows_netsh_ja.txt", windows.parse_netsh_firewall, True),
    ("windows_netsh_ja_public_off.txt", windows.parse_netsh_firewall, False),
    ("windows_firewall_ps51_on.json", windows.parse_netsh_firewall, None),
    ("windows_hotfix_ps51.json", lambda t: windows.parse_hotfix(t, None), 1718236800.0),
    ("windows_hotfix_ps51_displayhint.json", lambda t: windows.parse_hotfix(t, None), 1718236800.0),
    ("windows_hotfix_ps7_local.json", lambda t: windows.parse_hotfix(t, JST), jst(2024, 6, 13)),
    ("windows_hotfix_ps7_local.json", lambda t: windows.parse_hotfix(t, None), None),
    ("windows_hotfix_ps7_offset.json", lambda t: windows.parse_hotfix(t, None), jst(2024, 6, 13)),
    ("windows_utc_offset.txt", parse_utc_offset, JST),
    ("windows_lock_registry_policy.json", windows.parse_lock_registry, ScreenLock(True, 600)),
    ("windows_lock_registry_none.json", windows.parse_lock_registry, ScreenLock(False, None)),
    ("windows_lock_registry_gpo_saver.json", windows.parse_lock_registry, ScreenLock(True, 300)),
    ("windows_powercfg_videoidle_ja.txt", windows.parse_powercfg, (300, 180)),
    ("windows_powercfg_standby_en.txt", windows.parse_powercfg, (1800, 900)),
    ("windows_powercfg_standby_ja_never_on_ac.txt", windows.parse_powercfg, (0, 900)),
    ("windows_powercfg_consolelock_en.txt", windows.parse_powercfg, (1, 1)),
    ("windows_powercfg_consolelock_ja.txt", windows.parse_powercfg, (1, 1)),
    ("windows_powercfg_error_en.txt", windows.parse_powercfg, None),
    ("windows_domain_joined.json", windows.parse_domain, DomainInfo(True, "city.example.lg.jp")),
    ("windows_domain_workgroup.json", windows.parse_domain, DomainInfo(False, "")),
    ("windows_dsregcmd_entra.txt", windows.parse_dsregcmd, DomainInfo(True, "Example City")),
    ("windows_dsregcmd_none.txt", windows.parse_dsregcmd, DomainInfo(False, "")),
    ("windows_uuid.txt", parse_uuid, "4C4C4544-0035-3510-8052-B4C04F4E3732"),
    ("windows_uuid_placeholder.txt", parse_uuid, None),
    ("windows_machine_guid.txt", parse_uuid, "6b2f0c1e-7a3d-4e5f-9a8b-0c1d2e3f4a5b"),
]


@pytest.mark.parametrize(("name", "parse", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_recorded_output(name: str, parse: Callable[[str], Reading[Any]], expected: object) -> None:
    check_recorded(name, parse, expected)


@pytest.mark.parametrize(("name", "parse", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_line_ends_bom_and_whitespace_do_not_matter(
        name: str, parse: Callable[[str], Reading[Any]], expected: object) -> None:
    text = sample(name).replace("\r\n", "\n").lstrip("\ufeff")
    for variant in (text, text.replace("\n", "\r\n"), "\ufeff" + text.replace("\n", "\r\n"),
                    "\n  " + text + "  \r\n\r\n"):
        assert parse(variant).value == expected


def test_samples_are_recorded_as_windows_prints_them() -> None:
    assert sample("windows_os_ps51.json").startswith("\ufeff{\r\n")
    assert "\r\n" in sample("windows_manage_bde_ja_on.txt")


def test_processes_and_services_are_one_name_a_line() -> None:
    assert parse_names(sample("windows_processes.txt")).value[:3] == (   # type: ignore[index]
        "ApplicationFrameHost", "audiodg", "csrss")
    assert "WinDefend" in (parse_names(sample("windows_services.txt")).value or ())


@pytest.mark.parametrize(("registry", "standby", "consolelock", "expected"), [
    (known(ScreenLock(True, 900)), known((1800, 900)), known((1, 1)), ScreenLock(True, 900)),
    (known(ScreenLock(False, None)), known((1800, 900)), known((1, 1)), ScreenLock(True, 1800)),
    (known(ScreenLock(False, None)), known((0, 900)), known((1, 1)), ScreenLock(False, None)),
    (known(ScreenLock(False, None)), known((1800, 900)), known((0, 1)), ScreenLock(False, None)),
    (known(ScreenLock(False, None)), unknown("powercfg: timed out"), known((1, 1)), None),
    (unknown("registry: denied"), known((600, 300)), known((1, 1)), ScreenLock(True, 600)),
])
def test_the_earliest_idle_lock_wins_and_off_needs_every_source(
        registry: Reading[ScreenLock], standby: Reading[tuple[int, int]],
        consolelock: Reading[tuple[int, int]], expected: ScreenLock | None) -> None:
    combined = windows.combine_screen_lock(registry, standby, consolelock)
    assert combined.value == expected
    if expected is None:
        assert "powercfg: timed out" in combined.error


def test_commands_are_argv_lists_without_a_shell() -> None:
    assert windows.BITLOCKER[:4] == ("powershell", "-NoProfile", "-NonInteractive", "-Command")
    assert "ConvertTo-Json" in windows.BITLOCKER[-1]
    assert windows.NETSH_FIREWALL == ("netsh", "advfirewall", "show", "allprofiles", "state")


TEXT_PARSERS: list[Callable[[str], Reading[Any]]] = [
    windows.parse_os, windows.parse_bitlocker, windows.parse_manage_bde,
    windows.parse_bitlocker_shell, windows.parse_defender, windows.parse_firewall,
    windows.parse_netsh_firewall, lambda t: windows.parse_hotfix(t, JST),
    windows.parse_lock_registry, windows.parse_powercfg, windows.parse_domain,
    windows.parse_dsregcmd, parse_uuid, parse_names, parse_utc_offset,
]
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["Caption", "Version", "UBR", "ProtectionStatus", "VolumeStatus",
                         "EncryptionPercentage", "Name", "Enabled", "InstalledOn", "value",
                         "PartOfDomain", "Domain", "InactivityTimeoutSecs", "ScreenSaveActive",
                         "ScreenSaverIsSecure", "ScreenSaveTimeOut", "AntivirusEnabled"]),
        inner, max_size=6), max_leaves=12)


@given(text=st.text(max_size=400))
def test_random_text_never_raises(text: str) -> None:
    for parse in TEXT_PARSERS:
        reading = parse(text)
        assert reading.value is not None or reading.error


@given(value=JSONISH)
def test_random_json_never_raises(value: object) -> None:
    import json
    text = json.dumps(value)
    for parse in TEXT_PARSERS:
        reading = parse(text)
        assert reading.value is not None or reading.error


@given(text=st.sampled_from([c[0] for c in CASES]).map(sample), data=st.data())
def test_mutated_samples_never_raise(text: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(max_size=30))
    for variant in (text[:cut], text[:cut] + junk + text[cut:], text.replace(":", junk[:1])):
        for parse in TEXT_PARSERS:
            parse(variant)
