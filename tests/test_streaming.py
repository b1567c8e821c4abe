"""Results streamed to the client (czar.frontend.write_text_resultset) and made from spool text (czar.wire).

Unit tests: the bulk encoder writes exactly the packets of the row-by-row
one (which is checked against hand-made packets), refuses any text that is
not whole rows of plain numeric values.  Cluster tests: a czar front end
whose engine streams every eligible result from the spool (pass-through
threshold 0) gives, over the wire, the reference MariaDB's column names,
types and values byte for byte: NULLs, empty results, and through the row
path strings with tabs, newlines, backslashes, NULs and binary; a client
that goes away mid-result ends its query and leaves the czar serving.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mysql_mimic import packets as mimic_packets
from mysql_mimic.charset import CharacterSet
from mysql_mimic.stream import MysqlStream
from mysql_mimic.types import Capabilities, ServerStatus

from czar.asyncq import AsyncQueries
from czar.auth import UserDirectory
from czar.catalog import Catalog
from czar.engine import ColumnInfo, Engine, EngineSettings, QueryResult
from czar.frontend import _until_done, make_server, result_set, write_text_resultset
from czar.merge import spooled_rows
from czar.processlist import Process, ProcessList
from czar.wire import encode_text_rows, encode_text_rows_slowly
from skyshard.cluster import LocalCluster, free_port
from skyshard.mariadb import ServerAddress
from tests.conftest import SAMPLE_DB

# -- czar.wire ------------------------------------------------------------------------------


def test_packets_are_mysql_text_rows() -> None:
    block = b"1\t\\N\t-2.5\n30\t4e-05\t\\N\n"
    packets = (
        b"\x08\x00\x00\xff" + b"\x011" + b"\xfb" + b"\x04-2.5"
        + b"\x0a\x00\x00\x00" + b"\x0230" + b"\x054e-05" + b"\xfb"
    )
    assert encode_text_rows_slowly(block, 3, 255) == (packets, 2)
    assert encode_text_rows(block, 3, 255) == (packets, 2)
    long = b"9" * 300
    expected = (303).to_bytes(3, "little") + b"\x07" + b"\xfc\x2c\x01" + long
    assert encode_text_rows(long + b"\n", 1, 7) == (expected, 1)
    assert encode_text_rows(b"", 4, 0) == (b"", 0)


_number = st.one_of(
    st.integers(-(2**63), 2**64 - 1).map(lambda i: str(i).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
    st.just(b"\\N"),
    st.just(b""),
    st.integers(240, 260).map(lambda n: b"7" * n),
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 6).flatmap(lambda c: st.tuples(st.just(c), st.lists(st.lists(_number, min_size=c, max_size=c),
                                                                         max_size=40))),
    st.integers(0, 255),
)
def test_bulk_packets_equal_row_by_row_packets(table: tuple[int, list[list[bytes]]], seq: int) -> None:
    columns, rows = table
    block = b"".join(b"\t".join(row) + b"\n" for row in rows)
    assert encode_text_rows(block, columns, seq) == encode_text_rows_slowly(block, columns, seq)


@pytest.mark.parametrize("block", [
    b"1\t2\n3\n",         # a row short of a field
    b"1\t2\t3\n",         # a field too many
    b"1\t2",              # no final newline
    b"1\\\t2\n",          # an escape that is not NULL
    b"1\t\\N2\n",
    b"\\\\N\t1\n",        # an escaped backslash: text, not a number
    b"a\\tb\t1\n",
    b"1\t2\n\n",          # an empty line
])
def test_anything_but_whole_numeric_rows_is_refused(block: bytes) -> None:
    for encode in (encode_text_rows, encode_text_rows_slowly):
        with pytest.raises(ValueError):
            encode(block, 2, 0)


# -- through the front end ----------------------------------------------------------------------


class InProcessCzar:
    """A czar front end on a free port, in a thread of its own, over the test cluster."""

    def __init__(self, cluster: LocalCluster, spool_dir: Path) -> None:
        self.css = cluster.css()
        self.engine = Engine(
            EngineSettings(czar_db=cluster.czar_db.address, spool_dir=spool_dir, passthrough_bytes=0),
            Catalog(self.css),
        )
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[Any, AsyncQueries]:
            asyncq = AsyncQueries(self.engine)
            server = make_server(self.engine, asyncq, ProcessList(), UserDirectory(self.css),
                                 host="127.0.0.1", port=self.port)
            await server.start_server()
            return server, asyncq

        self.server, self.asyncq = self.call(start())

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def connect(self, **kwargs: Any) -> Any:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="skyshard", database=SAMPLE_DB, **kwargs)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.asyncq.close()
            await self.engine.close()

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.css.close()


@pytest.fixture(scope="module")
def streaming(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCzar]:
    czar = InProcessCzar(cluster, tmp_path_factory.mktemp("streaming-spool"))
    try:
        yield czar
    finally:
        czar.close()


def _raw(connection: Any, sql: str) -> tuple[list[tuple[str, int]], list[tuple[Any, ...]]]:
    """Column (name, type code) and rows as raw text (unbuffered, values as bytes)."""
    with connection.cursor(pymysql.cursors.SSCursor) as cursor:
        cursor.execute(sql)
        description = [(d[0], d[1]) for d in cursor.description]
        return description, list(cursor.fetchall())


def _key(row: tuple[Any, ...]) -> tuple[bytes, ...]:
    return tuple(b"" if v is None else v for v in row)


PASSTHROUGH = [
    "SELECT objectId, uFlux, rMag, extendedness FROM Object",  # uFlux has NULLs
    "SELECT * FROM Object",
    "SELECT objectId, ra FROM Object WHERE rMag > 1000",  # no row
    "SELECT sourceId, filterId, psfFlux FROM Source",
]
ROWS = [  # not pass-through: the merge's rows, encoded by mysql-mimic's row writer
    "SELECT objectId, CONCAT('a\\tb\\nc\\\\d', objectId) AS s, IF(objectId % 2 = 0, NULL, 'x\\ty') AS n FROM Object WHERE objectId < 3000",
    "SELECT objectId, UNHEX('00FF5C0A09274E') AS b, CHAR(0, 92, 78) AS z FROM Object WHERE objectId < 5000",
    "SELECT objectId, '\\\\N' AS notnull, IF(objectId % 3 = 0, '', 'abc') AS e FROM Object WHERE objectId < 2000",
    "SELECT filterId, COUNT(*), MAX(psfFlux) FROM Source GROUP BY filterId",
    "SELECT objectId, ra FROM Object ORDER BY ra LIMIT 0",
]


@pytest.mark.parametrize("sql", PASSTHROUGH + ROWS)
def test_streamed_results_are_the_reference_byte_for_byte(
    streaming: InProcessCzar, reference: ServerAddress, sql: str
) -> None:
    before = streaming.engine.passthrough_queries
    engine = streaming.connect(conv={}, use_unicode=False)
    plain = reference.connect(database=SAMPLE_DB, conv={}, use_unicode=False)
    try:
        got_columns, got = _raw(engine, sql)
        want_columns, want = _raw(plain, sql)
    finally:
        engine.close()
        plain.close()
    assert got_columns == want_columns
    assert sorted(got, key=_key) == sorted(want, key=_key)
    assert streaming.engine.passthrough_queries == before + (1 if sql in PASSTHROUGH else 0)
    if "uFlux" in sql:
        assert any(row[1] is None for row in got)  # NULLs went through


def test_a_client_gone_mid_result_ends_the_query(streaming: InProcessCzar) -> None:
    """The query is recorded as stopped and its connection closed; the czar goes on serving."""
    sql = "SELECT * FROM Object o JOIN Source s ON o.objectId = s.objectId"
    connection = streaming.connect(cursorclass=pymysql.cursors.SSCursor)
    raw = connection._sock  # noqa: SLF001 - the client dies without a word
    assert raw is not None
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        assert cursor.fetchone() is not None
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    raw.close()
    deadline = time.monotonic() + 30
    while streaming.engine.sync_running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert streaming.engine.sync_running == {}
    engine = streaming.connect()
    try:
        with engine.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM Object")
            assert cursor.fetchone()[0] == 3000
    finally:
        engine.close()


class _Writer:
    """A client's socket: keeps what is written; with ``fail_after`` bytes it is gone after that many."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.data = bytearray()
        self.fail_after = fail_after

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        if self.fail_after is not None and len(self.data) > self.fail_after:
            raise ConnectionResetError("client gone")


class _Connection:
    """What write_text_resultset uses of a mysql-mimic Connection."""

    capabilities = Capabilities(0)
    server_charset = CharacterSet.utf8mb4

    def __init__(self, writer: _Writer) -> None:
        self.stream = MysqlStream(None, writer)  # type: ignore[arg-type]

    def deprecate_eof(self) -> bool:
        return False

    def eof(self) -> bytes:
        return mimic_packets.make_eof(capabilities=self.capabilities, status_flags=ServerStatus(0))

    def ok_or_eof(self, affected_rows: int = 0) -> bytes:
        return self.eof()


def _result(lines: list[bytes], block_rows: int, closed: list[str]) -> tuple[QueryResult, QueryResult]:
    """The same rows as a pass-through result (text blocks of ``block_rows`` lines) and as plain rows."""
    columns = [ColumnInfo("a", 8, 63), ColumnInfo("b", 5, 63), ColumnInfo("c", 5, 63)]

    async def blocks() -> AsyncIterator[bytes]:
        try:
            for i in range(0, len(lines), block_rows):
                yield b"".join(lines[i : i + block_rows])
        finally:
            closed.append("blocks")

    async def rows() -> AsyncIterator[tuple[Any, ...]]:
        for line in lines:
            yield tuple(None if f == b"\\N" else f for f in line[:-1].split(b"\t"))

    text = blocks()
    return QueryResult(1, columns, spooled_rows(text, 3), text_blocks=text), QueryResult(2, columns, rows())


def _lines(count: int) -> list[bytes]:
    return [b"%d\t%s\t-%d.25\n" % (i, b"\\N" if i % 7 == 0 else b"%de-05" % i, i) for i in range(count)]


@pytest.mark.parametrize("block_rows", [97, 5, 1])  # numpy in a thread; a few rows encoded inline
def test_text_blocks_go_out_as_the_row_writer_would_send_the_rows(block_rows: int) -> None:
    """Header, rows (sequence ids wrapping past 255 across blocks) and end: the very same bytes."""
    lines = _lines(1000)
    closed: list[str] = []
    spooled, plain = _result(lines, block_rows, closed)
    sent = []
    for result in (spooled, plain):
        writer = _Writer()
        asyncio.run(write_text_resultset(_Connection(writer), result_set(result)))
        sent.append(bytes(writer.data))
    assert sent[0] == sent[1]
    assert closed == ["blocks"]
    assert len(sent[0]) > sum(len(line) for line in lines)


def test_a_client_gone_mid_result_closes_the_rows() -> None:
    """The writer stops at the first failed send and closes the result's rows (the engine ends the query)."""
    closed: list[str] = []
    spooled, _ = _result(_lines(20000), 500, closed)
    writer = _Writer(fail_after=20000)
    with pytest.raises(ConnectionResetError):
        asyncio.run(write_text_resultset(_Connection(writer), result_set(spooled)))
    assert closed == ["blocks"]
    assert len(writer.data) < 200000

    finished: list[str] = []

    async def rows() -> AsyncIterator[tuple[Any, ...]]:
        try:
            for i in range(100000):
                yield (b"%d" % i, None, b"x" * 20)
        finally:
            finished.append("rows")

    plain = QueryResult(3, [ColumnInfo("a", 8, 63), ColumnInfo("b", 5, 63), ColumnInfo("c", 253, 45)], rows())
    with pytest.raises(ConnectionResetError):
        asyncio.run(write_text_resultset(_Connection(_Writer(fail_after=50000)), result_set(plain)))
    assert finished == ["rows"]


def test_a_busy_result_closed_early_closes_the_engine_rows() -> None:
    """The connection's busy marker ends, and the engine's rows are closed at once (not when collected)."""
    finished: list[int] = []

    async def rows() -> AsyncIterator[tuple[Any, ...]]:
        try:
            for i in range(10):
                yield (i,)
        finally:
            finished.append(1)

    process = Process(connection_id=1, user="u", host="h", kill=lambda kind: None, db=lambda: None)
    process.begin("SELECT 1")

    async def go() -> None:
        wrapped = _until_done(rows(), process)
        assert await anext(wrapped) == (0,)
        await wrapped.aclose()
        assert finished == [1]  # already, not at some later collection

    asyncio.run(go())
    assert process.info is None
