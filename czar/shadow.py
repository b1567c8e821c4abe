"""Empty shadow copies of user tables in the czar's MariaDB, for SHOW COLUMNS and SHOW CREATE TABLE.

A client describing a table should see exactly what MariaDB would report for
the table as the user defined it (types, NULL, keys, defaults, extras), not
the chunk tables with their internal columns.  The czar creates, on first
use, an empty table from the definition recorded in css in the database
``skyshard_shadow`` (named after the table and a hash of its definition, so a
re-ingested table with another schema gets a new shadow) and lets MariaDB
answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from css import Table
from ingest.config import rewrite_create_table

SHADOW_DATABASE = "skyshard_shadow"
PARTITION_COLUMNS = (("chunkId", "INT NULL INVISIBLE"), ("subChunkId", "INT NULL INVISIBLE"))


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _definition(table: Table) -> str:
    if table.create_sql:
        return table.create_sql
    columns = ", ".join(f"{_quote(c.name)} {c.definition}" for c in table.columns)
    return f"CREATE TABLE {_quote(table.name)} ({columns})"


def shadow_name(table: Table) -> str:
    digest = hashlib.sha1((_definition(table) + str(table.partitioned)).encode()).hexdigest()[:8]
    return f"{table.database}__{table.name}"[:50] + f"__{digest}"


class ShadowTables:
    """Creates shadow tables on demand and answers describe statements from them."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._created: set[str] = set()

    def _ensure(self, cursor: Any, table: Table) -> str:
        name = shadow_name(table)
        if name not in self._created:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {_quote(SHADOW_DATABASE)}")
            # Partitioned tables have the (invisible, nameable) chunkId and subChunkId.
            extra = PARTITION_COLUMNS if table.partitioned else ()
            ddl = rewrite_create_table(_definition(table), table_name=name, extra_columns=extra, if_not_exists=True)
            cursor.execute(f"USE {_quote(SHADOW_DATABASE)}")
            cursor.execute(ddl)
            self._created.add(name)
        return f"{_quote(SHADOW_DATABASE)}.{_quote(name)}"

    def show_columns(self, table: Table, *, full: bool, like: str | None) -> tuple[list[tuple[Any, ...]], list[str]]:
        with self.pool.connection() as connection, connection.cursor() as cursor:
            qualified = self._ensure(cursor, table)
            sql = f"SHOW {'FULL ' if full else ''}COLUMNS FROM {qualified}"
            if like is not None:
                cursor.execute(sql + " LIKE %s", (like,))
            else:
                cursor.execute(sql)
            names = [d[0] for d in cursor.description]
            return [tuple(row) for row in cursor.fetchall()], names

    def show_create_table(self, table: Table) -> tuple[list[tuple[Any, ...]], list[str]]:
        with self.pool.connection() as connection, connection.cursor() as cursor:
            qualified = self._ensure(cursor, table)
            cursor.execute(f"SHOW CREATE TABLE {qualified}")
            _, ddl = cursor.fetchone()
            ddl = ddl.replace(_quote(shadow_name(table)), _quote(table.name), 1)
            return [(table.name, ddl)], ["Table", "Create Table"]
