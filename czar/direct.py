"""Direct results: a small sync result whose merge is the identity skips the result table.

A point lookup or a cone search over a few chunks (see
:data:`czar.dispatch.INTERACTIVE_CHUNKS`) whose merge SQL only renames the
chunk columns ``_c0, _c1, ...`` (no ORDER BY, LIMIT, DISTINCT or aggregate)
and whose chunk columns are stored columns would get back from the result
table exactly the rows the workers sent, in the order they arrived.  For
numeric columns the workers' ``INTO OUTFILE`` text of a value is the text
MariaDB sends for it (``\\N`` for NULL, no other escape), so those rows can
go to the client as they came: no ``CREATE TEMPORARY TABLE``, ``LOAD
DATA``, merge ``SELECT`` or ``DROP`` on the czar's MariaDB.

What the client sees must be what the merge would have shown, column
metadata included.  That metadata depends only on the merge SQL and the
result table's column definitions (the workers' schema), so the engine
learns it from the first query of each such pair that runs the full way
(:class:`ColumnMemo`) and only answers directly once it knows it, for
numeric columns only.  Anything else (a schema not seen yet, chunks that
disagree on their columns, a result over :data:`DIRECT_BYTES`) goes through
the result table as before (:meth:`DirectResult.materialize`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from czar.merge import ResultVerificationError

DIRECT_BYTES = 4 << 20  # larger results go through the result table
MEMO_ENTRIES = 1024


Columns = tuple[tuple[str, str], ...]


class DirectResult:
    """Chunk results kept as the workers sent them (the dispatcher's result interface).

    ``make_table`` gives a result table (and its connection) when the rows
    must go there after all; once it exists every later chunk goes there too.
    """

    def __init__(self, make_table: Callable[[], tuple[Any, Any]], limit: int = DIRECT_BYTES) -> None:
        self.make_table = make_table
        self.limit = limit
        self.columns: Columns | None = None
        self.mixed = False  # chunks disagree on their column definitions
        self.blocks: list[bytes] = []
        self.block_rows: list[int] = []  # rows the workers announced for each block
        self.rows = 0
        self.size = 0
        self.table: Any = None  # the result table, once the rows went there
        self.connection: Any = None
        self.collected: tuple[int, int, int] | None = None  # set by the engine, as for a ResultTable
        self._lock = threading.Lock()

    # -- the interface Dispatcher.run writes through (blocking: called in threads) --
    def create(self, columns: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            if self.table is not None:
                self.table.create(columns)
                return
            definition = tuple((name, definition) for name, definition in columns)
            if self.columns is None:
                self.columns = definition
            elif definition != self.columns:
                if [c[0] for c in definition] != [c[0] for c in self.columns]:
                    raise RuntimeError("chunk results disagree on their columns")
                self.mixed = True  # the table would convert them to the first chunk's types

    def append(self, data: bytes, rows: int) -> None:
        if not data:
            return
        with self._lock:
            if self.table is None and self.size + len(data) > self.limit:
                self._to_table()
            if self.table is not None:
                self.table.append(data, rows)
                return
            self.blocks.append(data)
            self.block_rows.append(rows)
            self.rows += rows
            self.size += len(data)

    def create_and_append(self, columns: Sequence[tuple[str, str]], data: bytes, rows: int) -> None:
        self.create(columns)
        self.append(data, rows)

    def takes_inline(self, size: int) -> bool:
        """Whether a result of ``size`` bytes is only kept in memory (the dispatcher then calls
        :meth:`create_and_append` on its event loop, not in a thread)."""
        return self.table is None and self.size + size <= self.limit

    def append_file(self, path: Path, rows: int) -> None:
        with self._lock:
            if self.table is None:
                self._to_table()
            self.table.append_file(path, rows)

    # -- the engine's side --
    def _to_table(self) -> None:
        """Move what was collected into a result table (lock held)."""
        self.table, self.connection = self.make_table()
        if self.columns is not None:
            self.table.create(self.columns)
        for block, rows in zip(self.blocks, self.block_rows, strict=True):
            self.table.append(block, rows)
        self.blocks, self.block_rows = [], []

    def materialize(self) -> tuple[Any, Any]:
        """The result table holding every row (made now if it does not exist yet) and its connection."""
        with self._lock:
            if self.table is None:
                self._to_table()
            return self.table, self.connection

    def verified_blocks(self) -> list[bytes]:
        """The collected text, checked against the rows the workers announced."""
        lines = sum(block.count(b"\n") for block in self.blocks)
        if lines != self.rows or any(not block.endswith(b"\n") for block in self.blocks):
            raise ResultVerificationError(
                f"chunk results failed verification: {lines} rows received, the workers sent {self.rows}"
            )
        return self.blocks

    def drop(self) -> None:
        """After a failure: drop the result table if there is one (its connection is closed by its owner)."""
        with self._lock:
            if self.table is not None:
                self.table.drop()


class ColumnMemo:
    """Result column metadata by (merge SQL, result column definitions), learned from full merges."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self.entries = entries
        self._known: dict[tuple[str, Columns], list[Any]] = {}
        self._lock = threading.Lock()

    def get(self, merge_sql: str, columns: Columns | None) -> list[Any] | None:
        if columns is None:
            return None
        with self._lock:
            return self._known.get((merge_sql, columns))

    def put(self, merge_sql: str, columns: Columns, metadata: list[Any]) -> None:
        with self._lock:
            if len(self._known) >= self.entries:
                self._known.clear()
            self._known[(merge_sql, columns)] = list(metadata)


