"""The simulator's explanation (`sekimori policy test`): a decision turned into lines a
municipal IT admin can read, in Japanese and English: which layer and which rule decided, what
that rule says, every reason, what the data path must do, and the app and zone matched.

Pure: it formats a `PolicyDecision` already made by engine.py; it decides nothing and must not
call the engine or the guard. Lines carry no square brackets (the CLI prints them through rich,
which would read them as markup).
"""

from __future__ import annotations

from typing import Final

from broker.policy.model import (
    ActionKind,
    Obligation,
    Policy,
    PolicyDecision,
    PolicyRequest,
    Rule,
    Zone,
)
from ztcore.reasons import REASON_TEXT, Reason

__all__ = ["explain"]

LAYER_TEXT: Final = {
    "guard": ("三層分離ガード", "three-layer guard"),
    "baseline": ("都道府県ベースライン", "prefecture baseline"),
    "municipality": ("市区町村のルール", "municipality rules"),
    "default": ("既定の動作", "default"),
    "engine": ("判定エンジン", "policy engine"),
}
ZONE_TEXT: Final = {
    Zone.INTERNET: ("インターネット接続系", "internet"),
    Zone.LGWAN: ("LGWAN接続系", "LGWAN"),
    Zone.MYNUMBER: ("マイナンバー利用事務系", "My Number"),
}
# The guard's and the defaults' rule ids (guard.py, engine.py), for decisions without a rule.
BUILTIN_RULE_TEXT: Final = {
    "guard:mynumber-specific-only": (
        "マイナンバー利用事務系の端末は特定通信の宛先にのみ接続できる",
        "a My Number segment device reaches only its specific communications"),
    "guard:internet-to-mynumber": (
        "インターネット接続系の端末はマイナンバー利用事務系のアプリに接続できない",
        "an internet segment device never reaches a My Number app"),
    "guard:lgwan-to-mynumber": (
        "LGWAN接続系の端末はマイナンバー利用事務系のアプリに接続できない",
        "an LGWAN segment device never reaches a My Number app"),
    "guard:alpha-lgwan-vdi-only": (
        "αモデルではインターネット接続系からLGWAN接続系へは画面転送のみ",
        "in the alpha model the internet segment reaches LGWAN apps only by screen transfer"),
    "guard:lgwan-needs-mfa-and-posture": (
        "インターネット接続系からLGWAN接続系へは多要素認証と要件を満たす端末が必要",
        "the internet segment reaches LGWAN apps only with MFA and a compliant device"),
    "default:specific": ("マイナンバー利用事務系の端末から特定通信の宛先へは許可",
                         "a My Number segment device may reach its specific communications"),
    "default:private": ("庁内アプリやLGWAN・マイナンバー系のアプリは許可するルールがなければ拒否",
                        "internal, LGWAN and My Number apps are denied unless a rule allows them"),
    "default:internet": ("インターネットはSWGで検査して許可",
                         "the internet is allowed, inspected by the SWG"),
    "engine:internal-error": ("判定中のエラーのため拒否（フェイルクローズ）",
                              "denied because the decision failed (fail closed)"),
    "engine:tenant-mismatch": ("別の自治体のポリシーに問い合わせたため拒否",
                               "denied: another tenant's policy was asked"),
}
OBLIGATION_TEXT: Final = {
    Obligation.INSPECT: ("TLS通信を復号して検査します", "TLS is decrypted and inspected"),
    Obligation.DO_NOT_INSPECT: ("TLS通信は復号しません", "TLS is passed through, not decrypted"),
    Obligation.SANITISE: ("ファイルは無害化してから届けます", "files are sanitised before delivery"),
}
DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ACTION_TEXT: Final = {
    ActionKind.ALLOW: "許可 / allow",
    ActionKind.DENY: "拒否 / deny",
    ActionKind.INSPECT: "許可・検査 / allow with inspection",
    ActionKind.DO_NOT_INSPECT: "許可・復号しない / allow without inspection",
    ActionKind.REQUIRE_MFA: "多要素認証を条件に許可 / allow with MFA",
}


def _rule(policy: Policy, rule_id: str) -> Rule | None:
    return next((r for r in policy.rules if r.id == rule_id), None)


def _reason_line(code: str) -> str:
    try:
        text = REASON_TEXT[Reason(code)]
    except (ValueError, KeyError):
        return f"  - {code}"
    return f"  - {code}: {text.ja} / {text.en}"


def explain(decision: PolicyDecision, request: PolicyRequest, policy: Policy) -> list[str]:
    """Lines explaining `decision` for `request` under `policy` (the tenant's own policy; a
    baseline rule is named by its id only)."""
    verdict = "許可 / allowed" if decision.allowed else "拒否 / denied"
    layer_ja, layer_en = LAYER_TEXT.get(decision.layer, (decision.layer, decision.layer))
    lines = [f"判定 / Decision: {verdict}",
             f"層 / Layer: {layer_ja} ({layer_en})"]
    rule = _rule(policy, decision.rule_id) if decision.layer == "municipality" else None
    if rule is not None:
        lines.append(f"ルール / Rule: {rule.id} ({ACTION_TEXT[rule.action.kind]})")
        if rule.description:
            lines.append(f"  説明 / Description: {rule.description}")
    elif decision.rule_id in BUILTIN_RULE_TEXT:
        ja, en = BUILTIN_RULE_TEXT[decision.rule_id]
        lines.append(f"ルール / Rule: {decision.rule_id}: {ja} / {en}")
    else:
        where = " (都道府県ベースライン / prefecture baseline)" if decision.layer == "baseline" else ""
        lines.append(f"ルール / Rule: {decision.rule_id}{where}")
    detail = decision.detail
    if rule is not None and detail.startswith(f"{rule.id}: {rule.description}"):
        detail = detail[len(f"{rule.id}: {rule.description}"):].strip()   # the description again
    if detail:
        lines.append(f"  詳細 / Detail: {detail}")
    lines.append("理由 / Reasons:")
    lines += [_reason_line(code) for code in decision.reasons] or ["  - (なし / none)"]
    app = next((a for a in policy.apps if a.id == decision.app), None)
    if app is not None:
        zone_ja, zone_en = ZONE_TEXT[app.zone]
        lines.append(f"アプリ / App: {app.name} ({app.id}), 区分 / zone: {zone_ja} ({zone_en})")
    elif decision.app is not None:
        lines.append(f"アプリ / App: {decision.app} (都道府県の定義 / defined by the prefecture)"
                     if policy.tenant.parent else f"アプリ / App: {decision.app}")
    else:
        lines.append("アプリ / App: 該当なし、インターネット扱い / none, treated as internet")
    lines.append(f"宛先 / Destination: {request.host}:{request.port}"
                 + (f", カテゴリ / category: {request.url_category}" if request.url_category else ""))
    seg_ja, seg_en = ZONE_TEXT[request.segment]
    posture = (f"端末要件 / posture: {request.posture_profile}" if request.posture_compliant
               else "端末要件を満たさない / not compliant")
    lines.append(f"端末 / Device: {request.device_id}, 区分 / segment: {seg_ja} ({seg_en}), {posture}")
    groups = ", ".join(sorted(request.groups)) or "-"
    mfa = (f"{request.mfa_age_seconds / 60:.0f} 分前 / {request.mfa_age_seconds / 60:.0f} min ago"
           if request.mfa and request.mfa_age_seconds is not None
           else "済 / done" if request.mfa else "なし / none")
    lines.append(f"利用者 / User: {request.user or '(ログインなし / no login)'}, "
                 f"グループ / groups: {groups}, 多要素認証 / MFA: {mfa}")
    day = DAY_NAMES[request.weekday % 7]
    lines.append(f"時刻 / Time: {day} {request.minute_of_day // 60:02d}:{request.minute_of_day % 60:02d}")
    for obligation in sorted(decision.obligations, key=lambda o: o.value):
        ja, en = OBLIGATION_TEXT[obligation]
        lines.append(f"義務 / Obligation: {obligation.value}: {ja} / {en}")
    if decision.mfa_within_minutes is not None:
        lines.append(f"多要素認証 / MFA: {decision.mfa_within_minutes} 分以内に必要 / "
                     f"needed within {decision.mfa_within_minutes} minutes")
    return lines
