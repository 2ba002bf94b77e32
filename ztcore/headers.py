"""Header names of the tunnel and the mapping between a Decision and response headers.

The broker answers each CONNECT stream with 200, or with a deny status carrying the machine
reason and human sentences. The Japanese sentence is percent-encoded UTF-8 (RFC 3986) because
HTTP/1.1 clients behind the agent may refuse raw UTF-8 in a field value.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, unquote

from ztcore.decision import Action, Decision
from ztcore.reasons import Reason

REASON = "sekimori-reason"
MESSAGE_EN = "sekimori-message-en"
MESSAGE_JA = "sekimori-message-ja"
RULE = "sekimori-rule"
DETAIL = "sekimori-detail"

Header = tuple[bytes, bytes]

# The agent's local status endpoint (read by `sekimori-agent status`, the demo and the tests).
AGENT_STATUS_PATH = "/__sekimori/status"


def _ascii(text: str) -> bytes:
    return text.encode("ascii", "replace")


def _field_safe(encoded: str) -> str:
    """Percent-encode spaces at the edges: a field value may not start or end with whitespace."""
    core = encoded.strip(" ")
    if not core:
        return "%20" * len(encoded)
    lead = len(encoded) - len(encoded.lstrip(" "))
    trail = len(encoded) - len(encoded.rstrip(" "))
    return "%20" * lead + core + "%20" * trail


def decision_headers(decision: Decision) -> list[tuple[str, str]]:
    """The sekimori-* headers that describe a decision (without :status)."""
    out = [(REASON, decision.reason.value), (MESSAGE_EN, decision.message_en),
           (MESSAGE_JA, quote(decision.message_ja, safe=""))]
    if decision.rule_id:
        out.append((RULE, decision.rule_id))
    if decision.detail:
        out.append((DETAIL, _field_safe(quote(decision.detail, safe=" :/[]().,'-_"))))
    return out


def response_headers(decision: Decision) -> list[Header]:
    """HTTP/2 response headers for a CONNECT stream: :status plus the decision."""
    # A deny never goes out as a success, whatever status it was built with (fail closed).
    status = 200 if decision.allowed else (decision.status if 400 <= decision.status < 600 else 403)
    headers = [(b":status", str(status).encode())]
    if not decision.allowed:
        headers += [(k.encode(), _ascii(v)) for k, v in decision_headers(decision)]
    return headers


def decision_from_response(headers: Iterable[Header]) -> Decision:
    """Rebuild the broker's decision from a CONNECT response (agent side).

    An unknown reason or a malformed status from the broker is itself a deny: fail closed.
    """
    fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    status_text = fields.get(":status", "")
    if not (len(status_text) == 3 and status_text.isascii() and status_text.isdigit()):
        return Decision(Action.DENY, (Reason.INTERNAL_ERROR,), status=502,
                        detail="broker sent no valid :status")
    status = int(status_text)
    if 200 <= status < 300:
        return Decision(Action.ALLOW, (Reason.DESTINATION_ALLOWED,), status=200)
    try:
        reason = Reason(fields.get(REASON, ""))
    except ValueError:
        reason = Reason.INTERNAL_ERROR
    detail = unquote(fields.get(DETAIL, ""))
    return Decision(Action.DENY, (reason,), rule_id=fields.get(RULE) or None,
                    status=status if 400 <= status < 600 else 502, detail=detail)
