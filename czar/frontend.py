"""The MySQL-protocol front end (mysql-mimic): an adapter, nothing more.

Owns the translation between the wire and the engine: session state (default
database, variables), what clients send on connect (answered by mysql-mimic
from :meth:`CzarSession.schema` and the session variables), result columns
and rows in wire form, and :class:`~czar.errors.SkyshardError` as MySQL error
packets.  Planning and execution live in :mod:`czar.engine`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pymysql.converters
from mysql_mimic import MysqlServer, ResultColumn, ResultSet, Session, packets
from mysql_mimic import errors as mimic_errors
from mysql_mimic.charset import CharacterSet
from mysql_mimic.constants import INFO_SCHEMA, KillKind
from mysql_mimic.errors import MysqlError
from mysql_mimic.results import _BINARY_ENCODERS
from mysql_mimic.session import mysql_function_mapping
from mysql_mimic.types import ColumnDefinition, ColumnType
from mysql_mimic.utils import aiterate
from mysql_mimic.variable_processor import variable_constants
from mysql_mimic.variables import SYSTEM_VARIABLES, GlobalVariables, SessionVariables
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError

from css import User
from czar import auth, errors, processlist, wire
from czar.asyncq import AsyncQueries
from czar.engine import ColumnInfo, Engine, QueryResult
from czar.planner import parse_select
from czar.processlist import Process, ProcessList

log = logging.getLogger("skyshard.czar.frontend")

SERVER_VERSION = "10.11.0-MariaDB-Skyshard"
# Text blocks up to this size are encoded on the event loop (0.2 ms for 1000 rows of 4 numbers,
# less than a thread hop costs); larger ones in a thread while the previous one is sent.
INLINE_ENCODE_BYTES = 64 << 10

# SQLSTATEs of the errors the czar raises (mysql-mimic looks them up by errno).
for _error in (
    errors.ParseError,
    errors.UnsupportedQuery,
    errors.UnknownDatabase,
    errors.NoDatabaseSelected,
    errors.UnknownTable,
    errors.UnknownColumn,
    errors.AmbiguousColumn,
    errors.AccessDenied,
    errors.QueryCancelled,
    auth.DatabaseAccessDenied,
    auth.BadCredentials,
    auth.NotOwner,
):
    mimic_errors.SQLSTATES.setdefault(_error.errno, _error.sqlstate.encode())  # type: ignore[call-overload]


def _variables() -> GlobalVariables:
    schema = dict(SYSTEM_VARIABLES)
    schema.update(
        {
            "version": (str, SERVER_VERSION, False),
            "version_comment": (str, "Skyshard distributed query engine", False),
            "sql_mode": (str, "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION", True),
            "default_storage_engine": (str, "InnoDB", True),
            "default_tmp_storage_engine": (str, "InnoDB", True),
            "tx_isolation": (str, "REPEATABLE-READ", True),
            "transaction_isolation": (str, "REPEATABLE-READ", True),
            "license": (str, "GPL", False),
            "lower_case_table_names": (int, 0, False),
            "max_allowed_packet": (int, 16777216, True),
            "net_write_timeout": (int, 600, True),
            "character_set_system": (str, "utf8mb3", False),
            "query_cache_size": (int, 0, True),
            "query_cache_type": (str, "OFF", True),
            "have_ssl": (str, "DISABLED", False),
            "skyshard_callback_url": (str, "", True),
        }
    )
    return GlobalVariables(schema)  # type: ignore[arg-type]


_GLOBAL_VARIABLES = _variables()


def _to_python(column: ResultColumn, value: Any) -> Any:
    """Raw text from MariaDB -> a Python value, for the binary (prepared) protocol."""
    if isinstance(value, bytes | bytearray):
        decoder = pymysql.converters.decoders.get(int(column.type))
        if decoder is not None and column.type not in (ColumnType.BLOB, ColumnType.STRING, ColumnType.VAR_STRING):
            text = value.decode("ascii", errors="replace")
            try:
                return decoder(text)
            except (ValueError, TypeError):
                return text
        if column.type in (ColumnType.NEWDECIMAL, ColumnType.DECIMAL):
            return Decimal(value.decode())
    return value


def _raw_text(column: ResultColumn, value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode(column.codec)


def _binary(column: ResultColumn, value: Any) -> bytes:
    encoder = _BINARY_ENCODERS.get(column.type)
    if encoder is None:
        return _raw_text(column, value)
    return encoder(column, _to_python(column, value))


@functools.lru_cache(maxsize=4096)
def result_column(info: ColumnInfo) -> ResultColumn:
    """mysql-mimic's column for ``info`` (made once per distinct column: a point lookup's dozen
    columns are the same from one query to the next)."""
    try:
        charset = CharacterSet(info.charset)
    except ValueError:
        charset = CharacterSet.utf8mb4
    try:
        column_type = ColumnType(info.type_code)
    except ValueError:
        column_type = ColumnType.VAR_STRING
    column = ResultColumn(
        name=info.name,
        type=column_type,
        character_set=charset,
        text_encoder=_raw_text,
        binary_encoder=_binary,
    )
    # _raw_text is mysql-mimic's default rule (bytes as they are, str encoded, else str()):
    # saying so lets its compiled row writer skip a Python call per value.
    column.use_default_text_encoder = True
    return column


def _syntax_error(sql: str, exc: SqlglotParseError | None) -> errors.ParseError:
    near = sql.strip()[:80]
    line = 1
    if exc is not None and exc.errors:
        line = exc.errors[0].get("line") or 1
    return errors.ParseError(
        "You have an error in your SQL syntax; check the manual that corresponds to your "
        f"MariaDB server version for the right syntax to use near '{near}' at line {line}"
    )


def to_mysql_error(exc: errors.SkyshardError) -> MysqlError:
    errno = getattr(exc, "errno", 1105)
    return MysqlError(exc.message, code=errno)  # type: ignore[arg-type]


_SUBMIT = re.compile(r"^\s*SUBMIT\s+(.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_CANCEL = re.compile(r"^\s*CANCEL\s+(\d+)\s*;?\s*$", re.IGNORECASE)
_DELETE = re.compile(r"^\s*CALL\s+qserv_result_delete\s*\(\s*(\d+)\s*\)\s*;?\s*$", re.IGNORECASE)
_FETCH = re.compile(r"^\s*SELECT\s+\*\s+FROM\s+qserv_result\s*\(\s*(\d+)\s*\)\s*;?\s*$", re.IGNORECASE)
_MENTIONS_RESULT = re.compile(r"\bqserv_result(_delete)?\s*\(", re.IGNORECASE)
_KILL = re.compile(r"^\s*KILL\s+(?:(QUERY|CONNECTION)\s+)?(\d+)\s*;?\s*$", re.IGNORECASE)


_STRAY_COMMA = re.compile(
    r"(\bSELECT\s*,|,\s*,|\(\s*,|,\s*\)|,\s*(FROM|WHERE|GROUP|ORDER|HAVING|LIMIT)\b|,\s*;?\s*$)", re.IGNORECASE
)
_LITERALS = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")


def _blank_literals(sql: str) -> str:
    """The statement with quoted strings and identifiers emptied (commas inside them do not count)."""
    return _LITERALS.sub("''", sql)


class CzarSession(Session):
    """One client connection."""

    def __init__(self, engine: Engine, asyncq: AsyncQueries, registry: ProcessList, users: auth.UserDirectory) -> None:
        super().__init__(SessionVariables(_GLOBAL_VARIABLES))
        self.engine = engine
        self.asyncq = asyncq
        self.registry = registry
        self.users = users
        self.database: str | None = None
        self.connection_id: int | None = None
        self.denied_database: str | None = None  # named at connect without a grant: every command fails 1044

    async def user(self) -> User:
        """The authenticated user as css says now (a removed user is refused at once)."""
        name = self.username
        found = await self.users.get(name) if name is not None else None
        if found is None:
            raise auth.BadCredentials(f"Access denied for user '{name or ''}'")
        return found

    async def _check_default_database(self) -> None:
        """A database named in the handshake / COM_CHANGE_USER must be granted too."""
        database: str | None = self.database
        if database:
            try:
                auth.check_database(await self.user(), database)
            except auth.DatabaseAccessDenied:
                self.denied_database = database
                self.database = None

    async def init(self, connection: Any) -> None:
        await super().init(connection)
        # Result sets stream to the client as they are produced (see write_text_resultset).
        connection.write_text_resultset = functools.partial(write_text_resultset, connection)
        if self.username is None:
            # mysql-mimic has already sent "access denied" but would go on serving: end the connection.
            raise ConnectionAbortedError("authentication failed")
        await self._check_default_database()
        self.connection_id = connection.connection_id
        peer = connection.stream.writer.get_extra_info("peername")
        host = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "localhost"
        self.registry.add(
            Process(
                connection_id=connection.connection_id,
                user=self.username or "anonymous",
                host=host,
                kill=connection.kill,
                db=lambda: self.database,
            )
        )

    async def reset(self) -> None:
        await super().reset()
        self.denied_database = None
        await self._check_default_database()
        process = self.registry.processes.get(self.connection_id or 0)
        if process is not None and self.username:
            process.user = self.username

    async def close(self) -> None:
        if self.connection_id is not None:
            self.registry.remove(self.connection_id)
        await super().close()

    async def schema(self) -> dict[str, dict[str, dict[str, str]]]:
        """Databases, tables and column types, as SHOW / DESCRIBE / information_schema see them."""
        snapshot = self.engine.catalog.snapshot()
        user = await self.user()
        result: dict[str, dict[str, dict[str, str]]] = {
            name: {} for name in auth.visible_databases(user, snapshot.databases)
        }
        for (database, name), table in snapshot.tables.items():
            if not user.can_read(database):
                continue
            result.setdefault(database, {})[name] = {
                column.name: column.definition.split(" ")[0] for column in table.columns
            }
        return result

    async def _show(self, expression: exp.Show) -> Any:
        """SHOW COLUMNS / SHOW CREATE TABLE answer from the table's own definition (see czar.shadow)."""
        kind = expression.name.upper()
        if kind not in ("COLUMNS", "CREATE TABLE"):
            return await super()._show(expression)
        target = expression.args.get("target")
        name = target.name if target is not None else ""
        database = expression.text("db") or (target.text("db") if isinstance(target, exp.Table) else "") or self.database
        if not database:
            raise MysqlError("No database selected", code=1046)  # type: ignore[arg-type]
        try:
            auth.check_database(await self.user(), database)
        except errors.SkyshardError as exc:
            raise to_mysql_error(exc) from exc
        snapshot = self.engine.catalog.snapshot()
        if snapshot.database(database) is None:
            raise MysqlError(f"Unknown database '{database}'", code=1049)  # type: ignore[arg-type]
        table = snapshot.table(database, name)
        if table is None:
            raise MysqlError(f"Table '{database}.{name}' doesn't exist", code=1146)  # type: ignore[arg-type]
        if kind == "CREATE TABLE":
            return await asyncio.to_thread(self.engine.shadow.show_create_table, table)
        like = expression.args.get("like")
        return await asyncio.to_thread(
            self.engine.shadow.show_columns, table, full=bool(expression.args.get("full")),
            like=like.name if like is not None else None,
        )

    async def use(self, database: str) -> None:
        try:
            auth.check_database(await self.user(), database)
        except errors.SkyshardError as exc:
            raise to_mysql_error(exc) from exc
        self.denied_database = None
        snapshot = self.engine.catalog.snapshot()
        if snapshot.database(database) is None and database.lower() != "information_schema":
            raise MysqlError(f"Unknown database '{database}'", code=1049)  # type: ignore[arg-type]
        self.database = database

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> Any:
        process = self.registry.processes.get(self.connection_id or 0)
        if process is not None:
            process.begin(sql)
        ended = True
        try:
            user = await self.user()
            if self.denied_database is not None and not re.match(r"^\s*USE\s", sql, re.IGNORECASE):
                auth.check_database(user, self.denied_database)
            result = await self._special(sql, user)
            if result is None:
                result = await self._cached(sql, attrs)  # a known statement shape: no parse here
            if result is None:
                result = await super().handle_query(sql, attrs)
            if process is not None and isinstance(result, ResultSet):
                noted = _noted(result.rows)
                rows = _until_done(result.rows, process)
                if noted is not None:
                    blocks = _until_done(noted.blocks, process) if noted.blocks is not None else None
                    _NOTED[rows] = _Noted(blocks, noted.definitions)
                result = ResultSet(rows=rows, columns=result.columns)
                ended = False
            return result
        except SqlglotParseError as exc:
            raise to_mysql_error(_syntax_error(sql, exc)) from exc
        except errors.SkyshardError as exc:
            raise to_mysql_error(exc) from exc
        finally:
            if process is not None and ended:
                process.end()

    def _parse(self, sql: str) -> list[exp.Expression]:
        if _STRAY_COMMA.search(_blank_literals(sql)):
            raise _syntax_error(sql, None)  # sqlglot skips empty list items, MariaDB refuses them
        statements = super()._parse(sql)
        for statement in statements:
            if isinstance(statement, exp.Select) and not statement.expressions:
                raise _syntax_error(sql, None)  # a bare SELECT: sqlglot accepts it, MariaDB does not
        return statements

    async def _special(self, sql: str, user: User) -> Any:
        """Qserv's commands and the query tables, recognised on the raw text (sqlglot knows none)."""
        if match := _SUBMIT.match(sql):
            text = match.group(1)
            statement = parse_select(text)
            auth.check_statement(user, statement, self.database)
            callback = str(self.variables.get("skyshard_callback_url") or "") or None
            query_id, location = await self.asyncq.submit(
                text, user=self.username or "anonymous", default_db=self.database,
                statement=statement, connection_id=self.connection_id, callback_url=callback,
            )
            return [(query_id, location)], ["jobId", "resultLocation"]
        if match := _FETCH.match(sql):
            await self._check_query_owner(user, int(match.group(1)))
            return self._result_set(await self.asyncq.fetch(int(match.group(1))))
        if match := _DELETE.match(sql):
            await self._check_query_owner(user, int(match.group(1)))
            await self.asyncq.delete(int(match.group(1)))
            return [], []
        if _MENTIONS_RESULT.search(sql):
            raise errors.UnsupportedQuery(
                "qserv_result is supported only as SELECT * FROM qserv_result(<id>) and"
                " CALL qserv_result_delete(<id>)"
            )
        if match := _CANCEL.match(sql):
            await self._check_query_owner(user, int(match.group(1)))
            connection_id = await self.asyncq.cancel(int(match.group(1)))
            if connection_id is not None:
                self.registry.kill(connection_id, KillKind.QUERY)
            return [], []
        if match := _KILL.match(sql):
            kind = KillKind.QUERY if (match.group(1) or "").upper() == "QUERY" else KillKind.CONNECTION
            target = self.registry.processes.get(int(match.group(2)))
            if target is not None:
                auth.check_owner(user, target.user, f"thread {match.group(2)}")
            self.registry.kill(int(match.group(2)), kind)
            return [], []
        show = processlist.show_processlist_sql(sql)
        owner = auth.owner_filter(user)
        rewritten = processlist.rewrite(show or sql, self.database, self.connection_id, owner=owner)
        if rewritten is not None:
            return self._result_set(await processlist.run(self.engine, self.registry, *rewritten, owner=owner))
        return None

    async def _check_query_owner(self, user: User, query_id: int) -> None:
        if not user.is_admin:
            rec = await self.asyncq.record(query_id)
            auth.check_owner(user, rec.user, f"query {query_id}")

    @staticmethod
    def _result_set(result: QueryResult) -> ResultSet:
        return result_set(result)

    async def _cached(self, sql: str, attrs: dict[str, str]) -> Any:
        """Run ``sql`` with the plan cache's plan (czar.planner.cache), skipping mysql-mimic's parse.

        Only when mysql-mimic would have passed the statement on unchanged:
        no function it replaces by a value, no information_schema.
        """
        database = self.database
        if database is not None and database.lower() in INFO_SCHEMA:
            return None
        found = self.engine.cached_plan(sql, database)
        if found is None:
            return None
        statement, plan, snapshot = found
        if _mimic_rewrites(self, statement):
            return None
        return await self.query(statement, sql, attrs, cached=(plan, snapshot))

    async def query(self, expression: exp.Expression, sql: str, attrs: dict[str, str], cached: Any = None) -> Any:
        if isinstance(expression, exp.Command):
            raise to_mysql_error(_syntax_error(sql, None))
        if not isinstance(expression, exp.Select):
            raise MysqlError(
                f"statement {expression.key.upper()} is not supported by Skyshard",
                code=1235,  # type: ignore[arg-type]
            )
        try:
            # Re-parse when the client sent several statements at once: each runs alone.
            statement = expression if sql.strip().rstrip(";").count(";") == 0 else parse_select(expression.sql(dialect="mysql"))
            text = sql if statement is expression else statement.sql(dialect="mysql")
            auth.check_statement(await self.user(), statement, self.database)
            result = await self.engine.execute(
                text,
                user=self.username or "anonymous",
                default_db=self.database,
                statement=statement,
                connection_id=self.connection_id,
                cached=cached,
                rows_as_they_arrive=True,  # the protocol can end a result with an error after some rows
            )
        except errors.SkyshardError as exc:
            raise to_mysql_error(exc) from exc
        return result_set(result)


Definitions = tuple[tuple[int, int, int], ...]  # each column's display length, flags and decimals


@dataclass(frozen=True)
class _Noted:
    """What the text protocol's writer needs of an engine result beyond mysql-mimic's ResultSet.

    ``blocks``: a pass-through result's rows as text blocks (see
    czar.engine.QueryResult.text_blocks), which the writer sends, made into
    row packets in bulk by czar.wire, instead of the rows (the binary
    protocol's reads the rows; never both).  ``definitions``: the columns as
    MariaDB described them, for the column definition packets (a JDBC
    client's precision, scale and signedness; mysql-mimic's columns have no
    place for them).
    """

    blocks: AsyncIterator[bytes] | None
    definitions: Definitions


# _Noted by the async generator of the result's rows (taken once, by the writer)
_NOTED: weakref.WeakKeyDictionary[Any, _Noted] = weakref.WeakKeyDictionary()


def result_set(result: QueryResult) -> ResultSet:
    """An engine result for mysql-mimic (its text blocks and column descriptions noted for the text protocol)."""
    if inspect.isasyncgen(result.rows):
        definitions = tuple((c.length, c.flags, c.decimals) for c in result.columns)
        _NOTED[result.rows] = _Noted(result.text_blocks, definitions)
    return ResultSet(rows=result.rows, columns=[result_column(c) for c in result.columns])


def _noted(rows: Any) -> _Noted | None:
    """What :func:`result_set` noted for ``rows`` (taken: the blocks are read once)."""
    return _NOTED.pop(rows, None) if inspect.isasyncgen(rows) else None


ROW_BATCH = 1000  # rows encoded at a time, then sent on (the client parses while the czar goes on)


@functools.lru_cache(maxsize=4096)
def _column_definition(server_charset: Any, name: str, column_type: Any, character_set: Any,
                       definition: tuple[int, int, int] | None = None) -> bytes:
    """A column definition packet's payload (the same bytes for the same column every time).
    ``definition``: display length, flags and decimals as MariaDB gave them for the result
    (a JDBC client's precision, scale and signedness); mysql-mimic's defaults without it."""
    if definition is None:
        return packets.make_column_definition_41(
            server_charset=server_charset, name=name, column_type=column_type, character_set=character_set
        )
    length, flags, decimals = definition
    return packets.make_column_definition_41(
        server_charset=server_charset, name=name, column_type=column_type, character_set=character_set,
        column_length=length, flags=ColumnDefinition(flags), decimals=decimals,
    )


async def write_text_resultset(connection: Any, results: ResultSet) -> None:
    """mysql-mimic's ``Connection.write_text_resultset``, streaming.

    The same packets, but sent as they are made instead of buffered until
    the last row: the client reads while the czar produces.  A pass-through
    result's rows are made from the spool's text a block at a time
    (:func:`czar.wire.encode_text_rows`, in a thread, the next block while
    the last one is being sent), other rows by mysql-mimic's compiled row
    writer a batch at a time.  The rows' iterator is closed in every case
    (a client gone mid-result ends the query at once).
    """
    stream = connection.stream
    columns = results.columns
    header = [packets.make_column_count(capabilities=connection.capabilities, column_count=len(columns))]
    noted = _noted(results.rows)
    for i, column in enumerate(columns):
        header.append(_column_definition(connection.server_charset, column.name, column.type, column.character_set,
                                         noted.definitions[i] if noted is not None else None))
    if not connection.deprecate_eof():
        header.append(connection.eof())
    stream.write_many(header)

    rows = results.rows
    blocks = noted.blocks if noted is not None else None
    if blocks is not None:
        count = await _write_blocks(stream, blocks, len(columns))
    elif isinstance(rows, list | tuple):
        count = len(rows)
        for i in range(0, count, ROW_BATCH * 10):
            stream.write_text_rows(rows[i : i + ROW_BATCH * 10], columns)
            await stream.drain()
    else:
        count = 0
        iterator = aiterate(rows)
        try:
            batch: list[Any] = []
            async for row in iterator:
                batch.append(row)
                if len(batch) >= ROW_BATCH:
                    count += stream.write_text_rows(batch, columns)
                    batch = []
                    await stream.drain()
            if batch:
                count += stream.write_text_rows(batch, columns)
        finally:
            await _close(rows)
    await stream.write(connection.ok_or_eof(affected_rows=count), drain=False)
    await stream.drain()


async def _write_blocks(stream: Any, blocks: AsyncIterator[bytes], columns: int) -> int:
    """Send the row packets of text ``blocks``; the number of rows."""
    await stream.drain()  # what is buffered goes first: the rows go straight to the transport
    writer = stream.writer
    count = 0

    async def encoded(seq: int) -> tuple[bytes, int] | None:
        block = await anext(blocks, None)
        if block is None:
            return None
        if block.count(b"\n") <= wire.FEW_ROWS:  # e.g. a point lookup: no thread hop, no numpy set-up
            return wire.encode_text_rows_slowly(block, columns, seq)
        if len(block) <= INLINE_ENCODE_BYTES:  # e.g. a cone search's 1000 rows: 0.2 ms, less than a hop
            return wire.encode_text_rows(block, columns, seq)
        return await asyncio.to_thread(wire.encode_text_rows, block, columns, seq)

    pending: asyncio.Future[tuple[bytes, int] | None] | None = None
    try:
        pending = asyncio.ensure_future(encoded(stream.seq.value))
        while (done := await pending) is not None:
            data, rows = done
            count += rows
            stream.seq.value = (stream.seq.value + rows) & 0xFF
            pending = asyncio.ensure_future(encoded(stream.seq.value))  # the next block meanwhile
            writer.write(data)
            await writer.drain()
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await _close(blocks)
    return count


async def _close(rows: Any) -> None:
    aclose = getattr(rows, "aclose", None)
    if aclose is not None:
        await aclose()


_SCREENED: dict[int, tuple[exp.Expression, bool]] = {}


def _mimic_rewrites(session: Session, statement: exp.Expression) -> bool:
    """Whether mysql-mimic's middlewares would change or answer ``statement`` themselves
    (functions it replaces by values, session variables, hints, information_schema)."""
    known = _SCREENED.get(id(statement))
    if known is not None and known[0] is statement:
        return known[1]
    names = set(mysql_function_mapping(session))  # type: ignore[arg-type]
    found = False
    for node in statement.walk():
        if isinstance(node, exp.Func):
            name = node.name.upper() if isinstance(node, exp.Anonymous) else node.sql_name()
            found = name in names
        elif isinstance(node, exp.Column):
            found = node.sql() in variable_constants
        elif isinstance(node, exp.Table):
            found = node.text("db").lower() in INFO_SCHEMA
        else:
            found = isinstance(node, exp.SessionParameter | exp.Parameter | exp.Hint)
        if found:
            break
    if len(_SCREENED) > 1024:
        _SCREENED.clear()
    _SCREENED[id(statement)] = (statement, found)
    return found


async def _until_done(rows: Any, process: Process) -> AsyncIterator[Any]:
    """Rows of a result; the connection counts as busy until the last one is sent.

    Closing it closes ``rows`` too: a result abandoned mid-way (client gone,
    query killed) ends in the engine at once, not when it is collected.
    """
    try:
        async for row in rows:
            yield row
    except errors.SkyshardError as exc:  # after some rows (czar.direct streams them as they arrive)
        raise to_mysql_error(exc) from exc
    finally:
        process.end()
        await _close(rows)


def make_server(
    engine: Engine, asyncq: AsyncQueries, registry: ProcessList, users: auth.UserDirectory, **serve_kwargs: Any
) -> MysqlServer:
    """The MySQL server: users authenticate with mysql_native_password against css."""
    return MysqlServer(
        session_factory=lambda: CzarSession(engine, asyncq, registry, users),
        identity_provider=auth.CssIdentityProvider(users),
        **serve_kwargs,
    )
