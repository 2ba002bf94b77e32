"""A posture report as the agent sends it: the facts, signed with the device key (JWS ES256).

Pure: the key, the sequence number and `now` are passed in. The broker verifies the signature
with the device certificate of the tunnel the report arrives on (broker/posture_report.py), so
a report cannot be forged or carried to another device; `seq` only grows (kept across restarts
in the agent's folder), so a report cannot be replayed; `iat` bounds its age.
"""

from __future__ import annotations

import json
from typing import Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from ztcore.posture import PostureFacts

REPORT_TYPE: Final = "sekimori-posture+jwt"
ALGORITHM: Final = "ES256"


def sign_report(key: EllipticCurvePrivateKey, device_id: str, tenant: str, seq: int, now: float,
                facts: PostureFacts) -> bytes:
    payload = {"dev": device_id, "tid": tenant, "seq": seq, "iat": now,
               "facts": facts.to_json_dict()}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return jwt.PyJWS().encode(body, key, algorithm=ALGORITHM, headers={"typ": REPORT_TYPE}).encode()


def same_facts(a: PostureFacts | None, b: PostureFacts) -> bool:
    """Whether two collections found the same machine state (the time of collection aside):
    a change is reported at once, not at the next interval."""
    if a is None:
        return False
    left, right = a.to_json_dict(), b.to_json_dict()
    left.pop("collected_at"), right.pop("collected_at")
    return left == right
