"""A read-only, cached snapshot of css for the planner and the front end.

Owns nothing persistent: it reads css through :class:`css.Css` and keeps the
result for a short time so that planning a query costs no metadata queries.
Writers (ingest, admin commands) call :meth:`Catalog.invalidate`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from css import ChunkPlacement, Css, Database, Table, Worker


@dataclass(frozen=True)
class CatalogSnapshot:
    """Published databases and tables, chunk placement and workers at one moment."""

    databases: dict[str, Database] = field(default_factory=dict)
    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    placements: dict[str, ChunkPlacement] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)

    def table(self, database: str, name: str) -> Table | None:
        found = self.tables.get((database, name))
        if found is not None:
            return found
        lowered = (database.lower(), name.lower())
        for (db, table_name), table in self.tables.items():
            if (db.lower(), table_name.lower()) == lowered:
                return table
        return None

    def database(self, name: str) -> Database | None:
        found = self.databases.get(name)
        if found is not None:
            return found
        for db_name, database in self.databases.items():
            if db_name.lower() == name.lower():
                return database
        return None

    def tables_of(self, database: str) -> list[Table]:
        return [t for (db, _), t in sorted(self.tables.items()) if db == database]

    def chunk_ids(self, database: str) -> list[int]:
        placement = self.placements.get(database)
        return placement.chunk_ids if placement else []


class Catalog:
    """Caches :class:`CatalogSnapshot` for ``ttl`` seconds.

    When the snapshot is older than ``ttl``, css's change stamp
    (:meth:`css.Css.change_stamp`) is read first, and css itself only when
    the stamp moved: an unchanged catalog costs one cheap statement, and the
    snapshot keeps its identity (the plan cache keeps its plans).
    :meth:`refresh`, called in the background (:meth:`czar.engine.Engine.keep_catalog_fresh`),
    does that check before the snapshot gets old, so that queries find it fresh.
    """

    def __init__(self, css: Css, ttl: float = 2.0) -> None:
        self.css = css
        self.ttl = ttl
        self._lock = threading.Lock()
        self._snapshot: CatalogSnapshot | None = None
        self._stamp: object = None
        self._loaded_at = 0.0
        self._generation = 0  # bumped by invalidate: a check that began before it is not kept

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None
            self._generation += 1

    def fresh(self) -> CatalogSnapshot | None:
        """The cached snapshot if it is still fresh, else None (never reads css: safe on an event loop)."""
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._loaded_at < self.ttl:
                return self._snapshot
        return None

    def snapshot(self) -> CatalogSnapshot:
        found = self.fresh()
        return found if found is not None else self.refresh()

    def refresh(self) -> CatalogSnapshot:
        """Check css now: the snapshot as it is if css did not change, else a new one."""
        with self._lock:
            current, stamp, generation = self._snapshot, self._stamp, self._generation
        new_stamp = self.css.change_stamp()  # read before the tables: a change meanwhile shows next time
        snapshot = current if current is not None and new_stamp == stamp else self._load()
        with self._lock:
            if generation == self._generation:
                self._snapshot, self._stamp, self._loaded_at = snapshot, new_stamp, time.monotonic()
        return snapshot

    def _load(self) -> CatalogSnapshot:
        databases = {db.name: db for db in self.css.databases()}
        tables = {(t.database, t.name): t for t in self.css.tables()}
        placements = {name: self.css.chunk_placement(name) for name in databases}
        workers = {w.worker_id: w for w in self.css.workers()}
        return CatalogSnapshot(databases, tables, placements, workers)
