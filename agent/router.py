"""Which way one connection leaves the laptop, and the event that reports it. Pure.

In order: a Microsoft 365 breakout rule that says direct → direct (whether or not the broker is
reachable); an admin override in force → direct; a captive-portal window open and the port
80 or 443 → direct; anything else → the tunnel (which fails closed when the broker is away).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from ztcore.breakout import BreakoutMatch, BreakoutRule
from ztcore.bypass import BypassMode


class RouteMode(str, Enum):
    TUNNEL = "tunnel"
    BREAKOUT = "breakout"
    CAPTIVE_PORTAL = "captive-portal"
    OVERRIDE = "override"


@dataclass(frozen=True, slots=True)
class Route:
    mode: RouteMode
    rule: BreakoutRule | None = None

    @property
    def direct(self) -> bool:
        return self.mode is not RouteMode.TUNNEL


def choose_route(match: BreakoutMatch, bypass: BypassMode | None) -> Route:
    if match.direct:
        return Route(RouteMode.BREAKOUT, match.rule)
    if bypass is BypassMode.OVERRIDE:
        return Route(RouteMode.OVERRIDE, match.rule)
    if bypass is BypassMode.CAPTIVE_PORTAL:
        return Route(RouteMode.CAPTIVE_PORTAL, match.rule)
    return Route(RouteMode.TUNNEL, match.rule)


def direct_event(route: Route, destination: str, user: str | None, started: float,
                 duration_seconds: float, bytes_up: int, bytes_down: int,
                 error: str | None = None) -> dict[str, Any]:
    """The event of one direct connection, as the agent logs it and the broker records it."""
    event: dict[str, Any] = {
        "kind": route.mode.value, "time": started, "destination": destination,
        "rule": route.rule.label if route.rule is not None and route.mode is RouteMode.BREAKOUT
        else None,
        "user": user, "bytes_up": bytes_up, "bytes_down": bytes_down,
        "duration_seconds": round(duration_seconds, 3)}
    if error:
        event["detail"] = error[:300]
    return event
