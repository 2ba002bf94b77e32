"""Checking a posture report that arrived over a device's tunnel (agent/posture_report.py).

Pure: the report bytes, the device certificate's public key, the device's identity and `now`
in; the verified report or a deny out. Replays are refused by the caller against the stored
sequence number (one conditional write; see broker/runtime/posture_store.py).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from ztcore.decision import Decision, deny
from ztcore.posture import PostureError, PostureFacts, facts_from_json
from ztcore.reasons import Reason

REPORT_TYPE: Final = "sekimori-posture+jwt"
ALGORITHM: Final = "ES256"
MAX_REPORT_BYTES: Final = 64 * 1024
MAX_SKEW_SECONDS: Final = 120.0
_COMPACT: Final = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_JWS: Final = jwt.PyJWS()


@dataclass(frozen=True, slots=True)
class PostureReport:
    device_id: str
    tenant: str
    seq: int
    issued_at: float
    facts: PostureFacts


def _invalid(detail: str) -> Decision:
    return deny(Reason.POSTURE_REPORT_INVALID, status=400, detail=detail)


def verify_report(token: bytes, public_key: Any, device_id: str, tenant: str, now: float, *,
                  max_age_seconds: float) -> PostureReport | Decision:
    """The report, if it is signed by this device's key, names this device, is not older than
    `max_age_seconds` and not from the future; else the deny (never raises)."""
    if len(token) > MAX_REPORT_BYTES or _COMPACT.fullmatch(token.strip()) is None:
        return _invalid(f"not a compact JWS of at most {MAX_REPORT_BYTES} bytes")
    token = token.strip()
    if not isinstance(public_key, EllipticCurvePublicKey):
        return _invalid("the device certificate's key cannot verify ES256")
    try:
        header = _JWS.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        return _invalid("the report header is not readable")
    if set(header) != {"alg", "typ"} or header.get("alg") != ALGORITHM \
            or header.get("typ") != REPORT_TYPE:
        return _invalid(f"the report header must be exactly alg {ALGORITHM} and typ {REPORT_TYPE}")
    try:
        payload = _JWS.decode_complete(token, public_key, algorithms=[ALGORITHM])["payload"]
    except (jwt.PyJWTError, ValueError, TypeError):
        return _invalid("the signature does not verify with this device's certificate")
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        return _invalid("the report is not JSON")
    if not isinstance(claims, dict):
        return _invalid("the report is not a JSON object")
    if claims.get("dev") != device_id or claims.get("tid") != tenant:
        return _invalid(f"the report names device {claims.get('dev')!r}, not this tunnel's")
    seq, issued = claims.get("seq"), claims.get("iat")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**62:
        return _invalid("seq: expected a non-negative whole number")
    if isinstance(issued, bool) or not isinstance(issued, int | float) or not math.isfinite(issued):
        return _invalid("iat: expected a time in epoch seconds")
    if issued > now + MAX_SKEW_SECONDS:
        return _invalid(f"the report is dated {issued - now:.0f} s in the future (device clock?)")
    if issued < now - max_age_seconds:
        return deny(Reason.POSTURE_REPORT_TOO_OLD, status=400,
                    detail=f"made {now - issued:.0f} s ago, at most {max_age_seconds:.0f} s allowed")
    try:
        facts = facts_from_json(claims.get("facts", {}))
    except PostureError as exc:
        return _invalid(f"facts.{exc}")
    except TypeError as exc:
        return _invalid(f"facts: {exc}")
    return PostureReport(device_id, tenant, seq, float(issued), facts)
