"""The device's key pair and certificate requests (pure: no file access here).

The private key is made on the device (`ztcore.keys.new_key`) and never leaves it; only the
CSR is sent.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ztcore.keys import key_pem as key_pem
from ztcore.keys import new_key as new_key


def csr_pem(key: ec.EllipticCurvePrivateKey, hostname: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "device")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def renewal_due(not_before: float, not_after: float, now: float) -> bool:
    """Renew once two thirds of the validity have passed (and always once expired)."""
    return now >= not_before + (not_after - not_before) * 2 / 3
