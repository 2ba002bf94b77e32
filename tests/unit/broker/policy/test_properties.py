"""The three-layer guard holds whatever the rules say: random policies (random apps in random
zones, overlapping host patterns, random rules including allow-everything ones, with or without
a prefecture baseline) against random requests, judged by an independent oracle."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.policy.engine import DecisionCache, compile_policy, decide
from broker.policy.model import App, Policy, PolicyRequest, SpecificCommunication, Zone
from broker.policy.yaml_io import dump_policy_yaml, load_policy_yaml
from tests.unit.broker.policy.fixtures import baseline_and_city, policies, requests


def covers(app: App, host: str, category: str | None) -> bool:
    for pattern in app.hosts:
        if pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return not app.hosts and category is not None and category in app.categories


def in_network(text: str | None, network: str) -> bool:
    try:
        return ip_address(text or "") in ip_network(network)
    except ValueError:
        return False


def is_specific(comm: SpecificCommunication, r: PolicyRequest) -> bool:
    return (r.port == comm.port and (r.host == comm.host or in_network(r.host, comm.address))
            and (r.address is None or in_network(r.address, comm.address)))


def visible(baseline: Policy | None, city: Policy) -> tuple[list[App], list[SpecificCommunication]]:
    layers = [city] + ([baseline] if baseline else [])
    return ([a for p in layers for a in p.apps], [c for p in layers for c in p.specific_communications])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(baseline_and_city(), st.lists(requests, min_size=1, max_size=12))
def test_no_rule_lifts_the_three_layer_guard(policies_: tuple[Policy | None, Policy],
                                             batch: list[PolicyRequest]) -> None:
    baseline, city = policies_
    compiled = compile_policy(city, baseline)
    cache = DecisionCache(max_entries=4)
    apps, specifics = visible(baseline, city)
    for r in batch:
        decision = decide(compiled, r)
        assert decision.rule_id != "engine:internal-error", decision.detail
        assert cache.decide(compiled, r) == decision
        if not decision.allowed:
            continue
        if r.segment is Zone.INTERNET:
            assert not any(a.zone is Zone.MYNUMBER and covers(a, r.host, r.url_category) for a in apps), decision
        if r.segment is Zone.MYNUMBER:
            assert any(is_specific(c, r) for c in specifics), decision
        if r.segment is not Zone.MYNUMBER:
            assert not any(a.zone is Zone.MYNUMBER and covers(a, r.host, r.url_category) for a in apps)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_yaml_round_trip(policy: Policy) -> None:
    assert load_policy_yaml(dump_policy_yaml(policy)) == policy
