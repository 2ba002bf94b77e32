"""The store's identity records (broker/runtime/identity_store.py) on SQLite and PostgreSQL:
TOTP state changed atomically per user, sessions, revocations and their revision."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest

from broker.runtime.identity_store import LoginSessionRecord
from broker.runtime.store import Store, StoreError
from idp_bridge.totp import TotpOutcome, TotpState, new_secret, open_secret, seal_secret, verify_code
from ztcore.reasons import Reason

NOW = 1_800_000_000.0
KEY = bytes(range(32))


@pytest.fixture
def tenant_store(store: Store) -> Store:
    store.add_tenant("city-a", "A市", NOW)
    return store


def _session(sid: str, username: str = "alice", device: str = "dev-1",
             expires_at: float = NOW + 3600) -> LoginSessionRecord:
    return LoginSessionRecord(sid=sid, tenant_id="city-a", device_id=device, subject=f"uid={username}",
                              username=username, idp="ad", methods=("otp", "pwd"), auth_time=NOW,
                              created_at=NOW, expires_at=expires_at)


def test_a_totp_code_is_accepted_once_even_by_concurrent_brokers(tenant_store: Store) -> None:
    secret = new_secret()
    tenant_store.put_totp_factor("city-a", "alice", seal_secret(secret, KEY, "city-a", "alice",
                                                                bytes(12)), NOW)
    code = pyotp.TOTP(secret).at(NOW)
    barrier = threading.Barrier(8)

    def attempt(_: int) -> TotpOutcome | None:
        barrier.wait()

        def check(sealed: bytes, state: TotpState) -> tuple[TotpOutcome, TotpState]:
            return verify_code(open_secret(sealed, KEY, "city-a", "alice"), code, NOW, state)
        return tenant_store.totp_attempt("city-a", "alice", check)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    reasons = sorted(o.reason.value for o in outcomes if o is not None)
    assert reasons.count(Reason.TOTP_ACCEPTED.value) == 1, reasons
    assert reasons.count(Reason.TOTP_REPLAYED.value) + reasons.count(Reason.TOTP_RATE_LIMITED.value) == 7


def test_no_factor_means_none_and_re_enrolment_resets_the_state(tenant_store: Store) -> None:
    assert tenant_store.totp_attempt("city-a", "bob", lambda s, st: (None, st)) is None
    tenant_store.put_totp_factor("city-a", "bob", b"sealed-1", NOW)
    tenant_store.totp_attempt("city-a", "bob", lambda s, st: (None, TotpState(7, (NOW,), 1)))
    assert tenant_store.list_totp_users("city-a") == [("bob", NOW, 1)]
    tenant_store.put_totp_factor("city-a", "bob", b"sealed-2", NOW + 1)
    seen: list[tuple[bytes, TotpState]] = []
    tenant_store.totp_attempt("city-a", "bob", lambda s, st: (seen.append((s, st)), st))
    assert seen == [(b"sealed-2", TotpState())]
    assert tenant_store.delete_totp_factor("city-a", "bob")
    assert not tenant_store.delete_totp_factor("city-a", "bob")
    with pytest.raises(StoreError, match="unknown tenant"):
        tenant_store.put_totp_factor("nowhere", "bob", b"x", NOW)


def test_revocations_bump_the_revision_and_show_in_the_revoked_set(tenant_store: Store) -> None:
    tenant_store.add_login_session(_session("s1"))
    tenant_store.add_login_session(_session("s2", device="dev-2"))
    tenant_store.add_login_session(_session("s3", username="carol"))
    before = tenant_store.sessions_revision()
    assert tenant_store.revoke_login_sessions("city-a", NOW + 10, "lost laptop", username="alice",
                                              device_id="dev-2") == 1
    assert tenant_store.sessions_revision() == before + 1
    assert tenant_store.revoked_ids(NOW + 11) == {"s2"}
    assert tenant_store.revoke_login_sessions("city-a", NOW + 12, "again", sid="s2") == 0
    assert tenant_store.sessions_revision() == before + 1          # nothing changed
    tenant_store.revoke_token("jti-9", "city-a", NOW + 900, NOW + 13)
    assert tenant_store.revoked_ids(NOW + 14) == {"s2", "jti-9"}
    assert tenant_store.revoked_ids(NOW + 3600) == set()            # expired ones drop out
    live = tenant_store.list_login_sessions("city-a", active_at=NOW + 20)
    assert [s.sid for s in live] == ["s1", "s3"]
    with pytest.raises(StoreError, match="needs a user"):
        tenant_store.revoke_login_sessions("city-a", NOW, "all?")
    with pytest.raises(StoreError, match="already exists"):
        tenant_store.add_login_session(_session("s1"))


def test_published_session_keys_are_listed_until_their_grace_ends(tenant_store: Store) -> None:
    before = tenant_store.sessions_revision()
    tenant_store.publish_session_keys("broker-a", [("kid-a", b"a" * 32, None),
                                                   ("kid-old", b"o" * 32, NOW + 60)], NOW)
    tenant_store.publish_session_keys("broker-b", [("kid-b", b"b" * 32, None)], NOW)
    assert tenant_store.sessions_revision() == before + 2
    assert tenant_store.session_keys(NOW) == [("kid-a", b"a" * 32, None), ("kid-b", b"b" * 32, None),
                                              ("kid-old", b"o" * 32, NOW + 60)]
    assert [k for k, _, _ in tenant_store.session_keys(NOW + 61)] == ["kid-a", "kid-b"]
    # broker-a restarts after a rotation: its old active key gets a grace period
    tenant_store.publish_session_keys("broker-a", [("kid-a2", b"c" * 32, None),
                                                   ("kid-a", b"a" * 32, NOW + 3600)], NOW + 100)
    assert ("kid-a", b"a" * 32, NOW + 3600) in tenant_store.session_keys(NOW + 100)
