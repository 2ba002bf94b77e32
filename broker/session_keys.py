"""Session-token signing keys: the Ed25519 key ring (the active key, and rotated-out or other
brokers' keys still accepted until a time), and RFC 7638 key ids. Pure but for the one shell
function that makes a key."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ztcore.errors import ConfigError

ALGORITHM: Final = "EdDSA"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def jwk_thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of an Ed25519 public key (members crv, kty, x; RFC 8037 §2)."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw_public(key))}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def new_session_key() -> Ed25519PrivateKey:
    """SHELL: a fresh Ed25519 signing key from the OS CSPRNG."""
    return Ed25519PrivateKey.generate()


# -- keys ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PreviousKey:
    """A rotated-out key: tokens it signed are still accepted until `accept_until`."""

    kid: str
    public_key: Ed25519PublicKey
    accept_until: float


@dataclass(frozen=True)
class KeyRing:
    """The active signing key and the previous keys still accepted for verification."""

    active: Ed25519PrivateKey
    previous: tuple[PreviousKey, ...] = ()
    active_kid: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "active_kid", jwk_thumbprint(self.active.public_key()))
        kids = [self.active_kid, *(key.kid for key in self.previous)]
        if len(set(kids)) != len(kids):
            raise ConfigError("session keys: the same key appears twice in the key ring")

    def rotate(self, new_key: Ed25519PrivateKey, now: float, grace_seconds: float) -> KeyRing:
        """Sign with `new_key` from now on; accept the old key's tokens for `grace_seconds` more.

        The grace must cover the longest token lifetime plus the leeway, or sessions issued
        just before the rotation are cut short. Keys past their grace are dropped.
        """
        if not math.isfinite(grace_seconds) or grace_seconds < 0:
            raise ConfigError("session keys: grace_seconds must be a finite, non-negative number")
        retired = PreviousKey(self.active_kid, self.active.public_key(), now + grace_seconds)
        kept = tuple(key for key in self.previous if key.accept_until > now)
        return KeyRing(new_key, (retired, *kept))

    def with_peer_keys(self, peers: Iterable[PreviousKey]) -> KeyRing:
        """This ring plus the published keys of the other brokers sharing the store (a token
        issued by one broker is good at every other); keys it already holds are kept as they are."""
        known = {self.active_kid, *(key.kid for key in self.previous)}
        extra: dict[str, PreviousKey] = {}
        for key in peers:
            if key.kid not in known:
                extra.setdefault(key.kid, key)
        return KeyRing(self.active, (*self.previous, *extra.values()))

    def verification_key(self, kid: str, now: float) -> Ed25519PublicKey | None:
        if kid == self.active_kid:
            return self.active.public_key()
        for key in self.previous:
            if key.kid == kid and now < key.accept_until:
                return key.public_key
        return None

    def jwks(self, now: float) -> dict[str, list[dict[str, str]]]:
        """The public keys accepted at `now`, as an RFC 7517 JWK Set."""
        keys = [(self.active_kid, self.active.public_key())]
        keys += [(key.kid, key.public_key) for key in self.previous if now < key.accept_until]
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(_raw_public(public)),
                          "kid": kid, "alg": ALGORITHM, "use": "sig"} for kid, public in keys]}
