"""The result table: where chunk results land and where the merge SQL runs.

Owns ``skyshard_results.result_<queryId>``: creating it from the first chunk
schema, appending verified chunk data with ``LOAD DATA LOCAL INFILE`` (batched
through a spool file so thousands of tiny chunk results cost a few
statements), running the merge SELECT over it, and dropping it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from czar.qmeta import RESULT_DATABASE
from skyshard.mariadb import ConnectionPool

FLUSH_BYTES = 16 << 20


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def result_table_name(query_id: int) -> str:
    return f"result_{query_id}"


class ResultTable:
    """One query's result table; all methods are blocking (run them in a thread)."""

    def __init__(self, pool: ConnectionPool, query_id: int, spool_dir: Path) -> None:
        self.pool = pool
        self.name = result_table_name(query_id)
        self.qualified = f"{quote_identifier(RESULT_DATABASE)}.{quote_identifier(self.name)}"
        self.columns: list[tuple[str, str]] | None = None
        self._lock = threading.Lock()
        fd, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".tsv", dir=spool_dir)
        os.close(fd)
        self._spool = Path(path)
        self._pending = 0
        self.bytes_loaded = 0

    def create(self, columns: Sequence[tuple[str, str]]) -> None:
        """Create the table from the first chunk's column definitions (once)."""
        with self._lock:
            if self.columns is not None:
                if [c[0] for c in columns] != [c[0] for c in self.columns]:
                    raise RuntimeError("chunk results disagree on their columns")
                return
            body = ", ".join(f"{quote_identifier(name)} {definition}" for name, definition in columns)
            with self.pool.connection() as conn:
                conn.cursor().execute(
                    f"CREATE TABLE {self.qualified} ({body}) ENGINE=Aria TRANSACTIONAL=0 "
                    "DEFAULT CHARSET=utf8mb4"
                )
            self.columns = list(columns)

    def append(self, data: bytes) -> None:
        """Queue rows (LOAD DATA text) for the table; flushes past FLUSH_BYTES."""
        if not data:
            return
        with self._lock:
            with open(self._spool, "ab") as handle:
                handle.write(data)
            self._pending += len(data)
            if self._pending >= FLUSH_BYTES:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        with self.pool.connection() as conn:
            conn.cursor().execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.qualified} CHARACTER SET binary",
                (str(self._spool),),
            )
        self.bytes_loaded += self._pending
        self._pending = 0
        with open(self._spool, "wb"):
            pass

    def drop(self) -> None:
        self._spool.unlink(missing_ok=True)
        with self.pool.connection() as conn:
            conn.cursor().execute(f"DROP TABLE IF EXISTS {self.qualified}")
