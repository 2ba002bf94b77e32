"""TOTP second factor (RFC 6238): enrolment, verification with replay and rate limits, sealing.

This module owns the TOTP rules: what an enrolment hands the user (a secret, an `otpauth://` URI
and a QR code drawn in text for the terminal), when a code is accepted, and how a stored secret
is encrypted. Verification is a pure function: it takes `now` and the user's `TotpState` and
returns a `TotpOutcome` with the *new* state; the shell stores that state (atomically, per user)
before it answers. It must not store anything, read the clock, or talk to the directory.

The numbers (RFC 6238 defaults, what authenticator apps expect):

- 30-second time-steps, 6 digits, HMAC-SHA1; a code is accepted for the current step and one
  step either side (RFC 6238 §5.2 drift), so a code lives for at most 90 seconds.
- Replay (RFC 6238 §5.2: "MUST NOT accept the second attempt"): the state keeps the last
  accepted step; a code matching only steps at or before it is `totp-replayed`. Accepting a
  code moves the mark to the *latest* step the code matches, so the same digits cannot be
  accepted twice even when they happen to match two steps.
- Rate limit: `MAX_FAILURES` (5) failures within `FAILURE_WINDOW_SECONDS` (300) and every
  attempt is refused with `totp-rate-limited`, without looking at the code, until the oldest
  of those failures is 300 s old. At most 5 guesses per 5 minutes: with 3 codes valid at a
  time, a guesser's chance is 1.5e-5 per window.
- Lockout: `MAX_CONSECUTIVE_FAILURES` (100) failures without a success in between and the
  factor is `totp-locked` until an administrator resets the state (NIST SP 800-63B §5.2.2
  limits consecutive failures to 100; 5 per 5 minutes alone would allow ~0.4 %/day forever).
  TOTP is checked only after the password, so only someone who has the password can lock it.
- Replays count as failures; malformed input (anything but exactly 6 ASCII digits) and
  attempts refused by the limits do not: they test nothing about the secret.

Secrets at rest: `seal_secret` encrypts with AES-256-GCM under a broker key, binding the blob
to (tenant, username) as associated data, so a sealed secret copied to another user's row does
not open. The random parts — a new secret, a nonce — come from the two shell functions marked
below; everything else is deterministic.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import math
import os
import re
import struct
from dataclasses import dataclass, replace
from typing import Final

import pyotp
import qrcode  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ztcore.decision import Decision, allow, deny
from ztcore.errors import ZTError
from ztcore.reasons import Reason
from ztcore.tenants import is_tenant_id

ISSUER: Final = "Sekimori"
STEP_SECONDS: Final = 30
DIGITS: Final = 6
DRIFT_STEPS: Final = 1
MAX_FAILURES: Final = 5
FAILURE_WINDOW_SECONDS: Final = 300
MAX_CONSECUTIVE_FAILURES: Final = 100
SECRET_BYTES: Final = 20          # 160 bits, RFC 4226 §4 R6 recommendation
MIN_SECRET_BYTES: Final = 16      # 128 bits, RFC 4226 §4 R6 requirement
SEAL_KEY_BYTES: Final = 32        # AES-256
SEAL_NONCE_BYTES: Final = 12      # the GCM nonce size (NIST SP 800-38D §8.2)
_SEAL_VERSION: Final = b"\x01"
_SEAL_CONTEXT: Final = b"sekimori/totp-secret/v1"
_CODE: Final = re.compile(r"[0-9]{6}")
_BASE32: Final = re.compile(r"[A-Z2-7]+")
_MAX_USERNAME_LENGTH: Final = 256
_LAST_TIMESTAMP: Final = 253402300800  # pyotp refuses times from year 10000 on


class SealError(ZTError):
    """A sealed TOTP secret cannot be opened: tampered, wrong key, or another user's."""


# -- enrolment ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret: str        # base32, to be sealed and stored; shown to the user only inside `uri`
    uri: str           # otpauth://totp/Sekimori:<tenant>%3A<username>?secret=...&issuer=Sekimori
    qr_text: str       # the URI as a QR code of block characters, for a terminal


def new_secret() -> str:
    """SHELL: a fresh random secret (base32, 160 bits) from the OS CSPRNG."""
    return base64.b32encode(os.urandom(SECRET_BYTES)).decode("ascii")


def _check_account(tenant: str, username: str) -> None:
    if not is_tenant_id(tenant):
        raise ValueError(f"tenant: {tenant!r} is not a tenant id")
    if (not isinstance(username, str) or not username.strip()
            or len(username) > _MAX_USERNAME_LENGTH or not username.isprintable()):
        raise ValueError(f"username: {username!r} is not a user name")


def _secret_bytes(secret: str) -> bytes:
    """The decoded secret; ValueError unless it is canonical unpadded base32 of >= 128 bits."""
    if not isinstance(secret, str) or _BASE32.fullmatch(secret) is None:
        raise ValueError("the TOTP secret is not upper-case unpadded base32")
    padded = secret + "=" * (-len(secret) % 8)
    try:
        raw = base64.b32decode(padded)
    except binascii.Error as error:
        raise ValueError("the TOTP secret is not valid base32") from error
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"the TOTP secret is shorter than {MIN_SECRET_BYTES * 8} bits")
    return raw


def _totp(secret: str) -> pyotp.TOTP:
    _secret_bytes(secret)
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def provisioning_uri(secret: str, tenant: str, username: str) -> str:
    """The Key URI Format link an authenticator app reads; label `Sekimori:<tenant>:<username>`."""
    _check_account(tenant, username)
    return _totp(secret).provisioning_uri(name=f"{tenant}:{username}", issuer_name=ISSUER)


def qr_text(data: str, *, invert: bool = True) -> str:
    """`data` as a QR code drawn with half-block characters, two modules a line.

    `invert=True` draws the light modules and the quiet zone, which is right for the usual
    light-on-dark terminal; pass False for dark-on-light. Error correction M (15 %) survives
    the odd mis-rendered glyph while keeping a 32-character-secret URI small (about 41 columns).
    """
    code = qrcode.QRCode(error_correction=qrcode.ERROR_CORRECT_M, border=2)
    code.add_data(data)
    code.make(fit=True)
    out = io.StringIO()
    code.print_ascii(out=out, invert=invert)
    return out.getvalue()


def enrol(secret: str, tenant: str, username: str) -> TotpEnrolment:
    """What to show a user enrolling `secret` (from `new_secret()`); ValueError on bad input."""
    uri = provisioning_uri(secret, tenant, username)
    return TotpEnrolment(secret=secret, uri=uri, qr_text=qr_text(uri))


# -- verification -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TotpState:
    """What the broker keeps per user between attempts; a new enrolment starts at `TotpState()`."""

    last_accepted_step: int = -1                 # -1: no code accepted yet
    failure_times: tuple[float, ...] = ()        # recent failures, oldest first (<= MAX_FAILURES)
    consecutive_failures: int = 0                # since the last accepted code


@dataclass(frozen=True, slots=True)
class TotpOutcome:
    accepted: bool
    reason: Reason
    step: int | None = None                # the time-step the accepted code belongs to
    retry_after_seconds: float = 0.0       # > 0 with totp-rate-limited
    detail: str = ""

    @property
    def decision(self) -> Decision:
        if self.accepted:
            return allow(self.reason)
        status = 429 if self.reason is Reason.TOTP_RATE_LIMITED else 401
        if self.reason is Reason.INTERNAL_ERROR:
            status = 500
        return deny(self.reason, status=status, detail=self.detail)


def _refused(reason: Reason, detail: str = "", retry_after_seconds: float = 0.0) -> TotpOutcome:
    return TotpOutcome(False, reason, retry_after_seconds=retry_after_seconds, detail=detail)


def _failed(state: TotpState, recent: tuple[float, ...], now: float) -> TotpState:
    return TotpState(last_accepted_step=state.last_accepted_step,
                     failure_times=(*recent, now)[-MAX_FAILURES:],
                     consecutive_failures=state.consecutive_failures + 1)


def verify_code(secret: str, code: str, now: float,
                state: TotpState) -> tuple[TotpOutcome, TotpState]:
    """Check `code` for `secret` at `now` against `state`; never raises.

    Returns the outcome and the state to store. The order is fixed: lockout, rate limit,
    format, then the code; a refused-by-limit attempt does not compute any HMAC, so it tells a
    guesser nothing.
    """
    if (isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now)
            or not 0 <= now < _LAST_TIMESTAMP):
        return _refused(Reason.INTERNAL_ERROR, "now is not a usable time"), state
    try:
        totp = _totp(secret)
    except ValueError as error:
        return _refused(Reason.INTERNAL_ERROR, str(error)), state

    if state.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
        return _refused(Reason.TOTP_LOCKED), state
    recent = tuple(t for t in state.failure_times if now - t < FAILURE_WINDOW_SECONDS)
    pruned = replace(state, failure_times=recent)
    if len(recent) >= MAX_FAILURES:
        retry_after = recent[-MAX_FAILURES] + FAILURE_WINDOW_SECONDS - now
        return _refused(Reason.TOTP_RATE_LIMITED, retry_after_seconds=retry_after), pruned
    # fullmatch on str: "$" would let "123456\n" through, and isdigit() would accept "１２３４５６".
    if not isinstance(code, str) or _CODE.fullmatch(code) is None:
        return _refused(Reason.TOTP_MALFORMED), pruned

    # RFC 6238 §4.2: T = floor((now - T0) / X) with T0 = 0. Computed here rather than with
    # pyotp's `timecode`, which accepts only datetimes in older pyotp releases.
    current = int(now) // STEP_SECONDS
    candidates = [step for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1)
                  if step >= 0]
    # Compare against every candidate, without stopping at the first match, in constant time.
    matched = [step for step, ok in
               ((step, hmac.compare_digest(code, totp.generate_otp(step))) for step in candidates)
               if ok]
    if matched and max(matched) > state.last_accepted_step:
        step = max(matched)
        return (TotpOutcome(True, Reason.TOTP_ACCEPTED, step=step),
                TotpState(last_accepted_step=step))
    if matched:
        return _refused(Reason.TOTP_REPLAYED), _failed(state, recent, now)
    return _refused(Reason.TOTP_INVALID), _failed(state, recent, now)


# -- secrets at rest ----------------------------------------------------------------------------

def new_seal_nonce() -> bytes:
    """SHELL: a fresh random 96-bit GCM nonce from the OS CSPRNG; one per `seal_secret` call."""
    return os.urandom(SEAL_NONCE_BYTES)


def _associated_data(tenant: str, username: str) -> bytes:
    # Length-prefixed, so ("ab", "c") and ("a", "bc") can never produce the same bytes.
    parts = [_SEAL_CONTEXT, tenant.encode("utf-8"), username.encode("utf-8")]
    return b"".join(struct.pack(">H", len(part)) + part for part in parts)


def _aead(key: bytes) -> AESGCM:
    if not isinstance(key, bytes) or len(key) != SEAL_KEY_BYTES:
        raise SealError(f"the TOTP sealing key must be {SEAL_KEY_BYTES} bytes")
    return AESGCM(key)


def seal_secret(secret: str, key: bytes, tenant: str, username: str, nonce: bytes) -> bytes:
    """Encrypt `secret` for (tenant, username): version byte, nonce, AES-256-GCM ciphertext+tag.

    `nonce` must be fresh for every call under the same key (pass `new_seal_nonce()`): a
    repeated GCM nonce leaks the authentication key. ValueError on a bad secret or account.
    """
    _secret_bytes(secret)
    _check_account(tenant, username)
    if not isinstance(nonce, bytes) or len(nonce) != SEAL_NONCE_BYTES:
        raise SealError(f"the nonce must be {SEAL_NONCE_BYTES} bytes")
    sealed = _aead(key).encrypt(nonce, secret.encode("ascii"),
                                _SEAL_VERSION + _associated_data(tenant, username))
    return _SEAL_VERSION + nonce + sealed


def open_secret(blob: bytes, key: bytes, tenant: str, username: str) -> str:
    """The secret sealed in `blob` for (tenant, username); SealError for anything else."""
    if not isinstance(blob, bytes):
        raise SealError("the sealed TOTP secret is not bytes")
    if len(blob) < 1 + SEAL_NONCE_BYTES + 16 or blob[:1] != _SEAL_VERSION:
        raise SealError("the sealed TOTP secret is truncated or of an unknown version")
    try:
        _check_account(tenant, username)
    except ValueError as error:
        raise SealError(f"cannot open a TOTP secret for this account: {error}") from None
    nonce, sealed = blob[1:1 + SEAL_NONCE_BYTES], blob[1 + SEAL_NONCE_BYTES:]
    try:
        plain = _aead(key).decrypt(nonce, sealed,
                                   _SEAL_VERSION + _associated_data(tenant, username))
    except InvalidTag:
        raise SealError("the sealed TOTP secret does not open with this key for this user "
                        "(tampered, another key, or another user's secret)") from None
    try:
        secret = plain.decode("ascii")
        _secret_bytes(secret)
    except (UnicodeDecodeError, ValueError):
        raise SealError("the sealed TOTP secret holds no valid secret") from None
    return secret
