"""The czar's HTTP API (JSON, port 4048 by default), on a small asyncio HTTP/1.1 server.

Owns the translation between HTTP and the engine / :mod:`czar.asyncq`:
``POST /query`` (sync), ``POST /query-async``, ``GET /query-async/status/{id}``,
``GET /query-async/result/{id}`` (JSON, or CSV with ``?format=csv``),
``DELETE /query-async/result/{id}``, ``DELETE /query-async/{id}`` (cancel)
and the OpenAPI document at ``/openapi.json``.  Rows stream to the client
as they are read (one response per connection, ended by closing it), so
memory stays bounded whatever the result size.  Binary columns are
base64-encoded and marked so in the column list.  Errors are JSON
``{"error": {"errno", "sqlstate", "message"}}``.  Every route but
``/openapi.json`` needs HTTP Basic credentials of a css user (the same
users, passwords and grants as the MySQL front end, :mod:`czar.auth`).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mysql_mimic.types import ColumnType

from css import User
from czar import auth, errors
from czar.asyncq import AsyncQueries, QueryNotReady
from czar.engine import ColumnInfo, Engine, QueryResult
from czar.planner import parse_select

log = logging.getLogger("skyshard.czar.http")

MAX_BODY = 1 << 20
BINARY_CHARSET = 63
_INTEGER = {ColumnType.TINY, ColumnType.SHORT, ColumnType.LONG, ColumnType.LONGLONG, ColumnType.INT24, ColumnType.YEAR}
_FLOAT = {ColumnType.FLOAT, ColumnType.DOUBLE}
_TEXT_TYPES = {
    ColumnType.STRING, ColumnType.VAR_STRING, ColumnType.VARCHAR, ColumnType.BLOB, ColumnType.TINY_BLOB,
    ColumnType.MEDIUM_BLOB, ColumnType.LONG_BLOB, ColumnType.BIT, ColumnType.GEOMETRY,
}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            413: "Payload Too Large", 500: "Internal Server Error"}


class HttpError(Exception):
    def __init__(self, status: int, message: str, errno: int = 1105, sqlstate: str = "HY000") -> None:
        super().__init__(message)
        self.status, self.message, self.errno, self.sqlstate = status, message, errno, sqlstate


def is_binary(column: ColumnInfo) -> bool:
    return column.charset == BINARY_CHARSET and column.type_code in {int(t) for t in _TEXT_TYPES}


def column_json(column: ColumnInfo) -> dict[str, Any]:
    try:
        type_name = ColumnType(column.type_code).name
    except ValueError:
        type_name = str(column.type_code)
    out: dict[str, Any] = {"name": column.name, "type": type_name}
    if is_binary(column):
        out["encoding"] = "base64"
    return out


def value_json(column: ColumnInfo, value: Any) -> Any:
    """Raw MySQL text value -> JSON: integers and floats as numbers, DECIMAL as text, binary as base64."""
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray):
        return value
    if is_binary(column):
        return base64.b64encode(value).decode("ascii")
    text = value.decode("utf-8", errors="replace")
    if column.type_code in {int(t) for t in _INTEGER}:
        return int(text)
    if column.type_code in {int(t) for t in _FLOAT}:
        return float(text)
    return text


def openapi() -> dict[str, Any]:
    query_body = {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["query"],
            "properties": {
                "query": {"type": "string", "description": "one SELECT statement"},
                "database": {"type": "string", "description": "default database"},
                "callback_url": {"type": "string", "description": "POSTed the status record on each change (async)"},
            },
        }}},
    }
    id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    error = {"description": "error: {error: {errno, sqlstate, message}}"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Skyshard czar HTTP API", "version": "1.0"},
        "paths": {
            "/query": {"post": {"summary": "Run a query and return its rows", "requestBody": query_body,
                                "responses": {"200": {"description": "{queryId, columns, rows}"}, "400": error}}},
            "/query-async": {"post": {"summary": "Submit a query; returns at once",
                                      "requestBody": query_body,
                                      "responses": {"200": {"description": "{queryId, resultLocation, status}"},
                                                    "400": error}}},
            "/query-async/status/{id}": {"get": {"summary": "Status, progress and error of a query",
                                                 "parameters": id_param,
                                                 "responses": {"200": {"description": "the query record"},
                                                               "404": error}}},
            "/query-async/result/{id}": {
                "get": {"summary": "Rows of a completed async query (JSON, or CSV with ?format=csv)",
                        "parameters": id_param + [{"name": "format", "in": "query",
                                                   "schema": {"type": "string", "enum": ["json", "csv"]}}],
                        "responses": {"200": {"description": "{queryId, columns, rows} or CSV"},
                                      "404": error, "409": error, "400": error}},
                "delete": {"summary": "Delete the kept result", "parameters": id_param,
                           "responses": {"200": {"description": "{deleted}"}, "404": error, "409": error}},
            },
            "/query-async/{id}": {"delete": {"summary": "Cancel a running async query", "parameters": id_param,
                                             "responses": {"200": {"description": "{cancelled}"},
                                                           "404": error, "409": error}}},
        },
    }


class HttpApi:
    def __init__(self, engine: Engine, asyncq: AsyncQueries, users: auth.UserDirectory) -> None:
        self.engine = engine
        self.asyncq = asyncq
        self.users = users

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, path, query, body, user = await self._read_request(reader)
                await self._route(writer, method, path, query, body, user)
            except HttpError as exc:
                await self._send_error(writer, exc)
            except errors.SkyshardError as exc:
                await self._send_error(writer, _http_error(exc))
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except Exception as exc:
                log.exception("HTTP request failed")
                await self._send_error(writer, HttpError(500, f"internal error: {exc}"))
        finally:
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, str, dict[str, list[str]], Any, tuple[str, str] | None]:
        line = (await reader.readline()).decode("latin-1").strip()
        parts = line.split(" ")
        if len(parts) != 3:
            raise HttpError(400, "malformed request line")
        headers: dict[str, str] = {}
        while True:
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            raise HttpError(413, "request body too large")
        raw = await reader.readexactly(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise HttpError(400, f"the body is not JSON: {exc}") from exc
        credentials = auth.basic_credentials(headers.get("authorization", ""))
        target = urlsplit(parts[1])
        return parts[0].upper(), target.path.rstrip("/") or "/", parse_qs(target.query), body, credentials

    async def _authenticate(self, credentials: tuple[str, str] | None) -> User:
        if credentials is None:
            raise HttpError(401, "HTTP Basic credentials of a Skyshard user are required", 1045, "28000")
        return await self.users.authenticate(*credentials)

    async def _route(self, writer: asyncio.StreamWriter, method: str, path: str,
                     query: dict[str, list[str]], body: Any, credentials: tuple[str, str] | None) -> None:
        segments = [s for s in path.split("/") if s]
        if segments == ["openapi.json"] and method == "GET":
            return await self._send_json(writer, 200, openapi())
        account = await self._authenticate(credentials)
        user = account.name
        if segments == ["query"] and method == "POST":
            sql, database, _ = _query_fields(body)
            statement = parse_select(sql)
            if database:
                auth.check_database(account, database)
            auth.check_statement(account, statement, database)
            result = await self.engine.execute(sql, user=user, default_db=database, statement=statement)
            return await self._send_rows(writer, result, "json")
        if segments == ["query-async"] and method == "POST":
            sql, database, callback = _query_fields(body)
            statement = parse_select(sql)
            if database:
                auth.check_database(account, database)
            auth.check_statement(account, statement, database)
            query_id, location = await self.asyncq.submit(
                sql, user=user, default_db=database, statement=statement, callback_url=callback
            )
            return await self._send_json(writer, 200, {"queryId": query_id, "resultLocation": location,
                                                       "status": "EXECUTING"})
        if len(segments) == 3 and segments[0] == "query-async" and segments[1] in ("status", "result"):
            query_id = _query_id(segments[2])
            await self._check_owner(account, query_id)
            if segments[1] == "status" and method == "GET":
                rec = await self.asyncq.record(query_id)
                return await self._send_json(writer, 200, rec.as_json())
            if segments[1] == "result" and method == "GET":
                fmt = (query.get("format") or ["json"])[0].lower()
                if fmt not in ("json", "csv"):
                    raise HttpError(400, f"unknown format {fmt!r} (json or csv)")
                result = await self.asyncq.fetch(query_id)
                return await self._send_rows(writer, result, fmt)
            if segments[1] == "result" and method == "DELETE":
                await self.asyncq.delete(query_id)
                return await self._send_json(writer, 200, {"deleted": query_id})
        if len(segments) == 2 and segments[0] == "query-async" and method == "DELETE":
            query_id = _query_id(segments[1])
            await self._check_owner(account, query_id)
            if query_id not in self.asyncq.tasks:
                rec = await self.asyncq.record(query_id)
                raise HttpError(409, f"query {query_id} is not a running async query (status {rec.status.value})")
            await self.asyncq.cancel(query_id)
            return await self._send_json(writer, 200, {"cancelled": query_id})
        raise HttpError(404, f"no route for {method} {path}")

    async def _check_owner(self, account: User, query_id: int) -> None:
        if not account.is_admin:
            rec = await self.asyncq.record(query_id)
            auth.check_owner(account, rec.user, f"query {query_id}")

    # -- responses ------------------------------------------------------------
    async def _send_head(self, writer: asyncio.StreamWriter, status: int, content_type: str,
                         length: int | None) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"Content-Type: {content_type}",
                "Connection: close"]
        if status == 401:
            head.append('WWW-Authenticate: Basic realm="skyshard"')
        if length is not None:
            head.append(f"Content-Length: {length}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        await self._send_head(writer, status, "application/json", len(data))
        writer.write(data)
        await writer.drain()

    async def _send_error(self, writer: asyncio.StreamWriter, exc: HttpError) -> None:
        await self._send_json(writer, exc.status, {"error": {"errno": exc.errno, "sqlstate": exc.sqlstate,
                                                             "message": exc.message}})

    async def _send_rows(self, writer: asyncio.StreamWriter, result: QueryResult, fmt: str) -> None:
        """Stream the rows; the body ends when the connection closes."""
        columns = result.columns
        rows: AsyncIterator[tuple[Any, ...]] = result.rows
        try:
            if fmt == "csv":
                await self._send_head(writer, 200, "text/csv; charset=utf-8", None)
                buffer = io.StringIO()
                out = csv.writer(buffer, lineterminator="\r\n")
                out.writerow([c.name for c in columns])
                async for row in rows:
                    out.writerow(["" if v is None else value_json(c, v) for c, v in zip(columns, row, strict=True)])
                    if buffer.tell() > 65536:
                        writer.write(buffer.getvalue().encode())
                        buffer.seek(0)
                        buffer.truncate()
                        await writer.drain()
                writer.write(buffer.getvalue().encode())
            else:
                await self._send_head(writer, 200, "application/json", None)
                head = {"queryId": result.query_id, "columns": [column_json(c) for c in columns]}
                writer.write(json.dumps(head)[:-1].encode() + b', "rows": [')
                first = True
                async for row in rows:
                    values = [value_json(c, v) for c, v in zip(columns, row, strict=True)]
                    writer.write((b"" if first else b", ") + json.dumps(values).encode())
                    first = False
                    if writer.transport.get_write_buffer_size() > 65536:
                        await writer.drain()
                writer.write(b"]}")
            await writer.drain()
        finally:
            await rows.aclose()  # type: ignore[attr-defined]


def _query_fields(body: Any) -> tuple[str, str | None, str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise HttpError(400, 'the body must be a JSON object with a "query" string')
    database = body.get("database")
    callback = body.get("callback_url")
    return body["query"], database if isinstance(database, str) else None, callback if isinstance(callback, str) else None


def _query_id(text: str) -> int:
    if not text.isdigit():
        raise HttpError(404, f"not a query id: {text!r}")
    return int(text)


def _http_error(exc: errors.SkyshardError) -> HttpError:
    if isinstance(exc, errors.UnknownQuery):
        status = 404
    elif isinstance(exc, auth.BadCredentials):
        status = 401
    elif isinstance(exc, auth.DatabaseAccessDenied | auth.NotOwner | errors.AccessDenied):
        status = 403
    elif isinstance(exc, QueryNotReady):
        status = 409
    else:
        status = 400
    return HttpError(status, exc.message, getattr(exc, "errno", 1105), getattr(exc, "sqlstate", "HY000"))


async def start_http_api(
    engine: Engine, asyncq: AsyncQueries, users: auth.UserDirectory, host: str, port: int
) -> asyncio.Server:
    api = HttpApi(engine, asyncq, users)
    return await asyncio.start_server(api.handle, host, port)
