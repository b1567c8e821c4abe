"""One statement on a pooled PyMySQL connection, run from the event loop: no thread.

A worker's chunk task whose result columns are already known (its shape is
in the probe cache) is one ``SELECT ... INTO OUTFILE`` whose only reply is
an OK or an ERR packet; the czar's director-index lookup of a point query is
a SELECT of a few small rows.  Handing either to a thread and back costs more
than its protocol does (about 0.17 ms a round trip here, on a 2 ms query),
so :func:`execute` and :func:`query` send the ``COM_QUERY`` packet and read
the reply with the event loop's own socket calls.

The connection stays usable by PyMySQL afterwards: a command starts its
packet sequence at 0 and the reply is read to its end, so nothing is left
in the socket or in PyMySQL's read buffer (PyMySQL asks for no
``CLIENT_DEPRECATE_EOF``, so a result set ends with an EOF packet).  A reply
out of protocol, a lost connection or a cancellation while waiting leave it
in an unknown state: the caller must close it (:class:`QuickError` says so).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
import pymysql.err
from pymysql.protocol import MysqlPacket, OKPacketWrapper

COM_QUERY = b"\x03"
MAX_PAYLOAD = 0xFFFFFF - 1  # a longer statement needs a packet split: left to PyMySQL (a thread)


class QuickError(Exception):
    """The connection broke or answered out of protocol: close it, never reuse it."""


@contextmanager
def _nonblocking(conn: pymysql.connections.Connection) -> Iterator[socket.socket]:
    """The connection's own socket, non-blocking for the loop's calls; PyMySQL's timeout (which it
    remembers and does not set again) is restored afterwards."""
    sock: socket.socket | None = conn._sock  # noqa: SLF001 - the connection's own socket, between its commands
    if sock is None:
        raise QuickError("connection closed")
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.settimeout(timeout)


async def _send(conn: pymysql.connections.Connection, sock: socket.socket, sql: str) -> None:
    payload = COM_QUERY + sql.encode(conn.encoding)
    if len(payload) > MAX_PAYLOAD:
        raise QuickError("statement too long for one packet")
    try:
        await asyncio.get_running_loop().sock_sendall(sock, len(payload).to_bytes(3, "little") + b"\x00" + payload)
    except OSError as exc:
        raise QuickError(f"lost the connection to MariaDB: {exc}") from exc


async def _packet(sock: socket.socket) -> bytes:
    """The next packet's payload (one packet: a longer one is out of this module's protocol)."""
    loop = asyncio.get_running_loop()
    try:
        header = await _read_exactly(loop, sock, 4)
        length = int.from_bytes(header[:3], "little")
        if length == 0xFFFFFF:
            raise QuickError("a reply of more than one packet")
        return await _read_exactly(loop, sock, length)
    except OSError as exc:
        raise QuickError(f"lost the connection to MariaDB: {exc}") from exc


def _is_eof(body: bytes) -> bool:
    return body[:1] == b"\xfe" and len(body) < 9


async def query(conn: pymysql.connections.Connection, sql: str) -> list[tuple[bytes | None, ...]]:
    """Run a SELECT; its rows, each value as the text MariaDB sent (None for NULL).

    An ERR reply raises the PyMySQL exception PyMySQL would raise (the
    connection stays usable); :class:`QuickError` means it must be closed.
    """
    with _nonblocking(conn) as sock:
        await _send(conn, sock, sql)
        first = await _packet(sock)
        if first[:1] == b"\xff":
            pymysql.err.raise_mysql_exception(first)
        if first[:1] == b"\x00":
            return []  # not a result set (no columns)
        if first[:1] == b"\xfb":
            raise QuickError("the server asked for a local file")
        columns = MysqlPacket(first, conn.encoding).read_length_encoded_integer()
        for _ in range(columns):
            await _packet(sock)  # column definitions: the caller knows what it asked for
        if not _is_eof(await _packet(sock)):
            raise QuickError("no EOF after the column definitions")
        rows: list[tuple[bytes | None, ...]] = []
        while True:
            body = await _packet(sock)
            if _is_eof(body):
                return rows
            if body[:1] == b"\xff":
                pymysql.err.raise_mysql_exception(body)
            packet = MysqlPacket(body, conn.encoding)
            rows.append(tuple(packet.read_length_coded_string() for _ in range(columns)))


async def execute(conn: pymysql.connections.Connection, sql: str) -> int:
    """Run ``sql`` (a statement answered by OK, e.g. ``SELECT ... INTO OUTFILE``); its row count.

    An ERR reply raises the PyMySQL exception PyMySQL would raise (the
    connection stays usable); :class:`QuickError` means it must be closed.
    """
    with _nonblocking(conn) as sock:
        await _send(conn, sock, sql)
        body = await _packet(sock)
    if body[:1] == b"\xff":
        pymysql.err.raise_mysql_exception(body)
    if body[:1] != b"\x00":
        raise QuickError(f"unexpected reply (first byte {body[:1].hex() or 'none'}) to a statement")
    return int(OKPacketWrapper(MysqlPacket(body, conn.encoding)).affected_rows)


async def _read_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        piece = await loop.sock_recv(sock, size - len(data))
        if not piece:
            raise QuickError("MariaDB closed the connection")
        data += piece
    return bytes(data)


async def finish_cancelled(conn: pymysql.connections.Connection) -> bool:
    """After :func:`execute` was cancelled while waiting for its reply: read that reply (OK, or
    ERR once the statement was killed), so the statement is known to be over; False when the
    connection cannot be reused (then close it)."""
    try:
        with _nonblocking(conn) as sock:
            body = await _packet(sock)
    except QuickError:
        return False
    return body[:1] in (b"\x00", b"\xff")
