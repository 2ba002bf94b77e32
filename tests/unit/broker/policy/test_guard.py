"""broker/policy/guard.py: each three-layer invariant under each security model and segment,
and the sanitise obligation."""

from __future__ import annotations

import pytest

from broker.policy.guard import guard, guard_obligations, specific_matches
from broker.policy.model import (
    App,
    AppKind,
    Obligation,
    PrivateKind,
    SecurityModel,
    SpecificCommunication,
    Zone,
)
from tests.unit.broker.policy.fixtures import request

A, B, BP = SecurityModel.ALPHA, SecurityModel.BETA, SecurityModel.BETA_PRIME
INTERNET, LGWAN, MYNUMBER = Zone.INTERNET, Zone.LGWAN, Zone.MYNUMBER

APPS = {
    "none": None,
    "news": App("news", "ニュース", AppKind.INTERNET, Zone.INTERNET, ("news.example",)),
    "tax": App("tax", "税務", AppKind.PRIVATE, Zone.LGWAN, ("tax.city.lg.jp",), (443,), (), PrivateKind.WEB),
    "vdi": App("vdi", "画面転送", AppKind.PRIVATE, Zone.LGWAN, ("vdi.city.lg.jp",), (), (), PrivateKind.VDI),
    "asp": App("asp", "LGWAN-ASP", AppKind.SAAS, Zone.LGWAN, ("asp.lgwan.example",)),
    "jyuki": App("jyuki", "住基", AppKind.PRIVATE, Zone.MYNUMBER, ("jyuki.city.lg.jp",), (), (),
                 PrivateKind.WEB),
}
ELTAX = SpecificCommunication("eltax", "eLTAX", "www.eltax.lta.go.jp", "203.0.113.10", 443)

SPECIFIC_ONLY = "guard:mynumber-specific-only"
TO_MYNUMBER = "guard:internet-to-mynumber"
LGWAN_TO_MYNUMBER = "guard:lgwan-to-mynumber"
VDI_ONLY = "guard:alpha-lgwan-vdi-only"
MFA_POSTURE = "guard:lgwan-needs-mfa-and-posture"

# (segment, app, specific matched, mfa, compliant) -> expected rule id under (alpha, beta, beta_prime)
CASES: list[tuple[Zone, str, bool, bool, bool, tuple[str | None, str | None, str | None]]] = [
    # internet segment
    (INTERNET, "none", False, True, True, (None, None, None)),
    (INTERNET, "news", False, False, False, (None, None, None)),
    (INTERNET, "jyuki", False, True, True, (TO_MYNUMBER,) * 3),
    (INTERNET, "jyuki", True, True, True, (TO_MYNUMBER,) * 3),     # a specific match changes nothing
    (INTERNET, "tax", False, True, True, (VDI_ONLY, None, None)),
    (INTERNET, "tax", False, False, True, (VDI_ONLY, MFA_POSTURE, MFA_POSTURE)),
    (INTERNET, "tax", False, True, False, (VDI_ONLY, MFA_POSTURE, MFA_POSTURE)),
    (INTERNET, "asp", False, True, True, (VDI_ONLY, None, None)),
    (INTERNET, "vdi", False, True, True, (None, None, None)),
    (INTERNET, "vdi", False, False, False, (None, MFA_POSTURE, MFA_POSTURE)),
    # lgwan segment
    (LGWAN, "none", False, False, False, (None, None, None)),
    (LGWAN, "tax", False, False, False, (None, None, None)),
    (LGWAN, "vdi", False, True, True, (None, None, None)),
    (LGWAN, "jyuki", False, True, True, (LGWAN_TO_MYNUMBER,) * 3),
    # mynumber segment: only specific communications, whatever the destination
    (MYNUMBER, "none", False, True, True, (SPECIFIC_ONLY,) * 3),
    (MYNUMBER, "news", False, True, True, (SPECIFIC_ONLY,) * 3),
    (MYNUMBER, "tax", False, True, True, (SPECIFIC_ONLY,) * 3),
    (MYNUMBER, "jyuki", False, True, True, (SPECIFIC_ONLY,) * 3),
    (MYNUMBER, "none", True, False, False, (None, None, None)),
]

REASONS = {SPECIFIC_ONLY: "zone-mynumber-specific-only", TO_MYNUMBER: "zone-mynumber-forbidden",
           LGWAN_TO_MYNUMBER: "zone-mynumber-forbidden", VDI_ONLY: "zone-lgwan-vdi-only",
           MFA_POSTURE: "zone-lgwan-needs-mfa-and-posture"}


@pytest.mark.parametrize("model_index,model", [(0, A), (1, B), (2, BP)], ids=["alpha", "beta", "beta_prime"])
@pytest.mark.parametrize("segment,app,specific,mfa,compliant,expected", CASES)
def test_guard_invariants(model_index: int, model: SecurityModel, segment: Zone, app: str, specific: bool,
                          mfa: bool, compliant: bool,
                          expected: tuple[str | None, str | None, str | None]) -> None:
    req = request(segment=segment, mfa=mfa, posture_compliant=compliant)
    decision = guard(model, req, APPS[app], ELTAX if specific else None)
    want = expected[model_index]
    if want is None:
        assert decision is None
    else:
        assert decision is not None and not decision.allowed
        assert (decision.layer, decision.rule_id, decision.reasons) == ("guard", want, (REASONS[want],))


@pytest.mark.parametrize("segment,app,expected", [
    (INTERNET, "tax", {Obligation.SANITISE}),      # uploads from the internet side towards lgwan
    (INTERNET, "vdi", {Obligation.SANITISE}),
    (INTERNET, "news", set()),
    (INTERNET, "none", set()),
    (LGWAN, "news", {Obligation.SANITISE}),        # downloads land on the lgwan side
    (LGWAN, "none", {Obligation.SANITISE}),        # no app: the internet zone
    (LGWAN, "tax", set()),
    (MYNUMBER, "none", set()),
])
def test_sanitise_obligation(segment: Zone, app: str, expected: set[Obligation]) -> None:
    assert guard_obligations(request(segment=segment), APPS[app]) == expected


@pytest.mark.parametrize("host,port,address,expected", [
    ("www.eltax.lta.go.jp", 443, None, True),
    ("www.eltax.lta.go.jp", 443, "203.0.113.10", True),
    ("www.eltax.lta.go.jp", 443, "198.51.100.1", False),   # resolved elsewhere: pinned address
    ("www.eltax.lta.go.jp", 80, None, False),              # port must match too
    ("203.0.113.10", 443, None, True),                     # by address
    ("203.0.113.11", 443, None, False),
    ("eltax.lta.go.jp", 443, None, False),
    ("8.8.8.8", 53, None, False),                          # public DNS: nothing else
])
def test_specific_matching(host: str, port: int, address: str | None, expected: bool) -> None:
    assert specific_matches(ELTAX, host, port, address) is expected


def test_specific_by_network() -> None:
    comm = SpecificCommunication("m", "中間サーバー", "middle.example", "198.51.100.0/28", 443)
    assert specific_matches(comm, "198.51.100.15", 443, None)
    assert not specific_matches(comm, "198.51.100.16", 443, None)
    assert specific_matches(comm, "middle.example", 443, "198.51.100.3")
