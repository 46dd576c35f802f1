"""Alembic environment: uses the connection handed over by retouchd.store.db.migrate when there is one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from retouchd.store.review_schema import postgresql_options
from retouchd.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":  # the partial index's PostgreSQL WHERE (an engine not made by make_engine)
        postgresql_options()
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)
    with engine.begin() as conn:
        _configure(conn)
        context.run_migrations()


run()
