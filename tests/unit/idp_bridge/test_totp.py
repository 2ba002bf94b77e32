"""TOTP (idp_bridge/totp.py): RFC 6238 vectors, drift, replay, rate limit, enrolment and sealing.

Codes are checked against the RFC's own table and against a 10-line RFC 4226 implementation
in this file (hmac + struct), so the core is not only compared with pyotp, which it wraps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idp_bridge import totp
from idp_bridge.totp import SealError, TotpOutcome, TotpState, verify_code
from ztcore.decision import Action
from ztcore.errors import ZTError
from ztcore.reasons import Reason

RFC_KEY = b"12345678901234567890"   # RFC 6238 Appendix B, SHA-1
SECRET = base64.b32encode(RFC_KEY).decode("ascii")
NOW = 1_750_000_005.0               # 15 s into a 30 s time-step
STEP = int(NOW) // 30
SEAL_KEY = bytes(range(32))
NONCE = b"\x07" * 12


def hotp(key: bytes, counter: int, digits: int = 6) -> str:
    """RFC 4226 §5.3, written out independently of pyotp and of the code under test."""
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10 ** digits).zfill(digits)


def code_at(step: int) -> str:
    return hotp(RFC_KEY, step)


# -- RFC 6238 Appendix B ------------------------------------------------------------------------

RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
               (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]


@pytest.mark.parametrize("now, expected", RFC_VECTORS)
def test_rfc6238_vectors(now: int, expected: str) -> None:
    assert pyotp.TOTP(SECRET, digits=8).at(now) == expected     # the library we wrap
    assert hotp(RFC_KEY, now // 30, digits=8) == expected      # our reference
    outcome, state = verify_code(SECRET, expected[-6:], float(now), TotpState())
    assert outcome.accepted and outcome.reason is Reason.TOTP_ACCEPTED
    assert outcome.step == now // 30 and state.last_accepted_step == now // 30


# -- drift --------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset, accepted", [(-2, False), (-1, True), (0, True), (1, True),
                                              (2, False), (10, False), (-10, False)])
def test_one_step_of_drift_either_way(offset: int, accepted: bool) -> None:
    outcome, state = verify_code(SECRET, code_at(STEP + offset), NOW, TotpState())
    assert outcome.accepted is accepted
    if accepted:
        assert outcome.step == STEP + offset and state == TotpState(STEP + offset)
    else:
        assert outcome.reason is Reason.TOTP_INVALID and state.failure_times == (NOW,)


def test_step_boundaries_follow_the_clock() -> None:
    start = STEP * 30.0
    assert verify_code(SECRET, code_at(STEP + 1), start - 0.001, TotpState())[0].reason \
        is Reason.TOTP_INVALID                                 # two steps ahead of STEP - 1
    assert verify_code(SECRET, code_at(STEP + 1), start, TotpState())[0].accepted


# -- replay -------------------------------------------------------------------------------------

def test_a_code_is_accepted_once() -> None:
    first, state = verify_code(SECRET, code_at(STEP), NOW, TotpState())
    assert first.accepted
    again, state2 = verify_code(SECRET, code_at(STEP), NOW + 1, state)
    assert again.reason is Reason.TOTP_REPLAYED and not again.accepted
    assert state2.last_accepted_step == STEP and state2.failure_times == (NOW + 1,)
    # Still refused in the next step, where the code is inside the drift window as "previous".
    later, _ = verify_code(SECRET, code_at(STEP), NOW + 30, state)
    assert later.reason is Reason.TOTP_REPLAYED


def test_steps_at_or_before_the_last_accepted_one_are_refused() -> None:
    _, state = verify_code(SECRET, code_at(STEP + 1), NOW, TotpState())   # a fast phone
    assert state.last_accepted_step == STEP + 1
    for step in (STEP - 1, STEP, STEP + 1):
        outcome, _ = verify_code(SECRET, code_at(step), NOW, state)
        assert outcome.reason is Reason.TOTP_REPLAYED, step
    nxt, _ = verify_code(SECRET, code_at(STEP + 2), NOW + 30, state)
    assert nxt.accepted and nxt.step == STEP + 2


def test_a_code_that_two_steps_share_is_still_accepted_only_once() -> None:
    # Found by search: with the RFC key, steps 59061240 and 59061241 both give 963181. Taking
    # the earlier step as "used" would let the same digits in again as the later one.
    shared = 59061240
    assert code_at(shared) == code_at(shared + 1) == "963181"
    now = shared * 30.0 + 5
    first, state = verify_code(SECRET, "963181", now, TotpState())
    assert first.accepted and first.step == shared + 1
    again, _ = verify_code(SECRET, "963181", now + 30, state)
    assert again.reason is Reason.TOTP_REPLAYED


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(-3, 3), st.booleans()),
                max_size=25))
def test_accepted_steps_only_ever_increase(events: list[tuple[int, int, bool]]) -> None:
    """Transcript property: whatever is tried, no step is accepted twice, and never out of order."""
    now, state, accepted = NOW, TotpState(), []
    for gap, offset, right in events:
        now += gap
        step = int(now) // 30 + offset
        code = code_at(step) if right and step >= 0 else "000000"
        outcome, state = verify_code(SECRET, code, now, state)
        if outcome.accepted:
            assert outcome.step is not None and abs(outcome.step - int(now) // 30) <= 1
            accepted.append(outcome.step)
    assert accepted == sorted(set(accepted))


# -- rate limit and lockout ---------------------------------------------------------------------

def wrong(step: int) -> str:
    return "000000" if code_at(step) != "000000" else "111111"


def fail_five(start: float) -> TotpState:
    state = TotpState()
    for i in range(totp.MAX_FAILURES):
        outcome, state = verify_code(SECRET, wrong(STEP), start + i, state)
        assert outcome.reason is Reason.TOTP_INVALID
    return state


def test_five_failures_in_five_minutes_block_even_the_right_code() -> None:
    state = fail_five(NOW)
    outcome, after = verify_code(SECRET, code_at(STEP), NOW + 10, state)
    assert outcome.reason is Reason.TOTP_RATE_LIMITED and not outcome.accepted
    assert outcome.retry_after_seconds == pytest.approx(290)
    assert after.failure_times == state.failure_times    # a blocked attempt is not a failure
    assert outcome.decision.status == 429


def test_the_limit_lifts_when_the_oldest_failure_leaves_the_window() -> None:
    state = fail_five(NOW)
    t = NOW + totp.FAILURE_WINDOW_SECONDS
    blocked, _ = verify_code(SECRET, code_at(int(t - 0.5) // 30), t - 0.5, state)
    assert blocked.reason is Reason.TOTP_RATE_LIMITED
    assert blocked.retry_after_seconds == pytest.approx(0.5)
    ok, after = verify_code(SECRET, code_at(int(t) // 30), t, state)
    assert ok.accepted and after == TotpState(STEP + 10)   # success clears the failures


def test_four_failures_leave_the_right_code_working() -> None:
    state = TotpState()
    for i in range(totp.MAX_FAILURES - 1):
        _, state = verify_code(SECRET, wrong(STEP), NOW + i, state)
    assert verify_code(SECRET, code_at(STEP), NOW + 5, state)[0].accepted


def test_replays_count_as_failures_malformed_codes_do_not() -> None:
    _, state = verify_code(SECRET, code_at(STEP), NOW, TotpState())
    for i in range(3):
        outcome, state = verify_code(SECRET, "12345", NOW + i, state)
        assert outcome.reason is Reason.TOTP_MALFORMED
    assert state.failure_times == ()
    for i in range(totp.MAX_FAILURES):
        outcome, state = verify_code(SECRET, code_at(STEP), NOW + i, state)
        assert outcome.reason is Reason.TOTP_REPLAYED
    assert verify_code(SECRET, code_at(STEP + 1), NOW + 30, state)[0].reason \
        is Reason.TOTP_RATE_LIMITED


def test_one_hundred_failures_in_a_row_lock_the_factor() -> None:
    state, now = TotpState(), NOW
    for _ in range(totp.MAX_CONSECUTIVE_FAILURES):
        now += 75        # 4 failures per 5 minutes: never rate limited, still counted
        outcome, state = verify_code(SECRET, wrong(int(now) // 30), now, state)
        assert outcome.reason is Reason.TOTP_INVALID
    locked, after = verify_code(SECRET, code_at(int(now + 3600) // 30), now + 3600, state)
    assert locked.reason is Reason.TOTP_LOCKED and after == state
    assert TotpState().consecutive_failures == 0         # the admin's reset is a new state


# -- malformed input never raises ---------------------------------------------------------------

@pytest.mark.parametrize("code", ["", "12345", "1234567", "12345a", " 123456", "123456 ",
                                  "123456\n", "123 456", "１２３４５６", "١٢٣٤٥٦", "+12345",
                                  "-12345", "12_345", None, 123456, b"123456"])
def test_anything_but_six_ascii_digits_is_malformed(code: object) -> None:
    outcome, state = verify_code(SECRET, code, NOW, TotpState())  # type: ignore[arg-type]
    assert outcome.reason is Reason.TOTP_MALFORMED and state == TotpState()
    assert outcome.decision.action is Action.DENY and outcome.decision.status == 401


@given(st.one_of(st.text(max_size=12), st.from_regex(r"[0-9]{6}", fullmatch=True)),
       st.floats(allow_nan=True, allow_infinity=True),
       st.builds(TotpState, st.integers(-1, 10**8),
                 st.lists(st.floats(0, 2e9), max_size=5).map(tuple), st.integers(0, 200)))
def test_verify_never_raises(code: str, now: float, state: TotpState) -> None:
    outcome, new_state = verify_code(SECRET, code, now, state)
    assert isinstance(outcome, TotpOutcome) and isinstance(new_state, TotpState)
    if outcome.accepted:
        assert code == code_at(outcome.step or 0) and new_state.last_accepted_step > -1


@pytest.mark.parametrize("secret", ["", "GEZDGNBV", "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
                                    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1", SECRET + "===="])
def test_a_bad_stored_secret_is_an_internal_error_not_a_crash(secret: str) -> None:
    outcome, state = verify_code(secret, "123456", NOW, TotpState())
    assert outcome.reason is Reason.INTERNAL_ERROR and outcome.decision.status == 500
    assert state == TotpState()


# -- enrolment ----------------------------------------------------------------------------------

def test_new_secrets_are_160_random_bits() -> None:
    a, b = totp.new_secret(), totp.new_secret()
    assert a != b and len(a) == 32 and len(base64.b32decode(a)) == 20


def test_the_uri_is_what_an_authenticator_app_reads() -> None:
    enrolment = totp.enrol(SECRET, "kita-city", "tanaka")
    parts = urlsplit(enrolment.uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Sekimori:kita-city:tanaka"
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET] and query["issuer"] == ["Sekimori"]
    # pyotp standing in for the phone: it provisions from the URI, its code is accepted.
    phone = pyotp.parse_uri(enrolment.uri)
    assert isinstance(phone, pyotp.TOTP) and phone.interval == 30 and phone.digits == 6
    assert verify_code(SECRET, phone.at(NOW), NOW, TotpState())[0].accepted


def qr_modules(text: str, border: int = 2) -> list[list[bool]]:
    """Half-block text (invert=True: a drawn glyph is a light module) back to dark modules."""
    halves = {"█": (False, False), "▄": (True, False), "▀": (False, True), "\xa0": (True, True)}
    rows: list[list[bool]] = []
    for line in text.splitlines():
        pairs = [halves[ch] for ch in line]
        rows += [[top for top, _ in pairs], [bottom for _, bottom in pairs]]
    size = len(rows[0]) - 2 * border
    assert all(not any(row) for row in rows[:border])       # light quiet zone
    return [row[border:border + size] for row in rows[border:border + size]]


def test_the_qr_code_has_the_right_geometry_for_a_dark_terminal() -> None:
    modules = qr_modules(totp.enrol(SECRET, "kita-city", "tanaka").qr_text)
    size = len(modules)
    assert size >= 21 and (size - 17) % 4 == 0 and all(len(row) == size for row in modules)

    def finder_at(r0: int, c0: int) -> bool:
        for r in range(7):
            for c in range(7):
                ring = max(abs(r - 3), abs(c - 3))
                if modules[r0 + r][c0 + c] != (ring != 2):
                    return False
        return True
    assert finder_at(0, 0) and finder_at(0, size - 7) and finder_at(size - 7, 0)
    assert [modules[6][c] for c in range(8, size - 8)] == [c % 2 == 0 for c in range(8, size - 8)]


@pytest.mark.parametrize("tenant, username", [("Kita", "tanaka"), ("kita-city", ""),
                                              ("kita-city", " "), ("kita-city", "a\nb")])
def test_enrolment_refuses_bad_accounts(tenant: str, username: str) -> None:
    with pytest.raises(ValueError):
        totp.enrol(SECRET, tenant, username)


def test_enrolment_refuses_short_secrets() -> None:
    with pytest.raises(ValueError):
        totp.enrol(base64.b32encode(b"x" * 10).decode().rstrip("="), "kita-city", "tanaka")


# -- sealing ------------------------------------------------------------------------------------

def test_seal_round_trip() -> None:
    blob = totp.seal_secret(SECRET, SEAL_KEY, "kita-city", "tanaka", NONCE)
    assert SECRET.encode() not in blob and blob[1:13] == NONCE
    assert totp.open_secret(blob, SEAL_KEY, "kita-city", "tanaka") == SECRET


def test_fresh_nonces_make_different_blobs() -> None:
    a = totp.seal_secret(SECRET, SEAL_KEY, "kita-city", "tanaka", totp.new_seal_nonce())
    b = totp.seal_secret(SECRET, SEAL_KEY, "kita-city", "tanaka", totp.new_seal_nonce())
    assert a != b
    assert totp.open_secret(a, SEAL_KEY, "kita-city", "tanaka") == SECRET


@pytest.mark.parametrize("tenant, username, key", [
    ("kita-city", "suzuki", SEAL_KEY),          # copied onto another user's row
    ("minami-town", "tanaka", SEAL_KEY),        # same user name, another municipality
    ("kita-city", "Tanaka", SEAL_KEY),          # names are bound exactly as stored
    ("kita-city", "tanaka", bytes(32)),         # another key
])
def test_a_sealed_secret_opens_only_for_its_user_and_key(tenant: str, username: str,
                                                         key: bytes) -> None:
    blob = totp.seal_secret(SECRET, SEAL_KEY, "kita-city", "tanaka", NONCE)
    with pytest.raises(SealError, match="does not open"):
        totp.open_secret(blob, key, tenant, username)


def test_associated_data_is_unambiguous() -> None:
    blob = totp.seal_secret(SECRET, SEAL_KEY, "ab", "c-d", NONCE)
    with pytest.raises(SealError):
        totp.open_secret(blob, SEAL_KEY, "ab-c", "d")


@given(st.data())
def test_any_tampering_is_a_clear_error(data: st.DataObject) -> None:
    blob = bytearray(totp.seal_secret(SECRET, SEAL_KEY, "kita-city", "tanaka", NONCE))
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SealError):
        totp.open_secret(bytes(blob), SEAL_KEY, "kita-city", "tanaka")


@given(st.binary(max_size=200))
def test_garbage_blobs_are_a_seal_error(blob: bytes) -> None:
    with pytest.raises(SealError):
        totp.open_secret(blob, SEAL_KEY, "kita-city", "tanaka")


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x02" + b"\x00" * 60, "a string"])
def test_truncated_or_foreign_blobs_are_a_seal_error(blob: bytes) -> None:
    with pytest.raises(SealError) as caught:
        totp.open_secret(blob, SEAL_KEY, "kita-city", "tanaka")
    assert isinstance(caught.value, ZTError)


@pytest.mark.parametrize("key, nonce", [(b"short", NONCE), (bytes(16), NONCE),
                                        (SEAL_KEY, b"\x00" * 8), (SEAL_KEY, b"\x00" * 16)])
def test_sealing_refuses_bad_keys_and_nonces(key: bytes, nonce: bytes) -> None:
    with pytest.raises(SealError):
        totp.seal_secret(SECRET, key, "kita-city", "tanaka", nonce)
