"""Checking the rules a broker sent (agent side of broker/agent_rules.py). Pure.

A rules document is accepted only if it is signed with the key of a certificate that the
pinned broker CA issued for a server (EKU serverAuth: a device certificate from the same CA
cannot sign rules), names this device and tenant, and is not older than the rules in force.
The certificate's validity period is checked when the rules arrive, not when the agent reads
its cached copy back from disk, so a laptop kept offline past the broker certificate's end
still breaks out.
"""

from __future__ import annotations

import base64
import json
from typing import Final

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from ztcore.agent_rules import RULES_TYPE, AgentRules, parse_agent_rules
from ztcore.errors import ZTError

ALGORITHMS: Final = ["ES256"]


class RulesError(ZTError):
    """The rules were refused; the message says why. The rules in force stay."""


def verify_rules(token: str, ca: x509.Certificate, tenant_id: str, device_id: str,
                 now: float | None) -> AgentRules:
    """The rules in `token`, or RulesError. `now=None` skips the certificate's validity period
    (a cached copy read back from disk)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise RulesError(f"not a signed rules document: {exc}") from None
    if header.get("typ") != RULES_TYPE or header.get("alg") not in ALGORITHMS:
        raise RulesError(f"not a rules document (typ {header.get('typ')!r}, "
                         f"alg {header.get('alg')!r})")
    key = _signer(header.get("x5c"), ca, now).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise RulesError("the rules were signed with a key that is not an EC key")
    try:
        body = jwt.PyJWS().decode(token, key, algorithms=ALGORITHMS)
        claims = json.loads(body)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise RulesError(f"bad rules signature or body: {exc}") from None
    if not isinstance(claims, dict):
        raise RulesError("the rules body is not an object")
    try:
        rules = parse_agent_rules(claims.get("rules"))
    except ZTError as exc:
        raise RulesError(f"invalid rules: {exc}") from None
    if claims.get("sub") != device_id or rules.device_id != device_id:
        raise RulesError(f"the rules are for device {claims.get('sub')!r}, not {device_id!r}")
    if claims.get("tid") != tenant_id or rules.tenant_id != tenant_id:
        raise RulesError(f"the rules are for tenant {claims.get('tid')!r}, not {tenant_id!r}")
    return rules


def _signer(x5c: object, ca: x509.Certificate, now: float | None) -> x509.Certificate:
    if not isinstance(x5c, list) or not x5c or not isinstance(x5c[0], str):
        raise RulesError("the rules carry no signing certificate (x5c)")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise RulesError(f"the rules were not signed by this broker's CA: {exc}") from None
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or ExtendedKeyUsageOID.SERVER_AUTH not in usage:
        raise RulesError("the rules were signed by a certificate that is not a broker's")
    if now is not None and not (cert.not_valid_before_utc.timestamp() - 300 <= now
                                <= cert.not_valid_after_utc.timestamp()):
        raise RulesError("the broker certificate that signed the rules is not valid now")
    return cert


def newer(candidate: AgentRules, current: AgentRules | None) -> bool:
    """Rules never go back in time (an old signed copy cannot be replayed over new ones)."""
    return current is None or candidate.issued_at >= current.issued_at
