"""The broker's policy service: every tenant's compiled policy, and the decision per stream.

Policies come from the store (`tenant_policies`, YAML) and the tenancy (`tenants.parent`,
`tenants.model`): a municipality's policy is compiled with its prefecture's as the baseline.
A tenant without a document still gets the three-layer guard and the defaults. The whole set is
rebuilt off the event loop when the store's policy revision changes and swapped in one
assignment; a document that no longer compiles keeps that tenant's previous policy (and says
so in the log), so a bad edit never opens or closes anything by accident.

Decisions are cached per (policy generation, request key) in a bounded LRU
(`broker.policy.engine.DecisionCache`); a new generation empties it. Each tenant's rule hit
counters stay in memory for `sekimori policy lint` (never-hit rules).
"""

from __future__ import annotations

import json
import logging
import os
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from broker.devices import Tenant as StoredTenant
from broker.policy.engine import CompiledPolicy, DecisionCache, compile_policy
from broker.policy.model import Policy, PolicyDecision, PolicyRequest, SecurityModel, Tenant
from broker.policy.yaml_io import PolicyError, load_policy_yaml
from broker.runtime.policy_store import PolicyDocument
from ztcore.decision import Decision, allow, deny
from ztcore.reasons import Reason

log = logging.getLogger("sekimori.policy")
LOCAL_TIME = zoneinfo.ZoneInfo("Asia/Tokyo")


class PolicySource(Protocol):
    def list_tenants(self) -> list[StoredTenant]: ...
    def list_policies(self) -> list[PolicyDocument]: ...
    def policy_revision(self) -> int: ...


def _bare(tenant: StoredTenant) -> Policy:
    return Policy(tenant=Tenant(tenant.id, tenant.name, tenant.parent,
                                SecurityModel(tenant.model)))


def build_policies(tenants: Iterable[StoredTenant], documents: Iterable[PolicyDocument],
                   previous: dict[str, CompiledPolicy]) -> tuple[dict[str, CompiledPolicy], list[str]]:
    """Compile every tenant's policy; returns the set and the problems found (a tenant whose
    document fails keeps its previous compiled policy, or the bare guard-and-defaults one)."""
    stored = {t.id: t for t in tenants}
    problems: list[str] = []
    policies: dict[str, Policy] = {tid: _bare(t) for tid, t in stored.items()}
    # prefectures first: a municipality's document may name its prefecture's apps
    ordered = sorted(documents, key=lambda d: stored[d.tenant_id].parent is not None
                     if d.tenant_id in stored else True)
    for doc in ordered:
        tenant = stored.get(doc.tenant_id)
        if tenant is None:
            continue
        try:
            parsed = load_policy_yaml(doc.document,
                                      policies.get(tenant.parent) if tenant.parent else None)
        except PolicyError as exc:
            problems.append(f"{doc.tenant_id} revision {doc.revision}: {exc}")
            continue
        # The store's tenancy is the truth for who the parent is and which model applies.
        policies[tenant.id] = Policy(
            tenant=Tenant(tenant.id, parsed.tenant.name or tenant.name, tenant.parent,
                          SecurityModel(tenant.model)),
            apps=parsed.apps, app_groups=parsed.app_groups,
            specific_communications=parsed.specific_communications, rules=parsed.rules)
    compiled: dict[str, CompiledPolicy] = {}
    failed = {p.split(" ", 1)[0] for p in problems}
    for tid, policy in policies.items():
        if tid in failed and tid in previous:
            compiled[tid] = previous[tid]
            continue
        parent = stored[tid].parent
        baseline = policies.get(parent) if parent else None
        try:
            compiled[tid] = compile_policy(policy, baseline)
        except PolicyError as exc:
            problems.append(f"{tid}: {exc}")
            if tid in previous:
                compiled[tid] = previous[tid]
    return compiled, problems


@dataclass
class PolicyService:
    source: PolicySource
    revision: int = -1
    problems: list[str] = field(default_factory=list)
    # (generation, compiled policies, decision cache), swapped as one reference
    current: tuple[int, dict[str, CompiledPolicy], DecisionCache] = field(
        default_factory=lambda: (0, {}, DecisionCache()))

    @property
    def policies(self) -> dict[str, CompiledPolicy]:
        return self.current[1]

    def reload_if_changed(self) -> bool:
        """Blocking (store reads and compiling): call from a worker thread. True if swapped."""
        revision = self.source.policy_revision()
        if revision == self.revision:
            return False
        generation, previous, _ = self.current
        compiled, problems = build_policies(self.source.list_tenants(), self.source.list_policies(),
                                            previous)
        for problem in problems:
            log.error("policy not applied, previous kept: %s", problem)
        self.current = (generation + 1, compiled, DecisionCache())
        self.problems, self.revision = problems, revision
        return True

    def decide(self, request: PolicyRequest) -> PolicyDecision | None:
        """The policy decision for a stream; None when the tenant is unknown to the service
        (the registry check refuses such devices before)."""
        _, policies, cache = self.current
        compiled = policies.get(request.tenant)
        if compiled is None:
            return None
        return cache.decide(compiled, request)


def write_hits(service: PolicyService, path: Path) -> None:
    """Each tenant's rule hit counters (since this broker started) for `policy lint`."""
    counts = {tenant: dict(compiled.hits) for tenant, compiled in service.policies.items()}
    tmp = path.with_suffix(".new")
    tmp.write_text(json.dumps(counts, ensure_ascii=False))
    os.replace(tmp, path)


def local_time(now: float) -> tuple[int, int]:
    """(weekday, minute of day) in Japan, where every tenant is."""
    moment = datetime.fromtimestamp(now, LOCAL_TIME)
    return moment.weekday(), moment.hour * 60 + moment.minute


def as_decision(decision: PolicyDecision) -> Decision:
    """The tunnel's Decision for a policy decision (reason, rule id, detail)."""
    reason = Reason(decision.reasons[0]) if decision.reasons else (
        Reason.POLICY_ALLOWED if decision.allowed else Reason.POLICY_DENIED)
    if decision.allowed:
        return allow(reason, rule_id=decision.rule_id)
    return deny(reason, status=403, rule_id=decision.rule_id, detail=decision.detail)
