"""A tenant's routing in force, read from the store: its own document, else its prefecture's,
else the defaults; and the breakout rules it compiles to with the Microsoft data in force.
For the CLI and the admin API (the tunnel's RoutingService caches its own per revision)."""

from __future__ import annotations

from broker.m365 import STORE_INSTANCE as M365_INSTANCE
from broker.routing import RoutingPolicy, compile_breakout, effective_routing, load_routing
from broker.runtime.m365_import import stored_data
from broker.runtime.store import Store, StoreError
from ztcore.breakout import BreakoutRules


def routing_in_force(store: Store, tenant_id: str) -> tuple[RoutingPolicy, str]:
    """(the policy, where it comes from); StoreError for an unknown tenant. A stored document
    is valid (checked before it was stored); ConfigError if a newer broker wrote it."""
    tenant = store.get_tenant(tenant_id)
    if tenant is None:
        raise StoreError(f"unknown tenant {tenant_id!r}")
    own = store.get_routing(tenant_id)
    parent = store.get_routing(tenant.parent) if tenant.parent else None
    origin = (f"own, revision {own.revision}" if own else
              f"inherited from {tenant.parent}" if parent else "defaults")
    policy = effective_routing(load_routing(own.document) if own else None,
                               load_routing(parent.document) if parent else None)
    return policy, origin


def tenant_breakout(store: Store, tenant_id: str) -> BreakoutRules:
    policy, _ = routing_in_force(store, tenant_id)
    found = stored_data(store, None, M365_INSTANCE)
    return compile_breakout(tenant_id, policy.breakout, found[1].sets if found else (),
                            found[0].version if found else "none")
