"""broker/fair_share.py: quotas from the config, and the token bucket's pauses."""

from __future__ import annotations

import pytest

from broker.fair_share import Quota, TokenBucket, parse_quotas
from ztcore.errors import ConfigError


def test_defaults_and_per_tenant_quotas() -> None:
    default, quotas = parse_quotas({"max_streams_per_tenant": 100, "max_mbps_per_tenant": 8},
                                   {"big-city": {"max_streams": 500, "max_mbps": 80},
                                    "small-town": {"max_streams": 20}})
    assert default == Quota(100, 1_000_000.0)
    assert quotas["big-city"] == Quota(500, 10_000_000.0)
    assert quotas["small-town"] == Quota(20, 1_000_000.0)     # the default rate
    assert parse_quotas({}, {})[0] == Quota(5000, 0.0)          # no bandwidth limit by default


@pytest.mark.parametrize(("broker", "quotas", "path"), [
    ({"max_streams_per_tenant": 0}, {}, "broker.max_streams_per_tenant"),
    ({"max_mbps_per_tenant": -1}, {}, "broker.max_mbps_per_tenant"),
    ({}, {"x": 3}, "quotas.x: expected a table"),
    ({}, {"x": {"max_streams": "10"}}, "quotas.x.max_streams"),
    ({}, {"x": {"burst": 1}}, "quotas.x.burst: unknown"),
])
def test_bad_quotas_name_the_field(broker: dict[str, object], quotas: dict[str, object],
                                   path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        parse_quotas(broker, quotas)


def test_the_bucket_allows_a_burst_then_paces_to_its_rate() -> None:
    bucket = TokenBucket(1_000_000, now=0.0)             # 1 MB/s, 1 MB burst
    assert bucket.consume(1_000_000, 0.0) == 0.0
    assert bucket.consume(500_000, 0.0) == pytest.approx(0.5)
    assert bucket.consume(0, 0.5) == 0.0                  # paid back after the pause
    total, now = 0, 0.5
    for _ in range(100):                                  # a steady reader: 1 MB/s on average
        now += bucket.consume(100_000, now)
        total += 100_000
    assert total / now == pytest.approx(1_000_000, rel=0.15)
