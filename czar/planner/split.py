"""Rule ``split_query``: one statement becomes a per-chunk SELECT and a merge SELECT.

The core rule of the planner, in one sentence: *everything that can be
computed from one chunk's rows alone runs on the workers; the czar only
combines per-chunk results with SQL over the result table.*

Three shapes:

* **rows** (no aggregate, no GROUP BY): each select item becomes a chunk
  column ``_cN``; ORDER BY terms not in the select list travel as hidden
  columns ``_oN``; LIMIT (plus OFFSET) is pushed down, with the ORDER BY.
* **split aggregates** (COUNT, SUM, MIN, MAX, AVG without DISTINCT): the
  chunks compute partial aggregates per group (``_gN`` group keys, ``_aN``
  partials); the merge re-aggregates (COUNT -> SUM, AVG -> SUM/SUM).
* **pull-up** (any other aggregate, e.g. COUNT(DISTINCT), GROUP_CONCAT,
  STDDEV): the chunks return the referenced columns of the rows that pass
  WHERE; the merge runs the original aggregation over them.  Always correct,
  more data moved.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from sqlglot import exp

from czar.planner.context import RESULT_TOKEN, PlanContext

_SPLITTABLE = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)


def _key(node: Any) -> str:
    return node.sql(dialect="mysql").lower()


def _aggregates(nodes: list[Any]) -> list[exp.AggFunc]:
    found: list[exp.AggFunc] = []
    for node in nodes:
        if node is None:
            continue
        found.extend(agg for agg in node.find_all(exp.AggFunc))
    return found


def _is_splittable(agg: exp.AggFunc) -> bool:
    if not isinstance(agg, _SPLITTABLE):
        return False
    return not isinstance(agg.this, exp.Distinct)


def _result_table() -> exp.Table:
    return exp.Table(this=exp.to_identifier(RESULT_TOKEN))


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _alias(expression: exp.Expression, name: str) -> exp.Alias:
    return cast(exp.Alias, exp.alias_(expression, name, quoted=True))


def _limit_values(statement: exp.Select) -> tuple[int | None, int]:
    limit = statement.args.get("limit")
    offset = statement.args.get("offset")
    count = None
    skip = 0
    if limit is not None:
        value = limit.expression
        if not isinstance(value, exp.Literal) or value.is_string:
            raise_unsupported("LIMIT with a non-literal value")
        count = int(value.this)
        if limit.args.get("offset") is not None:  # LIMIT offset, count
            skip = int(limit.args["offset"].this)
    if offset is not None:
        skip = int(offset.expression.this)
    return count, skip


def raise_unsupported(what: str) -> None:
    from czar.errors import UnsupportedQuery

    raise UnsupportedQuery(f"{what} is not supported")


def _apply_limit(select: exp.Select, count: int | None, skip: int) -> exp.Select:
    if count is None:
        return select
    select = select.limit(count)
    if skip:
        select = select.offset(skip)
    return select


def _resolve_group_terms(statement: exp.Select, ctx: PlanContext) -> list[exp.Expression]:
    """GROUP BY terms with ordinals and select aliases replaced by their expressions."""
    group = statement.args.get("group")
    if group is None:
        return []
    items = statement.expressions
    by_alias = {item.alias.lower(): item.this for item in items if isinstance(item, exp.Alias)}
    terms: list[exp.Expression] = []
    for term in group.expressions:
        if isinstance(term, exp.Literal) and not term.is_string:
            position = int(term.this)
            if not 1 <= position <= len(items):
                from czar.errors import UnknownColumn

                raise UnknownColumn(f"Unknown column '{position}' in 'group statement'")
            item = items[position - 1]
            terms.append((item.this if isinstance(item, exp.Alias) else item).copy())
        elif isinstance(term, exp.Column) and not term.table and term.name.lower() in by_alias:
            terms.append(by_alias[term.name.lower()].copy())
        else:
            terms.append(term.copy())
    return terms


def split_query(ctx: PlanContext) -> PlanContext:
    statement = ctx.statement
    aggregates = _aggregates(
        [*statement.expressions, statement.args.get("having"), statement.args.get("order")]
    )
    if statement.args.get("group") is None and not aggregates:
        if statement.args.get("having") is not None:
            return _pull_up(ctx)
        return _split_rows(ctx)
    if all(_is_splittable(agg) for agg in aggregates):
        return _split_aggregates(ctx, aggregates)
    return _pull_up(ctx)


def _chunk_base(statement: exp.Select) -> exp.Select:
    """The FROM / JOIN / WHERE part of the statement, with an empty select list."""
    base = exp.Select()
    base.set("from_", statement.args["from_"].copy())
    if statement.args.get("joins"):
        base.set("joins", [join.copy() for join in statement.args["joins"]])
    if statement.args.get("where") is not None:
        base.set("where", statement.args["where"].copy())
    if statement.args.get("hint") is not None:
        base.set("hint", statement.args["hint"].copy())
    return base


def _split_rows(ctx: PlanContext) -> PlanContext:
    statement = ctx.statement
    chunk = _chunk_base(statement)
    distinct = statement.args.get("distinct") is not None
    by_key: dict[str, str] = {}
    chunk_items: list[exp.Expression] = []
    merge_items: list[exp.Expression] = []
    for index, (item, name) in enumerate(zip(statement.expressions, ctx.output_names, strict=True)):
        expression = item.this if isinstance(item, exp.Alias) else item
        column = f"_c{index}"
        chunk_items.append(_alias(expression.copy(), column))
        merge_items.append(_alias(_col(column), name))
        by_key.setdefault(_key(expression), column)
    aliases = {name.lower(): f"_c{i}" for i, name in enumerate(ctx.output_names)}
    chunk_order: list[exp.Ordered] = []
    merge_order: list[exp.Ordered] = []
    order = statement.args.get("order")
    hidden = 0
    for term in order.expressions if order is not None else []:
        expression = term.this
        target: str | None = None
        if isinstance(expression, exp.Literal) and not expression.is_string:
            position = int(expression.this)
            if 1 <= position <= len(chunk_items):
                target = f"_c{position - 1}"
        elif isinstance(expression, exp.Column) and not expression.table and expression.name.lower() in aliases:
            target = aliases[expression.name.lower()]
        if target is None:
            target = by_key.get(_key(expression))
        if target is None:
            if distinct:
                raise_unsupported("ORDER BY a term that is not in the select list of a SELECT DISTINCT")
            target = f"_o{hidden}"
            hidden += 1
            chunk_items.append(_alias(expression.copy(), target))
            by_key[_key(expression)] = target
        chunk_order.append(exp.Ordered(this=_col(target), desc=term.args.get("desc"), nulls_first=term.args.get("nulls_first")))
        merge_order.append(exp.Ordered(this=_col(target), desc=term.args.get("desc"), nulls_first=term.args.get("nulls_first")))
    chunk.set("expressions", chunk_items)
    if distinct:
        chunk.set("distinct", exp.Distinct())
    count, skip = _limit_values(statement)
    early_stop = None
    if count is not None and not distinct:
        if chunk_order:
            chunk.set("order", exp.Order(expressions=[o.copy() for o in chunk_order]))
        chunk = chunk.limit(count + skip)
        if not chunk_order:
            early_stop = count + skip
    merge = exp.Select(expressions=merge_items).from_(_result_table())
    if distinct:
        merge.set("distinct", exp.Distinct())
    if merge_order:
        merge.set("order", exp.Order(expressions=merge_order))
    merge = _apply_limit(merge, count, skip)
    return replace(ctx, chunk_select=chunk, merge_select=merge, early_stop_rows=early_stop)


class _AggregateSplitter:
    """Builds the partial aggregates of the chunk query and their merge expressions."""

    def __init__(self) -> None:
        self.chunk_items: list[exp.Expression] = []
        self.merge_for: dict[str, exp.Expression] = {}
        self.count = 0

    def _partial(self, expression: exp.Expression) -> str:
        name = f"_a{self.count}"
        self.count += 1
        self.chunk_items.append(_alias(expression, name))
        return name

    def add(self, agg: exp.AggFunc) -> None:
        key = _key(agg)
        if key in self.merge_for:
            return
        merged: exp.Expression
        if isinstance(agg, exp.Count):
            name = self._partial(agg.copy())
            merged = exp.Cast(
                this=exp.func("COALESCE", exp.Sum(this=_col(name)), exp.Literal.number(0)),
                to=exp.DataType.build("SIGNED", dialect="mysql"),
            )
        elif isinstance(agg, exp.Sum):
            merged = exp.Sum(this=_col(self._partial(agg.copy())))
        elif isinstance(agg, exp.Min):
            merged = exp.Min(this=_col(self._partial(agg.copy())))
        elif isinstance(agg, exp.Max):
            merged = exp.Max(this=_col(self._partial(agg.copy())))
        elif isinstance(agg, exp.Avg):
            total = self._partial(exp.Sum(this=agg.this.copy()))
            count = self._partial(exp.Count(this=agg.this.copy()))
            merged = exp.Div(this=exp.Sum(this=_col(total)), expression=exp.Sum(this=_col(count)))
        else:  # pragma: no cover - guarded by _is_splittable
            raise_unsupported(f"aggregate {agg.sql(dialect='mysql')}")
            return
        self.merge_for[key] = merged


def _rewrite_for_merge(
    expression: exp.Expression,
    group_columns: dict[str, str],
    splitter: _AggregateSplitter,
    bare: dict[str, str],
    chunk_items: list[exp.Expression],
) -> exp.Expression:
    """Replace group terms, aggregates and bare columns by merge-side expressions."""

    def transform(node: exp.Expression) -> exp.Expression:
        key = _key(node)
        if key in group_columns:
            return _col(group_columns[key])
        if isinstance(node, exp.AggFunc):
            return splitter.merge_for[key].copy()
        if isinstance(node, exp.Column) and node.table:
            if key not in bare:
                bare[key] = f"_x{len(bare)}"
                chunk_items.append(_alias(node.copy(), bare[key]))
            return _col(bare[key])
        return node

    return expression.copy().transform(transform, copy=False)


def _split_aggregates(ctx: PlanContext, aggregates: list[exp.AggFunc]) -> PlanContext:
    statement = ctx.statement
    chunk = _chunk_base(statement)
    group_terms = _resolve_group_terms(statement, ctx)
    group_columns: dict[str, str] = {}
    chunk_items: list[exp.Expression] = []
    for index, term in enumerate(group_terms):
        key = _key(term)
        if key in group_columns:
            continue
        group_columns[key] = f"_g{index}"
        chunk_items.append(_alias(term.copy(), f"_g{index}"))
    splitter = _AggregateSplitter()
    for agg in aggregates:
        splitter.add(agg)
    bare: dict[str, str] = {}
    extra_items: list[exp.Expression] = []
    merge_items = []
    for item, name in zip(statement.expressions, ctx.output_names, strict=True):
        expression = item.this if isinstance(item, exp.Alias) else item
        merge_items.append(
            _alias(_rewrite_for_merge(expression, group_columns, splitter, bare, extra_items), name)
        )
    merge = exp.Select(expressions=merge_items).from_(_result_table())
    if group_columns:
        merge.set("group", exp.Group(expressions=[_col(c) for c in group_columns.values()]))
        chunk.set("group", exp.Group(expressions=[t.copy() for t in group_terms]))
    having = statement.args.get("having")
    if having is not None:
        merge.set("having", exp.Having(this=_rewrite_for_merge(having.this, group_columns, splitter, bare, extra_items)))
    order = statement.args.get("order")
    if order is not None:
        terms = []
        for term in order.expressions:
            expression = term.this
            if isinstance(expression, exp.Literal) and not expression.is_string:
                position = int(expression.this)
                expression = exp.column(ctx.output_names[position - 1], quoted=True)
            elif isinstance(expression, exp.Column) and not expression.table:
                expression = expression.copy()
            else:
                expression = _rewrite_for_merge(expression, group_columns, splitter, bare, extra_items)
            terms.append(exp.Ordered(this=expression, desc=term.args.get("desc"), nulls_first=term.args.get("nulls_first")))
        merge.set("order", exp.Order(expressions=terms))
    if statement.args.get("distinct") is not None:
        merge.set("distinct", exp.Distinct())
    count, skip = _limit_values(statement)
    merge = _apply_limit(merge, count, skip)
    chunk.set("expressions", chunk_items + splitter.chunk_items + extra_items)
    return replace(ctx, chunk_select=chunk, merge_select=merge)


def _pull_up(ctx: PlanContext) -> PlanContext:
    """Chunks return the referenced columns of qualifying rows; the czar aggregates."""
    statement = ctx.statement
    chunk = _chunk_base(statement)
    columns: dict[str, str] = {}
    chunk_items: list[exp.Expression] = []
    merge = statement.copy()
    for arg in ("from_", "joins", "where", "hint"):
        merge.set(arg, None)

    def transform(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.table:
            key = _key(node)
            if key not in columns:
                columns[key] = f"_t{len(columns)}"
                chunk_items.append(_alias(node.copy(), columns[key]))
            return _col(columns[key])
        return node

    merge = cast(exp.Select, merge.transform(transform, copy=False))
    merge.set(
        "expressions",
        [
            _alias(item.this if isinstance(item, exp.Alias) else item, name)
            for item, name in zip(merge.expressions, ctx.output_names, strict=True)
        ],
    )
    merge.set("from_", exp.From(this=_result_table()))
    if not chunk_items:
        chunk_items.append(_alias(exp.Literal.number(1), "_t0"))
    chunk.set("expressions", chunk_items)
    return replace(ctx, chunk_select=chunk, merge_select=merge)
