"""Near-neighbour self-joins on a catalog built to straddle every kind of border.

Pairs of objects closer than the search radius are placed on purpose across
sub-chunk, chunk and stripe borders, across the RA 0/360 seam and near a
pole, plus random pairs; the engine's answer is compared with the plain
self-join on the reference MariaDB (which sees all rows at once), so a pair
missed or counted twice fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pymysql
import pytest

from ingest.datagen import generate
from ingest.partitioner import Chunker
from integration.compare import rows_equal, run
from skyshard.cluster import LocalCluster
from skyshard.mariadb import ServerAddress
from tests.conftest import load_both, sides_of

pytestmark = pytest.mark.cluster
DATABASE = "nnborders"
STRIPES, SUB_STRIPES, OVERLAP = 18, 3, 0.1
RADIUS = 0.08


def _offset(ra: np.ndarray, decl: np.ndarray, distance: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``distance`` degrees from (ra, decl) towards position angle ``angle`` (radians)."""
    d, a = np.radians(distance), angle
    lat1 = np.radians(decl)
    lat2 = np.arcsin(np.sin(lat1) * np.cos(d) + np.cos(lat1) * np.sin(d) * np.cos(a))
    dlon = np.arctan2(np.sin(a) * np.sin(d) * np.cos(lat1), np.cos(d) - np.sin(lat1) * np.sin(lat2))
    return (ra + np.degrees(dlon)) % 360.0, np.degrees(lat2)


def _positions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    chunker = Chunker(STRIPES, SUB_STRIPES, OVERLAP)
    centres_ra: list[float] = []
    centres_decl: list[float] = []
    # On chunk and sub-chunk corners of a few chunks (stripe borders included), at the seam, near a pole.
    for lon, lat in ((30.0, 5.0), (100.0, -25.0), (200.0, 45.0), (0.0, 15.0), (300.0, 75.0)):
        chunk = int(chunker.locate(np.array([lon]), np.array([lat]))[0][0])
        for sub in chunker.sub_chunk_ids(chunk)[:6]:
            lon_min, lon_max, lat_min, lat_max = chunker.sub_chunk_box(chunk, int(sub))
            for corner_lon in (lon_min, lon_max):
                for corner_lat in (lat_min, lat_max):
                    centres_ra.append(corner_lon % 360.0)
                    centres_decl.append(float(np.clip(corner_lat, -89.99, 89.99)))
    centres_ra += [0.0, 359.99, 0.01, 180.0]
    centres_decl += [-3.0, 20.0, 60.0, 89.97]
    n = len(centres_ra)
    ra0 = np.array(centres_ra) + rng.normal(0, 0.01, n)
    decl0 = np.clip(np.array(centres_decl) + rng.normal(0, 0.01, n), -89.999, 89.999)
    # Each centre gets two partners within the radius, on either side of the border.
    ra1, decl1 = _offset(ra0 % 360.0, decl0, rng.uniform(0.01, RADIUS * 0.9, n), rng.uniform(0, 2 * np.pi, n))
    ra2, decl2 = _offset(ra0 % 360.0, decl0, rng.uniform(0.01, RADIUS * 0.9, n), rng.uniform(0, 2 * np.pi, n))
    # And a random field with pairs, some just beyond the radius.
    m = 300
    fra = rng.uniform(20.0, 40.0, m)
    fdecl = rng.uniform(-10.0, 10.0, m)
    pra, pdecl = _offset(fra, fdecl, rng.uniform(0.05, RADIUS * 1.2, m), rng.uniform(0, 2 * np.pi, m))
    ra = np.concatenate([ra0 % 360.0, ra1, ra2, fra, pra])
    decl = np.concatenate([decl0, decl1, decl2, fdecl, pdecl])
    return ra, decl


@pytest.fixture(scope="module")
def nn_catalog(cluster: LocalCluster, reference: ServerAddress, tmp_path_factory: pytest.TempPathFactory) -> str:
    ra, decl = _positions()
    case_dir = generate(tmp_path_factory.mktemp("nn"), objects=ra.size, sources_per_object=0.5, seed=3,
                        database=DATABASE, num_stripes=STRIPES, num_sub_stripes=SUB_STRIPES, overlap=OVERLAP,
                        positions=(ra, decl))
    return load_both(cluster, reference, case_dir)


@pytest.fixture
def sides(cluster: LocalCluster, reference: ServerAddress, nn_catalog: str) -> Iterator[tuple[Any, Any]]:
    yield from sides_of(cluster, reference, nn_catalog)


PAIRS = ("SELECT o1.objectId AS a, o2.objectId AS b, scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) AS d "
         "FROM Object o1, Object o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < {r} "
         "AND o1.objectId <> o2.objectId")


def test_the_catalog_straddles_every_kind_of_border(sides: tuple[Any, Any]) -> None:
    _, plain = sides
    pairs = run(plain, "SELECT o1.ra, o1.decl, o2.ra, o2.decl FROM Object o1, Object o2 WHERE "
                       f"scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < {RADIUS} AND o1.objectId < o2.objectId")[1]
    data = np.array(pairs, dtype=np.float64)
    chunker = Chunker(STRIPES, SUB_STRIPES, OVERLAP)
    c1, s1 = chunker.locate(data[:, 0], data[:, 1])
    c2, s2 = chunker.locate(data[:, 2], data[:, 3])
    stripe1, stripe2 = c1 // (2 * STRIPES), c2 // (2 * STRIPES)
    seam = np.abs(data[:, 0] - data[:, 2]) > 180.0
    assert int(((c1 == c2) & (s1 != s2)).sum()) >= 10, "pairs across sub-chunk borders"
    assert int((c1 != c2).sum()) >= 10, "pairs across chunk borders"
    assert int((stripe1 != stripe2).sum()) >= 5, "pairs across stripe borders"
    assert int(seam.sum()) >= 2, "pairs across the RA 0/360 seam"


def test_every_pair_once(sides: tuple[Any, Any]) -> None:
    engine, plain = sides
    sql = PAIRS.format(r=RADIUS)
    got_names, got = run(engine, sql)
    want_names, want = run(plain, sql)
    assert got_names == want_names and len(want) > 200
    assert rows_equal(got, want, ordered=False) is None


def test_pairs_with_an_area_and_aggregates(sides: tuple[Any, Any]) -> None:
    engine, plain = sides
    engine_sql = ("SELECT COUNT(*) AS n, MIN(scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl)) AS closest "
                  "FROM Object o1 JOIN Object o2 ON scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) <= 0.05 "
                  "WHERE qserv_areaspec_box(355, -5, 5, 25) AND o1.objectId <> o2.objectId AND o2.rFlux > 1")
    plain_sql = ("SELECT COUNT(*) AS n, MIN(scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl)) AS closest "
                 "FROM Object o1 JOIN Object o2 ON scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) <= 0.05 "
                 "WHERE (o1.ra >= 355 OR o1.ra <= 5) AND o1.decl BETWEEN -5 AND 25 "
                 "AND o1.objectId <> o2.objectId AND o2.rFlux > 1")
    got, want = run(engine, engine_sql)[1], run(plain, plain_sql)[1]
    assert want[0][0] > 0
    assert rows_equal(got, want, ordered=False) is None


def test_radius_beyond_the_overlap_is_refused(sides: tuple[Any, Any]) -> None:
    engine, _ = sides
    with pytest.raises(pymysql.err.MySQLError) as error:
        run(engine, PAIRS.format(r=OVERLAP * 1.5))
    assert error.value.args[0] == 1235 and "overlap" in error.value.args[1]
