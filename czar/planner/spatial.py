"""Rule ``apply_spatial_restrictors``: Qserv's area restrictors and spatial chunk pruning.

``qserv_areaspec_box / _circle / _ellipse / _poly`` (any letter case;
written ``f(...)``, ``f(...) = 1`` or ``1 = f(...)``) are pseudo-functions of
Qserv's dialect: they restrict the query's director table to an area of the
sky.  Each becomes the matching scisql row filter
(``scisql_s2PtInBox(t.ra, t.decl, ...) = 1`` ...) on the position columns of
the query's *first director table* (in FROM order; the first partitioned
table with position columns when no director is named), in place, so that it
means the same under OR and NOT.  Only the first table is restricted because
that is what the plain SQL of Qserv's corpus means: in a near-neighbour
query ``o1 ... o2`` the area applies to ``o1``; ``o2`` may lie outside it.

When such a restrictor, or a ``scisql_s2PtIn*`` predicate with constant area
arguments on a director table's own position columns, is a top-level AND
term of WHERE, the rows it keeps all lie in the chunks that intersect the
area: those chunks become the query's candidate chunks (``ctx.regions``).
Pruning uses a slightly enlarged, never smaller, region; the row filter is
exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import lsst.sphgeom as sphgeom
import sqlglot
from sqlglot import exp

from css import TableKind
from czar.errors import UnsupportedQuery
from czar.planner.context import PlanContext, SubChunks, TableRef
from czar.planner.predicates import where_terms

AREASPEC_PREFIX = "qserv_areaspec_"
_SCISQL_FILTERS = {
    "box": "scisql_s2PtInBox",
    "circle": "scisql_s2PtInCircle",
    "ellipse": "scisql_s2PtInEllipse",
    "poly": "scisql_s2PtInCPoly",
}
_ARGUMENTS = {"box": (4, 4), "circle": (3, 3), "ellipse": (5, 5), "poly": (6, 40)}
_MARGIN = sphgeom.Angle.fromDegrees(1e-6)  # pruning never uses a smaller region than the filter


class SpatialError(UnsupportedQuery):
    """An area restrictor with bad arguments."""


@dataclass(frozen=True)
class AreaRestriction:
    """Rows of ``alias`` lie in ``region``: its chunks are the only candidates."""

    alias: str
    shape: str
    arguments: tuple[float, ...]
    # Where each argument came from: (start offset of its literal in the SQL text, sign), for the
    # plan cache (czar.planner.cache); empty when not every argument is one literal of the text.
    sources: tuple[tuple[int, float], ...] = field(default=(), compare=False)

    def region(self) -> sphgeom.Region:
        return area_region(self.shape, self.arguments)


def _function_name(node: Any) -> str | None:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return None


def _areaspec_shape(node: Any) -> str | None:
    """The shape of a restrictor call (``f(...)``, ``f(...) = 1``, ``1 = f(...)``), else None."""
    if isinstance(node, exp.EQ):
        left, right = node.this, node.expression
        if _is_one(right) and _areaspec_shape(left):
            return _areaspec_shape(left)
        if _is_one(left) and _areaspec_shape(right):
            return _areaspec_shape(right)
        return None
    name = _function_name(node)
    if name and name.startswith(AREASPEC_PREFIX):
        return name[len(AREASPEC_PREFIX):]
    return None


def _is_one(node: Any) -> bool:
    return isinstance(node, exp.Literal) and not node.is_string and node.this in ("1", "1.0")


def _call_of(node: Any) -> exp.Anonymous:
    if isinstance(node, exp.EQ):
        return node.this if _function_name(node.this) else node.expression
    return node


def _constant(node: Any, what: str) -> float:
    """A numeric literal (with an optional sign), or a clear error."""
    sign = 1.0
    while isinstance(node, exp.Neg):
        sign = -sign
        node = node.this
    if isinstance(node, exp.Paren):
        return sign * _constant(node.this, what)
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            value = float(node.this)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return sign * value
    raise SpatialError(f"{what}: arguments must be numeric constants, got {node.sql(dialect='mysql')}")


def _areaspec_arguments(call: exp.Anonymous, shape: str) -> tuple[float, ...]:
    name = f"{AREASPEC_PREFIX}{shape}"
    if shape not in _ARGUMENTS:
        raise SpatialError(f"unknown spatial restrictor {name}")
    low, high = _ARGUMENTS[shape]
    values = tuple(_constant(arg, name) for arg in call.expressions)
    if not low <= len(values) <= high or (shape == "poly" and len(values) % 2):
        expected = f"{low}" if low == high else f"an even number from {low} to {high}"
        raise SpatialError(f"{name} takes {expected} arguments, got {len(values)}")
    _validate(name, shape, values)
    return values


def _validate(name: str, shape: str, values: tuple[float, ...]) -> None:
    def latitude(value: float) -> None:
        if not -90.0 <= value <= 90.0:
            raise SpatialError(f"{name}: latitude {value} is outside [-90, 90]")

    if shape == "box":
        latitude(values[1])
        latitude(values[3])
        if values[1] > values[3]:
            raise SpatialError(f"{name}: latMin {values[1]} is greater than latMax {values[3]}")
        if values[2] < values[0] and not (0 <= values[0] <= 360 and 0 <= values[2] <= 360):
            raise SpatialError(f"{name}: lonMax {values[2]} < lonMin {values[0]} outside [0, 360]")
    elif shape == "circle":
        latitude(values[1])
        if not 0.0 <= values[2] <= 180.0:
            raise SpatialError(f"{name}: radius {values[2]} is outside [0, 180] degrees")
    elif shape == "ellipse":
        latitude(values[1])
        if not 0.0 <= values[3] <= values[2] <= 36000.0:
            raise SpatialError(
                f"{name}: axes must satisfy 0 <= semi-minor <= semi-major <= 36000 arcsec, "
                f"got {values[2]}, {values[3]}"
            )
    elif shape == "poly":
        for lat in values[1::2]:
            latitude(lat)


def _point(lon: float, lat: float) -> sphgeom.UnitVector3d:
    return sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(lon, lat))


def area_region(shape: str, values: tuple[float, ...]) -> sphgeom.Region:
    """A region that contains every point the matching scisql filter accepts."""
    if shape == "box":
        lon_min, lat_min, lon_max, lat_max = values
        if lon_max - lon_min >= 360.0:
            lon_min, lon_max = 0.0, 360.0
        else:
            lon_min, lon_max = lon_min % 360.0, lon_max % 360.0
        if lon_max == 0.0 and values[2] > values[0]:
            lon_max = 360.0
        box = sphgeom.Box(
            sphgeom.NormalizedAngleInterval.fromDegrees(lon_min, lon_max),
            sphgeom.AngleInterval.fromDegrees(lat_min, lat_max),
        )
        return box.dilatedBy(_MARGIN)
    if shape == "circle":
        radius = min(180.0, values[2])
        return sphgeom.Circle(_point(values[0], values[1]), sphgeom.Angle.fromDegrees(radius)).dilatedBy(_MARGIN)
    if shape == "ellipse":
        # scisql's boundary lies at asin(M) along the major axis, a little beyond M.
        major = math.radians(values[2] / 3600.0)
        radius = math.degrees(math.asin(min(1.0, major))) * 1.001
        return sphgeom.Circle(_point(values[0], values[1]), sphgeom.Angle.fromDegrees(radius)).dilatedBy(_MARGIN)
    vertices = [_point(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    polygon = sphgeom.ConvexPolygon.convexHull(vertices)
    return polygon.getBoundingCircle().dilatedBy(_MARGIN)


def _restricted_table(ctx: PlanContext) -> TableRef:
    """The table an area restrictor applies to: the first director, else the first with a position."""
    with_position = [
        ref for ref in ctx.partitioned if ref.table.longitude_column and ref.table.latitude_column
    ]
    for ref in with_position:
        if ref.table.kind is TableKind.DIRECTOR:
            return ref
    if with_position:
        return with_position[0]
    raise SpatialError("qserv_areaspec_* needs a partitioned table with position columns in FROM")


def literal_source(node: Any) -> tuple[int, float] | None:
    """(start offset in the SQL text, sign) of the one literal a constant argument is written with."""
    sign = 1.0
    while isinstance(node, exp.Neg | exp.Paren):
        if isinstance(node, exp.Neg):
            sign = -sign
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string and node.meta_get("start") is not None:
        return int(node.meta_get("start")), sign
    return None


def _sources(call: exp.Anonymous) -> tuple[tuple[int, float], ...]:
    found = [literal_source(arg) for arg in call.expressions]
    return tuple(s for s in found if s is not None) if all(s is not None for s in found) else ()


def _row_filter(
    ref: TableRef, shape: str, values: tuple[float, ...], sources: tuple[tuple[int, float], ...] = (),
    *, top_level: bool = False,
) -> exp.Expression:
    """The scisql filter of an area restrictor (with a cheap prefilter before a top-level circle)."""
    table = ref.table
    lon = exp.column(table.longitude_column or "", table=ref.alias, quoted=True)
    lat = exp.column(table.latitude_column or "", table=ref.alias, quoted=True)
    numbers: list[exp.Expression] = []
    for index, value in enumerate(values):
        number = _number(value)
        if sources:  # the plan cache puts the argument of another query of this shape here
            number.meta["skyshard_argument"] = sources[index][0]
        numbers.append(number)
    call = exp.Anonymous(this=_SCISQL_FILTERS[shape], expressions=[lon, lat, *numbers])
    exact = exp.EQ(this=call, expression=exp.Literal.number(1))
    if shape == "circle" and top_level:
        prefilter = _circle_prefilter(lon, lat, values, sources[0][0] if sources else None)
        return exp.Paren(this=exp.And(this=prefilter, expression=exact))
    return exact


# A cheap test every row the circle filter accepts passes (see _circle_prefilter): the latitude
# band and the longitude range of circle_bounds. Stored positions outside [0, 360) x [-90, 90]
# (ingest keeps them as given) always pass on to the exact filter.
_CIRCLE_PREFILTER = sqlglot.parse_one(
    "(lat >= b0 AND lat <= b1 OR lat < -90 OR lat > 90) AND (lon >= b2 AND lon <= b3 OR lon < 0 OR lon >= 360)",
    read="mysql",
)
# The parser keeps each literal's offset in the text above ("start"): the plan cache would read
# it as an offset in the query's text, and take a constant of the prefilter for a parameter.
for _node in _CIRCLE_PREFILTER.walk():
    for _key in ("line", "col", "start", "end"):
        _node.meta.pop(_key, None)
NO_LONGITUDE_LIMIT = 1e308
BOUND_META = "skyshard_bound"  # a prefilter bound's (circle's first argument offset, which bound)


def circle_bounds(lon: float, lat: float, radius: float) -> tuple[float, float, float, float]:
    """The prefilter of a circle: lowest and highest latitude, lowest and highest longitude.

    The latitude band is the circle's, and unless the circle reaches within
    1 deg of a pole or its longitudes wrap (no longitude limit then: -1e308
    to 1e308), the longitude range is asin(sin r / cos dec) either side of
    the centre, widened by a millionth; every bound is widened by 1e-4 deg.
    """
    low, high = lat - radius - 1e-4, lat + radius + 1e-4
    if abs(lat) + radius >= 89:
        return low, high, -NO_LONGITUDE_LIMIT, NO_LONGITUDE_LIMIT
    half = math.degrees(math.asin(math.sin(math.radians(radius)) / math.cos(math.radians(lat)))) * 1.000001 + 1e-4
    if lon - half < 0 or lon + half >= 360:
        return low, high, -NO_LONGITUDE_LIMIT, NO_LONGITUDE_LIMIT
    return low, high, lon - half, lon + half


def _circle_prefilter(
    lon: exp.Column, lat: exp.Column, values: tuple[float, ...], source: int | None = None
) -> exp.Expression:
    """:data:`_CIRCLE_PREFILTER` on these position columns for a circle of these arguments (centre
    lon, lat, radius), its bounds (:func:`circle_bounds`) written as numbers.  ``source``: the
    offset of the circle's first argument in the query, when the plan cache may bind other
    arguments (each bound then says which one it is, :data:`BOUND_META`).

    MariaDB tests a few comparisons per row where scisql's filter computes a
    distance: a chunk of about 3,200 rows of which a cone keeps 500 scans in
    0.69-0.91 ms instead of 1.0-1.1 ms.  The bounds are numbers, not SQL
    expressions of the arguments, because MariaDB parses and prepares the
    statement for every chunk: B4's chunk statement took 1.56 ms with the
    expressions and 1.42 ms with the numbers.  Only for a restrictor that is
    a top-level AND term, where a row it drops (FALSE) and a row scisql drops
    (0 or NULL) are the same.
    """
    bounds = circle_bounds(*values)
    columns = {"lon": lon, "lat": lat}

    def fill(node: Any) -> Any:
        if isinstance(node, exp.Column) and not node.table:
            if node.name in columns:
                return columns[node.name].copy()
            if node.name.startswith("b"):
                which = int(node.name[1:])
                number = _number(bounds[which])
                if source is not None:
                    number.meta[BOUND_META] = (source, which)
                return number
        return node

    return _CIRCLE_PREFILTER.copy().transform(fill)


def _number(value: float) -> exp.Expression:
    text = number_sql(value)
    if text.startswith("-"):
        return exp.Neg(this=exp.Literal.number(text[1:]))
    return exp.Literal.number(text)


def _scisql_area(node: Any, ctx: PlanContext) -> AreaRestriction | None:
    """A top-level ``scisql_s2PtIn*(t.lon, t.lat, constants...) [= 1]`` on a director's position."""
    call = node
    if isinstance(node, exp.EQ):
        if _is_one(node.expression):
            call = node.this
        elif _is_one(node.this):
            call = node.expression
        else:
            return None
    name = _function_name(call)
    shapes = {v.lower(): k for k, v in _SCISQL_FILTERS.items()}
    if name not in shapes or len(call.expressions) < 3:
        return None
    lon, lat, *rest = call.expressions
    if not (isinstance(lon, exp.Column) and isinstance(lat, exp.Column) and lon.table == lat.table):
        return None
    ref = next((r for r in ctx.partitioned if r.alias == lon.table), None)
    if ref is None or ref.table.kind is not TableKind.DIRECTOR:
        return None
    table = ref.table
    if (lon.name.lower(), lat.name.lower()) != (
        (table.longitude_column or "").lower(), (table.latitude_column or "").lower()
    ):
        return None
    shape = shapes[name]
    try:
        values = tuple(_constant(arg, name) for arg in rest)
    except SpatialError:
        return None  # not constant: no pruning, the filter still applies
    low, high = _ARGUMENTS[shape]
    if not low <= len(values) <= high or (shape == "poly" and len(values) % 2):
        return None
    try:
        _validate(name, shape, values)
    except SpatialError:
        return None  # scisql answers NULL/0 for these; no pruning
    return AreaRestriction(ref.alias, shape, values)


def apply_spatial_restrictors(ctx: PlanContext) -> PlanContext:
    statement = ctx.statement.copy()
    for node in statement.find_all(exp.Anonymous):
        name = _function_name(node)
        if name and name.startswith(AREASPEC_PREFIX) and _clause_root(node, statement) != "where":
            raise SpatialError(f"{name} is only allowed in the WHERE clause")
    where = statement.args.get("where")
    if where is None:
        return ctx
    top_level = {id(node) for node in where_terms(where)}
    regions: list[AreaRestriction] = []
    target: TableRef | None = None

    def transform(node: Any) -> Any:
        nonlocal target
        shape = _areaspec_shape(node)
        if shape is None:
            if _function_name(node) and str(_function_name(node)).startswith(AREASPEC_PREFIX):
                raise SpatialError(f"unknown spatial restrictor {_function_name(node)}")
            return node
        values = _areaspec_arguments(_call_of(node), shape)
        if target is None:
            target = _restricted_table(ctx)
        sources = _sources(_call_of(node))
        if id(node) in top_level:
            regions.append(AreaRestriction(target.alias, shape, values, sources))
        return _row_filter(target, shape, values, sources, top_level=id(node) in top_level)

    new_where = where.transform(transform, copy=False)
    statement.set("where", new_where)
    for node in where_terms(new_where):
        found = _scisql_area(node, ctx)
        if found is not None and found not in regions:
            regions.append(found)
    return replace(ctx, statement=statement, regions=ctx.regions + tuple(regions))


def _clause_root(node: Any, statement: exp.Select) -> str:
    while node.parent is not None and node.parent is not statement:
        node = node.parent
    return node.arg_key or ""


def chunks_in_regions(
    restrictions: tuple[AreaRestriction, ...], num_stripes: int, num_sub_stripes: int
) -> set[int] | None:
    """Chunks that may hold rows satisfying every restriction; None when unrestricted."""
    if not restrictions:
        return None
    chunker = sphgeom.Chunker(num_stripes, num_sub_stripes)
    result: set[int] | None = None
    for restriction in restrictions:
        chunks = set(chunker.getChunksIntersecting(restriction.region()))
        result = chunks if result is None else result & chunks
    return result


def sub_chunks_in_regions(
    restrictions: tuple[AreaRestriction, ...], num_stripes: int, num_sub_stripes: int, chunk_ids: tuple[int, ...]
) -> SubChunks:
    """For each of ``chunk_ids`` that the area does not cover whole: the sub-chunks that may hold
    rows satisfying every restriction (ascending).  A chunk not listed is read whole.

    The rows of a director table are placed in sub-chunks by their own position (the partitioner,
    ``ingest/partitioner.py``, is Qserv's, as is sphgeom's ``Chunker``), so a chunk statement may
    read only these: its chunk table's ``subChunkId`` index finds them.
    """
    if not restrictions:
        return ()
    chunker = sphgeom.Chunker(num_stripes, num_sub_stripes)
    found: dict[int, set[int]] | None = None
    for restriction in restrictions:
        here = {int(chunk): {int(s) for s in subs} for chunk, subs in chunker.getSubChunksIntersecting(restriction.region())}
        found = here if found is None else {c: found[c] & here[c] for c in found.keys() & here.keys()}
    assert found is not None
    listed = []
    for chunk_id in chunk_ids:
        ids = found.get(chunk_id)
        if ids and len(ids) < len(chunker.getAllSubChunks(chunk_id)):
            listed.append((chunk_id, tuple(sorted(ids))))
    return tuple(listed)


def number_sql(value: float) -> str:
    """The SQL text a restrictor argument of value ``value`` becomes in the row filter.

    A DOUBLE literal (``200.0e0``, never ``200.0``, which MariaDB reads as a
    DECIMAL): scisql's functions take doubles, and MariaDB converted a
    DECIMAL argument to a double for every row (``decimal2double`` was about
    a tenth of a cone statement's time, ``perf``; 1.61 ms -> 1.51 ms on B4's
    chunks).  It is the double MariaDB would have converted the DECIMAL to.
    The text is also what sqlglot makes of :func:`_number`'s literal (a
    cached plan binds three of these per cone: sqlglot took 20 us each).
    """
    text = repr(float(value))
    return text if "e" in text else f"{text}e0"
