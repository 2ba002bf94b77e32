"""Shared fixtures for the integration tests."""

from __future__ import annotations

# ---- store fixtures (broker/runtime/store.py) -----------------------------------------------
# `store_url` is a fresh, empty database per test: a SQLite file under tmp_path, or a new schema
# in the PostgreSQL database `test` on 127.0.0.1:5432 (trust auth), dropped afterwards. The
# PostgreSQL parameter is skipped, with the reason, when that server cannot be reached.
# `store` is a migrated Store on that URL.
import contextlib
import functools
import secrets
from collections.abc import Iterator
from typing import Any

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
    with pg_schema_url() as url:
        yield url


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """A URL to a fresh schema in the test database, dropped afterwards; skips if no server."""
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

# ---- tunnel fixtures: origins, a broker process, an enrolled agent process ---------------------
# Module-scoped: one broker and one agent per test module keeps the suite fast; tests that stop
# or revoke something make their own.

import shutil
from pathlib import Path

from broker.demo import AgentProcess, BrokerProcess, LocalOrigins, free_port


def require_curl() -> str:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed (the test setup installs it: scripts/test.sh)")
    return curl


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOrigins]:
    o = LocalOrigins(tmp_path_factory.mktemp("origins"))
    yield o
    o.close()


# Tunnel tests that are not about identity run without login; tests/integration/test_login*.py
# turn it on with a directory and an OIDC provider.
NO_LOGIN = "[identity]\nrequire_login = false\n"


def make_broker(root: Path, origins: LocalOrigins, **kwargs: object) -> BrokerProcess:
    kwargs.setdefault("identity_toml", NO_LOGIN)
    broker = BrokerProcess(root, allowed_ports=[origins.http_port, origins.https_port],
                           allowed_networks=[f"{origins.host}/32"], **kwargs)  # type: ignore[arg-type]
    broker.start()
    broker.add_tenant("test-city", "テスト市")
    return broker


def make_agent(root: Path, broker: BrokerProcess, name: str = "test-laptop") -> AgentProcess:
    agent = AgentProcess(root)
    agent.enrol(broker, broker.enrolment_code("test-city"), hostname=name)
    agent.start()
    return agent


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins) -> Iterator[BrokerProcess]:
    # An internal name that resolves (through the broker's own hosts table) to a private address.
    b = make_broker(tmp_path_factory.mktemp("broker"), origins, tunnel_port=free_port(),
                    static_hosts={"intranet.city.test": ["10.20.30.40"],
                                  "mixed.city.test": ["93.184.215.14", "192.168.0.8"]})
    yield b
    b.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, broker: BrokerProcess) -> Iterator[AgentProcess]:
    a = make_agent(tmp_path_factory.mktemp("agent"), broker)
    yield a
    a.stop()

# ---- end of tunnel fixtures ---------------------------------------------------------------------


# ---- identity: a real slapd with the test directory, for the login tests -------------------------

@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """tests/peers/slapd.py's server (skipped, with the reason, when slapd is not installed)."""
    from tests.peers import slapd

    why = slapd.unavailable()
    if why:
        pytest.skip(why)
    server = slapd.start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()
