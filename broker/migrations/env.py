"""Alembic environment for the broker's store.

This module owns how Alembic reaches the database. `Store.migrate` passes an open connection in
`config.attributes["connection"]`, already inside a transaction and pointed at the right schema
(a PostgreSQL URL may carry `options=-csearch_path=...`), so no alembic.ini is needed at run
time and the same code serves SQLite and PostgreSQL. For development (`alembic revision`,
`alembic upgrade --sql`) a URL may instead come from `sqlalchemy.url` or `-x url=...`.

It must not configure logging: it runs inside the broker process, whose logging is not ours.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database: pass a connection from Store.migrate, or -x url=... to alembic")
    return url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
