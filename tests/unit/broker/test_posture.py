"""broker/posture.py: (profile, facts, received_at, now) -> (compliant, failed check ids), texts,
boundaries, the decision and the JSON form."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.posture import FailedCheck, PostureVerdict, evaluate, stale, stale_at
from broker.posture_profile import PostureProfile, parse_posture_config
from broker.posture_texts import CHECKS, TEXTS, render
from ztcore.decision import Action
from ztcore.posture import OS_FAMILIES, PostureFacts
from ztcore.reasons import Reason

NOW = 1_750_000_000.0
DAY = 86400.0
RECEIVED = NOW - 30                 # the broker received the report 30 s ago

PROFILE = parse_posture_config({"report_interval_seconds": 60, "profile": [{
    "tenant": "demo-city", "name": "standard",
    "min_os_version": {"windows": "10.0.19045", "macos": "14.0", "linux": "12"},
    "require_disk_encryption": True, "require_firewall": True,
    "require_edr": ["Microsoft Defender", "CrowdStrike Falcon"],
    "max_screen_lock_seconds": 600, "max_report_age_seconds": 180,
    "max_security_update_age_days": 45, "require_domain_joined": True}]}).profiles[0]
LAX = PostureProfile(tenant="demo-city", name="lax", allow_other_os=True,
                     require_disk_encryption=False, require_firewall=False)

WINDOWS = PostureFacts(
    os_family="windows", os_name="Windows 11 Pro", os_version="10.0.22631.3880",
    last_security_update=NOW - 10 * DAY, disk_encrypted=True, encryption_method="BitLocker",
    firewall_on=True, screen_lock=True, screen_lock_timeout_seconds=300,
    edr_running=("Microsoft Defender",), domain_joined=True, domain="city.example.lg.jp",
    agent_version="0.1.0", hardware_id="4C4C4544-0042-3510-8052-B4C04F4E4B32",
    collected_at=NOW - 35)
MACOS = dataclasses.replace(WINDOWS, os_family="macos", os_name="macOS", os_version="14.5",
                            encryption_method="FileVault", edr_running=("CrowdStrike Falcon",))
LINUX = dataclasses.replace(WINDOWS, os_family="linux", os_name="Debian GNU/Linux 12 (bookworm)",
                            os_version="12.7", encryption_method="LUKS",
                            edr_running=("crowdstrike falcon",))


def facts(base: PostureFacts = WINDOWS, **changes: Any) -> PostureFacts:
    return dataclasses.replace(base, **changes)


CASES: list[tuple[str, PostureProfile, PostureFacts, float, tuple[str, ...]]] = [
    # (name, profile, facts, received_at, failed check ids); `now` is always NOW
    ("windows compliant", PROFILE, WINDOWS, RECEIVED, ()),
    ("macos compliant", PROFILE, MACOS, RECEIVED, ()),
    ("linux compliant, edr name in another case", PROFILE, LINUX, RECEIVED, ()),
    # report-age: the broker's receive time, inclusive limit
    ("report age == max passes", PROFILE, WINDOWS, NOW - 180, ()),
    ("report age max + 1 ms fails", PROFILE, WINDOWS, NOW - 180.001, ("report-age",)),
    ("agent clock far behind does not matter", PROFILE, facts(collected_at=0.0), RECEIVED, ()),
    ("received in the future counts as fresh", PROFILE, WINDOWS, NOW + 5, ()),
    ("received_at NaN is stale", PROFILE, WINDOWS, float("nan"), ("report-age",)),
    # os-unsupported / os-version
    ("os version == minimum", PROFILE, facts(os_version="10.0.19045"), RECEIVED, ()),
    ("os version one build below", PROFILE, facts(os_version="10.0.19044.9999"), RECEIVED,
     ("os-version",)),
    ("numeric, not text: 10.0.100000 > 10.0.19045", PROFILE, facts(os_version="10.0.100000"),
     RECEIVED, ()),
    ("missing parts are zero: 14 == 14.0", PROFILE, facts(MACOS, os_version="14"), RECEIVED, ()),
    ("macos 13.6.7 < 14.0", PROFILE, facts(MACOS, os_version="13.6.7"), RECEIVED, ("os-version",)),
    ("linux 11.9 < 12", PROFILE, facts(LINUX, os_version="11.9"), RECEIVED, ("os-version",)),
    ("unparsable version", PROFILE, facts(os_version="10.0.abc"), RECEIVED, ("os-version",)),
    ("empty version", PROFILE, facts(os_version=""), RECEIVED, ("os-version",)),
    ("family not listed", dataclasses.replace(PROFILE, min_os_version=(("windows", (10,)),)),
     LINUX, RECEIVED, ("os-unsupported",)),
    ("unknown family refused", PROFILE, facts(os_family="unknown", os_version=""), RECEIVED,
     ("os-unsupported",)),
    ("allow_other_os admits unlisted and unknown families, without a version check",
     dataclasses.replace(PROFILE, min_os_version=(("windows", (10,)),), allow_other_os=True),
     facts(LINUX, os_family="unknown", os_version="weird"), RECEIVED, ()),
    # security-update: inclusive, from `now`
    ("update exactly 45 days ago passes", PROFILE, facts(last_security_update=NOW - 45 * DAY),
     RECEIVED, ()),
    ("update 45 days and 1 s ago fails", PROFILE, facts(last_security_update=NOW - 45 * DAY - 1),
     RECEIVED, ("security-update",)),
    ("update date in the future passes", PROFILE, facts(last_security_update=NOW + DAY),
     RECEIVED, ()),
    ("update date unknown", PROFILE, facts(last_security_update=None), RECEIVED,
     ("security-update",)),
    # disk, firewall, domain: False and None both fail
    ("disk not encrypted", PROFILE, facts(disk_encrypted=False), RECEIVED, ("disk-encryption",)),
    ("disk unknown", PROFILE, facts(disk_encrypted=None), RECEIVED, ("disk-encryption",)),
    ("firewall off", PROFILE, facts(firewall_on=False), RECEIVED, ("firewall",)),
    ("firewall unknown", PROFILE, facts(firewall_on=None), RECEIVED, ("firewall",)),
    ("not domain joined", PROFILE, facts(domain_joined=False), RECEIVED, ("domain-joined",)),
    ("domain unknown", PROFILE, facts(domain_joined=None), RECEIVED, ("domain-joined",)),
    # edr: any one of the required, case-insensitive exact names
    ("edr: the second required product", PROFILE,
     facts(edr_running=("Other AV", "CrowdStrike Falcon")), RECEIVED, ()),
    ("edr: names with spaces around", PROFILE, facts(edr_running=(" microsoft defender ",)),
     RECEIVED, ()),
    ("edr: a prefix is not the product", PROFILE, facts(edr_running=("Microsoft",)), RECEIVED,
     ("edr",)),
    ("edr: none running", PROFILE, facts(edr_running=()), RECEIVED, ("edr",)),
    ("edr: collector failed", PROFILE, facts(edr_running=(), errors=("edr: wmi timeout",)),
     RECEIVED, ("edr",)),
    # screen-lock: on and 1 <= timeout <= max
    ("screen lock timeout == max passes", PROFILE, facts(screen_lock_timeout_seconds=600),
     RECEIVED, ()),
    ("screen lock timeout max + 1 fails", PROFILE, facts(screen_lock_timeout_seconds=601),
     RECEIVED, ("screen-lock",)),
    ("screen lock timeout 1 passes", PROFILE, facts(screen_lock_timeout_seconds=1), RECEIVED, ()),
    ("screen lock timeout 0 means never", PROFILE, facts(screen_lock_timeout_seconds=0),
     RECEIVED, ("screen-lock",)),
    ("screen lock off", PROFILE, facts(screen_lock=False), RECEIVED, ("screen-lock",)),
    ("screen lock unknown", PROFILE, facts(screen_lock=None), RECEIVED, ("screen-lock",)),
    ("screen lock on, timeout unknown", PROFILE, facts(screen_lock_timeout_seconds=None),
     RECEIVED, ("screen-lock",)),
    # checks a profile does not ask for are not evaluated
    ("lax: everything unknown or off still passes", LAX, facts(
        os_family="unknown", os_version="", last_security_update=None, disk_encrypted=None,
        firewall_on=False, screen_lock=None, screen_lock_timeout_seconds=None, edr_running=(),
        domain_joined=None), RECEIVED, ()),
    ("lax still checks the report age", LAX, WINDOWS, NOW - 181, ("report-age",)),
    # several failures are all listed, in CHECKS order
    ("everything wrong", PROFILE, facts(
        os_version="6.1", last_security_update=NOW - 400 * DAY, disk_encrypted=False,
        firewall_on=None, edr_running=(), screen_lock=False, domain_joined=False), NOW - 999,
     ("report-age", "os-version", "security-update", "disk-encryption", "firewall", "edr",
      "screen-lock", "domain-joined")),
]


@pytest.mark.parametrize(("name", "profile", "report", "received_at", "failed"), CASES,
                         ids=[case[0] for case in CASES])
def test_posture_table(name: str, profile: PostureProfile, report: PostureFacts,
                       received_at: float, failed: tuple[str, ...]) -> None:
    verdict = evaluate(profile, report, received_at, NOW)
    assert verdict.failed_checks == failed
    assert verdict.compliant is (failed == ())
    assert verdict.evaluated_at == NOW and verdict.profile == profile.name


@pytest.mark.parametrize(("report", "check", "detail"), [
    (facts(os_version="10.0.19044"), "os-version", "Windows 10.0.19044 < 10.0.19045"),
    (facts(MACOS, os_version="13.6"), "os-version", "macOS 13.6 < 14.0"),
    (facts(os_version="10.0.abc"), "os-version", "unknown: unparsable version '10.0.abc'"),
    (facts(os_version="", errors=("os_version: registry key missing",)), "os-version",
     "unknown: os_version: registry key missing"),
    (facts(firewall_on=None, errors=("firewall: nft not found", "disk: no access")), "firewall",
     "unknown: firewall: nft not found"),
    (facts(firewall_on=None, errors=("Firewall-On: netsh failed",)), "firewall",
     "unknown: Firewall-On: netsh failed"),
    (facts(firewall_on=None), "firewall", "unknown"),
    (facts(firewall_on=False), "firewall", "firewall off"),
    (facts(disk_encrypted=None, errors=("disk_encrypted: manage-bde denied",)), "disk-encryption",
     "unknown: disk_encrypted: manage-bde denied"),
    (facts(edr_running=("Other AV",)), "edr",
     "none of Microsoft Defender, CrowdStrike Falcon running (found: Other AV)"),
    (facts(edr_running=()), "edr", "none of Microsoft Defender, CrowdStrike Falcon running "
     "(found: none)"),
    (facts(edr_running=tuple(f"AV {i}" for i in range(7))), "edr",
     "none of Microsoft Defender, CrowdStrike Falcon running (found: AV 0, AV 1, AV 2, AV 3, "
     "AV 4, ...)"),
    (facts(edr_running=(), errors=("edr: wmi timeout",)), "edr", "unknown: edr: wmi timeout"),
    (facts(screen_lock_timeout_seconds=900), "screen-lock", "screen locks after 900s > 600s"),
    (facts(screen_lock_timeout_seconds=0), "screen-lock", "screen lock timeout 0 (never) > 600s"),
    (facts(screen_lock=False), "screen-lock", "screen lock off"),
    (facts(screen_lock_timeout_seconds=None), "screen-lock",
     "unknown: screen lock on, timeout not reported"),
    (facts(last_security_update=NOW - 52.5 * DAY), "security-update",
     "last security update 52.5 days ago > 45 days"),
    (facts(last_security_update=None, errors=("updates: wuapi failed",)), "security-update",
     "unknown: updates: wuapi failed"),
    (facts(domain_joined=False), "domain-joined", "not joined to a domain"),
    (facts(os_family="unknown", os_name="FreeBSD", os_version=""), "os-unsupported",
     "unknown: OS family not reported ('FreeBSD')"),
])
def test_details_say_what_was_found_against_what_is_required(report: PostureFacts, check: str,
                                                              detail: str) -> None:
    verdict = evaluate(PROFILE, report, RECEIVED, NOW)
    assert [(f.check, f.detail) for f in verdict.failed] == [(check, detail)]


def test_detail_of_an_unsupported_family_and_of_report_age() -> None:
    windows_only = dataclasses.replace(PROFILE, min_os_version=(("windows", (10,)),
                                                                ("macos", (14,))))
    [failed] = evaluate(windows_only, LINUX, RECEIVED, NOW).failed
    assert failed.detail == "Linux not allowed (allowed: Windows, macOS)"
    assert "Debian GNU/Linux 12 (bookworm)" in failed.message_ja
    assert "Windows、macOS" in failed.message_ja and "Windows, macOS" in failed.message_en
    [failed] = evaluate(PROFILE, WINDOWS, NOW - 200, NOW).failed
    assert failed.detail == "last report 200s ago > 180s"


def test_fixes_are_specific_to_the_os() -> None:
    def firewall_fix(report: PostureFacts) -> FailedCheck:
        [failed] = evaluate(PROFILE, facts(report, firewall_on=False), RECEIVED, NOW).failed
        return failed
    windows, macos, linux = firewall_fix(WINDOWS), firewall_fix(MACOS), firewall_fix(LINUX)
    assert "Windows セキュリティ > ファイアウォールとネットワーク保護" in windows.fix_ja
    assert "Firewall & network protection" in windows.fix_en
    assert "システム設定 > ネットワーク > ファイアウォール" in macos.fix_ja
    assert "System Settings > Network > Firewall" in macos.fix_en
    assert "sudo ufw enable" in linux.fix_ja and "sudo ufw enable" in linux.fix_en
    assert windows.message_ja == macos.message_ja == "ファイアウォールが無効になっています。"


def test_texts_carry_the_profile_limits() -> None:
    [lock] = evaluate(PROFILE, facts(screen_lock=False), RECEIVED, NOW).failed
    assert "10分以内" in lock.message_ja and "10 minutes" in lock.message_en
    assert "10分以内" in lock.fix_ja
    [version] = evaluate(PROFILE, facts(MACOS, os_version="13.0"), RECEIVED, NOW).failed
    assert "macOS 14.0 以降" in version.fix_ja and "macOS 14.0 or later" in version.fix_en
    [update] = evaluate(PROFILE, facts(last_security_update=0.0), RECEIVED, NOW).failed
    assert "45 日を超えて" in update.message_ja and "45 days" in update.message_en
    assert "Windows Update" in update.fix_ja
    [edr] = evaluate(PROFILE, facts(edr_running=()), RECEIVED, NOW).failed
    assert "Microsoft Defender、CrowdStrike Falcon" in edr.message_ja


def test_an_unknown_fact_says_it_could_not_be_checked_and_to_call_it() -> None:
    [failed] = evaluate(PROFILE, facts(firewall_on=None), RECEIVED, NOW).failed
    assert failed.message_ja.startswith("ファイアウォールの状態を確認できませんでした。")
    assert failed.message_en.startswith("Sekimori could not determine whether the firewall is on")
    assert "情報システム課" in failed.fix_ja and "sekimori-agent status" in failed.fix_en


def test_every_check_renders_for_every_os_known_and_unknown() -> None:
    params = {"os": "X", "allowed_ja": "Windows", "allowed_en": "Windows", "minimum": "Windows 10",
              "max_days": "45", "required_ja": "A", "required_en": "A", "max_ja": "10分",
              "max_en": "10 minutes"}
    assert set(TEXTS) == set(CHECKS) and len(CHECKS) == 9
    for check in CHECKS:
        for family in OS_FAMILIES:
            for unknown in (False, True):
                text = render(check, family, unknown=unknown, params=params)
                for value in (text.message_ja, text.message_en, text.fix_ja, text.fix_en):
                    assert value.strip() and "{" not in value and "}" not in value


def test_the_decision_names_the_failed_checks() -> None:
    verdict = evaluate(PROFILE, facts(firewall_on=False, edr_running=()), RECEIVED, NOW)
    decision = verdict.decision()
    assert decision.action is Action.DENY and decision.reasons == (Reason.DEVICE_NONCOMPLIANT,)
    assert decision.status == 403
    assert decision.detail == ("firewall: firewall off; edr: none of Microsoft Defender, "
                               "CrowdStrike Falcon running (found: none)")
    ok = evaluate(PROFILE, WINDOWS, RECEIVED, NOW).decision()
    assert ok.allowed and ok.reasons == (Reason.DEVICE_COMPLIANT,)


def test_the_decision_detail_is_bounded() -> None:
    noisy = facts(edr_running=(), firewall_on=None, disk_encrypted=None, domain_joined=None,
                  screen_lock=None, last_security_update=None, os_version="",
                  errors=tuple(f"{name}: " + "x" * 240 for name in (
                      "edr", "firewall", "disk", "domain", "screen_lock", "updates", "os")))
    verdict = evaluate(PROFILE, noisy, RECEIVED, NOW)
    assert len(verdict.failed) == 7
    assert all(len(f.detail) <= 300 for f in verdict.failed)
    assert len(verdict.decision().detail) <= 1000


def test_json_form() -> None:
    verdict = evaluate(PROFILE, facts(firewall_on=False), RECEIVED, NOW)
    out = json.loads(json.dumps(verdict.to_json_dict(), ensure_ascii=False))
    assert out["compliant"] is False and out["reason"] == "device-noncompliant"
    assert out["profile"] == "standard" and out["evaluated_at"] == NOW
    [failed] = out["failed"]
    assert failed["check"] == "firewall" and failed["detail"] == "firewall off"
    assert set(failed) == {"check", "detail", "message_ja", "message_en", "fix_ja", "fix_en"}
    ok = evaluate(PROFILE, WINDOWS, RECEIVED, NOW).to_json_dict()
    assert ok == {"compliant": True, "reason": "device-compliant", "profile": "standard",
                  "evaluated_at": NOW, "failed": []}


@pytest.mark.parametrize(("received_at", "is_stale"), [
    (NOW, False), (NOW - 179.999, False), (NOW - 180, False),     # == max: still fresh
    (NOW - 180.001, True), (NOW - 10 * DAY, True), (NOW + 60, False), (float("nan"), True),
])
def test_stale_is_the_report_age_rule(received_at: float, is_stale: bool) -> None:
    assert stale(received_at, PROFILE, NOW) is is_stale
    assert ("report-age" in evaluate(PROFILE, WINDOWS, received_at, NOW).failed_checks) is is_stale


def test_stale_at_is_the_last_fresh_instant() -> None:
    at = stale_at(RECEIVED, PROFILE)
    assert at == RECEIVED + 180
    assert not stale(RECEIVED, PROFILE, at) and stale(RECEIVED, PROFILE, at + 0.001)


# --- random facts and profiles: never raise, and compliant exactly when nothing failed --------

_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_characters="\x7f"),
                max_size=30)
_TIME = st.one_of(st.none(), st.floats(0, 4e9), st.floats(0, 1e300))
FACTS = st.builds(
    PostureFacts,
    os_family=st.sampled_from(OS_FAMILIES),
    os_name=_TEXT,
    os_version=st.one_of(_TEXT, st.lists(st.integers(0, 10**9), min_size=1, max_size=6)
                         .map(lambda parts: ".".join(map(str, parts)))),
    last_security_update=_TIME,
    disk_encrypted=st.none() | st.booleans(),
    encryption_method=_TEXT,
    firewall_on=st.none() | st.booleans(),
    screen_lock=st.none() | st.booleans(),
    screen_lock_timeout_seconds=st.none() | st.integers(0, 10**7),
    edr_running=st.lists(st.sampled_from(["Microsoft Defender", "microsoft defender", "Other"])
                         | _TEXT, max_size=8).map(tuple),
    domain_joined=st.none() | st.booleans(),
    domain=_TEXT, agent_version=_TEXT, hardware_id=_TEXT,
    collected_at=st.floats(0, 4e9),
    errors=st.lists(st.sampled_from(["firewall: x", "edr: y", "os: z"]) | _TEXT,
                    max_size=4).map(tuple))
PROFILES = st.builds(
    PostureProfile,
    tenant=st.just("demo-city"), name=st.just("p"),
    min_os_version=st.lists(st.sampled_from(["windows", "macos", "linux"]), unique=True).flatmap(
        lambda families: st.tuples(*[st.tuples(st.just(f), st.lists(
            st.integers(0, 99), min_size=1, max_size=4).map(tuple)) for f in families])),
    allow_other_os=st.booleans(), require_disk_encryption=st.booleans(),
    require_firewall=st.booleans(),
    require_edr=st.lists(st.sampled_from(["Microsoft Defender", "CrowdStrike Falcon"]),
                         unique=True).map(tuple),
    max_screen_lock_seconds=st.none() | st.integers(1, 86400),
    max_report_age_seconds=st.integers(2, 7 * 86400),
    max_security_update_age_days=st.none() | st.integers(1, 3650),
    require_domain_joined=st.booleans())
_NOW = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 4e9)


@settings(max_examples=400)
@given(PROFILES, FACTS, _NOW, _NOW)
def test_random_facts_never_raise_and_compliant_iff_nothing_failed(
        profile: PostureProfile, report: PostureFacts, received_at: float, now: float) -> None:
    verdict = evaluate(profile, report, received_at, now)
    assert isinstance(verdict, PostureVerdict)
    assert verdict.compliant == (verdict.failed == ())
    assert verdict.decision().allowed is verdict.compliant
    ids = verdict.failed_checks
    assert len(set(ids)) == len(ids) and list(ids) == [c for c in CHECKS if c in ids]
    assert ("report-age" in ids) is stale(received_at, profile, now)
    for failed in verdict.failed:
        assert failed.detail and len(failed.detail) <= 300
        for text in (failed.message_ja, failed.message_en, failed.fix_ja, failed.fix_en):
            assert text.strip() and "{" not in text.replace(report.os_name, "")
    json.dumps(verdict.to_json_dict(), allow_nan=True)
