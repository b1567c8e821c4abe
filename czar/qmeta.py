"""Query metadata: one record per query, sync or async, in the czar's MariaDB.

Owns the ``skyshard_qmeta`` database: the ``query`` table (status, times,
progress, sizes, result location, complete error text) and its migrations.
Nothing else writes there.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pymysql

from skyshard.mariadb import ConnectionPool

QMETA_DATABASE = "skyshard_qmeta"
RESULT_DATABASE = "skyshard_results"

ID_BLOCK = 32  # query ids a process reserves at a time (see QueryMetadata.next_id)
_ID_BLOCK_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS `{QMETA_DATABASE}`.`query_id_block` (
        one TINYINT NOT NULL PRIMARY KEY, next_id BIGINT NOT NULL) ENGINE=InnoDB""",
    f"""INSERT IGNORE INTO `{QMETA_DATABASE}`.`query_id_block`
        SELECT 1, COALESCE(MAX(query_id), 0) + 1 FROM `{QMETA_DATABASE}`.`query`""",
)

_SCHEMA = (
    f"CREATE DATABASE IF NOT EXISTS `{QMETA_DATABASE}`",
    f"CREATE DATABASE IF NOT EXISTS `{RESULT_DATABASE}`",
    f"""CREATE TABLE IF NOT EXISTS `{QMETA_DATABASE}`.`query` (
        query_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        kind VARCHAR(8) NOT NULL,
        user VARCHAR(64) NOT NULL,
        default_db VARCHAR(64) NULL,
        query_text MEDIUMTEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        submitted DATETIME(3) NOT NULL,
        completed DATETIME(3) NULL,
        returned DATETIME(3) NULL,
        chunks_total INT NOT NULL DEFAULT 0,
        chunks_completed INT NOT NULL DEFAULT 0,
        bytes_collected BIGINT NOT NULL DEFAULT 0,
        rows_collected BIGINT NOT NULL DEFAULT 0,
        result_rows BIGINT NULL,
        result_location VARCHAR(255) NULL,
        error MEDIUMTEXT NULL,
        KEY by_status (status)
    ) ENGINE=InnoDB""",
    f"ALTER TABLE `{QMETA_DATABASE}`.`query` ADD COLUMN IF NOT EXISTS merge_sql MEDIUMTEXT NULL",
    f"ALTER TABLE `{QMETA_DATABASE}`.`query` ADD COLUMN IF NOT EXISTS connection_id BIGINT NULL",
    f"ALTER TABLE `{QMETA_DATABASE}`.`query` ADD COLUMN IF NOT EXISTS callback_url VARCHAR(2048) NULL",
    *_ID_BLOCK_SCHEMA,
    # What ``information_schema.queries`` shows (see czar.processlist).
    f"""CREATE OR REPLACE VIEW `{QMETA_DATABASE}`.`queries` AS SELECT
        query_id AS ID, kind AS TYPE, user AS USER, default_db AS DB, connection_id AS CONNECTION_ID,
        query_text AS QUERY, status AS STATUS, submitted AS SUBMITTED, completed AS COMPLETED,
        returned AS RETURNED, chunks_total AS CHUNKS_TOTAL, chunks_completed AS CHUNKS_COMPLETED,
        bytes_collected AS BYTES_COLLECTED, rows_collected AS ROWS_COLLECTED,
        result_rows AS RESULT_ROWS, result_location AS RESULT_LOCATION, error AS ERROR
        FROM `{QMETA_DATABASE}`.`query`""",
)


class QueryStatus(enum.StrEnum):
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FAILED_LR = "FAILED_LR"  # the result grew past the size limit
    ABORTED = "ABORTED"


class QueryKind(enum.StrEnum):
    SYNC = "SYNC"
    ASYNC = "ASYNC"


@dataclass(frozen=True)
class QueryRecord:
    query_id: int
    kind: QueryKind
    user: str
    default_db: str | None
    query_text: str
    status: QueryStatus
    submitted: datetime
    completed: datetime | None
    returned: datetime | None
    chunks_total: int
    chunks_completed: int
    bytes_collected: int
    rows_collected: int
    result_rows: int | None
    result_location: str | None
    error: str | None
    merge_sql: str | None = None
    connection_id: int | None = None
    callback_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The status record as the HTTP API and notifications send it."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key == "merge_sql":
                continue
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


class QueryMetadata:
    """Reads and writes query records; progress writes are throttled."""

    def __init__(self, pool: ConnectionPool, progress_interval: float = 0.25) -> None:
        self.pool = pool
        self.progress_interval = progress_interval
        self._last_progress: dict[int, float] = {}
        self._lock = threading.Lock()
        self._next_id = 0  # see next_id: ids [_next_id, _block_end) are this process's
        self._block_end = 0

    def create_schema(self) -> None:
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            for statement in _SCHEMA:
                cursor.execute(statement)

    def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(sql, args)
            return int(cursor.lastrowid or 0)

    def next_id(self) -> int:
        """A new query id, allocated here so that a query can start before its record is written.

        Ids come from blocks of :data:`ID_BLOCK` reserved in ``query_id_block``
        (one UPDATE per block), so every process writing records gets ids of
        its own, each above every id recorded before the table existed.
        """
        with self._lock:
            if self._next_id >= self._block_end:
                self._block_end = self._reserve()
                self._next_id = self._block_end - ID_BLOCK
            query_id = self._next_id
            self._next_id += 1
            return query_id

    def _reserve(self) -> int:
        """Reserve the next block of ids; the end of the block (exclusive)."""
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            for attempt in range(2):
                try:
                    cursor.execute(
                        f"UPDATE `{QMETA_DATABASE}`.`query_id_block` SET next_id = LAST_INSERT_ID(next_id + %s)",
                        (ID_BLOCK,),
                    )
                    if cursor.rowcount == 1:
                        cursor.execute("SELECT LAST_INSERT_ID()")
                        return int(cursor.fetchone()[0])
                except pymysql.err.ProgrammingError as exc:
                    if attempt or not exc.args or exc.args[0] != 1146:
                        raise
                for statement in _ID_BLOCK_SCHEMA:
                    cursor.execute(statement)
        raise RuntimeError("could not reserve query ids")

    def start(
        self,
        kind: QueryKind,
        user: str,
        default_db: str | None,
        text: str,
        *,
        connection_id: int | None = None,
        callback_url: str | None = None,
        query_id: int | None = None,
    ) -> int:
        """Write a new record (EXECUTING); its id (``query_id``, from :meth:`next_id`, or a new one)."""
        if query_id is None:
            query_id = self.next_id()
        self._execute(
            f"INSERT INTO `{QMETA_DATABASE}`.`query` (query_id, kind, user, default_db, query_text, status,"
            " submitted, connection_id, callback_url) VALUES (%s, %s, %s, %s, %s, %s, NOW(3), %s, %s)",
            (query_id, kind.value, user, default_db, text, QueryStatus.EXECUTING.value, connection_id,
             callback_url or None),
        )
        return query_id

    def start_finished(
        self,
        kind: QueryKind,
        user: str,
        default_db: str | None,
        text: str,
        *,
        query_id: int,
        elapsed: float,
        status: QueryStatus,
        connection_id: int | None = None,
        result_rows: int | None = None,
        error: str | None = None,
        progress: tuple[int, int, int] | None = None,
        returned: bool = False,
        chunks_total: int | None = None,
    ) -> None:
        """The whole record of a query that ended before its start was written, in one INSERT
        (:meth:`start` and :meth:`finish` in one): submitted ``elapsed`` seconds before now, by the
        server's clock as every other time of the record."""
        self._forget_progress(query_id)
        chunks, size, rows = progress or (0, 0, 0)
        self._execute(
            f"INSERT INTO `{QMETA_DATABASE}`.`query` (query_id, kind, user, default_db, query_text, status,"
            " submitted, completed, returned, connection_id, chunks_total, chunks_completed, bytes_collected,"
            " rows_collected, result_rows, error) VALUES (%s, %s, %s, %s, %s, %s,"
            " NOW(3) - INTERVAL %s MICROSECOND, NOW(3), IF(%s, NOW(3), NULL), %s, %s, %s, %s, %s, %s, %s)",
            (query_id, kind.value, user, default_db, text, status.value, max(0, round(elapsed * 1e6)), returned,
             connection_id, chunks_total or 0, chunks, size, rows, result_rows, error),
        )

    def set_merge_sql(self, query_id: int, merge_sql: str) -> None:
        self._execute(
            f"UPDATE `{QMETA_DATABASE}`.`query` SET merge_sql=%s WHERE query_id=%s", (merge_sql, query_id)
        )

    def clear_result(self, query_id: int) -> None:
        """The result table is gone (deleted or expired)."""
        self._execute(
            f"UPDATE `{QMETA_DATABASE}`.`query` SET result_location=NULL WHERE query_id=%s", (query_id,)
        )

    def expired_results(self, ttl_seconds: float) -> list[int]:
        """Async queries whose kept result nobody touched for ``ttl_seconds``."""
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                f"SELECT query_id FROM `{QMETA_DATABASE}`.`query` WHERE kind=%s AND status<>%s"
                " AND result_location IS NOT NULL"
                " AND COALESCE(returned, completed) < NOW(3) - INTERVAL %s MICROSECOND",
                (QueryKind.ASYNC.value, QueryStatus.EXECUTING.value, int(ttl_seconds * 1e6)),
            )
            return [int(row[0]) for row in cursor.fetchall()]

    def dangling_results(self) -> list[int]:
        """Queries that did not complete but still name a result table (a czar stopped mid-query)."""
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                f"SELECT query_id FROM `{QMETA_DATABASE}`.`query` WHERE status NOT IN (%s, %s)"
                " AND result_location IS NOT NULL",
                (QueryStatus.COMPLETED.value, QueryStatus.EXECUTING.value),
            )
            return [int(row[0]) for row in cursor.fetchall()]

    def set_chunks_total(self, query_id: int, total: int, result_location: str | None) -> None:
        self._execute(
            f"UPDATE `{QMETA_DATABASE}`.`query` SET chunks_total=%s, result_location=%s WHERE query_id=%s",
            (total, result_location, query_id),
        )

    def progress_due(self, query_id: int) -> bool:
        """Whether a progress write of ``query_id`` is due now (cheap: asked before any thread hop).

        At most one per ``progress_interval``, and the first one only an interval
        after the query's first call: a query done sooner (a point lookup, a cone
        search) writes its progress once, with its end (:meth:`finish`).
        """
        now = time.monotonic()
        with self._lock:
            last = self._last_progress.setdefault(query_id, now)
            if now - last < self.progress_interval:
                return False
            self._last_progress[query_id] = now
            return True

    def _forget_progress(self, query_id: int) -> None:
        """The query ended: drop its progress throttle (see :meth:`progress_due`)."""
        with self._lock:
            self._last_progress.pop(query_id, None)

    def progress(self, query_id: int, chunks_completed: int, bytes_collected: int, rows_collected: int) -> None:
        # GREATEST: progress only grows, and a write sent from another thread may
        # arrive after the final one (a query's chunks can all complete within milliseconds)
        self._execute(
            f"UPDATE `{QMETA_DATABASE}`.`query` SET chunks_completed=GREATEST(chunks_completed, %s),"
            " bytes_collected=GREATEST(bytes_collected, %s), rows_collected=GREATEST(rows_collected, %s)"
            " WHERE query_id=%s",
            (chunks_completed, bytes_collected, rows_collected, query_id),
        )

    def finish(
        self,
        query_id: int,
        status: QueryStatus,
        *,
        result_rows: int | None = None,
        error: str | None = None,
        progress: tuple[int, int, int] | None = None,
        returned: bool = False,
        clear_result: bool = False,
        chunks_total: int | None = None,
    ) -> None:
        """Record the end of a query in one UPDATE.

        ``progress`` (chunks, bytes, rows collected), ``returned`` (the rows
        were delivered: ``returned`` is set too) and ``clear_result`` (the
        result table is gone) fold what would be separate writes into this one.
        """
        self._forget_progress(query_id)
        sets = ["status=%s", "completed=NOW(3)", "result_rows=COALESCE(%s, result_rows)", "error=%s"]
        args: list[Any] = [status.value, result_rows, error]
        if progress is not None:
            sets.append("chunks_completed=GREATEST(chunks_completed, %s), bytes_collected=GREATEST("
                        "bytes_collected, %s), rows_collected=GREATEST(rows_collected, %s)")
            args.extend(progress)
        if chunks_total is not None:
            sets.append("chunks_total=%s")
            args.append(chunks_total)
        if returned:
            sets.append("returned=NOW(3)")
        if clear_result:
            sets.append("result_location=NULL")
        self._execute(
            f"UPDATE `{QMETA_DATABASE}`.`query` SET {', '.join(sets)} WHERE query_id=%s", (*args, query_id)
        )

    def mark_returned(self, query_id: int) -> None:
        self._execute(
            f"UPDATE `{QMETA_DATABASE}`.`query` SET returned=NOW(3) WHERE query_id=%s", (query_id,)
        )

    def abort_running(self) -> int:
        """Mark queries left EXECUTING by a previous czar process as ABORTED."""
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            return int(
                cursor.execute(
                    f"UPDATE `{QMETA_DATABASE}`.`query` SET status=%s, completed=NOW(3),"
                    " error=COALESCE(error, 'czar restarted while the query was running')"
                    " WHERE status=%s",
                    (QueryStatus.ABORTED.value, QueryStatus.EXECUTING.value),
                )
            )

    def get(self, query_id: int) -> QueryRecord | None:
        with self.pool.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT query_id, kind, user, default_db, query_text, status, submitted, completed,"
                " returned, chunks_total, chunks_completed, bytes_collected, rows_collected,"
                " result_rows, result_location, error, merge_sql, connection_id, callback_url"
                f" FROM `{QMETA_DATABASE}`.`query` WHERE query_id=%s",
                (query_id,),
            )
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        values[1] = QueryKind(values[1])
        values[5] = QueryStatus(values[5])
        return QueryRecord(*values)
