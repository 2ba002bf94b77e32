"""The broker's PKI core (broker/pki.py): CA, server certificate, device CSRs and certificates.

Certificates are checked field by field and also by cryptography's own X.509 path validation
(`cryptography.x509.verification`), an implementation independent of the code under test.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import pki
from broker.pki import CsrError, DeviceIdentity
from ztcore.errors import ZTError

NOW = 1_750_000_000.0  # a fixed instant, 2025-06-15
DAY = 24 * 3600
CA_KEY = pki.new_key()
CA = pki.make_ca(CA_KEY, "Sekimori broker CA (test)", NOW, 3650 * DAY, serial=1)
DEVICE_KEY = ec.generate_private_key(ec.SECP256R1())
IDENTITY = DeviceIdentity("kita-city", "3f2b6c1e-8d4a-4b8e-9a51-0c7f1d2e3a4b")


def utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)


def csr_for(key: object, name: str = "laptop-17", algorithm: hashes.HashAlgorithm | None = None,
            builder: x509.CertificateSigningRequestBuilder | None = None) -> bytes:
    builder = builder or x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
    if algorithm is None and not isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def der_to_pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"\n".join(lines)
            + b"\n-----END CERTIFICATE REQUEST-----\n")


def device_cert(csr_pem: bytes | None = None, identity: DeviceIdentity = IDENTITY,
                validity: int = 7 * DAY) -> x509.Certificate:
    csr = pki.load_csr(csr_pem or csr_for(DEVICE_KEY))
    return pki.sign_device(csr, CA, CA_KEY, identity, NOW, validity, serial=1000)


def ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


# -- the CA ---------------------------------------------------------------------------------------

def test_ca_is_a_self_signed_constrained_ca() -> None:
    assert CA.subject == CA.issuer
    assert CA.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "Sekimori broker CA (test)"
    CA.verify_directly_issued_by(CA)
    bc = ext(CA, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(CA, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ext(CA, x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key())
    assert CA.serial_number == 1


def test_ca_validity_is_taken_from_now() -> None:
    assert CA.not_valid_before_utc == utc(NOW - 300)
    assert CA.not_valid_after_utc == utc(NOW + 3650 * DAY)
    later = pki.make_ca(CA_KEY, "x", NOW + 1000, 10, serial=2)
    assert later.not_valid_before_utc == utc(NOW + 700)
    assert later.not_valid_after_utc == utc(NOW + 1010)


@pytest.mark.parametrize("key", [ed25519.Ed25519PrivateKey.generate(),
                                 rsa.generate_private_key(65537, 2048),
                                 ec.generate_private_key(ec.SECP384R1())],
                         ids=["ed25519", "rsa", "p384"])
def test_ca_and_leaves_with_other_key_types(key: pki.PrivateKey) -> None:
    ca = pki.make_ca(key, "other", NOW, DAY, serial=5)
    ca.verify_directly_issued_by(ca)
    leaf = pki.sign_device(pki.load_csr(csr_for(DEVICE_KEY)), ca, key, IDENTITY, NOW, DAY, 6)
    leaf.verify_directly_issued_by(ca)


# -- the server certificate -----------------------------------------------------------------------

NAMES = ["broker.kita.example.jp", "localhost", "127.0.0.1", "::1", "10.0.0.5"]
SERVER_KEY = pki.new_key()
SERVER = pki.make_server_cert(CA, CA_KEY, SERVER_KEY, NAMES, NOW, 365 * DAY, serial=77)


def test_server_cert_names_every_name_and_address() -> None:
    san = ext(SERVER, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.kita.example.jp", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.5")]
    assert SERVER.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAMES[0]


def test_server_cert_is_a_server_leaf_of_the_ca() -> None:
    assert list(ext(SERVER, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = ext(SERVER, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    assert ext(SERVER, x509.AuthorityKeyIdentifier).value.key_identifier == \
        ext(CA, x509.SubjectKeyIdentifier).value.digest
    assert SERVER.issuer == CA.subject and SERVER.serial_number == 77
    assert SERVER.public_key() == SERVER_KEY.public_key()
    SERVER.verify_directly_issued_by(CA)


@pytest.mark.parametrize("name", [x509.DNSName("broker.kita.example.jp"), x509.DNSName("localhost"),
                                  x509.IPAddress(ipaddress.ip_address("::1")),
                                  x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
def test_server_cert_passes_path_validation(name: x509.DNSName | x509.IPAddress) -> None:
    verifier = (PolicyBuilder().store(Store([CA])).time(utc(NOW + DAY))
                .build_server_verifier(name))
    chain = verifier.verify(SERVER, [])
    assert chain[-1] == CA


def test_server_cert_does_not_cover_other_names() -> None:
    verifier = (PolicyBuilder().store(Store([CA])).time(utc(NOW + DAY))
                .build_server_verifier(x509.DNSName("evil.example.jp")))
    with pytest.raises(Exception, match="(?i)subject|name|san"):
        verifier.verify(SERVER, [])


@pytest.mark.parametrize("validity, backdate", [(365 * DAY, 60), (300, 30), (60, 6)])
def test_leaf_validity_uses_now_and_a_proportional_backdate(validity: int, backdate: float) -> None:
    cert = pki.make_server_cert(CA, CA_KEY, SERVER_KEY, ["a.example"], NOW, validity, serial=9)
    assert cert.not_valid_before_utc == utc(NOW - backdate)
    assert cert.not_valid_after_utc == utc(NOW + validity)
    assert pki.not_after(cert) == NOW + validity


# -- load_csr --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [
    ec.generate_private_key(ec.SECP256R1()),
    ec.generate_private_key(ec.SECP384R1()),
    ed25519.Ed25519PrivateKey.generate(),
    rsa.generate_private_key(65537, 2048),
], ids=["p256", "p384", "ed25519", "rsa2048"])
def test_acceptable_csrs_load(key: object) -> None:
    csr = pki.load_csr(csr_for(key))
    assert csr.public_key() == key.public_key()  # type: ignore[attr-defined]
    assert pki.load_csr(csr_for(key).decode()).public_key() == csr.public_key()  # str is fine


def _tampered_signature() -> bytes:
    der = bytearray(pki.load_csr(csr_for(DEVICE_KEY)).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the DER is the last byte of the signature
    return der_to_pem(bytes(der))


def _tampered_subject() -> bytes:
    der = pki.load_csr(csr_for(DEVICE_KEY, name="laptop-17")).public_bytes(
        serialization.Encoding.DER)
    assert der.count(b"laptop-17") == 1
    return der_to_pem(der.replace(b"laptop-17", b"laptop-99"))


# (pem, part of the message)
REFUSED: list[tuple[str, object, str]] = [
    ("too-big", b"A" * (pki.MAX_CSR_BYTES + 1), "more than"),
    ("too-big-valid", csr_for(DEVICE_KEY) + b"\n" * pki.MAX_CSR_BYTES, "more than"),
    ("empty", b"", "not a PEM"),
    ("garbage", b"hello, broker", "not a PEM"),
    ("der", pki.load_csr(csr_for(DEVICE_KEY)).public_bytes(serialization.Encoding.DER),
     "not a PEM"),
    ("certificate", pki.cert_pem(CA), "not a PEM"),
    ("truncated", csr_for(DEVICE_KEY)[:200], "not a PEM"),
    ("bad-signature", _tampered_signature(), "signature"),
    ("tampered-subject", _tampered_subject(), "signature"),
    ("rsa-1024", csr_for(rsa.generate_private_key(65537, 1024)), "2048"),
    ("p521", csr_for(ec.generate_private_key(ec.SECP521R1())), "secp521r1"),
    ("secp256k1", csr_for(ec.generate_private_key(ec.SECP256K1())), "secp256k1"),
    ("ed448", csr_for(ed448.Ed448PrivateKey.generate()), "Ed448"),
    ("dsa", csr_for(dsa.generate_private_key(2048)), "DSA"),
]


@pytest.mark.parametrize("pem, message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_load_csr_refusals(pem: bytes, message: str) -> None:
    with pytest.raises(CsrError, match=message) as info:
        pki.load_csr(pem)
    assert isinstance(info.value, ZTError)


def test_size_limit_is_inclusive() -> None:
    good = csr_for(DEVICE_KEY)
    exactly = good + b"\n" * (pki.MAX_CSR_BYTES - len(good))
    assert len(exactly) == pki.MAX_CSR_BYTES
    assert pki.load_csr(exactly).public_key() == DEVICE_KEY.public_key()


@settings(max_examples=200)
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_mutated_csr_is_refused_or_unchanged(position: int, value: int) -> None:
    """Bad input from outside gets a CsrError, never another exception, never a new key."""
    der = bytearray(pki.load_csr(csr_for(DEVICE_KEY)).public_bytes(serialization.Encoding.DER))
    der[position % len(der)] = value
    try:
        csr = pki.load_csr(der_to_pem(bytes(der)))
    except CsrError:
        return
    # Only a change that leaves what was signed and the key alone can pass (DER has a few
    # equivalent spellings the parser accepts, e.g. in the signature's own encoding).
    assert csr.public_key() == DEVICE_KEY.public_key()
    assert csr.is_signature_valid


# -- device certificates ----------------------------------------------------------------------------

def test_sign_device_names_the_identity_and_only_it() -> None:
    cert = device_cert()
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:sekimori:device:kita-city:3f2b6c1e-8d4a-4b8e-9a51-0c7f1d2e3a4b"]
    assert len(list(san)) == 1
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == \
        "kita-city"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == IDENTITY.device_id
    assert pki.device_identity(cert) == IDENTITY


def test_device_cert_is_a_client_leaf_for_the_csr_key() -> None:
    cert = device_cert()
    assert cert.public_key() == DEVICE_KEY.public_key()
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not ext(cert, x509.BasicConstraints).value.ca
    assert cert.issuer == CA.subject and cert.serial_number == 1000
    cert.verify_directly_issued_by(CA)
    verifier = PolicyBuilder().store(Store([CA])).time(utc(NOW + DAY)).build_client_verifier()
    verified = verifier.verify(cert, [])
    assert verified.chain[-1] == CA


def test_csr_subject_and_requested_extensions_are_ignored() -> None:
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                           "other-city")]))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                   "urn:sekimori:device:other-city:stolen")]), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False))
    cert = device_cert(csr_for(DEVICE_KEY, builder=builder))
    assert pki.device_identity(cert) == IDENTITY
    assert not ext(cert, x509.BasicConstraints).value.ca
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert "admin" not in cert.subject.rfc4514_string()


@pytest.mark.parametrize("validity, backdate", [(7 * DAY, 60), (600, 60), (120, 12)])
def test_device_validity_uses_now(validity: int, backdate: float) -> None:
    cert = device_cert(validity=validity)
    assert cert.not_valid_before_utc == utc(NOW - backdate)
    assert cert.not_valid_after_utc == utc(NOW + validity)
    assert pki.not_after(cert) == NOW + validity


@settings(max_examples=25, deadline=None)
@given(tenant=st.from_regex(r"[a-z0-9][a-z0-9-]{1,62}", fullmatch=True),
       device=st.uuids().map(str) | st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True))
def test_identity_round_trips(tenant: str, device: str) -> None:
    cert = device_cert(identity=DeviceIdentity(tenant, device))
    assert pki.device_identity(cert) == DeviceIdentity(tenant, device)


def _cert_with_sans(names: list[x509.GeneralName] | None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(CA.subject).issuer_name(CA.subject)
               .public_key(DEVICE_KEY.public_key()).serial_number(3)
               .not_valid_before(utc(NOW)).not_valid_after(utc(NOW + DAY)))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(CA_KEY, hashes.SHA256())


URI = x509.UniformResourceIdentifier


@pytest.mark.parametrize("names, expected", [
    (None, None),
    ([x509.DNSName("laptop.example")], None),
    ([URI("https://example.jp/device/1")], None),
    ([URI("urn:sekimori:device:kita-city")], None),  # no device part
    ([URI("urn:sekimori:device:kita-city:")], None),
    ([URI("urn:sekimori:device::dev-1")], None),
    ([URI("urn:sekimori:tenant:kita-city:dev-1")], None),
    ([URI("urn:sekimori:device:kita-city:dev-1")], DeviceIdentity("kita-city", "dev-1")),
    ([URI("urn:sekimori:device:kita-city:a:b")], DeviceIdentity("kita-city", "a:b")),
    ([URI("urn:other"), URI("urn:sekimori:device:t1:d1")], DeviceIdentity("t1", "d1")),
], ids=["no-san", "dns-only", "other-uri", "no-device", "empty-device", "empty-tenant",
        "other-urn", "good", "device-with-colon", "second-uri"])
def test_device_identity_reads_only_a_well_formed_device_uri(
        names: list[x509.GeneralName] | None, expected: DeviceIdentity | None) -> None:
    assert pki.device_identity(_cert_with_sans(names)) == expected


def test_ca_and_server_certs_name_no_device() -> None:
    assert pki.device_identity(CA) is None
    assert pki.device_identity(SERVER) is None


# -- encodings ------------------------------------------------------------------------------------

def test_pem_helpers_round_trip() -> None:
    assert x509.load_pem_x509_certificate(pki.cert_pem(SERVER)) == SERVER
    key = serialization.load_pem_private_key(pki.key_pem(SERVER_KEY), password=None)
    assert key.public_key() == SERVER_KEY.public_key()  # type: ignore[union-attr]
    assert b"ENCRYPTED" not in pki.key_pem(SERVER_KEY)


def test_fingerprint_is_sha256_of_der() -> None:
    der = SERVER.public_bytes(serialization.Encoding.DER)
    assert pki.fingerprint(SERVER) == hashlib.sha256(der).hexdigest()
    assert pki.fingerprint(SERVER) != pki.fingerprint(CA)
