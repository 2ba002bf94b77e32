"""The agent's routing state: its rules (breakout, split DNS), its bypass modes (captive-portal
window, admin override) kept in `bypass.json`, and the log of what went direct. The proxy asks
`route()` per connection; the local control paths open a window or apply an override.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from agent.config import AgentConfig
from agent.router import Route, choose_route
from agent.runtime.agent_events import AgentEventLog
from agent.runtime.rules_sync import RulesKeeper
from agent.runtime.tunnel_client import TunnelClient
from ztcore import bypass
from ztcore.bypass import BypassState
from ztcore.errors import ConfigError
from ztcore.override_code import OverrideCodeError, verify_override_code
from ztcore.runtime.files import write_private

log = logging.getLogger("sekimori.agent.routing")
BYPASS_FILE = "bypass.json"
TICK_SECONDS = 1.0
MAX_FAILURES = 5                 # wrong override codes per 10 minutes
FAILURE_WINDOW_SECONDS = 600.0


@dataclass
class Answer:
    """The reply to a local control request (`sekimori-agent captive-portal`, `override`)."""
    ok: bool
    reason: str
    message_en: str
    message_ja: str
    until: float | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AgentRouting:
    def __init__(self, config: AgentConfig, client: TunnelClient, rules: RulesKeeper,
                 events: AgentEventLog) -> None:
        self.config, self.client, self.rules, self.events = config, client, rules, events
        self.state = self._load_state()
        self.direct_open = 0
        self.direct_total = 0
        self.last_direct: dict[str, Any] | None = None
        self._failures: list[float] = []

    # -- per connection -------------------------------------------------------------------------

    def route(self, host: str, port: int) -> Route:
        match = self.rules.matcher.route(host, port)
        return choose_route(match, bypass.bypass_mode(self.state, time.time(), port))

    def resolve(self, host: str, port: int) -> list[str]:
        """Where a direct connection goes: the laptop's resolver (asyncio asks it), or the
        lab's `static_hosts`."""
        return [self.config.static_hosts.get(host, host)]

    def user(self) -> str | None:
        session = self.client.current_session()
        return session.user if session is not None else None

    def record_direct(self, event: dict[str, Any]) -> None:
        self.last_direct = event
        self.events.record(event)

    # -- bypass modes ---------------------------------------------------------------------------

    @property
    def broker_reachable(self) -> bool:
        protocol = self.client.protocol
        return protocol is not None and protocol.usable

    def open_captive_portal(self) -> Answer:
        now = time.time()
        try:
            state, events = bypass.open_captive_window(
                self.state, now, self.rules.rules.captive_portal_minutes, self.broker_reachable)
        except ConfigError as exc:
            return Answer(False, "request-invalid", str(exc), str(exc))
        self._apply(state, events, now)
        for event in events:
            if isinstance(event, bypass.CaptiveWindowOpened):
                return Answer(True, "captive-portal-window",
                              f"Direct web access for a Wi-Fi login page until "
                              f"{time.strftime('%H:%M', time.localtime(event.until))}.",
                              f"公衆無線LANのログイン画面用に、"
                              f"{time.strftime('%H:%M', time.localtime(event.until))} まで"
                              f"直接接続を許可します。", event.until)
            if isinstance(event, bypass.CaptiveWindowRefused):
                return Answer(False, event.reason.value, event.message_en, event.message_ja)
        return Answer(False, "internal-error", "no answer", "応答がありません")

    def apply_override(self, code: str) -> Answer:
        now = time.time()
        secret = self.rules.override_secret
        if secret is None:
            return Answer(False, "override-code-invalid",
                          "This device has no override key yet: connect to the broker once.",
                          "この端末には解除用の鍵がまだありません。一度ブローカーに接続してください。")
        self._failures = [t for t in self._failures if now - t < FAILURE_WINDOW_SECONDS]
        if len(self._failures) >= MAX_FAILURES:
            return Answer(False, "override-code-throttled",
                          "Too many wrong codes: wait 10 minutes, then try again.",
                          "誤ったコードが多すぎます。10分待ってから再入力してください。")
        try:
            grant = verify_override_code(secret, self.config.device_id, code, now)
        except ConfigError as exc:
            return Answer(False, "override-code-invalid", str(exc), str(exc))
        except OverrideCodeError as exc:
            self._failures.append(now)
            self.events.record({"kind": "override-refused", "time": now,
                                "detail": exc.reason.value, "user": self.user()})
            return Answer(False, exc.reason.value, exc.message_en, exc.message_ja)
        state, events = bypass.apply_override(self.state, grant, now)
        self._apply(state, events, now)
        for event in events:
            if isinstance(event, bypass.OverrideApplied):
                return Answer(True, "override-active",
                              "Enforcement is lifted on this device until "
                              f"{time.strftime('%H:%M', time.localtime(event.until))}.",
                              f"{time.strftime('%H:%M', time.localtime(event.until))} まで、"
                              "この端末の制御を解除しました。", event.until)
            if isinstance(event, bypass.OverrideRefused):
                return Answer(False, event.reason.value, event.message_en, event.message_ja)
        return Answer(False, "internal-error", "no answer", "応答がありません")

    def clear_override(self) -> Answer:
        now = time.time()
        state, events = bypass.clear_override(self.state, now)
        self._apply(state, events, now)
        return Answer(True, "override-cleared", "Enforcement is back on.", "制御を再開しました。")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.time()
            state, events = bypass.tick(self.state, now, self.broker_reachable)
            self._apply(state, events, now)

    def _apply(self, state: BypassState, events: tuple[Any, ...], now: float) -> None:
        for event in events:
            kind = {bypass.CaptiveWindowOpened: "captive-window-opened",
                    bypass.CaptiveWindowClosed: "captive-window-closed",
                    bypass.CaptiveWindowRefused: "captive-window-refused",
                    bypass.OverrideApplied: "override-applied",
                    bypass.OverrideEnded: "override-ended",
                    bypass.OverrideRefused: "override-refused"}.get(type(event))
            if kind is None:
                continue
            fields = {k: (v.value if hasattr(v, "value") else v)
                      for k, v in dataclasses.asdict(event).items()}
            record: dict[str, Any] = {"kind": kind, "time": now, "user": self.user(),
                                      "detail": json.dumps(fields, ensure_ascii=False)[:300]}
            if "code_id" in fields:
                record["code_id"] = str(fields["code_id"])[:40]
            log.warning("%s %s", kind, record["detail"])
            self.events.record(record)
        if state != self.state:
            self.state = state
            with contextlib.suppress(OSError):
                write_private(self.config.data_dir / BYPASS_FILE,
                              json.dumps(state.to_json_dict()).encode())

    def _load_state(self) -> BypassState:
        try:
            return BypassState.parse(json.loads((self.config.data_dir / BYPASS_FILE).read_bytes()))
        except FileNotFoundError:
            return bypass.EMPTY_STATE
        except (OSError, ValueError, ConfigError) as exc:
            log.error("bypass state unreadable, starting without window or override: %s", exc)
            return bypass.EMPTY_STATE

    def status(self) -> dict[str, Any]:
        now = time.time()
        mode = bypass.bypass_mode(self.state, now, 443)
        st = self.rules.status
        return {
            "rules": {"version": st.version, "microsoft_data": st.source_version,
                      "received_at": st.received_at, "checked_at": st.checked_at,
                      "breakout_rules": len(self.rules.rules.breakout.rules),
                      "private_zones": list(self.rules.rules.dns.zones),
                      "captive_portal_minutes": self.rules.rules.captive_portal_minutes,
                      "last_error": st.last_error},
            "inspection_ca": {"sent": bool(self.rules.rules.inspection_ca),
                              "installed": self.rules.trust.status.installed if self.rules.trust else "",
                              "problem": (self.rules.trust.status.problem if self.rules.trust
                                          else "install_inspection_ca is off")},
            "bypass": {"mode": mode.value if mode else None,
                       "window_until": self.state.window.until if self.state.window else None,
                       "override_until": (self.state.override.expires_at
                                          if self.state.override else None)},
            "direct": {"open": self.direct_open, "total": self.direct_total,
                       "last": self.last_direct},
            "events": self.events.status(),
        }
