"""Tests for ingest.loaddata: LOAD DATA text read exactly as MariaDB reads it, and written back.

Truth comes from a slow byte-by-byte reader written here (``reference_rows``)
after MariaDB's ``READ_INFO::read_field``; its rules were checked against a
real MariaDB server on a few thousand random inputs while this module was
written.  The qserv-case01 tests read ``shared/datasets`` and skip without it.
"""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from ingest import loaddata
from ingest.loaddata import (
    Block,
    InputFormatError,
    TextFormat,
    append_columns,
    append_columns_grouped,
    decode_field,
    field_bounds,
    float_column,
    gather_rows,
    int_column,
    iter_blocks,
    iter_parquet_blocks,
    sql_literal,
    unescape_mysql_literal,
    validate_escapes,
)

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CASE01 = DATASETS / "qserv-case01" / "data"
CASE01_TABLES = ["Filter", "LeapSeconds", "Logs", "Object", "RefSrcMatch",
                 "Science_Ccd_Exposure", "SimRefObject", "Source", "sdqa_Metric"]
needs_case01 = pytest.mark.skipif(
    not CASE01.is_dir(), reason=f"Qserv test data not found at {CASE01} (shared/datasets absent)")

CSV_NO_ESCAPE = TextFormat(fields_terminated_by=b",", fields_enclosed_by=b'"',
                           fields_escaped_by=b"")
PIPES_CRLF = TextFormat(fields_terminated_by=b"||", fields_enclosed_by=b"'",
                        fields_escaped_by=b"\\", lines_terminated_by=b"\r\n")


# ---------------------------------------------------------------------------
# Reference reader and writer (slow, obviously-correct)
# ---------------------------------------------------------------------------


def reference_rows(data: bytes, fmt: TextFormat) -> list[list[bytes]]:
    """Rows as lists of raw field bytes, reading one byte at a time like MariaDB."""
    ft, lt = fmt.fields_terminated_by, fmt.lines_terminated_by
    enc = fmt.fields_enclosed_by
    esc = fmt.fields_escaped_by if fmt.fields_escaped_by != enc else b""
    n = len(data)
    rows: list[list[bytes]] = []
    fields: list[bytes] = []
    i = 0
    while True:
        start = i
        if enc and data[i:i + 1] == enc:  # enclosed field
            i += 1
            while True:
                if i >= n:
                    fields.append(data[start:n])
                    rows.append(fields)
                    return rows
                c = data[i:i + 1]
                if esc and c == esc:
                    i += 2
                    continue
                if c == enc:
                    if data[i + 1:i + 2] == enc:
                        i += 2
                        continue
                    if i + 1 >= n:
                        fields.append(data[start:n])
                        rows.append(fields)
                        return rows
                    if data.startswith(lt, i + 1):
                        fields.append(data[start:i + 1])
                        rows.append(fields)
                        fields = []
                        i += 1 + len(lt)
                        if i >= n:
                            return rows
                        break
                    if data.startswith(ft, i + 1):
                        fields.append(data[start:i + 1])
                        i += 1 + len(ft)
                        break
                i += 1
            continue
        while True:  # unenclosed field
            if i >= n:  # MariaDB starts no new field at the end of the file
                if i > start:
                    fields.append(data[start:n])
                if fields:
                    rows.append(fields)
                return rows
            c = data[i:i + 1]
            if esc and c == esc:
                i += 2
                continue
            if data.startswith(lt, i):
                fields.append(data[start:i])
                rows.append(fields)
                fields = []
                i += len(lt)
                if i >= n:
                    return rows
                break
            if data.startswith(ft, i):
                fields.append(data[start:i])
                i += len(ft)
                break
            i += 1


def outfile_value(value: bytes | None) -> bytes:
    """A value as ``SELECT ... INTO OUTFILE`` writes it with the default format."""
    if value is None:
        return b"\\N"
    return (value.replace(b"\\", b"\\\\").replace(b"\t", b"\\\t").replace(b"\n", b"\\\n")
            .replace(b"\0", b"\\0"))


def outfile(rows: list[list[bytes | None]]) -> bytes:
    return b"".join(b"\t".join(outfile_value(v) for v in row) + b"\n" for row in rows)


def all_fields(blocks: list[Block], nfields: int) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for block in blocks:
        starts, ends = field_bounds(block, None, nfields)
        for r in range(block.nrows):
            out.append([block.data[starts[r, j]:ends[r, j]] for j in range(nfields)])
    return out


def write(tmp_path: Path, name: str, data: bytes, compress: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def random_binary_rows(rnd: random.Random, nrows: int) -> list[list[bytes | None]]:
    special = [b"\t", b"\n", b"\\", b"\0", b"N", b"\\N", b"\r", b'"']
    rows: list[list[bytes | None]] = []
    for i in range(nrows):
        blob = b"".join(rnd.choice(special) if rnd.random() < 0.3 else bytes([rnd.randrange(256)])
                        for _ in range(rnd.randrange(0, 40)))
        text = rnd.choice([b"", b"\\", b"a\tb", b"line1\nline2", b"\\N", b"x\\"])
        rows.append([str(i).encode(), blob, None if rnd.random() < 0.2 else text,
                     repr(rnd.uniform(-1e3, 1e3)).encode()])
    return rows


# ---------------------------------------------------------------------------
# Binary values, escapes, NULL
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("block_bytes", [1, 7, 64, 1 << 26])
def test_binary_fields_round_trip_byte_exact(tmp_path: Path, compress: bool,
                                             block_bytes: int) -> None:
    rnd = random.Random(20240601)
    rows = random_binary_rows(rnd, 300)
    data = outfile(rows)
    path = write(tmp_path, "bin.tsv" + (".gz" if compress else ""), data, compress)

    blocks = list(iter_blocks(path, block_bytes=block_bytes))
    assert sum(b.nrows for b in blocks) == len(rows)
    assert [b.first_line for b in blocks] == list(
        np.cumsum([1] + [b.nrows for b in blocks[:-1]]))
    fields = all_fields(blocks, 4)
    assert [[decode_field(f) for f in row] for row in fields] == rows
    for block in blocks:
        validate_escapes(block)
    # Every row, in order: exactly the input.  A permutation: exactly those rows.
    assert b"".join(gather_rows(b, np.arange(b.nrows)) for b in blocks) == data
    texts = [outfile([row]) for row in rows]
    block = blocks[0] if len(blocks) == 1 else Block.from_bytes(data)
    order = np.random.default_rng(1).permutation(block.nrows)
    assert gather_rows(block, order) == b"".join(texts[i] for i in order)
    mask = np.arange(block.nrows) % 3 == 0
    assert gather_rows(block, mask) == b"".join(texts[i] for i in np.flatnonzero(mask))
    assert gather_rows(block, np.zeros(0, dtype=np.int64)) == b""


def test_plain_and_gzip_blocks_are_identical(tmp_path: Path) -> None:
    data = outfile(random_binary_rows(random.Random(5), 500))
    plain = list(iter_blocks(write(tmp_path, "a.tsv", data), block_bytes=997))
    packed = list(iter_blocks(write(tmp_path, "a.tsv.gz", data, compress=True), block_bytes=997))
    assert len(plain) == len(packed) > 1
    for a, b in zip(plain, packed, strict=True):
        assert a.first_line == b.first_line
        assert np.array_equal(a.row_starts, b.row_starts)
        assert np.array_equal(a.row_ends, b.row_ends)
        assert gather_rows(a, np.arange(a.nrows)) == gather_rows(b, np.arange(b.nrows))


def test_null_and_escaped_backslash_n() -> None:
    data = b"1\t\\N\t\\N\n2\t\\\\N\tN\n3\t\\N\t\\\\\n"
    block = Block.from_bytes(data)
    starts, ends = field_bounds(block, None, 3)
    fields = [[decode_field(block.data[starts[r, j]:ends[r, j]]) for j in range(3)]
              for r in range(3)]
    assert fields == [[b"1", None, None], [b"2", b"\\N", b"N"], [b"3", None, b"\\"]]
    values = float_column(block, starts, ends, 0)
    assert values.tolist() == [1.0, 2.0, 3.0]
    one = Block.from_bytes(b"\\N\n1.5\n-2e3\n")
    assert np.array_equal(float_column(one, *field_bounds(one, None, 1), 0),
                          np.array([np.nan, 1.5, -2000.0]), equal_nan=True)


def test_escape_runs_parity() -> None:
    # Odd run before the tab/newline escapes it; even run does not.
    data = b"a\\\tb\tc\n" + b"a\\\\\tb\n" + b"x\\\\\\\ny\tz\n"
    block = Block.from_bytes(data)
    assert block.nrows == 3
    starts, ends = field_bounds(block, None, 2)
    assert [decode_field(block.data[starts[r, j]:ends[r, j]]) for r in range(3)
            for j in range(2)] == [b"a\tb", b"c", b"a\\", b"b", b"x\\\ny", b"z"]


# ---------------------------------------------------------------------------
# Block boundaries
# ---------------------------------------------------------------------------


def _blocks_equal_whole(path: Path, data: bytes, fmt: TextFormat, block_bytes: int) -> None:
    whole = Block.from_bytes(data, fmt)
    blocks = list(iter_blocks(path, fmt, block_bytes=block_bytes))
    rows = [b.row_bytes(r) for b in blocks for r in range(b.nrows)]
    assert rows == [whole.row_bytes(r) for r in range(whole.nrows)], block_bytes
    assert b"".join(gather_rows(b, np.arange(b.nrows)) for b in blocks) == \
        gather_rows(whole, np.arange(whole.nrows))


def test_block_boundary_inside_escape_sequences(tmp_path: Path) -> None:
    data = (b"1\tab\\\\\\\ncd\\\tef\\\\\n" + b"2\t\\\\\\\\\\\n\\\t\\\\\n" + b"3\t\\\n\\\n\\\n\n"
            + b"4\tend\n")
    path = write(tmp_path, "esc.tsv", data)
    for block_bytes in range(1, len(data) + 2):
        _blocks_equal_whole(path, data, TextFormat(), block_bytes)
    assert [len(r) for r in reference_rows(data, TextFormat())] == [2, 2, 2, 2]


def test_block_boundary_inside_enclosure(tmp_path: Path) -> None:
    fmt = TextFormat.csv()
    data = (b'1,"a,b\nc",x\n' + b'2,"say ""hi""\n",y\n' + b'3,"\\"quoted\\", \\\n",z\n'
            + b'4,plain "not enclosed",w\n' + b'5,"",""\n')
    path = write(tmp_path, "enc.csv", data)
    for block_bytes in range(1, len(data) + 2):
        _blocks_equal_whole(path, data, fmt, block_bytes)
    block = Block.from_bytes(data, fmt)
    assert block.nrows == 5
    starts, ends = field_bounds(block, fmt, 3)
    values = [[decode_field(block.data[starts[r, j]:ends[r, j]], fmt) for j in range(3)]
              for r in range(5)]
    assert values == [
        [b"1", b"a,b\nc", b"x"],
        [b"2", b'say "hi"\n', b"y"],
        [b"3", b'"quoted", \n', b"z"],
        [b"4", b'plain "not enclosed"', b"w"],
        [b"5", b"", b""],
    ]


def test_empty_and_tiny_files(tmp_path: Path) -> None:
    assert list(iter_blocks(write(tmp_path, "empty.tsv", b""))) == []
    assert list(iter_blocks(write(tmp_path, "empty.tsv.gz", b"", compress=True))) == []
    blocks = list(iter_blocks(write(tmp_path, "nl.tsv", b"\n")))
    assert [b.nrows for b in blocks] == [1]  # one empty row, as LOAD DATA sees it
    assert field_bounds(blocks[0], None, 1)[0].shape == (1, 1)
    with pytest.raises(InputFormatError, match="line 1: expected 2 fields, found 1"):
        field_bounds(blocks[0], None, 2)
    (block,) = iter_blocks(write(tmp_path, "one.tsv", b"x"))
    assert block.missing_final_terminator and block.data == b"x\n"


def test_row_longer_than_block_and_max_row_bytes(tmp_path: Path) -> None:
    data = b"x" * 5000 + b"\ty\n" + b"a\tb\n"
    path = write(tmp_path, "long.tsv", data)
    blocks = list(iter_blocks(path, block_bytes=16))
    assert sum(b.nrows for b in blocks) == 2
    with pytest.raises(InputFormatError, match="no row end"):
        list(iter_blocks(path, block_bytes=16, max_row_bytes=1000))


# ---------------------------------------------------------------------------
# Field counts and line numbers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
def test_wrong_field_count_names_file_and_line(tmp_path: Path, block_bytes: int) -> None:
    rows = [b"1\ta\\\tb\tc", b"2\tline\\\nbreak\tc", b"3\tb\tc", b"4\tb\tc",
            b"5\tb\tc\textra", b"6\tb\tc"]
    path = write(tmp_path, "bad.tsv", b"\n".join(rows) + b"\n")
    with pytest.raises(InputFormatError) as info:
        for block in iter_blocks(path, block_bytes=block_bytes):
            field_bounds(block, None, 3)
    err = info.value
    assert err.line == 5  # rows as LOAD DATA counts them (row 2 spans two physical lines)
    assert err.path == str(path)
    assert "bad.tsv, line 5" in str(err)
    assert "expected 3 fields, found 4" in str(err)


def test_missing_field_and_empty_line_are_errors() -> None:
    with pytest.raises(InputFormatError, match="line 2: expected 2 fields, found 1"):
        field_bounds(Block.from_bytes(b"a\tb\nc\nd\te\n"), None, 2)
    with pytest.raises(InputFormatError, match="line 3"):
        field_bounds(Block.from_bytes(b"a\tb\nc\td\n\ne\tf\n"), None, 2)


def test_trailing_separator_at_end_of_file_starts_no_field() -> None:
    # MariaDB reads "x<TAB>y<TAB>" at the very end of a file (no newline) as two fields.
    block = Block.from_bytes(b"1\t2\t3\nx\ty\t")
    with pytest.raises(InputFormatError, match="line 2: expected 3 fields, found 2"):
        field_bounds(block, None, 3)
    block = Block.from_bytes(b"1\t2\nx\ty\t")
    starts, ends = field_bounds(block, None, 2)
    assert block.data[starts[1, 1]:ends[1, 1]] == b"y"


# ---------------------------------------------------------------------------
# CSV, enclosures, multi-byte terminators
# ---------------------------------------------------------------------------


def _check_against_reference(data: bytes, fmt: TextFormat) -> None:
    block = Block.from_bytes(data, fmt)
    if block.open_enclosure:
        return  # validate_escapes rejects these; MariaDB's value keeps the quote
    expected = reference_rows(data, fmt)
    assert block.nrows == len(expected), data
    for r, row in enumerate(expected):
        one = Block(block.path, block.data, block.row_starts[r:r + 1], block.row_ends[r:r + 1],
                    block.line_of(r), fmt, block.escaped, block.enclosure_marks,
                    missing_final_terminator=block.missing_final_terminator
                    and r == block.nrows - 1)
        starts, ends = field_bounds(one, fmt, len(row))
        got = [block.data[starts[0, j]:ends[0, j]] for j in range(len(row))]
        assert got == row, (data, r)


@pytest.mark.parametrize("fmt", [TextFormat.csv(), TextFormat(), CSV_NO_ESCAPE, PIPES_CRLF],
                         ids=["csv", "tsv", "csv-no-escape", "pipes-crlf"])
def test_random_inputs_match_reference_reader(fmt: TextFormat) -> None:
    rnd = random.Random(zlib.crc32(fmt.sql_clause().encode()))
    alphabet = [b"a", fmt.fields_terminated_by, fmt.fields_terminated_by[:1],
                fmt.lines_terminated_by, fmt.lines_terminated_by[-1:], b"N", b"\\", b"\t",
                b"\n", b"\r"]
    if fmt.fields_enclosed_by:
        alphabet += [fmt.fields_enclosed_by] * 3
    for _ in range(400):
        data = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 50)))
        _check_against_reference(data, fmt)


def test_enclosure_fast_path_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.loaddata as loaddata

    calls: list[int] = []
    real = loaddata._scan_sequential

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(loaddata, "_scan_sequential", spy)
    fmt = TextFormat.csv()
    clean = b'1,"a,b",x\n2,"c""d\ne",y\n'
    _check_against_reference(clean, fmt)
    assert calls == []  # quotes only where they open and close fields: vectorised
    messy = b'1,ab"c,x\n2,"q"r",y\n3,"s",z\n'  # quotes inside unenclosed / not closing
    _check_against_reference(messy, fmt)
    assert calls  # the per-field reader took over
    block = Block.from_bytes(messy, fmt)
    starts, ends = field_bounds(block, fmt, 3)
    assert [decode_field(block.data[starts[r, 1]:ends[r, 1]], fmt) for r in range(3)] == \
        [b'ab"c', b'q"r', b"s"]


def test_multibyte_terminators_are_consumed_left_to_right() -> None:
    # "||||" is two separators, "|||" one and a literal "|" (as MariaDB reads them).
    block = Block.from_bytes(b"a||||b\r\nc|||d||e\r\n", PIPES_CRLF)
    starts, ends = field_bounds(block, PIPES_CRLF, 3)
    assert [block.data[starts[r, j]:ends[r, j]] for r in range(2) for j in range(3)] == \
        [b"a", b"", b"b", b"c", b"|d", b"e"]
    # An escaped CR is data, so the row goes on to the next real CRLF.
    block = Block.from_bytes(b"x||\\\r\ny\r\n", PIPES_CRLF)
    assert block.nrows == 1
    starts, ends = field_bounds(block, PIPES_CRLF, 2)
    assert decode_field(block.data[starts[0, 1]:ends[0, 1]], PIPES_CRLF) == b"\r\ny"


def test_csv_null_word_and_enclosed_numbers() -> None:
    fmt = TextFormat.csv()
    block = Block.from_bytes(b'1,"2.5",NULL,"NULL"\n2,\\N,3,"x"\n', fmt)
    starts, ends = field_bounds(block, fmt, 4)
    assert float_column(block, starts, ends, 1).tolist()[0] == 2.5
    assert np.isnan(float_column(block, starts, ends, 1)[1])
    assert np.isnan(float_column(block, starts, ends, 2)[0])
    assert decode_field(block.data[starts[0, 3]:ends[0, 3]], fmt) == b"NULL"
    assert decode_field(block.data[starts[0, 2]:ends[0, 2]], fmt) is None


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------


def test_float_column_matches_python_float() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(-360, 360, 2000), rng.normal(size=500) * 1e-300,
                             [0.0, -0.0, 1e308, 5e-324, 123456789012345678.0]])
    texts = [repr(float(v)).encode() for v in values] + [b"1.", b".5", b"+7", b" 3 ", b"1E3",
                                                          b"-0.000001e-2"]
    block = Block.from_bytes(b"".join(b"x\t" + t + b"\n" for t in texts))
    starts, ends = field_bounds(block, None, 2)
    got = float_column(block, starts, ends, 1)
    assert got.tolist() == [float(t) for t in texts]
    assert str(got[len(values) - 4]) == "-0.0"


def test_arrow_and_numpy_parse_numbers_alike() -> None:
    """The C++ fast path (Arrow casts) must give exactly the numpy path's values."""
    import ingest.loaddata as loaddata

    rng = np.random.default_rng(4)
    values = np.concatenate([rng.uniform(-360, 360, 3000), rng.normal(size=300) * 1e-300,
                             rng.normal(size=300) * 1e300])
    texts = [repr(float(v)).encode() for v in values] + [
        b"1.", b".5", b"+7", b"1E3", b"-0", b"-0.000001e-2", b"2.2250738585072011e-308",
        b"4.9e-324", b"1.7976931348623157e308", b"0.1000000000000000055511151231257827",
        b"00012.50", b"123456789012345678901234567890"]
    block = Block.from_bytes(b"".join(b"x\t" + t + b"\n" for t in texts))
    starts, ends = field_bounds(block, None, 2)
    s, w = starts[:, 1].copy(), ends[:, 1] - starts[:, 1]
    fast = loaddata._arrow_numbers(block, s, w, loaddata._FLOAT_CHARS_NO_BLANK, loaddata.pa.float64())
    assert fast is not None
    assert [repr(v) for v in fast.tolist()] == [repr(float(t)) for t in texts]
    keys = [b"0", b"-1", b"007", b"9223372036854775807", b"-9223372036854775808"]
    kb = Block.from_bytes(b"".join(k + b"\n" for k in keys))
    ks, ke = field_bounds(kb, None, 1)
    fast_int = loaddata._arrow_numbers(kb, ks[:, 0].copy(), ke[:, 0] - ks[:, 0],
                                       loaddata._INT_CHARS_NO_BLANK, loaddata.pa.int64())
    assert fast_int is not None and fast_int.tolist() == [int(k) for k in keys]
    plus = Block.from_bytes(b"+5\n")  # Arrow refuses the sign: the numpy path takes it
    assert int_column(plus, *field_bounds(plus, None, 1), 0)[0].tolist() == [5]


@pytest.mark.parametrize("bad", [b"abc", b"", b"nan", b"inf", b"1.2.3", b"0x10", b"1_0", b"--1"])
def test_float_column_rejects_non_numbers(bad: bytes) -> None:
    block = Block.from_bytes(b"1\t2\n3\t4\n5\t" + bad + b"\n", path="cat.tsv")
    starts, ends = field_bounds(block, None, 2)
    with pytest.raises(InputFormatError) as info:
        float_column(block, starts, ends, 1, name="decl")
    assert info.value.line == 3
    assert "cat.tsv, line 3, column decl" in str(info.value)


def test_int_column_is_exact_for_64_bit_keys() -> None:
    keys = [0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 433327840428745]
    block = Block.from_bytes(b"".join(str(k).encode() + b"\ta\n" for k in keys) + b"\\N\tb\n")
    starts, ends = field_bounds(block, None, 2)
    values, is_null = int_column(block, starts, ends, 0, name="objectId")
    assert values[:-1].tolist() == keys
    assert is_null.tolist() == [False] * len(keys) + [True]
    with pytest.raises(InputFormatError, match="column objectId"):
        int_column(block, starts, ends, 1, name="objectId")
    big = Block.from_bytes(b"9223372036854775808\n")
    with pytest.raises(InputFormatError):
        int_column(big, *field_bounds(big, None, 1), 0)


# ---------------------------------------------------------------------------
# Writing rows back out
# ---------------------------------------------------------------------------


def test_append_columns_adds_chunk_ids() -> None:
    rows = random_binary_rows(random.Random(9), 200)
    block = Block.from_bytes(outfile(rows))
    picks = np.array([5, 0, 199, 5, 17], dtype=np.int64)
    chunk = np.array([6630, 7648, 0, -1, 123456], dtype=np.int32)
    sub = np.array([0, 11, 2**40, 3, 7], dtype=np.int64)
    out = append_columns(block, picks, [chunk, sub])
    expected = b"".join(outfile([rows[i]])[:-1] + b"\t%d\t%d\n" % (c, s)
                        for i, c, s in zip(picks.tolist(), chunk.tolist(), sub.tolist(),
                                           strict=True))
    assert out == expected
    again = Block.from_bytes(out)
    starts, ends = field_bounds(again, None, 6)
    assert int_column(again, starts, ends, 4)[0].tolist() == chunk.tolist()
    assert append_columns(block, picks, []) == gather_rows(block, picks)
    with pytest.raises(TypeError):
        append_columns(block, picks, [chunk.astype(float)])
    with pytest.raises(ValueError):
        append_columns(block, picks, [chunk[:2]])


def test_gather_and_append_with_other_terminators() -> None:
    block = Block.from_bytes(b"a||1\r\nb||2", PIPES_CRLF)  # last row without terminator
    assert block.missing_final_terminator
    assert gather_rows(block, [1, 0]) == b"b||2\r\na||1\r\n"
    assert append_columns(block, [1], [np.array([42])]) == b"b||2||42\r\n"


def test_append_columns_grouped_cuts_per_group() -> None:
    rows = random_binary_rows(random.Random(11), 300)
    block = Block.from_bytes(outfile(rows))
    order = np.array(sorted(range(300), key=lambda i: (i % 7, i)), dtype=np.int64)
    group = (order % 7).astype(np.int32)
    bounds = [0, *np.flatnonzero(np.diff(group)) + 1, 300]
    parts = append_columns_grouped(block, order, [group, order], bounds)
    assert len(parts) == 7
    for g, part in enumerate(parts):
        members = [i for i in order.tolist() if i % 7 == g]
        assert bytes(part) == b"".join(outfile([rows[i]])[:-1] + b"\t%d\t%d\n" % (g, i)
                                       for i in members)
    assert [bytes(p) for p in append_columns_grouped(block, order[:0], [group[:0]], [0])] == []


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def test_validate_escapes_accepts_what_mariadb_writes() -> None:
    validate_escapes(Block.from_bytes(outfile(random_binary_rows(random.Random(2), 100))))
    validate_escapes(Block.from_bytes(b"\\x\\y\t\\q\n"))  # \x is x for MariaDB
    validate_escapes(Block.from_bytes(b"a\tb"))  # no final newline: fine
    validate_escapes(Block.from_bytes(b"a\tb\\\\"))  # ends in an escaped backslash: fine


@pytest.mark.parametrize(("data", "fmt", "message"), [
    (b"a\tb\nc\td\\", TextFormat(), "lone escape character"),
    (b"a\tb\nc\td\\\\\\", TextFormat(), "lone escape character"),
    (b"a\tb\nc\td\\\n", TextFormat(), "line terminator is escaped"),
    (b'a,b\nc,"d\ne\n', TextFormat.csv(), "enclosed field not closed"),
])
def test_validate_escapes_rejects_damaged_ends(tmp_path: Path, data: bytes, fmt: TextFormat,
                                               message: str) -> None:
    path = write(tmp_path, "damaged.txt", data)
    blocks = list(iter_blocks(path, fmt, block_bytes=3))
    for block in blocks[:-1]:
        validate_escapes(block)
    with pytest.raises(InputFormatError, match=message) as info:
        validate_escapes(blocks[-1])
    assert info.value.line == 2
    assert info.value.path == str(path)


# ---------------------------------------------------------------------------
# TextFormat
# ---------------------------------------------------------------------------


def test_text_format_sql_clause() -> None:
    assert TextFormat().sql_clause() == (
        "FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' "
        "LINES TERMINATED BY '\\n'")
    assert TextFormat.csv().sql_clause() == (
        "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '\\\\' "
        "LINES TERMINATED BY '\\n'")
    assert TextFormat(b"'", b"", b"", b"\r\n").sql_clause() == (
        "FIELDS TERMINATED BY '\\'' ENCLOSED BY '' ESCAPED BY '' "
        "LINES TERMINATED BY '\\r\\n'")
    assert sql_literal(b"\xa7") == "X'A7'"
    assert sql_literal(b"\0\x1a") == "'\\0\\Z'"


def test_text_format_from_qserv_literals() -> None:
    assert TextFormat.from_mysql_literals("\\t", None, "\\\\", "\\n") == TextFormat()
    assert TextFormat.from_mysql_literals(",", '"') == TextFormat.csv()
    assert unescape_mysql_literal("\\r\\n") == b"\r\n"
    assert unescape_mysql_literal("\\q") == b"q"


@pytest.mark.parametrize("kwargs", [
    {"fields_terminated_by": b""},
    {"lines_terminated_by": b""},
    {"fields_terminated_by": b"\n"},
    {"fields_enclosed_by": b'""'},
    {"fields_escaped_by": b"\t"},
    {"fields_terminated_by": "\t"},
])
def test_text_format_rejects_ambiguous_formats(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        TextFormat(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------


def test_parquet_converts_to_load_data_text(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow not installed (Parquet is optional)")
    pq = pytest.importorskip("pyarrow.parquet")
    import datetime

    table = pa.table({
        "id": pa.array([1, 2, None, 2**62], pa.int64()),
        "ra": pa.array([1.5, float("nan"), None, -0.1], pa.float64()),
        "name": pa.array(["a\tb", "line\nbreak", "back\\slash", None], pa.string()),
        "blob": pa.array([b"\x00\x01\t\n\\", b"", None, b"N"], pa.binary()),
        "flag": pa.array([True, False, None, True]),
        "when": pa.array([datetime.datetime(2020, 1, 2, 3, 4, 5), None, None, None],
                         pa.timestamp("ms")),
    })
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    blocks = list(iter_parquet_blocks(path, batch_rows=3))
    assert [b.first_line for b in blocks] == [1, 4]
    fields = all_fields(blocks, 6)
    decoded = [[decode_field(f) for f in row] for row in fields]
    assert [row[0] for row in decoded] == [b"1", b"2", None, str(2**62).encode()]
    assert [row[2] for row in decoded] == [b"a\tb", b"line\nbreak", b"back\\slash", None]
    assert [row[3] for row in decoded] == [b"\x00\x01\t\n\\", b"", None, b"N"]
    assert [row[4] for row in decoded] == [b"1", b"0", None, b"1"]
    assert decoded[0][5] == b"2020-01-02 03:04:05.000000"
    ra = np.concatenate([float_column(b, *field_bounds(b, None, 6), 1) for b in blocks])
    assert ra[0] == 1.5 and np.isnan(ra[1]) and np.isnan(ra[2]) and ra[3] == -0.1
    # Columns can be picked and reordered; text has no raw tab/newline inside values.
    picked = list(iter_parquet_blocks(path, columns=["name", "id"]))
    assert gather_rows(picked[0], np.arange(4)) == (
        b"a\\tb\t1\nline\\nbreak\t2\nback\\\\slash\t\\N\n\\N\t4611686018427387904\n")


# ---------------------------------------------------------------------------
# Real data: qserv-case01
# ---------------------------------------------------------------------------


@needs_case01
@pytest.mark.parametrize("table", CASE01_TABLES)
def test_case01_tables_match_reference_reader(table: str) -> None:
    path = CASE01 / f"{table}.tsv.gz"
    data = gzip.decompress(path.read_bytes())
    expected = reference_rows(data, TextFormat())
    nfields = len(expected[0])
    assert all(len(row) == nfields for row in expected)
    for block_bytes in (1 << 26, 50_000):
        blocks = list(iter_blocks(path, block_bytes=block_bytes))
        assert sum(b.nrows for b in blocks) == len(expected)
        for block in blocks:
            validate_escapes(block)
        assert all_fields(blocks, nfields) == expected
        assert b"".join(gather_rows(b, np.arange(b.nrows)) for b in blocks) == data


@needs_case01
def test_case01_row_counts_differ_from_newline_counts() -> None:
    # Science_Ccd_Exposure.poly holds raw (escaped) newlines: 3304 rows, 4529 newlines.
    path = CASE01 / "Science_Ccd_Exposure.tsv.gz"
    data = gzip.decompress(path.read_bytes())
    assert data.count(b"\n") == 4529
    assert sum(b.nrows for b in iter_blocks(path)) == 3304


@needs_case01
def test_case01_positions_parse() -> None:
    block = next(iter_blocks(CASE01 / "Object.tsv.gz"))
    starts, ends = field_bounds(block, None, 228)
    ra = float_column(block, starts, ends, 2, name="ra_PS")
    decl = float_column(block, starts, ends, 4, name="decl_PS")
    ids, nulls = int_column(block, starts, ends, 0, name="objectId")
    assert ra.shape == decl.shape == (88,)
    assert np.all((ra >= 0) & (ra < 360)) and np.all(np.abs(decl) <= 90)
    assert not nulls.any() and ids[0] == int(block.data[:starts[0, 1] - 1])


@pytest.mark.parametrize("low, high, size", [(0, 1200, 70_000), (-5, 3, 1000), (0, 10**9, 5000),
                                             (100, 70_000, 20_000), (7, 8, 1), (0, 1, 0)])
def test_small_int_codes_and_stable_order_agree_with_numpy(low: int, high: int, size: int) -> None:
    """The partitioner's sort-free grouping of chunk ids gives numpy's answers, in range or not."""
    values = np.random.default_rng(size).integers(low, high, size)
    assert np.array_equal(loaddata.stable_order(values), np.argsort(values, kind="stable"))
    levels, codes = loaddata.small_int_codes(values)
    assert np.array_equal(levels[codes], values)
    assert set(np.unique(values).tolist()) <= set(levels.tolist())
