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

Once the first chunk result has arrived and its metadata is known, the rows
need not wait for the other chunks either (:meth:`DirectResult.start_streaming`):
they go to the client as each chunk result arrives, while the others are
still being computed, so that the client reads (a cone's thousand rows are
3-4 ms of PyMySQL's time) while the last workers finish.  A chunk that fails
after rows went out ends the result with an error instead of its end
packet, as MariaDB ends a statement killed mid-result; a chunk whose column
definitions differ from the first's does too (the rows sent cannot be
re-typed), and the engine then stops streaming that merge early.  In memory
a streaming result holds at most about :data:`DIRECT_BYTES` that the client
has not read yet (the dispatcher waits in :meth:`DirectResult.room`); a
chunk result too large for memory stays in its spool file until it is sent.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

from czar.merge import ResultVerificationError, line_blocks

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
        # streaming (start_streaming): results not yet taken, a spool file each for those too large
        self.streaming = False
        self._pending: list[tuple[bytes | Path, int]] = []
        self._taken: list[tuple[bytes | Path, int]] = []
        self._closed = False
        self._arrived: asyncio.Event | None = None  # set on each arrival and at the dispatch's end (watch)
        self._drained: asyncio.Event | None = None  # set when the reader took what was pending
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

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
            if self.streaming:
                if not self._closed:
                    self._pending.append((data, rows))
                    self.rows += rows
                    self.size += len(data)
            else:
                if self.table is None and self.size + len(data) > self.limit:
                    self._to_table()
                if self.table is not None:
                    self.table.append(data, rows)
                    return
                self.blocks.append(data)
                self.block_rows.append(rows)
                self.rows += rows
                self.size += len(data)
        self._notify()

    def create_and_append(self, columns: Sequence[tuple[str, str]], data: bytes, rows: int) -> None:
        self.create(columns)
        self.append(data, rows)
        self._notify()  # an empty result arrived too: its columns are known

    def takes_inline(self, size: int) -> bool:
        """Whether a result of ``size`` bytes is only kept in memory (the dispatcher then calls
        :meth:`create_and_append` on its event loop, not in a thread)."""
        return self.table is None and self.size + size <= self.limit

    def append_file(self, path: Path, rows: int) -> None:
        with self._lock:
            if self.streaming:
                if not self._closed:  # the caller removes ``path`` on return: keep a link of our own
                    own = path.with_name(f"direct-{uuid.uuid4().hex}")
                    os.link(path, own)
                    self._pending.append((own, rows))
                    self.rows += rows
            else:
                if self.table is None:
                    self._to_table()
                self.table.append_file(path, rows)
                return
        self._notify()

    async def room(self, size: int) -> None:
        """Wait (streaming) while ``size`` more bytes would put more than :attr:`limit` in memory
        that the client has not read yet; the dispatcher calls it before each append."""
        while self.streaming and not self._closed and self.size and self.size + size > self.limit:
            assert self._drained is not None
            self._drained.clear()
            await self._drained.wait()

    # -- streaming: the engine's side, on its event loop --
    def watch(self, producing: asyncio.Future[Any]) -> None:
        """Let :meth:`first_arrival` and :meth:`stream` follow ``producing``, the dispatch into
        this result (call on the event loop, before the first chunk can arrive)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        producing.add_done_callback(lambda _: self._notify())

    def _notify(self) -> None:
        if self._arrived is None or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._arrived.set()
        else:
            self._loop.call_soon_threadsafe(self._arrived.set)

    async def first_arrival(self, producing: asyncio.Future[Any]) -> None:
        """Wait until a chunk result arrived or the dispatch ended."""
        assert self._arrived is not None, "watch() first"
        while self.columns is None and not producing.done():
            self._arrived.clear()
            await self._arrived.wait()

    def start_streaming(self) -> bool:
        """From now on keep chunk results only until :meth:`stream` takes them (never a result
        table); False when that is no longer possible (a table, chunks of different columns)."""
        with self._lock:
            if self.table is not None or self.mixed or self.columns is None:
                return False
            self.streaming = True
            self._pending = list(zip(self.blocks, self.block_rows, strict=True))
            self.blocks, self.block_rows = [], []
            return True

    def _take(self) -> list[tuple[bytes | Path, int]]:
        with self._lock:
            if self.mixed:
                raise ResultVerificationError(
                    "chunk results disagree on their column definitions after the first rows were sent"
                )
            taken, self._pending, self.size = self._pending, [], 0
            self._taken = taken  # until the next take: _close removes the files of those not sent
        assert self._drained is not None
        self._drained.set()
        return taken

    async def stream(self, producing: asyncio.Future[Any]) -> AsyncGenerator[bytes, None]:
        """The rows, as blocks of whole lines, as the chunk results arrive until ``producing``
        ends; then its error if it failed, or :class:`ResultVerificationError` if the lines sent
        do not add up to the rows the workers announced.  Closing it ends the streaming (later
        results are dropped) but not ``producing``: that is the caller's."""
        assert self._arrived is not None, "watch() first"
        sent = 0
        try:
            while not (producing.done() and (producing.cancelled() or producing.exception() is not None)):
                self._arrived.clear()
                taken = self._take()
                for item, rows in taken:
                    lines = 0
                    async with aclosing(_blocks(item, rows)) as blocks:
                        async for block in blocks:
                            lines += block.count(b"\n")
                            yield block
                    if lines != rows:
                        raise ResultVerificationError(
                            f"chunk results failed verification: {lines} rows received, the workers sent {rows}"
                        )
                    sent += lines
                if not taken:
                    if producing.done():
                        break
                    await self._arrived.wait()
            producing.result()  # the dispatch's error, if it failed
            if sent != self.rows:
                raise ResultVerificationError(
                    f"chunk results failed verification: {sent} rows received, the workers sent {self.rows}"
                )
        finally:
            self._close()

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending, self.size = self._pending + self._taken, [], 0
        for item, _ in pending:
            if isinstance(item, Path):
                item.unlink(missing_ok=True)
        if self._drained is not None:
            self._drained.set()

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


async def _blocks(item: bytes | Path, rows: int) -> AsyncGenerator[bytes, None]:
    """One chunk result as blocks of whole lines: a block in memory is checked before it goes
    (its line count), a spool file is read a block at a time (in a thread) and then removed."""
    if isinstance(item, bytes):
        lines = item.count(b"\n")
        if lines != rows or not item.endswith(b"\n"):
            raise ResultVerificationError(
                f"chunk results failed verification: {lines} rows received, the workers sent {rows}"
            )
        yield item
        return
    try:
        with open(item, "rb") as handle:
            pieces = line_blocks(handle)
            while (block := await asyncio.to_thread(next, pieces, None)) is not None:
                yield block
    finally:
        item.unlink(missing_ok=True)


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


