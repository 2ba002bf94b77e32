"""The access-policy engine: a municipality's policy and its prefecture's baseline, compiled once
into indexes, then one decision per request, each carrying its layer, rule id and reasons.

Owns the evaluation order and the meaning of actions; the three-layer guard lives in
`guard.py`, the model and its validation in `model.py`. Pure: no clock (the request carries the
tenant's local weekday and minute), no I/O. `CompiledPolicy.hits` and the `DecisionCache` are
the only mutable state, both plain counters and maps the broker reads.

Order (first match wins within a layer):
1. the guard: a deny there is final, and its obligations are attached to every allow;
2. the baseline (the prefecture's rules): a baseline deny is final. Decided: a baseline allow
   (allow / inspect / do-not-inspect / require-mfa) is a ceiling, not a verdict: the
   municipality's rules are still consulted and may deny more strictly. When both layers
   allow, both rules' MFA requirements must hold (the baseline's first), and the baseline's
   inspection stance (inspect / do-not-inspect) beats the municipality's;
3. the municipality's rules;
4. defaults: a mynumber-segment device's specific communication → allow ("default:specific",
   no inspection: fixed, pinned endpoints); a private app, or any app of the lgwan or mynumber
   zone → deny, `private-app-default-deny` ("default:private"); anything else → allow with
   INSPECT ("default:internet").

The destination: every app whose host pattern covers the host (hosts.py; apps without hosts
match by URL category), most specific first. The app the rules see is the first one whose ports
admit the port; the guard sees the app of the strictest zone among all of them, ports ignored.
A destination of the internet zone gets INSPECT unless a rule said do-not-inspect; SANITISE
(from the guard) overrides do-not-inspect.

Conditions: all given must hold, any value within one. `users` the login name; `groups` any of
the principal's groups; `posture_profiles` the device's profile only while it is compliant;
`segments`; `apps`/`app_groups` (groups resolved to app ids at compile time) the rules' app;
`categories` the request's URL category; `time_windows` the tenant's local time;
`source_networks` the device's address as the broker sees it.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from broker.policy.guard import guard, guard_obligations, specific_matches
from broker.policy.hosts import HostIndex
from broker.policy.model import (
    ZONE_STRICTNESS,
    ActionKind,
    App,
    AppKind,
    Obligation,
    Policy,
    PolicyDecision,
    PolicyRequest,
    Rule,
    SecurityModel,
    SpecificCommunication,
    Tenant,
    TimeWindow,
    Zone,
    check_policy,
)
from ztcore.reasons import Reason

BASELINE = "baseline"
MUNICIPALITY = "municipality"
DEFAULT = "default"
MINUTES_PER_WEEK = 7 * 1440

_ALLOWED = (Reason.POLICY_ALLOWED.value,)
_INSPECT = frozenset({Obligation.INSPECT})
_STANCES = {ActionKind.INSPECT: Obligation.INSPECT, ActionKind.DO_NOT_INSPECT: Obligation.DO_NOT_INSPECT}

RequestKey = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class _Rule:
    """A rule with its conditions turned into sets (None: any) and its app groups resolved."""
    id: str
    description: str
    kind: ActionKind
    mfa_within_minutes: int | None
    layer: str
    index: int
    users: frozenset[str] | None
    groups: frozenset[str] | None
    postures: frozenset[str] | None
    segments: frozenset[Zone] | None
    apps: frozenset[str] | None
    categories: frozenset[str] | None
    windows: tuple[TimeWindow, ...]
    networks: tuple[IPv4Network | IPv6Network, ...]

    def matches(self, request: PolicyRequest) -> bool:
        """Everything but segment, app and category, which `_Layer` has already filtered on."""
        if self.users is not None and request.user not in self.users:
            return False
        if self.groups is not None and self.groups.isdisjoint(request.groups):
            return False
        if self.postures is not None and (not request.posture_compliant
                                          or request.posture_profile not in self.postures):
            return False
        if self.windows and not any(w.contains(request.weekday, request.minute_of_day)
                                    for w in self.windows):
            return False
        if self.networks:
            try:
                source = ip_address(request.source_address or "")
            except ValueError:
                return False
            if not any(source in network for network in self.networks):
                return False
        return True


def _compile_rule(rule: Rule, index: int, layer: str, groups: dict[str, tuple[str, ...]]) -> _Rule:
    def opt(values: tuple[str, ...]) -> frozenset[str] | None:
        return frozenset(values) if values else None

    when = rule.when
    apps = set(when.apps)
    for group_id in when.app_groups:
        apps.update(groups[group_id])
    has_apps = bool(when.apps or when.app_groups)
    return _Rule(rule.id, rule.description, rule.action.kind, rule.action.mfa_within_minutes, layer,
                 index, opt(when.users), opt(when.groups), opt(when.posture_profiles),
                 frozenset(when.segments) if when.segments else None,
                 frozenset(apps) if has_apps else None, opt(when.categories), when.time_windows,
                 tuple(ip_network(n, strict=True) for n in when.source_networks))


class _Layer:
    """One layer's enabled rules, pre-filtered by the cheap fields: the candidate list for a
    (segment, app, URL category) is built on first use from the rules naming the app plus the
    rules naming no app, and kept; the map is emptied when it reaches `MEMO_LIMIT` lists."""

    __slots__ = ("name", "_by_app", "_any_app", "_memo")
    MEMO_LIMIT = 100_000

    def __init__(self, name: str, rules: list[_Rule]) -> None:
        self.name = name
        self._by_app: dict[str, list[_Rule]] = {}
        self._any_app: list[_Rule] = []
        for rule in rules:
            if rule.apps is None:
                self._any_app.append(rule)
            else:
                for app_id in rule.apps:
                    self._by_app.setdefault(app_id, []).append(rule)
        self._memo: dict[tuple[Zone, str | None, str | None], tuple[_Rule, ...]] = {}

    def first_match(self, request: PolicyRequest, app_id: str | None) -> _Rule | None:
        if app_id is not None and app_id not in self._by_app:
            app_id = None
        key = (request.segment, app_id, request.url_category)
        candidates = self._memo.get(key)
        if candidates is None:
            candidates = self._candidates(*key)
            if len(self._memo) >= self.MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = candidates
        for rule in candidates:
            if rule.matches(request):
                return rule
        return None

    def _candidates(self, segment: Zone, app_id: str | None, category: str | None) -> tuple[_Rule, ...]:
        merged = self._any_app + (self._by_app[app_id] if app_id is not None else [])
        merged.sort(key=lambda r: r.index)
        return tuple(r for r in merged if (r.segments is None or segment in r.segments)
                     and (r.categories is None or category in r.categories))


@dataclass(frozen=True, slots=True)
class _Destination:
    app: App | None          # what the rules see: most specific app whose ports admit the port
    zone_app: App | None     # what the guard sees: the strictest app covering the host
    private: bool            # defaults to deny


class CompiledPolicy:
    """A municipality's policy with its baseline, ready to decide. Build with `compile_policy`."""

    def __init__(self, municipality: Policy, baseline: Policy | None, revision: str) -> None:
        self.tenant: Tenant = municipality.tenant
        self.model: SecurityModel = municipality.tenant.model
        self.revision = revision
        self.hits: dict[str, int] = {}
        layers = [p for p in (baseline, municipality) if p is not None]
        apps = [app for p in (municipality, baseline) if p is not None for app in p.apps]
        self.apps: dict[str, App] = {app.id: app for app in apps}
        self._hosts: HostIndex[App] = HostIndex()
        self._categories: dict[str, list[App]] = {}
        for app in apps:               # the municipality's first: it wins ties of specificity
            for host in app.hosts:
                self._hosts.add(host, app)
            if not app.hosts:
                for category in app.categories:
                    self._categories.setdefault(category, []).append(app)
        self._specific: list[SpecificCommunication] = [
            c for p in (municipality, baseline) if p is not None for c in p.specific_communications]
        self._specific_by_host: dict[str, list[SpecificCommunication]] = {}
        for comm in self._specific:
            self._specific_by_host.setdefault(comm.host, []).append(comm)
        groups = {g: members for p in layers for g, members in p.app_groups}
        base_rules = [_compile_rule(r, i, BASELINE, groups)
                      for i, r in enumerate(baseline.rules if baseline else ()) if r.enabled]
        own_rules = [_compile_rule(r, i, MUNICIPALITY, groups)
                     for i, r in enumerate(municipality.rules) if r.enabled]
        self._baseline = _Layer(BASELINE, base_rules)
        self._municipality = _Layer(MUNICIPALITY, own_rules)
        for p in layers:
            for declared in p.rules:
                self.hits[declared.id] = 0
        # Cache-key buckets: decisions are constant between these marks (see request_key).
        marks: set[int] = set()
        thresholds: set[int] = set()
        self._uses_networks = False
        for rule in base_rules + own_rules:
            self._uses_networks |= bool(rule.networks)
            if rule.mfa_within_minutes is not None:
                thresholds.add(rule.mfa_within_minutes * 60)
            for w in rule.windows:
                for day in w.days:
                    marks.add(day * 1440 + w.start_minute)
                    end_day = day if w.start_minute < w.end_minute else (day + 1) % 7
                    marks.add((end_day * 1440 + w.end_minute) % MINUTES_PER_WEEK)
        self._time_marks = sorted(marks)
        self._mfa_thresholds = sorted(thresholds)

    # -- the destination ------------------------------------------------------------------

    def destination(self, host: str, port: int, url_category: str | None) -> _Destination:
        candidates = self._hosts.lookup(host)
        if url_category is not None:
            by_category = self._categories.get(url_category)
            if by_category:
                candidates = candidates + by_category
        if not candidates:
            return _NOWHERE
        app = next((a for a in candidates if not a.ports or port in a.ports), None)
        zone_app = candidates[0]
        for other in candidates:
            if ZONE_STRICTNESS[other.zone] > ZONE_STRICTNESS[zone_app.zone]:
                zone_app = other
        if app is not None:
            private = app.kind is AppKind.PRIVATE or app.zone is not Zone.INTERNET
        else:
            private = any(a.kind is AppKind.PRIVATE or a.zone is not Zone.INTERNET for a in candidates)
        return _Destination(app, zone_app, private)

    def app_for(self, host: str, port: int, url_category: str | None = None) -> App | None:
        return self.destination(host, port, url_category).app

    def specific_for(self, request: PolicyRequest) -> SpecificCommunication | None:
        host = request.host
        by_host = self._specific_by_host.get(host, ())
        literal = ":" in host or host[:1].isdigit()
        for comm in (*by_host, *self._specific) if literal else by_host:
            if specific_matches(comm, host, request.port, request.address):
                return comm
        return None

    # -- deciding -------------------------------------------------------------------------

    def decide(self, request: PolicyRequest) -> PolicyDecision:
        """Never raises: anything unexpected is a deny with `internal-error` (fail closed)."""
        try:
            decision = self._decide(request)
        except Exception as exc:  # noqa: BLE001 - a decision must always come out
            decision = PolicyDecision(False, "engine", "engine:internal-error",
                                      (Reason.INTERNAL_ERROR.value,), f"{type(exc).__name__}: {exc}")
        self.hits[decision.rule_id] = self.hits.get(decision.rule_id, 0) + 1
        return decision

    def _decide(self, request: PolicyRequest) -> PolicyDecision:
        if request.tenant != self.tenant.id:
            return PolicyDecision(False, "engine", "engine:tenant-mismatch", (Reason.INTERNAL_ERROR.value,),
                                  f"asked {self.tenant.id}'s policy about tenant {request.tenant}")
        dest = self.destination(request.host, request.port, request.url_category)
        specific = self.specific_for(request) if request.segment is Zone.MYNUMBER else None
        denied = guard(self.model, request, dest.zone_app, specific)
        if denied is not None:
            return denied
        app_id = dest.app.id if dest.app is not None else None
        base = self._baseline.first_match(request, app_id)
        if base is not None and base.kind is ActionKind.DENY:
            return _deny(base, app_id)
        own = self._municipality.first_match(request, app_id)
        if own is not None and own.kind is ActionKind.DENY:
            if base is not None:
                self.hits[base.id] += 1
            return _deny(own, app_id)
        obligations = guard_obligations(request, dest.zone_app)
        internet = specific is None and not dest.private
        if base is None and own is None:
            if specific is not None:
                return _allow(DEFAULT, "default:specific", f"specific communication {specific.id}",
                              app_id, obligations, None)
            if dest.private:
                return PolicyDecision(False, DEFAULT, "default:private",
                                      (Reason.PRIVATE_APP_DEFAULT_DENY.value,),
                                      f"no rule allows {app_id or request.host}", app_id)
            return _allow(DEFAULT, "default:internet", "", app_id, obligations | _INSPECT, None)
        for rule in (base, own):
            if rule is not None and rule.kind is ActionKind.REQUIRE_MFA:
                refused = _mfa_refusal(rule, request, app_id)
                if refused is not None:
                    return refused
        deciding = own if own is not None else base
        assert deciding is not None
        detail = f"{deciding.id}: {deciding.description}"
        if base is not None and own is not None:
            self.hits[base.id] += 1
            detail += f" (baseline {base.id} allows too)"
        stance = _STANCES.get(base.kind) if base is not None else None
        if stance is None and own is not None:
            stance = _STANCES.get(own.kind)
        if stance is None and internet:
            stance = Obligation.INSPECT
        if stance is Obligation.DO_NOT_INSPECT and Obligation.SANITISE in obligations:
            stance = Obligation.INSPECT if internet else None
        if stance is not None:
            obligations = obligations | {stance}
        minutes = min((r.mfa_within_minutes for r in (base, own)
                       if r is not None and r.mfa_within_minutes is not None), default=None)
        return _allow(deciding.layer, deciding.id, detail, app_id, obligations, minutes)

    # -- cache keys -----------------------------------------------------------------------

    def request_key(self, r: PolicyRequest) -> RequestKey:
        """The fields a decision depends on, bucketed: time by the marks where any window
        opens or closes, MFA age by the rules' thresholds, addresses only where they matter."""
        marks = self._time_marks
        time_bucket = bisect_right(marks, r.weekday * 1440 + r.minute_of_day) if marks else 0
        age = r.mfa_age_seconds
        if not r.mfa:
            mfa_bucket = -2
        elif age is None:            # MFA done (the guard's test) but its age unknown (rules')
            mfa_bucket = -1
        else:
            mfa_bucket = bisect_left(self._mfa_thresholds, age) if self._mfa_thresholds else 0
        return (r.tenant, r.user, r.groups, r.segment, r.posture_compliant, r.posture_profile,
                r.host, r.port, r.url_category, mfa_bucket, time_bucket,
                r.address if r.segment is Zone.MYNUMBER else None,
                r.source_address if self._uses_networks else None)


_NOWHERE = _Destination(None, None, False)


def _allow(layer: str, rule_id: str, detail: str, app_id: str | None,
           obligations: frozenset[Obligation], minutes: int | None) -> PolicyDecision:
    return PolicyDecision(True, layer, rule_id, _ALLOWED, detail, app_id, obligations, minutes)


def _deny(rule: _Rule, app_id: str | None) -> PolicyDecision:
    return PolicyDecision(False, rule.layer, rule.id, (Reason.POLICY_DENIED.value,),
                          f"{rule.id}: {rule.description}", app_id)


def _mfa_refusal(rule: _Rule, request: PolicyRequest, app_id: str | None) -> PolicyDecision | None:
    minutes = rule.mfa_within_minutes
    assert minutes is not None
    age = request.mfa_age_seconds
    if not request.mfa or age is None:
        reason = Reason.MFA_REQUIRED
    elif age > minutes * 60:
        reason = Reason.MFA_TOO_OLD
    else:
        return None
    return PolicyDecision(False, rule.layer, rule.id, (reason.value,),
                          f"{rule.id}: {rule.description} (MFA within {minutes} minutes)", app_id,
                          mfa_within_minutes=minutes)


def compile_policy(municipality: Policy, baseline: Policy | None = None, *,
                   revision: str | None = None) -> CompiledPolicy:
    """Validate both policies (`PolicyError` with the path of the bad field, the baseline's paths
    starting with `baseline.`) and build the indexes. `revision` defaults to a digest of both."""
    if baseline is not None:
        check_policy(baseline, prefix="baseline.")
    check_policy(municipality, baseline)
    if revision is None:
        revision = hashlib.sha256(repr((municipality, baseline)).encode()).hexdigest()[:16]
    return CompiledPolicy(municipality, baseline, revision)


def decide(compiled: CompiledPolicy, request: PolicyRequest) -> PolicyDecision:
    return compiled.decide(request)


class DecisionCache:
    """A bounded LRU of decisions keyed by (policy revision, `request_key`), safe to share
    between tenants: when a tenant's compiled policy changes revision, that tenant's entries
    of the old revision are dropped at once (the rest age out). A hit also counts towards the
    deciding rule's `hits`."""

    def __init__(self, max_entries: int = 65536) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._revisions: dict[str, str] = {}          # tenant id -> revision cached for it
        self._entries: OrderedDict[tuple[str, RequestKey], PolicyDecision] = OrderedDict()

    def decide(self, compiled: CompiledPolicy, request: PolicyRequest) -> PolicyDecision:
        revision = compiled.revision
        tenant = compiled.tenant.id
        known = self._revisions.get(tenant)
        if known != revision:
            if known is not None:
                for stale in [k for k in self._entries if k[0] == known]:
                    del self._entries[stale]
            self._revisions[tenant] = revision
        key = (revision, compiled.request_key(request))
        entries = self._entries
        decision = entries.get(key)
        if decision is not None:
            entries.move_to_end(key)
            self.hits += 1
            counts = compiled.hits
            counts[decision.rule_id] = counts.get(decision.rule_id, 0) + 1
            return decision
        self.misses += 1
        decision = compiled.decide(request)
        entries[key] = decision
        if len(entries) > self.max_entries:
            entries.popitem(last=False)
        return decision

    def clear(self) -> None:
        self._entries.clear()
        self._revisions.clear()

    def __len__(self) -> int:
        return len(self._entries)
