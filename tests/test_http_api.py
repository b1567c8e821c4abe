"""The czar's HTTP API through httpx against the real cluster, answers compared with the reference."""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pymysql
import pytest

from skyshard.cluster import LocalCluster
from tests.conftest import SAMPLE_DB
from tests.test_async import SLOW, wait_for, worker_statements

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(cluster: LocalCluster) -> httpx.Client:
    with httpx.Client(base_url=f"http://127.0.0.1:{cluster.layout.http_port}", timeout=60,
                      auth=(cluster.layout.admin_user, "")) as client:
        yield client  # type: ignore[misc]


def wait_status(api: httpx.Client, query_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = api.get(f"/query-async/status/{query_id}").json()
        return body if body["status"] != "EXECUTING" else None

    return wait_for(done, 60, f"query {query_id}")  # type: ignore[no-any-return]


def test_openapi_spec_lists_every_route(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/query", "/query-async", "/query-async/status/{id}", "/query-async/result/{id}",
            "/query-async/{id}"} <= set(spec["paths"])


def test_sync_query_matches_reference(api: httpx.Client, ref: pymysql.connections.Connection) -> None:
    sql = "SELECT objectId, ra, decl FROM Object WHERE decl < -10 ORDER BY objectId LIMIT 40"
    reply = api.post("/query", json={"query": sql, "database": SAMPLE_DB})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    with ref.cursor() as cursor:
        cursor.execute(sql)
        want = [list(row) for row in cursor.fetchall()]
    assert [c["name"] for c in body["columns"]] == ["objectId", "ra", "decl"]
    assert body["rows"] == want and len(want) == 40


def test_errors_are_json_with_mysql_errno(api: httpx.Client) -> None:
    reply = api.post("/query", json={"query": "SELECT nosuchcolumn FROM Object", "database": SAMPLE_DB})
    assert reply.status_code == 400 and reply.json()["error"]["errno"] == 1054
    assert api.post("/query", json={"nothing": 1}).status_code == 400
    assert api.get("/query-async/status/987654321").status_code == 404
    assert api.get("/no/such/route").status_code == 404


def test_async_json_csv_binary_and_delete(api: httpx.Client, ref: pymysql.connections.Connection) -> None:
    sql = "SELECT objectId, UNHEX('00FF10') AS b, ra FROM Object WHERE decl > 20 ORDER BY objectId LIMIT 25"
    reply = api.post("/query-async", json={"query": sql, "database": SAMPLE_DB})
    assert reply.status_code == 200, reply.text
    query_id = reply.json()["queryId"]
    try:
        status = wait_status(api, query_id)
        assert status["status"] == "COMPLETED" and status["kind"] == "ASYNC" and status["result_rows"] == 25
        assert status["chunks_completed"] == status["chunks_total"] > 1
        with ref.cursor() as cursor:
            cursor.execute(sql)
            want = list(cursor.fetchall())
        body = api.get(f"/query-async/result/{query_id}").json()
        assert body["columns"][1] == {"name": "b", "type": "VAR_STRING", "encoding": "base64"}
        got = [(r[0], base64.b64decode(r[1]), r[2]) for r in body["rows"]]
        assert got == want
        text = api.get(f"/query-async/result/{query_id}", params={"format": "csv"}).text
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == ["objectId", "b", "ra"]
        assert [(int(r[0]), base64.b64decode(r[1]), float(r[2])) for r in rows[1:]] == want
    finally:
        assert api.delete(f"/query-async/result/{query_id}").json() == {"deleted": query_id}
    reply = api.get(f"/query-async/result/{query_id}")
    assert reply.status_code == 409 and "deleted" in reply.json()["error"]["message"]


def test_async_failure_and_cancel(api: httpx.Client, cluster: LocalCluster) -> None:
    query_id = api.post("/query-async", json={"query": "SELECT nosuch_function(ra) FROM Object",
                                              "database": SAMPLE_DB}).json()["queryId"]
    status = wait_status(api, query_id)
    assert status["status"] == "FAILED" and "nosuch_function" in status["error"].lower()
    reply = api.get(f"/query-async/result/{query_id}")
    assert reply.status_code == 400 and status["error"] in reply.json()["error"]["message"]

    query_id = api.post("/query-async", json={"query": SLOW, "database": SAMPLE_DB}).json()["queryId"]
    wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") > 0, what="the scan to start")
    assert api.get(f"/query-async/result/{query_id}").status_code == 409
    assert api.delete(f"/query-async/{query_id}").json() == {"cancelled": query_id}
    assert api.get(f"/query-async/status/{query_id}").json()["status"] == "ABORTED"
    wait_for(lambda: worker_statements(cluster, "SLEEP(0.05)") == 0, 10, "the workers to stop")
    assert api.delete(f"/query-async/{query_id}").status_code == 409


class _Collector(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_notifications_on_every_status_change(api: httpx.Client, czar: pymysql.connections.Connection) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    _Collector.received = []
    try:
        with czar.cursor() as cursor:
            cursor.execute(f"SET skyshard_callback_url = '{url}'")
            cursor.execute("SUBMIT SELECT COUNT(*) FROM Object")
            first = int(cursor.fetchone()[0])
        second = api.post("/query-async", json={"query": "SELECT COUNT(*) FROM Source", "database": SAMPLE_DB,
                                                "callback_url": url}).json()["queryId"]
        for query_id in (first, second):
            statuses = wait_for(
                lambda q=query_id: (lambda s: s if len(s) >= 2 else None)(
                    [r["status"] for r in _Collector.received if r["query_id"] == q]), 30, "notifications")
            assert statuses == ["EXECUTING", "COMPLETED"]
            final = [r for r in _Collector.received if r["query_id"] == query_id][-1]
            assert final["result_rows"] == 1 and final["callback_url"] == url
    finally:
        server.shutdown()
        for query_id in (first, second):
            api.delete(f"/query-async/result/{query_id}")
