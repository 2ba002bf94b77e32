"""Enrolment codes and CLI durations: formatting, normalising and hashing, with no I/O.

This module owns the shape of an enrolment code (80 random bits written as Crockford base32 in
four groups, `XXXX-XXXX-XXXX-XXXX`), how a code typed by a person is brought back to that
canonical form, and how a code is hashed for storage. It also parses the TTLs given on the
command line ("24h", "30m").

It must not read the clock, draw random bytes or touch the store: the caller passes the random
bytes in (`secrets.token_bytes(CODE_BYTES)`) and compares hashes through the store.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Final

# Crockford base32 (https://www.crockford.com/base32.html): no I, L, O or U, so a code read out
# over the telephone or copied from paper cannot be mistaken for another one.
ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_BYTES: Final = 10
CODE_SYMBOLS: Final = 16  # 80 bits / 5 bits per symbol, exactly: no padding bits.
GROUP_SYMBOLS: Final = 4
DEFAULT_CODE_TTL_SECONDS: Final = 24 * 3600
MAX_DURATION_SECONDS: Final = 3650 * 24 * 3600

_ALPHABET_SET: Final = frozenset(ALPHABET)
# Crockford decoding: O reads as zero, I and L read as one.
_CONFUSABLES: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Dash-like characters people type instead of "-". NFKC already folds the full-width hyphen
# (U+FF0D) and the ideographic space, but not these; "ー" (U+30FC, katakana prolonged sound
# mark) is what a Japanese IME often produces for "-".
_DASHES: Final = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70")
_DURATION: Final = re.compile(r"([0-9]+)([smhd]?)")
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def format_code(random_bytes: bytes) -> str:
    """Write exactly 10 random bytes as a grouped Crockford base32 code."""
    if len(random_bytes) != CODE_BYTES:
        raise ValueError(
            f"an enrolment code needs exactly {CODE_BYTES} random bytes, got {len(random_bytes)}")
    value = int.from_bytes(random_bytes, "big")
    symbols = [
        ALPHABET[(value >> (5 * (CODE_SYMBOLS - 1 - i))) & 0x1F] for i in range(CODE_SYMBOLS)
    ]
    return _group("".join(symbols))


def normalise_code(text: str) -> str | None:
    """Bring a code as a person typed it to canonical form, or None if it cannot be a code.

    Accepts lower case, spaces, missing or extra dashes, full-width characters and the Crockford
    confusables (O for 0, I or L for 1). Anything else (a U, punctuation, the wrong number of
    symbols) gives None.
    """
    folded = unicodedata.normalize("NFKC", text)
    kept = "".join(ch for ch in folded if not ch.isspace() and ch not in _DASHES)
    symbols = kept.upper().translate(_CONFUSABLES)
    if len(symbols) != CODE_SYMBOLS or not set(symbols) <= _ALPHABET_SET:
        return None
    return _group(symbols)


def hash_code(code: str) -> str:
    """The sha256 hex digest of a canonical code, as kept in the store.

    No salt and no slow hash: a code carries 80 random bits, so a stolen table of hashes cannot
    be reversed by guessing, and an unsalted hash lets the store find the row by an index lookup.
    """
    if normalise_code(code) != code:
        # Hashing a code exactly as typed would make "abcd-..." and "ABCD-..." different codes.
        raise ValueError("hash_code needs a canonical code; call normalise_code first")
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def parse_duration(text: str) -> int:
    """Seconds in a CLI duration: "90s", "30m", "24h", "7d", or a bare number of seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a whole number with an optional unit "
            "s, m, h or d, e.g. '30m', '24h', '7d' or '3600'")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"invalid duration {text!r}: must be at most 3650d")
    return seconds


def _group(symbols: str) -> str:
    return "-".join(
        symbols[i:i + GROUP_SYMBOLS] for i in range(0, len(symbols), GROUP_SYMBOLS))
