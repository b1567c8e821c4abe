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
from skyshard import quick

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


def _lookups(connection: Any, restriction: KeyRestriction) -> list[str]:
    """The SELECTs (parameters bound) whose chunk ids together answer ``restriction``."""
    condition, parameters = _condition(restriction)
    tables = [index_table(restriction.database, restriction.director)]
    if restriction.child:
        tables.append(orphan_table(restriction.database, restriction.child))
    with connection.cursor() as cursor:
        return [cursor.mogrify(f"SELECT DISTINCT chunkId FROM {table} WHERE {condition}", parameters)
                for table in tables]


def _missing_orphans(position: int, exc: pymysql.err.MySQLError) -> bool:
    """An orphan table that does not exist: no orphans were recorded for this child table."""
    return position > 0 and isinstance(exc, pymysql.err.ProgrammingError) and bool(exc.args) and exc.args[0] == 1146


def lookup_chunks(connection: Any, restriction: KeyRestriction) -> set[int]:
    """Chunks that may hold rows of ``restriction.alias`` matching the key predicate."""
    chunks: set[int] = set()
    with connection.cursor() as cursor:
        for position, sql in enumerate(_lookups(connection, restriction)):
            try:
                cursor.execute(sql)
            except pymysql.err.MySQLError as exc:
                if _missing_orphans(position, exc):
                    continue
                raise
            chunks.update(int(row[0]) for row in cursor.fetchall())
    return chunks


async def lookup_chunks_quickly(connection: Any, restriction: KeyRestriction) -> set[int]:
    """:func:`lookup_chunks` from the event loop (:mod:`skyshard.quick`: no thread)."""
    chunks: set[int] = set()
    for position, sql in enumerate(_lookups(connection, restriction)):
        try:
            rows = await quick.query(connection, sql)
        except pymysql.err.MySQLError as exc:
            if _missing_orphans(position, exc):
                continue
            raise
        chunks.update(int(row[0]) for row in rows if row[0] is not None)
    return chunks


def restrict_by_index(connection: Any, chunk_ids: tuple[int, ...], restrictions: tuple[KeyRestriction, ...]) -> tuple[int, ...] | None:
    """``chunk_ids`` less the chunks no restriction allows; None when there is none."""
    if not restrictions:
        return None
    return _restrict(chunk_ids, [lookup_chunks(connection, restriction) for restriction in restrictions])


async def restrict_by_index_quickly(connection: Any, chunk_ids: tuple[int, ...],
                                    restrictions: tuple[KeyRestriction, ...]) -> tuple[int, ...] | None:
    """:func:`restrict_by_index` from the event loop (:mod:`skyshard.quick`: no thread)."""
    if not restrictions:
        return None
    return _restrict(chunk_ids, [await lookup_chunks_quickly(connection, restriction) for restriction in restrictions])


def _restrict(chunk_ids: tuple[int, ...], allowed_by_each: list[set[int]]) -> tuple[int, ...]:
    allowed = set.intersection(*allowed_by_each)
    return tuple(c for c in chunk_ids if c in allowed)
