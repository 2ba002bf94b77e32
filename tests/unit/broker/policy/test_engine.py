"""broker/policy/engine.py: (policy, request) → (allowed, layer, rule id, reasons, obligations),
with the fixed request builder of fixtures.py (Monday 10:00, internet segment, MFA a minute old)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from broker.policy.engine import DecisionCache, compile_policy, decide
from broker.policy.model import (
    App,
    AppKind,
    Obligation,
    Policy,
    PolicyError,
    SecurityModel,
    Tenant,
    TimeWindow,
    Zone,
)
from tests.unit.broker.policy.fixtures import CITY, PREFECTURE, compiled, request

INSPECT, NO_INSPECT, SANITISE = Obligation.INSPECT, Obligation.DO_NOT_INSPECT, Obligation.SANITISE
OK = ("policy-allowed",)
DENIED = ("policy-denied",)
PRIVATE = ("private-app-default-deny",)
LG, MY = Zone.LGWAN, Zone.MYNUMBER
TAX = {"host": "tax.city.lg.jp"}
NEWS = {"host": "news.example", "url_category": "news"}
BANK = {"host": "www.bank.example"}
PORTAL = {"host": "portal.pref.lg.jp"}

# name, model, request changes, (allowed, layer, rule id, reasons, obligations)
CASES: list[tuple[str, SecurityModel, dict[str, Any], tuple[bool, str, str, tuple[str, ...], set[Obligation]]]] = [
    ("unknown host: internet default", SecurityModel.BETA, {},
     (True, "default", "default:internet", OK, {INSPECT})),
    ("news in working hours", SecurityModel.BETA, NEWS,
     (True, "municipality", "r-003", OK, {INSPECT})),
    ("news on Saturday", SecurityModel.BETA, {**NEWS, "weekday": 5},
     (False, "municipality", "r-004", DENIED, set())),
    ("news Friday 17:14", SecurityModel.BETA, {**NEWS, "weekday": 4, "minute_of_day": 17 * 60 + 14},
     (True, "municipality", "r-003", OK, {INSPECT})),
    ("news Friday 17:15 (end exclusive)", SecurityModel.BETA,
     {**NEWS, "weekday": 4, "minute_of_day": 17 * 60 + 15}, (False, "municipality", "r-004", DENIED, set())),
    ("baseline deny beats a municipality allow", SecurityModel.BETA,
     {"host": "casino.example", "url_category": "gambling"}, (False, "baseline", "b-001", DENIED, set())),
    ("group allowed to tax system: sanitised", SecurityModel.BETA, TAX,
     (True, "municipality", "r-001", OK, {SANITISE})),
    ("other group: app group's require-mfa holds", SecurityModel.BETA, {**TAX, "groups": frozenset({"住民課"})},
     (True, "municipality", "r-005", OK, {SANITISE})),
    ("other group: MFA too old", SecurityModel.BETA,
     {**TAX, "groups": frozenset(), "mfa_age_seconds": 15 * 60 + 1},
     (False, "municipality", "r-005", ("mfa-too-old",), set())),
    ("other group on lgwan: no MFA", SecurityModel.BETA,
     {**TAX, "groups": frozenset(), "segment": LG, "mfa": False, "mfa_age_seconds": None},
     (False, "municipality", "r-005", ("mfa-required",), set())),
    ("guard before rules: no MFA from internet", SecurityModel.BETA, {**TAX, "mfa": False},
     (False, "guard", "guard:lgwan-needs-mfa-and-posture", ("zone-lgwan-needs-mfa-and-posture",), set())),
    ("alpha: lgwan web app refused from internet", SecurityModel.ALPHA, TAX,
     (False, "guard", "guard:alpha-lgwan-vdi-only", ("zone-lgwan-vdi-only",), set())),
    ("alpha: screen transfer allowed", SecurityModel.ALPHA, {"host": "vdi.city.lg.jp"},
     (True, "municipality", "r-005", OK, {SANITISE})),
    ("tax host on another port: the wildcard lgwan app, default deny", SecurityModel.BETA, {**TAX, "port": 22},
     (False, "default", "default:private", PRIVATE, set())),
    ("internet to mynumber", SecurityModel.BETA_PRIME, {"host": "a.jyuki.city.lg.jp"},
     (False, "guard", "guard:internet-to-mynumber", ("zone-mynumber-forbidden",), set())),
    ("public site under an lgwan wildcard: guard sees lgwan", SecurityModel.BETA,
     {"host": "www.city.lg.jp", "posture_compliant": False},
     (False, "guard", "guard:lgwan-needs-mfa-and-posture", ("zone-lgwan-needs-mfa-and-posture",), set())),
    ("public site under an lgwan wildcard: rules see the site", SecurityModel.BETA, {"host": "www.city.lg.jp"},
     (True, "default", "default:internet", OK, {INSPECT, SANITISE})),
    ("posture profile strict", SecurityModel.BETA, {"host": "hr.city.example", "posture_profile": "strict"},
     (True, "municipality", "r-006", OK, set())),
    ("posture profile strict but non-compliant", SecurityModel.BETA,
     {"host": "hr.city.example", "posture_profile": "strict", "posture_compliant": False},
     (False, "default", "default:private", PRIVATE, set())),
    ("other posture profile; disabled rule ignored", SecurityModel.BETA, {"host": "hr.city.example"},
     (False, "default", "default:private", PRIVATE, set())),
    ("night batch Tuesday 23:00", SecurityModel.BETA,
     {"host": "batch.city.example", "user": "batch-operator", "weekday": 1, "minute_of_day": 23 * 60},
     (True, "municipality", "r-007", OK, set())),
    ("night batch Monday 03:00 (Sunday's window)", SecurityModel.BETA,
     {"host": "batch.city.example", "user": "batch-operator", "minute_of_day": 180},
     (True, "municipality", "r-007", OK, set())),
    ("night batch at noon", SecurityModel.BETA,
     {"host": "batch.city.example", "user": "batch-operator", "minute_of_day": 720},
     (False, "default", "default:private", PRIVATE, set())),
    ("night batch, other user", SecurityModel.BETA,
     {"host": "batch.city.example", "minute_of_day": 23 * 60}, (False, "default", "default:private", PRIVATE, set())),
    ("intranet from the office network", SecurityModel.BETA, {"host": "portal.city.example"},
     (True, "municipality", "r-008", OK, set())),
    ("intranet from elsewhere", SecurityModel.BETA, {"host": "portal.city.example", "source_address": "192.0.2.5"},
     (False, "default", "default:private", PRIVATE, set())),
    ("intranet, source unknown", SecurityModel.BETA, {"host": "portal.city.example", "source_address": None},
     (False, "default", "default:private", PRIVATE, set())),
    ("baseline's do-not-inspect beats the municipality's inspect", SecurityModel.BETA, BANK,
     (True, "municipality", "r-009", OK, {NO_INSPECT})),
    ("sanitise overrides do-not-inspect", SecurityModel.BETA, {**BANK, "segment": LG},
     (True, "municipality", "r-009", OK, {SANITISE, INSPECT})),
    ("municipality denies more strictly than the baseline", SecurityModel.BETA, {**PORTAL, "user": "sato"},
     (False, "municipality", "r-010", DENIED, set())),
    ("baseline allow with its MFA, municipality allow", SecurityModel.BETA, PORTAL,
     (True, "municipality", "r-011", OK, {SANITISE})),
    ("baseline's MFA cannot be loosened", SecurityModel.BETA, {**PORTAL, "mfa_age_seconds": 31 * 60},
     (False, "baseline", "b-003", ("mfa-too-old",), set())),
    ("do-not-inspect", SecurityModel.BETA, {"host": "mail.example.jp"},
     (True, "municipality", "r-012", OK, {NO_INSPECT})),
    ("do-not-inspect from lgwan: sanitised, so inspected", SecurityModel.BETA,
     {"host": "mail.example.jp", "segment": LG}, (True, "municipality", "r-012", OK, {SANITISE, INSPECT})),
    ("mynumber to its specific communication", SecurityModel.BETA,
     {"host": "www.eltax.lta.go.jp", "segment": MY, "address": "203.0.113.10"},
     (True, "default", "default:specific", OK, set())),
    ("mynumber to the prefecture's specific communication", SecurityModel.ALPHA,
     {"host": "middle.j-lis.example", "segment": MY, "address": "198.51.100.5"},
     (True, "default", "default:specific", OK, set())),
    ("mynumber: specific host resolved elsewhere", SecurityModel.BETA,
     {"host": "www.eltax.lta.go.jp", "segment": MY, "address": "198.51.100.1"},
     (False, "guard", "guard:mynumber-specific-only", ("zone-mynumber-specific-only",), set())),
    ("mynumber to public DNS", SecurityModel.BETA, {"host": "8.8.8.8", "port": 53, "segment": MY},
     (False, "guard", "guard:mynumber-specific-only", ("zone-mynumber-specific-only",), set())),
    ("mynumber to a mynumber app", SecurityModel.BETA, {"host": "a.jyuki.city.lg.jp", "segment": MY},
     (False, "guard", "guard:mynumber-specific-only", ("zone-mynumber-specific-only",), set())),
    ("lgwan to mynumber", SecurityModel.BETA, {"host": "a.jyuki.city.lg.jp", "segment": LG},
     (False, "guard", "guard:lgwan-to-mynumber", ("zone-mynumber-forbidden",), set())),
    ("another tenant's request", SecurityModel.BETA, {"tenant": "other-city"},
     (False, "engine", "engine:tenant-mismatch", ("internal-error",), set())),
]


@pytest.mark.parametrize("name,model,changes,expected", CASES, ids=[c[0] for c in CASES])
def test_decisions(name: str, model: SecurityModel, changes: dict[str, Any],
                   expected: tuple[bool, str, str, tuple[str, ...], set[Obligation]]) -> None:
    policy = compiled(model)
    decision = decide(policy, request(**changes))
    got = (decision.allowed, decision.layer, decision.rule_id, decision.reasons, set(decision.obligations))
    assert got == expected, decision.detail
    cache = DecisionCache()
    assert cache.decide(policy, request(**changes)) == decision == cache.decide(policy, request(**changes))


def test_denies_carry_the_rule_and_mfa_window() -> None:
    policy = compiled()
    denied = decide(policy, request(**NEWS, weekday=6))
    assert denied.detail == "r-004: 勤務時間外のニュースは禁止" and denied.app == "news"
    stale = decide(policy, request(**TAX, groups=frozenset(), mfa_age_seconds=3600.0))
    assert stale.mfa_within_minutes == 15 and not stale.obligations
    allowed = decide(policy, request(**PORTAL))
    assert allowed.mfa_within_minutes == 30 and "baseline b-003" in allowed.detail


def test_hits_are_counted_per_rule_and_never_hit_rules_stay_zero() -> None:
    policy = compiled()
    for changes in (NEWS, NEWS, {**NEWS, "weekday": 5}, PORTAL, {}):
        decide(policy, request(**changes))
    assert policy.hits["r-003"] == 2 and policy.hits["r-004"] == 1
    assert policy.hits["r-011"] == 1 and policy.hits["b-003"] == 1   # both layers consulted
    assert policy.hits["default:internet"] == 1
    assert policy.hits["r-013"] == 0 and policy.hits["r-002"] == 0


def test_a_broken_request_fails_closed() -> None:
    decision = decide(compiled(), request(**TAX, groups=None))
    assert (decision.allowed, decision.rule_id, decision.reasons) == (False, "engine:internal-error",
                                                                      ("internal-error",))


def test_cache_keys_bucket_time_and_mfa() -> None:
    policy = compiled()
    monday_10, monday_11 = request(minute_of_day=600), request(minute_of_day=660)
    assert policy.request_key(monday_10) == policy.request_key(monday_11)
    assert policy.request_key(monday_10) != policy.request_key(request(minute_of_day=17 * 60 + 15))
    assert policy.request_key(request(mfa_age_seconds=10)) == policy.request_key(request(mfa_age_seconds=900))
    assert policy.request_key(request(mfa_age_seconds=900)) != policy.request_key(request(mfa_age_seconds=901))
    cache = DecisionCache()
    assert cache.decide(policy, request(**NEWS)).allowed
    assert not cache.decide(policy, request(**NEWS, weekday=5)).allowed
    assert (cache.hits, cache.misses) == (0, 2)
    assert cache.decide(policy, request(**NEWS, minute_of_day=900)).allowed and cache.hits == 1


def test_cache_is_bounded_and_emptied_by_a_new_revision() -> None:
    policy = compiled()
    cache = DecisionCache(max_entries=3)
    for port in range(1000, 1010):
        cache.decide(policy, request(port=port))
    assert len(cache) == 3
    cache.decide(policy, request(port=1009))
    assert cache.hits == 1
    stricter = compile_policy(replace(CITY, rules=()), PREFECTURE)
    assert stricter.revision != policy.revision
    assert not cache.decide(stricter, request(**TAX)).allowed     # no r-001 any more: default deny
    assert len(cache) == 1


def test_one_cache_serves_several_tenants() -> None:
    city = compiled()
    town = compile_policy(replace(CITY, tenant=replace(CITY.tenant, id="sample-town"), rules=()), PREFECTURE)
    cache = DecisionCache()
    assert cache.decide(city, request(**TAX)).allowed
    assert not cache.decide(town, request(**TAX, tenant="sample-town")).allowed
    assert cache.decide(city, request(**TAX)).allowed and cache.hits == 1 and len(cache) == 2


def test_time_window_wraps_into_the_next_day() -> None:
    friday_night = TimeWindow((4,), 22 * 60, 6 * 60)
    assert friday_night.contains(4, 23 * 60) and friday_night.contains(5, 5 * 60 + 59)
    assert not friday_night.contains(4, 5 * 60) and not friday_night.contains(5, 6 * 60)
    assert not friday_night.contains(6, 1 * 60)
    sunday_night = TimeWindow((6,), 22 * 60, 6 * 60)
    assert sunday_night.contains(0, 60)            # Monday early morning, past the week's end


def test_compile_refuses_inconsistent_policies() -> None:
    with pytest.raises(PolicyError, match=r"^tenant.parent: "):
        compile_policy(replace(CITY, tenant=replace(CITY.tenant, parent="other-pref")), PREFECTURE)
    with pytest.raises(PolicyError, match=r"^rules\[8\].when.apps\[0\]: unknown app 'bank'"):
        compile_policy(CITY, None)
    clash = replace(PREFECTURE, apps=PREFECTURE.apps + (App("news", "n", AppKind.INTERNET, Zone.INTERNET),))
    with pytest.raises(PolicyError, match=r"^apps\[6\].id: 'news' is already defined"):
        compile_policy(CITY, clash)
    bad_baseline = replace(PREFECTURE, apps=(App("x", "x", AppKind.INTERNET, Zone.INTERNET, ("X.jp",)),))
    with pytest.raises(PolicyError, match=r"^baseline.apps\[0\].hosts\[0\]: expected a lower-case"):
        compile_policy(CITY, bad_baseline)


def test_most_specific_app_wins_and_ports_select() -> None:
    apps = (App("wide", "w", AppKind.INTERNET, Zone.INTERNET, ("*.example.jp",)),
            App("deep", "d", AppKind.INTERNET, Zone.INTERNET, ("*.a.example.jp",), (8443,)),
            App("exact", "e", AppKind.INTERNET, Zone.INTERNET, ("b.a.example.jp",), (443,)))
    policy = compile_policy(Policy(Tenant("t", "t"), apps))
    assert policy.app_for("b.a.example.jp", 443).id == "exact"          # type: ignore[union-attr]
    assert policy.app_for("b.a.example.jp", 8443).id == "deep"         # type: ignore[union-attr]
    assert policy.app_for("b.a.example.jp", 80).id == "wide"           # type: ignore[union-attr]
    assert policy.app_for("example.jp", 443) is None                   # "*." is below, not at
