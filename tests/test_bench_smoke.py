"""The query benchmark (bench/run.py) end to end on a tiny catalog: every figure is produced.

Benchmarks are not timed tests: this checks that the benchmark code runs
against a real cluster and a real monolithic MariaDB, that both sides agree
on every answer, and that every figure B1-B7 comes out, not their values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run as bench_run

pytestmark = pytest.mark.cluster

EXPECTED = ("B1 p50", "B1 p99", "B2", "B3", "B4", "B5", "B6")


def test_smoke_run_produces_every_figure(tmp_path: Path) -> None:
    options = bench_run.Options(cache=tmp_path)
    for name, value in bench_run.SMOKE.items():
        setattr(options, name, value)
    report = bench_run.run(options)

    assert report.mismatches == []
    assert report.objects == options.objects
    assert report.chunks > 1
    keys = [figure.key for figure in report.figures]
    for key in EXPECTED:
        assert key in keys, f"{key} missing from {keys}"
        figure = report.get(key)
        assert figure.skyshard is not None and figure.skyshard > 0, figure
        assert figure.monolithic is not None and figure.monolithic > 0, figure
        assert figure.ratio is not None
    planning = [f for f in report.figures if f.key.startswith("B7/")]
    assert [f.key for f in planning] == [f"B7/{n // 1000}k" for n in options.plan_chunks]
    assert all(f.skyshard is not None and f.skyshard > 0 and f.met is not None for f in planning)
    assert (report.get("B3").rows or 0) > options.objects // 8  # MOD(objectId, 4) = 0: about a quarter
    assert (report.get("B4").rows or 0) > 0  # the cone is not empty
    table = report.table()
    for key in (*EXPECTED, *(f.key for f in planning)):
        assert key in table

