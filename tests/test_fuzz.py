"""Bad input: property-based fuzzing of the front end, malformed MySQL packets and gRPC messages.

* Random and mutated SQL (hypothesis; mutations of Qserv's case01 corpus):
  the czar answers every statement within a bounded time, with rows or a
  MySQL error; when it answers with rows, they are the reference's rows;
  no chunk task is left running on any worker; the connection and the
  server keep working.
* Raw bytes on port 4040 (before and after authentication) and on a
  worker's gRPC port, and gRPC calls with wrong fields: refused cleanly, and
  the server keeps serving.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from typing import Any

import grpc
import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.config import load_case_directory
from integration.compare import rows_equal, run
from integration.corpus import top_level_queries
from proto import worker_pb2 as pb
from proto import worker_pb2_grpc as pb_grpc
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import CASE01
from tests.test_auth import _packet, _read_packet

pytestmark = pytest.mark.cluster

BOUND = 30.0  # seconds any one statement may take
TOKEN = re.compile(r"`[^`]*`|'[^']*'|\w+|[^\w\s]")
NOISE = ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "NULL", "(", ")", ",", "*", "=", "<", "'", '"', "`",
         ";", "GROUP BY", "ORDER BY", "LIMIT", "JOIN", "ON", "UNION", "0", "-1", "1e308", "9999999999999999999",
         "Object", "Source", "objectId", "ra_PS", "decl_PS", "COUNT(*)", "qserv_areaspec_circle(", "\\", "\x00",
         "é", "SLEEP(", "information_schema", "processlist", "queries", "USE", "SHOW", "DATABASES", "KILL",
         "SUBMIT", "CANCEL", "qserv_result(", "DROP", "INSERT", "--", "/*", "*/", "@@version", "%s", "\n"]


def _corpus() -> list[str]:
    if not CASE01.is_dir():
        return ["SELECT COUNT(*) FROM Object"]
    database = load_case_directory(CASE01)[0].name
    return [c.engine_sql for c in top_level_queries(CASE01, database) if c.engine_sql == c.plain_sql]


CORPUS = _corpus()


@st.composite
def mutated(draw: st.DrawFn) -> str:
    tokens = TOKEN.findall(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 3))):
        if not tokens:
            break
        where = draw(st.integers(0, len(tokens) - 1))
        action = draw(st.sampled_from(["drop", "dup", "swap", "insert", "replace", "truncate"]))
        if action == "drop":
            del tokens[where]
        elif action == "dup":
            tokens.insert(where, tokens[where])
        elif action == "swap":
            other = draw(st.integers(0, len(tokens) - 1))
            tokens[where], tokens[other] = tokens[other], tokens[where]
        elif action == "insert":
            tokens.insert(where, draw(st.sampled_from(NOISE)))
        elif action == "replace":
            tokens[where] = draw(st.sampled_from(NOISE + [t for t in tokens if t.isidentifier()]))
        else:
            tokens = tokens[: where + 1]
    return " ".join(tokens)


STATEMENTS = st.one_of(
    mutated(),
    st.sampled_from(CORPUS),
    st.lists(st.sampled_from(NOISE), min_size=1, max_size=12).map(" ".join),
    st.text(max_size=200),
)


def _comparable(sql: str) -> bool:
    """Answers that are deterministic enough to compare with the reference."""
    lowered = sql.lower()
    return not any(word in lowered for word in ("limit", "rand(", "now(", "connection_id", "sleep(", "processlist",
                                                "queries", "qserv_", "database(", "@@", "show", "describe",
                                                "information_schema", "kill", "submit", "cancel", "use "))


def _running_tasks(cluster: LocalCluster) -> list[str]:
    statements: list[str] = []
    for index in range(cluster.layout.workers):
        connection = cluster.worker_db(index).address.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT INFO FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query'"
                               " AND INFO NOT LIKE '%PROCESSLIST%'")
                statements += [str(row[0]) for row in cursor.fetchall()]
        finally:
            connection.close()
    return statements


def _no_leaked_task(cluster: LocalCluster) -> None:
    deadline = time.monotonic() + 10
    while (left := _running_tasks(cluster)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"chunk tasks still running on the workers: {left}"


@pytest.fixture(scope="module")
def sessions(cluster: LocalCluster, reference: ServerAddress, case01: str) -> Any:
    czar = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", database=case01,
                           read_timeout=BOUND, write_timeout=BOUND, connect_timeout=10)
    ref = reference.connect(database=case01)
    yield czar, ref
    czar.close()
    ref.close()


@settings(max_examples=int(os.environ.get("SKYSHARD_FUZZ_EXAMPLES", "120")), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(sql=STATEMENTS)
def test_random_and_mutated_sql(cluster: LocalCluster, sessions: Any, sql: str) -> None:
    czar, ref = sessions
    started = time.monotonic()
    try:
        got_names, got_rows = run(czar, sql)
        accepted = True
    except pymysql.err.OperationalError as exc:
        if exc.args[0] in (2013, 2006):  # lost connection: a crash or a hang
            raise AssertionError(f"the czar dropped the connection on {sql!r}: {exc}") from exc
        accepted = False
    except pymysql.MySQLError:
        accepted = False
    except (UnicodeEncodeError, ValueError):  # the client could not even encode it
        return
    assert time.monotonic() - started < BOUND, f"{sql!r} took {time.monotonic() - started:.1f}s"
    assert run(czar, "SELECT 1")[1] == [(1,)]  # the session still works
    if accepted and _comparable(sql):
        try:
            want_names, want_rows = run(ref, sql)
        except pymysql.MySQLError as exc:
            raise AssertionError(f"the czar answered {sql!r} which MariaDB refuses: {exc}") from exc
        difference = rows_equal(got_rows, want_rows, ordered=False)  # as multisets: ties may come in any order
        assert difference is None, f"{sql!r}: {difference}"
        assert len(got_names) == len(want_names)
    _no_leaked_task(cluster)


# -- malformed MySQL protocol -------------------------------------------------------------
def _server_still_serves(cluster: LocalCluster) -> None:
    connection = pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user="skyshard", connect_timeout=10)
    try:
        assert run(connection, "SELECT 1")[1] == [(1,)]
    finally:
        connection.close()


def _drain(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except OSError:
        pass
    return out


def _login(sock: socket.socket) -> None:
    """A handshake response for the admin (empty password) as a raw client."""
    greeting = _read_packet(sock)
    assert greeting[0] == 10
    capabilities = 0x00000200 | 0x00008000 | 0x00080000
    response = (struct.pack("<IIB", capabilities, 1 << 24, 45) + b"\0" * 23 + b"skyshard\0"
                + b"\0" + b"mysql_native_password\0")
    sock.sendall(_packet(1, response))
    reply = _read_packet(sock)
    assert reply[:1] == b"\x00", reply


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(min_size=1, max_size=300), authenticated=st.booleans())
def test_malformed_mysql_packets_are_refused(cluster: LocalCluster, garbage: bytes, authenticated: bool) -> None:
    with socket.create_connection(("127.0.0.1", cluster.layout.czar_port), timeout=5) as sock:
        if authenticated:
            _login(sock)
            sock.sendall(garbage if len(garbage) % 2 else _packet(0, garbage))
        else:
            _read_packet(sock)
            sock.sendall(garbage)
        sock.settimeout(2)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        _drain(sock)
    _server_still_serves(cluster)


def test_specific_malformed_packets(cluster: LocalCluster) -> None:
    cases = [
        _packet(0, b"\x17" + struct.pack("<IBI", 424242, 0, 1)),  # COM_STMT_EXECUTE of no statement
        _packet(0, b"\x03" + b"\xff\xfe\xfd SELECT"),  # COM_QUERY, not UTF-8
        _packet(0, b"\x16" + b"SELECT ?, ?"),  # COM_STMT_PREPARE with parameters, then nothing
        _packet(0, b"\x11" + b"\x00" * 3),  # COM_CHANGE_USER, truncated
        _packet(0, b"\x02" + b"no_such_db"),  # COM_INIT_DB of an unknown database
        b"\xff\xff\xff\x00" + b"x" * 100,  # a 16 MB packet announced, 100 bytes sent
        _packet(0, b""),  # empty command
        _packet(0, b"\xee"),  # unknown command
    ]
    for data in cases:
        with socket.create_connection(("127.0.0.1", cluster.layout.czar_port), timeout=5) as sock:
            _login(sock)
            sock.sendall(data)
            sock.settimeout(2)
            try:
                reply = _read_packet(sock)
            except OSError:
                reply = b""
            assert reply[:1] in (b"", b"\xff", b"\x00", b"\xfe"), (data[:20], reply[:40])  # fe: auth switch
        _server_still_serves(cluster)


# -- malformed gRPC ------------------------------------------------------------------
def _worker_ok(cluster: LocalCluster, index: int) -> None:
    with grpc.insecure_channel(cluster.worker_address(index)) as channel:
        reply = pb_grpc.WorkerStub(channel).Status(pb.StatusRequest(), timeout=5)
    assert reply.database_ok


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(min_size=1, max_size=500))
def test_raw_bytes_on_the_worker_port(cluster: LocalCluster, garbage: bytes) -> None:
    host, port = cluster.worker_address(0).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(garbage)
        sock.settimeout(1)
        _drain(sock)
    _worker_ok(cluster, 0)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(max_size=300))
def test_undecodable_grpc_messages(cluster: LocalCluster, payload: bytes) -> None:
    with grpc.insecure_channel(cluster.worker_address(0)) as channel:
        for method in ("Execute", "Status", "CancelQuery", "Admin"):
            path = f"/skyshard.worker.v1.Worker/{method}"
            call = channel.unary_stream(path) if method == "Execute" else channel.unary_unary(path)
            try:
                result = call(payload, timeout=10)
                if method == "Execute":
                    list(result)
            except grpc.RpcError as exc:
                assert exc.code() in (  # type: ignore[attr-defined]
                    grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN,
                    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED,
                )
    _worker_ok(cluster, 0)


def test_chunk_tasks_with_wrong_fields(cluster: LocalCluster, case01: str) -> None:
    tasks = [
        pb.ChunkTask(query_id="f1", chunk_id=0, database=case01, sql=""),
        pb.ChunkTask(query_id="f2", chunk_id=1, database=case01, sql="DROP TABLE Object_1234567890"),
        pb.ChunkTask(query_id="f3", chunk_id=1, database=case01, sql="SELECT 1; DROP TABLE Object_1234567890"),
        pb.ChunkTask(query_id="f4", chunk_id=-5, database="no_such_db", sql="SELECT 1"),
        pb.ChunkTask(query_id="f5", chunk_id=1, database=case01, sql="SELECT * FROM no_such_table"),
        pb.ChunkTask(query_id="", chunk_id=1, database="", sql="SELECT (((("),
        pb.ChunkTask(query_id="f7", chunk_id=1, database=case01, sql="SELECT 1", batch_bytes=1),
    ]
    with grpc.insecure_channel(cluster.worker_address(0)) as channel:
        stub = pb_grpc.WorkerStub(channel)
        for task in tasks:
            try:
                messages = list(stub.Execute(task, timeout=20))
                assert task.sql.startswith("SELECT 1") and not task.sql.count(";"), task
                assert messages[-1].WhichOneof("payload") == "end"
            except grpc.RpcError as exc:
                assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED, task  # type: ignore[attr-defined]
    # the dummy chunk table is intact and the worker serves
    admin = cluster.worker_db(0).address.connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'Object_1234567890'")
            assert cursor.fetchone()[0] > 0
    finally:
        admin.close()
    _worker_ok(cluster, 0)
    _no_leaked_task(cluster)


def test_the_corpus_still_answers_after_the_fuzzing(cluster: LocalCluster, sessions: Any) -> None:
    czar, ref = sessions
    for sql in CORPUS[:10]:
        got = run(czar, sql)[1]
        want = run(ref, sql)[1]
        assert rows_equal(got, want, ordered=False) is None, sql

