"""The agent's bypass modes (ztcore/bypass.py): transcripts of calls, the events and the modes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztcore.bypass import (
    CAPTIVE_PORTAL_PORTS,
    EMPTY_STATE,
    MAX_USED_CODE_IDS,
    BypassEvent,
    BypassMode,
    BypassReason,
    BypassState,
    CaptiveWindow,
    CaptiveWindowClosed,
    CaptiveWindowOpened,
    CaptiveWindowRefused,
    EndedWhy,
    OverrideApplied,
    OverrideEnded,
    OverrideRefused,
    Transition,
    apply_override,
    bypass_mode,
    clear_override,
    close_captive_window,
    open_captive_window,
    tick,
)
from ztcore.errors import ConfigError, LocalProtocolError
from ztcore.override_code import (
    OverrideGrant,
    derive_device_secret,
    issue_override_code,
    verify_override_code,
)

T = 1_750_000_020.0      # a fixed `now`; the transcripts count seconds from here
CAPTIVE = BypassMode.CAPTIVE_PORTAL
OVERRIDE = BypassMode.OVERRIDE


class Agent:
    """Feeds calls to the core the way the agent's shell would, keeping the state between them."""

    def __init__(self, state: BypassState = EMPTY_STATE) -> None:
        self.state = state

    def _feed(self, result: Transition) -> tuple[BypassEvent, ...]:
        self.state, events = result
        # every state the core returns survives the agent's data dir
        assert BypassState.parse(json.loads(json.dumps(self.state.to_json_dict()))) == self.state
        return events

    def open(self, at: float, minutes: int = 10, reachable: bool = False,
             max_per_hour: int = 3) -> tuple[BypassEvent, ...]:
        return self._feed(open_captive_window(self.state, T + at, minutes, reachable, max_per_hour))

    def close(self, at: float) -> tuple[BypassEvent, ...]:
        return self._feed(close_captive_window(self.state, T + at))

    def tick(self, at: float, reachable: bool = False) -> tuple[BypassEvent, ...]:
        return self._feed(tick(self.state, T + at, reachable))

    def apply(self, grant: OverrideGrant, at: float) -> tuple[BypassEvent, ...]:
        return self._feed(apply_override(self.state, grant, T + at))

    def clear(self, at: float) -> tuple[BypassEvent, ...]:
        return self._feed(clear_override(self.state, T + at))

    def mode(self, at: float, port: int = 443) -> BypassMode | None:
        return bypass_mode(self.state, T + at, port)


def grant(code_id: str = "0123456789ab", issued: float = 0, minutes: int = 60) -> OverrideGrant:
    return OverrideGrant(code_id=code_id, issued_at=T + issued, expires_at=T + issued + 60 * minutes,
                         minutes=minutes)


def refusal(events: tuple[BypassEvent, ...]) -> BypassReason:
    assert len(events) >= 1
    last = events[-1]
    assert isinstance(last, CaptiveWindowRefused | OverrideRefused), events
    assert last.message_en and last.message_ja
    return last.reason


# -- the captive-portal window ------------------------------------------------------------------

def test_window_refused_while_the_broker_is_reachable() -> None:
    agent = Agent()
    events = agent.open(0, reachable=True)
    assert events == (CaptiveWindowRefused(
        BypassReason.CAPTIVE_PORTAL_NOT_NEEDED,
        "The broker is reachable, so a temporary captive-portal window is not needed.",
        "ブローカーに接続できているため、キャプティブポータル用の一時許可は不要です。"),)
    assert agent.state == EMPTY_STATE and agent.mode(1) is None


@pytest.mark.parametrize("reachable", [False, True])
def test_window_refused_when_the_tenant_disabled_it(reachable: bool) -> None:
    agent = Agent()
    assert refusal(agent.open(0, minutes=0, reachable=reachable)) is BypassReason.CAPTIVE_PORTAL_DISABLED
    assert agent.state == EMPTY_STATE and agent.mode(1, 80) is None


def test_window_granted_while_the_broker_is_unreachable_for_ports_80_and_443_only() -> None:
    agent = Agent()
    assert agent.open(0, minutes=10) == (CaptiveWindowOpened(until=T + 600, minutes=10),)
    assert agent.state.window == CaptiveWindow(opened_at=T, until=T + 600, minutes=10)
    assert agent.mode(1, 80) is CAPTIVE and agent.mode(1, 443) is CAPTIVE
    for port in (22, 53, 8080, 8443, 3389, 0, 65535):
        assert agent.mode(1, port) is None, port
    assert CAPTIVE_PORTAL_PORTS == {80, 443}


def test_window_closes_as_soon_as_the_broker_is_reachable() -> None:
    agent = Agent()
    agent.open(0)
    assert agent.tick(30, reachable=False) == ()
    assert agent.tick(60, reachable=True) == (CaptiveWindowClosed(EndedWhy.BROKER_REACHABLE),)
    assert agent.mode(61, 443) is None
    assert agent.tick(62, reachable=True) == ()


def test_window_closes_at_expiry() -> None:
    agent = Agent()
    agent.open(0, minutes=5)
    assert agent.mode(299.999) is CAPTIVE
    assert agent.mode(300) is None                  # without a tick: the query checks the time
    assert agent.tick(299) == ()
    assert agent.tick(300) == (CaptiveWindowClosed(EndedWhy.EXPIRED),)
    assert agent.state.window is None


def test_a_missed_tick_is_caught_up_by_the_next_call() -> None:
    agent = Agent()
    agent.open(0, minutes=5)
    assert agent.open(400, minutes=5) == (CaptiveWindowClosed(EndedWhy.EXPIRED),
                                          CaptiveWindowOpened(until=T + 400 + 300, minutes=5))


def test_window_already_open_is_not_opened_twice() -> None:
    agent = Agent()
    agent.open(0)
    before = agent.state
    assert refusal(agent.open(10)) is BypassReason.CAPTIVE_PORTAL_ALREADY_OPEN
    assert agent.state == before


def test_user_closes_the_window() -> None:
    agent = Agent()
    agent.open(0)
    assert agent.close(20) == (CaptiveWindowClosed(EndedWhy.CLOSED),)
    assert agent.mode(21) is None
    assert agent.close(22) == ()


def test_at_most_three_windows_an_hour() -> None:
    agent = Agent()
    for at in (0, 700, 1400):
        assert isinstance(agent.open(at)[-1], CaptiveWindowOpened)
    assert agent.tick(2000) == (CaptiveWindowClosed(EndedWhy.EXPIRED),)
    assert refusal(agent.open(2100)) is BypassReason.CAPTIVE_PORTAL_LIMIT_REACHED
    assert agent.mode(2101) is None
    assert refusal(agent.open(3599)) is BypassReason.CAPTIVE_PORTAL_LIMIT_REACHED
    assert agent.open(3600) == (CaptiveWindowOpened(until=T + 3600 + 600, minutes=10),)


def test_the_hourly_cap_is_a_parameter_and_reconnects_do_not_reset_it() -> None:
    agent = Agent()
    agent.open(0, max_per_hour=1)
    agent.tick(10, reachable=True)
    assert refusal(agent.open(20, max_per_hour=1)) is BypassReason.CAPTIVE_PORTAL_LIMIT_REACHED
    assert isinstance(agent.open(20, max_per_hour=2)[-1], CaptiveWindowOpened)


def test_a_clock_set_back_does_not_revive_or_reset_a_window() -> None:
    agent = Agent()
    agent.open(0)
    assert agent.mode(-1000) is None
    agent.tick(600)
    assert refusal(agent.open(-7200, max_per_hour=1)) is BypassReason.CAPTIVE_PORTAL_LIMIT_REACHED


@pytest.mark.parametrize("minutes, per_hour", [(-1, 3), (31, 3), (True, 3), (10, 0), (10, 61)])
def test_bad_window_settings_are_config_errors(minutes: int, per_hour: int) -> None:
    with pytest.raises(ConfigError):
        open_captive_window(EMPTY_STATE, T, minutes, False, per_hour)


def test_a_broken_clock_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        tick(EMPTY_STATE, float("nan"), False)
    assert bypass_mode(Agent().state, float("nan"), 443) is None


# -- the override -------------------------------------------------------------------------------

def test_override_from_a_real_code_sends_everything_direct_until_it_expires() -> None:
    secret = derive_device_secret(bytes(32), "kita-city", "dev-1")
    code = issue_override_code(secret, "dev-1", T, 30, b"\x00\x07")
    verified = verify_override_code(secret, "dev-1", code.code, T + 90)
    agent = Agent()
    assert agent.apply(verified, 90) == (OverrideApplied(code.code_id, until=code.expires_at),)
    for port in (22, 80, 443, 3389):
        assert agent.mode(100, port) is OVERRIDE
    assert agent.tick(200, reachable=True) == ()            # the broker's return does not end it
    end = code.expires_at - T
    assert agent.mode(end - 0.001) is OVERRIDE and agent.mode(end) is None
    assert agent.tick(end) == (OverrideEnded(code.code_id, EndedWhy.EXPIRED),)
    assert agent.state.override is None and agent.state.used_code_ids == (code.code_id,)


def test_a_code_is_applied_once_per_device() -> None:
    agent = Agent()
    agent.apply(grant(), 0)
    assert refusal(agent.apply(grant(), 10)) is BypassReason.OVERRIDE_CODE_REUSED
    agent.clear(20)
    events = agent.apply(grant(), 30)
    assert isinstance(events[-1], OverrideRefused) and events[-1].code_id == "0123456789ab"
    assert events[-1].reason == "override-code-reused"
    assert agent.mode(31) is None


def test_an_expired_grant_is_refused_and_not_remembered() -> None:
    agent = Agent()
    assert refusal(agent.apply(grant(minutes=1), 60)) is BypassReason.OVERRIDE_CODE_EXPIRED
    assert agent.state == EMPTY_STATE


def test_clearing_ends_the_override() -> None:
    agent = Agent()
    agent.apply(grant(), 0)
    assert agent.clear(5) == (OverrideEnded("0123456789ab", EndedWhy.CLEARED),)
    assert agent.mode(6, 22) is None and agent.clear(7) == ()


def test_a_newer_override_replaces_the_current_one() -> None:
    agent = Agent()
    agent.apply(grant("aaaaaaaaaaaa", minutes=60), 0)
    assert agent.apply(grant("bbbbbbbbbbbb", issued=60, minutes=10), 60) == (
        OverrideEnded("aaaaaaaaaaaa", EndedWhy.REPLACED), OverrideApplied("bbbbbbbbbbbb", T + 660))
    assert agent.mode(700) is None      # the newer, shorter grant rules
    assert refusal(agent.apply(grant("aaaaaaaaaaaa"), 800)) is BypassReason.OVERRIDE_CODE_REUSED


def test_override_wins_over_a_window() -> None:
    agent = Agent()
    agent.open(0)
    agent.apply(grant(), 10)
    assert agent.mode(20, 443) is OVERRIDE and agent.mode(20, 22) is OVERRIDE
    agent.clear(30)
    assert agent.mode(31, 443) is CAPTIVE and agent.mode(31, 22) is None


def test_both_end_in_one_tick_in_a_stable_order() -> None:
    agent = Agent()
    agent.open(0, minutes=10)
    agent.apply(grant(minutes=5), 0)
    assert agent.tick(900) == (CaptiveWindowClosed(EndedWhy.EXPIRED),
                               OverrideEnded("0123456789ab", EndedWhy.EXPIRED))


def test_used_code_ids_are_bounded_oldest_first() -> None:
    agent = Agent()
    for n in range(MAX_USED_CODE_IDS + 10):
        agent.apply(grant(f"{n:012x}"), n)
    ids = agent.state.used_code_ids
    assert len(ids) == MAX_USED_CODE_IDS and ids[0] == f"{10:012x}" and ids[-1] == f"{265:012x}"


def test_a_clock_set_back_before_the_code_was_issued_does_not_apply_it() -> None:
    agent = Agent()
    agent.apply(grant(), 0)
    assert agent.mode(-300) is OVERRIDE and agent.mode(-301) is None


# -- persisting the state -----------------------------------------------------------------------

def full_state() -> BypassState:
    agent = Agent()
    agent.open(0)
    agent.apply(grant("aaaaaaaaaaaa"), 5)
    agent.apply(grant("bbbbbbbbbbbb"), 6)
    return agent.state


def test_json_round_trip() -> None:
    state = full_state()
    raw = json.loads(json.dumps(state.to_json_dict()))
    assert raw["version"] == 1 and raw["used_code_ids"] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert BypassState.parse(raw) == state
    assert BypassState.parse(EMPTY_STATE.to_json_dict()) == EMPTY_STATE


def corrupt(**changes: Any) -> dict[str, Any]:
    raw = full_state().to_json_dict()
    raw.update(changes)
    return raw


@pytest.mark.parametrize("raw", [
    None, "", [], 3, {},
    corrupt(version=2), corrupt(version=True), corrupt(extra=1),
    corrupt(window="open"), corrupt(window={"opened_at": T, "until": T + 10 ** 9, "minutes": 10}),
    corrupt(window={"opened_at": T + 1, "until": T + 601, "minutes": 10}),      # not counted
    corrupt(window={"opened_at": T, "until": T + 3600, "minutes": 60}),
    corrupt(window_history="x"), corrupt(window_history=[float("nan")]), corrupt(window_history=[T] * 61),
    corrupt(override={"code_id": "cccccccccccc", "issued_at": T, "expires_at": T + 60, "minutes": 1}),
    corrupt(override={"code_id": "bbbbbbbbbbbb", "issued_at": T, "expires_at": T + 10 ** 9,
                      "minutes": 1}),
    corrupt(override=[]), corrupt(used_code_ids="bbbbbbbbbbbb"),
    corrupt(used_code_ids=["bbbbbbbbbbbb", "bbbbbbbbbbbb"]), corrupt(used_code_ids=["BBBB"]),
    corrupt(used_code_ids=[f"{n:012x}" for n in range(MAX_USED_CODE_IDS + 1)]),
])
def test_a_corrupt_state_is_a_config_error(raw: object) -> None:
    with pytest.raises(ConfigError) as info:
        BypassState.parse(raw)
    assert str(info.value).startswith("bypass state: ")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=16), inner, max_size=5), max_leaves=20)
KEYS = st.sampled_from(["version", "window", "window_history", "override", "used_code_ids"])


@settings(max_examples=400)
@given(st.one_of(JSON, st.dictionaries(KEYS, JSON), st.builds(lambda k, v: corrupt(**{k: v}), KEYS, JSON)))
def test_parse_raises_only_config_error(raw: object) -> None:
    try:
        state = BypassState.parse(raw)
    except ConfigError:
        return
    assert BypassState.parse(state.to_json_dict()) == state


# -- the state table, explored --------------------------------------------------------------------

STEP = st.one_of(
    st.tuples(st.just("open"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("tick"), st.booleans()),
    st.tuples(st.just("apply"), st.integers(0, 5), st.integers(1, 120)),
    st.tuples(st.just("clear")), st.tuples(st.just("close")),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 1200), STEP), max_size=40))
def test_the_state_table_holds_its_promises(steps: list[tuple[int, tuple[Any, ...]]]) -> None:
    agent, at, opened, reachable = Agent(), 0.0, [], False
    applied: set[str] = set()
    for gap, step in steps:
        at += gap
        kind = step[0]
        if kind == "open":
            events = agent.open(at, minutes=step[1], reachable=step[2])
            reachable = step[2]
            if isinstance(events[-1], CaptiveWindowOpened):
                assert step[1] > 0 and not step[2]
                opened.append(at)
        elif kind == "tick":
            agent.tick(at, reachable=step[1])
            reachable = step[1]
        elif kind == "apply":
            code_id = f"{step[1]:012x}"
            events = agent.apply(grant(code_id, issued=at, minutes=step[2]), at)
            assert isinstance(events[-1], OverrideApplied) == (code_id not in applied)
            applied.add(code_id)
        elif kind == "clear":
            agent.clear(at)
        else:
            agent.close(at)
        # never more than 3 windows in any hour
        assert all(sum(1 for t in opened if o <= t < o + 3600) <= 3 for o in opened)
        for port in (22, 80, 443, 8080):
            mode = agent.mode(at, port)
            if mode is CAPTIVE:
                assert port in (80, 443) and not reachable and agent.state.override is None
            if agent.state.override is None:
                assert mode is not OVERRIDE
