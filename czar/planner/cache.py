"""The plan cache: a statement of a known shape is planned without sqlglot.

A point lookup or a cone search is usually one of a few *shapes* sent again
and again with other numbers.  The shape of a statement is its text with its
numeric literals taken out (:func:`scan`, no sqlglot); the plan of a shape is
a template (:class:`Template`): the chunk and merge SQL with a placeholder
where each parameter goes, plus how the parts of the plan that depend on a
parameter's value are recomputed from it.  Binding new values costs a few
string operations instead of a parse and every rule (about 4 ms).

Exactly as correct as the full planner, by construction and by check:

* only numeric literals of the WHERE clause can be parameters, and only
  where the rules' use of them is known: the director-key terms the index
  lookup reads (``key = c``, ``key IN (...)``, ``key BETWEEN a AND b``; the
  lookup values are recomputed), the arguments of a top-level
  ``qserv_areaspec_*`` restrictor (validated again; the chunks are
  recomputed from the new area, and the row filter gets the new numbers), and
  top-level terms no rule interprets (no ``scisql_*`` or ``qserv_*``
  function in them: their literals are copied into the chunk SQL, never
  read).  Every other literal is *fixed*: part of the key, so a statement
  differing there is another entry.  A literal's kind (integer, decimal,
  exponent) is part of the shape too, since the rules treat the kinds
  differently (``key = 5`` is an index lookup, ``key = 5.0`` is not);
* a template is made only from a statement the front end did not rewrite
  (mysql-mimic replaces functions such as ``DATABASE()`` or ``NOW()`` by
  values: the statement must equal a fresh parse of its text), without
  comments, ``;``, ``@`` or ``?``, and only when binding it to the very
  values it was made from gives the plan the full planner gave;
* entries belong to one catalog: a snapshot that differs from the one they
  were made with (a table ingested or dropped, chunks moved) empties the
  cache.

A value the template cannot take (an area restrictor argument out of range)
falls back to the full planner, which reports the error as usual.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from sqlglot import exp

from czar.catalog import CatalogSnapshot
from czar.planner.chunks import sub_chunks_of
from czar.planner.context import (
    EMPTY_CHUNK,
    KeyRestriction,
    PlanContext,
    QueryPlan,
    SubChunks,
)
from czar.planner.keys import key_restriction_of
from czar.planner.predicates import where_terms
from czar.planner.spatial import (
    AREASPEC_PREFIX,
    BOUND_META,
    AreaRestriction,
    SpatialError,
    _validate,
    chunks_in_regions,
    circle_bounds,
    literal_source,
    number_sql,
)

MAX_ENTRIES = 512  # shapes (with their fixed values) kept, least recently used dropped first
_MARK = "\x00"
# P<n>: the literal of parameter n; A<n>: restrictor argument n; B<n>_<k>: bound k of the circle
# prefilter (spatial.circle_bounds) of the restrictor whose first argument is parameter n.
_PLACEHOLDER = re.compile(r"__SKYSHARD_([PAB])(\d+)(?:_(\d))?__")
_NUMBER = re.compile(r"(\d+)(\.\d*)?([eE][+-]?\d+)?")
_WORD_CHAR = re.compile(r"[0-9A-Za-z_$\x80-\U0010ffff]")
_WORD = re.compile(r"[A-Za-z_$\x80-\U0010ffff][0-9A-Za-z_$\x80-\U0010ffff]*")


@dataclass(frozen=True)
class Shape:
    """A statement's text less its numeric literals."""

    key: str  # the text, each literal replaced by a marker of its kind
    values: tuple[str, ...]  # the literals' text, in order
    starts: tuple[int, ...]  # each literal's offset in the text


def scan(sql: str) -> Shape | None:
    """The shape of ``sql``, or None when the text has anything the cache does not handle."""
    pieces: list[str] = []
    values: list[str] = []
    starts: list[int] = []
    i, n, last = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while True:
                if j >= n:
                    return None  # unterminated: the parser reports it
                if sql[j] == "\\" and c != "`":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif c.isdigit():
            match = _NUMBER.match(sql, i)
            assert match is not None
            end = match.end()
            if end < n and _WORD_CHAR.match(sql[end]):
                return None  # 0x1F, 1abc, 1e (an identifier or hex: not a plain number)
            if i > 0 and sql[i - 1] == ".":
                return None  # t.5, .5
            kind = "e" if match.group(3) else ("d" if match.group(2) else "i")
            pieces.append(sql[last:i])
            pieces.append(f"{_MARK}{kind}{_MARK}")
            values.append(match.group(0))
            starts.append(i)
            last = i = end
        elif c in "#;@?\x00" or sql.startswith(("/*", "--"), i):
            return None  # comments (and /*! ... */ code), several statements, variables, placeholders
        elif c == "_" or c == "$" or c.isalpha() or ord(c) >= 0x80:
            match = _WORD.match(sql, i)
            i = match.end() if match is not None else i + 1
        else:
            i += 1
    pieces.append(sql[last:])
    return Shape("".join(pieces), tuple(values), tuple(starts))


@dataclass(frozen=True)
class _KeyTemplate:
    """A director-key restriction whose values are parameters (index, sign)."""

    base: KeyRestriction
    params: tuple[tuple[int, int], ...]
    between: bool


@dataclass(frozen=True)
class _AreaTemplate:
    alias: str
    shape: str
    params: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Template:
    """The plan of one shape with some values fixed; :meth:`bind` gives the plan for the others."""

    fixed: tuple[tuple[int, str], ...]  # (parameter index, text it must have)
    database: str
    chunk_sql: str
    merge_sql: str
    output_names: tuple[str, ...]
    early_stop_rows: int | None
    keys: tuple[KeyRestriction | _KeyTemplate, ...]
    areas: tuple[AreaRestriction | _AreaTemplate, ...]
    all_chunks: tuple[int, ...]  # the database's chunks (the catalog the template belongs to)
    family: tuple[int, int] | None  # stripes, sub-stripes
    replicated: bool  # no partitioned table: (REPLICATED_CHUNK,)
    replicated_chunks: tuple[int, ...]
    statement: exp.Select  # the parsed statement (grants are checked on it); never modified
    # Chunks (and sub-chunks, see SUB_CHUNK_TOKEN) of the areas bound lately.
    area_chunks: dict[tuple[AreaRestriction, ...], tuple[tuple[int, ...], SubChunks]] = field(
        default_factory=dict, compare=False)
    probe_key: str = ""  # the chunk SQL's shape for the workers' probe cache ("": the bound chunk SQL)
    rows_per_chunk: int | None = None
    sub_chunk_alias: str | None = None  # the alias SUB_CHUNK_TOKEN restricts (PlanContext.sub_chunk_alias)
    sub_chunk_column: str = ""  # its column as the plan carries it (QueryPlan.sub_chunk_column)

    def matches(self, values: tuple[str, ...]) -> bool:
        return all(values[i] == text for i, text in self.fixed)

    def bind(self, values: tuple[str, ...]) -> QueryPlan | None:
        """The plan for these parameter values; None when only the full planner can say (an error)."""
        floats: dict[int, str] = {}
        bounds: dict[int, tuple[float, ...]] = {}
        areas: list[AreaRestriction] = []
        for area in self.areas:
            if isinstance(area, AreaRestriction):
                areas.append(area)
                continue
            numbers = []
            for index, sign in area.params:
                try:
                    value = sign * float(values[index])
                except ValueError:
                    return None
                if not math.isfinite(value):
                    return None
                numbers.append(value)
                floats[index] = number_sql(value)
            arguments = tuple(numbers)
            try:
                _validate(f"{AREASPEC_PREFIX}{area.shape}", area.shape, arguments)
            except SpatialError:
                return None
            areas.append(AreaRestriction(area.alias, area.shape, arguments))
            if area.shape == "circle":
                bounds[area.params[0][0]] = circle_bounds(*arguments)
        keys: list[KeyRestriction] = []
        for key in self.keys:
            if isinstance(key, KeyRestriction):
                keys.append(key)
                continue
            integers = [sign * int(values[index]) for index, sign in key.params]
            if key.between:
                keys.append(replace(key.base, low=integers[0], high=integers[1]))
            else:
                keys.append(replace(key.base, values=tuple(sorted(set(integers)))))

        def substitute(match: re.Match[str]) -> str:
            index = int(match.group(2))
            if match.group(1) == "B":
                return number_sql(bounds[index][int(match.group(3))])
            return values[index] if match.group(1) == "P" else floats[index]

        sub_chunks: SubChunks = ()
        if self.replicated:
            chunk_ids = self.replicated_chunks
        else:
            known = self.area_chunks.get(tuple(areas))
            if known is not None:
                chunk_ids, sub_chunks = known
            else:
                chunk_ids = self.all_chunks
                if self.family is not None:
                    allowed = chunks_in_regions(tuple(areas), *self.family)
                    if allowed is not None:
                        chunk_ids = tuple(c for c in chunk_ids if c in allowed)
                    sub_chunks = sub_chunks_of(self.sub_chunk_alias, tuple(areas), *self.family, chunk_ids)
                chunk_ids = chunk_ids or (EMPTY_CHUNK,)
                if areas:  # the same area again (a repeated cone search) costs no sphgeom call
                    if len(self.area_chunks) >= 64:
                        self.area_chunks.clear()
                    self.area_chunks[tuple(areas)] = (chunk_ids, sub_chunks)
        return QueryPlan(
            database=self.database,
            chunk_sql=_PLACEHOLDER.sub(substitute, self.chunk_sql),
            chunk_ids=chunk_ids,
            merge_sql=_PLACEHOLDER.sub(substitute, self.merge_sql),
            output_names=self.output_names,
            early_stop_rows=self.early_stop_rows,
            index_lookups=tuple(keys),
            probe_key=self.probe_key,
            rows_per_chunk=self.rows_per_chunk,
            sub_chunk_column=self.sub_chunk_column,
            sub_chunks=sub_chunks,
        )


class PlanCache:
    """Templates by shape, for one catalog at a time (thread-safe)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str | None], list[Template]] = OrderedDict()
        self._refused: set[tuple[str, str | None, tuple[tuple[int, str], ...]]] = set()
        self._snapshot: CatalogSnapshot | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _adopt(self, snapshot: CatalogSnapshot) -> None:
        """Entries belong to one catalog: a different one empties the cache (lock held)."""
        if snapshot is self._snapshot:
            return
        if self._snapshot is None or snapshot != self._snapshot:
            self._entries.clear()
            self._refused.clear()
        self._snapshot = snapshot

    def lookup(
        self, sql: str, default_db: str | None, snapshot: CatalogSnapshot
    ) -> tuple[Template, QueryPlan] | None:
        shape = scan(sql)
        if shape is None:
            return None
        with self._lock:
            self._adopt(snapshot)
            templates = self._entries.get((shape.key, default_db))
            if templates is None:
                return None
            self._entries.move_to_end((shape.key, default_db))
            template = next((t for t in templates if t.matches(shape.values)), None)
        if template is None:
            return None
        plan = template.bind(shape.values)
        if plan is None:
            return None
        self.hits += 1
        return template, plan

    def plan(self, sql: str, default_db: str | None, snapshot: CatalogSnapshot, given: exp.Select | None) -> QueryPlan:
        """Plan ``sql`` in full and keep its template if it has one.

        ``given`` is the statement as the front end parsed (and may have
        rewritten) it; a template is made only when it equals a fresh parse.
        """
        from czar.planner import package, parse_select, plan_context

        shape = scan(sql)
        statement = given if given is not None else parse_select(sql)
        if shape is None:
            return package(plan_context(sql, snapshot, default_db, statement))
        refused = (shape.key, default_db, ())
        with self._lock:
            known = refused in self._refused
        if known or (given is not None and given != parse_select(sql)):
            return package(plan_context(sql, snapshot, default_db, statement))
        self.misses += 1
        pristine = statement.copy()
        ctx = plan_context(sql, snapshot, default_db, statement)
        plan = package(ctx)
        template = _make_template(shape, pristine, ctx, plan)
        with self._lock:
            self._adopt(snapshot)
            if template is None:
                if len(self._refused) < 4 * self.max_entries:
                    self._refused.add(refused)
                return plan
            templates = self._entries.setdefault((shape.key, default_db), [])
            self._entries.move_to_end((shape.key, default_db))
            if len(templates) < 16 and not any(t.fixed == template.fixed for t in templates):
                templates.append(template)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return plan


def _clause(node: Any) -> str:
    """The clause of the statement ``node`` is in (``where``, ``expressions``, ...)."""
    while node.parent is not None and node.parent.parent is not None:
        node = node.parent
    return node.arg_key or ""


def _interpreted(term: Any) -> bool:
    """Whether a rule may read the literals of a WHERE term (a scisql_* or qserv_* call in it)."""
    for call in term.find_all(exp.Anonymous):
        name = str(call.this).lower()
        if name.startswith(("scisql_", "qserv_")):
            return True
    return False


def _make_template(shape: Shape, pristine: exp.Select, ctx: PlanContext, plan: QueryPlan) -> Template | None:
    """The template of a planned statement, or None when it cannot have one."""
    if ctx.near_neighbour is not None or ctx.chunk_select is None or ctx.merge_select is None:
        return None
    if "__SKYSHARD_" in ctx.sql.upper():
        return None
    index_of = {start: i for i, start in enumerate(shape.starts)}
    # Every literal of the text is a Literal node of the parse, with the same text.
    seen: set[int] = set()
    for literal in pristine.find_all(exp.Literal):
        start = literal.meta_get("start")
        if literal.is_string:
            continue
        if start not in index_of or shape.values[index_of[start]] != literal.this:
            return None
        seen.add(index_of[start])
    if len(seen) != len(shape.values):
        return None
    # Parameters: literals of WHERE in the terms whose use is known (see the module docstring).
    params: set[int] = set()
    keys: list[KeyRestriction | _KeyTemplate] = []
    statement = ctx.statement
    for term in where_terms(statement.args.get("where")):
        restriction = key_restriction_of(term, ctx)
        literals = [lit for lit in term.find_all(exp.Literal) if not lit.is_string]
        if restriction is not None:
            between = restriction.low is not None
            node = term
            while isinstance(node, exp.Paren):
                node = node.this
            if between:
                constants = [node.args.get("low"), node.args.get("high")]
            elif isinstance(node, exp.In):
                constants = list(node.expressions)
            else:
                constants = [side for side in (node.this, node.expression) if not isinstance(side, exp.Column)]
            sources = [literal_source(c) for c in constants]
            if (
                restriction not in ctx.key_restrictions
                or len(sources) != len(literals)
                or any(s is None or s[0] not in index_of for s in sources)
            ):
                return None
            refs = tuple((index_of[s[0]], int(s[1])) for s in sources if s is not None)
            base = replace(restriction, values=(), low=None, high=None)
            keys.append(_KeyTemplate(base, refs, between))
            params.update(i for i, _ in refs)
        elif not _interpreted(term):
            params.update(
                index_of[lit.meta_get("start")] for lit in literals if lit.meta_get("start") in index_of
            )
    areas: list[AreaRestriction | _AreaTemplate] = []
    for region in ctx.regions:
        if region.sources and all(start in index_of for start, _ in region.sources):
            refs_area = tuple((index_of[start], sign) for start, sign in region.sources)
            areas.append(_AreaTemplate(region.alias, region.shape, refs_area))
            params.update(i for i, _ in refs_area)
        else:
            areas.append(region)
    if len(keys) != len(ctx.key_restrictions):
        return None
    # Only WHERE literals are parameters
    params = {i for i in params if _clause_of_start(pristine, shape.starts[i]) == "where"}
    chunk_sql, used, chunk_clauses = _template_sql(ctx.chunk_select, index_of, params)
    if chunk_sql is None:
        return None
    merge_sql, used_merge, _ = _template_sql(ctx.merge_select, index_of, params)
    if merge_sql is None:
        return None
    area_params = {i for a in areas if isinstance(a, _AreaTemplate) for i, _ in a.params}
    key_params = {i for k in keys if isinstance(k, _KeyTemplate) for i, _ in k.params}
    # A parameter the plan neither carries nor recomputes was read by a rule: it cannot vary.
    if params - (used | used_merge | area_params):
        return None
    if any(isinstance(k, _KeyTemplate) and not {i for i, _ in k.params} <= params for k in keys):
        return None
    if key_params - params or area_params - params:
        return None
    fixed = tuple((i, shape.values[i]) for i in range(len(shape.values)) if i not in params)
    database = ctx.catalog.database(ctx.database) if ctx.partitioned else None
    template = Template(
        fixed=fixed,
        database=plan.database,
        chunk_sql=chunk_sql,
        merge_sql=merge_sql,
        output_names=plan.output_names,
        early_stop_rows=plan.early_stop_rows,
        keys=tuple(keys),
        areas=tuple(areas),
        all_chunks=tuple(ctx.catalog.chunk_ids(ctx.database)) if ctx.partitioned else (),
        family=(database.family.num_stripes, database.family.num_sub_stripes) if database is not None else None,
        replicated=not ctx.partitioned,
        replicated_chunks=plan.chunk_ids if not ctx.partitioned else (),
        statement=pristine,
        # A WHERE literal never changes the result columns: the template is the shape of the
        # chunk SQL for the worker's probe cache (when the parameters stand in WHERE only).
        probe_key=chunk_sql if chunk_clauses <= {"where"} else "",
        rows_per_chunk=plan.rows_per_chunk,
        sub_chunk_alias=ctx.sub_chunk_alias,
        sub_chunk_column=plan.sub_chunk_column,
    )
    if template.bind(shape.values) != plan:
        return None  # the template does not give what the planner gave: no template
    return template


def _clause_of_start(statement: exp.Select, start: int) -> str:
    for literal in statement.find_all(exp.Literal):
        if literal.meta_get("start") == start:
            return _clause(literal)
    return ""


def _template_sql(
    select: exp.Select, index_of: dict[int, int], params: set[int]
) -> tuple[str | None, set[int], set[str]]:
    """The SQL of ``select`` with each parameter's literal (or restrictor argument) as a placeholder.

    Also the clauses of ``select`` the placeholders stand in (``where``, ...).
    """
    used: set[int] = set()
    copy = select.copy()
    replacements: list[tuple[Any, str]] = []
    for node in copy.walk():
        argument = node.meta_get("skyshard_argument") if isinstance(node, exp.Expression) else None
        bound = node.meta_get(BOUND_META) if isinstance(node, exp.Expression) else None
        if bound is not None:
            index = index_of.get(bound[0])
            if index is None or index not in params:
                continue
            replacements.append((node, f"__SKYSHARD_B{index}_{bound[1]}__"))
        elif argument is not None:
            index = index_of.get(argument)
            if index is None or index not in params:
                continue
            replacements.append((node, f"__SKYSHARD_A{index}__"))
            used.add(index)
        elif isinstance(node, exp.Literal) and not node.is_string:
            index = index_of.get(node.meta_get("start"))
            if index is None or index not in params:
                continue
            replacements.append((node, f"__SKYSHARD_P{index}__"))
            used.add(index)
    clauses = {_clause(node) for node, _ in replacements}
    for node, name in replacements:
        if node is copy:
            return None, used, clauses
        node.replace(exp.Var(this=name))
    return copy.sql(dialect="mysql"), used, clauses
