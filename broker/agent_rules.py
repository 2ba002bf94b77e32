"""Signing the rules a broker hands an agent (JWS ES256 with the broker's TLS key, the
certificate chain in `x5c`), and the per-device secret behind override codes. Pure: keys,
certificates and `now` are passed in; the agent's side is agent/rules.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from ztcore.agent_rules import RULES_TYPE, AgentRules

ALGORITHM: Final = "ES256"


def sign_rules(rules: AgentRules, key: EllipticCurvePrivateKey,
               chain: Sequence[x509.Certificate]) -> str:
    """A compact JWS over the rules; `chain` is the broker's certificate first, then its CA."""
    claims = {"iss": "sekimori-broker", "sub": rules.device_id, "tid": rules.tenant_id,
              "iat": rules.issued_at, "ver": rules.version, "rules": rules.to_json_dict()}
    body = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    x5c = [base64.b64encode(cert.public_bytes(Encoding.DER)).decode() for cert in chain]
    return jwt.PyJWS().encode(body, key, algorithm=ALGORITHM,
                              headers={"typ": RULES_TYPE, "x5c": x5c})
