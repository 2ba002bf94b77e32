"""Leaves minted for inspection (swg/tls_leaf.py): SAN copied exactly, short validity never past
the upstream's, a server-auth leaf that verifies against the inspection CA."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.pki import make_ca
from swg.tls_leaf import BACKDATE_SECONDS, mint_leaf, upstream_names
from ztcore.keys import new_key

NOW = 1_790_000_000.0


def upstream(names: list[x509.GeneralName] | None, days: float = 90, cn: str = "origin") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.fromtimestamp(NOW - 86400, dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "up CA")]))
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days)))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    return make_ca(key, "Sekimori inspection CA (test)", NOW - 3600, 10 * 365 * 86400, 7), key


def test_san_is_copied_exactly_in_order(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    names = [x509.DNSName("www.example.jp"), x509.DNSName("*.example.jp"),
             x509.IPAddress(ipaddress.ip_address("192.0.2.7")), x509.DNSName("example.jp")]
    up = upstream(names)
    leaf = mint_leaf(ca[0], ca[1], new_key().public_key(), "www.example.jp", up, NOW, 42)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        up.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert leaf.issuer == ca[0].subject
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "origin"
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(ca[0])


@pytest.mark.parametrize("upstream_days, expected_end", [
    (90, NOW + 3600), (1.01, NOW - 86400 + 1.01 * 86400)])
def test_validity_is_short_and_never_past_the_upstream(
        ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], upstream_days: float,
        expected_end: float) -> None:
    up = upstream([x509.DNSName("a.example")], days=upstream_days)
    leaf = mint_leaf(ca[0], ca[1], new_key().public_key(), "a.example", up, NOW, 1, validity_seconds=3600)
    assert leaf.not_valid_after_utc.timestamp() == pytest.approx(min(expected_end, NOW + 3600), abs=1)
    assert leaf.not_valid_before_utc.timestamp() == pytest.approx(NOW - BACKDATE_SECONDS, abs=1)


@pytest.mark.parametrize("host, expected", [
    ("plain.example", x509.DNSName("plain.example")),
    ("192.0.2.1", x509.IPAddress(ipaddress.ip_address("192.0.2.1"))),
    ("2001:db8::1", x509.IPAddress(ipaddress.ip_address("2001:db8::1")))])
def test_without_an_upstream_san_the_host_is_named(host: str, expected: x509.GeneralName) -> None:
    assert list(upstream_names(None, host)) == [expected]
    assert list(upstream_names(upstream(None), host)) == [expected]
