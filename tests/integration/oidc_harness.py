"""Shared pieces of the OIDC integration tests: two real providers (A and B, each with its own
keys), relying-party configs for them, a transport that records what the relying party fetched,
and a headless login. Import the fixtures into a test module to use them:

    from tests.integration.oidc_harness import oidc_a, oidc_b, rp_config, relying_party, login
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from idp_bridge.oidc import OidcOutcome, OidcProviderConfig, PendingLogin
from idp_bridge.runtime.oidc_client import OidcRelyingParty
from tests.peers import oidc_provider as peer

TENANT = "test-city"
SCOPES = ("openid", "email", "profile", "groups")
GROUP_MAP = {"tax-clerks": "zeimu-tantou"}


def require_peer() -> None:
    why = peer.unavailable()
    if why is not None:
        pytest.skip(why)


def start(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> peer.OidcProvider:
    require_peer()
    return peer.start_provider(tmp_path_factory.mktemp(f"oidc-{name}"), **kwargs)


@pytest.fixture(scope="module")
def oidc_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peer.OidcProvider]:
    """Provider A on a free port, accepting peer.DEFAULT_REDIRECT_URIS."""
    provider = start(tmp_path_factory, "a")
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def oidc_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peer.OidcProvider]:
    """Provider B: another issuer and other keys, under the same key ids as A's."""
    provider = start(tmp_path_factory, "b")
    yield provider
    provider.stop()


def rp_config(provider: peer.OidcProvider, *, name: str = "city-idp",
              client_id: str = peer.CONFIDENTIAL_CLIENT, redirect_uri: str = peer.GATEWAY_REDIRECT_URI,
              **changes: Any) -> OidcProviderConfig:
    values: dict[str, Any] = {
        "name": name, "issuer": provider.issuer, "client_id": client_id,
        "client_secret": None if client_id == peer.PUBLIC_CLIENT else peer.CLIENT_SECRET,
        "redirect_uri": redirect_uri, "scopes": SCOPES, "group_map": GROUP_MAP}
    if client_id == peer.POST_CLIENT:
        values["token_endpoint_auth_method"] = "client_secret_post"
    values.update(changes)
    return OidcProviderConfig(**values)


@dataclass
class RecordingTransport(httpx.BaseTransport):
    """A real HTTP transport that records every request URL the relying party sends."""

    inner: httpx.HTTPTransport = field(default_factory=lambda: httpx.HTTPTransport(retries=0))
    urls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.urls.append(str(request.url))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for url in self.urls if httpx.URL(url).path == path)


def relying_party(provider: peer.OidcProvider, transport: httpx.BaseTransport | None = None,
                  **kwargs: Any) -> OidcRelyingParty:
    rp_kwargs = {k: kwargs.pop(k) for k in ("clock", "timeout_seconds", "jwks_refresh_min_interval_seconds",
                                            "cache_ttl_seconds") if k in kwargs}
    return OidcRelyingParty(rp_config(provider, **kwargs), TENANT, transport=transport, **rp_kwargs)


def begin(rp: OidcRelyingParty, device_id: str = "dev-1",
          return_to: str | None = "/apps") -> tuple[str, PendingLogin]:
    begun = rp.begin(device_id, return_to)
    assert not isinstance(begun, OidcOutcome), begun.decision
    return begun


def login(rp: OidcRelyingParty, username: str, *, device_id: str = "dev-1",
          return_to: str | None = "/apps") -> tuple[PendingLogin, dict[str, str]]:
    """Begin at `rp`, log in at the provider as `username` without a browser; the pending login
    and the query of the redirect back (not yet completed)."""
    url, pending = begin(rp, device_id, return_to)
    params = peer.headless_login(url, username, peer.USERS[username]["password"], rp.config.redirect_uri)
    return pending, params
