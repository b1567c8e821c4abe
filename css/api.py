"""The typed css API: every read and write of cluster metadata goes through here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from css import schema
from css.model import (
    ChunkPlacement,
    Column,
    Database,
    Family,
    Table,
    TableKind,
    TableState,
    User,
    Worker,
    WorkerState,
)

DEFAULT_CSS_DATABASE = "skyshard_css"


class CssError(RuntimeError):
    """A css operation was refused (unknown object, conflicting definition...)."""


def password_hash(password: str) -> str:
    """MySQL native password's stored form: hex SHA1(SHA1(password)); '' for an empty password (as MySQL)."""
    if password == "":
        return ""
    return sha1(sha1(password.encode("utf-8")).digest()).hexdigest()


# css's MariaDB runs without TLS: no TLS context per connection (see skyshard.mariadb.ServerAddress.connect)
NO_TLS = {"ssl_disabled": True}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Css:
    """Cluster metadata in one MariaDB database, through SQLAlchemy Core."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> Css:
        return cls(sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=NO_TLS))

    @staticmethod
    def create_database_if_missing(server_url: str, database: str = DEFAULT_CSS_DATABASE) -> None:
        """Create the css database itself (``server_url`` names no database)."""
        engine = sa.create_engine(server_url, connect_args=NO_TLS)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        engine.dispose()

    def close(self) -> None:
        self.engine.dispose()

    # -- schema version -------------------------------------------------
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("css_schema_version"):
                return 0
            value = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()
            return int(value or 0)

    def migrate(self) -> int:
        """Apply every migration newer than the stored version; returns the version."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS css_schema_version ("
                " version INT NOT NULL PRIMARY KEY,"
                " description VARCHAR(255) NOT NULL,"
                " applied_at DATETIME NOT NULL) ENGINE=InnoDB"
            )
        current = self.schema_version()
        if current > schema.LATEST_VERSION:
            raise CssError(
                f"css schema version {current} is newer than this code knows "
                f"({schema.LATEST_VERSION}); upgrade Skyshard"
            )
        for migration in schema.MIGRATIONS:
            if migration.version <= current:
                continue
            with self.engine.begin() as conn:
                for statement in migration.statements:
                    conn.exec_driver_sql(statement)
                conn.execute(
                    schema.schema_version.insert().values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=_now(),
                    )
                )
        return self.schema_version()

    # -- families and databases -----------------------------------------
    def create_database(self, name: str, family: Family) -> Database:
        """Register a database in a partitioning family (created if new)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(schema.families).where(schema.families.c.name == family.name)
            ).first()
            if row is None:
                conn.execute(schema.families.insert().values(**family.__dict__))
            elif (row.num_stripes, row.num_sub_stripes, row.overlap) != (
                family.num_stripes,
                family.num_sub_stripes,
                family.overlap,
            ):
                raise CssError(f"family {family.name!r} exists with other parameters")
            existing = conn.execute(
                sa.select(schema.databases).where(schema.databases.c.name == name)
            ).first()
            if existing is None:
                conn.execute(schema.databases.insert().values(name=name, family=family.name))
            elif existing.family != family.name:
                raise CssError(f"database {name!r} exists in family {existing.family!r}")
        return Database(name, family)

    def database(self, name: str) -> Database | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.databases, schema.families)
                .join(schema.families, schema.families.c.name == schema.databases.c.family)
                .where(schema.databases.c.name == name)
            ).first()
        if row is None:
            return None
        return Database(
            row.name,
            Family(row.family, row.num_stripes, row.num_sub_stripes, row.overlap),
        )

    def databases(self) -> list[Database]:
        with self.engine.connect() as conn:
            names = conn.execute(sa.select(schema.databases.c.name).order_by("name")).scalars().all()
        return [db for db in (self.database(n) for n in names) if db is not None]

    def drop_database(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(schema.chunk_replicas.delete().where(schema.chunk_replicas.c.db == name))
            conn.execute(schema.tables.delete().where(schema.tables.c.db == name))
            conn.execute(schema.databases.delete().where(schema.databases.c.name == name))

    # -- tables -----------------------------------------------------------
    def add_table(self, table: Table) -> None:
        """Register a table; it stays invisible to queries until published."""
        if self.database(table.database) is None:
            raise CssError(f"unknown database {table.database!r}")
        values = {
            "db": table.database,
            "name": table.name,
            "kind": table.kind.value,
            "state": table.state.value,
            "columns_json": json.dumps([[c.name, c.definition] for c in table.columns]),
            "create_sql": table.create_sql,
            "director_table": table.director_table,
            "director_key": table.director_key,
            "director_table2": table.director_table2,
            "director_key2": table.director_key2,
            "longitude_column": table.longitude_column,
            "latitude_column": table.latitude_column,
            "row_count": table.row_count,
        }
        with self.engine.begin() as conn:
            key = (schema.tables.c.db == table.database) & (schema.tables.c.name == table.name)
            existing = conn.execute(sa.select(schema.tables.c.state).where(key)).scalar()
            if existing == TableState.PUBLISHED.value:
                raise CssError(f"table {table.database}.{table.name} already exists")
            if existing is not None:
                conn.execute(schema.tables.delete().where(key))
            conn.execute(schema.tables.insert().values(**values))

    @staticmethod
    def _table_from_row(row: sa.Row) -> Table:
        return Table(
            database=row.db,
            name=row.name,
            kind=TableKind(row.kind),
            state=TableState(row.state),
            columns=tuple(Column(n, d) for n, d in json.loads(row.columns_json)),
            create_sql=row.create_sql,
            director_table=row.director_table,
            director_key=row.director_key,
            director_table2=row.director_table2,
            director_key2=row.director_key2,
            longitude_column=row.longitude_column,
            latitude_column=row.latitude_column,
            row_count=row.row_count,
        )

    def tables(self, database: str | None = None, *, include_unpublished: bool = False) -> list[Table]:
        query = sa.select(schema.tables).order_by(schema.tables.c.db, schema.tables.c.name)
        if database is not None:
            query = query.where(schema.tables.c.db == database)
        if not include_unpublished:
            query = query.where(schema.tables.c.state == TableState.PUBLISHED.value)
        with self.engine.connect() as conn:
            return [self._table_from_row(row) for row in conn.execute(query)]

    def table(self, database: str, name: str, *, include_unpublished: bool = False) -> Table | None:
        for table in self.tables(database, include_unpublished=include_unpublished):
            if table.name == name:
                return table
        return None

    def set_table_state(self, database: str, name: str, state: TableState) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.tables.update()
                .where((schema.tables.c.db == database) & (schema.tables.c.name == name))
                .values(state=state.value)
            )

    def publish_table(
        self,
        database: str,
        name: str,
        *,
        row_count: int,
        new_replicas: Mapping[int, Iterable[str]] | None = None,
    ) -> None:
        """Make a loaded table visible, adding its new chunk replicas, in one transaction."""
        with self.engine.begin() as conn:
            if new_replicas:
                self._add_replicas(conn, database, new_replicas)
            updated = conn.execute(
                schema.tables.update()
                .where((schema.tables.c.db == database) & (schema.tables.c.name == name))
                .values(state=TableState.PUBLISHED.value, row_count=row_count)
            ).rowcount
            if updated != 1:
                raise CssError(f"unknown table {database}.{name}")

    def drop_table(self, database: str, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.tables.delete().where(
                    (schema.tables.c.db == database) & (schema.tables.c.name == name)
                )
            )

    # -- chunk placement ----------------------------------------------------
    @staticmethod
    def _add_replicas(conn: Connection, database: str, replicas: Mapping[int, Iterable[str]]) -> None:
        existing = {
            (int(r.chunk_id), r.worker_id)
            for r in conn.execute(
                sa.select(schema.chunk_replicas).where(schema.chunk_replicas.c.db == database)
            )
        }
        rows = [
            {"db": database, "chunk_id": int(chunk), "worker_id": worker}
            for chunk, workers in replicas.items()
            for worker in workers
            if (int(chunk), worker) not in existing
        ]
        if rows:
            conn.execute(schema.chunk_replicas.insert(), rows)

    def add_chunk_replicas(self, database: str, replicas: Mapping[int, Iterable[str]]) -> None:
        with self.engine.begin() as conn:
            self._add_replicas(conn, database, replicas)

    def change_stamp(self) -> tuple[Any, ...]:
        """A value that changes whenever a database, table, chunk replica or worker changes.

        MariaDB's ``CHECKSUM TABLE`` of their tables: one statement of well
        under a millisecond where reading them all (the chunk placement above
        all) takes tens of milliseconds at a thousand chunks.
        """
        names = ", ".join(
            f"`{t.name}`" for t in (schema.databases, schema.tables, schema.chunk_replicas, schema.workers)
        )
        with self.engine.connect() as conn:
            return tuple(tuple(row) for row in conn.exec_driver_sql(f"CHECKSUM TABLE {names}"))

    def chunk_placement(self, database: str) -> ChunkPlacement:
        placement: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(
                sa.select(schema.chunk_replicas)
                .where(schema.chunk_replicas.c.db == database)
                .order_by(schema.chunk_replicas.c.chunk_id, schema.chunk_replicas.c.worker_id)
            ):
                placement.setdefault(int(row.chunk_id), []).append(row.worker_id)
        return ChunkPlacement(database, {k: tuple(v) for k, v in placement.items()})

    # -- workers ------------------------------------------------------------
    def register_worker(self, worker_id: str, address: str) -> Worker:
        with self.engine.begin() as conn:
            key = schema.workers.c.worker_id == worker_id
            if conn.execute(sa.select(schema.workers.c.worker_id).where(key)).first():
                conn.execute(
                    schema.workers.update().where(key).values(address=address, last_seen=_now())
                )
            else:
                conn.execute(
                    schema.workers.insert().values(
                        worker_id=worker_id,
                        address=address,
                        state=WorkerState.ACTIVE.value,
                        last_seen=_now(),
                    )
                )
        worker = self.worker(worker_id)
        assert worker is not None
        return worker

    def workers(self, *, active_only: bool = False) -> list[Worker]:
        query = sa.select(schema.workers).order_by(schema.workers.c.worker_id)
        if active_only:
            query = query.where(schema.workers.c.state == WorkerState.ACTIVE.value)
        with self.engine.connect() as conn:
            return [
                Worker(r.worker_id, r.address, WorkerState(r.state), r.last_seen)
                for r in conn.execute(query)
            ]

    def worker(self, worker_id: str) -> Worker | None:
        for worker in self.workers():
            if worker.worker_id == worker_id:
                return worker
        return None

    def touch_worker(self, worker_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.workers.update()
                .where(schema.workers.c.worker_id == worker_id)
                .values(last_seen=_now())
            )

    def set_worker_state(self, worker_id: str, state: WorkerState) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.workers.update()
                .where(schema.workers.c.worker_id == worker_id)
                .values(state=state.value)
            )

    # -- users and grants ---------------------------------------------------
    def users(self) -> list[User]:
        """Every user with their grants."""
        with self.engine.connect() as conn:
            grants: dict[str, set[str]] = {}
            for row in conn.execute(sa.select(schema.grants)):
                grants.setdefault(row.user_name, set()).add(row.db)
            return [
                User(r.name, r.auth_string, bool(r.is_admin), frozenset(grants.get(r.name, ())))
                for r in conn.execute(sa.select(schema.users).order_by(schema.users.c.name))
            ]

    def user(self, name: str) -> User | None:
        for user in self.users():
            if user.name == name:
                return user
        return None

    def add_user(self, name: str, password: str, *, admin: bool = False, replace: bool = False) -> User:
        """Create a user (or, with ``replace``, set the password and role of an existing one)."""
        if not name or len(name) > 80:
            raise CssError("a user name is 1 to 80 characters")
        values = {"auth_string": password_hash(password), "is_admin": admin}
        with self.engine.begin() as conn:
            key = schema.users.c.name == name
            exists = conn.execute(sa.select(schema.users.c.name).where(key)).first() is not None
            if exists and not replace:
                raise CssError(f"user {name!r} exists")
            if exists:
                conn.execute(schema.users.update().where(key).values(**values))
            else:
                conn.execute(schema.users.insert().values(name=name, created_at=_now(), **values))
        user = self.user(name)
        assert user is not None
        return user

    def remove_user(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(schema.grants.delete().where(schema.grants.c.user_name == name))
            if conn.execute(schema.users.delete().where(schema.users.c.name == name)).rowcount != 1:
                raise CssError(f"unknown user {name!r}")

    def grant(self, name: str, database: str) -> None:
        """Let a user read a database ('*' = every database)."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(schema.users.c.name).where(schema.users.c.name == name)).first() is None:
                raise CssError(f"unknown user {name!r}")
            key = (schema.grants.c.user_name == name) & (schema.grants.c.db == database)
            if conn.execute(sa.select(schema.grants.c.db).where(key)).first() is None:
                conn.execute(schema.grants.insert().values(user_name=name, db=database))

    def revoke(self, name: str, database: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.grants.delete().where((schema.grants.c.user_name == name) & (schema.grants.c.db == database))
            )
