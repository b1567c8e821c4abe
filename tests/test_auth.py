"""Users, passwords and grants against the real cluster: MySQL protocol, HTTP API and the CLI.

Every refusal is checked with a real client (PyMySQL, raw sockets, httpx,
``skyshard user``); every grant is checked both ways (the granted user
reads, the other one is refused with MySQL's errno).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import httpx
import pymysql
import pytest

from css import Css
from css.api import password_hash
from skyshard import cli
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import SAMPLE_DB
from tests.test_async import SLOW, wait_for

pytestmark = pytest.mark.cluster

ALICE, BOB, ROOT = "alice_t", "bob_t", "root_t"
PASSWORD = "s3cret-pw"
TTL = 1.5  # the czar caches users for 1 s


@pytest.fixture(scope="module")
def users(cluster: LocalCluster) -> Iterator[Css]:
    """alice reads only the sample catalog, bob nothing yet, root_t is an admin."""
    css = cluster.css()
    css.add_user(ALICE, PASSWORD, replace=True)
    css.grant(ALICE, SAMPLE_DB)
    css.add_user(BOB, "bob-pw", replace=True)
    css.add_user(ROOT, "root-pw", admin=True, replace=True)
    time.sleep(TTL)
    try:
        yield css
    finally:
        for name in (ALICE, BOB, ROOT):
            if css.user(name) is not None:
                css.remove_user(name)
        css.close()


def connect(cluster: LocalCluster, user: str, password: str = "", database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=cluster.layout.czar_port, user=user, password=password,
                           database=database, connect_timeout=10, read_timeout=60)


def errno_of(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except pymysql.err.MySQLError as exc:
        return int(exc.args[0])
    raise AssertionError("no error")


def query(connection: pymysql.Connection, sql: str) -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def test_stored_hash_is_mysql_native_password(reference: ServerAddress) -> None:
    connection = reference.connect()
    try:
        (stored,) = query(connection, "SELECT PASSWORD('s3cret-pw')")[0]
    finally:
        connection.close()
    assert "*" + password_hash(PASSWORD).upper() == stored
    assert password_hash("") == ""


def test_passwords_are_checked(cluster: LocalCluster, users: Css) -> None:
    connection = connect(cluster, ALICE, PASSWORD, SAMPLE_DB)
    assert query(connection, "SELECT COUNT(*) FROM Object")[0][0] == 3000
    connection.close()
    assert errno_of(lambda: connect(cluster, ALICE, "wrong")) == 1045
    assert errno_of(lambda: connect(cluster, ALICE, "")) == 1045
    assert errno_of(lambda: connect(cluster, "nobody_at_all", "")) == 1045  # no anonymous access
    assert errno_of(lambda: connect(cluster, "", "")) == 1045


def test_the_mariadb_command_line_client_logs_in(cluster: LocalCluster, users: Css) -> None:
    import shutil
    import subprocess

    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.skip("no mariadb client")
    base = [client, "-h", "127.0.0.1", "-P", str(cluster.layout.czar_port), "-u", ALICE, "-N", "-B"]
    ok = subprocess.run(base + [f"-p{PASSWORD}", "-e", f"SELECT COUNT(*) FROM {SAMPLE_DB}.Object"],
                        capture_output=True, text=True, timeout=60)
    assert ok.stdout.strip() == "3000", ok.stderr
    bad = subprocess.run(base + ["-pnope", "-e", "SELECT 1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "1045" in bad.stderr


def _packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def _read_packet(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return b""
        head += chunk
    length = int.from_bytes(head[:3], "little")
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return body


def test_a_client_ignoring_access_denied_gets_nothing(cluster: LocalCluster, users: Css) -> None:
    """A raw client that answers the handshake with a bad scramble and then sends a query anyway."""
    with socket.create_connection(("127.0.0.1", cluster.layout.czar_port), timeout=10) as sock:
        greeting = _read_packet(sock)
        assert greeting[0] == 10
        capabilities = 0x00000200 | 0x00008000 | 0x00080000  # PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH
        response = (struct.pack("<IIB", capabilities, 1 << 24, 45) + b"\0" * 23 + ALICE.encode() + b"\0"
                    + bytes([20]) + b"x" * 20 + b"mysql_native_password\0")
        sock.sendall(_packet(1, response))
        reply = _read_packet(sock)
        assert reply[:1] == b"\xff" and int.from_bytes(reply[1:3], "little") == 1045
        try:
            sock.sendall(_packet(0, b"\x03SELECT COUNT(*) FROM testsky.Object"))
            rest = b""
            while packet := _read_packet(sock):
                rest += packet
        except OSError:
            rest = b""
        assert b"3000" not in rest


def test_grants_limit_databases(cluster: LocalCluster, users: Css, case01: str) -> None:
    admin = connect(cluster, "skyshard")
    assert {SAMPLE_DB, case01} <= {row[0] for row in query(admin, "SHOW DATABASES")}
    admin.close()
    alice = connect(cluster, ALICE, PASSWORD)
    try:
        shown = {row[0] for row in query(alice, "SHOW DATABASES")}
        assert SAMPLE_DB in shown and case01 not in shown
        tables = {row[0] for row in query(alice, "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES")}
        assert case01 not in tables
        assert errno_of(lambda: query(alice, f"USE {case01}")) == 1044
        assert errno_of(lambda: query(alice, f"SELECT COUNT(*) FROM {case01}.Object")) == 1142
        assert errno_of(lambda: query(alice, "SELECT COUNT(*) FROM no_such_db.Object")) == 1142
        assert errno_of(lambda: query(alice, f"SHOW COLUMNS FROM {case01}.Object")) == 1044
        assert errno_of(lambda: query(alice, f"SUBMIT SELECT COUNT(*) FROM {case01}.Object")) == 1142
        # joins: one ungranted table is enough to refuse
        assert errno_of(lambda: query(
            alice, f"SELECT COUNT(*) FROM {SAMPLE_DB}.Object o JOIN {case01}.Filter f ON o.objectId = f.filterId"
        )) == 1142
        assert query(alice, f"SELECT COUNT(*) FROM {SAMPLE_DB}.Object")[0][0] == 3000
    finally:
        alice.close()
    # naming the database at connect is checked too
    assert errno_of(lambda: connect(cluster, ALICE, PASSWORD, case01)) == 1044
    # a grant takes effect without a restart, a revoke too
    users.grant(ALICE, case01)
    time.sleep(TTL)
    alice = connect(cluster, ALICE, PASSWORD, case01)
    assert query(alice, "SELECT COUNT(*) FROM Object")[0][0] > 0
    users.revoke(ALICE, case01)
    time.sleep(TTL)
    assert errno_of(lambda: query(alice, "SELECT COUNT(*) FROM Object")) == 1142
    alice.close()


def test_query_records_are_private(cluster: LocalCluster, users: Css) -> None:
    alice = connect(cluster, ALICE, PASSWORD, SAMPLE_DB)
    users.grant(BOB, SAMPLE_DB)
    time.sleep(TTL)
    bob = connect(cluster, BOB, "bob-pw", SAMPLE_DB)
    root = connect(cluster, ROOT, "root-pw")
    try:
        job = int(query(alice, "SUBMIT SELECT objectId FROM Object WHERE decl > 0")[0][0])
        query(bob, "SELECT COUNT(*) FROM Object")
        mine = {row[0] for row in query(bob, "SELECT DISTINCT USER FROM information_schema.queries")}
        assert mine == {BOB}
        assert query(bob, f"SELECT COUNT(*) FROM information_schema.queries q WHERE q.ID = {job}")[0][0] == 0
        everyone = {row[0] for row in query(root, "SELECT DISTINCT USER FROM information_schema.queries")}
        assert {ALICE, BOB} <= everyone
        assert errno_of(lambda: query(bob, f"SELECT * FROM qserv_result({job})")) == 1095
        assert errno_of(lambda: query(bob, f"CANCEL {job}")) == 1095
        assert errno_of(lambda: query(bob, f"CALL qserv_result_delete({job})")) == 1095
        wait_for(lambda: query(alice, f"SELECT STATUS FROM information_schema.queries WHERE ID = {job}")[0][0]
                 == "COMPLETED", 60, "alice's query")
        assert len(query(alice, f"SELECT * FROM qserv_result({job})")) > 0
        query(alice, f"CALL qserv_result_delete({job})")
        # processlist: bob sees his own connections only; he may not kill alice's, an admin may see it
        alice_conn = int(query(alice, "SELECT CONNECTION_ID()")[0][0])
        assert {row[1] for row in query(bob, "SHOW PROCESSLIST")} == {BOB}
        assert alice_conn in {row[0] for row in query(root, "SHOW PROCESSLIST")}
        assert errno_of(lambda: query(bob, f"KILL {alice_conn}")) == 1095
        assert query(alice, "SELECT 1")[0][0] == 1  # still alive
    finally:
        for connection in (alice, bob, root):
            connection.close()


def test_admin_may_kill_any_query(cluster: LocalCluster, users: Css) -> None:
    alice = connect(cluster, ALICE, PASSWORD, SAMPLE_DB)
    root = connect(cluster, ROOT, "root-pw")
    alice_conn = int(query(alice, "SELECT CONNECTION_ID()")[0][0])
    outcome: list[int] = []

    def run() -> None:
        outcome.append(errno_of(lambda: query(alice, SLOW)))

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: any(row[0] == alice_conn and row[4] == "Query" for row in query(root, "SHOW PROCESSLIST")),
             30, "alice's scan")
    query(root, f"KILL QUERY {alice_conn}")
    thread.join(60)
    assert outcome and outcome[0] in (1317, 1927, 3169)  # 3169: mysql-mimic's 'Query was killed'
    alice.close()
    root.close()


def test_removed_user_is_refused_at_once(cluster: LocalCluster, users: Css) -> None:
    users.add_user("carol_t", "c-pw")
    users.grant("carol_t", SAMPLE_DB)
    time.sleep(TTL)
    carol = connect(cluster, "carol_t", "c-pw", SAMPLE_DB)
    assert query(carol, "SELECT COUNT(*) FROM Object")[0][0] == 3000
    users.remove_user("carol_t")
    time.sleep(TTL)
    assert errno_of(lambda: query(carol, "SELECT COUNT(*) FROM Object")) == 1045
    carol.close()
    assert errno_of(lambda: connect(cluster, "carol_t", "c-pw")) == 1045


def test_http_api_checks_the_same_credentials(cluster: LocalCluster, users: Css, case01: str) -> None:
    base = f"http://127.0.0.1:{cluster.layout.http_port}"
    body = {"query": "SELECT COUNT(*) FROM Object", "database": SAMPLE_DB}
    assert httpx.get(f"{base}/openapi.json").status_code == 200
    anonymous = httpx.post(f"{base}/query", json=body, timeout=60)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["www-authenticate"]
    assert httpx.post(f"{base}/query", json=body, auth=(ALICE, "wrong"), timeout=60).status_code == 401
    assert httpx.post(f"{base}/query", json=body, auth=("ghost", ""), timeout=60).status_code == 401
    good = httpx.post(f"{base}/query", json=body, auth=(ALICE, PASSWORD), timeout=60)
    assert good.status_code == 200 and good.json()["rows"] == [[3000]]
    denied = httpx.post(f"{base}/query", json={"query": "SELECT COUNT(*) FROM Object", "database": case01},
                        auth=(ALICE, PASSWORD), timeout=60)
    assert denied.status_code == 403 and denied.json()["error"]["errno"] == 1044
    denied = httpx.post(f"{base}/query-async", json={"query": f"SELECT COUNT(*) FROM {case01}.Object"},
                        auth=(ALICE, PASSWORD), timeout=60)
    assert denied.status_code == 403 and denied.json()["error"]["errno"] == 1142
    job = httpx.post(f"{base}/query-async", json=body, auth=(ALICE, PASSWORD), timeout=60).json()["queryId"]
    users.grant(BOB, SAMPLE_DB)
    time.sleep(TTL)
    other = httpx.get(f"{base}/query-async/status/{job}", auth=(BOB, "bob-pw"), timeout=60)
    assert other.status_code == 403 and other.json()["error"]["errno"] == 1095
    assert httpx.get(f"{base}/query-async/result/{job}", auth=(BOB, "bob-pw"), timeout=60).status_code == 403
    own = httpx.get(f"{base}/query-async/status/{job}", auth=(ALICE, PASSWORD), timeout=60)
    assert own.status_code == 200
    assert httpx.get(f"{base}/query-async/status/{job}", auth=(ROOT, "root-pw"), timeout=60).status_code == 200
    wait_for(lambda: httpx.get(f"{base}/query-async/status/{job}", auth=(ALICE, PASSWORD), timeout=60)
             .json()["status"] == "COMPLETED", 60, "the async query")
    assert httpx.delete(f"{base}/query-async/result/{job}", auth=(BOB, "bob-pw"), timeout=60).status_code == 403
    assert httpx.delete(f"{base}/query-async/result/{job}", auth=(ALICE, PASSWORD), timeout=60).status_code == 200


def test_cli_manages_users_and_needs_an_admin(cluster: LocalCluster, users: Css, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(cluster.home)]
    assert cli.main(home + ["user", "add", "dave_t", "--new-password", "d-pw", "--grant", SAMPLE_DB]) == 0
    try:
        time.sleep(TTL)
        dave = connect(cluster, "dave_t", "d-pw")
        assert query(dave, f"SELECT COUNT(*) FROM {SAMPLE_DB}.Object")[0][0] == 3000
        dave.close()
        # a user that is not an admin cannot manage users nor ingest
        assert cli.main(home + ["user", "add", "eve_t", "--user", "dave_t", "--password", "d-pw"]) == 1
        assert cli.main(home + ["ingest", "/nonexistent", "--user", "dave_t", "--password", "d-pw"]) == 1
        assert cli.main(home + ["user", "list", "--user", "skyshard", "--password", "wrong"]) == 1
        assert "not an admin" in capsys.readouterr().err
        assert cli.main(home + ["user", "revoke", "dave_t", SAMPLE_DB]) == 0
        assert cli.main(home + ["user", "grant", "dave_t", "*"]) == 0
        assert cli.main(home + ["user", "list"]) == 0
        assert "dave_t" in capsys.readouterr().out
    finally:
        assert cli.main(home + ["user", "remove", "dave_t"]) == 0
    assert users.user("dave_t") is None
