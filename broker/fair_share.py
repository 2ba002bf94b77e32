"""Per-tenant fair share of a broker: how many concurrent streams, and how many bytes a second.

`[broker] max_streams_per_tenant` / `max_mbps_per_tenant` set the default share; `[quotas.<tenant>]
max_streams = N, max_mbps = M` gives one municipality its own. Pure: the token bucket takes
`now`; the broker's pipes ask it how long to pause reading (broker/runtime/tunnel_server.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ztcore.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Quota:
    max_streams: int                # concurrent streams
    max_bytes_per_second: float     # 0: not limited


def parse_quotas(broker: Mapping[str, Any], quotas: Mapping[str, Any]) -> tuple[Quota, dict[str, Quota]]:
    """(the default quota, per-tenant quotas); ConfigError naming the bad field."""
    def streams(section: Mapping[str, Any], path: str, default: int) -> int:
        value = section.get("max_streams" if path.startswith("quotas") else "max_streams_per_tenant",
                            default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{path}: expected a whole number of streams >= 1, got {value!r}")
        return value

    def mbps(section: Mapping[str, Any], path: str, default: float) -> float:
        value = section.get("max_mbps" if path.startswith("quotas") else "max_mbps_per_tenant",
                            default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{path}: expected megabits per second >= 0 (0: no limit), "
                              f"got {value!r}")
        return float(value)

    default = Quota(streams(broker, "broker.max_streams_per_tenant", 5000),
                    mbps(broker, "broker.max_mbps_per_tenant", 0) * 125_000)
    out: dict[str, Quota] = {}
    for tenant, section in quotas.items():
        path = f"quotas.{tenant}"
        if not isinstance(section, Mapping):
            raise ConfigError(f"{path}: expected a table (max_streams, max_mbps)")
        unknown = sorted(set(section) - {"max_streams", "max_mbps"})
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}: unknown setting")
        out[str(tenant)] = Quota(streams(section, f"{path}.max_streams", default.max_streams),
                                 mbps(section, f"{path}.max_mbps",
                                      default.max_bytes_per_second / 125_000) * 125_000)
    return default, out


class TokenBucket:
    """Bytes a second with a burst of one second's worth; `consume` says how long to wait."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, bytes_per_second: float, now: float) -> None:
        self.rate = bytes_per_second
        self.burst = max(bytes_per_second, 64 * 1024.0)
        self.tokens = self.burst
        self.updated = now

    def consume(self, nbytes: int, now: float) -> float:
        """Take `nbytes` (the debt may go negative); seconds to pause before reading more."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= nbytes
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
