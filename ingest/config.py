"""Qserv's ingest configuration, read as Qserv writes it, so Qserv-ready catalogs load as they are.

This module owns the catalog *description*: the database's partitioning
parameters (``database.json``), each table's role and keys (``<Table>.json``
as sent to Qserv's ingest REST API, version 12), its ``CREATE TABLE``
statement (``<Table>.schema``, a mysqldump ``.sql``), the partitioner's
configuration (``partition/*.json``, used to fill in and cross-check) and the
``LOAD DATA`` text format of its data files.  It reads nothing but
configuration; :mod:`ingest.loaddata` reads the data.

Layouts understood by :func:`load_case_directory`:

* Qserv integration-test cases (``data/case01``)::

      data/ingest/database.json, data/ingest/<Table>.json  (metadata.json is skipped)
      data/schema/<Table>.schema
      data/partition/<Table>.json, data/partition/common.json
      data/<Table>.tsv[.gz] | .csv[.gz] | .txt[.gz], or data/<Table>/*

* The ingest guide's example (``test101``)::

      database_<db>.json, table_<Table>.json, data/<Table>.csv, data/<Table>/*.txt

Table kinds follow Qserv: ``replicated`` when ``is_partitioned`` is 0;
``ref-match`` when ``director_table2`` is set; ``director`` when
``director_table`` is empty (or names the table itself); ``child`` otherwise.

``create_sql`` keeps the schema file's statement as written (MyISAM, latin1,
``AUTO_INCREMENT=``; all valid on MariaDB).  Old catalogs use zero dates
(``DEFAULT '0000-00-00 00:00:00'``): MariaDB's default ``sql_mode`` accepts
them, modes with ``NO_ZERO_DATE`` do not (see :data:`PERMISSIVE_SQL_MODE`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import sqlglot
from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from ingest.loaddata import TextFormat

__all__ = [
    "CHUNK_COLUMNS",
    "PERMISSIVE_SQL_MODE",
    "ConfigError",
    "DatabaseConfig",
    "PartitionConfig",
    "TableConfig",
    "TableKind",
    "load_case_directory",
    "load_database_config",
    "load_partition_config",
    "load_table_config",
    "parse_create_table",
    "quote_identifier",
    "rewrite_create_table",
]

TableKind = Literal["director", "child", "ref-match", "replicated"]

#: The columns Qserv adds to partitioned tables, with Qserv's types.
CHUNK_COLUMNS: tuple[tuple[str, str], ...] = (("chunkId", "int(11) NOT NULL"),
                                              ("subChunkId", "int(11) NOT NULL"))
#: sql_mode under which the old schemas (zero dates) create and load.
PERMISSIVE_SQL_MODE = "NO_ENGINE_SUBSTITUTION"

_DATA_SUFFIXES = (".tsv", ".csv", ".txt")
_KIND_ORDER = {"director": 0, "child": 1, "ref-match": 2, "replicated": 3}


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or inconsistent; names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class DatabaseConfig:
    """A database's partitioning: ``num_stripes`` x ``num_sub_stripes``, ``overlap`` in degrees."""

    name: str
    num_stripes: int
    num_sub_stripes: int
    overlap: float
    source_path: str | None = None


@dataclass(frozen=True)
class PartitionConfig:
    """What the Qserv partitioner's per-table json says (``partition/<Table>.json``)."""

    table: str
    director_table: str | None
    director_key: str | None
    longitude_key: str | None
    latitude_key: str | None
    overlap: float | None
    fields: list[str] | None  # the input columns, in order (``in.csv.field``)
    source_path: str | None = None


@dataclass(frozen=True)
class TableConfig:
    """One table: its role and keys in Qserv, its columns and how to create and load it.

    ``columns`` are the columns of the table as its data files hold them, in
    order, with their SQL definitions (from the ``.schema`` file when there
    is one, else from the json).  ``qserv_columns`` is the json's ``schema``
    verbatim: for partitioned tables it ends with ``chunkId, subChunkId``,
    which raw input files (unlike pre-partitioned ones) do not have.
    ``create_sql`` is the ``CREATE TABLE`` statement (no trailing ``;``).
    """

    database: str
    name: str
    kind: TableKind
    director_table: str | None
    director_key: str | None
    director_table2: str | None
    director_key2: str | None
    longitude_key: str | None
    latitude_key: str | None
    flag: str | None
    ang_sep: float | None
    columns: list[tuple[str, str]]
    create_sql: str
    text_format: TextFormat = field(default_factory=TextFormat)
    qserv_columns: list[tuple[str, str]] = field(default_factory=list)
    source_path: str | None = None
    schema_path: str | None = None

    @property
    def is_partitioned(self) -> bool:
        return self.kind != "replicated"

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def field_count(self) -> int:
        """Fields per row in the data files."""
        return len(self.columns)

    @property
    def has_chunk_columns(self) -> bool:
        """Whether the data files already carry ``chunkId, subChunkId`` as their last columns."""
        names = [n.lower() for n in self.column_names[-2:]]
        return names == ["chunkid", "subchunkid"]

    def column_index(self, name: str) -> int:
        """0-based position of a column (case-insensitive, as MariaDB compares names)."""
        lowered = name.lower()
        for i, (col, _) in enumerate(self.columns):
            if col.lower() == lowered:
                return i
        raise KeyError(f"table {self.name} has no column {name!r}")

    def create_table_sql(self, table_name: str | None = None, *, add_chunk_columns: bool = False,
                         if_not_exists: bool = False) -> str:
        """``create_sql`` for another table name (e.g. a chunk table ``Object_1234``),
        optionally with ``chunkId``/``subChunkId`` appended (when not already there)."""
        return rewrite_create_table(
            self.create_sql, table_name=table_name,
            extra_columns=CHUNK_COLUMNS if add_chunk_columns and not self.has_chunk_columns else (),
            if_not_exists=if_not_exists)


# ---------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(path, "expected a JSON object at the top level")
    return value


def _required(doc: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in doc:
        raise ConfigError(path, f"missing key {key!r}")
    return doc[key]


def _str(doc: Mapping[str, Any], key: str, path: Path, *, required: bool = False) -> str | None:
    """A string value; empty strings and absent keys are None (Qserv's "not set")."""
    value = _required(doc, key, path) if required else doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(path, f"{key!r} must be a string, not {json.dumps(value)}")
    value = value.strip()
    if required and not value:
        raise ConfigError(path, f"{key!r} must not be empty")
    return value or None


def _int(doc: Mapping[str, Any], key: str, path: Path, minimum: int) -> int:
    value = _required(doc, key, path)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"{key!r} must be an integer, not {json.dumps(value)}")
    if value < minimum:
        raise ConfigError(path, f"{key!r} must be at least {minimum}, not {value}")
    return value


def _float(value: Any, key: str, path: Path) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"{key!r} must be a number, not {json.dumps(value)}")
    return float(value)


def _flag(doc: Mapping[str, Any], key: str, path: Path) -> bool:
    value = _required(doc, key, path)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise ConfigError(path, f"{key!r} must be 0 or 1, not {json.dumps(value)}")


# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------


def load_database_config(path: str | Path) -> DatabaseConfig:
    """Read Qserv's ``database.json`` (``database``, ``num_stripes``, ``num_sub_stripes``,
    ``overlap``), or the partitioner's ``common.json`` (``dirDb``, ``part.num-stripes`` ...)."""
    path = Path(path)
    doc = _read_json(path)
    if "num_stripes" not in doc and isinstance(doc.get("part"), dict):
        part = doc["part"]
        name = _str(doc, "dirDb", path, required=True)
        stripes = _int(part, "num-stripes", path, 1)
        sub = _int(part, "num-sub-stripes", path, 1)
        overlap = _float(_required(part, "default-overlap", path), "default-overlap", path)
    else:
        name = _str(doc, "database", path, required=True)
        stripes = _int(doc, "num_stripes", path, 1)
        sub = _int(doc, "num_sub_stripes", path, 1)
        overlap = _float(_required(doc, "overlap", path), "overlap", path)
    if not 0.0 <= overlap < 90.0:
        raise ConfigError(path, f"overlap must be in [0, 90) degrees, not {overlap}")
    assert name is not None
    return DatabaseConfig(name=name, num_stripes=stripes, num_sub_stripes=sub, overlap=overlap,
                          source_path=str(path))


# ---------------------------------------------------------------------------
# CREATE TABLE
# ---------------------------------------------------------------------------

_CONSTRAINT_WORDS = {
    "PRIMARY", "PRIMARY KEY", "KEY", "INDEX", "UNIQUE", "UNIQUE KEY", "UNIQUE INDEX",
    "CONSTRAINT", "FOREIGN", "FOREIGN KEY", "FULLTEXT", "SPATIAL", "CHECK", "PERIOD",
}


@dataclass(frozen=True)
class _CreateTableText:
    sql: str  # the statement, without a trailing semicolon
    name_start: int  # span of the table name (with any database and quoting)
    name_end: int
    body_close: int  # offset of the ')' closing the definition list
    columns_end: int  # offset just after the last column definition
    columns: list[tuple[str, str]]


def _tokenize(sql: str) -> list[Token]:
    return list(MySQL().tokenize(sql))


def _statement_span(sql: str, tokens: list[Token]) -> tuple[int, int]:
    """(char start, char end) of the first CREATE TABLE statement."""
    for i, tok in enumerate(tokens):
        if tok.token_type != TokenType.CREATE:
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].text.upper() in ("TEMPORARY", "OR", "REPLACE"):
            j += 1
        if j < len(tokens) and tokens[j].token_type == TokenType.TABLE:
            end = len(sql)
            for k in range(j, len(tokens)):
                if tokens[k].token_type == TokenType.SEMICOLON:
                    end = tokens[k].start
                    break
            return tok.start, end
    raise ValueError("no CREATE TABLE statement")


def parse_create_table(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The first ``CREATE TABLE`` statement in ``text`` (comments and other statements of a
    mysqldump file dropped, no trailing ``;``) and its columns ``[(name, definition)]``.

    The definition is the original text after the column name (``int(11) NOT NULL``).
    Column names are checked against sqlglot's MySQL parse of the statement.
    Raises ValueError when there is no parsable CREATE TABLE.
    """
    parsed = _create_table_text(text)
    return parsed.sql, parsed.columns


def _create_table_text(text: str) -> _CreateTableText:
    try:
        tokens = _tokenize(text)
        start, end = _statement_span(text, tokens)
    except TokenError as exc:
        raise ValueError(f"cannot tokenize: {exc}") from None
    sql = text[start:end].strip()
    tokens = _tokenize(sql)
    try:
        tree = sqlglot.parse_one(sql, read="mysql")
    except ParseError as exc:
        raise ValueError(f"cannot parse CREATE TABLE: {exc}") from None
    if not isinstance(tree, exp.Create) or (tree.args.get("kind") or "").upper() != "TABLE":
        raise ValueError("not a CREATE TABLE statement")
    schema = tree.this
    if not isinstance(schema, exp.Schema):
        raise ValueError("CREATE TABLE without a column list (CREATE ... SELECT/LIKE?)")
    glot_names = [c.name for c in schema.expressions if isinstance(c, exp.ColumnDef)]
    # Locate the name and the definition list in the original text.
    i = 0
    while tokens[i].token_type != TokenType.TABLE:
        i += 1
    i += 1
    if (i + 2 < len(tokens) and tokens[i].text.upper() == "IF"
            and tokens[i + 2].text.upper() == "EXISTS"):
        i += 3
    name_start = tokens[i].start
    name_end = tokens[i].end + 1
    i += 1
    while i < len(tokens) and tokens[i].token_type == TokenType.DOT:
        name_end = tokens[i + 1].end + 1
        i += 2
    if i >= len(tokens) or tokens[i].token_type != TokenType.L_PAREN:
        raise ValueError("expected '(' after the table name")
    depth = 0
    item_tokens: list[list[Token]] = [[]]
    body_close = -1
    for tok in tokens[i:]:
        if tok.token_type == TokenType.L_PAREN:
            depth += 1
            if depth == 1:
                continue
        elif tok.token_type == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                body_close = tok.start
                break
        elif tok.token_type == TokenType.COMMA and depth == 1:
            item_tokens.append([])
            continue
        item_tokens[-1].append(tok)
    if body_close < 0:
        raise ValueError("unbalanced parentheses in CREATE TABLE")
    columns: list[tuple[str, str]] = []
    columns_end = body_close
    for item in item_tokens:
        if not item:
            continue
        head = item[0]
        if head.token_type != TokenType.IDENTIFIER and head.text.upper() in _CONSTRAINT_WORDS:
            continue
        definition = sql[head.end + 1:item[-1].end + 1].strip() if len(item) > 1 else ""
        columns.append((head.text, definition))
        columns_end = item[-1].end + 1
    if [c for c, _ in columns] != glot_names:
        raise ValueError(f"column list {[c for c, _ in columns]} does not match the parse "
                         f"{glot_names}")
    return _CreateTableText(sql=sql, name_start=name_start, name_end=name_end,
                            body_close=body_close, columns_end=columns_end, columns=columns)


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def rewrite_create_table(sql: str, *, table_name: str | None = None,
                         extra_columns: tuple[tuple[str, str], ...] = (),
                         if_not_exists: bool = False) -> str:
    """``sql`` with another table name, extra trailing columns and/or ``IF NOT EXISTS``."""
    parsed = _create_table_text(sql)
    out = parsed.sql
    if extra_columns:  # right after the last column, before any key definitions
        added = "".join(f",\n  {quote_identifier(n)} {d}" for n, d in extra_columns)
        out = out[:parsed.columns_end] + added + out[parsed.columns_end:]
    name_sql = out[parsed.name_start:parsed.name_end]
    if table_name is not None:
        name_sql = quote_identifier(table_name)
    head = out[:parsed.name_start]
    if if_not_exists and "EXISTS" not in head.upper():
        head = head.rstrip() + " IF NOT EXISTS "
    return head + name_sql + out[parsed.name_end:]


def _create_from_columns(name: str, columns: list[tuple[str, str]], charset: str | None,
                         collation: str | None) -> str:
    body = ",\n".join(f"  {quote_identifier(n)} {d}" for n, d in columns)
    options = " ENGINE=MyISAM"
    if charset:
        options += f" DEFAULT CHARSET={charset}"
    if collation:
        options += f" COLLATE={collation}"
    return f"CREATE TABLE {quote_identifier(name)} (\n{body}\n){options}"


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def _json_columns(doc: Mapping[str, Any], path: Path) -> list[tuple[str, str]]:
    schema = _required(doc, "schema", path)
    if not isinstance(schema, list) or not schema:
        raise ConfigError(path, "'schema' must be a non-empty list of {name, type}")
    columns: list[tuple[str, str]] = []
    for i, entry in enumerate(schema):
        if not isinstance(entry, dict):
            raise ConfigError(path, f"schema[{i}] must be an object with 'name' and 'type'")
        name = entry.get("name")
        sql_type = entry.get("type")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(path, f"schema[{i}] has no 'name'")
        if not isinstance(sql_type, str) or not sql_type.strip():
            raise ConfigError(path, f"schema[{i}] ({name}) has no 'type'")
        columns.append((name.strip(), sql_type.strip()))
    lowered = [n.lower() for n, _ in columns]
    dupes = sorted({n for n in lowered if lowered.count(n) > 1})
    if dupes:
        raise ConfigError(path, f"duplicate columns in 'schema': {dupes}")
    return columns


def _without_chunk_columns(columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    chunk_names = {n.lower() for n, _ in CHUNK_COLUMNS}
    return [c for c in columns if c[0].lower() not in chunk_names]


def _text_format(doc: Mapping[str, Any], path: Path) -> TextFormat:
    keys = ("fields_terminated_by", "fields_enclosed_by", "fields_escaped_by",
            "lines_terminated_by")
    values: dict[str, str | None] = {}
    for key in keys:
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(path, f"{key!r} must be a string")
        # Qserv treats an empty value as "use the default" for all but ENCLOSED BY.
        values[key] = value if value or key == "fields_enclosed_by" else None
    try:
        return TextFormat.from_mysql_literals(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(path, f"bad text format: {exc}") from None


def _kind(doc: Mapping[str, Any], name: str, path: Path) -> TableKind:
    if not _flag(doc, "is_partitioned", path):
        return "replicated"
    if _str(doc, "director_table2", path):
        return "ref-match"
    director = _str(doc, "director_table", path)
    if director is None or director.split(".")[-1] == name:
        return "director"
    return "child"


def load_table_config(path: str | Path, schema_dir: str | Path | None = None) -> TableConfig:
    """Read one table's Qserv ingest json; take columns and CREATE TABLE from
    ``<schema_dir>/<Table>.schema`` when that file exists, else from the json."""
    path = Path(path)
    doc = _read_json(path)
    database = _str(doc, "database", path, required=True)
    name = _str(doc, "table", path, required=True)
    assert database is not None and name is not None
    qserv_columns = _json_columns(doc, path)
    kind = _kind(doc, name, path)
    text_format = _text_format(doc, path)

    schema_path: Path | None = None
    if schema_dir is not None:
        candidate = Path(schema_dir) / f"{name}.schema"
        if candidate.is_file():
            schema_path = candidate
    if schema_path is not None:
        try:
            raw = schema_path.read_bytes()
            text = raw.decode("utf-8") if _is_utf8(raw) else raw.decode("latin-1")
            create_sql, columns = parse_create_table(text)
        except ValueError as exc:
            raise ConfigError(schema_path, str(exc)) from None
        expected = _without_chunk_columns(qserv_columns)
        got = _without_chunk_columns(columns)
        if [n.lower() for n, _ in expected] != [n.lower() for n, _ in got]:
            raise ConfigError(path, f"'schema' columns {[n for n, _ in expected]} differ from "
                                    f"{schema_path.name} columns {[n for n, _ in got]}")
    else:
        columns = list(qserv_columns)
        charset = _str(doc, "charset_name", path)
        collation = _str(doc, "collation_name", path)
        create_sql = _create_from_columns(name, columns, charset, collation)
        try:
            parse_create_table(create_sql)
        except ValueError as exc:
            raise ConfigError(path, f"'schema' types do not make a valid CREATE TABLE: {exc}"
                              ) from None

    ang_sep_raw = doc.get("ang_sep")
    ang_sep = None if ang_sep_raw in (None, "") else _float(ang_sep_raw, "ang_sep", path)
    partitioned = kind != "replicated"
    config = TableConfig(
        database=database,
        name=name,
        kind=kind,
        director_table=_str(doc, "director_table", path) if kind in ("child", "ref-match")
        else None,
        director_key=_str(doc, "director_key", path) if partitioned else None,
        director_table2=_str(doc, "director_table2", path) if kind == "ref-match" else None,
        director_key2=_str(doc, "director_key2", path) if kind == "ref-match" else None,
        longitude_key=_str(doc, "longitude_key", path) if partitioned else None,
        latitude_key=_str(doc, "latitude_key", path) if partitioned else None,
        flag=_str(doc, "flag", path) if kind == "ref-match" else None,
        ang_sep=ang_sep if kind == "ref-match" else None,
        columns=columns,
        create_sql=create_sql,
        text_format=text_format,
        qserv_columns=qserv_columns,
        source_path=str(path),
        schema_path=str(schema_path) if schema_path else None,
    )
    _check_keys(config, path, require_position=False)
    return config


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_keys(config: TableConfig, path: Path, *, require_position: bool) -> None:
    """The keys a table of its kind needs are present and name real columns."""
    needed: dict[str, str | None] = {}
    if config.kind in ("director", "child", "ref-match"):
        needed["director_key"] = config.director_key
    if config.kind == "director" and require_position:
        needed["longitude_key"] = config.longitude_key
        needed["latitude_key"] = config.latitude_key
    if config.kind == "ref-match":
        needed["director_table"] = config.director_table
        needed["director_key2"] = config.director_key2
        needed["flag"] = config.flag
        if config.ang_sep is None or config.ang_sep <= 0:
            raise ConfigError(path, "a ref-match table needs 'ang_sep' > 0")
    for key, value in needed.items():
        if value is None:
            raise ConfigError(path, f"a {config.kind} table needs {key!r}")
    names = {n.lower() for n in config.column_names} | {n.lower() for n, _ in
                                                       config.qserv_columns}
    for key in ("director_key", "director_key2", "longitude_key", "latitude_key", "flag"):
        value = cast(str | None, getattr(config, key))
        if value is not None and value.lower() not in names:
            raise ConfigError(path, f"{key} {value!r} is not a column of {config.name}")


# ---------------------------------------------------------------------------
# Partitioner configuration
# ---------------------------------------------------------------------------


def _pair(value: Any, path: Path, key: str) -> tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise ConfigError(path, f"{key!r} must be 'lon, lat'")
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) != 2:
        raise ConfigError(path, f"{key!r} must name two columns 'lon, lat', not {value!r}")
    return parts[0], parts[1]


def load_partition_config(path: str | Path, table: str | None = None) -> PartitionConfig:
    """Read a Qserv partitioner json (``part.pos``, ``dirTable``, ``dirColName``, ``in.csv.field``)."""
    path = Path(path)
    doc = _read_json(path)
    part = doc.get("part") if isinstance(doc.get("part"), dict) else {}
    assert isinstance(part, dict)
    pos = _pair(part.get("pos"), path, "part.pos")
    overlap_raw = part.get("overlap")
    overlap = None if overlap_raw is None else _float(overlap_raw, "part.overlap", path)
    fields: list[str] | None = None
    csv = doc.get("in", {}).get("csv", {}) if isinstance(doc.get("in"), dict) else {}
    if isinstance(csv, dict) and "field" in csv:
        raw_fields = csv["field"]
        if not isinstance(raw_fields, list) or not all(isinstance(f, str) for f in raw_fields):
            raise ConfigError(path, "'in.csv.field' must be a list of column names")
        fields = [f.strip() for f in raw_fields]
    return PartitionConfig(
        table=table or path.stem,
        director_table=_str(doc, "dirTable", path),
        director_key=_str(doc, "dirColName", path),
        longitude_key=pos[0] if pos else None,
        latitude_key=pos[1] if pos else None,
        overlap=overlap,
        fields=fields,
        source_path=str(path),
    )


def _merge_partition(config: TableConfig, part: PartitionConfig) -> TableConfig:
    """Fill keys the ingest json left out from the partitioner's json; refuse contradictions."""
    path = Path(config.source_path or config.name)
    ppath = part.source_path or part.table
    updates: dict[str, Any] = {}
    for key, value in (("longitude_key", part.longitude_key), ("latitude_key", part.latitude_key),
                       ("director_key", part.director_key)):
        if value is None:
            continue
        mine = getattr(config, key)
        if mine is None:
            updates[key] = value
        elif mine.lower() != value.lower():
            raise ConfigError(path, f"{key} is {mine!r} but {ppath} says {value!r}")
    if part.fields is not None:
        mine_names = [n.lower() for n, _ in _without_chunk_columns(config.columns)]
        if mine_names != [f.lower() for f in part.fields]:
            raise ConfigError(path, f"columns differ from {ppath}'s in.csv.field")
    return dataclasses.replace(config, **updates) if updates else config


# ---------------------------------------------------------------------------
# Case directories
# ---------------------------------------------------------------------------


def _data_files(data_dir: Path, table: str) -> list[Path]:
    files: list[Path] = []
    if not data_dir.is_dir():
        return files
    for entry in sorted(data_dir.iterdir()):
        base = entry.name[:-3] if entry.name.endswith(".gz") else entry.name
        if entry.is_file():
            stem, dot, suffix = base.rpartition(".")
            if dot and stem == table and f".{suffix}" in _DATA_SUFFIXES:
                files.append(entry)
        elif entry.is_dir() and entry.name == table:
            for sub in sorted(entry.iterdir()):
                sub_base = sub.name[:-3] if sub.name.endswith(".gz") else sub.name
                if sub.is_file() and sub_base.endswith(_DATA_SUFFIXES):
                    files.append(sub)
    return files


def _is_table_json(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # let load_table_config report it
    return isinstance(doc, dict) and "table" in doc


def load_case_directory(case_dir: str | Path
                        ) -> tuple[DatabaseConfig, list[TableConfig], dict[str, list[Path]]]:
    """Read a Qserv test case or catalog directory (layouts in the module docstring).

    Returns the database, its tables (directors first, then children,
    ref-match and replicated tables, each group by name) and each table's
    data files (sorted; possibly empty).
    """
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise ConfigError(case_dir, "not a directory")
    if (case_dir / "data" / "ingest").is_dir():
        data_dir = case_dir / "data"
    elif (case_dir / "ingest").is_dir():
        data_dir = case_dir
    else:
        data_dir = None

    if data_dir is not None:
        ingest_dir = data_dir / "ingest"
        schema_dir = data_dir / "schema"
        partition_dir = data_dir / "partition"
        database = load_database_config(ingest_dir / "database.json") \
            if (ingest_dir / "database.json").is_file() \
            else load_database_config(partition_dir / "common.json")
        table_jsons = [p for p in sorted(ingest_dir.glob("*.json"))
                       if p.name not in ("database.json", "metadata.json") and _is_table_json(p)]
        files_dir = data_dir
    else:
        db_jsons = sorted(case_dir.glob("database*.json"))
        if len(db_jsons) != 1:
            raise ConfigError(case_dir, "expected data/ingest/database.json or one "
                                        f"database_*.json, found {len(db_jsons)}")
        database = load_database_config(db_jsons[0])
        table_jsons = [p for p in sorted(case_dir.glob("*.json"))
                       if p not in db_jsons and _is_table_json(p)]
        schema_dir = case_dir / "schema"
        partition_dir = case_dir / "partition"
        files_dir = case_dir / "data"

    if not table_jsons:
        raise ConfigError(case_dir, "no table configuration (*.json with a 'table' key)")
    tables: list[TableConfig] = []
    for path in table_jsons:
        config = load_table_config(path, schema_dir if schema_dir.is_dir() else None)
        if config.database != database.name:
            raise ConfigError(path, f"database {config.database!r} is not {database.name!r}")
        part_json = partition_dir / f"{config.name}.json"
        if config.is_partitioned and part_json.is_file():
            config = _merge_partition(config, load_partition_config(part_json, config.name))
        _check_keys(config, path, require_position=True)
        tables.append(config)

    names = [t.name for t in tables]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(case_dir, f"tables configured twice: {dupes}")
    by_name = {t.name: t for t in tables}
    for t in tables:
        if t.kind == "child" and t.director_table not in by_name and "." not in (
                t.director_table or ""):
            raise ConfigError(t.source_path or case_dir,
                              f"director table {t.director_table!r} is not configured")
    tables.sort(key=lambda t: (_KIND_ORDER[t.kind], t.name))
    files = {t.name: _data_files(files_dir, t.name) for t in tables}
    return database, tables, files
