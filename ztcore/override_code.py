"""Admin override codes: a short code, read out over the phone, that lifts one device's enforcement
for a limited time (a support case), verified by the agent OFFLINE.

The broker and the device's agent share a per-device secret (`derive_device_secret`, HKDF from a
broker master key, bound to the tenant and the device). A code is 100 bits written as 20 Crockford
base32 symbols in groups of four (`XXXX-XXXX-XXXX-XXXX-XXXX`, 24 characters):

    bits  0-15  nonce (16 bits; first, so that codes issued close together look different)
    bits 16-40  issue minute, counted from 2024-01-01T00:00Z (25 bits: until 2087)
    bits 41-51  duration in minutes, minus one (11 bits; 1..1440 allowed)
    bits 52-99  HMAC-SHA256(secret, domain | payload | device id), truncated to 48 bits
(bit 0 is the most significant: the first symbol typed.)

The payload (time, duration, nonce) is readable by anyone; only the MAC is secret, and it binds
the code to one device. The code id (`code_id`) is a digest of the payload, so it can be logged
and shown without revealing the code. Re-use is refused by the agent's bypass state
(ztcore/bypass.py), which remembers code ids; this module keeps no state.

This module must not read the clock or draw random numbers: `now` and the nonce are parameters.
A future format must change `_MAC_DOMAIN`, so an old agent rejects a new code as invalid.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ztcore.errors import ConfigError, LocalProtocolError, ZTError
from ztcore.tenants import TENANT_ID_RULE, is_tenant_id

SECRET_BYTES: Final = 32
NONCE_BYTES: Final = 2
MAC_BITS: Final = 48
MIN_MINUTES: Final = 1
MAX_MINUTES: Final = 1440
CLOCK_SKEW_SECONDS: Final = 300        # a code issued up to 5 minutes "in the future" is accepted
CODE_SYMBOLS: Final = 20
CODE_LENGTH: Final = 24                # with the hyphens
EPOCH: Final = 1_704_067_200           # 2024-01-01T00:00:00Z: minutes are counted from here

ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"   # Crockford: no I, L, O, U
_MINUTE_BITS: Final = 25
_DURATION_BITS: Final = 11
_NONCE_BITS: Final = 8 * NONCE_BYTES
_PAYLOAD_BITS: Final = _MINUTE_BITS + _DURATION_BITS + _NONCE_BITS   # 52
_PAYLOAD_BYTES: Final = (_PAYLOAD_BITS + 7) // 8
_MAX_MINUTE: Final = (1 << _MINUTE_BITS) - 1
_MAC_DOMAIN: Final = b"sekimori override-code v1\x00"
_ID_DOMAIN: Final = b"sekimori override-code-id v1\x00"
_HKDF_INFO: Final = b"sekimori override-code secret v1\x00"
_MAX_INPUT: Final = 100                # characters accepted before normalising (NFKC can expand)
_MAX_DEVICE_ID: Final = 256
# Separators a person may type: ASCII and Unicode dashes, and the katakana long-vowel mark that a
# Japanese input method produces for "-".
_DASHES: Final = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d\uff70")
_DECODE: Final[dict[str, int]] = {
    **{ch: i for i, ch in enumerate(ALPHABET)},
    **{ch.lower(): i for i, ch in enumerate(ALPHABET)},
    "O": 0, "o": 0, "I": 1, "i": 1, "L": 1, "l": 1,
}


class OverrideCodeReason(str, Enum):
    MALFORMED = "override-code-malformed"
    INVALID = "override-code-invalid"
    EXPIRED = "override-code-expired"
    NOT_YET_VALID = "override-code-not-yet-valid"
    DURATION_INVALID = "override-duration-invalid"     # issuing: minutes outside 1..1440


_TEXT: Final[dict[OverrideCodeReason, tuple[str, str]]] = {
    OverrideCodeReason.MALFORMED: (
        "The override code is not in the right form: enter the 20 letters and digits you were "
        "given (hyphens and spaces are optional).",
        "解除コードの形式が正しくありません。伝えられた20文字の英数字を入力してください"
        "（ハイフンや空白は省略できます）。"),
    OverrideCodeReason.INVALID: (
        "The override code is not valid for this device. Check the code with your IT department.",
        "解除コードが正しくないか、この端末用のコードではありません。情報システム課に確認してください。"),
    OverrideCodeReason.EXPIRED: (
        "This override code has expired. Ask your IT department for a new code.",
        "この解除コードは有効期限が切れています。情報システム課に新しいコードを依頼してください。"),
    OverrideCodeReason.NOT_YET_VALID: (
        "This override code is not valid yet. Check that this device's clock is correct.",
        "この解除コードはまだ有効になっていません。端末の時計が正しいか確認してください。"),
    OverrideCodeReason.DURATION_INVALID: (
        f"An override lasts from {MIN_MINUTES} to {MAX_MINUTES} minutes (24 hours).",
        f"解除コードの有効時間は{MIN_MINUTES}分から{MAX_MINUTES}分（24時間）の間で指定してください。"),
}


class OverrideCodeError(ZTError):
    """An override code was refused; `reason` is kebab-case, str(exc) is the English sentence."""

    def __init__(self, reason: OverrideCodeReason) -> None:
        self.reason = reason
        self.message_en, self.message_ja = _TEXT[reason]
        super().__init__(self.message_en)


@dataclass(frozen=True, slots=True)
class OverrideCode:
    """What the broker gives the admin to read out: `code`, plus the facts for the audit log."""
    code: str              # "7K3D-M2XA-9FQ1-..." (24 characters)
    code_id: str           # 12 hex digits; safe to log, does not reveal the code
    device_id: str
    issued_at: float       # the issue minute (now, rounded down to a whole minute)
    expires_at: float
    minutes: int


@dataclass(frozen=True, slots=True)
class OverrideGrant:
    """A verified code: enforcement may be lifted until `expires_at`."""
    code_id: str
    issued_at: float
    expires_at: float
    minutes: int

    def __post_init__(self) -> None:
        if not isinstance(self.code_id, str) or len(self.code_id) != 12 \
                or any(ch not in "0123456789abcdef" for ch in self.code_id):
            raise ConfigError("override.code_id: expected 12 lowercase hex digits")
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, int) \
                or not MIN_MINUTES <= self.minutes <= MAX_MINUTES:
            raise ConfigError(f"override.minutes: expected {MIN_MINUTES}-{MAX_MINUTES}")
        for name in ("issued_at", "expires_at"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"override.{name}: expected a time in epoch seconds")
        if self.expires_at != self.issued_at + 60 * self.minutes:
            raise ConfigError("override.expires_at: must be issued_at plus the minutes")

    def to_json_dict(self) -> dict[str, Any]:
        return {"code_id": self.code_id, "issued_at": self.issued_at,
                "expires_at": self.expires_at, "minutes": self.minutes}

    @staticmethod
    def parse(raw: object) -> OverrideGrant:
        """From `to_json_dict`'s form; ConfigError naming the bad field."""
        if not isinstance(raw, Mapping):
            raise ConfigError("override: expected an object")
        names = {"code_id", "issued_at", "expires_at", "minutes"}
        unknown, missing = sorted(str(k) for k in set(raw) - names), sorted(names - set(raw))
        if unknown:
            raise ConfigError(f"override.{unknown[0]}: unknown field")
        if missing:
            raise ConfigError(f"override.{missing[0]}: missing")
        return OverrideGrant(code_id=raw["code_id"], issued_at=raw["issued_at"],
                             expires_at=raw["expires_at"], minutes=raw["minutes"])


def derive_device_secret(master_key: bytes, tenant_id: str, device_id: str) -> bytes:
    """The 32-byte secret one device's agent shares with the broker (HKDF-SHA256, RFC 5869)."""
    if not isinstance(master_key, bytes) or len(master_key) < 32:
        raise ConfigError("override master_key: expected at least 32 bytes")
    if not is_tenant_id(tenant_id):
        raise ConfigError(f"tenant_id: expected {TENANT_ID_RULE}")
    device = _device_bytes(device_id)
    tenant = tenant_id.encode("ascii")
    info = _HKDF_INFO + _prefixed(tenant) + _prefixed(device)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=SECRET_BYTES, salt=None, info=info)
    return hkdf.derive(master_key)


def issue_override_code(secret: bytes, device_id: str, now: float, minutes: int,
                        nonce: bytes) -> OverrideCode:
    """A code valid on `device_id` from the current minute for `minutes` minutes (1..1440).

    `nonce` is NONCE_BYTES random bytes from the caller (secrets.token_bytes(NONCE_BYTES)).
    """
    _check_secret(secret)
    if isinstance(minutes, bool) or not isinstance(minutes, int) \
            or not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise OverrideCodeError(OverrideCodeReason.DURATION_INVALID)
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise LocalProtocolError(f"override nonce: expected {NONCE_BYTES} bytes")
    _check_now(now)
    minute = math.floor((now - EPOCH) / 60)
    if not 0 <= minute <= _MAX_MINUTE:
        raise LocalProtocolError("override code: the clock is outside 2024-2087")
    payload = (int.from_bytes(nonce, "big") << (_MINUTE_BITS + _DURATION_BITS)) \
        | (minute << _DURATION_BITS) | (minutes - 1)
    mac = _mac(secret, device_id, payload)
    value = (payload << MAC_BITS) | int.from_bytes(mac, "big")
    symbols = "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(CODE_SYMBOLS)))
    code = "-".join(symbols[i:i + 4] for i in range(0, CODE_SYMBOLS, 4))
    issued_at = float(EPOCH + 60 * minute)
    return OverrideCode(code=code, code_id=_code_id(payload), device_id=device_id,
                        issued_at=issued_at, expires_at=issued_at + 60 * minutes, minutes=minutes)


def verify_override_code(secret: bytes, device_id: str, code: str, now: float) -> OverrideGrant:
    """The grant `code` carries for this device at `now`, or OverrideCodeError (with `reason`).

    Forgiving of case, spaces, hyphens (also full-width and Japanese ones) and of the Crockford
    confusables O->0, I/L->1. A wrong device and a typo are both `override-code-invalid`.
    """
    _check_secret(secret)
    _check_now(now)
    value = normalise_code(code)
    payload, mac = value >> MAC_BITS, (value & ((1 << MAC_BITS) - 1)).to_bytes(MAC_BITS // 8, "big")
    if not hmac.compare_digest(mac, _mac(secret, device_id, payload)):
        raise OverrideCodeError(OverrideCodeReason.INVALID)
    minute = (payload >> _DURATION_BITS) & _MAX_MINUTE
    minutes = (payload & ((1 << _DURATION_BITS) - 1)) + 1
    if minutes > MAX_MINUTES:   # only a broken issuer can get here: the MAC was good
        raise OverrideCodeError(OverrideCodeReason.MALFORMED)
    issued_at = float(EPOCH + 60 * minute)
    expires_at = issued_at + 60 * minutes
    if issued_at > now + CLOCK_SKEW_SECONDS:
        raise OverrideCodeError(OverrideCodeReason.NOT_YET_VALID)
    if now >= expires_at:
        raise OverrideCodeError(OverrideCodeReason.EXPIRED)
    return OverrideGrant(code_id=_code_id(payload), issued_at=issued_at, expires_at=expires_at,
                         minutes=minutes)


def normalise_code(code: str) -> int:
    """The 100-bit value of a typed code; OverrideCodeError(malformed) if it cannot be one."""
    if not isinstance(code, str) or len(code) > _MAX_INPUT:
        raise OverrideCodeError(OverrideCodeReason.MALFORMED)
    # NFKC folds full-width letters, digits and spaces (typed with a Japanese IME) to ASCII.
    text = unicodedata.normalize("NFKC", code)
    symbols = [ch for ch in text if not ch.isspace() and ch not in _DASHES]
    if len(symbols) != CODE_SYMBOLS or any(ch not in _DECODE for ch in symbols):
        raise OverrideCodeError(OverrideCodeReason.MALFORMED)
    value = 0
    for ch in symbols:
        value = (value << 5) | _DECODE[ch]
    return value


def _mac(secret: bytes, device_id: str, payload: int) -> bytes:
    message = _MAC_DOMAIN + payload.to_bytes(_PAYLOAD_BYTES, "big") + _prefixed(_device_bytes(device_id))
    return hmac.new(secret, message, hashlib.sha256).digest()[:MAC_BITS // 8]


def _prefixed(field: bytes) -> bytes:
    return len(field).to_bytes(2, "big") + field


def _code_id(payload: int) -> str:
    return hashlib.sha256(_ID_DOMAIN + payload.to_bytes(_PAYLOAD_BYTES, "big")).hexdigest()[:12]


def _device_bytes(device_id: str) -> bytes:
    if not isinstance(device_id, str) or not 0 < len(device_id) <= _MAX_DEVICE_ID \
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in device_id):
        raise ConfigError(f"device_id: expected 1-{_MAX_DEVICE_ID} printable characters")
    try:
        return device_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("device_id: not valid Unicode text") from None


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        raise ConfigError(f"override secret: expected {SECRET_BYTES} bytes")


def _check_now(now: float) -> None:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise LocalProtocolError("now: expected a finite time in epoch seconds")
