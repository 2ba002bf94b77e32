"""What a person sees when Sekimori refuses something: text or a small HTML page.

Used by the agent (a refused connection) and by the gateway (a refused request inside an
inspected connection, which also carries a request id and an unblock-request form). Pure: a
Decision and the target in, body bytes and content type out. Both languages, the machine reason
(for the help desk) and the detail are always shown.
"""

from __future__ import annotations

from html import escape

from ztcore.decision import Decision

UNBLOCK_PATH = "/.sekimori/unblock-request"


def render_block(decision: Decision, target: str, html: bool, request_id: str | None = None,
                 unblock_action: str | None = None) -> tuple[bytes, bytes]:
    """`unblock_action`: where the unblock-request form posts (the gateway answers that path on
    the blocked site itself, so the form works for plain and inspected HTTPS alike)."""
    reason = decision.reason.value
    if not html:
        text = (f"Sekimori: {decision.status} {reason}\n"
                f"{decision.message_ja}\n{decision.message_en}\n"
                f"宛先 / destination: {target}\n")
        if decision.detail:
            text += f"詳細 / detail: {decision.detail}\n"
        if request_id:
            text += f"要求ID / request id: {request_id}\n"
        return text.encode("utf-8"), b"text/plain; charset=utf-8"
    detail = f"<p><small>詳細 / detail: {escape(decision.detail)}</small></p>" if decision.detail else ""
    rid = (f"<p>要求ID / request id: <code>{escape(request_id)}</code></p>" if request_id else "")
    form = ""
    if unblock_action and request_id:
        form = (f'<form method="post" action="{escape(unblock_action)}">'
                f'<input type="hidden" name="request_id" value="{escape(request_id)}">'
                f'<input type="hidden" name="url" value="{escape(target)}">'
                f'<input type="hidden" name="reason_code" value="{escape(reason)}">'
                '<p><label>業務上必要な理由 / Why you need it:<br>'
                '<textarea name="justification" rows="3" cols="60" maxlength="1000"></textarea>'
                '</label></p><p><button type="submit" id="unblock-request">'
                "解除を申請する / Request access</button></p></form>")
    page = (
        '<!doctype html><html lang="ja"><head><meta charset="utf-8">'
        f"<title>Sekimori: {escape(reason)}</title></head><body>"
        "<h1>アクセスが遮断されました / Access blocked</h1>"
        f"<p>{escape(decision.message_ja)}</p><p>{escape(decision.message_en)}</p>"
        f"<p>宛先 / destination: <code>{escape(target)}</code></p>"
        f"<p>理由コード / reason: <code>{escape(reason)}</code></p>{detail}{rid}{form}"
        "<p>誤って遮断されたと思われる場合は、情報システム課に理由コードをお知らせください。<br>"
        "If you think this is a mistake, tell your IT department the reason code.</p>"
        "</body></html>")
    return page.encode("utf-8"), b"text/html; charset=utf-8"
