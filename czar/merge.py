"""The result table: where chunk results land and where the merge SQL runs.

Owns ``skyshard_results.result_<queryId>``: creating it from the first chunk
schema, appending verified chunk data with ``LOAD DATA LOCAL INFILE`` (batched
through a spool file so thousands of tiny chunk results cost a few
statements), running the merge SELECT over it, and dropping it.

A sync query's table is a ``TEMPORARY`` table on one connection that the
engine lends it (the merge SELECT then runs on that connection): no DDL log,
no .frm sync, so creating and dropping it costs about 0.3 ms instead of
1-20 ms.  An async query's table is a real table (``qserv_result`` reads it
later from any connection).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from czar.errors import SkyshardError
from czar.qmeta import RESULT_DATABASE
from skyshard.mariadb import ConnectionPool

FLUSH_BYTES = 16 << 20
SPOOL_BLOCK_BYTES = 1 << 20  # pass-through rows are read from the spool in blocks of about this size


class ResultVerificationError(SkyshardError, RuntimeError):
    """The rows received do not add up to what the workers announced (or are not rows at all)."""


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def result_table_name(query_id: int) -> str:
    return f"result_{query_id}"


class ResultTable:
    """One query's result table; all methods are blocking (run them in a thread).

    With ``connection`` the table is ``TEMPORARY`` on that connection (which
    stays the caller's to close or reuse); otherwise a real table written
    through ``pool``.
    """

    def __init__(self, pool: ConnectionPool, query_id: int, spool_dir: Path, *, connection: Any = None) -> None:
        self.pool = pool
        self.connection = connection
        self.temporary = connection is not None
        self._sealed = False
        self.name = result_table_name(query_id)
        self.qualified = f"{quote_identifier(RESULT_DATABASE)}.{quote_identifier(self.name)}"
        self.columns: list[tuple[str, str]] | None = None
        self._lock = threading.Lock()
        fd, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".tsv", dir=spool_dir)
        os.close(fd)
        self._spool = Path(path)
        self._pending = 0
        self._pending_rows = 0  # rows the workers announced for what is queued
        self._spooled_rows = 0  # rows announced for everything appended (pass-through check)
        self.bytes_loaded = 0
        self.collected: tuple[int, int, int] | None = None  # chunks, bytes, rows (set by the engine)
        # Keep every row in the spool until flush(): the engine may stream a pass-through
        # result straight from it (see spool_rows) instead of loading it.
        self.defer_load = False

    def create(self, columns: Sequence[tuple[str, str]]) -> None:
        """Create the table from the first chunk's column definitions (once)."""
        with self._lock:
            if self.columns is not None:
                if [c[0] for c in columns] != [c[0] for c in self.columns]:
                    raise RuntimeError("chunk results disagree on their columns")
                return
            body = ", ".join(f"{quote_identifier(name)} {definition}" for name, definition in columns)
            temporary = "TEMPORARY " if self.temporary else ""
            with self._connection() as conn:
                conn.cursor().execute(
                    f"CREATE {temporary}TABLE {self.qualified} ({body}) ENGINE=Aria TRANSACTIONAL=0 "
                    "DEFAULT CHARSET=utf8mb4"
                )
            self.columns = list(columns)

    def create_and_append(self, columns: Sequence[tuple[str, str]], data: bytes, rows: int) -> None:
        """:meth:`create` and :meth:`append` in one call (one thread hop for a whole chunk result)."""
        self.create(columns)
        self.append(data, rows)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self.connection is not None:
            yield self.connection
        else:
            with self.pool.connection() as conn:
                yield conn

    def append(self, data: bytes, rows: int) -> None:
        """Queue one verified chunk result (``rows`` rows of LOAD DATA text); flushes past FLUSH_BYTES.

        Ignored once the table is sealed (a late chunk of a query whose LIMIT
        was already satisfied, or that failed): the merge may be running.
        """
        if not data:
            return
        with self._lock:
            if self._sealed:
                return
            with open(self._spool, "ab") as handle:
                handle.write(data)
            self._queued(len(data), rows)

    def append_file(self, path: Path, rows: int) -> None:
        """Queue one verified chunk result spilled to ``path``, whole.

        Under one lock, so another chunk's rows never land between two pieces
        of this one, and a flush only ever happens at a chunk boundary.
        """
        size = path.stat().st_size
        if not size:
            return
        with self._lock:
            if self._sealed:
                return
            with open(self._spool, "ab") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            self._queued(size, rows)

    def _queued(self, size: int, rows: int) -> None:
        self._pending += size
        self._pending_rows += rows
        self._spooled_rows += rows
        if self._pending >= FLUSH_BYTES and not self.defer_load:
            self._flush_locked()

    def flush(self, *, seal: bool = False, force: bool = False) -> None:
        """Load what is queued (``force``: even with ``defer_load``); with ``seal`` no later :meth:`append` adds rows."""
        with self._lock:
            if force or not self.defer_load:
                self._flush_locked()
            if seal:
                self._sealed = True

    def seal(self) -> None:
        """No later :meth:`append` adds rows (the merge may be running)."""
        with self._lock:
            self._sealed = True

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        with self._connection() as conn:
            loaded = conn.cursor().execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.qualified} CHARACTER SET binary",
                (str(self._spool),),
            )
        if loaded != self._pending_rows:  # never a silently short (or long) answer
            raise ResultVerificationError(
                f"chunk results failed verification: {loaded} rows loaded, the workers sent {self._pending_rows}"
            )
        self.bytes_loaded += self._pending
        self._pending = 0
        self._pending_rows = 0
        with open(self._spool, "wb"):
            pass

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def spool_blocks(self, block_bytes: int = SPOOL_BLOCK_BYTES) -> Iterator[bytes]:
        """The spooled rows (never loaded: ``defer_load``) as blocks of whole lines of LOAD DATA text.

        Raises :class:`ResultVerificationError` at the end if the lines do not
        add up to the rows the workers announced.
        """
        seen = 0
        with open(self._spool, "rb") as handle:
            for block in line_blocks(handle, block_bytes):
                seen += block.count(b"\n")
                yield block
        if seen != self._spooled_rows:
            raise ResultVerificationError(
                f"chunk results failed verification: {seen} rows spooled, the workers sent {self._spooled_rows}"
            )

    def spool_rows(self, columns: int) -> Iterator[list[tuple[bytes | None, ...]]]:
        """:meth:`spool_blocks` as lists of rows (see :func:`text_rows`)."""
        for block in self.spool_blocks():
            yield text_rows(block, columns)

    def discard_spool(self) -> None:
        """Remove the spool file only (a TEMPORARY table goes with its connection)."""
        with self._lock:
            self._sealed = True
            self._spool.unlink(missing_ok=True)

    def drop(self) -> None:
        with self._lock:
            self._sealed = True
            self._spool.unlink(missing_ok=True)
            temporary = "TEMPORARY " if self.temporary else ""
            with self._connection() as conn:
                conn.cursor().execute(f"DROP {temporary}TABLE IF EXISTS {self.qualified}")


def text_rows(block: bytes, columns: int) -> list[tuple[bytes | None, ...]]:
    """Rows of whole lines of LOAD DATA text of numeric columns, as tuples of raw field text (None: NULL).

    Only for results whose every column is numeric: their LOAD DATA text
    has no escapes but ``\\N`` (NULL), and is exactly the text MariaDB
    sends for the value (the engine checks both before it streams such a
    result; see also :mod:`czar.wire`, which makes wire packets of it).
    """
    rows: list[tuple[bytes | None, ...]] = []
    for line in block.split(b"\n")[:-1]:
        fields = line.split(b"\t")
        if len(fields) != columns:
            raise ResultVerificationError(f"a result row has {len(fields)} fields, expected {columns}")
        if b"\\" in line:
            row = tuple(None if f == b"\\N" else f for f in fields)
            if any(f is not None and b"\\" in f for f in row):
                raise ResultVerificationError("escaped text in a numeric result")
            rows.append(row)
        else:
            rows.append(tuple(fields))
    return rows


def line_blocks(handle: BinaryIO, block_bytes: int = SPOOL_BLOCK_BYTES) -> Iterator[bytes]:
    """A file of LOAD DATA text as blocks of about ``block_bytes`` that each end with a whole line."""
    rest = b""
    while block := handle.read(block_bytes):
        if rest:
            block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        raise ResultVerificationError("spooled rows end without a newline")


async def spooled_rows(blocks: AsyncIterator[bytes], columns: int) -> AsyncIterator[tuple[bytes | None, ...]]:
    """Rows of an async iterator of :meth:`ResultTable.spool_blocks` blocks (closes it at the end)."""
    try:
        async for block in blocks:
            for row in text_rows(block, columns):
                yield row
    finally:
        aclose = getattr(blocks, "aclose", None)
        if aclose is not None:
            await aclose()
