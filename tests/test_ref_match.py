"""Ref-match tables: rows live in the chunks of both their directors, answers have no duplicates.

A synthetic catalog: Object (datagen), a second director RefObject with
objects near most Objects (many pairs straddling chunk and sub-chunk
borders), and RefMatch linking them, with rows whose first or second
director is unknown.  Every query shape (match table alone, with either
director, with both, with an area) is compared with the reference MariaDB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.datagen import generate
from ingest.partitioner import Chunker
from integration.compare import rows_equal, run
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import load_both, sides_of
from tests.test_near_neighbour import _offset

pytestmark = pytest.mark.cluster
DATABASE = "refmatch"
STRIPES, SUB_STRIPES, OVERLAP, ANG_SEP = 18, 3, 0.1, 0.05
REF_COLUMNS = [("refObjectId", "bigint(20) NOT NULL"), ("ra", "double NOT NULL"), ("decl", "double NOT NULL"),
               ("mag", "double DEFAULT NULL")]
MATCH_COLUMNS = [("objectId", "bigint(20) DEFAULT NULL"), ("refObjectId", "bigint(20) DEFAULT NULL"),
                 ("angSep", "double DEFAULT NULL"), ("flags", "int(11) NOT NULL")]


def _write_table(case_dir: Path, name: str, columns: list[tuple[str, str]], rows: list[str], doc: dict[str, Any]) -> None:
    data = case_dir / "data"
    body = ",\n".join(f"  `{n}` {t}" for n, t in columns)
    (data / "schema" / f"{name}.schema").write_text(f"CREATE TABLE `{name}` (\n{body}\n) ENGINE=MyISAM;\n")
    (data / f"{name}.tsv").write_text("".join(rows))
    doc = {"database": DATABASE, "table": name, "is_partitioned": 1, **doc,
           "schema": [{"name": n, "type": t} for n, t in columns]}
    (data / "ingest" / f"{name}.json").write_text(json.dumps(doc, indent=2))


def _build(case_dir: Path) -> Path:
    rng = np.random.default_rng(5)
    n = 1200
    ra = rng.uniform(28.0, 52.0, n)
    decl = rng.uniform(-12.0, 12.0, n)
    # Many objects close to chunk borders (RA 30/40/50), stripe and sub-stripe borders (Dec).
    near_ra = rng.random(n) < 0.4
    ra[near_ra] = rng.choice([30.0, 40.0, 50.0], near_ra.sum()) + rng.normal(0, 0.03, near_ra.sum())
    near_decl = rng.random(n) < 0.3
    decl[near_decl] = rng.choice([-10.0, -20 / 3, -10 / 3, 0.0, 10 / 3, 20 / 3, 10.0], near_decl.sum()) + rng.normal(0, 0.03, near_decl.sum())
    generate(case_dir, objects=n, sources_per_object=0.5, seed=9, database=DATABASE,
             num_stripes=STRIPES, num_sub_stripes=SUB_STRIPES, overlap=OVERLAP, positions=(ra, decl))
    object_ids = np.arange(1, n + 1, dtype=np.int64) * 7 + 1000  # datagen's ids
    matched = rng.random(n) < 0.8
    rra, rdecl = _offset(ra[matched], decl[matched], rng.uniform(0.0, ANG_SEP, matched.sum()),
                         rng.uniform(0, 2 * np.pi, matched.sum()))
    extra = 100  # reference objects that match nothing
    rra = np.concatenate([rra, rng.uniform(28.0, 52.0, extra)])
    rdecl = np.concatenate([rdecl, rng.uniform(-12.0, 12.0, extra)])
    ref_ids = np.arange(1, rra.size + 1, dtype=np.int64) * 11 + 5
    mags = rng.uniform(15, 25, rra.size)
    _write_table(case_dir, "RefObject", REF_COLUMNS,
                 [f"{i}\t{a!r}\t{d!r}\t{m:.3f}\n" for i, a, d, m in zip(ref_ids.tolist(), rra.tolist(), rdecl.tolist(), mags.tolist(), strict=True)],
                 {"director_table": "", "director_key": "refObjectId", "longitude_key": "ra", "latitude_key": "decl"})
    pairs = list(zip(object_ids[matched].tolist(), ref_ids[: matched.sum()].tolist(), strict=True))
    rows = [f"{o}\t{r}\t0.01\t{k % 4}\n" for k, (o, r) in enumerate(pairs)]
    rows += ["999999\t" + str(ref_ids[0]) + "\t0.02\t1\n", f"{object_ids[3]}\t77777\t0.03\t2\n"]  # one side unknown
    _write_table(case_dir, "RefMatch", MATCH_COLUMNS, rows,
                 {"director_table": "Object", "director_key": "objectId", "director_table2": "RefObject",
                  "director_key2": "refObjectId", "flag": "flags", "ang_sep": ANG_SEP})
    return case_dir


@pytest.fixture(scope="module")
def match_catalog(cluster: LocalCluster, reference: ServerAddress, tmp_path_factory: pytest.TempPathFactory) -> Path:
    case_dir = _build(tmp_path_factory.mktemp("refmatch"))
    load_both(cluster, reference, case_dir)
    return case_dir


@pytest.fixture
def sides(cluster: LocalCluster, reference: ServerAddress, match_catalog: Path) -> Iterator[tuple[Any, Any]]:
    yield from sides_of(cluster, reference, DATABASE)


def test_matches_straddle_chunk_borders(sides: tuple[Any, Any]) -> None:
    _, plain = sides
    pairs = np.array(run(plain, "SELECT o.ra, o.decl, r.ra, r.decl FROM RefMatch m JOIN Object o USING (objectId) "
                                "JOIN RefObject r ON m.refObjectId = r.refObjectId")[1], dtype=np.float64)
    chunker = Chunker(STRIPES, SUB_STRIPES, OVERLAP)
    c1, s1 = chunker.locate(pairs[:, 0], pairs[:, 1])
    c2, s2 = chunker.locate(pairs[:, 2], pairs[:, 3])
    assert int((c1 != c2).sum()) >= 10 and int(((c1 == c2) & (s1 != s2)).sum()) >= 10


@pytest.mark.parametrize("sql", [
    "SELECT COUNT(*) AS n FROM RefMatch",
    "SELECT * FROM RefMatch",
    "SELECT flags, COUNT(*) AS n FROM RefMatch GROUP BY flags",
    "SELECT o.objectId, m.refObjectId, m.flags FROM Object o JOIN RefMatch m ON o.objectId = m.objectId",
    "SELECT r.refObjectId, r.mag, m.objectId FROM RefMatch m, RefObject r WHERE m.refObjectId = r.refObjectId",
    "SELECT o.objectId, r.refObjectId, scisql_angSep(o.ra, o.decl, r.ra, r.decl) AS d "
    "FROM Object o JOIN RefMatch m USING (objectId) JOIN RefObject r ON m.refObjectId = r.refObjectId",
    "SELECT COUNT(*) AS n, AVG(r.mag) AS mag FROM Object o, RefMatch m, RefObject r "
    "WHERE o.objectId = m.objectId AND m.refObjectId = r.refObjectId AND o.rFlux > 5",
    "SELECT o.objectId, m.refObjectId FROM Object o LEFT JOIN RefMatch m ON o.objectId = m.objectId",
])
def test_answers_equal_the_reference(sides: tuple[Any, Any], sql: str) -> None:
    engine, plain = sides
    got_names, got = run(engine, sql)
    want_names, want = run(plain, sql)
    assert got_names == want_names
    assert rows_equal(got, want, ordered=False) is None
    assert want


def test_area_on_the_first_director(sides: tuple[Any, Any]) -> None:
    engine, plain = sides
    got = run(engine, "SELECT o.objectId, r.refObjectId FROM Object o JOIN RefMatch m USING (objectId) "
                      "JOIN RefObject r ON m.refObjectId = r.refObjectId WHERE qserv_areaspec_box(30, -5, 40, 5)")[1]
    want = run(plain, "SELECT o.objectId, r.refObjectId FROM Object o JOIN RefMatch m USING (objectId) "
                      "JOIN RefObject r ON m.refObjectId = r.refObjectId "
                      "WHERE o.ra BETWEEN 30 AND 40 AND o.decl BETWEEN -5 AND 5")[1]
    assert want and rows_equal(got, want, ordered=False) is None
