"""worker.scisql: the scisql-compatible UDF library, on a private MariaDB server.

Every geometric function is checked against independent references on many
random inputs: a long-double Vincenty separation, numpy half-space/projection
tests and lsst.sphgeom regions.  Points closer to a region boundary than the
references can decide are skipped.  NULL, out-of-range and wrong-arity
behaviour is checked against the rules documented in docs/scisql.md (which
follow lsst/scisql).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import socket
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lsst.sphgeom as sg
import numpy as np
import pymysql
import pytest
from pymysql.converters import escape_float

from skyshard.mariadb import MariaDBInstance, MariaDBNotInstalled, check_installed
from worker import scisql

LD = np.longdouble
DEG_LD = LD("3.141592653589793238462643383279502884") / 180
RAD_PER_DEG = math.pi / 180
ARCSEC = 1.0 / 3600.0
ER_CANT_INITIALIZE_UDF = 1123


# ---------------------------------------------------------------------------
# fixtures and SQL helpers
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBInstance]:
    try:
        check_installed()
    except MariaDBNotInstalled as exc:
        pytest.skip(str(exc))
    instance = MariaDBInstance(tmp_path_factory.mktemp("db"), port=_free_port())
    with warnings.catch_warnings():
        # MariaDBInstance.start() polls with connections that PyMySQL leaks while the
        # server is still coming up; collect them here rather than in a later test.
        warnings.simplefilter("ignore", ResourceWarning)
        instance.start()
        gc.collect()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def installed(server: MariaDBInstance) -> Path:
    conn = server.address.connect()
    try:
        path = scisql.ensure_installed(conn)
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE IF NOT EXISTS scisql_test")
    finally:
        conn.close()
    return path


@pytest.fixture(scope="module")
def cur(server: MariaDBInstance, installed: Path) -> Iterator[Any]:
    conn = server.address.connect(database="scisql_test")
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def lit(value: float | None) -> str:
    """A SQL DOUBLE literal (PyMySQL's float escaping, which always has an exponent)."""
    return "NULL" if value is None else escape_float(float(value))


def one(cursor: Any, sql: str, args: Sequence[Any] | None = None) -> Any:
    cursor.execute(sql, args)
    rows = cursor.fetchall()
    assert len(rows) == 1, sql
    return rows[0][0]


def call(cursor: Any, func: str, *args: Any) -> Any:
    """SELECT func(args...) with the arguments sent as DOUBLE literals (or NULL)."""
    values = [float(a) if isinstance(a, np.floating) else a for a in args]
    placeholders = ", ".join(["%s"] * len(values))
    return one(cursor, f"SELECT {func}({placeholders})", values)


def eval_rows(cursor: Any, rows: Any, expr: str) -> list[Any]:
    """Evaluate expr (over DOUBLE columns c0, c1, ...) for every row (a sequence of
    float sequences or a 2-d array), in row order."""
    ncols = len(rows[0])
    cols = ", ".join(f"c{i} DOUBLE" for i in range(ncols))
    cursor.execute("DROP TEMPORARY TABLE IF EXISTS t")
    cursor.execute(f"CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, {cols})")
    placeholders = ", ".join(["%s"] * (ncols + 1))
    cursor.executemany(
        f"INSERT INTO t VALUES ({placeholders})",
        [(i, *(float(x) for x in row)) for i, row in enumerate(rows)],
    )
    cursor.execute(f"SELECT {expr} FROM t ORDER BY id")
    return [r[0] for r in cursor.fetchall()]


def cols(start: int, count: int) -> str:
    return ", ".join(f"c{i}" for i in range(start, start + count))


# ---------------------------------------------------------------------------
# independent reference geometry
# ---------------------------------------------------------------------------


def unit(lon: Any, lat: Any, dtype: Any = np.float64) -> np.ndarray:
    lon = np.asarray(lon, dtype=dtype) * (DEG_LD if dtype is LD else RAD_PER_DEG)
    lat = np.asarray(lat, dtype=dtype) * (DEG_LD if dtype is LD else RAD_PER_DEG)
    return np.stack([np.cos(lon) * np.cos(lat), np.sin(lon) * np.cos(lat), np.sin(lat)], -1)


def to_lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    lat = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return lon, np.clip(lat, -90.0, 90.0)


def north_east(lon: float, lat: float, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors pointing north and east at (lon, lat)."""
    scale = DEG_LD if dtype is LD else RAD_PER_DEG
    a, d = dtype(lon) * scale, dtype(lat) * scale
    north = np.array([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], dtype=dtype)
    east = np.array([-np.sin(a), np.cos(a), dtype(0)], dtype=dtype)
    return north, east


def offsets(lon: float, lat: float, dist: np.ndarray, bearing: np.ndarray) -> np.ndarray:
    """Lon/lat pairs at angular distances dist (deg) and bearings (deg east of north)."""
    c = unit(lon, lat)
    north, east = north_east(lon, lat)
    d, b = np.radians(dist)[:, None], np.radians(bearing)[:, None]
    v = np.cos(d) * c + np.sin(d) * (np.cos(b) * north + np.sin(b) * east)
    plon, plat = to_lonlat(v)
    return np.stack([plon, plat], -1)


def ref_sep(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> np.ndarray:
    """Angular separation (deg) by Vincenty's formula in long double, cancellation-free."""
    p1 = np.asarray(lat1, dtype=LD) * DEG_LD
    p2 = np.asarray(lat2, dtype=LD) * DEG_LD
    dp = (np.asarray(lat2, dtype=LD) - np.asarray(lat1, dtype=LD)) * DEG_LD
    dl = (np.asarray(lon2, dtype=LD) - np.asarray(lon1, dtype=LD)) * DEG_LD
    h = np.sin(dl / 2) ** 2
    num1 = np.cos(p2) * np.sin(dl)
    num2 = np.sin(dp) + 2 * np.sin(p1) * np.cos(p2) * h
    den = np.cos(dp) - 2 * np.cos(p1) * np.cos(p2) * h
    return np.arctan2(np.hypot(num1, num2), den) / DEG_LD


def scisql_angsep_port(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """scisql's own formula (geometry.c scisql_sc_angsep) in double precision."""
    rad = 0.0174532925199432957692369076849
    x = math.sin((lon1 - lon2) * rad * 0.5)
    x *= x
    y = math.sin((lat1 - lat2) * rad * 0.5)
    y *= y
    z = math.cos((lat1 + lat2) * rad * 0.5)
    z *= z
    d2 = min(max(4.0 * (x * (z - y) + y), 0.0), 4.0)
    return min(2.0 * 57.2957795130823208767981548141 * math.asin(math.sqrt(d2 * 0.25)), 180.0)


def sg_point(lon: float, lat: float) -> sg.UnitVector3d:
    return sg.UnitVector3d(sg.LonLat.fromDegrees(float(lon), float(lat)))


def random_sphere(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    lon = rng.uniform(0.0, 360.0, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return lon, lat


# ---------------------------------------------------------------------------
# build and install
# ---------------------------------------------------------------------------


def test_build_is_cached_and_exports_every_function(tmp_path: Path) -> None:
    library = scisql.build(tmp_path)
    assert library == tmp_path / scisql.LIBRARY_NAME and library.is_file()
    mtime = library.stat().st_mtime_ns
    assert scisql.build(tmp_path) == library
    assert library.stat().st_mtime_ns == mtime, "an up-to-date library must not be rebuilt"
    # rebuilt when the source is newer
    stale = scisql.SOURCE.stat().st_mtime_ns - 10**10
    os.utime(library, ns=(stale, stale))
    scisql.build(tmp_path)
    assert library.stat().st_mtime_ns > stale
    lib = ctypes.CDLL(str(library))
    for name in scisql.FUNCTION_NAMES:
        assert hasattr(lib, name) and hasattr(lib, name + "_init"), name
    assert not hasattr(lib, "sky_sc_angsep"), "helpers must stay hidden"
    assert all(flag.startswith("-I") for flag in scisql.header_flags())


def test_missing_headers_error_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scisql, "_tool_flags", lambda command: None)
    monkeypatch.setattr(scisql, "_HEADER_DIR_CANDIDATES", ())
    with pytest.raises(scisql.ScisqlBuildError, match=scisql.HEADERS_PACKAGE):
        scisql.header_flags()


def test_install_is_idempotent_and_repairs_foreign_definitions(
    server: MariaDBInstance, installed: Path
) -> None:
    conn = server.address.connect()
    try:
        assert installed == scisql.plugin_dir(conn) / scisql.LIBRARY_NAME
        assert installed.read_bytes() == scisql.build().read_bytes()
        registered = scisql.installed_functions(conn)
        assert registered == {
            name: (ret, scisql.LIBRARY_NAME) for name, ret in scisql.FUNCTIONS.items()
        }
        # a second run changes nothing
        assert scisql.ensure_installed(conn) == installed
        assert scisql.installed_functions(conn) == registered
        # a definition with the wrong return type (e.g. left by another install) is replaced
        with conn.cursor() as cursor:
            cursor.execute("DROP FUNCTION scisql_fluxToAbMag")
            cursor.execute(
                f"CREATE FUNCTION scisql_fluxToAbMag RETURNS INTEGER SONAME '{scisql.LIBRARY_NAME}'"
            )
        scisql.install_functions(conn)
        assert scisql.installed_functions(conn) == registered
        scisql.install_functions(conn, replace=True)
        assert scisql.installed_functions(conn) == registered
        assert scisql.install_library(scisql.plugin_dir(conn)) == installed
        with conn.cursor() as cursor:
            assert one(cursor, "SELECT scisql_fluxToAbMag(1.0)") == pytest.approx(-48.6)
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# wrong arity, NULLs, out-of-range latitudes
# ---------------------------------------------------------------------------

BAD_ARITY = [
    ("scisql_angSep", 3),
    ("scisql_angSep", 5),
    ("scisql_angSep", 7),
    ("scisql_s2PtInBox", 5),
    ("scisql_s2PtInBox", 7),
    ("scisql_s2PtInCircle", 4),
    ("scisql_s2PtInCircle", 6),
    ("scisql_s2PtInEllipse", 6),
    ("scisql_s2PtInEllipse", 8),
    ("scisql_s2PtInCPoly", 2),
    ("scisql_s2PtInCPoly", 3),  # numeric third argument is not a polygon byte-string
    ("scisql_s2PtInCPoly", 4),
    ("scisql_s2PtInCPoly", 6),
    ("scisql_s2PtInCPoly", 9),
    ("scisql_s2PtInCPoly", 44),
    ("scisql_s2CPolyToBin", 4),
    ("scisql_s2CPolyToBin", 7),
    ("scisql_s2CPolyToBin", 42),
    ("scisql_fluxToAbMag", 0),
    ("scisql_fluxToAbMag", 2),
    ("scisql_fluxToAbMagSigma", 1),
    ("scisql_fluxToAbMagSigma", 3),
    ("scisql_abMagToFlux", 2),
    ("scisql_abMagToFluxSigma", 1),
    ("scisql_nanojanskyToAbMag", 2),
    ("scisql_nanojanskyToAbMagSigma", 3),
    ("scisql_abMagToNanojansky", 0),
    ("scisql_abMagToNanojanskySigma", 1),
]


@pytest.mark.parametrize(("func", "nargs"), BAD_ARITY)
def test_wrong_argument_count_is_a_mariadb_error(cur: Any, func: str, nargs: int) -> None:
    with pytest.raises(pymysql.err.OperationalError) as info:
        call(cur, func, *([1.0] * nargs))
    assert info.value.args[0] == ER_CANT_INITIALIZE_UDF
    assert func in info.value.args[1]


VALID_ARGS: dict[str, tuple[float, ...]] = {
    "scisql_angSep": (10.0, 20.0, 11.0, 21.0),
    "scisql_s2PtInBox": (10.0, 20.0, 5.0, 15.0, 15.0, 25.0),
    "scisql_s2PtInCircle": (10.0, 20.0, 10.5, 20.5, 1.0),
    "scisql_s2PtInEllipse": (10.0, 20.0, 10.0, 20.1, 3600.0, 1800.0, 0.0),
    "scisql_s2PtInCPoly": (10.0, 20.0, 5.0, 15.0, 15.0, 15.0, 15.0, 25.0, 5.0, 25.0),
    "scisql_fluxToAbMag": (1e-29,),
    "scisql_fluxToAbMagSigma": (1e-29, 1e-31),
    "scisql_abMagToFlux": (23.9,),
    "scisql_abMagToFluxSigma": (23.9, 0.01),
    "scisql_nanojanskyToAbMag": (3631.0,),
    "scisql_nanojanskyToAbMagSigma": (3631.0, 10.0),
    "scisql_abMagToNanojansky": (22.5,),
    "scisql_abMagToNanojanskySigma": (22.5, 0.01),
}
NULL_CASES = [(f, i) for f, args in VALID_ARGS.items() for i in range(len(args))]


@pytest.mark.parametrize(("func", "position"), NULL_CASES)
def test_null_argument(cur: Any, func: str, position: int) -> None:
    args: list[float | None] = list(VALID_ARGS[func])
    assert call(cur, func, *args) is not None  # the valid call is not NULL (and s2PtIn* -> 1)
    if func.startswith("scisql_s2PtIn"):
        assert call(cur, func, *args) == 1
    args[position] = None
    expected = 0 if func.startswith("scisql_s2PtIn") else None  # scisql: s2PtIn* give 0
    assert call(cur, func, *args) == expected


LATITUDE_POSITIONS = {
    "scisql_angSep": (1, 3),
    "scisql_s2PtInBox": (1, 3, 5),
    "scisql_s2PtInCircle": (1, 3),
    "scisql_s2PtInEllipse": (1, 3),
    "scisql_s2PtInCPoly": (1, 3, 5, 7, 9),
}
LAT_CASES = [
    (f, i, bad) for f, pos in LATITUDE_POSITIONS.items() for i in pos for bad in (90.0000001, -91.0)
]


@pytest.mark.parametrize(("func", "position", "bad"), LAT_CASES)
def test_latitude_out_of_range_gives_null(cur: Any, func: str, position: int, bad: float) -> None:
    args = list(VALID_ARGS[func])
    args[position] = bad
    assert call(cur, func, *args) is None


def test_arguments_are_coerced_to_double(cur: Any) -> None:
    assert one(cur, "SELECT scisql_angSep('0', '0', '1', 0)") == pytest.approx(1.0, abs=1e-13)
    assert one(cur, "SELECT scisql_angSep(0, 0, 1.5, 0)") == pytest.approx(1.5, abs=1e-13)
    assert one(cur, "SELECT scisql_s2PtInCircle(0, 0, '0.5', 0, 1)") == 1
    cur.execute("DROP TEMPORARY TABLE IF EXISTS coerce")
    cur.execute("CREATE TEMPORARY TABLE coerce (i INT, d DECIMAL(20, 10), f FLOAT)")
    cur.execute("INSERT INTO coerce VALUES (2, 3.25, 0.5)")
    assert one(cur, "SELECT scisql_angSep(0, 0, i, 0) FROM coerce") == pytest.approx(2.0)
    assert one(cur, "SELECT scisql_angSep(0, d, 0, 0) FROM coerce") == pytest.approx(3.25)
    assert one(cur, "SELECT scisql_angSep(f, 0, 0, 0) FROM coerce") == pytest.approx(0.5)


def test_result_column_types(cur: Any) -> None:
    cur.execute("DROP TABLE IF EXISTS types")
    cur.execute(
        "CREATE TABLE types AS SELECT scisql_angSep(0, 0, 1, 1) AS s, "
        "scisql_s2PtInCircle(0, 0, 0, 0, 1) AS c, scisql_fluxToAbMag(1) AS m, "
        "scisql_s2CPolyToBin(0, 0, 1, 0, 0, 1) AS b"
    )
    cur.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'scisql_test' AND table_name = 'types' ORDER BY ordinal_position"
    )
    assert [tuple(r) for r in cur.fetchall()] == [
        ("s", "double", "YES"),
        ("c", "bigint", "YES"),
        ("m", "double", "YES"),
        ("b", "varbinary", "YES"),
    ]
    cur.execute("DROP TABLE types")


# ---------------------------------------------------------------------------
# scisql_angSep
# ---------------------------------------------------------------------------


def test_angsep_random_pairs(cur: Any, rng: np.random.Generator) -> None:
    n = 3000
    lon1, lat1 = random_sphere(rng, n)
    lon2, lat2 = random_sphere(rng, n)
    lon1[:200] = rng.uniform(-1080.0, 1080.0, 200)  # any finite longitude is accepted
    rows = np.stack([lon1, lat1, lon2, lat2], -1)
    got = np.array(eval_rows(cur, rows, "scisql_angSep(c0, c1, c2, c3)"), dtype=np.float64)
    ref = ref_sep(lon1, lat1, lon2, lat2).astype(float)
    far = ref > 179.0  # scisql's haversine loses precision near the antipode
    assert np.max(np.abs(got - ref)[~far]) < 1e-11
    assert np.max(np.abs(got - ref)[far], initial=0.0) < 2e-6
    port = np.array([scisql_angsep_port(*r) for r in rows])
    assert np.max(np.abs(got - port)[~far] / np.maximum(port[~far], 1e-300)) < 1e-13
    # the constant-argument path gives the same values
    for i in range(0, n, 300):
        assert call(cur, "scisql_angSep", *rows[i]) == got[i]


def test_angsep_tiny_separations(cur: Any, rng: np.random.Generator) -> None:
    n = 1000
    clon, clat = random_sphere(rng, n)
    clat = np.clip(clat, -89.0, 89.0)
    dist = 10.0 ** rng.uniform(-11.0, -1.0, n)  # 36 µas ... 0.1 deg
    bearing = rng.uniform(0.0, 360.0, n)
    pts = np.array(
        [offsets(clon[i], clat[i], dist[i : i + 1], bearing[i : i + 1])[0] for i in range(n)]
    )
    plon = clon + (pts[:, 0] - clon + 180.0) % 360.0 - 180.0  # no 0/360 jump between the two
    rows = np.stack([clon, clat, plon, pts[:, 1]], -1)
    got = np.array(eval_rows(cur, rows, "scisql_angSep(c0, c1, c2, c3)"), dtype=np.float64)
    ref = ref_sep(*rows.T).astype(float)
    assert np.max(np.abs(got - ref) / ref) < 1e-9
    assert call(cur, "scisql_angSep", 10.0, 20.0, 10.0, 20.0) == 0.0
    assert call(cur, "scisql_angSep", 10.0, 20.0, 10.0, 20.0 + 1e-12) == pytest.approx(
        1e-12, rel=1e-3
    )


def test_angsep_antipodes_and_poles(cur: Any, rng: np.random.Generator) -> None:
    assert call(cur, "scisql_angSep", 0.0, 0.0, 180.0, 0.0) == 180.0
    assert call(cur, "scisql_angSep", 0.0, 90.0, 0.0, -90.0) == 180.0
    # cos(90 deg) is not exactly 0 in double precision: ~6e-15 deg, as with scisql
    assert call(cur, "scisql_angSep", 0.0, 90.0, 123.0, 90.0) == pytest.approx(0.0, abs=1e-13)
    assert call(cur, "scisql_angSep", 0.0, 0.0, 0.0, 90.0) == pytest.approx(90.0, abs=1e-12)
    assert call(cur, "scisql_angSep", 0.0, 0.0, 360.0, 0.0) == pytest.approx(0.0, abs=1e-13)
    lon, lat = random_sphere(rng, 500)
    eps = 10.0 ** rng.uniform(-9.0, -1.0, 500)
    rows = np.stack([lon, lat, lon + 180.0 + eps, -lat], -1)
    got = np.array(eval_rows(cur, rows, "scisql_angSep(c0, c1, c2, c3)"), dtype=np.float64)
    ref = ref_sep(*rows.T).astype(float)
    assert np.all(got <= 180.0)
    # documented precision limit of scisql's haversine near the antipode (~4 mas)
    assert np.max(np.abs(got - ref)) < 2e-6


def test_angsep_vector_form(cur: Any, rng: np.random.Generator) -> None:
    n = 1000
    v1 = rng.normal(size=(n, 3)) * 10.0 ** rng.uniform(-5, 5, (n, 1))
    v2 = rng.normal(size=(n, 3)) * 10.0 ** rng.uniform(-5, 5, (n, 1))
    got = np.array(
        eval_rows(cur, np.hstack([v1, v2]), f"scisql_angSep({cols(0, 6)})"), dtype=np.float64
    )
    ref = np.degrees(np.arctan2(np.linalg.norm(np.cross(v1, v2), axis=1), np.sum(v1 * v2, axis=1)))
    assert np.max(np.abs(got - ref)) < 1e-11
    assert call(cur, "scisql_angSep", 1.0, 0.0, 0.0, 0.0, 0.0, 1.0) == pytest.approx(90.0)
    assert call(cur, "scisql_angSep", 2.0, 0.0, 0.0, -3.0, 0.0, 0.0) == pytest.approx(180.0)
    assert call(cur, "scisql_angSep", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0) == 0.0
    # lat-range checks do not apply to vectors; NULL still does
    assert call(cur, "scisql_angSep", 100.0, 0.0, 0.0, 100.0, 100.0, 0.0) == pytest.approx(45.0)
    assert call(cur, "scisql_angSep", 1.0, 0.0, 0.0, None, 0.0, 1.0) is None


# ---------------------------------------------------------------------------
# scisql_s2PtInBox
# ---------------------------------------------------------------------------


def angdiff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def box_expected(
    lon: float, lat: float, lon_min: float, lat_min: float, lon_max: float, lat_max: float
) -> int | None:
    """The documented scisql rules (docs/scisql.md)."""
    if lon_max < lon_min and (lon_max < 0.0 or lon_min > 360.0):
        return None
    if lat_min > lat_max or not lat_min <= lat <= lat_max:
        return 0
    if lon_max - lon_min >= 360.0:
        return 1
    p, lo, hi = lon % 360.0, lon_min % 360.0, lon_max % 360.0
    if lo <= hi:
        return int(lo <= p <= hi)
    return int(p >= lo or p <= hi)


def test_box_random(cur: Any, rng: np.random.Generator) -> None:
    rows = []
    n = 4000
    for k in range(n):
        kind = k % 4
        if kind == 0:  # both bounds in [0, 360], either order (wrap when min > max)
            lo, hi = rng.uniform(0.0, 360.0, 2)
        elif kind == 1:  # negative minimum, width up to 400 deg
            lo = rng.uniform(-360.0, 0.0)
            hi = lo + rng.uniform(0.0, 400.0)
        elif kind == 2:  # beyond 360
            lo = rng.uniform(300.0, 720.0)
            hi = lo + rng.uniform(0.0, 100.0)
        else:  # narrow box
            lo = rng.uniform(0.0, 360.0)
            hi = (lo + rng.uniform(0.0, 5.0)) % 360.0
        la, lb = np.sort(rng.uniform(-90.0, 90.0, 2)) if k % 50 else rng.uniform(-90.0, 90.0, 2)
        centre = (lo + (hi - lo) / 2) if hi >= lo else (lo + (hi + 360.0 - lo) / 2)
        plon = centre + rng.normal() * max(abs(hi - lo), 1.0) + 360.0 * rng.integers(-2, 3)
        plat = float(np.clip(rng.uniform(min(la, lb) - 5.0, max(la, lb) + 5.0), -90.0, 90.0))
        rows.append((plon, plat, lo, la, hi, lb))
    got = eval_rows(cur, rows, "scisql_s2PtInBox(c0, c1, c2, c3, c4, c5)")
    checked = inside = 0
    for row, value in zip(rows, got, strict=True):
        expected = box_expected(*row)
        assert value == expected, row
        plon, plat, lo, la, hi, lb = row
        near = min(angdiff(plon, lo), angdiff(plon, hi), abs(plat - la), abs(plat - lb)) < 1e-9
        if expected is None or near or la > lb or abs(plat) > 89.9999:
            continue
        # independent check with lsst.sphgeom
        if hi - lo >= 360.0:
            box = sg.Box(sg.NormalizedAngleInterval.full(), sg.AngleInterval.fromDegrees(la, lb))
        else:
            box = sg.Box.fromDegrees(lo % 360.0, la, hi % 360.0, lb)
        assert box.contains(sg_point(plon % 360.0, plat)) == bool(value), row
        checked += 1
        inside += value
    assert checked > 3000 and 500 < inside < checked - 500


def test_box_special_cases(cur: Any) -> None:
    f = "scisql_s2PtInBox"
    assert call(cur, f, 355.0, 0.0, 350.0, -1.0, 10.0, 1.0) == 1  # wrap through 0
    assert call(cur, f, 5.0, 0.0, 350.0, -1.0, 10.0, 1.0) == 1
    assert call(cur, f, 180.0, 0.0, 350.0, -1.0, 10.0, 1.0) == 0
    assert call(cur, f, 5.0, 0.0, 350.0, -1.0, 370.0, 1.0) == 1  # range reduction
    assert call(cur, f, 5.0, 0.0, -10.0, -1.0, 10.0, 1.0) == 1
    assert call(cur, f, 5.0, 0.0, 10.0, -1.0, -10.0, 1.0) is None  # max < min, max < 0
    assert call(cur, f, 5.0, 0.0, 370.0, -1.0, 10.0, 1.0) is None  # max < min, min > 360
    assert call(cur, f, 123.0, 0.0, 10.0, -1.0, 370.0, 1.0) == 1  # span >= 360
    assert call(cur, f, 123.0, 0.0, 0.0, -1.0, 360.0, 1.0) == 1
    assert call(cur, f, 5.0, 0.0, 0.0, 1.0, 10.0, -1.0) == 0  # latMin > latMax: empty
    assert call(cur, f, 10.0, 1.0, 10.0, 1.0, 20.0, 2.0) == 1  # bounds are inclusive
    assert call(cur, f, 20.0, 2.0, 10.0, 1.0, 20.0, 2.0) == 1
    assert call(cur, f, 0.0, 90.0, 0.0, 80.0, 1.0, 90.0) == 1
    assert call(cur, f, -350.0, 0.0, 5.0, -1.0, 15.0, 1.0) == 1  # point lon reduced too


# ---------------------------------------------------------------------------
# scisql_s2PtInCircle
# ---------------------------------------------------------------------------


def test_circle_random(cur: Any, rng: np.random.Generator) -> None:
    rows = []
    for _ in range(300):
        clon, clat = float(rng.uniform(0.0, 360.0)), float(rng.uniform(-90.0, 90.0))
        radius = float(10.0 ** rng.uniform(-4.0, math.log10(180.0)))
        dist = rng.uniform(0.0, min(1.6 * radius, 180.0), 12)
        pts = offsets(clon, clat, dist, rng.uniform(0.0, 360.0, 12))
        rows += [(p[0], p[1], clon, clat, radius) for p in pts]
    arr = np.array(rows)
    got = np.array(eval_rows(cur, rows, "scisql_s2PtInCircle(c0, c1, c2, c3, c4)"))
    sep = ref_sep(arr[:, 2], arr[:, 3], arr[:, 0], arr[:, 1]).astype(float)
    decidable = np.abs(sep - arr[:, 4]) > 1e-9 * np.maximum(arr[:, 4], 1.0)
    expected = (sep <= arr[:, 4]).astype(int)
    assert np.array_equal(got[decidable], expected[decidable])
    assert decidable.sum() > 3000 and 0.3 < expected.mean() < 0.9
    margin = np.abs(sep - arr[:, 4]) > 1e-7 + 1e-6 * arr[:, 4]
    for row, value, ok in zip(rows, got, margin, strict=True):
        if ok:
            circle = sg.Circle(sg_point(row[2], row[3]), sg.Angle.fromDegrees(row[4]))
            assert circle.contains(sg_point(row[0], row[1])) == bool(value), row


def test_circle_constant_region_paths(cur: Any, rng: np.random.Generator) -> None:
    """Constant radius (cached chord length) and constant centre agree with the reference."""
    for radius in (1e-4, 0.01, 1.0, 37.0, 120.0, 180.0):
        clon, clat = float(rng.uniform(0.0, 360.0)), float(rng.uniform(-80.0, 80.0))
        pts = offsets(
            clon, clat, rng.uniform(0.0, min(2 * radius, 180.0), 300), rng.uniform(0, 360, 300)
        )
        sep = ref_sep(clon, clat, pts[:, 0], pts[:, 1]).astype(float)
        decidable = np.abs(sep - radius) > 1e-9 * max(radius, 1.0)
        expected = (sep <= radius).astype(int)
        rows = [(p[0], p[1], radius) for p in pts]
        const_all = eval_rows(
            cur, rows, f"scisql_s2PtInCircle(c0, c1, {lit(clon)}, {lit(clat)}, {lit(radius)})"
        )
        const_centre = eval_rows(
            cur, rows, f"scisql_s2PtInCircle(c0, c1, {lit(clon)}, {lit(clat)}, c2)"
        )
        assert np.array_equal(np.array(const_all)[decidable], expected[decidable]), radius
        assert np.array_equal(np.array(const_centre)[decidable], expected[decidable]), radius


def test_circle_special_cases(cur: Any) -> None:
    f = "scisql_s2PtInCircle"
    assert call(cur, f, 1.0, 1.0, 1.0, 1.0, 0.0) == 1  # the centre is inside a 0-radius circle
    assert call(cur, f, 1.0, 1.0, 1.0, 1.0, -1e-9) is None  # negative radius
    assert call(cur, f, 1.0, 1.0, 1.0, 1.0, 180.0000001) is None  # radius > 180
    assert call(cur, f, 181.0, -1.0, 1.0, 1.0, 180.0) == 1  # radius 180: everything
    assert call(cur, f, 0.0, 89.5, 180.0, 89.5, 1.0) == 1  # across the pole
    assert call(cur, f, 0.0, 0.0, 359.5, 0.0, 0.50000001) == 1  # across lon 0
    assert call(cur, f, 0.0, 0.0, 359.5, 0.0, 0.49999999) == 0


# ---------------------------------------------------------------------------
# scisql_s2PtInEllipse
# ---------------------------------------------------------------------------


def ellipse_reference(
    lon: np.ndarray,
    lat: np.ndarray,
    clon: float,
    clat: float,
    major: float,
    minor: float,
    pa: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(x/M)^2 + (y/m)^2 of the points' orthographic projection on the tangent plane at the
    centre, x along the major axis (position angle pa east of north); and v . centre."""
    v = unit(lon, lat, LD)
    c = unit(clon, clat, LD)
    north, east = north_east(clon, clat, LD)
    t = LD(pa) * DEG_LD
    a = np.cos(t) * north + np.sin(t) * east
    b = -np.sin(t) * north + np.cos(t) * east
    x = v @ a / (LD(major) / 3600 * DEG_LD)
    y = v @ b / (LD(minor) / 3600 * DEG_LD)
    return (x * x + y * y).astype(float), (v @ c).astype(float)


def test_ellipse_random(cur: Any, rng: np.random.Generator) -> None:
    rows, r2 = [], []
    for k in range(400):
        clon = float(rng.uniform(0.0, 360.0))
        clat = float(rng.uniform(-90.0, 90.0)) if k % 20 else float(rng.choice([-90.0, 90.0]))
        major = float(10.0 ** rng.uniform(-2.0, math.log10(36000.0)))  # arcsec, up to 10 deg
        minor = major * float(rng.uniform(0.01, 1.0))
        pa = float(rng.uniform(-180.0, 360.0))
        pts = offsets(
            clon, clat, rng.uniform(0.0, 1.5 * major * ARCSEC, 10), rng.uniform(0, 360, 10)
        )
        r, _ = ellipse_reference(pts[:, 0], pts[:, 1], clon, clat, major, minor, pa)
        r2 += list(r)
        rows += [(p[0], p[1], clon, clat, major, minor, pa) for p in pts]
    got = np.array(eval_rows(cur, rows, f"scisql_s2PtInEllipse({cols(0, 7)})"))
    r2a = np.array(r2)
    decidable = np.abs(r2a - 1.0) > 1e-6
    expected = (r2a <= 1.0).astype(int)
    assert np.array_equal(got[decidable], expected[decidable])
    assert decidable.sum() > 3500 and 0.2 < expected.mean() < 0.8
    # orientation (east of north) and arcsecond units agree with lsst.sphgeom's true
    # spherical ellipse wherever the two definitions cannot differ (small ellipses,
    # away from the boundary)
    compared = 0
    for row, value, rr in zip(rows, got, r2a, strict=True):
        lon, lat, clon, clat, major, minor, pa = row
        if major > 3600.0 or abs(clat) > 80.0 or abs(rr - 1.0) < 0.01:
            continue
        ellipse = sg.Ellipse(
            sg_point(clon, clat),
            sg.Angle.fromDegrees(major * ARCSEC),
            sg.Angle.fromDegrees(minor * ARCSEC),
            sg.Angle.fromDegrees(pa),
        )
        assert ellipse.contains(sg_point(lon, lat)) == bool(value), row
        compared += 1
    assert compared > 1000


def test_ellipse_constant_ellipse_path(cur: Any, rng: np.random.Generator) -> None:
    for _ in range(10):
        clon, clat = float(rng.uniform(0.0, 360.0)), float(rng.uniform(-89.0, 89.0))
        major = float(10.0 ** rng.uniform(0.0, 4.5))
        minor = major * float(rng.uniform(0.05, 1.0))
        pa = float(rng.uniform(0.0, 180.0))
        pts = offsets(
            clon, clat, rng.uniform(0.0, 1.5 * major * ARCSEC, 300), rng.uniform(0, 360, 300)
        )
        r, _ = ellipse_reference(pts[:, 0], pts[:, 1], clon, clat, major, minor, pa)
        decidable = np.abs(r - 1.0) > 1e-6
        got = np.array(
            eval_rows(
                cur,
                pts,
                f"scisql_s2PtInEllipse(c0, c1, {lit(clon)}, {lit(clat)}, {lit(major)}, "
                f"{lit(minor)}, {lit(pa)})",
            )
        )
        assert np.array_equal(got[decidable], (r <= 1.0).astype(int)[decidable])


def test_ellipse_special_cases(cur: Any) -> None:
    f = "scisql_s2PtInEllipse"
    # semi-axes are in arcseconds; position angle 0 puts the major axis north-south
    assert call(cur, f, 0.0, 0.9, 0.0, 0.0, 3600.0, 360.0, 0.0) == 1
    assert call(cur, f, 0.0, 1.1, 0.0, 0.0, 3600.0, 360.0, 0.0) == 0
    assert call(cur, f, 0.9, 0.0, 0.0, 0.0, 3600.0, 360.0, 0.0) == 0
    assert call(cur, f, 0.9, 0.0, 0.0, 0.0, 3600.0, 360.0, 90.0) == 1  # 90: east-west
    assert call(cur, f, 0.0, 0.9, 0.0, 0.0, 3600.0, 360.0, 90.0) == 0
    assert call(cur, f, 0.5, 0.5, 0.0, 0.0, 3600.0, 360.0, 45.0) == 1  # north-east
    assert call(cur, f, -0.5, 0.5, 0.0, 0.0, 3600.0, 360.0, 45.0) == 0
    assert call(cur, f, -0.5, 0.5, 0.0, 0.0, 3600.0, 360.0, -45.0) == 1
    # a zero semi-minor axis gives an empty ellipse (0 * inf is NaN), as in scisql
    assert call(cur, f, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0) == 0
    # invalid axes -> NULL
    assert call(cur, f, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0) is None  # minor > major
    assert call(cur, f, 0.0, 0.0, 0.0, 0.0, 2.0, -1.0, 0.0) is None  # minor < 0
    assert call(cur, f, 0.0, 0.0, 0.0, 0.0, 36000.001, 1.0, 0.0) is None  # major > 10 deg
    assert call(cur, f, 0.0, 9.9, 0.0, 0.0, 36000.0, 1.0, 0.0) == 1  # major = 10 deg is fine
    # the antipode of the centre is outside (scisql's plain projection would say inside)
    for clon, clat in ((10.0, 20.0), (0.0, 90.0), (200.0, -45.0)):
        alon, alat = (clon + 180.0) % 360.0, -clat
        assert call(cur, f, clon, clat, clon, clat, 36000.0, 18000.0, 30.0) == 1
        assert call(cur, f, alon, alat, clon, clat, 36000.0, 18000.0, 30.0) == 0
        assert call(cur, f, alon + 1.0, alat, clon, clat, 36000.0, 18000.0, 30.0) == 0


# ---------------------------------------------------------------------------
# scisql_s2PtInCPoly / scisql_s2CPolyToBin
# ---------------------------------------------------------------------------


def random_polygon(rng: np.random.Generator, n: int) -> tuple[float, float, float, np.ndarray]:
    """A convex polygon: n vertices on a small circle, in random rotational order."""
    clon, clat = float(rng.uniform(0.0, 360.0)), float(rng.uniform(-90.0, 90.0))
    radius = float(10.0 ** rng.uniform(-3.0, math.log10(60.0)))
    bearings = np.sort(rng.uniform(0.0, 360.0, n))
    verts = offsets(clon, clat, np.full(n, radius), bearings)
    if rng.random() < 0.5:
        verts = verts[::-1]
    return clon, clat, radius, verts


def polygon_reference(verts: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, decidable) from edge half-spaces built in long double."""
    v = unit(verts[:, 0], verts[:, 1], LD)
    normals = np.cross(v, np.roll(v, -1, axis=0))
    normals /= np.linalg.norm(normals, axis=1)[:, None]
    if np.dot(normals[0], v.sum(axis=0)) < 0:  # orient inwards (the centroid is inside)
        normals = -normals
    dots = unit(pts[:, 0], pts[:, 1], LD) @ normals.T
    return np.all(dots >= 0, axis=1), np.min(np.abs(dots), axis=1) > 1e-9


def test_cpoly_3_to_20_vertices(cur: Any, rng: np.random.Generator) -> None:
    total = 0
    for n in range(3, scisql.MAX_VERTICES + 1):
        all_rows: list[tuple[float, ...]] = []
        expected_all: list[np.ndarray] = []
        decidable_all: list[np.ndarray] = []
        for _ in range(3):
            clon, clat, radius, verts = random_polygon(rng, n)
            pts = offsets(clon, clat, rng.uniform(0.0, 1.3 * radius, 80), rng.uniform(0, 360, 80))
            inside, decidable = polygon_reference(verts, pts)
            # constant polygon (cached edges), point from columns
            literals = ", ".join(lit(x) for x in verts.ravel())
            got = np.array(eval_rows(cur, pts, f"scisql_s2PtInCPoly(c0, c1, {literals})"))
            assert np.array_equal(got[decidable], inside[decidable].astype(int)), (n, verts)
            # binary polygon (scisql_s2CPolyToBin) gives the same answers
            got_bin = np.array(
                eval_rows(cur, pts, f"scisql_s2PtInCPoly(c0, c1, scisql_s2CPolyToBin({literals}))")
            )
            assert np.array_equal(got_bin, got)
            # independent check with lsst.sphgeom
            hull = sg.ConvexPolygon.convexHull([sg_point(lo, la) for lo, la in verts])
            for p, value, ok in zip(pts, got, decidable, strict=True):
                if ok:
                    assert hull.contains(sg_point(p[0], p[1])) == bool(value), (n, verts, p)
            all_rows += [(p[0], p[1], *verts.ravel()) for p in pts]
            expected_all.append(inside.astype(int))
            decidable_all.append(decidable)
            total += int(decidable.sum())
        # everything from columns (polygon rebuilt for every row)
        got = np.array(eval_rows(cur, all_rows, f"scisql_s2PtInCPoly({cols(0, 2 + 2 * n)})"))
        expected, decidable = np.concatenate(expected_all), np.concatenate(decidable_all)
        assert np.array_equal(got[decidable], expected[decidable]), n
        assert 0.03 < expected.mean() < 0.97, n
    assert total > 4000


def test_cpoly_constant_point_varying_polygons(cur: Any, rng: np.random.Generator) -> None:
    plon, plat = 123.4, -56.7
    rows, expected, decidable = [], [], []
    for _ in range(500):
        clon, clat = offsets(plon, plat, rng.uniform(0.0, 3.0, 1), rng.uniform(0, 360, 1))[0]
        radius = float(rng.uniform(0.5, 4.0))
        verts = offsets(clon, clat, np.full(4, radius), np.sort(rng.uniform(0, 360, 4)))
        inside, ok = polygon_reference(verts, np.array([[plon, plat]]))
        rows.append(tuple(verts.ravel()))
        expected.append(int(inside[0]))
        decidable.append(bool(ok[0]))
    got = eval_rows(cur, rows, f"scisql_s2PtInCPoly({lit(plon)}, {lit(plat)}, {cols(0, 8)})")
    assert [g for g, ok in zip(got, decidable, strict=True) if ok] == [
        e for e, ok in zip(expected, decidable, strict=True) if ok
    ]
    assert 50 < sum(expected) < 450


def test_cpoly_binary_form(cur: Any, rng: np.random.Generator) -> None:
    clon, clat, radius, verts = random_polygon(rng, 20)
    literals = ", ".join(lit(x) for x in verts.ravel())
    blob = one(cur, f"SELECT scisql_s2CPolyToBin({literals})")
    assert isinstance(blob, bytes) and len(blob) == 24 * 21  # scisql: 24 * (N + 1) bytes
    values = np.array(struct.unpack("<63d", blob)).reshape(21, 3)
    v = unit(verts[:, 0], verts[:, 1])
    assert np.allclose(values[0], v.sum(axis=0), atol=1e-12)  # vertex sum first
    normals = np.cross(v, np.roll(v, -1, axis=0))
    stored = values[1:] / np.linalg.norm(values[1:], axis=1)[:, None]
    normals /= np.linalg.norm(normals, axis=1)[:, None]
    sign = np.sign(np.dot(stored[0], normals[0]))
    assert np.allclose(stored, sign * normals, atol=1e-9)  # edge-plane normals, inward
    assert np.all(stored @ unit(clon, clat) > 0)
    # stored in a VARBINARY column, used from a column
    pts = offsets(clon, clat, rng.uniform(0.0, 1.3 * radius, 500), rng.uniform(0, 360, 500))
    inside, decidable = polygon_reference(verts, pts)
    cur.execute("DROP TEMPORARY TABLE IF EXISTS polys")
    cur.execute(
        "CREATE TEMPORARY TABLE polys (id INT, ra DOUBLE, decl DOUBLE, poly VARBINARY(600))"
    )
    cur.executemany(
        "INSERT INTO polys VALUES (%s, %s, %s, %s)",
        [(i, float(p[0]), float(p[1]), blob) for i, p in enumerate(pts)],
    )
    cur.execute("SELECT scisql_s2PtInCPoly(ra, decl, poly) FROM polys ORDER BY id")
    got = np.array([r[0] for r in cur.fetchall()])
    assert np.array_equal(got[decidable], inside[decidable].astype(int))
    # triangles: small and 3-vertex extreme
    tri = one(cur, "SELECT scisql_s2CPolyToBin(0, 0, 10, 0, 0, 10)")
    assert len(tri) == 96
    assert one(cur, "SELECT scisql_s2PtInCPoly(1, 1, %s)", (tri,)) == 1
    assert one(cur, "SELECT scisql_s2PtInCPoly(9, 9, %s)", (tri,)) == 0
    # malformed byte strings -> NULL; NULL polygon -> 0
    assert one(cur, "SELECT scisql_s2PtInCPoly(1, 1, %s)", (tri[:-1],)) is None
    assert one(cur, "SELECT scisql_s2PtInCPoly(1, 1, %s)", (tri[:72],)) is None
    assert one(cur, "SELECT scisql_s2PtInCPoly(1, 1, 'abc')") is None
    assert one(cur, "SELECT scisql_s2PtInCPoly(1, 1, CAST(NULL AS BINARY))") == 0
    assert one(cur, "SELECT scisql_s2PtInCPoly(1, 91, %s)", (tri,)) is None
    # scisql_s2CPolyToBin NULL rules
    assert one(cur, "SELECT scisql_s2CPolyToBin(0, 0, 10, 0, 0, NULL)") is None
    assert one(cur, "SELECT scisql_s2CPolyToBin(0, 0, 10, 0, 0, 91)") is None


def test_cpoly_special_cases(cur: Any) -> None:
    f = "scisql_s2PtInCPoly"
    square = (5.0, 15.0, 15.0, 15.0, 15.0, 25.0, 5.0, 25.0)
    assert call(cur, f, 10.0, 20.0, *square) == 1
    assert call(cur, f, 10.0, 20.0, *_reverse_pairs(square)) == 1  # clockwise
    assert call(cur, f, 20.0, 20.0, *square) == 0
    assert call(cur, f, 190.0, -20.0, *square) == 0  # antipodal point
    # a polygon around the pole and one across lon 0
    cap = (0.0, 80.0, 90.0, 80.0, 180.0, 80.0, 270.0, 80.0)
    assert call(cur, f, 45.0, 89.0, *cap) == 1 and call(cur, f, 45.0, 79.0, *cap) == 0
    wrap = (355.0, -5.0, 5.0, -5.0, 5.0, 5.0, 355.0, 5.0)
    assert call(cur, f, 0.0, 0.0, *wrap) == 1 and call(cur, f, 180.0, 0.0, *wrap) == 0
    twenty = [x for k in range(20) for x in (18.0 * k, 60.0)]
    assert call(cur, f, 0.0, 70.0, *twenty) == 1 and call(cur, f, 0.0, 50.0, *twenty) == 0
    assert call(cur, f, 0.0, 70.0, *([None] + twenty[1:])) == 0


def _reverse_pairs(flat: Sequence[float]) -> list[float]:
    pairs = [flat[i : i + 2] for i in range(0, len(flat), 2)]
    return [x for pair in reversed(pairs) for x in pair]


# ---------------------------------------------------------------------------
# photometry
# ---------------------------------------------------------------------------


def test_photometry_reference_values(cur: Any) -> None:
    def f(name: str, *args: float | None) -> Any:
        return call(cur, name, *args)

    # the values tested by scisql's own testPhotometry.py
    assert f("scisql_fluxToAbMag", 3630.780547701e-23) == pytest.approx(0.0, abs=1e-12)
    assert f("scisql_fluxToAbMag", 1.0) == pytest.approx(-48.6, rel=1e-15)
    assert f("scisql_fluxToAbMag", 100.0) == pytest.approx(-53.6, rel=1e-15)
    assert f("scisql_fluxToAbMagSigma", 1 / math.log(10), 2.0) == pytest.approx(5.0, rel=1e-15)
    assert f("scisql_abMagToFlux", 0.0) == pytest.approx(3630.780547701e-23, rel=1e-12)
    assert f("scisql_abMagToFlux", -48.6) == pytest.approx(1.0, rel=1e-15)
    assert f("scisql_abMagToFluxSigma", -48.6, 5 / math.log(10)) == pytest.approx(2.0, rel=1e-15)
    assert f("scisql_nanojanskyToAbMag", 1.0) == pytest.approx(31.4, rel=1e-15)
    assert f("scisql_nanojanskyToAbMag", 3630.780547701e9) == pytest.approx(0.0, abs=1e-12)
    assert f("scisql_nanojanskyToAbMagSigma", 1 / math.log(10), 2.0) == pytest.approx(5.0)
    assert f("scisql_abMagToNanojansky", 21.4) == pytest.approx(10000.0, rel=1e-14)
    assert f("scisql_abMagToNanojanskySigma", 31.4, 5 / math.log(10)) == pytest.approx(2.0)
    # flux <= 0, negative sigma -> NULL
    for name in ("scisql_fluxToAbMag", "scisql_nanojanskyToAbMag"):
        assert f(name, 0.0) is None and f(name, -1.0) is None and f(name, -0.0) is None
    for name in ("scisql_fluxToAbMagSigma", "scisql_nanojanskyToAbMagSigma"):
        assert f(name, 0.0, 1.0) is None and f(name, -1.0, 1.0) is None
        assert f(name, 1.0, -1e-300) is None and f(name, 1.0, 0.0) == 0.0
    for name in ("scisql_abMagToFluxSigma", "scisql_abMagToNanojanskySigma"):
        assert f(name, 20.0, -0.1) is None and f(name, 20.0, 0.0) == 0.0
    # results that overflow are NULL; underflow to 0 is a value
    assert f("scisql_abMagToFlux", -1000.0) is None
    assert f("scisql_abMagToFlux", 1000.0) == 0.0
    assert f("scisql_abMagToNanojanskySigma", -1000.0, 1.0) is None
    assert f("scisql_fluxToAbMagSigma", 1e-300, 1e300) is None


def test_photometry_random(cur: Any, rng: np.random.Generator) -> None:
    n = 2000
    flux = 10.0 ** rng.uniform(-40.0, -20.0, n)
    sigma = flux * 10.0 ** rng.uniform(-4.0, 1.0, n)
    mag = rng.uniform(-5.0, 40.0, n)
    msig = 10.0 ** rng.uniform(-4.0, 0.0, n)
    njy = flux * 1e32  # erg/cm^2/s/Hz -> nJy
    rows = np.stack([flux, sigma, mag, msig, njy, njy * sigma / flux], -1)
    exprs = {
        "scisql_fluxToAbMag(c0)": -2.5 * np.log10(flux) - 48.6,
        "scisql_fluxToAbMagSigma(c0, c1)": 2.5 / math.log(10) * sigma / flux,
        "scisql_abMagToFlux(c2)": 10.0 ** (-0.4 * (mag + 48.6)),
        "scisql_abMagToFluxSigma(c2, c3)": msig
        * 10.0 ** (-0.4 * (mag + 48.6))
        * math.log(10)
        / 2.5,
        "scisql_nanojanskyToAbMag(c4)": -2.5 * np.log10(njy) + 31.4,
        "scisql_nanojanskyToAbMagSigma(c4, c5)": 2.5 / math.log(10) * (njy * sigma / flux) / njy,
        "scisql_abMagToNanojansky(c2)": 10.0 ** (-0.4 * (mag - 31.4)),
        "scisql_abMagToNanojanskySigma(c2, c3)": msig
        * 10.0 ** (-0.4 * (mag - 31.4))
        * math.log(10)
        / 2.5,
    }
    for expr, expected in exprs.items():
        got = np.array(eval_rows(cur, rows, expr), dtype=np.float64)
        assert np.allclose(got, expected, rtol=1e-13, atol=0.0), expr
    # the two flux scales agree: 1 nJy = 1e-32 erg/cm^2/s/Hz
    got_cgs = np.array(eval_rows(cur, rows, "scisql_fluxToAbMag(c0)"), dtype=np.float64)
    got_njy = np.array(eval_rows(cur, rows, "scisql_nanojanskyToAbMag(c4)"), dtype=np.float64)
    assert np.allclose(got_cgs, got_njy, rtol=0.0, atol=1e-12)
