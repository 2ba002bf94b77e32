"""Decisions as values: an allow or a deny, with the reasons and the rule that decided.

A deny is returned, never raised. `status` is the HTTP status the agent shows the client for
this decision (403 for a policy deny, 502/504 when the destination failed, 503 when the broker
itself is unavailable).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ztcore.reasons import Reason, text_for


class Action(str, Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reasons: tuple[Reason, ...]
    rule_id: str | None = None
    status: int = 200
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    @property
    def reason(self) -> Reason:
        """The primary reason: the one shown first to the user."""
        return self.reasons[0]

    @property
    def message_ja(self) -> str:
        return text_for(self.reason).ja

    @property
    def message_en(self) -> str:
        return text_for(self.reason).en


def allow(reason: Reason = Reason.DESTINATION_ALLOWED, rule_id: str | None = None) -> Decision:
    return Decision(Action.ALLOW, (reason,), rule_id=rule_id, status=200)


def deny(reason: Reason, *, status: int = 403, rule_id: str | None = None,
         detail: str = "") -> Decision:
    return Decision(Action.DENY, (reason,), rule_id=rule_id, status=status, detail=detail)
