"""agent/posture/macos.py: recorded sw_vers, fdesetup, socketfilterfw, dsconfigad, ioreg,
system_profiler, softwareupdate, sysadminctl and pmset output, parsed into readings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.posture import macos
from agent.posture.findings import (
    DiskEncryption,
    DomainInfo,
    OsInfo,
    Reading,
    ScreenLock,
    known,
    parse_names,
    parse_utc_offset,
    unknown,
)
from agent.posture.products import running_products
from tests.unit.agent.posture_samples_harness import JST, check_recorded, check_variants, jst, sample

ON, OFF = DiskEncryption(True, "FileVault"), DiskEncryption(False, "")
UUID = "8A1C2E3F-4B5D-5E6F-8A7B-9C0D1E2F3A4B"


CASES: list[tuple[str, Callable[[str], Reading[Any]], object]] = [
    ("macos_sw_vers_14.txt", macos.parse_sw_vers, OsInfo("macOS (build 23F79)", "14.5")),
    ("macos_sw_vers_10_15.txt", macos.parse_sw_vers, OsInfo("Mac OS X (build 19H2026)", "10.15.7")),
    ("macos_fdesetup_on.txt", macos.parse_fdesetup, ON),
    ("macos_fdesetup_off.txt", macos.parse_fdesetup, OFF),
    ("macos_fdesetup_encrypting.txt", macos.parse_fdesetup, OFF),
    ("macos_fdesetup_pending.txt", macos.parse_fdesetup, OFF),
    ("macos_fdesetup_deferred.txt", macos.parse_fdesetup, OFF),
    ("macos_pmset.txt", macos.parse_fdesetup, None),
    ("macos_socketfilterfw_on.txt", macos.parse_socketfilterfw, True),
    ("macos_socketfilterfw_off.txt", macos.parse_socketfilterfw, False),
    ("macos_socketfilterfw_block_all.txt", macos.parse_socketfilterfw, True),
    ("macos_fdesetup_on.txt", macos.parse_socketfilterfw, None),
    ("macos_dsconfigad_bound.txt", macos.parse_dsconfigad, DomainInfo(True, "city.example.lg.jp")),
    ("macos_dsconfigad_unbound.txt", macos.parse_dsconfigad, DomainInfo(False, "")),
    ("macos_pmset.txt", macos.parse_dsconfigad, None),
    ("macos_ioreg.txt", macos.parse_ioreg_uuid, UUID),
    ("macos_system_profiler.txt", macos.parse_system_profiler_uuid,
     "2B7E9C41-0D3A-5F68-9E12-7C4B8A1D6E30"),
    ("macos_pmset.txt", macos.parse_ioreg_uuid, None),
    ("macos_softwareupdate_history_us.txt",
     lambda t: macos.parse_softwareupdate_history(t, JST), jst(2024, 5, 14, 9, 12, 1)),
    ("macos_softwareupdate_history_ja.txt",
     lambda t: macos.parse_softwareupdate_history(t, JST), jst(2024, 6, 3, 18, 40, 22)),
    ("macos_softwareupdate_history_signatures_only.txt",
     lambda t: macos.parse_softwareupdate_history(t, JST), None),
    ("macos_sysadminctl_300.txt", macos.parse_screen_lock, ScreenLock(True, 300)),
    ("macos_sysadminctl_immediate.txt", macos.parse_screen_lock, ScreenLock(True, 0)),
    ("macos_sysadminctl_off.txt", macos.parse_screen_lock, ScreenLock(False, None)),
    ("macos_idle_time.txt", macos.parse_idle_seconds, 1200),
    ("macos_idle_time_missing.txt", macos.parse_idle_seconds, None),
    ("macos_pmset.txt", macos.parse_display_sleep, 600),
    ("macos_utc_offset.txt", parse_utc_offset, JST),
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


def test_signature_updates_do_not_count_as_security_updates() -> None:
    reading = macos.parse_softwareupdate_history(
        sample("macos_softwareupdate_history_signatures_only.txt"), JST)
    assert "no macOS or security update" in reading.error


@pytest.mark.parametrize(("lock", "idle", "display_sleep", "expected"), [
    (known(ScreenLock(True, 5)), known(1200), known(600), ScreenLock(True, 605)),
    (known(ScreenLock(True, 0)), known(300), known(0), ScreenLock(True, 300)),
    (known(ScreenLock(True, 0)), known(0), known(0), ScreenLock(False, None)),
    (known(ScreenLock(True, 60)), unknown("defaults: exit status 1"), known(600),
     ScreenLock(True, 660)),
    (known(ScreenLock(True, 60)), unknown("defaults: exit status 1"), unknown("pmset: timeout"),
     ScreenLock(True, None)),
    (known(ScreenLock(False, None)), known(300), known(600), ScreenLock(False, None)),
    (unknown("sysadminctl: not found"), known(300), known(600), None),
])
def test_the_lock_comes_after_the_screen_saver_or_display_sleep(
        lock: Reading[ScreenLock], idle: Reading[int], display_sleep: Reading[int],
        expected: ScreenLock | None) -> None:
    assert macos.combine_screen_lock(lock, idle, display_sleep).value == expected


def test_security_products_are_found_in_system_extension_paths() -> None:
    names = parse_names(sample("macos_ps.txt")).value or ()
    assert running_products(names) == ("Microsoft Defender", "CrowdStrike Falcon")


TEXT_PARSERS: list[Callable[[str], Reading[Any]]] = [
    macos.parse_sw_vers, macos.parse_fdesetup, macos.parse_socketfilterfw, macos.parse_dsconfigad,
    macos.parse_ioreg_uuid, macos.parse_system_profiler_uuid,
    lambda t: macos.parse_softwareupdate_history(t, JST), macos.parse_screen_lock,
    macos.parse_idle_seconds, macos.parse_display_sleep,
]


@given(text=st.text(max_size=400))
def test_random_text_never_raises(text: str) -> None:
    for parse in TEXT_PARSERS:
        reading = parse(text)
        assert reading.value is not None or reading.error


@given(text=st.sampled_from([c[0] for c in CASES]).map(sample), data=st.data())
def test_mutated_samples_never_raise(text: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(alphabet=st.characters(), max_size=30))
    for variant in (text[:cut], text[:cut] + junk + text[cut:], text.replace("\t", junk[:2])):
        for parse in TEXT_PARSERS:
            parse(variant)
