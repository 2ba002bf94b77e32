"""Shared policies (written in the YAML format, so the loader is exercised too), a fixed request
builder and Hypothesis strategies for random policies and requests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from broker.policy.engine import CompiledPolicy, compile_policy
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
from broker.policy.yaml_io import load_policy_yaml

PREFECTURE_YAML = """
tenant: {id: sample-pref, name: サンプル県}
apps:
  - {id: pref-portal, name: 県ポータル, kind: private, zone: lgwan, hosts: [portal.pref.lg.jp], private_kind: web}
  - {id: bank, name: 指定金融機関, kind: saas, zone: internet, hosts: ["*.bank.example"]}
specific_communications:
  - {id: middle, name: 中間サーバー, host: middle.j-lis.example, address: 198.51.100.0/28, port: 443}
rules:
  - {id: b-001, description: 賭博サイトは禁止, when: {categories: [gambling]}, action: deny}
  - {id: b-002, description: 金融機関は復号しない, when: {apps: [bank]}, action: do-not-inspect}
  - {id: b-003, description: 県ポータルは30分以内のMFA, when: {apps: [pref-portal]}, action: {require-mfa: 30}}
"""

CITY_YAML = """
tenant: {id: sample-city, name: サンプル市, parent: sample-pref, model: beta}
apps:
  - {id: tax-system, name: 税務システム, kind: private, zone: lgwan, hosts: [tax.city.lg.jp], ports: [443],
     private_kind: web}
  - {id: jyuki, name: 住基, kind: private, zone: mynumber, hosts: ["*.jyuki.city.lg.jp"], private_kind: web}
  - {id: vdi, name: 画面転送, kind: private, zone: lgwan, hosts: [vdi.city.lg.jp], private_kind: vdi}
  - {id: hr, name: 人事給与, kind: private, zone: internet, hosts: [hr.city.example], private_kind: web}
  - {id: batch, name: 夜間バッチ, kind: private, zone: internet, hosts: [batch.city.example], private_kind: tcp}
  - {id: intranet, name: 庁内ポータル, kind: private, zone: internet, hosts: [portal.city.example],
     private_kind: web}
  - {id: news, name: ニュースサイト, kind: internet, zone: internet, categories: [news]}
  - {id: webmail, name: ウェブメール, kind: saas, zone: internet, hosts: [mail.example.jp]}
  - {id: city-site, name: 市ウェブサイト, kind: internet, zone: internet, hosts: [www.city.lg.jp]}
  - {id: city-lgwan, name: 市LGWAN, kind: private, zone: lgwan, hosts: ["*.city.lg.jp"], private_kind: web}
app_groups: {lgwan-business: [tax-system, vdi]}
specific_communications:
  - {id: eltax, name: eLTAX, host: www.eltax.lta.go.jp, address: 203.0.113.10, port: 443}
rules:
  - id: r-001
    description: 税務課は税務システムを利用できる
    when: {groups: [税務課], apps: [tax-system]}
    action: allow
  - {id: r-002, description: 賭博サイトを許可（ベースラインが勝つ）, when: {categories: [gambling]}, action: allow}
  - {id: r-003, description: 勤務時間はニュース可, when: {apps: [news], time_windows: ["mon-fri 08:30-17:15"]},
     action: allow}
  - {id: r-004, description: 勤務時間外のニュースは禁止, when: {apps: [news]}, action: deny}
  - {id: r-005, description: 画面転送は15分以内のMFA, when: {app_groups: [lgwan-business]}, action: {require-mfa: 15}}
  - {id: r-006, description: 人事給与は厳格プロファイルの端末のみ, when: {apps: [hr], posture_profiles: [strict]},
     action: allow}
  - {id: r-007, description: 夜間バッチ, when: {apps: [batch], users: [batch-operator],
     time_windows: ["daily 22:00-06:00"]}, action: allow}
  - {id: r-008, description: 庁内ネットワークから庁内ポータル, when: {apps: [intranet], source_networks: [10.1.0.0/16]},
     action: allow}
  - {id: r-009, description: 金融機関も復号したい（ベースラインが勝つ）, when: {apps: [bank]}, action: inspect}
  - {id: r-010, description: 佐藤さんは県ポータル禁止, when: {apps: [pref-portal], users: [sato]}, action: deny}
  - {id: r-011, description: 県ポータル, when: {apps: [pref-portal]}, action: allow}
  - {id: r-012, description: ウェブメールは復号しない, when: {apps: [webmail]}, action: do-not-inspect}
  - {id: r-013, description: 無効なルール, when: {apps: [hr]}, action: allow, enabled: false}
"""

PREFECTURE = load_policy_yaml(PREFECTURE_YAML)
CITY = load_policy_yaml(CITY_YAML, PREFECTURE)


def compiled(model: SecurityModel = SecurityModel.BETA) -> CompiledPolicy:
    city = replace(CITY, tenant=replace(CITY.tenant, model=model))
    return compile_policy(city, PREFECTURE)


# Monday 10:00, an MFA a minute old, a compliant "standard" device on the internet segment.
BASE_REQUEST = PolicyRequest(
    tenant="sample-city", user="tanaka", groups=frozenset({"税務課"}), mfa=True, mfa_age_seconds=60.0,
    device_id="dev-1", segment=Zone.INTERNET, posture_compliant=True, posture_profile="standard",
    host="example.org", port=443, address=None, url_category=None, source_address="10.1.2.3",
    weekday=0, minute_of_day=600)


def request(**changes: Any) -> PolicyRequest:
    return replace(BASE_REQUEST, **changes)


# -- Hypothesis: random policies and requests over a small shared vocabulary -------------------

HOSTS = ["a.example.jp", "b.a.example.jp", "example.jp", "x.lg.jp", "y.x.lg.jp", "192.0.2.1",
         "203.0.113.10", "dns.example"]
PATTERNS = HOSTS + ["*.example.jp", "*.a.example.jp", "*.lg.jp", "*.jp", "*.example"]
NAMES = ["alice", "bob", "g1", "g2", "strict", "news", "gambling"]
NETWORKS = ["10.0.0.0/8", "192.0.2.0/24", "203.0.113.10", "2001:db8::/32"]
ID = st.text("abcdefghij-", min_size=1, max_size=6)
# Names include what YAML would read as something else if the dumper did not quote it.
NAME = st.sampled_from(["yes", "null", "1.0", "~", "08:30", "*x", "- a", "#b"]) | st.text(
    "abz 税務課ニュース:#'\"-*&!%@", min_size=1, max_size=8)
WORDS = st.lists(st.sampled_from(NAMES), max_size=2, unique=True).map(tuple)

windows = st.builds(
    TimeWindow,
    days=st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True).map(tuple),
    start_minute=st.integers(0, 1439), end_minute=st.integers(1, 1440)).map(
        lambda w: w if w.start_minute != w.end_minute else TimeWindow(w.days, w.start_minute, 1440))


@st.composite
def apps(draw: st.DrawFn, ids: list[str]) -> tuple[App, ...]:
    out = []
    for app_id in ids:
        kind = draw(st.sampled_from(AppKind))
        out.append(App(
            id=app_id, name=draw(NAME), kind=kind, zone=draw(st.sampled_from(Zone)),
            hosts=tuple(draw(st.lists(st.sampled_from(PATTERNS), max_size=3, unique=True))),
            ports=tuple(draw(st.lists(st.sampled_from([53, 443, 8443]), max_size=2, unique=True))),
            categories=draw(WORDS),
            private_kind=draw(st.sampled_from(PrivateKind)) if kind is AppKind.PRIVATE else None))
    return tuple(out)


@st.composite
def actions(draw: st.DrawFn) -> Action:
    kind = draw(st.sampled_from(ActionKind))
    return Action(kind, draw(st.integers(1, 60)) if kind is ActionKind.REQUIRE_MFA else None)


@st.composite
def policies(draw: st.DrawFn, tenant: Tenant | None = None, inherited_apps: tuple[str, ...] = (),
             prefix: str = "") -> Policy:
    if tenant is None:
        tenant = Tenant(id=draw(ID), name=draw(NAME), parent=draw(st.none() | ID),
                        model=draw(st.sampled_from(SecurityModel)))
    app_ids = [prefix + i for i in draw(st.lists(ID, max_size=6, unique=True))]
    app_list = draw(apps(app_ids))
    visible = app_ids + list(inherited_apps)
    group_ids = [prefix + "g-" + g for g in draw(st.lists(ID, max_size=2, unique=True))] if visible else []
    groups = tuple((g, tuple(draw(st.lists(st.sampled_from(visible), min_size=1, max_size=3, unique=True))))
                   for g in group_ids)
    specific = tuple(
        SpecificCommunication(id=prefix + i, name=draw(NAME), host=draw(st.sampled_from(HOSTS)),
                              address=draw(st.sampled_from(NETWORKS)), port=draw(st.sampled_from([53, 443])))
        for i in draw(st.lists(ID, max_size=2, unique=True)))
    rules = []
    for rule_id in draw(st.lists(ID, max_size=8, unique=True)):
        when = Conditions(
            users=draw(WORDS), groups=draw(WORDS), posture_profiles=draw(WORDS),
            segments=tuple(draw(st.lists(st.sampled_from(Zone), max_size=2, unique=True))),
            apps=tuple(draw(st.lists(st.sampled_from(visible), max_size=2, unique=True))) if visible else (),
            app_groups=tuple(draw(st.lists(st.sampled_from(group_ids), max_size=1))) if group_ids else (),
            categories=draw(WORDS), time_windows=tuple(draw(st.lists(windows, max_size=2))),
            source_networks=tuple(draw(st.lists(st.sampled_from(NETWORKS), max_size=2, unique=True))))
        if draw(st.booleans()):       # often: an allow-everything rule
            when = Conditions()
        rules.append(Rule(prefix + rule_id, draw(NAME), when, draw(actions()), draw(st.booleans())))
    return Policy(tenant, app_list, groups, specific, tuple(rules))


@st.composite
def baseline_and_city(draw: st.DrawFn) -> tuple[Policy | None, Policy]:
    model = draw(st.sampled_from(SecurityModel))
    if not draw(st.booleans()):
        return None, draw(policies(Tenant("city", "市", None, model)))
    baseline = draw(policies(Tenant("pref", "県"), prefix="p"))
    city = draw(policies(Tenant("city", "市", "pref", model), tuple(a.id for a in baseline.apps), "c"))
    return baseline, city


requests = st.builds(
    PolicyRequest, tenant=st.just("city"), user=st.none() | st.sampled_from(NAMES),
    groups=st.frozensets(st.sampled_from(NAMES), max_size=2), mfa=st.booleans(),
    mfa_age_seconds=st.none() | st.floats(0, 7200), device_id=st.just("d"),
    segment=st.sampled_from(Zone), posture_compliant=st.booleans(),
    posture_profile=st.none() | st.sampled_from(NAMES), host=st.sampled_from(HOSTS),
    port=st.sampled_from([53, 443, 8443]),
    address=st.none() | st.sampled_from(["192.0.2.1", "203.0.113.10", "198.51.100.7", "10.9.9.9"]),
    url_category=st.none() | st.sampled_from(NAMES), source_address=st.none() | st.sampled_from(
        ["10.1.2.3", "192.0.2.77", "2001:db8::5", "not-an-ip"]),
    weekday=st.integers(0, 6), minute_of_day=st.integers(0, 1439))
