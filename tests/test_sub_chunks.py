"""A query over a small area reads only the sub-chunks the area touches, and still every row.

``czar.planner.chunks`` narrows each chunk statement of a small-area query to
``<director>.subChunkId IN (...)``: the sub-chunks sphgeom's ``Chunker``
finds intersecting the area.  That is only right if the partitioner that
placed the rows (``ingest.partitioner``) and sphgeom agree on every
sub-chunk's bounds.  Checked two ways: points inside random areas are all
located in listed sub-chunks (no MariaDB), and cone and box searches over a
catalog whose rows sit on and just beside sub-chunk and chunk borders (the
poles and longitude 0/360 included) give the reference MariaDB's rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from czar.catalog import Catalog
from czar.planner import plan
from czar.planner.chunks import SUB_CHUNK_MAX_CHUNKS
from czar.planner.spatial import AreaRestriction, chunks_in_regions, sub_chunks_in_regions
from ingest.datagen import generate
from ingest.partitioner import Chunker
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import load_both, sides_of
from tests.sky import destination

DATABASE = "subchunk_test"
STRIPES, SUB_STRIPES = 12, 3  # chunks of 15 deg, sub-chunks of 5 deg in latitude


@pytest.mark.parametrize("family", [(6, 4), (12, 3), (30, 10), (85, 12)])
def test_every_point_of_an_area_is_in_a_listed_sub_chunk(family: tuple[int, int]) -> None:
    stripes, sub_stripes = family
    partitioner = Chunker(stripes, sub_stripes)
    rng = random.Random(stripes)
    centres = [(0.0, 0.0), (359.99, 10.0), (10.0, 89.9), (200.0, -89.5), (180.0, 45.0)]
    centres += [(rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))) for _ in range(120)]
    restricted = 0
    for ra, dec in centres:
        radius = 10 ** rng.uniform(-3, 0.7)
        area = AreaRestriction("o", "circle", (ra, dec, radius))
        chunks = chunks_in_regions((area,), stripes, sub_stripes)
        assert chunks is not None
        listed = dict(sub_chunks_in_regions((area,), stripes, sub_stripes, tuple(sorted(chunks))))
        restricted += bool(listed)
        points = [destination(ra, dec, bearing, distance)
                  for bearing in range(0, 360, 3) for distance in (radius * (1 - 1e-9), radius * 0.7, radius * 0.2)]
        located_chunks, located_subs = partitioner.locate([p[0] for p in points], [p[1] for p in points])
        for point, chunk, sub in zip(points, located_chunks.tolist(), located_subs.tolist(), strict=True):
            assert chunk in chunks, f"{point} of circle {(ra, dec, radius)} is in chunk {chunk}, not a candidate"
            assert chunk not in listed or sub in listed[chunk], (
                f"{point} of circle {(ra, dec, radius)} is in sub-chunk {sub} of chunk {chunk},"
                f" not among {listed[chunk]}")
    assert restricted > len(centres) // 2  # the restriction is there for most small areas


def _border_positions() -> tuple[np.ndarray, np.ndarray]:
    """Points on and just beside sub-chunk corners and edges, around the poles and longitude 0."""
    partitioner = Chunker(STRIPES, SUB_STRIPES)
    rng = np.random.default_rng(17)
    ra: list[float] = []
    decl: list[float] = []
    for chunk in partitioner.chunk_ids().tolist():
        for sub in partitioner.sub_chunk_ids(chunk).tolist()[::2]:
            lon_min, lon_max, lat_min, lat_max = partitioner.sub_chunk_box(chunk, sub)
            for lon, lat in ((lon_min, lat_min), (lon_min, (lat_min + lat_max) / 2), ((lon_min + lon_max) / 2, lat_max)):
                for offset in (0.0, 1e-9, -1e-9, 1e-6, -1e-6, 1e-3, -1e-3):
                    ra.append((lon + offset * rng.uniform(0.5, 1.5)) % 360.0)
                    decl.append(min(90.0, max(-90.0, lat + offset * rng.uniform(-1.5, 1.5))))
    for lat in (89.999, -89.999, 89.5, -89.7):
        for lon in (0.0, 90.0, 200.0, 359.999):
            ra.append(lon)
            decl.append(lat)
    return np.array(ra), np.array(decl)


@pytest.fixture(scope="module")
def border_catalog(cluster: LocalCluster, reference: ServerAddress, tmp_path_factory: pytest.TempPathFactory) -> str:
    ra, decl = _border_positions()
    case_dir = generate(tmp_path_factory.mktemp("subchunks"), objects=ra.size, sources_per_object=1.0, seed=5,
                        database=DATABASE, num_stripes=STRIPES, num_sub_stripes=SUB_STRIPES, overlap=0.1,
                        positions=(ra, decl))
    return load_both(cluster, reference, case_dir)


@pytest.fixture
def sides(cluster: LocalCluster, reference: ServerAddress, border_catalog: str) -> Iterator[tuple[Any, Any]]:
    yield from sides_of(cluster, reference, border_catalog)


def _rows(connection: Any, sql: str) -> list[tuple[Any, ...]]:
    cursor = connection.cursor()
    cursor.execute(sql)
    return sorted(cursor.fetchall())


@pytest.mark.cluster
def test_small_areas_on_borders_match_the_reference(
    cluster: LocalCluster, border_catalog: str, sides: tuple[Any, Any]
) -> None:
    engine, plain = sides
    css = cluster.css()
    try:
        snapshot = Catalog(css).snapshot()
    finally:
        css.close()
    rng = random.Random(23)
    centres = _rows(plain, "SELECT ra, decl FROM Object")
    rng.shuffle(centres)
    restricted = rows_seen = 0
    for ra, decl in centres[:60]:
        radius = rng.choice((1e-6, 1e-3, 0.05, 0.7, 3.0))
        circle = f"{ra!r}, {decl!r}, {radius!r}"
        box = f"{ra - radius!r}, {max(-90.0, decl - radius)!r}, {ra + radius!r}, {min(90.0, decl + radius)!r}"
        queries = [
            (f"SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle({circle})",
             f"SELECT objectId, ra, decl FROM Object WHERE scisql_s2PtInCircle(ra, decl, {circle}) = 1"),
            (f"SELECT objectId FROM Object WHERE qserv_areaspec_box({box})",
             f"SELECT objectId FROM Object WHERE scisql_s2PtInBox(ra, decl, {box}) = 1"),
            (f"SELECT s.sourceId, o.objectId FROM Source s JOIN Object o USING (objectId)"
             f" WHERE qserv_areaspec_circle({circle})",
             f"SELECT s.sourceId, o.objectId FROM Source s JOIN Object o USING (objectId)"
             f" WHERE scisql_s2PtInCircle(o.ra, o.decl, {circle}) = 1"),
        ]
        for engine_sql, plain_sql in queries:
            expected = _rows(plain, plain_sql)
            assert _rows(engine, engine_sql) == expected, engine_sql
            rows_seen += len(expected)
            query_plan = plan(engine_sql, snapshot, border_catalog)
            if len(query_plan.chunk_ids) <= SUB_CHUNK_MAX_CHUNKS:
                restricted += bool(query_plan.sub_chunks)
                for chunk_id, _ in query_plan.sub_chunks:
                    assert "`subChunkId` IN (" in query_plan.chunk_sql_for(chunk_id)
    assert restricted > 60  # most of the 180 queries read only some sub-chunks of their chunks
    assert rows_seen > 300  # and they found rows on the borders
