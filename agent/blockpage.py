"""What a person sees when the agent refuses a connection: text or a small HTML page.

Pure: a Decision and the target in, body bytes and content type out. Both languages, the
machine reason (for the help desk) and the detail are always shown.
"""

from __future__ import annotations

from html import escape

from ztcore.decision import Decision


def render_block(decision: Decision, target: str, html: bool) -> tuple[bytes, bytes]:
    reason = decision.reason.value
    if not html:
        text = (f"Sekimori: {decision.status} {reason}\n"
                f"{decision.message_ja}\n{decision.message_en}\n"
                f"宛先 / destination: {target}\n")
        if decision.detail:
            text += f"詳細 / detail: {decision.detail}\n"
        return text.encode("utf-8"), b"text/plain; charset=utf-8"
    detail = f"<p><small>詳細 / detail: {escape(decision.detail)}</small></p>" if decision.detail else ""
    page = (
        '<!doctype html><html lang="ja"><head><meta charset="utf-8">'
        f"<title>Sekimori: {escape(reason)}</title></head><body>"
        "<h1>アクセスが遮断されました / Access blocked</h1>"
        f"<p>{escape(decision.message_ja)}</p><p>{escape(decision.message_en)}</p>"
        f"<p>宛先 / destination: <code>{escape(target)}</code></p>"
        f"<p>理由コード / reason: <code>{escape(reason)}</code></p>{detail}"
        "<p>誤って遮断されたと思われる場合は、情報システム課に理由コードをお知らせください。<br>"
        "If you think this is a mistake, tell your IT department the reason code.</p>"
        "</body></html>")
    return page.encode("utf-8"), b"text/html; charset=utf-8"
