"""Shared values of the OIDC relying-party tests: a fixed clock, one provider's settings and a
pending login."""

from __future__ import annotations

from typing import Any

from idp_bridge.oidc import OidcProviderConfig, PendingLogin

NOW = 1_800_000_000.0
ISSUER = "https://login.example.test/tenant-1/v2.0"
RAW: dict[str, Any] = {"name": "entra", "issuer": ISSUER, "client_id": "gateway",
                       "client_secret": "gateway-secret",
                       "redirect_uri": "https://gw.city.example.lg.jp/oidc/callback"}
CONFIG = OidcProviderConfig(**{**RAW, "group_map": {"g-tax": "tax-dept"},
                               "mfa_acr": frozenset({"urn:sekimori:mfa"})})
PENDING = PendingLogin(idp="entra", state="S" * 43, nonce="N" * 43, code_verifier="V" * 64,
                       redirect_uri=CONFIG.redirect_uri, return_to="/apps", device_id="dev-1",
                       created_at=NOW - 30)
DROP = object()


def metadata_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": ISSUER, "authorization_endpoint": "https://login.example.test/authorize",
        "token_endpoint": "https://login.example.test/token", "jwks_uri": "https://keys.example.test/jwks",
        "id_token_signing_alg_values_supported": ["HS256", "RS256", "ES256"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "response_types_supported": ["code", "id_token"],
        "authorization_response_iss_parameter_supported": True}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": "gateway", "sub": "00u-alice", "exp": NOW + 300, "iat": NOW - 10,
        "auth_time": NOW - 20, "nonce": "N" * 43, "preferred_username": "alice",
        "email": "alice@city.example.lg.jp", "email_verified": True, "name": "Alice Tanaka",
        "groups": ["g-tax", "all-staff"], "amr": ["pwd", "otp"]}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}
