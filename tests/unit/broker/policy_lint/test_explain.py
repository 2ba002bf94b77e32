"""broker/policy/explain.py: the simulator's lines name the layer, the rule and its description,
every reason in Japanese and English, the obligations, the app and its zone."""

from __future__ import annotations

from broker.policy.explain import explain
from broker.policy.model import (
    Action,
    ActionKind,
    App,
    AppKind,
    Conditions,
    Obligation,
    Policy,
    PolicyDecision,
    PolicyRequest,
    PrivateKind,
    Rule,
    Tenant,
    Zone,
)
from ztcore.reasons import REASON_TEXT, Reason

TAX = App("tax", "税務システム", AppKind.PRIVATE, Zone.LGWAN, ("tax.city.lg.jp",), (443,),
          private_kind=PrivateKind.WEB)
RULE = Rule("r-013", "税務課は税務システムを利用", Conditions(groups=("税務課",), apps=("tax",)),
            Action(ActionKind.REQUIRE_MFA, 15))
POLICY = Policy(Tenant("city", "サンプル市", "pref"), (TAX,), rules=(RULE,))
REQUEST = PolicyRequest(
    tenant="city", user="tanaka", groups=frozenset({"税務課"}), mfa=False, mfa_age_seconds=None,
    device_id="pc-001", segment=Zone.INTERNET, posture_compliant=True, posture_profile="standard",
    host="tax.city.lg.jp", port=443, address=None, url_category=None, source_address=None,
    weekday=1, minute_of_day=9 * 60 + 30)


def test_a_municipal_rule_with_its_description_reasons_obligations_and_zone() -> None:
    decision = PolicyDecision(True, "municipality", "r-013", (Reason.POLICY_ALLOWED.value,),
                              "r-013: 税務課は税務システムを利用", "tax",
                              frozenset({Obligation.SANITISE}), 15)
    text = "\n".join(explain(decision, REQUEST, POLICY))
    assert "市区町村のルール" in text and "municipality" in text
    assert "r-013" in text and "税務課は税務システムを利用" in text
    assert text.count("税務課は税務システムを利用") == 1          # the detail does not repeat it
    allowed = REASON_TEXT[Reason.POLICY_ALLOWED]
    assert allowed.ja in text and allowed.en in text
    assert "無害化" in text and "sanitised" in text
    assert "税務システム (tax)" in text and "LGWAN接続系" in text
    assert "15 分以内" in text and "tue 09:30" in text
    assert "[" not in text                                   # rich would read it as markup


def test_a_guard_deny_names_the_invariant_and_its_reason() -> None:
    decision = PolicyDecision(False, "guard", "guard:internet-to-mynumber",
                              (Reason.ZONE_MYNUMBER_FORBIDDEN.value,), "jyuki is in the mynumber zone",
                              "jyuki")
    lines = explain(decision, REQUEST, POLICY)
    text = "\n".join(lines)
    assert "三層分離ガード" in text and "guard:internet-to-mynumber" in text
    forbidden = REASON_TEXT[Reason.ZONE_MYNUMBER_FORBIDDEN]
    assert f"zone-mynumber-forbidden: {forbidden.ja} / {forbidden.en}" in text
    assert "jyuki is in the mynumber zone" in text
    assert "jyuki (都道府県の定義" in text                   # not an app of this policy


def test_a_default_allow_to_the_internet_and_an_unknown_reason() -> None:
    decision = PolicyDecision(True, "default", "default:internet", ("something-new",), "", None,
                              frozenset({Obligation.INSPECT}))
    text = "\n".join(explain(decision, REQUEST, POLICY))
    assert "既定の動作" in text and "インターネットはSWGで検査して許可" in text
    assert "  - something-new" in text
    assert "該当なし" in text and "TLS通信を復号して検査します" in text
