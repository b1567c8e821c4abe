"""MySQL text-protocol row packets made from LOAD DATA text in bulk (numpy), not value by value.

A pass-through result (see :meth:`czar.engine.Engine._run_merge`) is the
workers' ``SELECT ... INTO OUTFILE`` text of numeric columns: lines of
fields separated by tabs, ``\\N`` for NULL and no other escape (a numeric
value's text has no tab, newline, backslash or NUL, the four characters
``INTO OUTFILE`` escapes).  That text is exactly what MariaDB sends for the
value, so a row packet is the line with a header in front and each field
preceded by its length (``0xFB`` alone for NULL): the bytes are moved, never
parsed.  :func:`encode_text_rows` does this for a block of lines with a few
numpy operations; :func:`encode_text_rows_slowly` is the same thing row by
row (the reference in tests, and the path for a field of 251 bytes or more,
whose length takes more than one byte).

Anything else in the text (a field count that differs, a backslash that is
not a whole ``\\N`` field, a block not ending with a newline) raises
:class:`ValueError`: never a wrong row.
"""

from __future__ import annotations

import numpy as np

TAB = 9
NEWLINE = 10
BACKSLASH = 92
NULL_MARK = b"\\N"
NULL_BYTE = 0xFB
MAX_SHORT = 250  # longest field whose length is one byte
# Up to this many rows, encode_text_rows_slowly is the faster (numpy's set-up costs about 0.1 ms).
FEW_ROWS = 16


def _length_prefix(size: int) -> bytes:
    if size <= MAX_SHORT:
        return bytes((size,))
    if size < 1 << 16:
        return b"\xfc" + size.to_bytes(2, "little")
    if size < 1 << 24:
        return b"\xfd" + size.to_bytes(3, "little")
    return b"\xfe" + size.to_bytes(8, "little")


def encode_text_rows_slowly(block: bytes, columns: int, seq: int) -> tuple[bytes, int]:
    """:func:`encode_text_rows` one row at a time (any field length)."""
    if not block:
        return b"", 0
    if not block.endswith(b"\n"):
        raise ValueError("result text does not end with a newline")
    out = bytearray()
    lines = block[:-1].split(b"\n")
    for line in lines:
        fields = line.split(b"\t")
        if len(fields) != columns:
            raise ValueError(f"a result row has {len(fields)} fields, expected {columns}")
        payload = bytearray()
        for field in fields:
            if field == NULL_MARK:
                payload.append(NULL_BYTE)
            elif b"\\" in field:
                raise ValueError("escaped text in a numeric result")
            else:
                payload += _length_prefix(len(field))
                payload += field
        if len(payload) >= 0xFFFFFF:
            raise ValueError("a result row does not fit in one packet")
        out += len(payload).to_bytes(3, "little") + bytes((seq,))
        out += payload
        seq = (seq + 1) & 0xFF
    return bytes(out), len(lines)


def encode_text_rows(block: bytes, columns: int, seq: int) -> tuple[bytes, int]:
    """Framed text-protocol row packets for ``block`` (whole LOAD DATA lines of ``columns`` numeric fields).

    ``seq`` is the sequence id of the first packet (the next ones count on,
    modulo 256).  Returns the packets and the number of rows.
    """
    if not block:
        return b"", 0
    if columns < 1:
        raise ValueError("a result has at least one column")
    data = np.frombuffer(block, dtype=np.uint8)
    size = data.size
    if data[-1] != NEWLINE:
        raise ValueError("result text does not end with a newline")
    separators = np.flatnonzero((data == TAB) | (data == NEWLINE))
    if separators.size % columns:
        raise ValueError(f"result rows do not all have {columns} fields")
    rows = separators.size // columns
    kinds = data[separators].reshape(rows, columns)
    if not (kinds[:, -1] == NEWLINE).all() or (columns > 1 and not (kinds[:, :-1] == TAB).all()):
        raise ValueError(f"result rows do not all have {columns} fields")
    starts = np.empty_like(separators)
    starts[0] = 0
    starts[1:] = separators[:-1] + 1
    lengths = separators - starts
    if lengths.max() > MAX_SHORT:
        return encode_text_rows_slowly(block, columns, seq)
    backslashes = int(np.count_nonzero(data == BACKSLASH))
    null = np.zeros(separators.size, dtype=bool)
    if backslashes:
        second = np.minimum(starts + 1, size - 1)
        null = (lengths == 2) & (data[starts] == BACKSLASH) & (data[second] == ord("N"))
        if int(np.count_nonzero(null)) != backslashes:  # a backslash that is not a whole \N field
            raise ValueError("escaped text in a numeric result")
    prefix = np.where(null, NULL_BYTE, lengths).astype(np.uint8)
    payload = (lengths + 1 - 2 * null).reshape(rows, columns).sum(axis=1)

    # Work on the text with a newline in front: the newline before each row becomes the first
    # byte of its header; each tab becomes the length of the field after it; the last newline goes.
    text = np.empty(size, dtype=np.uint8)
    text[0] = NEWLINE
    text[1:] = data[:-1]
    ends = separators.reshape(rows, columns)[:, -1]  # each row's newline (in ``data``)
    row_starts = np.empty(rows, dtype=np.int64)
    row_starts[0] = 0
    row_starts[1:] = ends[:-1] + 1  # where each row's first field begins (in ``data``)
    text[row_starts] = (payload & 0xFF).astype(np.uint8)  # the newline before the row (in ``text``)
    if columns > 1:
        tabs = separators.reshape(rows, columns)[:, :-1].ravel()
        text[tabs + 1] = prefix.reshape(rows, columns)[:, 1:].ravel()
    inserted = np.empty((rows, 4), dtype=np.uint8)
    inserted[:, 0] = (payload >> 8) & 0xFF
    inserted[:, 1] = (payload >> 16) & 0xFF
    inserted[:, 2] = (seq + np.arange(rows)) & 0xFF
    inserted[:, 3] = prefix.reshape(rows, columns)[:, 0]
    at = row_starts + 1  # after the header's first byte, before the row's first field
    if backslashes:
        nulls = starts[null] + 1  # each NULL's two characters (in ``text``) go
        gone = np.concatenate((nulls, nulls + 1))
        gone.sort()
        text = np.delete(text, gone)
        at = at - np.searchsorted(gone, at)
    out = np.insert(text, np.repeat(at, 4), inserted.ravel())
    return out.tobytes(), rows
