"""Enrolment and renewal: one-time code + CSR → device certificate, recorded in the store.

The CSR is checked before the code is redeemed, so a malformed request does not burn a code.
Runs in a worker thread (the store is blocking); returns a Decision on refusal, never raises
for a user's mistake.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptography import x509

from broker.devices import DEVICE_ACTIVE, Device, RedeemOutcome
from broker.enrolment import hash_code, normalise_code
from broker.pki import (
    CsrError,
    DeviceIdentity,
    PrivateKey,
    cert_pem,
    fingerprint,
    load_csr,
    not_after,
    sign_device,
)
from broker.runtime.store import Store
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason


@dataclass(frozen=True)
class Enrolment:
    device: Device
    certificate_pem: bytes


class DeviceAuthority:
    def __init__(self, store: Store, ca_cert: x509.Certificate, ca_key: PrivateKey,
                 validity_seconds: int) -> None:
        self.store = store
        self.ca_cert, self.ca_key = ca_cert, ca_key
        self.validity_seconds = validity_seconds

    def enrol(self, code_text: str, csr_pem: str, hostname: str, now: float) -> Enrolment | Decision:
        code = normalise_code(code_text)
        if code is None:
            return deny(Reason.ENROLMENT_CODE_INVALID, detail="not a well-formed enrolment code")
        try:
            csr = load_csr(csr_pem)
        except CsrError as exc:
            return deny(Reason.CSR_INVALID, status=400, detail=str(exc))
        device_id = str(uuid.uuid4())
        outcome, tenant_id = self.store.redeem_enrolment_code(hash_code(code), now, device_id)
        if outcome is not RedeemOutcome.OK or tenant_id is None:
            reason = outcome.reason or Reason.ENROLMENT_CODE_INVALID
            return deny(reason)
        cert = sign_device(csr, self.ca_cert, self.ca_key, DeviceIdentity(tenant_id, device_id),
                           now, self.validity_seconds, x509.random_serial_number())
        device = Device(id=device_id, tenant_id=tenant_id, name=(hostname or "")[:200],
                        status=DEVICE_ACTIVE, created_at=now, cert_serial=format(cert.serial_number, "x"),
                        cert_fingerprint=fingerprint(cert), cert_not_after=not_after(cert))
        self.store.add_device(device)
        return Enrolment(device, cert_pem(cert))

    def renew(self, identity: DeviceIdentity, csr_pem: bytes, now: float) -> bytes:
        """A new certificate for an active device (called over its own mTLS tunnel)."""
        device = self.store.get_device(identity.device_id)
        if device is None or device.tenant_id != identity.tenant_id or device.revoked:
            raise CsrError(f"device {identity.device_id} may not renew (unknown or revoked)")
        csr = load_csr(csr_pem)
        cert = sign_device(csr, self.ca_cert, self.ca_key, identity, now, self.validity_seconds,
                           x509.random_serial_number())
        self.store.update_device_certificate(identity.device_id, format(cert.serial_number, "x"),
                                             fingerprint(cert), not_after(cert), now)
        return cert_pem(cert)
