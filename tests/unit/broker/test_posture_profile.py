"""broker/posture_profile.py: the [posture] section, its errors with their paths, and quarantine
host matching."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.posture_profile import PostureConfig, PostureProfile, parse_posture_config
from ztcore.errors import ConfigError

PROFILE: dict[str, Any] = {
    "tenant": "demo-city", "name": "standard",
    "min_os_version": {"windows": "10.0.19045", "macos": "14.0", "linux": "12"},
    "allow_other_os": False, "require_disk_encryption": True, "require_firewall": True,
    "require_edr": ["Microsoft Defender", "CrowdStrike Falcon", "Trend Micro Apex One"],
    "max_screen_lock_seconds": 600, "max_report_age_seconds": 180,
    "max_security_update_age_days": 45, "require_domain_joined": False}
SECTION: dict[str, Any] = {
    "report_interval_seconds": 60,
    "quarantine_allow": ["update.microsoft.com:443", "*.windowsupdate.com:443"],
    "profile": [PROFILE]}


def test_the_documented_example_parses_to_its_values() -> None:
    config = parse_posture_config(SECTION)
    assert config.report_interval_seconds == 60
    profile = config.profile_for("demo-city")
    assert profile == PostureProfile(
        tenant="demo-city", name="standard",
        min_os_version=(("windows", (10, 0, 19045)), ("macos", (14, 0)), ("linux", (12,))),
        allow_other_os=False, require_disk_encryption=True, require_firewall=True,
        require_edr=("Microsoft Defender", "CrowdStrike Falcon", "Trend Micro Apex One"),
        max_screen_lock_seconds=600, max_report_age_seconds=180,
        max_security_update_age_days=45, require_domain_joined=False)
    assert profile.min_version_for("macos") == (14, 0)
    assert profile.min_version_for("unknown") is None
    assert profile.allowed_families() == ("windows", "macos", "linux")
    assert config.profile_for("other-city") is None


def test_defaults_an_empty_section_checks_no_one() -> None:
    assert parse_posture_config({}) == PostureConfig()
    assert PostureConfig().report_interval_seconds == 60


def test_profile_defaults_fail_safe_and_report_age_follows_the_interval() -> None:
    config = parse_posture_config({"report_interval_seconds": 30, "profile": [
        {"tenant": "city-a", "name": "p", "min_os_version": {"windows": "10"}}]})
    profile = config.profile_for("city-a")
    assert profile is not None
    assert profile.require_disk_encryption and profile.require_firewall
    assert not profile.allow_other_os and not profile.require_domain_joined
    assert profile.require_edr == () and profile.max_screen_lock_seconds is None
    assert profile.max_security_update_age_days is None
    assert profile.max_report_age_seconds == 90                 # 3 x the interval


def test_allow_other_os_alone_is_a_valid_profile_and_versions_are_kept_in_family_order() -> None:
    config = parse_posture_config({"profile": [
        {"tenant": "city-a", "name": "any", "allow_other_os": True},
        {"tenant": "city-b", "name": "p", "min_os_version": {"linux": "12.7", "windows": "10"}}]})
    a, b = config.profile_for("city-a"), config.profile_for("city-b")
    assert a is not None and a.min_os_version == () and a.allow_other_os
    assert b is not None and b.min_os_version == (("windows", (10,)), ("linux", (12, 7)))


def test_report_age_of_exactly_twice_the_interval_is_accepted() -> None:
    config = parse_posture_config({"report_interval_seconds": 60,
                                   "profile": [{**PROFILE, "max_report_age_seconds": 120}]})
    assert config.profiles[0].max_report_age_seconds == 120


def _path(message: str) -> str:
    return re.escape(message)


@pytest.mark.parametrize(("raw", "message"), [
    ([], "posture: expected a table"),
    ({"colour": 1}, "posture.colour: unknown setting"),
    ({"report_interval_seconds": 0}, "posture.report_interval_seconds: expected a whole number"),
    ({"report_interval_seconds": -5}, "posture.report_interval_seconds"),
    ({"report_interval_seconds": 1.5}, "posture.report_interval_seconds"),
    ({"report_interval_seconds": True}, "posture.report_interval_seconds"),
    ({"report_interval_seconds": 86401}, "posture.report_interval_seconds"),
    ({"report_interval_seconds": None}, "posture.report_interval_seconds"),
    ({"quarantine_allow": "update.microsoft.com"}, "posture.quarantine_allow: expected a list"),
    ({"quarantine_allow": [""]}, "posture.quarantine_allow[0]"),
    ({"quarantine_allow": ["ok.example", 443]}, "posture.quarantine_allow[1]"),
    ({"quarantine_allow": ["*"]}, "posture.quarantine_allow[0]: a wildcard"),
    ({"quarantine_allow": ["*:443"]}, "posture.quarantine_allow[0]"),
    ({"quarantine_allow": ["*.com:443"]}, "posture.quarantine_allow[0]: '*.com:443' is too broad"),
    ({"quarantine_allow": ["a.*.example"]}, "posture.quarantine_allow[0]: a wildcard"),
    ({"quarantine_allow": ["update.example:0"]}, "posture.quarantine_allow[0]: port '0'"),
    ({"quarantine_allow": ["update.example:https"]}, "posture.quarantine_allow[0]: port"),
    ({"quarantine_allow": ["update.example:"]}, "posture.quarantine_allow[0]: port"),
    ({"quarantine_allow": ["upd ate.example"]}, "posture.quarantine_allow[0]"),
    ({"quarantine_allow": ["a..example"]}, "posture.quarantine_allow[0]"),
    ({"quarantine_allow": ["2001:db8::1"]}, "posture.quarantine_allow[0]: write an IPv6"),
    ({"quarantine_allow": ["[2001:db8::zz]:443"]}, "posture.quarantine_allow[0]"),
    ({"quarantine_allow": ["[2001:db8::1]x"]}, "posture.quarantine_allow[0]"),
    ({"profile": {"tenant": "x"}}, "posture.profile: expected an array of tables"),
    ({"profile": [PROFILE, {**PROFILE, "name": "strict"}]},
     "posture.profile[1].tenant: a second profile for tenant 'demo-city'"),
    ({"profile": [{**PROFILE, "colour": "red"}]}, "posture.profile[0].colour: unknown setting"),
    ({"profile": [{k: v for k, v in PROFILE.items() if k != "tenant"}]}, "posture.profile[0].tenant"),
    ({"profile": [{**PROFILE, "tenant": "Demo City"}]}, "posture.profile[0].tenant"),
    ({"profile": [{**PROFILE, "name": ""}]}, "posture.profile[0].name"),
    ({"profile": [{**PROFILE, "name": "Standard!"}]}, "posture.profile[0].name"),
    ({"profile": [{**PROFILE, "min_os_version": "10"}]},
     "posture.profile[0].min_os_version: expected a table"),
    ({"profile": [{**PROFILE, "min_os_version": {"windows": "10.0.x"}}]},
     "posture.profile[0].min_os_version.windows: expected a dotted version"),
    ({"profile": [{**PROFILE, "min_os_version": {"windows": ""}}]},
     "posture.profile[0].min_os_version.windows"),
    ({"profile": [{**PROFILE, "min_os_version": {"macos": 14.0}}]},
     "posture.profile[0].min_os_version.macos: expected a dotted version in quotes"),
    ({"profile": [{**PROFILE, "min_os_version": {"linux": 12}}]},
     "posture.profile[0].min_os_version.linux"),
    ({"profile": [{**PROFILE, "min_os_version": {"freebsd": "14"}}]},
     "posture.profile[0].min_os_version.freebsd: unknown OS family"),
    ({"profile": [{**PROFILE, "min_os_version": {"unknown": "1"}}]},
     "posture.profile[0].min_os_version.unknown: unknown OS family"),
    ({"profile": [{**PROFILE, "min_os_version": {}}]},
     "posture.profile[0].min_os_version: list at least one OS family"),
    ({"profile": [{**PROFILE, "allow_other_os": "no"}]}, "posture.profile[0].allow_other_os"),
    ({"profile": [{**PROFILE, "require_firewall": 1}]}, "posture.profile[0].require_firewall"),
    ({"profile": [{**PROFILE, "require_disk_encryption": None}]},
     "posture.profile[0].require_disk_encryption"),
    ({"profile": [{**PROFILE, "require_domain_joined": "true"}]},
     "posture.profile[0].require_domain_joined"),
    ({"profile": [{**PROFILE, "require_edr": "Microsoft Defender"}]},
     "posture.profile[0].require_edr: expected a list"),
    ({"profile": [{**PROFILE, "require_edr": ["Microsoft Defender", " "]}]},
     "posture.profile[0].require_edr[1]"),
    ({"profile": [{**PROFILE, "require_edr": ["Defender", "defender"]}]},
     "posture.profile[0].require_edr[1]: 'defender' is listed twice"),
    ({"profile": [{**PROFILE, "require_edr": ["a\nb"]}]}, "posture.profile[0].require_edr[0]"),
    ({"profile": [{**PROFILE, "max_screen_lock_seconds": 0}]},
     "posture.profile[0].max_screen_lock_seconds"),
    ({"profile": [{**PROFILE, "max_screen_lock_seconds": None}]},
     "posture.profile[0].max_screen_lock_seconds"),
    ({"profile": [{**PROFILE, "max_screen_lock_seconds": -600}]},
     "posture.profile[0].max_screen_lock_seconds"),
    ({"profile": [{**PROFILE, "max_security_update_age_days": 0}]},
     "posture.profile[0].max_security_update_age_days: expected a whole number of days"),
    ({"profile": [{**PROFILE, "max_security_update_age_days": 4.5}]},
     "posture.profile[0].max_security_update_age_days"),
    ({"profile": [{**PROFILE, "max_report_age_seconds": 0}]},
     "posture.profile[0].max_report_age_seconds"),
    ({"profile": [{**PROFILE, "max_report_age_seconds": 119}]},
     "posture.profile[0].max_report_age_seconds: must be at least twice "
     "posture.report_interval_seconds (120), got 119"),
    ({"report_interval_seconds": 600, "profile": [PROFILE]},
     "posture.profile[0].max_report_age_seconds: must be at least twice"),
])
def test_a_bad_posture_section_names_the_field(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=_path(message)):
        parse_posture_config(raw)


QUARANTINE = parse_posture_config({"quarantine_allow": [
    "update.microsoft.com:443", "*.windowsupdate.com:443", "Download.Example.JP.", "10.0.0.5:8530",
    "[2001:DB8::1]:443", "[2001:db8::2]"]})


@pytest.mark.parametrize(("host", "port", "allowed"), [
    ("update.microsoft.com", 443, True),
    ("UPDATE.microsoft.com.", 443, True),          # case and the root dot do not matter
    ("update.microsoft.com", 80, False),           # the port is part of the pattern
    ("evil-update.microsoft.com", 443, False),
    ("microsoft.com", 443, False),
    ("fe2.update.microsoft.com", 443, False),      # exact names do not cover sub-domains
    ("a.windowsupdate.com", 443, True),
    ("x.y.windowsupdate.com", 443, True),
    ("windowsupdate.com", 443, False),             # *. is strictly below the suffix
    ("evilwindowsupdate.com", 443, False),
    ("a.windowsupdate.com", 80, False),
    ("a.windowsupdate.com.evil.example", 443, False),
    ("download.example.jp", 443, True),            # no port in the pattern: any port
    ("download.example.jp", 8080, True),
    ("10.0.0.5", 8530, True),
    ("10.0.0.5", 443, False),
    ("2001:db8::1", 443, True),
    ("[2001:0db8:0:0::1]", 443, True),
    ("2001:db8::2", 22, True),
    ("2001:db8::3", 443, False),
    ("", 443, False),
    (":::", 443, False),
])
def test_quarantine_allows_exact_hosts_and_wildcards_below_a_suffix(host: str, port: int,
                                                                     allowed: bool) -> None:
    assert QUARANTINE.quarantine_allows(host, port) is allowed


def test_no_quarantine_patterns_allow_nothing() -> None:
    assert not parse_posture_config({}).quarantine_allows("update.microsoft.com", 443)


@settings(max_examples=1000)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(sorted(PROFILE) + ["profile", "quarantine_allow",
                                                         "report_interval_seconds", "x"]),
                      inner, max_size=5),
    max_leaves=12))
def test_any_section_parses_or_raises_config_error(raw: Any) -> None:
    try:
        parse_posture_config(raw)
    except ConfigError:
        pass


@settings(max_examples=200)
@given(st.text(max_size=40), st.integers(0, 70000))
def test_quarantine_allows_never_raises(host: str, port: int) -> None:
    QUARANTINE.quarantine_allows(host, port)
