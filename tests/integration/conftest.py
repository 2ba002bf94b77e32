"""Shared fixtures for the integration tests."""

from __future__ import annotations

# ---- store fixtures (broker/runtime/store.py) -----------------------------------------------
# `store_url` is a fresh, empty database per test: a SQLite file under tmp_path, or a new schema
# in the PostgreSQL database `test` on 127.0.0.1:5432 (trust auth), dropped afterwards. The
# PostgreSQL parameter is skipped, with the reason, when that server cannot be reached.
# `store` is a migrated Store on that URL.

import functools
import secrets
from collections.abc import Iterator

import pytest

from broker.runtime.store import Store

_PG_HOST = "127.0.0.1"
_PG_PORT = 5432
_PG_DATABASE = "test"
_PG_USERS = ("postgres", "root")


@functools.cache
def _pg_user() -> tuple[str | None, str]:
    """The first user that can log in to the test database, or None and why none could."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed"
    errors = []
    for user in _PG_USERS:
        try:
            with psycopg.connect(host=_PG_HOST, port=_PG_PORT, dbname=_PG_DATABASE, user=user,
                                 connect_timeout=3):
                return user, ""
        except psycopg.Error as exc:
            errors.append(f"{user}: {' '.join(str(exc).split())}")
    return None, (f"PostgreSQL not reachable at {_PG_HOST}:{_PG_PORT}/{_PG_DATABASE} "
                  f"({'; '.join(errors)})")


def _pg_admin(user: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(host=_PG_HOST, port=_PG_PORT, dbname=_PG_DATABASE, user=user,
                         autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'sekimori.db'}"
        return
    user, why = _pg_user()
    if user is None:
        pytest.skip(why)
    schema = f"sk_{secrets.token_hex(6)}"
    _pg_admin(user, f"CREATE SCHEMA {schema}")
    try:
        yield (f"postgresql://{user}@{_PG_HOST}:{_PG_PORT}/{_PG_DATABASE}"
               f"?options=-csearch_path%3D{schema}")
    finally:
        _pg_admin(user, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as migrated:
        migrated.migrate()
        yield migrated

# ---- end of store fixtures --------------------------------------------------------------------
