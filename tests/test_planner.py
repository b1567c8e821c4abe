"""Golden tests of the planner: per-chunk SQL, merge SQL and result names per case.

Cases live in tests/golden/planner.json (title, sql, expected plan).  After an
intended change, regenerate with ``python -m tests.test_planner`` and review
the diff: the golden file is the reviewed contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from czar.errors import SkyshardError
from czar.planner import EMPTY_CHUNK, RULES, PlanContext, parse_select, plan
from czar.planner.names import select_item_texts
from tests.planner_catalog import SNAPSHOT

GOLDEN = Path(__file__).parent / "golden" / "planner.json"


def describe(sql: str) -> dict[str, Any]:
    try:
        p = plan(sql, SNAPSHOT, "db")
    except SkyshardError as exc:
        return {"error": [exc.errno, exc.message]}
    described: dict[str, Any] = {
        "chunk_sql": p.chunk_sql,
        "merge_sql": p.merge_sql,
        "names": list(p.output_names),
        "chunks": list(p.chunk_ids),
        "early_stop_rows": p.early_stop_rows,
        "index_lookups": [
            {k: list(v) if isinstance(v, tuple) else v for k, v in vars(lookup).items() if v not in (None, ())}
            for lookup in p.index_lookups
        ],
    }
    if p.sub_chunks:  # a small area's chunks read only the sub-chunks it touches
        described["sub_chunks"] = {str(chunk): list(ids) for chunk, ids in p.sub_chunks}
        described["first_chunk_sql"] = p.chunk_sql_for(p.chunk_ids[0])
    return described


CASES = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["title"] for c in CASES])
def test_golden_plan(case: dict[str, Any]) -> None:
    assert describe(case["sql"]) == case["expected"]


def test_rules_are_pure() -> None:
    statement = parse_select("SELECT COUNT(*) FROM Object WHERE flux > 1")
    before = statement.sql()
    ctx = PlanContext(sql="SELECT COUNT(*) FROM Object WHERE flux > 1", statement=statement,
                      catalog=SNAPSHOT, default_db="db")
    for rule in RULES:
        ctx = rule(ctx)
    assert statement.sql() == before


def test_select_item_texts_keep_what_the_user_typed() -> None:
    assert select_item_texts("select  count(*) , o.ra AS r, f(a, (b)) FROM x") == ["count(*)", "o.ra AS r", "f(a, (b))"]
    assert select_item_texts("SELECT DISTINCT a+1 FROM t") == ["a+1"]


def test_empty_placement_runs_on_the_empty_chunk() -> None:
    from dataclasses import replace

    empty = replace(SNAPSHOT, placements={})
    assert plan("SELECT COUNT(*) FROM Object", empty, "db").chunk_ids == (EMPTY_CHUNK,)


if __name__ == "__main__":
    for case in CASES:
        case["expected"] = describe(case["sql"])
    GOLDEN.write_text(json.dumps(CASES, indent=2) + "\n")
    print(f"rewrote {len(CASES)} cases in {GOLDEN}")


@pytest.mark.parametrize("value", [0.0, -0.0, 2.0396, -90.0, 359.999999, 1e-05, -1.5e-07, 1e300, 5e-324,
                                   123456789012345678.0, -1234.5678901234567])
def test_a_cached_plans_restrictor_numbers_read_as_the_planners(value: float) -> None:
    """A cached plan binds restrictor arguments with number_sql; the uncached planner writes sqlglot's
    rendering of the same literal: both must give the same chunk SQL."""
    from czar.planner.spatial import _number, number_sql

    assert number_sql(value) == _number(value).sql(dialect="mysql")
