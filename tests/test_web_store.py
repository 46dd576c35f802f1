"""Migration 0006: an existing database keeps its rows and gains reviews, pauses, variants and step costs."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from sqlalchemy import text

from retouchd.store import Store, make_engine, migrate
from retouchd.store.db import alembic_config
from retouchd.store.reviews import Reviews
from retouchd.store.stats import review_stats


def test_upgrade_from_0003_backfills_costs_and_pending_reviews(tmp_path: Path) -> None:
    """Jobs made before 0006: their device-seconds are summed from `steps`; results in review wait for a verdict."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    steps = json.dumps([{"op": "remove_text", "seconds": 1.25}, {"op": "upscale", "seconds": 2.5}])
    with engine.begin() as conn:
        for i, state in enumerate(["archived", "review", "failed"], start=1):
            conn.execute(text(
                "INSERT INTO jobs (id, rule, content_key, sha256, source_path, rel_path, size, mtime, state, attempts, "
                "max_attempts, steps, created_at, updated_at, finished_at) VALUES (:id, 'shop', :k, :k, '/in/a', 'a', "
                "1, 0, :state, 1, 3, :steps, '2026-12-01 10:00:00', '2026-12-01 10:00:00', '2026-12-01 10:00:00')"),
                {"id": i, "k": f"k{i}", "state": state, "steps": steps})
    migrate(engine)
    with engine.connect() as conn:
        costs = conn.execute(text("SELECT id, device_seconds FROM jobs ORDER BY id")).all()
    assert [(i, c) for i, c in costs] == [(1, 3.75), (2, 3.75), (3, 3.75)]
    store = Store(engine)
    assert [j.id for j in Reviews(store).pending()] == [2]
    shop = review_stats(engine)["rules"][0]
    assert (shop["done"], shop["pending_review"], shop["approved"], shop["failed"]) == (2, 1, 1, 1)
    assert shop["device_seconds"] == 11.25 and shop["device_seconds_per_approved"] == 11.25


def test_0007_keeps_rows_and_goes_back(tmp_path: Path) -> None:
    """Migration 0007 (dashboard indexes, summaries_sent) on a 0006 database keeps its jobs; downgrading to 0006
    and upgrading again works."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        conn.execute(text(
            "INSERT INTO jobs (id, rule, content_key, sha256, source_path, rel_path, size, mtime, state, attempts, "
            "max_attempts, created_at, updated_at, error) VALUES (1, 'shop', 'k', 'k', '/in/a', 'a', 1, 0, 'queued', "
            "1, 3, '2026-12-01 10:00:00', '2026-12-01 10:00:00', 'worker died')"))
    migrate(engine)
    with engine.connect() as conn:
        indexes = {row[1] for row in conn.execute(text("PRAGMA index_list('jobs')"))}
        assert {"ix_jobs_finished_at_state", "ix_jobs_state_finished_at", "ix_jobs_retrying"} <= indexes
        assert "ix_jobs_finished_at" not in indexes
        assert conn.execute(text("SELECT count(*) FROM summaries_sent")).scalar() == 0
        assert conn.execute(text("SELECT id FROM jobs INDEXED BY ix_jobs_retrying "
                                 "WHERE state = 'queued' AND error IS NOT NULL")).scalars().all() == [1]
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with engine.connect() as conn:
        assert "ix_jobs_finished_at" in {row[1] for row in conn.execute(text("PRAGMA index_list('jobs')"))}
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
