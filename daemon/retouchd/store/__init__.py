"""Persistence: the job table, its state machine and migrations."""

from retouchd.store.db import make_engine, migrate
from retouchd.store.jobs import Store
from retouchd.store.review_schema import InboxPause, Review
from retouchd.store.schema import Duplicate, Host, Job, set_path_map
from retouchd.store.states import ACTIVE, JobState, transition, utcnow

__all__ = [
    "ACTIVE", "Duplicate", "Host", "InboxPause", "Job", "JobState", "Review", "Store", "make_engine", "migrate",
    "set_path_map", "transition", "utcnow",
]


def open_store(url: str) -> Store:
    """Connect, migrate to the newest schema, and return the store."""
    engine = make_engine(url)
    migrate(engine)
    return Store(engine)
