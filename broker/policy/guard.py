"""The three-layer guard (三層の対策): the separations of the MIC guideline that no rule can lift.

Owns what the guard forbids and the obligations it attaches. It runs before every rule; a deny
from here is final (layer "guard"). It must not look at rules, users or groups: only the
tenant's security model, the device's segment and the zone of the destination.

Invariants, for every security model:

- `guard:mynumber-specific-only`: a device on the mynumber segment reaches only its specific
  communications (特定通信), matched by host (or address) and port. Nothing else at all:
  not the internet, not LGWAN, not a public DNS resolver, not even a mynumber app, which
  it reaches inside its own closed segment and never through the broker.
- `guard:internet-to-mynumber`: a device on the internet segment never reaches a mynumber app.
- `guard:lgwan-to-mynumber`: nor does a device on the lgwan segment (decided here: the mynumber
  segment is closed to both other segments; data moves in only through 無害化 file transfer,
  which is not a network flow of ours). The reason is the same `zone-mynumber-forbidden`.
- `guard:alpha-lgwan-vdi-only`: in model alpha an internet-segment device reaches lgwan apps
  only by screen transfer (private_kind vdi).
- `guard:lgwan-needs-mfa-and-posture`: in beta and beta_prime an internet-segment device
  reaches lgwan apps only with MFA done and a compliant device (a rule may ask for fresher MFA).

The zone of a destination is the zone of the app passed in; the engine passes the strictest
app whose host patterns cover the host (ports ignored), so that a mynumber host is mynumber on
every port and a more specific internet app cannot carve a hole in it. No app: internet.

Obligations (`guard_obligations`, for allowed flows only): SANITISE (無害化) on every flow that
can carry files from the internet towards LGWAN:
- an internet-segment device to an lgwan app (uploads from the internet side);
- an lgwan-segment device to an internet-zone destination (decided: downloads land on the
  lgwan side, so they are sanitised too).
Sanitising needs the content, so SANITISE also beats a rule's do-not-inspect (engine.py).
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from broker.policy.model import (
    App,
    Obligation,
    PolicyDecision,
    PolicyRequest,
    PrivateKind,
    SecurityModel,
    SpecificCommunication,
    Zone,
)
from ztcore.reasons import Reason

LAYER = "guard"
_SANITISE = frozenset({Obligation.SANITISE})
_NONE: frozenset[Obligation] = frozenset()


def guard(model: SecurityModel, request: PolicyRequest, app: App | None,
          specific: SpecificCommunication | None) -> PolicyDecision | None:
    """A final deny, or None to let the rules decide. `specific` is the specific communication
    the destination matched (see `specific_matches`), or None."""
    segment = request.segment
    zone = app.zone if app is not None else Zone.INTERNET
    app_id = app.id if app is not None else None
    if segment is Zone.MYNUMBER:
        if specific is None:
            return _deny("guard:mynumber-specific-only", Reason.ZONE_MYNUMBER_SPECIFIC_ONLY, app_id,
                         f"{request.host}:{request.port} is not a specific communication")
        return None
    if zone is Zone.MYNUMBER:
        if segment is Zone.INTERNET:
            return _deny("guard:internet-to-mynumber", Reason.ZONE_MYNUMBER_FORBIDDEN, app_id,
                         f"{app_id} is in the mynumber zone")
        return _deny("guard:lgwan-to-mynumber", Reason.ZONE_MYNUMBER_FORBIDDEN, app_id,
                     f"{app_id} is in the mynumber zone")
    if zone is Zone.LGWAN and segment is Zone.INTERNET:
        assert app is not None
        if model is SecurityModel.ALPHA:
            if app.private_kind is not PrivateKind.VDI:
                return _deny("guard:alpha-lgwan-vdi-only", Reason.ZONE_LGWAN_VDI_ONLY, app_id,
                             f"{app_id} is an lgwan app and not screen transfer")
        elif not (request.mfa and request.posture_compliant):
            missing = [name for name, ok in (("mfa", request.mfa),
                                             ("compliant device", request.posture_compliant)) if not ok]
            return _deny("guard:lgwan-needs-mfa-and-posture", Reason.ZONE_LGWAN_NEEDS_MFA_AND_POSTURE,
                         app_id, f"{app_id} is an lgwan app; missing: {', '.join(missing)}")
    return None


def guard_obligations(request: PolicyRequest, app: App | None) -> frozenset[Obligation]:
    """What an allowed flow must undergo whatever the rules say (see the module docstring)."""
    zone = app.zone if app is not None else Zone.INTERNET
    if request.segment is Zone.INTERNET and zone is Zone.LGWAN:
        return _SANITISE
    if request.segment is Zone.LGWAN and zone is Zone.INTERNET:
        return _SANITISE
    return _NONE


def specific_matches(comm: SpecificCommunication, host: str, port: int, address: str | None) -> bool:
    """Host (or an IP-literal host inside `comm.address`) and port must match; when the broker
    already knows the address it connects to, that address must lie in `comm.address` too, so a
    spoofed DNS answer cannot turn a specific communication into a path elsewhere."""
    if port != comm.port:
        return False
    if host != comm.host and not _in_network(host, comm.address):
        return False
    return address is None or _in_network(address, comm.address)


def _in_network(text: str, network: str) -> bool:
    try:
        return ip_address(text) in ip_network(network, strict=False)
    except ValueError:
        return False


def _deny(rule_id: str, reason: Reason, app_id: str | None, detail: str) -> PolicyDecision:
    return PolicyDecision(allowed=False, layer=LAYER, rule_id=rule_id, reasons=(reason.value,),
                          detail=detail, app=app_id)
