"""The broker's PKI core: its CA, its server certificate, and device certificates from CSRs.

Pure over data: keys, `now`, validities and serial numbers are passed in; nothing here reads a
file or the clock. A device certificate names its tenant and device in a SAN URI
(`urn:sekimori:device:<tenant>:<device>`), carries clientAuth only, and is short-lived: the agent
renews it over the tunnel before it expires.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ztcore.errors import ZTError
from ztcore.keys import PrivateKey as PrivateKey
from ztcore.keys import key_pem as key_pem
from ztcore.keys import new_key as new_key

DEVICE_URI_PREFIX = "urn:sekimori:device:"
MAX_CSR_BYTES = 16 * 1024


class CsrError(ZTError):
    """A CSR from a device cannot be signed; the message says why."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    tenant_id: str
    device_id: str


def _time(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def make_ca(key: PrivateKey, common_name: str, now: float, validity_seconds: int,
            serial: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sekimori"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(_time(now - 300)).not_valid_after(_time(now + validity_seconds))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, _hash_for(key)))


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _leaf_builder(ca_cert: x509.Certificate, public_key: object, subject: x509.Name,
                  now: float, validity_seconds: int, serial: int) -> x509.CertificateBuilder:
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(serial)
            # Backdated for clock skew, but never by a large share of a short validity (the agent
            # renews after 2/3 of not_before..not_after).
            .not_valid_before(_time(now - min(60, validity_seconds / 10)))
            .not_valid_after(_time(now + validity_seconds))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(aki, critical=False))


def make_server_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, server_key: PrivateKey,
                     names: list[str], now: float, validity_seconds: int,
                     serial: int) -> x509.Certificate:
    """The broker's TLS server certificate for each DNS name or IP address in `names`."""
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return (_leaf_builder(ca_cert, server_key.public_key(), subject, now, validity_seconds, serial)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, _hash_for(ca_key)))


def load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse and check a device CSR: size, PEM, self-signature, an acceptable key."""
    raw = pem.encode() if isinstance(pem, str) else pem
    if len(raw) > MAX_CSR_BYTES:
        raise CsrError(f"CSR is {len(raw)} bytes, more than the {MAX_CSR_BYTES} allowed")
    try:
        csr = x509.load_pem_x509_csr(raw)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise CsrError(f"CSR is not a PEM certificate request: {exc}") from exc
    try:
        if not csr.is_signature_valid:
            raise CsrError("CSR signature does not verify")
        key = csr.public_key()
    except (InvalidSignature, UnsupportedAlgorithm, ValueError) as exc:
        raise CsrError(f"CSR cannot be verified: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise CsrError(f"CSR key curve {key.curve.name} is not allowed (P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrError(f"CSR RSA key has {key.key_size} bits; at least 2048 are required")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CsrError(f"CSR key type {type(key).__name__} is not allowed")
    return csr


def sign_device(csr: x509.CertificateSigningRequest, ca_cert: x509.Certificate,
                ca_key: PrivateKey, identity: DeviceIdentity, now: float,
                validity_seconds: int, serial: int) -> x509.Certificate:
    """A client certificate for the CSR's key; the CSR's own subject is ignored."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.tenant_id),
                         x509.NameAttribute(NameOID.COMMON_NAME, identity.device_id)])
    uri = f"{DEVICE_URI_PREFIX}{identity.tenant_id}:{identity.device_id}"
    return (_leaf_builder(ca_cert, csr.public_key(), subject, now, validity_seconds, serial)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, _hash_for(ca_key)))


def device_identity(cert: x509.Certificate) -> DeviceIdentity | None:
    """The tenant and device a device certificate names, or None if it names none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(DEVICE_URI_PREFIX):
            tenant, sep, device = uri[len(DEVICE_URI_PREFIX):].partition(":")
            if sep and tenant and device:
                return DeviceIdentity(tenant, device)
    return None


def not_after(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()
