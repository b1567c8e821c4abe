"""Plain, immutable value objects that the css API returns and accepts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class TableKind(enum.StrEnum):
    DIRECTOR = "director"
    CHILD = "child"
    REF_MATCH = "ref-match"
    REPLICATED = "replicated"

    @property
    def partitioned(self) -> bool:
        return self is not TableKind.REPLICATED


class TableState(enum.StrEnum):
    LOADING = "LOADING"      # ingest running: invisible to queries
    PUBLISHED = "PUBLISHED"  # complete everywhere: visible
    FAILED = "FAILED"        # ingest failed: invisible, to be cleaned or re-run


class WorkerState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


@dataclass(frozen=True)
class Family:
    """A partitioning family: databases in one family share chunk boundaries."""

    name: str
    num_stripes: int
    num_sub_stripes: int
    overlap: float  # degrees


@dataclass(frozen=True)
class Database:
    name: str
    family: Family


@dataclass(frozen=True)
class Column:
    name: str
    definition: str  # MariaDB column type and attributes, e.g. "DOUBLE NOT NULL"


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    kind: TableKind
    columns: tuple[Column, ...]
    create_sql: str  # CREATE TABLE for the logical table (name is replaced per chunk)
    state: TableState = TableState.PUBLISHED
    director_table: str | None = None
    director_key: str | None = None
    director_table2: str | None = None
    director_key2: str | None = None
    longitude_column: str | None = None
    latitude_column: str | None = None
    row_count: int | None = None

    @property
    def partitioned(self) -> bool:
        return self.kind.partitioned

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        for column in self.columns:
            if column.name.lower() == lowered:
                return column
        return None


@dataclass(frozen=True)
class Worker:
    worker_id: str
    address: str  # host:port of its gRPC server
    state: WorkerState = WorkerState.ACTIVE
    last_seen: datetime | None = None


@dataclass(frozen=True)
class ChunkPlacement:
    """Where the chunks of a database live: chunk id -> worker ids (replicas)."""

    database: str
    replicas: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def chunk_ids(self) -> list[int]:
        return sorted(self.replicas)


@dataclass(frozen=True)
class User:
    """A user of the czar: ``auth_string`` is MySQL's native password hash (hex SHA1(SHA1(pw)), '' for none)."""

    name: str
    auth_string: str
    is_admin: bool = False
    grants: frozenset[str] = frozenset()  # databases readable; '*' = all

    def can_read(self, database: str) -> bool:
        return self.is_admin or "*" in self.grants or database.lower() in {g.lower() for g in self.grants}
