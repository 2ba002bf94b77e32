"""Shared keys, a fixed clock and hand-made token tools for the session-token tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.sessions import (
    KeyRing,
    SessionAuthority,
    SessionConfig,
    SessionDecision,
    thumbprint_of,
)
from ztcore.decision import Action
from ztcore.principal import Principal
from ztcore.reasons import Reason

NOW = 1_750_000_000.0
KEY_A = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_B = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEY_C = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
CONFIG = SessionConfig(issuer="https://broker.pref.example.lg.jp", audience="sekimori:tunnel")
AUTHORITY = SessionAuthority(CONFIG, KeyRing(KEY_A))
DEVICE = thumbprint_of(b"DER of the device certificate of laptop-17")
OTHER_DEVICE = thumbprint_of(b"DER of the device certificate of laptop-18")
LIFETIME = 600
LEEWAY = CONFIG.leeway_seconds
NO_REVOCATIONS: frozenset[str] = frozenset()


def principal(**changes: Any) -> Principal:
    fields: dict[str, Any] = dict(
        tenant="kita-city", subject="S-1-5-21-1004336348-1177238915-682003330-1105",
        username="tanaka", display_name="田中　花子", email="tanaka@city.kita.lg.jp",
        groups=frozenset({"CN=住民課,OU=Groups,DC=kita,DC=local", "telework"}),
        auth_methods=frozenset({"pwd", "otp"}), auth_time=NOW - 60.5, mfa=True,
        idp="ad:kita-dc")
    fields.update(changes)
    return Principal(**fields)


PRINCIPAL = principal()
TOKEN = AUTHORITY.issue(PRINCIPAL, DEVICE, NOW, LIFETIME, jti="jti-1")


def verify(token: str | bytes, now: float = NOW, device: str = DEVICE,
           revoked: frozenset[str] = NO_REVOCATIONS, max_mfa_age: int | None = None,
           authority: SessionAuthority = AUTHORITY) -> SessionDecision:
    return authority.verify(token, device, now, revoked, max_mfa_age)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload))


def forge(header: dict[str, Any], claims: dict[str, Any],
          sign: Callable[[bytes], bytes] | None) -> str:
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()))
    return signing_input + "." + (b64(sign(signing_input.encode())) if sign else "")


def ed25519(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    return key.sign


CLAIMS = parts(TOKEN)[1]
KID_A = AUTHORITY.ring.active_kid


def assert_invalid(decision: SessionDecision) -> None:
    assert decision.decision.action is Action.DENY
    assert decision.reasons == (Reason.SESSION_INVALID,)
    assert decision.principal is None and decision.decision.status == 401
