"""Leaf certificates for TLS inspection, minted from the inspection CA.

Pure: the CA, the leaf key, the upstream's certificate, `now` and the serial number come in, a
certificate goes out. The leaf copies the upstream certificate's subjectAltName exactly (so the
client checks the same names it would have checked without us) and lives briefly: at most
`validity_seconds`, never beyond the upstream certificate's own end. A leaf is minted only after
the upstream certificate passed full validation (the shell's job); nothing here trusts it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
DEFAULT_LEAF_VALIDITY_SECONDS = 24 * 3600
BACKDATE_SECONDS = 300


def _time(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)


def upstream_names(upstream: x509.Certificate | None, host: str) -> x509.SubjectAlternativeName:
    """The names the leaf carries: the upstream's SAN as it is, or the host asked for when the
    upstream had none (plain HTTP has no upstream certificate)."""
    if upstream is not None:
        try:
            return upstream.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            pass
    try:
        return x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))])
    except ValueError:
        return x509.SubjectAlternativeName([x509.DNSName(host)])


def _common_name(upstream: x509.Certificate | None, host: str) -> str:
    if upstream is not None:
        names = upstream.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if names and isinstance(names[0].value, str) and 0 < len(names[0].value) <= 64:
            return names[0].value
    return host[:64] or "sekimori-inspected"


def mint_leaf(ca_cert: x509.Certificate, ca_key: CaKey, leaf_public_key: ec.EllipticCurvePublicKey,
              host: str, upstream: x509.Certificate | None, now: float, serial: int,
              validity_seconds: int = DEFAULT_LEAF_VALIDITY_SECONDS) -> x509.Certificate:
    not_after = now + validity_seconds
    if upstream is not None:
        not_after = min(not_after, upstream.not_valid_after_utc.timestamp())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(upstream, host))])
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(leaf_public_key)
               .serial_number(serial)
               .not_valid_before(_time(now - BACKDATE_SECONDS))
               .not_valid_after(_time(not_after))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(upstream_names(upstream, host), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_cert.public_key()), critical=False))  # type: ignore[arg-type]
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(ca_key, algorithm)
