"""Director-index lookups: which chunks hold the rows with given director keys.

The index (built by ingest in the czar's MariaDB, ``skyshard_index.<db>__<Director>``)
maps each director key to its ``chunkId, subChunkId``.  Child rows whose
director key is unknown were placed by their own position; ingest records
them in ``skyshard_index.<db>__<Child>__orphans``, which a lookup through a
child table consults too, so that no row is ever missed.
"""

from __future__ import annotations

from typing import Any

import pymysql

from czar.planner.context import KeyRestriction

INDEX_DATABASE = "skyshard_index"


def index_table(database: str, table: str) -> str:
    return f"`{INDEX_DATABASE}`.`{database}__{table}`".replace("\0", "")


def orphan_table(database: str, child: str) -> str:
    return f"`{INDEX_DATABASE}`.`{database}__{child}__orphans`"


def _condition(restriction: KeyRestriction) -> tuple[str, list[Any]]:
    if restriction.values:
        marks = ", ".join(["%s"] * len(restriction.values))
        return f"`key` IN ({marks})", list(restriction.values)
    return "`key` BETWEEN %s AND %s", [restriction.low, restriction.high]


def lookup_chunks(connection: Any, restriction: KeyRestriction) -> set[int]:
    """Chunks that may hold rows of ``restriction.alias`` matching the key predicate."""
    condition, parameters = _condition(restriction)
    tables = [index_table(restriction.database, restriction.director)]
    if restriction.child:
        tables.append(orphan_table(restriction.database, restriction.child))
    chunks: set[int] = set()
    with connection.cursor() as cursor:
        for position, table in enumerate(tables):
            try:
                cursor.execute(f"SELECT DISTINCT chunkId FROM {table} WHERE {condition}", parameters)
            except pymysql.err.ProgrammingError as exc:
                if position > 0 and exc.args and exc.args[0] == 1146:
                    continue  # no orphans were recorded for this child table
                raise
            chunks.update(int(row[0]) for row in cursor.fetchall())
    return chunks


def restrict_by_index(connection: Any, chunk_ids: tuple[int, ...], restrictions: tuple[KeyRestriction, ...]) -> tuple[int, ...] | None:
    """``chunk_ids`` less the chunks no restriction allows; None when there is none."""
    if not restrictions:
        return None
    allowed: set[int] | None = None
    for restriction in restrictions:
        chunks = lookup_chunks(connection, restriction)
        allowed = chunks if allowed is None else allowed & chunks
    assert allowed is not None
    return tuple(c for c in chunk_ids if c in allowed)
