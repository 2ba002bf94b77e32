"""Decision ↔ CONNECT response headers (ztcore/headers.py): round trips, and fail closed."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ResponseReceived
from hypothesis import given
from hypothesis import strategies as st

from ztcore import headers as zh
from ztcore.decision import Action, Decision, allow, deny
from ztcore.reasons import REASON_TEXT, Reason

DENY_REASONS = [r for r in Reason if r is not Reason.DESTINATION_ALLOWED]
# An HTTP field value (RFC 9110 §5.5): visible ASCII, inner spaces only.
FIELD_VALUE = re.compile(rb"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


def fields(hs: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return dict(hs)


# -- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("reason", DENY_REASONS, ids=[r.value for r in DENY_REASONS])
def test_every_deny_reason_round_trips(reason: Reason) -> None:
    decision = deny(reason, status=403, rule_id="rules[2]", detail="port 25 is not allowed")
    hs = zh.response_headers(decision)
    assert hs[0] == (b":status", b"403")  # pseudo-header first (RFC 9113 §8.3)
    got = zh.decision_from_response(hs)
    assert got == decision
    assert got.message_ja == REASON_TEXT[reason].ja and got.message_en == REASON_TEXT[reason].en


@pytest.mark.parametrize("reason", list(Reason), ids=[r.value for r in Reason])
def test_japanese_sentence_is_percent_encoded_ascii(reason: Reason) -> None:
    hs = fields(zh.response_headers(deny(reason)))
    encoded = hs[zh.MESSAGE_JA.encode()]
    assert encoded.isascii() and b"%" in encoded  # every sentence has Japanese in it
    assert unquote(encoded.decode("ascii")) == REASON_TEXT[reason].ja
    assert hs[zh.MESSAGE_EN.encode()] == REASON_TEXT[reason].en.encode("ascii")
    assert hs[zh.REASON.encode()] == reason.value.encode("ascii")


@pytest.mark.parametrize("decision, status", [
    (deny(Reason.PORT_NOT_ALLOWED), 403),
    (deny(Reason.REQUEST_INVALID, status=400), 400),
    (deny(Reason.REQUEST_INVALID, status=405), 405),
    (deny(Reason.INTERNAL_ERROR, status=500), 500),
    (deny(Reason.UPSTREAM_UNREACHABLE, status=502, detail="example.jp:443 refused"), 502),
    (deny(Reason.BROKER_SHUTTING_DOWN, status=503), 503),
    (deny(Reason.UPSTREAM_TIMEOUT, status=504), 504),
])
def test_status_is_carried(decision: Decision, status: int) -> None:
    hs = zh.response_headers(decision)
    assert fields(hs)[b":status"] == str(status).encode()
    assert zh.decision_from_response(hs) == decision


def test_allow_is_a_bare_200() -> None:
    hs = zh.response_headers(allow(rule_id="ignored"))
    assert hs == [(b":status", b"200")]  # nothing about the decision leaks to the client
    got = zh.decision_from_response(hs)
    assert got.allowed and got.reasons == (Reason.DESTINATION_ALLOWED,) and got.status == 200


@pytest.mark.parametrize("rule_id, detail, present", [
    (None, "", {zh.REASON, zh.MESSAGE_EN, zh.MESSAGE_JA}),
    ("r1", "", {zh.REASON, zh.MESSAGE_EN, zh.MESSAGE_JA, zh.RULE}),
    (None, "why", {zh.REASON, zh.MESSAGE_EN, zh.MESSAGE_JA, zh.DETAIL}),
])
def test_optional_headers_only_when_set(rule_id: str | None, detail: str, present: set[str]) -> None:
    names = {k for k, _ in zh.decision_headers(deny(Reason.DEVICE_UNKNOWN, rule_id=rule_id,
                                                    detail=detail))}
    assert names == present


@given(detail=st.text(), reason=st.sampled_from(DENY_REASONS),
       status=st.integers(400, 599), rule=st.none() | st.from_regex(r"[a-z0-9\[\]._-]{1,20}",
                                                                    fullmatch=True))
def test_any_detail_round_trips(detail: str, reason: Reason, status: int, rule: str | None) -> None:
    decision = deny(reason, status=status, rule_id=rule, detail=detail)
    hs = zh.response_headers(decision)
    assert all(k.isascii() and v.isascii() for k, v in hs)
    assert zh.decision_from_response(hs) == decision


@pytest.mark.parametrize("detail", [
    "device pc-017 revoked: lost on the train",
    "169.254.169.254 is a metadata address",
    "宛先 example.jp:443 refused (タイムアウト)",
    "line one\r\nline two",
    "100% blocked",
])
def test_detail_is_a_valid_field_value(detail: str) -> None:
    for _, value in zh.response_headers(deny(Reason.DEVICE_REVOKED, detail=detail))[1:]:
        assert FIELD_VALUE.fullmatch(value), value


def _agent_receives(response: list[tuple[bytes, bytes]]) -> ResponseReceived:
    """Send `response` from a broker-configured h2 to a validating client h2 (the agent's)."""
    agent = H2Connection(H2Configuration(client_side=True, header_encoding=None,
                                         validate_inbound_headers=True))
    broker = H2Connection(H2Configuration(client_side=False, header_encoding=None,
                                          validate_outbound_headers=False,
                                          normalize_outbound_headers=False))
    agent.initiate_connection()
    broker.initiate_connection()
    agent.send_headers(1, [(b":method", b"CONNECT"), (b":authority", b"example.jp:443")])
    broker.receive_data(agent.data_to_send())
    broker.send_headers(1, response)
    [event] = [e for e in agent.receive_data(broker.data_to_send())
               if isinstance(e, ResponseReceived)]
    return event


@pytest.mark.parametrize("reason", DENY_REASONS, ids=[r.value for r in DENY_REASONS])
def test_h2_on_the_agent_accepts_every_deny(reason: Reason) -> None:
    decision = deny(reason, status=403, rule_id="r-1", detail="a detail: (with) [brackets]")
    event = _agent_receives(zh.response_headers(decision))
    assert zh.decision_from_response(event.headers or []) == decision


@pytest.mark.parametrize("detail", ["device pc-017 revoked: lost ", " leading"])
def test_detail_with_edge_whitespace_is_still_a_valid_field_value(detail: str) -> None:
    decision = deny(Reason.DEVICE_REVOKED, detail=detail)
    for _, value in zh.response_headers(decision)[1:]:
        assert FIELD_VALUE.fullmatch(value), value
    event = _agent_receives(zh.response_headers(decision))
    assert zh.decision_from_response(event.headers or []) == decision


# -- fail closed --------------------------------------------------------------------------------

R = zh.REASON.encode()

# (headers from the broker, expected reason, expected status)
BROKEN: list[tuple[list[tuple[bytes, bytes]], Reason, int]] = [
    ([], Reason.INTERNAL_ERROR, 502),
    ([(b":status", b"")], Reason.INTERNAL_ERROR, 502),
    ([(b":status", b"abc")], Reason.INTERNAL_ERROR, 502),
    ([(b":status", b"20O")], Reason.INTERNAL_ERROR, 502),
    ([(b":status", b"\xff\xfe")], Reason.INTERNAL_ERROR, 502),
    ([(b":status", b"2.0")], Reason.INTERNAL_ERROR, 502),
    ([(b"status", b"200")], Reason.INTERNAL_ERROR, 502),  # not the pseudo-header
    ([(b":status", b"403")], Reason.INTERNAL_ERROR, 403),  # no reason given
    ([(b":status", b"403"), (R, b"no-such-reason")], Reason.INTERNAL_ERROR, 403),
    ([(b":status", b"403"), (R, b"DEVICE-REVOKED")], Reason.INTERNAL_ERROR, 403),
    ([(b":status", b"403"), (R, b"device-revoked ")], Reason.INTERNAL_ERROR, 403),
    ([(b":status", b"403"), (R, b"")], Reason.INTERNAL_ERROR, 403),
    ([(b":status", b"403"), (R, b"device-revoked")], Reason.DEVICE_REVOKED, 403),
    ([(b":status", b"503"), (R, b"broker-shutting-down")], Reason.BROKER_SHUTTING_DOWN, 503),
    # a status that is neither success nor an error is shown as a bad gateway
    ([(b":status", b"100")], Reason.INTERNAL_ERROR, 502),
    ([(b":status", b"302"), (R, b"device-revoked")], Reason.DEVICE_REVOKED, 502),
    ([(b":status", b"600"), (R, b"device-revoked")], Reason.DEVICE_REVOKED, 502),
    ([(b":status", b"-200")], Reason.INTERNAL_ERROR, 502),
    ([(b":status", b"99999999999999999999")], Reason.INTERNAL_ERROR, 502),
]


@pytest.mark.parametrize("hs, reason, status", BROKEN)
def test_broken_responses_are_denies(hs: list[tuple[bytes, bytes]], reason: Reason,
                                     status: int) -> None:
    got = zh.decision_from_response(hs)
    assert got.action is Action.DENY
    assert got.reasons == (reason,)
    assert got.status == status


@pytest.mark.parametrize("status", [b"200", b"204", b"299"])
def test_any_2xx_is_an_allow(status: bytes) -> None:
    assert zh.decision_from_response([(b":status", status)]).allowed


@given(st.lists(st.tuples(st.sampled_from([b":status", R, zh.DETAIL.encode(), zh.RULE.encode()])
                          | st.binary(max_size=10), st.binary(max_size=20)), max_size=6))
def test_anything_from_the_broker_gives_a_decision(hs: list[tuple[bytes, bytes]]) -> None:
    got = zh.decision_from_response(hs)  # never raises
    assert len(got.reasons) == 1
    if not got.allowed:
        assert 400 <= got.status <= 599  # a status the agent can show
    else:
        assert 200 <= int(dict(hs)[b":status"].decode("latin-1")) <= 299


@pytest.mark.parametrize("status", [b"+200", b" 200", b"0200", b"2_00", b"200 "])
def test_malformed_2xx_status_is_a_deny(status: bytes) -> None:
    assert not zh.decision_from_response([(b":status", status)]).allowed


def test_a_deny_is_never_sent_as_a_success() -> None:
    decision = Decision(Action.DENY, (Reason.DEVICE_REVOKED,))  # status left at its default
    hs = zh.response_headers(decision)
    assert not fields(hs)[b":status"].startswith(b"2")
    assert not zh.decision_from_response(hs).allowed
