"""broker/policy/lint.py: each finding kind found where it should be and not where it should not,
on policies built in code (no YAML), plus the analyser's soundness for shadowing checked against
the engine: a rule reported shadowed never decides a request."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.policy.lint import Finding, lint
from broker.policy.model import (
    Action,
    ActionKind,
    App,
    AppKind,
    Conditions,
    Policy,
    PolicyRequest,
    PrivateKind,
    Rule,
    SecurityModel,
    SpecificCommunication,
    Tenant,
    TimeWindow,
    Zone,
)

WEEKDAYS = (0, 1, 2, 3, 4)
OFFICE = TimeWindow(WEEKDAYS, 8 * 60 + 30, 17 * 60 + 15)      # 開庁時間
LONG_DAY = TimeWindow(WEEKDAYS, 8 * 60, 18 * 60)
EVENING = TimeWindow(WEEKDAYS, 18 * 60, 22 * 60)
NIGHTS = TimeWindow(tuple(range(7)), 22 * 60, 6 * 60)         # wraps into the next day
SATURDAY_SMALL_HOURS = TimeWindow((5,), 2 * 60, 4 * 60)

APPS = (
    App("jyuki", "住民記録システム", AppKind.PRIVATE, Zone.MYNUMBER, ("jyuki.city.lg.jp",), (443,),
        private_kind=PrivateKind.WEB),
    App("tax", "税務システム", AppKind.PRIVATE, Zone.LGWAN, ("tax.city.lg.jp",), (443,),
        private_kind=PrivateKind.WEB),
    App("zaimu", "財務会計", AppKind.PRIVATE, Zone.LGWAN, ("zaimu.city.lg.jp",), (443,),
        private_kind=PrivateKind.WEB),
    App("vdi", "画面転送", AppKind.PRIVATE, Zone.LGWAN, ("vdi.city.lg.jp",), (443,),
        private_kind=PrivateKind.VDI),
    App("chukan", "中間サーバー", AppKind.PRIVATE, Zone.LGWAN, ("chukan.pref.lg.jp",), (443,),
        private_kind=PrivateKind.TCP),
    App("chukan-any", "中間サーバー（全ポート）", AppKind.PRIVATE, Zone.LGWAN,
        ("chukan.pref.lg.jp",), (), private_kind=PrivateKind.TCP),
    App("m365", "Microsoft 365", AppKind.SAAS, Zone.INTERNET, ("*.office.com",)),
    App("box", "Box", AppKind.SAAS, Zone.INTERNET, ("*.box.com",)),
    App("gdrive", "Google Drive", AppKind.SAAS, Zone.INTERNET, ("drive.google.com",),
        categories=("personal-storage",)),
    App("news", "ニュース", AppKind.INTERNET, Zone.INTERNET, categories=("news",)),
)
GROUPS = (("lgwan-business", ("tax", "zaimu")), ("collab", ("m365", "box")))
SPECIFIC = (SpecificCommunication("chukan", "中間サーバー", "chukan.pref.lg.jp", "10.200.1.10", 443),)


def r(rule_id: str, action: str | int = "allow", enabled: bool = True, **when: object) -> Rule:
    """A rule; `action` an ActionKind value, or minutes for require-mfa."""
    act = Action(ActionKind.REQUIRE_MFA, action) if isinstance(action, int) \
        else Action(ActionKind(action))
    return Rule(rule_id, f"rule {rule_id}", Conditions(**when), act, enabled)  # type: ignore[arg-type]


def policy(*rules: Rule, model: SecurityModel = SecurityModel.BETA, tenant: str = "city",
           parent: str | None = None) -> Policy:
    return Policy(Tenant(tenant, "サンプル市", parent, model), APPS, GROUPS, SPECIFIC, rules)


def baseline(*rules: Rule) -> Policy:
    return Policy(Tenant("pref", "サンプル県"), rules=rules)


def keys(findings: list[Finding], kind: str | None = None) -> set[tuple[str, str, str | None, str]]:
    return {(f.kind, f.rule_id, f.other_rule_id, f.severity) for f in findings
            if kind is None or f.kind == kind}


@dataclass(frozen=True)
class Case:
    name: str
    rules: tuple[Rule, ...]
    expected: set[tuple[str, str, str | None, str]]
    kind: str
    model: SecurityModel = SecurityModel.BETA
    base: tuple[Rule, ...] = field(default=())


CASES = [
    # --- shadowed ----------------------------------------------------------------------------
    Case("any group covers a group",
         (r("a", apps=("box",)), r("b", groups=("税務課",), apps=("box",))),
         {("shadowed", "b", "a", "warning")}, "shadowed"),
    Case("an app group covers its member",
         (r("a", "inspect", app_groups=("collab",)), r("b", "do-not-inspect", apps=("box",))),
         {("shadowed", "b", "a", "error")}, "shadowed"),
    Case("an app list covers an app group of the same apps",
         (r("a", apps=("tax", "zaimu", "box")), r("b", app_groups=("lgwan-business",))),
         {("shadowed", "b", "a", "warning")}, "shadowed"),
    Case("08:00-18:00 covers office hours",
         (r("a", 15, groups=("税務課",), apps=("tax",), time_windows=(LONG_DAY,)),
          r("b", 15, groups=("税務課",), apps=("tax",), time_windows=(OFFICE,))),
         {("shadowed", "b", "a", "warning")}, "shadowed"),
    Case("a nightly window wrapping past midnight covers Saturday 02:00-04:00",
         (r("a", "deny", time_windows=(NIGHTS,)), r("b", time_windows=(SATURDAY_SMALL_HOURS,))),
         {("shadowed", "b", "a", "error")}, "shadowed"),
    Case("a /8 covers a /16",
         (r("a", source_networks=("10.0.0.0/8",), apps=("box",)),
          r("b", source_networks=("10.1.0.0/16",), apps=("box",))),
         {("shadowed", "b", "a", "warning")}, "shadowed"),
    Case("a category covers the category-only app in it",
         (r("a", "deny", categories=("news",)), r("b", apps=("news",), categories=("news",))),
         {("shadowed", "b", "a", "error")}, "shadowed"),
    Case("office hours do not cover 08:00-18:00",
         (r("a", apps=("tax",), time_windows=(OFFICE,)), r("b", apps=("tax",), time_windows=(LONG_DAY,))),
         set(), "shadowed"),
    Case("different groups: membership is not assumed",
         (r("a", groups=("全職員",), apps=("box",)), r("b", groups=("税務課",), apps=("box",))),
         set(), "shadowed"),
    Case("a disabled rule shadows nothing",
         (r("a", enabled=False), r("b", apps=("box",))), set(), "shadowed"),
    Case("a segment condition narrows the earlier rule",
         (r("a", segments=(Zone.LGWAN,), apps=("tax",)), r("b", apps=("tax",))), set(), "shadowed"),
    Case("a user condition is no group condition",
         (r("a", groups=("税務課",), apps=("box",)), r("b", users=("tanaka",), apps=("box",))),
         set(), "shadowed"),
    Case("a /16 does not cover a /8",
         (r("a", source_networks=("10.1.0.0/16",)), r("b", source_networks=("10.0.0.0/8",))),
         set(), "shadowed"),
    # --- contradiction -----------------------------------------------------------------------
    Case("allow for a group on X, later deny X: an exception (info)",
         (r("a", groups=("情報政策課",), apps=("box",)), r("b", "deny", apps=("box",))),
         {("contradiction", "b", "a", "info")}, "contradiction"),
    Case("partial overlap: the app group holds the denied app",
         (r("a", 30, groups=("全職員",), app_groups=("lgwan-business",), segments=(Zone.INTERNET,),
            posture_profiles=("standard",)),
          r("b", "deny", apps=("zaimu",), segments=(Zone.INTERNET,), time_windows=(OFFICE,))),
         {("contradiction", "b", "a", "warning")}, "contradiction"),
    Case("overlapping time windows",
         (r("a", "deny", apps=("box",), time_windows=(LONG_DAY,)),
          r("b", groups=("広報課",), apps=("box",), time_windows=(TimeWindow(WEEKDAYS, 17 * 60, 20 * 60),))),
         {("contradiction", "b", "a", "warning")}, "contradiction"),
    Case("disjoint time windows do not overlap",
         (r("a", "deny", apps=("box",), time_windows=(OFFICE,)), r("b", apps=("box",), time_windows=(EVENING,))),
         set(), "contradiction"),
    Case("different groups do not overlap",
         (r("a", "deny", groups=("会計年度任用職員",), apps=("box",)),
          r("b", groups=("情報政策課",), apps=("box",))), set(), "contradiction"),
    Case("same outcome is no contradiction",
         (r("a", "inspect", groups=("情報政策課",), apps=("box",)), r("b", "do-not-inspect", apps=("box",))),
         set(), "contradiction"),
    Case("an app without declared categories is not in a denied category",
         (r("a", "deny", categories=("personal-storage",)), r("b", apps=("box",))), set(), "contradiction"),
    Case("a shadowed rule is reported as shadowed, not as a contradiction",
         (r("a", "deny", apps=("box",)), r("b", groups=("情報政策課",), apps=("box",))),
         set(), "contradiction"),
    Case("baseline deny covering the municipal allow: it has no effect (error)",
         (r("m", groups=("情報政策課",), apps=("gdrive",)),),
         {("contradiction", "m", "p", "error")}, "contradiction",
         base=(r("p", "deny", categories=("personal-storage",)),)),
    Case("baseline deny overlapping part of the municipal allow (warning)",
         (r("m", apps=("gdrive", "box")), r("m2", apps=("news",))),
         {("contradiction", "m", "p", "warning")}, "contradiction",
         base=(r("p", "deny", apps=("gdrive", "m365"), time_windows=(OFFICE,)),)),
    Case("a baseline deny carved out of a broad municipal allow is what baselines are for",
         (r("m", groups=("全職員",)),), set(), "contradiction",
         base=(r("p", "deny", categories=("personal-storage",)),)),
    Case("a municipal deny under a baseline allow only tightens",
         (r("m", "deny", apps=("box",)),), set(), "contradiction",
         base=(r("p", "do-not-inspect", apps=("box",)),)),
    # --- guard-overrules ---------------------------------------------------------------------
    Case("internet segment to a mynumber app (error)",
         (r("a", 5, apps=("jyuki",), segments=(Zone.INTERNET,), posture_profiles=("standard",)),),
         {("guard-overrules", "a", None, "error")}, "guard-overrules"),
    Case("a mynumber app from any segment (error: no segment reaches it)",
         (r("a", groups=("住民課",), apps=("jyuki",)),),
         {("guard-overrules", "a", None, "error")}, "guard-overrules"),
    Case("alpha: internet segment to a non-vdi lgwan app (error)",
         (r("a", 15, apps=("tax",), segments=(Zone.INTERNET,), posture_profiles=("standard",)),),
         {("guard-overrules", "a", None, "error")}, "guard-overrules", model=SecurityModel.ALPHA),
    Case("alpha: internet segment to the vdi app",
         (r("a", apps=("vdi",), segments=(Zone.INTERNET,)),), set(), "guard-overrules",
         model=SecurityModel.ALPHA),
    Case("beta: internet segment to an lgwan app without require-mfa (partly)",
         (r("a", apps=("tax",), segments=(Zone.INTERNET,), posture_profiles=("standard",)),),
         {("guard-overrules", "a", None, "warning")}, "guard-overrules"),
    Case("beta: require-mfa without a posture profile (partly)",
         (r("a", 15, apps=("tax",), segments=(Zone.INTERNET,)),),
         {("guard-overrules", "a", None, "warning")}, "guard-overrules"),
    Case("beta: require-mfa and a posture profile",
         (r("a", 15, apps=("tax",), segments=(Zone.INTERNET,), posture_profiles=("standard",)),),
         set(), "guard-overrules"),
    Case("beta: any segment, an lgwan app, no MFA (partly: from the internet segment)",
         (r("a", apps=("tax",)),), {("guard-overrules", "a", None, "warning")}, "guard-overrules"),
    Case("a mynumber app in a mixed list (partly)",
         (r("a", 15, apps=("jyuki", "tax"), segments=(Zone.INTERNET,), posture_profiles=("standard",)),),
         {("guard-overrules", "a", None, "warning")}, "guard-overrules"),
    Case("mynumber segment to its specific communication",
         (r("a", "do-not-inspect", apps=("chukan",), segments=(Zone.MYNUMBER,)),), set(), "guard-overrules"),
    Case("mynumber segment to the specific host on any port (partly)",
         (r("a", apps=("chukan-any",), segments=(Zone.MYNUMBER,)),),
         {("guard-overrules", "a", None, "warning")}, "guard-overrules"),
    Case("mynumber segment to the internet (error)",
         (r("a", apps=("m365",), segments=(Zone.MYNUMBER,)),),
         {("guard-overrules", "a", None, "error")}, "guard-overrules"),
    Case("lgwan segment to a mynumber app (error)",
         (r("a", apps=("jyuki",), segments=(Zone.LGWAN,)),),
         {("guard-overrules", "a", None, "error")}, "guard-overrules"),
    Case("a deny is never overruled",
         (r("a", "deny", apps=("jyuki",), segments=(Zone.INTERNET,)),), set(), "guard-overrules"),
    Case("a SaaS rule without segments does not ask for mynumber devices",
         (r("a", "inspect", apps=("box",)),), set(), "guard-overrules"),
    # --- too-broad ---------------------------------------------------------------------------
    Case("an allow with no condition at all",
         (r("a"),), {("too-broad", "a", None, "warning")}, "too-broad"),
    Case("an allow with only a segment and a network is still everyone to everything",
         (r("a", segments=(Zone.LGWAN,), source_networks=("10.30.0.0/24",)),),
         {("too-broad", "a", None, "warning")}, "too-broad"),
    Case("a group condition", (r("a", groups=("全職員",)),), set(), "too-broad"),
    Case("an app condition", (r("a", apps=("box",)),), set(), "too-broad"),
    Case("a category condition", (r("a", categories=("news",)),), set(), "too-broad"),
    Case("a deny with no condition", (r("a", "deny"),), set(), "too-broad"),
    # --- disabled ----------------------------------------------------------------------------
    Case("a disabled rule", (r("a", enabled=False, apps=("box",)), r("b", apps=("m365",))),
         {("disabled", "a", None, "info")}, "disabled"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_finding_kinds(case: Case) -> None:
    base = baseline(*case.base) if case.base else None
    p = policy(*case.rules, model=case.model, parent="pref" if base else None)
    assert keys(lint(p, base), case.kind) == case.expected


def test_a_contradiction_says_which_requests_overlap() -> None:
    p = policy(r("a", groups=("情報政策課",), apps=("box",)), r("b", "deny", apps=("box",)))
    [finding] = lint(p)
    assert "情報政策課" in finding.message_ja and "Box" in finding.message_ja
    assert "情報政策課" in finding.message_en and "Box" in finding.message_en
    assert "r-" not in finding.message_en and "rule a" in finding.message_en


def test_the_guard_message_names_the_segment_the_app_and_the_reason() -> None:
    [finding] = lint(policy(r("a", apps=("jyuki",), segments=(Zone.INTERNET,))))
    assert "internet→住民記録システム" in finding.message_ja
    assert "zone-mynumber-forbidden" in finding.message_en
    assert "refuses everything" in finding.message_en


def test_partly_overruled_says_partly() -> None:
    [finding] = lint(policy(r("a", apps=("tax",), segments=(Zone.INTERNET,))))
    assert "partly" in finding.message_en and "一部" in finding.message_ja
    assert "zone-lgwan-needs-mfa-and-posture" in finding.message_en


@pytest.mark.parametrize("hits, expected", [
    (None, set()),
    ({}, {"a", "b"}),
    ({"a": 3, "b": 0}, {"b"}),
    ({"a": 1, "b": 2}, set()),
])
def test_never_hit(hits: dict[str, int] | None, expected: set[str]) -> None:
    p = policy(r("a", apps=("box",)), r("b", apps=("m365",)), r("c", enabled=False, apps=("news",)))
    assert {f.rule_id for f in lint(p, hits=hits) if f.kind == "never-hit"} == expected


def test_too_broad_counts_apps_against_the_threshold() -> None:
    p = policy(r("a", groups=("全職員",), app_groups=("collab", "lgwan-business")))
    assert keys(lint(p, broad_threshold=3), "too-broad") == {("too-broad", "a", None, "warning")}
    assert keys(lint(p, broad_threshold=4), "too-broad") == set()


def test_findings_come_in_rule_order_and_lint_is_repeatable() -> None:
    p = policy(r("x", enabled=False), r("a", apps=("jyuki",), segments=(Zone.INTERNET,)),
               r("b"), r("c", apps=("box",)))
    found = lint(p, hits={"a": 1, "b": 7, "c": 0})
    assert [(f.rule_id, f.kind) for f in found] == [
        ("x", "disabled"), ("a", "guard-overrules"), ("b", "guard-overrules"), ("b", "too-broad"),
        ("c", "shadowed"), ("c", "never-hit")]
    assert lint(p, hits={"a": 1, "b": 7, "c": 0}) == found
    assert all(f.severity in {"error", "warning", "info"} and f.message_ja and f.message_en
               for f in found)


def test_a_clean_policy_has_no_findings() -> None:
    p = policy(
        r("a", "deny", groups=("会計年度任用職員",), apps=("box",)),
        r("b", "inspect", groups=("全職員",), app_groups=("collab",)),
        r("c", 15, groups=("税務課",), apps=("tax",), segments=(Zone.INTERNET,),
          posture_profiles=("standard",), time_windows=(OFFICE,)),
        r("d", groups=("税務課",), apps=("tax",), segments=(Zone.LGWAN,)),
        r("e", "do-not-inspect", groups=("住民課",), apps=("chukan",), segments=(Zone.MYNUMBER,)))
    assert lint(p, baseline(r("p", "deny", categories=("personal-storage",))),
                hits={rule.id: 1 for rule in p.rules}) == []


# --- soundness of "shadowed" against the engine ---------------------------------------------

GROUP_NAMES = ("全職員", "税務課", "情報政策課")
SAAS = ("m365", "box", "gdrive")
HOSTS = {"m365": "outlook.office.com", "box": "app.box.com", "gdrive": "drive.google.com"}
WINDOWS = (OFFICE, LONG_DAY, EVENING, NIGHTS)

conditions = st.builds(
    Conditions,
    groups=st.lists(st.sampled_from(GROUP_NAMES), max_size=2, unique=True).map(tuple),
    apps=st.lists(st.sampled_from(SAAS), max_size=2, unique=True).map(tuple),
    app_groups=st.lists(st.just("collab"), max_size=1).map(tuple),
    time_windows=st.lists(st.sampled_from(WINDOWS), max_size=2, unique=True).map(tuple),
    source_networks=st.lists(st.sampled_from(("10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24")),
                             max_size=2, unique=True).map(tuple))
kinds = st.sampled_from((ActionKind.ALLOW, ActionKind.DENY, ActionKind.INSPECT))
rule_lists = st.lists(st.tuples(conditions, kinds), min_size=1, max_size=6).map(
    lambda items: tuple(Rule(f"r-{i}", "", c, Action(k)) for i, (c, k) in enumerate(items)))
requests = st.builds(
    lambda groups, app, weekday, minute, source: PolicyRequest(
        tenant="city", user="tanaka", groups=frozenset(groups), mfa=True, mfa_age_seconds=60.0,
        device_id="pc-1", segment=Zone.INTERNET, posture_compliant=True, posture_profile="standard",
        host=HOSTS[app], port=443, address=None, url_category=None, source_address=source,
        weekday=weekday, minute_of_day=minute),
    st.lists(st.sampled_from(GROUP_NAMES), max_size=3, unique=True), st.sampled_from(SAAS),
    st.integers(0, 6), st.integers(0, 1439), st.sampled_from(("10.1.2.3", "10.9.9.9", "192.0.2.7")))


@settings(max_examples=200, deadline=None)
@given(rules=rule_lists, batch=st.lists(requests, min_size=1, max_size=20))
def test_a_rule_reported_shadowed_never_decides(rules: tuple[Rule, ...],
                                                batch: list[PolicyRequest]) -> None:
    engine = pytest.importorskip("broker.policy.engine")
    p = policy(*rules)
    shadowed = {f.rule_id for f in lint(p) if f.kind == "shadowed"}
    compiled = engine.compile_policy(p)
    for request in batch:
        assert engine.decide(compiled, request).rule_id not in shadowed
