"""One statement on a pooled PyMySQL connection, run from the event loop: no thread.

A chunk task whose result columns the worker already knows (its shape is in
the probe cache) is one ``SELECT ... INTO OUTFILE`` whose only reply is an
OK or an ERR packet.  Handing it to a thread and back costs more than the
statement's protocol does (about 0.17 ms a round trip here, on a 2 ms cone
task), so :func:`execute` sends the ``COM_QUERY`` packet and reads that one
reply packet with the event loop's own socket calls.

The connection stays usable by PyMySQL afterwards: a command starts its
packet sequence at 0 and the reply is read to its end, so nothing is left
in the socket or in PyMySQL's read buffer.  A reply that is neither OK nor
ERR, a lost connection or a cancellation while waiting leave it in an
unknown state: the caller must close it (:class:`QuickError` says which).
"""

from __future__ import annotations

import asyncio
import socket

import pymysql
import pymysql.err
from pymysql.protocol import MysqlPacket, OKPacketWrapper

COM_QUERY = b"\x03"
MAX_PAYLOAD = 0xFFFFFF - 1  # a longer statement needs a packet split: left to PyMySQL (a thread)


class QuickError(Exception):
    """The connection broke or answered out of protocol: close it, never reuse it."""


async def execute(conn: pymysql.connections.Connection, sql: str) -> int:
    """Run ``sql`` (a statement answered by OK, e.g. ``SELECT ... INTO OUTFILE``); its row count.

    An ERR reply raises the PyMySQL exception PyMySQL would raise (the
    connection stays usable); :class:`QuickError` means it must be closed.
    """
    payload = COM_QUERY + sql.encode(conn.encoding)
    if len(payload) > MAX_PAYLOAD:
        raise QuickError("statement too long for one packet")
    sock: socket.socket = conn._sock  # noqa: SLF001 - the connection's own socket, between its commands
    if sock is None:
        raise QuickError("connection closed")
    loop = asyncio.get_running_loop()
    timeout = sock.gettimeout()  # what PyMySQL set (and remembers): restored for its next command
    sock.setblocking(False)
    try:
        await loop.sock_sendall(sock, len(payload).to_bytes(3, "little") + b"\x00" + payload)
        header = await _read_exactly(loop, sock, 4)
        length = int.from_bytes(header[:3], "little")
        if length == 0xFFFFFF:
            raise QuickError("a reply of more than one packet")
        body = await _read_exactly(loop, sock, length)
    except OSError as exc:
        raise QuickError(f"lost the connection to MariaDB: {exc}") from exc
    finally:
        sock.settimeout(timeout)
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
