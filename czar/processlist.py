"""Connections of this czar and the ``information_schema`` tables about queries.

Owns the registry of MySQL connections (what each is doing now, how to
kill its query) and the evaluation of ``SHOW [FULL] PROCESSLIST``,
``information_schema.processlist`` and ``information_schema.queries``:
the SELECT is run by the czar's MariaDB, so any WHERE / ORDER BY / LIMIT
works exactly as in MySQL.  ``processlist`` is a temporary table filled
from the registry on the same connection; ``queries`` is the view
``skyshard_qmeta.queries`` over the query records (see :mod:`czar.qmeta`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from mysql_mimic.constants import KillKind
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError

from czar.engine import ColumnInfo, Engine, QueryResult
from czar.errors import UnknownQuery, UnsupportedQuery
from czar.qmeta import QMETA_DATABASE, QueryStatus

TABLES = ("processlist", "queries")

_SHOW_PROCESSLIST = re.compile(r"^\s*SHOW\s+(FULL\s+)?PROCESSLIST\s*;?\s*$", re.IGNORECASE)
_MENTIONS = re.compile(r"\b(processlist|queries)\b", re.IGNORECASE)

_PROCESSLIST_DDL = f"""CREATE TEMPORARY TABLE `{QMETA_DATABASE}`.`processlist` (
    ID BIGINT NOT NULL, USER VARCHAR(128) NOT NULL, HOST VARCHAR(64) NOT NULL, DB VARCHAR(64) NULL,
    COMMAND VARCHAR(16) NOT NULL, TIME INT NOT NULL, STATE VARCHAR(64) NOT NULL, INFO LONGTEXT NULL,
    TIME_MS DECIMAL(22,3) NOT NULL, PROGRESS DECIMAL(7,3) NOT NULL, QUERY_ID BIGINT NULL
) ENGINE=Aria"""


@dataclass
class Process:
    """One client connection."""

    connection_id: int
    user: str
    host: str
    kill: Callable[[KillKind], None]
    db: Callable[[], str | None]
    info: str | None = None
    started: float = field(default_factory=time.monotonic)

    def begin(self, sql: str) -> None:
        self.info = sql
        self.started = time.monotonic()

    def end(self) -> None:
        self.info = None
        self.started = time.monotonic()


class ProcessList:
    """The registry of this czar's connections."""

    def __init__(self) -> None:
        self.processes: dict[int, Process] = {}

    def add(self, process: Process) -> None:
        self.processes[process.connection_id] = process

    def remove(self, connection_id: int) -> None:
        self.processes.pop(connection_id, None)

    def kill(self, connection_id: int, kind: KillKind) -> None:
        """KILL [QUERY|CONNECTION] <id>: cancels the running query (and the dispatch on every worker)."""
        process = self.processes.get(connection_id)
        if process is None:
            raise UnknownQuery(f"Unknown thread id: {connection_id}")
        if kind == KillKind.QUERY and process.info is None:
            return  # idle: nothing to stop (as in MariaDB)
        process.kill(kind)

    def rows(self, engine_progress: dict[int, tuple[int, int, int]]) -> list[tuple[Any, ...]]:
        """Rows of ``information_schema.processlist``; progress: connection -> (query, done, total)."""
        now = time.monotonic()
        rows = []
        for p in sorted(self.processes.values(), key=lambda p: p.connection_id):
            elapsed = now - p.started
            query_id, done, total = engine_progress.get(p.connection_id, (None, 0, 0))
            running = p.info is not None
            state = ("Executing" if query_id is not None else "Running") if running else ""
            progress = 100.0 * done / total if total else 0.0
            rows.append((
                p.connection_id, p.user, p.host, p.db(), "Query" if running else "Sleep",
                int(elapsed), state, p.info, round(elapsed * 1000, 3), round(progress, 3), query_id,
            ))
        return rows


def show_processlist_sql(sql: str) -> str | None:
    """``SHOW [FULL] PROCESSLIST`` as a SELECT over information_schema.processlist."""
    match = _SHOW_PROCESSLIST.match(sql)
    if match is None:
        return None
    info = "INFO" if match.group(1) else "LEFT(INFO, 100)"
    return (
        "SELECT ID AS Id, USER AS User, HOST AS Host, DB AS db, COMMAND AS Command, TIME AS Time,"
        f" STATE AS State, {info} AS Info, PROGRESS AS Progress FROM information_schema.processlist"
    )


def rewrite(
    sql: str, default_db: str | None, connection_id: int | None = None, *, owner: str | None = None
) -> tuple[str, bool] | None:
    """A SELECT over information_schema.processlist/queries, rewritten to the czar's tables.

    ``owner``: show only that user's queries (a user who is not an admin); None shows all.
    Returns (sql, uses processlist) or None when the statement reads neither.
    """
    if not _MENTIONS.search(sql):
        return None
    try:
        statements = [s for s in sqlglot.parse(sql, read="mysql") if s is not None]
    except SqlglotParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        return None
    statement = statements[0]
    tables = list(statement.find_all(exp.Table))
    ours = [t for t in tables if _is_ours(t, default_db)]
    if not ours:
        return None
    if len(ours) != len(tables):
        raise UnsupportedQuery(
            "information_schema.processlist and information_schema.queries cannot be combined with other tables"
        )
    # CONNECTION_ID() is the client's connection to the czar, not the czar's to its MariaDB.
    for node in list(statement.find_all(exp.Anonymous)):
        if node.name.upper() == "CONNECTION_ID" and not node.expressions:
            node.replace(exp.Literal.number(connection_id or 0))
    uses_processlist = False
    for table in ours:
        name = table.name.lower()
        uses_processlist |= name == "processlist"
        if name == "queries" and owner is not None:
            # Only the user's own records: the table becomes a filtered derived table of the same name.
            alias = table.alias or name
            mine = (
                exp.select("*")
                .from_(exp.table_(name, db=QMETA_DATABASE))
                .where(exp.column("USER").eq(exp.Literal.string(owner)))
            )
            table.replace(exp.Subquery(this=mine, alias=exp.TableAlias(this=exp.to_identifier(alias))))
            continue
        table.set("this", exp.to_identifier(name))
        table.set("db", exp.to_identifier(QMETA_DATABASE))
    return statement.sql(dialect="mysql"), uses_processlist


def _is_ours(table: exp.Table, default_db: str | None) -> bool:
    db = table.db or default_db or ""
    return db.lower() == "information_schema" and table.name.lower() in TABLES


async def run(
    engine: Engine, registry: ProcessList, sql: str, uses_processlist: bool, *, owner: str | None = None
) -> QueryResult:
    """Evaluate a rewritten SELECT on the czar's MariaDB; rows stream as raw text values.

    ``owner``: the processlist shows only that user's connections (None: all).
    """
    await engine.records_written()  # the records of queries that ended are all there
    setup: list[tuple[str, list[tuple[Any, ...]]]] = []
    if uses_processlist:
        progress: dict[int, tuple[int, int, int]] = {}
        running = {conn: qid for qid, conn in engine.sync_running.items()}
        if running:
            records = await asyncio.to_thread(_progress_of, engine, list(running.values()))
            for conn, qid in running.items():
                done, total = records.get(qid, (0, 0))
                progress[conn] = (qid, done, total)
        setup.append((_PROCESSLIST_DDL, []))
        rows = [row for row in registry.rows(progress) if owner is None or row[1] == owner]
        if rows:
            setup.append((
                f"INSERT INTO `{QMETA_DATABASE}`.`processlist` VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            ))
    columns, cursor, connection = await asyncio.to_thread(engine.open_merge, sql, setup)

    async def stream() -> Any:
        try:
            while batch := await asyncio.to_thread(cursor.fetchmany, 5000):
                for row in batch:
                    yield row
        finally:
            await asyncio.to_thread(connection.close)

    return QueryResult(0, columns, stream())


def _progress_of(engine: Engine, query_ids: list[int]) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for query_id in query_ids:
        rec = engine.qmeta.get(query_id)
        if rec is not None and rec.status == QueryStatus.EXECUTING:
            out[query_id] = (rec.chunks_completed, rec.chunks_total)
    return out


__all__ = ["ColumnInfo", "Process", "ProcessList", "rewrite", "run", "show_processlist_sql"]
