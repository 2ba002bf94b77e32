"""What a session token costs per new stream: a full check (signature, claims) against the
per-connection cache hit the tunnel uses (`broker.sessions.still_valid`).

    .venv/bin/python -m tests.bench.sessions
"""

from __future__ import annotations

import time
from collections.abc import Callable

from broker.sessions import still_valid
from tests.unit.broker.sessions_harness import AUTHORITY, DEVICE, NOW, TOKEN

REVOKED = frozenset(f"revoked-{i}" for i in range(10_000))   # a busy day's revocations


def per_call_microseconds(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    token = TOKEN.encode()
    checked = AUTHORITY.verify(token, DEVICE, NOW, REVOKED)
    assert checked.allowed
    full = per_call_microseconds(lambda: AUTHORITY.verify(token, DEVICE, NOW, REVOKED, 900), 2_000)
    cached = per_call_microseconds(lambda: still_valid(checked, NOW, REVOKED, 900), 200_000)
    print(f"token: {len(token)} bytes")
    print(f"full check (EdDSA signature, claims):      {full:8.1f} µs per stream")
    print(f"cached per connection (expiry/revocation): {cached:8.2f} µs per stream")


if __name__ == "__main__":
    main()
