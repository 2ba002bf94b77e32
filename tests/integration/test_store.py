"""The broker store (broker/runtime/store.py) on SQLite and on a real PostgreSQL.

Every test runs on both backends through the `store_url` / `store` fixtures in conftest.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from broker.devices import Device, RedeemOutcome
from broker.enrolment import format_code, hash_code
from broker.runtime.store import METADATA, Store, StoreError, engine_url
from ztcore.errors import ConfigError

NOW = 1_750_000_000.0
HOUR = 3600.0


def _hash(n: int) -> str:
    return hash_code(format_code(n.to_bytes(10, "big")))


def _device(device_id: str = "dev-1", tenant_id: str = "city-a", **changes: object) -> Device:
    fields: dict[str, object] = dict(
        id=device_id, tenant_id=tenant_id, name="庁内PC-001", status="active", created_at=NOW,
        cert_serial="7f3a", cert_fingerprint="ab" * 32, cert_not_after=NOW + 90 * 86400,
        revoked_at=None, revoke_reason="", last_seen_at=None)
    fields.update(changes)
    return Device(**fields)  # type: ignore[arg-type]


# -- schema --------------------------------------------------------------------------------------

def test_migrate_twice_is_idempotent(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.migrate()
    store.migrate()
    assert [t.id for t in store.list_tenants()] == ["city-a"]
    assert store.devices_revision() == 0


def test_migrations_match_the_tables_the_store_queries(store_url: str) -> None:
    with Store(store_url) as store:
        store.migrate()
    engine = sa.create_engine(engine_url(store_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, METADATA)
    finally:
        engine.dispose()
    assert diff == []


def test_migrate_does_not_depend_on_the_working_directory(
        store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store(store_url) as store:
        store.migrate()
        assert store.list_tenants() == []


def test_an_unmigrated_database_gives_a_store_error(store_url: str) -> None:
    with Store(store_url) as store, pytest.raises(StoreError, match="cannot list tenants"):
        store.list_tenants()


# -- tenants -------------------------------------------------------------------------------------

def test_tenants(store: Store) -> None:
    added = store.add_tenant("city-b", "B市", NOW)
    store.add_tenant("city-a", "A町", NOW + 1)
    assert added.name == "B市"
    assert store.get_tenant("city-b") == added
    assert store.get_tenant("nowhere") is None
    assert [t.id for t in store.list_tenants()] == ["city-a", "city-b"]


def test_duplicate_tenant_is_refused(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    with pytest.raises(StoreError, match="tenant 'city-a' already exists"):
        store.add_tenant("city-a", "Other", NOW + 1)
    assert store.get_tenant("city-a") is not None
    assert store.get_tenant("city-a").name == "City A"  # type: ignore[union-attr]


def test_invalid_tenant_id_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="invalid tenant id"):
        store.add_tenant("City A", "City A", NOW)
    assert store.list_tenants() == []


# -- enrolment codes -----------------------------------------------------------------------------

def test_code_redeems_once_then_is_used(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    created = store.create_enrolment_code("city-a", _hash(1), NOW, NOW + HOUR, label="田中PC")
    assert created.used_at is None and created.label == "田中PC"
    assert store.redeem_enrolment_code(_hash(1), NOW + 10, "dev-1") == (RedeemOutcome.OK,
                                                                        "city-a")
    assert store.redeem_enrolment_code(_hash(1), NOW + 20, "dev-2") == (RedeemOutcome.USED, None)
    [row] = store.list_enrolment_codes("city-a")
    assert (row.id, row.used_at, row.used_by_device) == (created.id, NOW + 10, "dev-1")


def test_expired_code(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.create_enrolment_code("city-a", _hash(1), NOW, NOW + HOUR)
    # expires_at itself is already too late.
    assert store.redeem_enrolment_code(_hash(1), NOW + HOUR, "dev-1") == (
        RedeemOutcome.EXPIRED, None)
    assert store.redeem_enrolment_code(_hash(1), NOW + HOUR - 0.5, "dev-1") == (
        RedeemOutcome.OK, "city-a")


def test_expired_code_stays_unused(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.create_enrolment_code("city-a", _hash(1), NOW, NOW + HOUR)
    store.redeem_enrolment_code(_hash(1), NOW + 2 * HOUR, "dev-1")
    [row] = store.list_enrolment_codes()
    assert row.used_at is None and row.used_by_device is None


def test_unknown_code_is_invalid(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.create_enrolment_code("city-a", _hash(1), NOW, NOW + HOUR)
    assert store.redeem_enrolment_code(_hash(2), NOW, "dev-1") == (RedeemOutcome.INVALID, None)
    assert store.redeem_enrolment_code("", NOW, "dev-1") == (RedeemOutcome.INVALID, None)


def test_code_for_unknown_tenant_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown tenant 'ghost'"):
        store.create_enrolment_code("ghost", _hash(1), NOW, NOW + HOUR)
    assert store.list_enrolment_codes() == []


def test_duplicate_code_hash_is_refused(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.create_enrolment_code("city-a", _hash(1), NOW, NOW + HOUR)
    with pytest.raises(StoreError, match="already exists"):
        store.create_enrolment_code("city-a", _hash(1), NOW, NOW + HOUR)


def test_list_enrolment_codes_by_tenant(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.add_tenant("city-b", "City B", NOW)
    a1 = store.create_enrolment_code("city-a", _hash(1), NOW, NOW + HOUR)
    b1 = store.create_enrolment_code("city-b", _hash(2), NOW, NOW + HOUR)
    a2 = store.create_enrolment_code("city-a", _hash(3), NOW, NOW + HOUR)
    assert store.list_enrolment_codes("city-a") == [a1, a2]
    assert store.list_enrolment_codes() == [a1, b1, a2]
    assert store.list_enrolment_codes("nowhere") == []


def test_concurrent_redeem_has_exactly_one_winner(store_url: str) -> None:
    """Eight brokers (separate Store instances, separate connections) race for each code."""
    workers = 8
    rounds = 5
    with Store(store_url) as admin:
        admin.migrate()
        admin.add_tenant("city-a", "City A", NOW)
        for n in range(rounds):
            admin.create_enrolment_code("city-a", _hash(n), NOW, NOW + HOUR)
        brokers = [Store(store_url) for _ in range(workers)]
        try:
            for broker in brokers:  # open a pooled connection first, so the race is the UPDATE
                broker.devices_revision()
            for n in range(rounds):
                barrier = threading.Barrier(workers)

                def redeem(i: int, n: int = n, barrier: threading.Barrier = barrier,
                           ) -> tuple[RedeemOutcome, str | None]:
                    barrier.wait()
                    return brokers[i].redeem_enrolment_code(_hash(n), NOW + 1, f"dev-{n}-{i}")

                with ThreadPoolExecutor(workers) as pool:
                    results = list(pool.map(redeem, range(workers)))
                outcomes = Counter(outcome for outcome, _ in results)
                assert outcomes == {RedeemOutcome.OK: 1, RedeemOutcome.USED: workers - 1}
                winner = next(i for i, (o, _) in enumerate(results) if o is RedeemOutcome.OK)
                assert results[winner][1] == "city-a"
                [code] = [c for c in admin.list_enrolment_codes() if c.code_hash == _hash(n)]
                assert code.used_by_device == f"dev-{n}-{winner}"
        finally:
            for broker in brokers:
                broker.close()


# -- devices -------------------------------------------------------------------------------------

def test_device_add_get_list(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.add_tenant("city-b", "City B", NOW)
    d1 = _device("dev-1", "city-a")
    d2 = _device("dev-2", "city-b", created_at=NOW - 5)
    d3 = _device("dev-3", "city-a", created_at=NOW - 5)
    for device in (d1, d2, d3):
        store.add_device(device)
    assert store.get_device("dev-1") == d1
    assert store.get_device("nope") is None
    assert store.list_devices("city-a") == [d3, d1]
    assert store.list_devices() == [d3, d1, d2]


def test_device_errors(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    with pytest.raises(StoreError, match="unknown tenant 'ghost'"):
        store.add_device(_device("dev-1", "ghost"))
    store.add_device(_device("dev-1"))
    with pytest.raises(StoreError, match="device 'dev-1' already exists"):
        store.add_device(_device("dev-1", name="other"))
    assert store.devices_revision() == 1
    assert store.get_device("dev-1") == _device("dev-1")


def test_revoke_bumps_the_revision(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    assert store.devices_revision() == 0
    store.add_device(_device("dev-1"))
    store.add_device(_device("dev-2"))
    assert store.devices_revision() == 2
    assert store.revoke_device("dev-1", "lost laptop", NOW + 60) is True
    assert store.devices_revision() == 3
    revoked = store.get_device("dev-1")
    assert revoked is not None and revoked.revoked
    assert (revoked.revoked_at, revoked.revoke_reason) == (NOW + 60, "lost laptop")
    assert store.get_device("dev-2").status == "active"  # type: ignore[union-attr]
    # Again: still revoked as first recorded, nothing for the registry to reload.
    assert store.revoke_device("dev-1", "second try", NOW + 120) is True
    assert store.get_device("dev-1") == revoked
    assert store.devices_revision() == 3
    assert store.revoke_device("nope", "x", NOW) is False
    assert store.devices_revision() == 3


def test_certificate_update(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.add_device(_device("dev-1"))
    store.add_device(_device("dev-2"))
    before = store.devices_revision()
    store.update_device_certificate("dev-1", "8a01", "cd" * 32, NOW + 180 * 86400, NOW + 30)
    assert store.devices_revision() == before + 1
    assert store.get_device("dev-1") == _device(
        "dev-1", cert_serial="8a01", cert_fingerprint="cd" * 32,
        cert_not_after=NOW + 180 * 86400, last_seen_at=NOW + 30)
    assert store.get_device("dev-2") == _device("dev-2")
    with pytest.raises(StoreError, match="unknown device 'nope'"):
        store.update_device_certificate("nope", "1", "2", NOW, NOW)
    assert store.devices_revision() == before + 1


def test_certificate_update_keeps_a_revoked_device_revoked(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.add_device(_device("dev-1"))
    store.revoke_device("dev-1", "stolen", NOW + 1)
    store.update_device_certificate("dev-1", "8a01", "cd" * 32, NOW + 86400, NOW + 2)
    assert store.get_device("dev-1").status == "revoked"  # type: ignore[union-attr]


def test_touch_device(store: Store) -> None:
    store.add_tenant("city-a", "City A", NOW)
    store.add_device(_device("dev-1"))
    revision = store.devices_revision()
    store.touch_device("dev-1", NOW + 10)
    assert store.get_device("dev-1").last_seen_at == NOW + 10  # type: ignore[union-attr]
    store.touch_device("dev-1", NOW + 5)  # a late, older report does not move it back
    assert store.get_device("dev-1").last_seen_at == NOW + 10  # type: ignore[union-attr]
    store.touch_device("nope", NOW)
    assert store.devices_revision() == revision


def test_separate_stores_see_each_others_revisions(store_url: str) -> None:
    with Store(store_url) as writer, Store(store_url) as reader:
        writer.migrate()
        writer.add_tenant("city-a", "City A", NOW)
        assert reader.devices_revision() == 0
        writer.add_device(_device("dev-1"))
        assert reader.devices_revision() == 1
        assert [d.id for d in reader.list_devices()] == ["dev-1"]


# -- edges ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "mysql://root@localhost/test",
    "postgresql+asyncpg://postgres@localhost/test",
    "sqlite://",
    "sqlite:///:memory:",
    "not a url",
])
def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="store url"):
        Store(url)


def test_postgres_url_uses_psycopg3() -> None:
    url = engine_url("postgresql://u:secret@db.example/sk?options=-csearch_path%3Dx")
    assert url.drivername == "postgresql+psycopg"
    assert url.query["options"] == "-csearch_path=x"


def test_unreachable_postgres_is_a_store_error() -> None:
    # Port 1 on loopback: refused at once, nothing listens there.
    with Store("postgresql://postgres@127.0.0.1:1/test") as store:
        with pytest.raises(StoreError, match="cannot migrate the database"):
            store.migrate()


def test_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}") as store:
        with pytest.raises(StoreError, match="cannot list tenants"):
            store.list_tenants()
