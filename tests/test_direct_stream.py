"""A direct result that streams its rows as the chunk results arrive (czar.direct).

The dispatcher's side (``create_and_append``, ``append``, ``append_file``,
``room``) is driven by hand here, so that each case can put a chunk result
before, during or after the reader: rows must go out in arrival order, each
chunk result checked before it goes, and anything wrong after the first rows
must end the stream with an error, never with a short result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from czar.direct import DirectResult
from czar.merge import ResultVerificationError

COLUMNS = [("_c0", "BIGINT(20)"), ("_c1", "DOUBLE")]
OTHER_COLUMNS = [("_c0", "INT(11)"), ("_c1", "DOUBLE")]


def _no_table() -> tuple[Any, Any]:
    raise AssertionError("a streaming result never makes a result table")


def _lines(first: int, count: int) -> bytes:
    return b"".join(b"%d\t%d.5\n" % (i, i) for i in range(first, first + count))


async def _streaming(direct: DirectResult) -> asyncio.Future[None]:
    """The state the engine leaves a direct result in once its first chunk arrived."""
    producing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    direct.watch(producing)
    await direct.first_arrival(producing)
    assert direct.start_streaming()
    return producing


async def _read(direct: DirectResult, producing: asyncio.Future[None], got: list[bytes]) -> None:
    async for block in direct.stream(producing):
        got.append(block)


async def _reading() -> tuple[DirectResult, asyncio.Future[None], list[bytes], asyncio.Future[None]]:
    """A streaming result whose first chunk (rows 0-2) the reader has sent, the dispatch still on:
    the result, the dispatch, the blocks sent so far and the reader."""
    direct = DirectResult(_no_table)
    direct.create_and_append(COLUMNS, _lines(0, 3), 3)
    producing = await _streaming(direct)
    got: list[bytes] = []
    reader = asyncio.ensure_future(_read(direct, producing, got))
    await asyncio.sleep(0.05)
    assert got == [_lines(0, 3)]  # sent before the other chunks answered
    return direct, producing, got, reader


def _run(case: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(case(), 10))


def test_rows_go_out_in_arrival_order_while_later_chunks_run() -> None:
    async def case() -> None:
        direct, producing, got, reader = await _reading()
        direct.create_and_append(COLUMNS, _lines(3, 2), 2)
        await asyncio.to_thread(direct.create_and_append, COLUMNS, _lines(5, 4), 4)  # from a thread too
        await asyncio.sleep(0.05)
        assert got == [_lines(0, 3), _lines(3, 2), _lines(5, 4)]
        assert not reader.done()  # the dispatch has not ended: more may come
        producing.set_result(None)
        await reader
    _run(case)


def test_a_chunk_whose_lines_do_not_match_its_rows_is_not_sent() -> None:
    async def case() -> None:
        direct = DirectResult(_no_table)
        direct.create_and_append(COLUMNS, _lines(0, 3), 3)
        producing = await _streaming(direct)
        got: list[bytes] = []
        direct.create_and_append(COLUMNS, _lines(3, 2), 3)  # announced 3, holds 2
        producing.set_result(None)
        with pytest.raises(ResultVerificationError, match="2 rows received, the workers sent 3"):
            await _read(direct, producing, got)
        assert got == [_lines(0, 3)]
    _run(case)


def test_a_dispatch_failure_after_the_first_rows_ends_the_stream_with_its_error() -> None:
    async def case() -> None:
        _, producing, got, reader = await _reading()
        producing.set_exception(RuntimeError("chunk 7 on worker-2: gone"))
        with pytest.raises(RuntimeError, match="chunk 7"):
            await reader
        assert got == [_lines(0, 3)]
    _run(case)


def test_a_chunk_with_other_column_types_after_the_first_rows_is_an_error() -> None:
    async def case() -> None:
        direct, producing, got, reader = await _reading()
        direct.create_and_append(OTHER_COLUMNS, _lines(3, 2), 2)
        producing.set_result(None)
        with pytest.raises(ResultVerificationError, match="disagree on their column definitions"):
            await reader
        assert got == [_lines(0, 3)]
        assert direct.mixed
    _run(case)


def test_a_spilled_chunk_streams_from_its_file_and_the_file_is_removed(tmp_path: Path) -> None:
    async def case() -> None:
        direct = DirectResult(_no_table)
        direct.create_and_append(COLUMNS, _lines(0, 2), 2)
        producing = await _streaming(direct)
        spilled = tmp_path / "chunk-spill"
        big = _lines(2, 300_000)  # several blocks of line_blocks' size
        spilled.write_bytes(big)
        direct.append_file(spilled, 300_000)
        spilled.unlink()  # the dispatcher removes its file once append_file returns
        producing.set_result(None)
        got: list[bytes] = []
        await _read(direct, producing, got)
        assert len(got) > 2 and all(block.endswith(b"\n") for block in got)
        assert b"".join(got) == _lines(0, 2) + big
        assert list(tmp_path.iterdir()) == []  # its own link is gone too
    _run(case)


def test_the_dispatch_waits_while_the_client_is_behind() -> None:
    async def case() -> None:
        direct = DirectResult(_no_table, limit=200)
        direct.create_and_append(COLUMNS, _lines(0, 20), 20)  # 140 bytes: room for 60 more
        producing = await _streaming(direct)
        waiting = asyncio.ensure_future(direct.room(80))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing was read yet
        stream = direct.stream(producing)
        assert await anext(stream) == _lines(0, 20)
        await asyncio.wait_for(waiting, 1)  # the reader took it: there is room
        producing.set_result(None)
        assert [block async for block in stream] == []
    _run(case)


def test_closing_the_stream_drops_what_arrives_later(tmp_path: Path) -> None:
    async def case() -> None:
        direct = DirectResult(_no_table)
        direct.create_and_append(COLUMNS, _lines(0, 2), 2)
        producing = await _streaming(direct)
        stream = direct.stream(producing)
        assert await anext(stream) == _lines(0, 2)
        spilled = tmp_path / "chunk-spill"
        spilled.write_bytes(_lines(2, 5))
        direct.append_file(spilled, 5)  # pending when the client goes away
        spilled.unlink()
        await stream.aclose()
        assert list(tmp_path.iterdir()) == []
        direct.create_and_append(COLUMNS, _lines(7, 2), 2)
        assert direct.size == 0  # nothing kept for a reader that is gone
        await asyncio.wait_for(direct.room(1 << 30), 1)  # and the dispatch never waits for it
    _run(case)


def test_a_failure_leaves_no_spool_file_behind(tmp_path: Path) -> None:
    async def case() -> None:
        direct = DirectResult(_no_table)
        direct.create_and_append(COLUMNS, _lines(0, 2), 2)
        producing = await _streaming(direct)
        direct.create_and_append(COLUMNS, _lines(2, 2), 3)  # fails verification ...
        spilled = tmp_path / "chunk-spill"
        spilled.write_bytes(_lines(4, 5))
        direct.append_file(spilled, 5)  # ... before this one, taken with it, is read
        spilled.unlink()
        producing.set_result(None)
        with pytest.raises(ResultVerificationError):
            await _read(direct, producing, [])
        assert list(tmp_path.iterdir()) == []
    _run(case)
