"""TLS for inspection: the upstream connection with full certificate validation, and the
server contexts holding leaves minted from the inspection CA (cached per host and upstream
certificate).

An upstream whose certificate fails validation gets a deny with the validator's own words
(`certificate has expired`, `Hostname mismatch`, `self-signed certificate`, ...) and no leaf is
ever minted for it: the client never sees a trusted certificate for a site we could not trust.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import ssl
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from swg.tls_leaf import DEFAULT_LEAF_VALIDITY_SECONDS, CaKey, mint_leaf
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason

ALPN = ["h2", "http/1.1"]      # towards the origin
LEAF_ALPN = ["h2", "http/1.1"]  # towards the client


@dataclass
class Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    certificate: x509.Certificate | None
    address: str


def client_context(extra_ca_file: str | None = None) -> ssl.SSLContext:
    """Full validation: the system's trust store (plus an extra CA file, e.g. a municipality's
    own internal CA), host name checked, TLS 1.2 or newer."""
    ctx = ssl.create_default_context()
    if extra_ca_file:
        ctx.load_verify_locations(cafile=extra_ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    return ctx


async def connect_upstream(host: str, port: int, addresses: list[str], ctx: ssl.SSLContext | None,
                           timeout_seconds: float) -> tuple[Decision | None, Upstream | None]:
    """Open the upstream (TLS when `ctx`), trying each address; a certificate failure ends the
    attempt at once (another address of the same name would present the same problem)."""
    last = deny(Reason.UPSTREAM_UNREACHABLE, status=502, detail=f"{host}:{port} has no address")
    for address in addresses:
        try:
            async with asyncio.timeout(timeout_seconds):
                reader, writer = await asyncio.open_connection(
                    address, port, ssl=ctx, server_hostname=host if ctx else None,
                    limit=1024 * 1024)
        except ssl.SSLCertVerificationError as exc:
            return deny(Reason.UPSTREAM_CERTIFICATE_INVALID, status=502,
                        detail=f"{host}: {exc.verify_message or exc.reason or exc}"), None
        except ssl.SSLError as exc:
            return deny(Reason.UPSTREAM_TLS_FAILED, status=502,
                        detail=f"{host}: {exc.reason or exc}"), None
        except TimeoutError:
            last = deny(Reason.UPSTREAM_TIMEOUT, status=504,
                        detail=f"{address} port {port} did not answer")
            continue
        except OSError as exc:
            last = deny(Reason.UPSTREAM_UNREACHABLE, status=502,
                        detail=f"{address} port {port}: {exc.strerror or exc}")
            continue
        cert = None
        if ctx is not None:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if not der:
                writer.close()
                return deny(Reason.UPSTREAM_TLS_FAILED, status=502,
                            detail=f"{host}: no server certificate"), None
            cert = x509.load_der_x509_certificate(der)
        return None, Upstream(reader, writer, cert, address)
    return last, None


class LeafCache:
    """Server contexts for minted leaves, least recently used out. One leaf key for all leaves
    (the CA signs many short-lived leaves; a key per leaf would cost a key generation each)."""

    def __init__(self, ca_cert: x509.Certificate, ca_key: CaKey, clock: Callable[[], float] = time.time,
                 capacity: int = 2048, validity_seconds: int = DEFAULT_LEAF_VALIDITY_SECONDS) -> None:
        self.ca_cert, self.ca_key, self.clock = ca_cert, ca_key, clock
        self.capacity, self.validity_seconds = capacity, validity_seconds
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._dir = tempfile.mkdtemp(prefix="sekimori-leaves-")   # 0700: the leaf key lives here
        self._key_path = os.path.join(self._dir, "leaf.key")
        with open(os.open(self._key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(self._key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        self._contexts: OrderedDict[tuple[str, str], tuple[ssl.SSLContext, float]] = OrderedDict()
        self.minted = 0

    def context_for(self, host: str, upstream: x509.Certificate | None) -> ssl.SSLContext:
        upstream_id = (hashlib.sha256(upstream.public_bytes(serialization.Encoding.DER)).hexdigest()
                       if upstream is not None else "")
        key = (host, upstream_id)
        now = self.clock()
        hit = self._contexts.get(key)
        if hit is not None and hit[1] > now + 60:
            self._contexts.move_to_end(key)
            return hit[0]
        leaf = mint_leaf(self.ca_cert, self.ca_key, self._key.public_key(), host, upstream, now,
                         x509.random_serial_number(), self.validity_seconds)
        self.minted += 1
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(LEAF_ALPN)
        chain = os.path.join(self._dir, f"leaf-{self.minted}.pem")
        with open(chain, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
            f.write(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        try:
            ctx.load_cert_chain(chain, self._key_path)
        finally:
            os.unlink(chain)
        self._contexts[key] = (ctx, leaf.not_valid_after_utc.timestamp())
        while len(self._contexts) > self.capacity:
            self._contexts.popitem(last=False)
        return ctx

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
