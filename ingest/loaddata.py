"""Reading catalog input files in MySQL ``LOAD DATA`` text format, fast and in bounded memory.

This module owns the byte-level view of ingest input: it finds rows and fields
exactly as MariaDB's ``LOAD DATA INFILE`` does (escapes, enclosures, multi-byte
terminators), parses the numeric columns the partitioner needs, and writes
selected rows back out byte for byte (optionally with extra integer columns
such as ``chunkId``/``subChunkId`` appended) so per-chunk files can be loaded
with ``LOAD DATA`` without any re-encoding.  It knows nothing about tables,
schemas or partitioning; :mod:`ingest.config` owns those.

Everything on the main path is vectorised with numpy; nothing loops over rows
in Python.  Files are read in blocks of ``block_bytes`` (64 MiB by default)
that always end on a row boundary, so memory stays bounded by a few times the
block size however large the input is.

Rules, as MariaDB's ``READ_INFO::read_field`` applies them:

* The escape character (``ESCAPED BY``, ``\\`` by default) makes the next byte
  literal, whatever it is.  In a run of escape characters they pair up, so a
  byte is escaped exactly when the run of escape characters right before it has
  odd length.  An escaped line or field terminator is data, not a separator
  (``SELECT ... INTO OUTFILE`` writes a tab or newline inside a value as the
  escape character followed by the raw tab or newline).  ``\\N`` is NULL.
* With ``ENCLOSED BY`` set, a field whose first byte is the enclosure character
  is enclosed: terminators inside it are data; a doubled enclosure character is
  a literal one; it ends at an enclosure character followed by a field
  terminator, a line terminator or the end of the file.  An enclosure character
  anywhere else is data.
* A row (a "line" in LOAD DATA's error messages) ends at a line terminator that
  is neither escaped nor inside an enclosed field.  Line numbers reported in
  errors count such rows, 1-based.
* Multi-byte terminators are consumed left to right (``||||`` is two ``||``).
  At the very end of a file without a final line terminator, a trailing field
  terminator starts no new field (``a<TAB>b<TAB><EOF>`` has two fields).

These rules were checked against MariaDB 10.11 ``LOAD DATA`` on a few
thousand random inputs (TSV, CSV with and without escapes, ``||`` with
``\r\n``) and on the nine qserv-case01 tables.

Parquet input (:func:`iter_parquet_blocks`, needs pyarrow) is converted to the
same text so everything downstream is identical.
"""

from __future__ import annotations

import bisect
import gzip
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "Block",
    "InputFormatError",
    "TextFormat",
    "append_columns",
    "append_columns_grouped",
    "int_rows_text",
    "decode_field",
    "field_bounds",
    "float_column",
    "gather_rows",
    "int_column",
    "iter_blocks",
    "iter_parquet_blocks",
    "open_input",
    "read_all",
    "sql_literal",
    "unescape_mysql_literal",
    "validate_escapes",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ByteArray = npt.NDArray[np.uint8]
IndexArray = npt.NDArray[np.signedinteger[Any]]

DEFAULT_BLOCK_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ROW_BYTES = 1024 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_EMPTY = np.zeros(0, dtype=np.int64)


class InputFormatError(ValueError):
    """Malformed input: names the file, the row ("line", 1-based) and the problem."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str,
                 column: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.message = message
        where = self.path if line is None else f"{self.path}, line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------------
# Text format
# ---------------------------------------------------------------------------

_MYSQL_UNESCAPE = {
    "0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a",
}
_SQL_ESCAPE = {
    0: "\\0", 0x08: "\\b", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x1A: "\\Z",
    0x27: "\\'", 0x5C: "\\\\",
}


def unescape_mysql_literal(text: str) -> bytes:
    """Decode the body of a MySQL string literal (``\\t`` -> tab, ``\\\\`` -> ``\\``).

    Qserv's ingest configuration writes ``fields_terminated_by`` and friends
    this way (``"\\\\t"`` in JSON is the two characters ``\\t``, a tab).  Unknown
    escapes ``\\x`` stand for ``x``, as in MySQL.  Encoded as UTF-8.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_MYSQL_UNESCAPE.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out).encode("utf-8")


def sql_literal(value: bytes) -> str:
    """A MariaDB string literal for ``value``: quoted with backslash escapes, or ``X'..'``.

    Printable ASCII and the usual control characters use the quoted form; any
    other byte makes the whole value a hex literal (valid in LOAD DATA
    clauses and independent of the connection character set).
    """
    if any(b not in _SQL_ESCAPE and not 0x20 <= b < 0x7F for b in value):
        return f"X'{value.hex().upper()}'"
    return "'" + "".join(_SQL_ESCAPE.get(b, chr(b)) for b in value) + "'"


@dataclass(frozen=True)
class TextFormat:
    """The ``FIELDS``/``LINES`` options of a LOAD DATA statement, as raw bytes.

    Defaults are MySQL's (and Qserv's): tab-separated, no enclosure, backslash
    escapes, newline-terminated.  Terminators may be several bytes long; the
    enclosure and escape characters are a single byte or empty (disabled).
    """

    fields_terminated_by: bytes = b"\t"
    fields_enclosed_by: bytes = b""
    fields_escaped_by: bytes = b"\\"
    lines_terminated_by: bytes = b"\n"

    def __post_init__(self) -> None:
        for name in ("fields_terminated_by", "fields_enclosed_by", "fields_escaped_by",
                     "lines_terminated_by"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"TextFormat.{name} must be bytes, not {type(getattr(self, name))}")
        ft, lt = self.fields_terminated_by, self.lines_terminated_by
        enc, esc = self.fields_enclosed_by, self.fields_escaped_by
        if not ft:
            raise ValueError("FIELDS TERMINATED BY '' (fixed-width rows) is not supported")
        if not lt:
            raise ValueError("LINES TERMINATED BY must not be empty")
        if len(enc) > 1 or len(esc) > 1:
            raise ValueError("ENCLOSED BY and ESCAPED BY take a single character (or none)")
        if ft == lt:
            raise ValueError("fields and lines cannot be terminated by the same string")
        for special, what in ((enc, "ENCLOSED BY"), (esc, "ESCAPED BY")):
            if special and (special in ft or special in lt):
                raise ValueError(f"the {what} character cannot be part of a terminator")

    @classmethod
    def csv(cls) -> TextFormat:
        """Comma-separated, fields optionally enclosed by ``"``, backslash escapes, ``\\n``."""
        return cls(fields_terminated_by=b",", fields_enclosed_by=b'"')

    @classmethod
    def from_mysql_literals(
        cls,
        fields_terminated_by: str | None = None,
        fields_enclosed_by: str | None = None,
        fields_escaped_by: str | None = None,
        lines_terminated_by: str | None = None,
    ) -> TextFormat:
        """Build from literal bodies as Qserv's config writes them (``"\\\\t"``, ``","``).

        ``None`` (or an absent key) keeps the default; ``""`` means empty.
        """
        default = cls()

        def pick(value: str | None, fallback: bytes) -> bytes:
            return fallback if value is None else unescape_mysql_literal(value)

        return cls(
            fields_terminated_by=pick(fields_terminated_by, default.fields_terminated_by),
            fields_enclosed_by=pick(fields_enclosed_by, default.fields_enclosed_by),
            fields_escaped_by=pick(fields_escaped_by, default.fields_escaped_by),
            lines_terminated_by=pick(lines_terminated_by, default.lines_terminated_by),
        )

    def sql_clause(self) -> str:
        """``FIELDS TERMINATED BY ... ENCLOSED BY ... ESCAPED BY ... LINES TERMINATED BY ...``."""
        return (
            f"FIELDS TERMINATED BY {sql_literal(self.fields_terminated_by)}"
            f" ENCLOSED BY {sql_literal(self.fields_enclosed_by)}"
            f" ESCAPED BY {sql_literal(self.fields_escaped_by)}"
            f" LINES TERMINATED BY {sql_literal(self.lines_terminated_by)}"
        )

    @property
    def escape_byte(self) -> int | None:
        """The escape character, or None when escapes are off.

        When the escape and enclosure characters are the same (RFC 4180 style
        ``ESCAPED BY '"' ENCLOSED BY '"'``) escapes are treated as off: doubled
        enclosure characters already carry the only meaning left.
        """
        esc = self.fields_escaped_by
        if not esc or esc == self.fields_enclosed_by:
            return None
        return esc[0]

    @property
    def enclosure_byte(self) -> int | None:
        return self.fields_enclosed_by[0] if self.fields_enclosed_by else None

    @property
    def null_escape(self) -> bytes | None:
        """The field value that is NULL whether enclosed or not (``\\N``), if escapes are on."""
        esc = self.escape_byte
        return None if esc is None else bytes([esc]) + b"N"

    @property
    def null_word(self) -> bytes | None:
        """``NULL``, which is NULL when unenclosed if ``ENCLOSED BY`` is set (as in MariaDB)."""
        return b"NULL" if self.fields_enclosed_by else None


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Block:
    """A run of complete rows read from one input file.

    ``data`` is exactly the bytes of the rows, each followed by the line
    terminator: when the file's last row had none, one was appended and
    ``missing_final_terminator`` is set.  ``row_starts``/``row_ends`` are
    byte offsets into ``data`` (the end excludes the terminator).
    ``first_line`` is the 1-based row number of the first row in the file.

    ``escaped`` (positions of bytes made literal by an escape character) and
    ``enclosure_marks`` (sorted positions of opening/closing enclosure
    characters, in pairs; None without ``ENCLOSED BY``) are what the row scan
    found, kept so :func:`field_bounds` need not rescan.  ``open_enclosure``
    is set when the file ended inside an enclosed field.
    """

    path: str
    data: bytes
    row_starts: IntArray
    row_ends: IntArray
    first_line: int
    fmt: TextFormat
    escaped: IntArray
    enclosure_marks: IntArray | None
    missing_final_terminator: bool = False
    open_enclosure: bool = False

    @property
    def nrows(self) -> int:
        return int(self.row_starts.shape[0])

    @property
    def array(self) -> ByteArray:
        """``data`` as a read-only uint8 array (no copy)."""
        return np.frombuffer(self.data, dtype=np.uint8)

    def line_of(self, row: int) -> int:
        """1-based line (row) number in the file of row ``row`` of this block."""
        return self.first_line + int(row)

    def row_bytes(self, row: int) -> bytes:
        """The raw bytes of one row (for messages and tests)."""
        return self.data[int(self.row_starts[row]):int(self.row_ends[row])]

    @classmethod
    def from_bytes(cls, data: bytes, fmt: TextFormat | None = None, path: str = "<memory>",
                   first_line: int = 1) -> Block:
        """Scan a complete in-memory text (the whole "file") into one block."""
        fmt = fmt or TextFormat()
        scan = _scan(data, fmt, final=True)
        return _make_block(path, data, scan, first_line, fmt)


@dataclass
class _Scan:
    starts: IntArray
    ends: IntArray
    consumed: int  # bytes of the buffer that the complete rows (with terminators) cover
    escaped: IntArray
    marks: IntArray | None
    open_enclosure: bool
    missing_terminator: bool


def _make_block(path: str, data: bytes, scan: _Scan, first_line: int, fmt: TextFormat) -> Block:
    body = data if scan.consumed == len(data) else data[:scan.consumed]
    if scan.missing_terminator:
        body += fmt.lines_terminated_by
    return Block(path=path, data=body, row_starts=scan.starts, row_ends=scan.ends,
                 first_line=first_line, fmt=fmt, escaped=scan.escaped,
                 enclosure_marks=scan.marks, missing_final_terminator=scan.missing_terminator,
                 open_enclosure=scan.open_enclosure)


def _escaped_positions(arr: ByteArray, esc: int | None) -> IntArray:
    """Positions of the bytes that an escape character makes literal (sorted).

    Escape characters pair up within a run, so a run of odd length escapes the
    byte right after it.  The result can hold ``len(arr)`` (an escape at the
    very end whose byte is not there).
    """
    if esc is None:
        return _EMPTY
    base = arr.base
    if isinstance(base, bytes) and len(base) == arr.size and base.find(esc) < 0:
        return _EMPTY  # the common case, found by memchr instead of a full numpy pass
    e = np.flatnonzero(arr == esc)
    if e.size == 0:
        return _EMPTY
    breaks = np.flatnonzero(np.diff(e) != 1)
    first = np.concatenate(([0], breaks + 1))
    last = np.concatenate((breaks, [e.size - 1]))
    odd = (last - first) % 2 == 0
    return (e[last[odd]] + 1).astype(np.int64)


def _in_sorted(values: IntArray, sorted_set: IntArray) -> BoolArray:
    """Membership of each value in a sorted array, vectorised."""
    if sorted_set.size == 0 or values.size == 0:
        return np.zeros(values.shape, dtype=bool)
    idx = np.searchsorted(sorted_set, values)
    idx[idx == sorted_set.size] = sorted_set.size - 1
    return np.asarray(sorted_set[idx] == values)


def _find(arr: ByteArray, pattern: bytes, escaped: IntArray, esc: int | None) -> IntArray:
    """Start positions of unescaped occurrences of ``pattern`` (sorted)."""
    k = len(pattern)
    if arr.size < k:
        return _EMPTY
    if k == 1:
        pos = np.flatnonzero(arr == pattern[0])
    else:
        pos = np.flatnonzero(arr[: arr.size - k + 1] == pattern[0])
        for j in range(1, k):
            pos = pos[arr[pos + j] == pattern[j]]
    pos = pos.astype(np.int64, copy=False)
    if escaped.size and esc is not None and pos.size:
        # Escaped bytes are few: find the occurrences among them and drop those.
        inside = escaped[escaped < arr.size]
        hits = inside[arr[inside] == pattern[0]]
        if hits.size:
            idx = np.searchsorted(pos, hits)
            valid = idx < pos.size
            idx = idx[valid]
            idx = idx[pos[idx] == hits[valid]]
            if idx.size:
                pos = np.delete(pos, idx)
    if k > 1 and pos.size > 1:
        pos = _non_overlapping(pos, k)
    return pos


def _non_overlapping(pos: IntArray, k: int) -> IntArray:
    """Leftmost non-overlapping occurrences, as a left-to-right reader consumes them.

    Only self-overlapping terminators (``||``) produce clusters of occurrences
    closer than ``k``; each cluster is a contiguous run of terminator bytes
    (no escape or enclosure character can be inside one), so it is resolved
    on its own.  The loop runs over clustered occurrences only.
    """
    near = np.flatnonzero(np.diff(pos) < k)
    if near.size == 0:
        return pos
    keep = np.ones(pos.size, dtype=bool)
    members = np.union1d(near, near + 1).tolist()
    last_kept = -k
    previous = -2
    for i in members:
        if i != previous + 1:  # a new cluster starts with a kept occurrence
            last_kept = -k
        p = int(pos[i])
        if p - last_kept < k:
            keep[i] = False
        else:
            last_kept = p
        previous = i
    return pos[keep]


def _inside(pos: IntArray, marks: IntArray) -> BoolArray:
    """Whether each position lies inside an enclosed field (between an open and its close)."""
    if marks.size == 0:
        return np.zeros(pos.shape, dtype=bool)
    return np.asarray(np.searchsorted(marks, pos, side="right") % 2 == 1)


def _scan(data: bytes, fmt: TextFormat, final: bool) -> _Scan:
    """Find the complete rows of ``data`` (which starts at a row start).

    With ``final`` the buffer is the rest of the file: bytes after the last
    terminator form a last row.  Otherwise they are left for the next read.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    size = arr.size
    lt = fmt.lines_terminated_by
    escaped = _escaped_positions(arr, fmt.escape_byte)
    line_pos = _find(arr, lt, escaped, fmt.escape_byte)
    marks: IntArray | None = None
    open_enclosure = False
    enc = fmt.enclosure_byte
    if enc is not None:
        field_pos = _find(arr, fmt.fields_terminated_by, escaped, fmt.escape_byte)
        marks = _parity_marks(arr, enc, escaped, line_pos, field_pos, fmt, final)
        if marks is None:
            return _scan_sequential(arr, fmt, escaped, line_pos, field_pos, final)
        if marks.size:
            line_pos = line_pos[~_inside(line_pos, marks)]
            open_enclosure = marks.size % 2 == 1
    k = len(lt)
    if final:
        ends = line_pos
        tail_start = int(line_pos[-1]) + k if line_pos.size else 0
        missing = tail_start < size
        if missing:
            ends = np.concatenate((line_pos, [size])).astype(np.int64)
        consumed = size
    else:
        ends = line_pos
        consumed = int(line_pos[-1]) + k if line_pos.size else 0
        missing = False
        open_enclosure = False
    starts = np.empty(ends.shape, dtype=np.int64)
    if starts.size:
        starts[0] = 0
        starts[1:] = ends[:-1] + k
    kept_escaped = escaped[escaped < consumed] if escaped.size else escaped
    if marks is not None and not final:
        marks = marks[marks < consumed]
    return _Scan(starts=starts, ends=ends.astype(np.int64, copy=False), consumed=consumed,
                 escaped=kept_escaped, marks=marks, open_enclosure=open_enclosure,
                 missing_terminator=missing)


def _parity_marks(arr: ByteArray, enc: int, escaped: IntArray, line_pos: IntArray,
                  field_pos: IntArray, fmt: TextFormat, final: bool) -> IntArray | None:
    """Enclosure open/close positions by quote parity, or None if that is not MySQL's parse.

    Unescaped enclosure characters alternate open/close.  That matches
    MySQL's field-by-field reading exactly when every open is at a field start
    (or directly after a close: a doubled quote) and every close is followed
    by a terminator, the end of the data, or an open (the doubled quote
    again).  Anything else (a quote inside an unenclosed field, a quote that
    does not end an enclosed field) sends the caller to the sequential scan.
    """
    q = np.flatnonzero(arr == enc).astype(np.int64)
    if escaped.size:
        q = q[~_in_sorted(q, escaped)]
    if q.size == 0:
        return q
    opens, closes = q[0::2], q[1::2]
    kf, kl = len(fmt.fields_terminated_by), len(fmt.lines_terminated_by)
    boundary_ends = np.union1d(field_pos + kf, line_pos + kl)
    ok_open = (opens == 0) | _in_sorted(opens, boundary_ends) | _in_sorted(opens - 1, closes)
    if not ok_open.all():
        return None
    after = closes + 1
    ok_close = ((after == arr.size) | _in_sorted(after, field_pos) | _in_sorted(after, line_pos)
                | _in_sorted(after, opens))
    if not final:  # what follows may not have been read yet
        ok_close |= after > arr.size - max(kf, kl)
    if not ok_close.all():
        return None
    return q


def _scan_sequential(arr: ByteArray, fmt: TextFormat, escaped: IntArray, line_pos: IntArray,
                     field_pos: IntArray, final: bool) -> _Scan:
    """MySQL's field-by-field reading, jumping between precomputed events.

    Only used with ``ENCLOSED BY`` when the vectorised parity rule does not
    apply (enclosure characters inside unenclosed fields and the like).  It
    loops once per field, in Python.
    """
    data = arr.tobytes()
    size = len(data)
    enc = fmt.enclosure_byte
    assert enc is not None
    quotes = np.flatnonzero(arr == enc).astype(np.int64)
    if escaped.size:
        quotes = quotes[~_in_sorted(quotes, escaped)]
    q_list: list[int] = quotes.tolist()
    f_list: list[int] = field_pos.tolist()
    n_list: list[int] = line_pos.tolist()
    f_set, n_set = set(f_list), set(n_list)
    kf, kl = len(fmt.fields_terminated_by), len(fmt.lines_terminated_by)
    starts: list[int] = []
    ends: list[int] = []
    marks: list[int] = []
    row_start = 0
    consumed = 0
    pos = 0  # start of the current field
    open_enclosure = False
    while pos <= size:
        if pos < size and data[pos] == enc:
            i = bisect.bisect_right(q_list, pos)
            closed_at = -1
            undecided = False
            while i < len(q_list):
                q = q_list[i]
                nxt = q + 1
                if nxt < size and data[nxt] == enc:
                    i += 2  # doubled enclosure character: literal
                    continue
                if nxt >= size:
                    if final:
                        closed_at = q
                    else:
                        undecided = True
                    break
                if nxt in f_set or nxt in n_set:
                    closed_at = q
                    break
                i += 1  # enclosure character not followed by a terminator: literal
            if undecided:
                break
            if closed_at < 0:
                if final:
                    marks.append(pos)
                    open_enclosure = True
                    starts.append(row_start)
                    ends.append(size)
                    consumed = size
                break
            marks.extend((pos, closed_at))
            nxt = closed_at + 1
            if nxt >= size:
                starts.append(row_start)
                ends.append(size)
                consumed = size
                break
            if nxt in n_set:
                starts.append(row_start)
                ends.append(nxt)
                row_start = pos = consumed = nxt + kl
                continue
            pos = nxt + kf
            continue
        fi = bisect.bisect_left(f_list, pos)
        ni = bisect.bisect_left(n_list, pos)
        f_next = f_list[fi] if fi < len(f_list) else None
        n_next = n_list[ni] if ni < len(n_list) else None
        if n_next is not None and (f_next is None or n_next <= f_next):
            starts.append(row_start)
            ends.append(n_next)
            row_start = pos = consumed = n_next + kl
            continue
        if f_next is not None:
            pos = f_next + kf
            continue
        if final and row_start < size:
            starts.append(row_start)
            ends.append(size)
            consumed = size
        break
    missing = final and bool(ends) and ends[-1] == size
    if final:
        consumed = size
    marks_arr = np.asarray(marks, dtype=np.int64)
    marks_arr = marks_arr[marks_arr < consumed]
    return _Scan(starts=np.asarray(starts, dtype=np.int64), ends=np.asarray(ends, dtype=np.int64),
                 consumed=consumed, escaped=escaped[escaped < consumed] if escaped.size else escaped,
                 marks=marks_arr, open_enclosure=open_enclosure, missing_terminator=missing)


def open_input(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a plain or gzip-compressed file for binary reading (gzip is detected by its magic)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")  # noqa: SIM115 - handed to the caller


def iter_blocks(path: str | os.PathLike[str], fmt: TextFormat | None = None,
                block_bytes: int = DEFAULT_BLOCK_BYTES,
                max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
                first_block_bytes: int | None = None) -> Iterator[Block]:
    """Yield the file's rows in blocks of about ``block_bytes`` that end on row boundaries.

    ``first_block_bytes`` makes the first block smaller, so that a pipeline
    consuming the blocks gets its downstream stages busy sooner.

    The partial row at the end of each read is carried into the next block.
    A row longer than a block makes that block grow; one longer than
    ``max_row_bytes`` (usually a wrong terminator or an unterminated
    enclosure) raises :class:`InputFormatError`.
    """
    if block_bytes < 1 or (first_block_bytes is not None and first_block_bytes < 1):
        raise ValueError("block sizes must be positive")
    fmt = fmt or TextFormat()
    name = str(path)
    with open_input(path) as stream:
        yield from _iter_stream_blocks(stream, name, fmt, block_bytes, max_row_bytes,
                                       first_block_bytes or block_bytes)


def _iter_stream_blocks(stream: IO[bytes], name: str, fmt: TextFormat, block_bytes: int,
                        max_row_bytes: int, first_block_bytes: int) -> Iterator[Block]:
    carry = b""
    line = 1
    eof = False
    size = first_block_bytes
    while not eof:
        want = max(size, len(carry))  # grows geometrically while a row spans reads
        chunk = _read_exactly(stream, want)
        eof = len(chunk) < want
        buf = carry + chunk if carry else chunk
        if not buf:
            break
        scan = _scan(buf, fmt, final=eof)
        if scan.starts.size == 0 and not eof:
            if len(buf) > max_row_bytes:
                raise InputFormatError(
                    name, line,
                    f"no row end within {max_row_bytes} bytes (wrong LINES TERMINATED BY, "
                    "or an unterminated enclosure?)")
            carry = buf
            continue
        carry = buf[scan.consumed:] if not eof else b""
        if scan.starts.size:
            block = _make_block(name, buf, scan, line, fmt)
            line += block.nrows
            size = block_bytes
            yield block


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    """Read ``n`` bytes unless the stream ends first (gzip reads may come back short)."""
    parts: list[bytes] = []
    remaining = n
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# ---------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------


def _check_format(block: Block, fmt: TextFormat | None) -> TextFormat:
    if fmt is not None and fmt != block.fmt:
        raise ValueError(f"{block.path} was read as {block.fmt}, not {fmt}")
    return block.fmt


def field_bounds(block: Block, fmt: TextFormat | None, expected_fields: int
                 ) -> tuple[IntArray, IntArray]:
    """Byte ranges of every field: ``(starts, ends)``, each of shape (nrows, expected_fields).

    Ranges are raw: escapes are not undone and an enclosed field's range
    includes its enclosure characters.  A row with another number of fields
    raises :class:`InputFormatError` naming its line.
    """
    fmt = _check_format(block, fmt)
    if expected_fields < 1:
        raise ValueError("expected_fields must be at least 1")
    n = block.nrows
    starts = np.empty((n, expected_fields), dtype=np.int64)
    ends = np.empty((n, expected_fields), dtype=np.int64)
    if n == 0:
        return starts, ends
    arr = block.array
    limit = int(block.row_ends[-1])
    escaped, marks = block.escaped, block.enclosure_marks
    ft = fmt.fields_terminated_by
    kf = len(ft)
    pos = _find(arr[:limit], ft, escaped, fmt.escape_byte)
    if marks is not None and marks.size:
        pos = pos[~_inside(pos, marks)]
    # Separators of row r: pos[lo[r]:hi[r]], those lying wholly inside [start, end).
    lo = np.searchsorted(pos, block.row_starts, side="left")
    hi = np.maximum(np.searchsorted(pos, block.row_ends - kf, side="right"), lo)
    trailing_separator = bool(
        block.missing_final_terminator and hi[-1] > lo[-1]
        and pos[hi[-1] - 1] + kf == block.row_ends[-1])
    if trailing_separator:
        # MariaDB starts no new field at the end of the file: "a<TAB>" there is one field.
        hi[-1] -= 1
    counts = hi - lo
    bad = np.flatnonzero(counts != expected_fields - 1)
    if bad.size:
        i = int(bad[0])
        raise InputFormatError(
            block.path, block.line_of(i),
            f"expected {expected_fields} fields, found {int(counts[i]) + 1} "
            f"(row starts {block.row_bytes(i)[:60]!r})")
    if pos.size != n * (expected_fields - 1):  # separators outside rows (in terminators)
        pos = pos[_ranges(lo, counts)]
    seps = pos.reshape(n, expected_fields - 1)
    starts[:, 0] = block.row_starts
    np.add(seps, kf, out=starts[:, 1:])
    ends[:, :-1] = seps
    ends[:, -1] = block.row_ends
    if trailing_separator:
        ends[-1, -1] -= kf
    return starts, ends


def _equals(arr: ByteArray, s: IntArray, width: IntArray, token: bytes) -> BoolArray:
    """Whether each field (start ``s``, ``width`` bytes) is exactly ``token``."""
    match = width == len(token)
    last = arr.size - 1
    for j, b in enumerate(token):
        match &= arr[np.minimum(s + j, last)] == b
    return match


def _null_mask(arr: ByteArray, s: IntArray, width: IntArray, enclosed: BoolArray,
               fmt: TextFormat) -> BoolArray:
    """NULL fields, as MariaDB's read_sep_field decides: ``\\N`` (even enclosed), or
    the unenclosed word ``NULL`` when ``ENCLOSED BY`` is set."""
    mask = np.zeros(s.shape, dtype=bool)
    if fmt.null_escape is not None:
        mask |= _equals(arr, s, width, fmt.null_escape)
    if fmt.null_word is not None:
        mask |= _equals(arr, s, width, fmt.null_word) & ~enclosed
    return mask


def _field_matrix(arr: ByteArray, s: IntArray, width: IntArray, w: int) -> ByteArray:
    """Fields left-aligned in an (n, w) byte matrix, zero-padded."""
    if arr.size >= w:
        windows = np.lib.stride_tricks.sliding_window_view(arr, w)  # no copy
        mat = windows[np.minimum(s, arr.size - w)]
        shifted = s > arr.size - w  # fields starting in the last w bytes: realign
        if shifted.any():
            for r in np.flatnonzero(shifted).tolist():
                row = arr[int(s[r]):int(s[r]) + w]
                mat[r, :] = 0
                mat[r, :row.size] = row
    else:
        mat = np.zeros((s.size, w), dtype=np.uint8)
        for r in range(s.size):
            row = arr[int(s[r]):int(s[r]) + w]
            mat[r, :row.size] = row
    mat[np.arange(w) >= width[:, None]] = 0
    return mat


_FLOAT_CHARS = np.zeros(256, dtype=bool)
_FLOAT_CHARS[list(b"0123456789+-.eE \0")] = True
_INT_CHARS = np.zeros(256, dtype=bool)
_INT_CHARS[list(b"0123456789+- \0")] = True
# Bytes the Arrow fast path accepts (no blanks: Arrow's casts reject them, numpy's path takes them).
_FLOAT_CHARS_NO_BLANK = np.zeros(256, dtype=bool)
_FLOAT_CHARS_NO_BLANK[list(b"0123456789+-.eE")] = True
_INT_CHARS_NO_BLANK = np.zeros(256, dtype=bool)
_INT_CHARS_NO_BLANK[list(b"0123456789+-")] = True
_MAX_NUMBER_WIDTH = 64


def _column_values(block: Block, starts: IntArray, ends: IntArray, col: int,
                   name: str | None) -> tuple[ByteArray, IntArray, IntArray, BoolArray]:
    """Field ``col`` of each row, enclosure stripped: (data array, starts, widths, is_null)."""
    arr = block.array
    fmt = block.fmt
    s = np.ascontiguousarray(starts[:, col], dtype=np.int64).copy()
    e = np.ascontiguousarray(ends[:, col], dtype=np.int64).copy()
    last = max(arr.size - 1, 0)
    enclosed = np.zeros(s.shape, dtype=bool)
    enc = fmt.enclosure_byte
    if enc is not None and s.size:
        enclosed = (e - s >= 2) & (arr[np.minimum(s, last)] == enc) & (
            arr[np.clip(e - 1, 0, last)] == enc)
        s[enclosed] += 1
        e[enclosed] -= 1
    width = e - s
    is_null = _null_mask(arr, s, width, enclosed, fmt) if s.size else enclosed
    return arr, s, width, is_null


def _arrow_numbers(block: Block, s: IntArray, width: IntArray, allowed: BoolArray,
                   target: pa.DataType) -> npt.NDArray[Any] | None:
    """The fields (start ``s``, ``width`` bytes) parsed by Arrow's C++ casts, or None.

    None when any field is empty, has a byte outside ``allowed``, or does not
    parse (the caller's numpy path then parses or names the bad value).  Arrow
    parses doubles with correct rounding, as numpy does, so both paths give
    the same values.
    """
    n = s.size
    if n == 0 or not (width > 0).all():
        return None
    offsets = np.empty(2 * n, dtype=np.int64)
    offsets[0::2] = s
    offsets[1::2] = s + width
    if not (np.diff(offsets) >= 0).all():  # fields out of order: not expected, not handled here
        return None
    spans = pa.Array.from_buffers(pa.large_binary(), 2 * n - 1,
                                  [None, pa.py_buffer(offsets), pa.py_buffer(block.data)])
    fields = spans.take(pa.array(np.arange(0, 2 * n, 2, dtype=np.int64)))
    data = fields.buffers()[2]
    if data is None or not allowed[np.frombuffer(data, dtype=np.uint8)].all():
        return None
    try:
        return pc.cast(fields.cast(pa.large_string()), target).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _bad_value(block: Block, rows: IntArray, s: IntArray, width: IntArray, col: int,
               name: str | None, what: str, check: Any) -> InputFormatError:
    """The error for the first value among ``rows`` that ``check`` rejects."""
    for r in rows.tolist():
        raw = block.data[int(s[r]):int(s[r] + width[r])]
        try:
            check(raw)
        except (ValueError, OverflowError):
            return InputFormatError(block.path, block.line_of(r), f"{raw[:40]!r} is not {what}",
                                    column=name if name is not None else f"#{col + 1}")
    return InputFormatError(block.path, block.first_line, f"a value is not {what}",
                            column=name if name is not None else f"#{col + 1}")


def _strict_float(raw: bytes) -> float:
    if not raw.strip() or not _FLOAT_CHARS[np.frombuffer(raw, dtype=np.uint8)].all():
        raise ValueError(raw)
    return float(raw)


def _strict_int(raw: bytes) -> int:
    if not raw.strip() or not _INT_CHARS[np.frombuffer(raw, dtype=np.uint8)].all():
        raise ValueError(raw)
    value = int(raw)
    if not -(2**63) <= value < 2**63:
        raise OverflowError(raw)
    return value


def float_column(block: Block, starts: IntArray, ends: IntArray, col: int,
                 name: str | None = None) -> FloatArray:
    """Parse field ``col`` of every row as a double; NULL (``\\N``) becomes NaN.

    Accepts what MariaDB stores in a DOUBLE without a warning: optional
    sign, digits, decimal point, exponent, surrounding blanks.  Anything
    else (empty fields, ``nan``, ``inf``, hex, text) raises
    :class:`InputFormatError` with the file, line and column (``name``, or
    ``#<1-based index>``).  Conversion is numpy's, which rounds correctly.
    """
    arr, s, width, is_null = _column_values(block, starts, ends, col, name)
    out = np.full(s.shape, np.nan, dtype=np.float64)
    rows = np.flatnonzero(~is_null)
    if rows.size == 0:
        return out
    s_v, w_v = s[rows], width[rows]
    parsed = _arrow_numbers(block, s_v, w_v, _FLOAT_CHARS_NO_BLANK, pa.float64())
    if parsed is not None:
        out[rows] = parsed
        return out
    long_rows = w_v > _MAX_NUMBER_WIDTH
    if long_rows.any():  # rare: parse those one by one
        for r in rows[long_rows].tolist():
            raw = block.data[int(s[r]):int(s[r] + width[r])]
            try:
                out[r] = _strict_float(raw)
            except ValueError:
                raise _bad_value(block, np.asarray([r]), s, width, col, name, "a number",
                                 _strict_float) from None
        rows, s_v, w_v = rows[~long_rows], s_v[~long_rows], w_v[~long_rows]
        if rows.size == 0:
            return out
    w = max(int(w_v.max()), 1)
    mat = _field_matrix(arr, s_v, w_v, w)
    good = (w_v > 0) & _FLOAT_CHARS[mat].all(axis=1)
    if not good.all():
        raise _bad_value(block, rows[~good], s, width, col, name, "a number", _strict_float)
    try:
        out[rows] = mat.view(f"S{w}").ravel().astype(np.float64)
    except ValueError:
        raise _bad_value(block, rows, s, width, col, name, "a number", _strict_float) from None
    return out


def int_column(block: Block, starts: IntArray, ends: IntArray, col: int,
               name: str | None = None) -> tuple[IntArray, BoolArray]:
    """Parse field ``col`` as a 64-bit integer: ``(values, is_null)`` (NULL rows hold 0).

    For keys (``objectId`` ...) that doubles would round.  Non-integers raise
    :class:`InputFormatError` like :func:`float_column`.
    """
    arr, s, width, is_null = _column_values(block, starts, ends, col, name)
    out = np.zeros(s.shape, dtype=np.int64)
    rows = np.flatnonzero(~is_null)
    if rows.size == 0:
        return out, is_null
    s_v, w_v = s[rows], width[rows]
    parsed = _arrow_numbers(block, s_v, w_v, _INT_CHARS_NO_BLANK, pa.int64())
    if parsed is not None:
        out[rows] = parsed
        return out, is_null
    too_long = w_v > 32
    if too_long.any():
        raise _bad_value(block, rows[too_long], s, width, col, name, "a 64-bit integer",
                         _strict_int)
    w = max(int(w_v.max()), 1)
    mat = _field_matrix(arr, s_v, w_v, w)
    good = (w_v > 0) & _INT_CHARS[mat].all(axis=1)
    if not good.all():
        raise _bad_value(block, rows[~good], s, width, col, name, "a 64-bit integer",
                         _strict_int)
    try:
        out[rows] = mat.view(f"S{w}").ravel().astype(np.int64)
    except (ValueError, OverflowError):
        raise _bad_value(block, rows, s, width, col, name, "a 64-bit integer",
                         _strict_int) from None
    return out, is_null


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def validate_escapes(block: Block, fmt: TextFormat | None = None) -> None:
    """Reject the escape/enclosure errors that can only come from a damaged file.

    MariaDB reads ``\\x`` as ``x`` for every ``x`` and so accepts almost any
    escape; what it accepts but no writer produces -- and what would change
    meaning if the row were written back out with a terminator, as
    :func:`gather_rows` does -- is only possible at the end of the file:

    * a lone escape character as the file's last byte (an odd run of escape
      characters with nothing after it; MariaDB stores it as a literal
      backslash; ``INTO OUTFILE`` would have written ``\\\\``);
    * a file whose last row has no terminator and ends in an escaped line
      terminator: the row's own terminator was swallowed by a stray escape
      (``INTO OUTFILE`` ends a value holding a newline with ``\\<newline>``
      and then still writes the terminator);
    * an enclosed field still open at the end of the file (MariaDB would take
      the rest of the file as that one value).

    Raises :class:`InputFormatError` naming the file and the line.
    """
    fmt = _check_format(block, fmt)
    if block.nrows == 0:
        return
    last = block.nrows - 1
    line = block.line_of(last)
    if block.open_enclosure:
        raise InputFormatError(block.path, line,
                               "enclosed field not closed before the end of the file")
    if not block.missing_final_terminator:
        return
    row = block.row_bytes(last)
    esc = fmt.escape_byte
    if esc is None:
        return
    esc_b = bytes([esc])
    trailing = len(row) - len(row.rstrip(esc_b))
    if trailing % 2 == 1:
        raise InputFormatError(block.path, line,
                               f"lone escape character {esc_b!r} at the end of the file")
    lt = fmt.lines_terminated_by
    if row.endswith(lt):
        before = row[: len(row) - len(lt)]
        run = len(before) - len(before.rstrip(esc_b))
        if run % 2 == 1:
            raise InputFormatError(
                block.path, line,
                "the last row's line terminator is escaped (stray escape character before "
                "the end of the file)")


# ---------------------------------------------------------------------------
# Writing rows back out
# ---------------------------------------------------------------------------


def _ranges(starts: IntArray, lengths: IntArray) -> IndexArray:
    """Concatenation of ``arange(s, s + n)`` for each (s, n), vectorised.

    int32 when the values fit (half the memory traffic of int64).
    """
    keep = lengths > 0
    if not keep.all():
        starts, lengths = starts[keep], lengths[keep]
    if lengths.size == 0:
        return _EMPTY
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    small = total < 2**31 and int((starts + lengths).max()) < 2**31 and int(starts.min()) >= 0
    dtype = np.int32 if small else np.int64
    idx = np.repeat((starts - offsets).astype(dtype), lengths)
    idx += np.arange(total, dtype=dtype)
    return idx


def _row_index_array(block: Block, row_indexes: npt.ArrayLike) -> IntArray:
    rows = np.asarray(row_indexes)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    rows = rows.astype(np.int64, copy=False).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= block.nrows):
        raise IndexError(f"row index out of range for a block of {block.nrows} rows")
    return rows


def _rows_array(block: Block) -> pa.LargeBinaryArray:
    """The block's rows, each with its line terminator, as an Arrow array over ``data`` (no copy).

    Rows are contiguous in ``data`` (every row is followed by the terminator,
    see :class:`Block`), so row i is ``data[row_starts[i]:row_starts[i+1]]``.
    """
    n = block.nrows
    k = len(block.fmt.lines_terminated_by)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[:n] = block.row_starts
    offsets[n] = block.row_ends[-1] + k if n else 0
    if n and not np.array_equal(offsets[1:n], block.row_ends[:-1] + k):
        raise ValueError("rows of a block must be contiguous")
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets),
                                                        pa.py_buffer(block.data)])


def _taken(block: Block, rows: IntArray) -> pa.LargeBinaryArray:
    return _rows_array(block).take(pa.array(rows, type=pa.int64()))


def _cut(array: pa.LargeBinaryArray, bounds: Sequence[int]) -> list[memoryview]:
    """The data of rows ``[bounds[i], bounds[i+1])`` of ``array``, one view (no copy) each."""
    offsets_buffer, data_buffer = array.buffers()[1:3]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    cuts = offsets[np.asarray(bounds, dtype=np.int64)].tolist()
    return [data[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def gather_rows(block: Block, row_indexes: npt.ArrayLike) -> bytes:
    """The raw bytes of the given rows, in that order, each followed by the line terminator.

    Byte for byte as in the input (escapes and enclosures untouched), so the
    result loads with the same ``LOAD DATA`` options.  ``row_indexes`` is an
    integer array (repeats allowed) or a boolean mask.
    """
    rows = _row_index_array(block, row_indexes)
    if rows.size == 0:
        return b""
    return bytes(_cut(_taken(block, rows), [0, rows.size])[0])


def append_columns(block: Block, row_indexes: npt.ArrayLike,
                   extra: Sequence[npt.ArrayLike]) -> bytes:
    """Like :func:`gather_rows`, with integer columns appended to each row.

    ``extra[j][i]`` is appended to the i-th selected row (so each array is as
    long as ``row_indexes``), after the field terminator, e.g. chunkId and
    subChunkId.
    """
    rows = _row_index_array(block, row_indexes)
    return b"".join(append_columns_grouped(block, rows, extra, [0, rows.size]))


def small_int_codes(values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``np.unique(values, return_inverse=True)``, but without sorting when the values span a
    small range (chunk and sub-chunk ids): then the levels are every value of the range."""
    values = values.astype(np.int64, copy=False)
    if values.size:
        low, high = int(values.min()), int(values.max())
        if high - low < min(1 << 16, 4 * values.size + 16):
            return np.arange(low, high + 1, dtype=np.int64), values - low
    levels, code = np.unique(values, return_inverse=True)
    return levels, code.ravel()


def stable_order(values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """``np.argsort(values, kind="stable")``; by radix sort when the values span under 65536 (numpy
    sorts 16-bit integers that way, in linear time), e.g. a block's chunk ids."""
    if values.size:
        low, high = int(values.min()), int(values.max())
        if high - low < 1 << 16:
            return np.argsort((values - low).astype(np.uint16), kind="stable")
    return np.argsort(values, kind="stable")


def append_columns_grouped(block: Block, row_indexes: npt.ArrayLike,
                           extra: Sequence[npt.ArrayLike], bounds: Sequence[int]) -> list[memoryview]:
    """:func:`append_columns` cut into groups: one view per ``[bounds[i], bounds[i+1])``.

    For rows already sorted by group (e.g. by chunk).  The rows are gathered
    and their suffixes joined on in Arrow's C++ kernels (``take``,
    ``binary_join_element_wise``), no per-row Python; each distinct value of
    an extra column is formatted once.  The views share one buffer.
    """
    rows = _row_index_array(block, row_indexes)
    n = rows.size
    fmt = block.fmt
    if n == 0:
        return [memoryview(b"") for _ in range(max(0, len(bounds) - 1))]
    columns = [np.asarray(v) for v in extra]
    for column in columns:
        if column.dtype.kind not in "iu":
            raise TypeError(f"extra columns must be integer arrays, not {column.dtype}")
        if column.shape != (n,):
            raise ValueError(f"extra column has shape {column.shape}, expected ({n},)")
    taken = _taken(block, rows)
    if not columns:
        return _cut(taken, bounds)
    ft, lt = fmt.fields_terminated_by, fmt.lines_terminated_by
    pieces = [pc.binary_slice(taken, 0, -len(lt))]
    del taken
    for j, column in enumerate(columns):
        # Each distinct value is formatted once, then spread by Arrow's take.
        levels, code = small_int_codes(column)
        end = lt if j == len(columns) - 1 else b""
        texts = pa.array([b"%b%d%b" % (ft, v, end) for v in levels.tolist()], type=pa.large_binary())
        pieces.append(texts.take(pa.array(code, type=pa.int64())))
    joined = pc.binary_join_element_wise(*pieces, pa.scalar(b"", type=pa.large_binary()))
    return _cut(joined, bounds)


def int_rows_text(columns: Sequence[npt.ArrayLike], separator: bytes = b"\t",
                  terminator: bytes = b"\n") -> bytes:
    """Rows of decimal integers (one array per column, equal lengths) as LOAD DATA text.

    The equivalent of ``"".join(f"{a}\t{b}\n" for a, b in zip(...))`` in Arrow's
    C++ kernels, e.g. for the director index (key, chunkId, subChunkId).
    """
    if not columns:
        raise ValueError("no columns")
    arrays = [np.asarray(c) for c in columns]
    n = arrays[0].shape[0]
    for values in arrays:
        if values.ndim != 1 or values.shape[0] != n:
            raise ValueError(f"column has shape {values.shape}, expected ({n},)")
        if values.dtype.kind not in "iu":
            raise TypeError(f"columns must be integer arrays, not {values.dtype}")
    if n == 0:
        return b""
    texts = [pc.cast(pa.array(v), pa.large_string()).cast(pa.large_binary()) for v in arrays]
    texts[-1] = pc.binary_join_element_wise(texts[-1], pa.scalar(terminator, pa.large_binary()),
                                            pa.scalar(b"", pa.large_binary()))
    rows = pc.binary_join_element_wise(*texts, pa.scalar(separator, pa.large_binary()))
    return bytes(_cut(rows, [0, n])[0])


# ---------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------

_PYARROW_HELP = ("reading Parquet needs pyarrow, which is not installed: "
                 "pip install pyarrow")


def _import_pyarrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_PYARROW_HELP) from exc
    return pa, pc, pq


def _arrow_text(column: Any, pa: Any, pc: Any) -> Any:
    """One Arrow column as LOAD DATA text (large_binary), ``\\N`` for NULL."""
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    if pa.types.is_boolean(t):
        text = pc.cast(pc.cast(column, pa.int8()), pa.large_string())
    elif pa.types.is_floating(t):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, t), column)
        text = pc.cast(column, pa.large_string())
    elif pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date(t) \
            or pa.types.is_time(t):
        text = pc.cast(column, pa.large_string())
    elif pa.types.is_timestamp(t):
        micros = pc.cast(column, pa.timestamp("us", tz=t.tz), safe=False)
        text = pc.cast(micros.cast(pa.timestamp("us")), pa.large_string())  # UTC, naive
    elif (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
          or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)):
        text = pc.cast(column, pa.large_binary())
        for raw, escaped in ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"),
                             (b"\r", b"\\r"), (b"\0", b"\\0")):
            text = pc.replace_substring(text, pattern=raw, replacement=escaped)
    else:
        raise TypeError(f"Parquet column type {t} is not supported for ingest")
    text = pc.cast(text, pa.large_binary())
    return pc.fill_null(text, pa.scalar(b"\\N", pa.large_binary()))


def iter_parquet_blocks(path: str | os.PathLike[str], columns: Sequence[str] | None = None,
                        batch_rows: int = 256 * 1024) -> Iterator[Block]:
    """Read a Parquet file as blocks of default-format (tab-separated) LOAD DATA text.

    ``columns`` picks and orders the columns (default: all, in file order).
    NULL (and float NaN) becomes ``\\N``; backslash, tab, newline, CR and NUL
    inside strings and binary values are written as ``\\\\ \\t \\n \\r \\0``;
    booleans as 0/1; timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC).
    """
    pa, pc, pq = _import_pyarrow()
    fmt = TextFormat()
    name = str(path)
    line = 1
    pf = pq.ParquetFile(path)
    wanted = list(columns) if columns is not None else None
    for batch in pf.iter_batches(batch_size=batch_rows, columns=wanted):
        if batch.num_rows == 0:
            continue
        if wanted is not None:
            batch = batch.select(wanted)
        texts = [_arrow_text(batch.column(i), pa, pc) for i in range(batch.num_columns)]
        joined = pc.binary_join_element_wise(*texts, pa.scalar(b"\t", pa.large_binary()))
        empty = pa.scalar(b"", pa.large_binary())
        # joined + "\n" + "": every row with its terminator, in one contiguous buffer.
        lines = pc.binary_join_element_wise(joined, empty, pa.scalar(b"\n", pa.large_binary()))
        lines = pc.cast(lines, pa.large_binary())
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[
            lines.offset: lines.offset + len(lines) + 1]
        data = lines.buffers()[2].to_pybytes()[int(offsets[0]):int(offsets[-1])]
        offsets = offsets - offsets[0]
        starts = offsets[:-1].astype(np.int64)
        ends = (offsets[1:] - 1).astype(np.int64)
        block = Block(path=name, data=data, row_starts=starts, row_ends=ends, first_line=line,
                      fmt=fmt, escaped=_escaped_positions(np.frombuffer(data, np.uint8), 0x5C),
                      enclosure_marks=None)
        line += block.nrows
        yield block


def read_all(path: str | os.PathLike[str], fmt: TextFormat | None = None) -> Block:
    """The whole file as one block (small files and tests)."""
    with open_input(path) as f:
        data = f.read()
    return Block.from_bytes(data, fmt, path=str(path))


_UNESCAPE_BYTES = {ord("0"): b"\0", ord("b"): b"\b", ord("n"): b"\n", ord("r"): b"\r",
                   ord("t"): b"\t", ord("Z"): b"\x1a"}


def decode_field(raw: bytes, fmt: TextFormat | None = None) -> bytes | None:
    """The value MariaDB stores for one raw field (None for NULL).

    Strips the enclosure, undoes doubled enclosure characters and escapes
    (``\\n`` is a newline, ``\\x`` is ``x``).  Pure Python, one value at a
    time: for messages, keys and tests, not for bulk data.
    """
    fmt = fmt or TextFormat()
    enc = fmt.enclosure_byte
    esc = fmt.escape_byte
    enclosed = enc is not None and len(raw) >= 2 and raw[0] == enc and raw[-1] == enc
    if enclosed:
        raw = raw[1:-1]
    elif fmt.null_word is not None and raw == fmt.null_word:
        return None
    if fmt.null_escape is not None and raw == fmt.null_escape:
        return None
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if esc is not None and b == esc and i + 1 < len(raw):
            out += _UNESCAPE_BYTES.get(raw[i + 1], raw[i + 1:i + 2])
            i += 2
        elif enclosed and b == enc and i + 1 < len(raw) and raw[i + 1] == enc:
            out.append(b)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)
