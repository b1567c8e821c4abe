"""Rules that resolve the statement against css before any rewriting.

* ``check_supported``: refuse constructs the engine cannot evaluate correctly.
* ``resolve_tables``: every table exists, is published and visible; chunk
  tables cannot be named; every table gets an explicit alias.
* ``expand_stars``: ``*`` and ``t.*`` become explicit columns, and every
  select item gets the result column name MySQL would report.
* ``check_columns``: every column reference names a real column (1054) and
  is not ambiguous (1052).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from sqlglot import exp

from czar.errors import (
    AmbiguousColumn,
    NoDatabaseSelected,
    ParseError,
    UnknownColumn,
    UnknownDatabase,
    UnknownTable,
    UnsupportedQuery,
)
from czar.planner.context import CHUNK_TOKEN, RESULT_TOKEN, PlanContext, TableRef
from czar.planner.names import item_name, select_item_texts

_CHUNK_TABLE = re.compile(r"^.+(_\d+|FullOverlap_\d+)$")
# Every row of a partitioned table knows its chunk and sub-chunk (as in Qserv);
# the columns are not part of SELECT * but may be named.
PARTITION_COLUMNS = ("chunkid", "subchunkid")


def has_column(ref: TableRef, name: str) -> bool:
    if ref.table.column(name) is not None:
        return True
    return ref.table.partitioned and name.lower() in PARTITION_COLUMNS


def check_supported(ctx: PlanContext) -> PlanContext:
    statement = ctx.statement
    if CHUNK_TOKEN in ctx.sql or RESULT_TOKEN in ctx.sql:
        raise UnsupportedQuery("the query text contains a reserved Skyshard token")
    for node in statement.find_all(exp.Subquery, exp.Exists):
        raise UnsupportedQuery(f"subqueries are not supported: {node.sql(dialect='mysql')[:80]}")
    for node in statement.find_all(exp.Select):
        if node is not statement:
            raise UnsupportedQuery("subqueries are not supported")
    placeholder = statement.find(exp.Placeholder)
    if placeholder is not None:
        raise ParseError(
            "You have an error in your SQL syntax; check the manual that corresponds to your "
            f"MariaDB server version for the right syntax to use near '{placeholder.sql(dialect='mysql')}'"
        )
    if statement.find(exp.Window):
        raise UnsupportedQuery("window functions (OVER ...) are not supported")
    if statement.args.get("with_"):
        raise UnsupportedQuery("WITH (common table expressions) is not supported")
    if statement.args.get("into"):
        raise UnsupportedQuery("SELECT ... INTO is not supported")
    if statement.args.get("locks"):
        raise UnsupportedQuery("SELECT ... FOR UPDATE / LOCK IN SHARE MODE is not supported")
    for join in statement.args.get("joins") or []:
        side = (join.side or "").upper()
        if side in ("RIGHT", "FULL") or join.args.get("kind", "").upper() == "NATURAL":
            raise UnsupportedQuery(f"{side or 'NATURAL'} JOIN is not supported")
    if not statement.args.get("from_"):
        raise UnsupportedQuery("SELECT without FROM reached the planner")
    return ctx


def _table_nodes(statement: exp.Select) -> list[exp.Table]:
    nodes: list[exp.Table] = []
    from_ = statement.args["from_"]
    if not isinstance(from_.this, exp.Table):
        raise UnsupportedQuery(f"FROM {from_.this.sql(dialect='mysql')[:60]} is not supported")
    nodes.append(from_.this)
    for join in statement.args.get("joins") or []:
        if not isinstance(join.this, exp.Table):
            raise UnsupportedQuery(f"JOIN {join.this.sql(dialect='mysql')[:60]} is not supported")
        nodes.append(join.this)
    for node in nodes:
        if isinstance(node.this, exp.Anonymous) or not isinstance(node.this, exp.Identifier):
            raise UnsupportedQuery(f"table function {node.sql(dialect='mysql')[:60]} is not supported")
    return nodes


def resolve_tables(ctx: PlanContext) -> PlanContext:
    statement = ctx.statement.copy()
    refs: list[TableRef] = []
    seen_aliases: set[str] = set()
    for node in _table_nodes(statement):
        database = node.db or ctx.default_db
        if not database:
            raise NoDatabaseSelected("No database selected")
        if ctx.catalog.database(database) is None:
            if database.lower() == "information_schema":
                raise UnsupportedQuery("this information_schema query is not supported")
            raise UnknownDatabase(f"Unknown database '{database}'")
        table = ctx.catalog.table(database, node.name)
        if table is None:
            if _CHUNK_TABLE.match(node.name):
                raise UnknownTable(
                    f"Table '{database}.{node.name}' doesn't exist "
                    "(internal chunk tables cannot be queried directly)"
                )
            raise UnknownTable(f"Table '{database}.{node.name}' doesn't exist")
        alias = node.alias or node.name
        if alias.lower() in seen_aliases:
            raise UnsupportedQuery(f"Not unique table/alias: '{alias}'")
        seen_aliases.add(alias.lower())
        refs.append(TableRef(alias, table))
        node.set("db", exp.to_identifier(table.database))
        node.set("this", exp.to_identifier(table.name))
        node.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    partitioned_dbs = {ref.table.database for ref in refs if ref.table.partitioned}
    if len(partitioned_dbs) > 1:
        raise UnsupportedQuery(
            "a query over partitioned tables of several databases is not supported: "
            + ", ".join(sorted(partitioned_dbs))
        )
    return replace(ctx, statement=statement, tables=tuple(refs))


def _find_ref(ctx: PlanContext, qualifier: str) -> TableRef | None:
    for ref in ctx.tables:
        if ref.alias == qualifier:
            return ref
    for ref in ctx.tables:
        if ref.alias.lower() == qualifier.lower():
            return ref
    return None


def expand_stars(ctx: PlanContext) -> PlanContext:
    statement = ctx.statement.copy()
    texts: list[str | None] = list(select_item_texts(ctx.sql))
    if len(texts) != len(statement.expressions):
        texts = [None] * len(statement.expressions)
    items: list[exp.Expression] = []
    names: list[str] = []
    for item, text in zip(statement.expressions, texts, strict=True):
        star_of: list[TableRef] | None = None
        if isinstance(item, exp.Star):
            star_of = list(ctx.tables)
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            ref = _find_ref(ctx, item.table)
            if ref is None:
                raise UnknownTable(f"Unknown table '{item.table}'")
            star_of = [ref]
        if star_of is None:
            items.append(item)
            names.append(item_name(item, text))
            continue
        for ref in star_of:
            for column in ref.table.columns:
                items.append(exp.column(column.name, table=ref.alias, quoted=True))
                names.append(column.name)
    statement.set("expressions", items)
    return replace(ctx, statement=statement, output_names=tuple(names))


_CLAUSE_NAMES = {
    "expressions": "field list",
    "where": "where clause",
    "group": "group statement",
    "having": "having clause",
    "order": "order clause",
    "joins": "on clause",
}


def _clause_of(node: Any, statement: exp.Select) -> str:
    while node.parent is not None and node.parent is not statement:
        node = node.parent
    return _CLAUSE_NAMES.get(node.arg_key or "", "field list")


def _using_columns(statement: exp.Select) -> set[str]:
    names: set[str] = set()
    for join in statement.args.get("joins") or []:
        for ident in join.args.get("using") or []:
            names.add(ident.name.lower())
    return names


def check_columns(ctx: PlanContext) -> PlanContext:
    statement = ctx.statement
    aliases = {
        item.alias.lower() for item in statement.expressions if isinstance(item, exp.Alias)
    }
    using = _using_columns(statement)
    for column in statement.find_all(exp.Column):
        if isinstance(column.this, exp.Star):
            continue
        name = column.name
        clause = _clause_of(column, statement)
        if column.table:
            ref = _find_ref(ctx, column.table)
            if ref is None or not has_column(ref, name):
                raise UnknownColumn(f"Unknown column '{column.table}.{name}' in '{clause}'")
            if column.args.get("db") is not None or column.args.get("catalog") is not None:
                column.set("db", None)
                column.set("catalog", None)
            continue
        owners = [ref for ref in ctx.tables if has_column(ref, name)]
        if not owners:
            if name.lower() in aliases and clause in ("group statement", "having clause", "order clause"):
                continue
            raise UnknownColumn(f"Unknown column '{name}' in '{clause}'")
        if len(owners) > 1 and name.lower() not in using:
            raise AmbiguousColumn(f"Column '{name}' in {clause} is ambiguous")
    return ctx


def qualify_columns(ctx: PlanContext) -> PlanContext:
    """Qualify every unambiguous column with its table alias (select aliases stay bare)."""
    statement = ctx.statement.copy()
    aliases = {item.alias.lower() for item in statement.expressions if isinstance(item, exp.Alias)}
    using = _using_columns(statement)
    for column in list(statement.find_all(exp.Column)):
        if column.table or isinstance(column.this, exp.Star):
            continue
        owners = [ref for ref in ctx.tables if has_column(ref, column.name)]
        if not owners:
            continue  # a select alias (checked already)
        clause = _clause_of(column, statement)
        if column.name.lower() in aliases and clause in ("having clause", "order clause"):
            continue  # MySQL resolves these to the select alias first
        if len(owners) == 1 or column.name.lower() in using:
            column.set("table", exp.to_identifier(owners[0].alias))
    return replace(ctx, statement=statement)
