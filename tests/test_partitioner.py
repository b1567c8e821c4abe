"""Proof that ingest.partitioner reproduces Qserv's spherical partitioning.

* the chunk/sub-chunk ids and overlap rows Qserv produced for the
  ``qserv-test101`` sample (Object chunk 7480 and the overlaps of 7480, 7310);
* ``lsst.sphgeom.Chunker`` (chunk enumeration, boxes, point location) on random
  points, poles, the 0/360 seam and stripe/chunk boundaries;
* a brute-force overlap reference built from sphgeom's sub-chunk geometry.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import lsst.sphgeom as sg
import numpy as np
import pytest

from ingest.partitioner import Chunker

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
TEST101 = DATASETS / "qserv-test101"
needs_test101 = pytest.mark.skipif(
    not (TEST101 / "data" / "Object").is_dir(),
    reason=f"Qserv sample dataset not found at {TEST101} (needs /work/shared/datasets/qserv-test101)",
)

Row = list[str]


# --------------------------------------------------------------- dataset helpers


def _test101() -> tuple[Chunker, dict[str, int], dict[str, list[Row]]]:
    db = json.loads((TEST101 / "database_test101.json").read_text())
    table = json.loads((TEST101 / "table_Object.json").read_text())
    cols = {c["name"]: i for i, c in enumerate(table["schema"])}
    idx = {
        "id": cols[table["director_key"]],
        "lon": cols[table["longitude_key"]],
        "lat": cols[table["latitude_key"]],
        "chunk": cols["chunkId"],
        "sub": cols["subChunkId"],
    }
    sep = table["fields_terminated_by"]
    files = {}
    for name in ("chunk_7480", "chunk_7480_overlap", "chunk_7310_overlap"):
        lines = (TEST101 / "data" / "Object" / f"{name}.txt").read_text().splitlines()
        files[name] = [line.split(sep) for line in lines]
        assert all(len(r) == len(cols) for r in files[name])
    chunker = Chunker(db["num_stripes"], db["num_sub_stripes"], db["overlap"])
    return chunker, idx, files


def _positions(rows: list[Row], idx: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    lon = np.array([float(r[idx["lon"]]) for r in rows])
    lat = np.array([float(r[idx["lat"]]) for r in rows])
    return lon, lat


@needs_test101
def test_reproduces_chunk_and_sub_chunk_ids_of_chunk_7480() -> None:
    chunker, idx, files = _test101()
    rows = files["chunk_7480"]
    assert len(rows) == 1000
    chunk, sub = chunker.locate(*_positions(rows, idx))
    assert chunk.dtype == np.int64 and sub.dtype == np.int32
    np.testing.assert_array_equal(chunk, [int(r[idx["chunk"]]) for r in rows])
    np.testing.assert_array_equal(sub, [int(r[idx["sub"]]) for r in rows])


@needs_test101
def test_overlap_rows_are_copies_of_chunk_7480_rows() -> None:
    """What makes the overlap proof exact: the sample's whole input is chunk_7480.txt.

    Every overlap row equals a row of chunk_7480.txt except for the chunkId and
    subChunkId columns, so the overlap files can be recomputed from it.
    """
    _, idx, files = _test101()
    by_id = {r[idx["id"]]: r for r in files["chunk_7480"]}
    keep = [i for i in range(len(files["chunk_7480"][0])) if i not in (idx["chunk"], idx["sub"])]
    for name in ("chunk_7480_overlap", "chunk_7310_overlap"):
        assert files[name]
        for r in files[name]:
            assert [r[i] for i in keep] == [by_id[r[idx["id"]]][i] for i in keep]


@needs_test101
def test_overlap_files_match_exactly_both_ways() -> None:
    chunker, idx, files = _test101()
    expected: collections.Counter[tuple[str, int, int]] = collections.Counter()
    for name, chunk_id in (("chunk_7480_overlap", 7480), ("chunk_7310_overlap", 7310)):
        rows = files[name]
        assert {int(r[idx["chunk"]]) for r in rows} == {chunk_id}
        # (a) each row, at its own position, is in the overlap of (its chunkId, subChunkId).
        row, chunk, sub = chunker.overlap_locations(*_positions(rows, idx))
        found = set(zip(row.tolist(), chunk.tolist(), sub.tolist(), strict=True))
        for i, r in enumerate(rows):
            assert (i, int(r[idx["chunk"]]), int(r[idx["sub"]])) in found, r[idx["id"]]
        expected.update((r[idx["id"]], int(r[idx["chunk"]]), int(r[idx["sub"]])) for r in rows)
    # (b) every overlap location computed for any row we have is in the files,
    # with the same multiplicity, and the input rows produce no other chunk.
    all_rows = {r[idx["id"]]: r for f in files.values() for r in f}
    ids = list(all_rows)
    row, chunk, sub = chunker.overlap_locations(*_positions(list(all_rows.values()), idx))
    got = collections.Counter(
        (ids[i], c, s) for i, c, s in zip(row.tolist(), chunk.tolist(), sub.tolist(), strict=True)
    )
    assert got == expected
    assert set(chunk.tolist()) == {7480, 7310}
    # Qserv's FullOverlap holds same-chunk sub-chunk overlaps too: all 7480 rows
    # are same-chunk, only the 7310 copies come from another chunk.
    row, chunk, sub = chunker.overlap_locations(
        *_positions(files["chunk_7480"], idx), other_chunks_only=True
    )
    assert set(chunk.tolist()) == {7310} and len(row) == len(files["chunk_7310_overlap"])
    r2, c2, s2 = chunker.sub_chunk_overlap_locations(*_positions(files["chunk_7480"], idx))
    assert len(r2) == sum(expected.values())


# ------------------------------------------------------------ sphgeom agreement

CONFIGS = [(85, 12), (18, 5), (340, 3), (1, 1), (7, 4)]


@pytest.mark.parametrize(("ns", "nss"), CONFIGS)
def test_chunk_enumeration_and_boxes_match_sphgeom(ns: int, nss: int) -> None:
    ours, ref = Chunker(ns, nss), sg.Chunker(ns, nss)
    chunk_ids = ours.chunk_ids()
    np.testing.assert_array_equal(chunk_ids, ref.getAllChunks())
    rng = np.random.default_rng(ns * 100 + nss)
    sample = chunk_ids if len(chunk_ids) <= 400 else rng.choice(chunk_ids, 400, replace=False)
    tol = 1e-8  # sphgeom boxes are dilated by ~5e-12 rad (+ rounding in radians)
    for cid in sample.tolist():
        np.testing.assert_array_equal(ours.sub_chunk_ids(cid), ref.getAllSubChunks(cid))
        stripe = ref.getStripe(cid)
        box = ref.getChunkBoundingBox(stripe, ref.getChunk(cid, stripe))
        lon_min, lon_max, lat_min, lat_max = ours.chunk_box(cid)
        lon, lat = box.getLon(), box.getLat()
        assert abs(lat.getA().asDegrees() - lat_min) < tol
        assert abs(lat.getB().asDegrees() - lat_max) < tol
        if lon.isFull():
            assert (lon_min, lon_max) == (0.0, 360.0)
        else:
            for a, b in ((lon.getA().asDegrees(), lon_min), (lon.getB().asDegrees(), lon_max)):
                assert abs((a - b + 180.0) % 360.0 - 180.0) < tol
        # A point well inside every sub-chunk is located in that sub-chunk.
        subs = ours.sub_chunk_ids(cid)
        boxes = np.array([ours.sub_chunk_box(cid, int(s)) for s in subs])
        got_c, got_s = ours.locate(boxes[:, :2].mean(axis=1), boxes[:, 2:].mean(axis=1))
        assert (got_c == cid).all()
        np.testing.assert_array_equal(got_s, subs)
    with pytest.raises(ValueError):
        ours.chunk_box(int(chunk_ids.max()) + 2 * ns)


def _special_points(ours: Chunker, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poles, the 0/360 seam and points on / next to stripe and chunk boundaries."""
    lat_edges = [-90.0, 90.0, 90.0 - 1e-12, -90.0 + 1e-12, 89.9999999, -89.9999999, 0.0]
    lon_edges = [0.0, 359.9999999, 360.0, -1e-9, -1e-20, -180.0, 720.5, -359.5, 1e-12]
    lons, lats = [], []
    for lat in lat_edges:
        lons += lon_edges + list(rng.uniform(0, 360, 10))
        lats += [lat] * (len(lon_edges) + 10)
    ids = ours.chunk_ids()
    stripe = ids // (2 * ours.num_stripes)
    seam = (np.diff(stripe, prepend=-1) != 0) | (np.diff(stripe, append=stripe[-1] + 1) != 0)
    polar = (stripe <= 1) | (stripe >= ours.num_stripes - 2)
    chosen = np.union1d(ids[seam | polar], rng.choice(ids, min(300, ids.size), replace=False))
    for cid in chosen.tolist():
        lon_min, lon_max, lat_min, lat_max = ours.chunk_box(cid)
        for dlat in (0.0, 1e-8, -1e-8):
            for dlon in (0.0, 1e-8, -1e-8):
                for lat in (lat_min, lat_max):
                    lons += [lon_min + dlon, rng.uniform(lon_min, lon_max)]
                    lats += [lat + dlat, lat + dlat]
                lons.append(lon_min + dlon)
                lats.append(rng.uniform(lat_min, lat_max))
    return np.array(lons), np.clip(np.array(lats), -90.0, 90.0)


@pytest.mark.parametrize(
    ("ns", "nss", "n_random"), [(85, 12, 100_000), (18, 5, 20_000), (340, 3, 20_000)]
)
def test_locate_matches_sphgeom_chunker(ns: int, nss: int, n_random: int) -> None:
    ours, ref = Chunker(ns, nss), sg.Chunker(ns, nss)
    rng = np.random.default_rng(ns + nss)
    lon = rng.uniform(-720.0, 720.0, n_random)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n_random)))
    lat[:1000] = rng.uniform(89.0, 90.0, 1000) * rng.choice([-1.0, 1.0], 1000)
    s_lon, s_lat = _special_points(ours, rng)
    lon, lat = np.concatenate([lon, s_lon]), np.concatenate([lat, s_lat])
    chunk, sub = ours.locate(lon, lat)
    ambiguous = 0
    for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)):
        point = sg.Box(sg.LonLat.fromDegrees(x, y))
        # sphgeom returns every chunk within ~1e-11 rad: 2+ chunks on a boundary.
        candidates = ref.getChunksIntersecting(point)
        assert int(chunk[i]) in candidates, (x, y, candidates)
        ambiguous += len(candidates) > 1
        if i % 5 == 0 or i >= n_random:
            subs = dict(ref.getSubChunksIntersecting(point))
            assert int(sub[i]) in subs[int(chunk[i])], (x, y, subs)
    assert ambiguous < len(s_lon)  # only points placed exactly on a boundary are ambiguous
    # Longitude normalisation into [0, 360) and latitude clamping into [-90, 90].
    same = ours.locate([-90.0, 270.0, 630.0, -450.0], [12.3] * 4)[0]
    assert (same == same[0]).all()
    np.testing.assert_array_equal(
        ours.locate([0.0, 360.0, 720.0, -360.0], [95.0, 90.0, 1e9, np.inf])[0],
        ours.locate([0.0, 0.0, 0.0, 0.0], [90.0, 90.0, 90.0, 90.0])[0],
    )


def test_exact_boundaries_are_half_open() -> None:
    """Where the arithmetic is exact, a boundary belongs to the upper stripe / next chunk."""
    ours = Chunker(18, 5)  # 10-degree stripes, 2-degree sub-stripes
    lat = np.arange(-90.0, 90.0, 10.0)
    chunk, _ = ours.locate(np.zeros_like(lat), lat)
    np.testing.assert_array_equal(chunk // 36, np.arange(18))
    assert ours.locate([0.0], [90.0])[0][0] // 36 == 17
    assert ours.locate([0.0], [-90.0])[0][0] == 0
    # Polar stripes are a single chunk; the seam belongs to chunk 0, 359.99... to the last.
    assert ours.chunk_box(0) == (0.0, 360.0, -90.0, -80.0)
    c, _ = ours.locate([0.0, 360.0, -0.0, 359.9999999], [45.0] * 4)
    n = int((ours.chunk_ids() // 36 == 13).sum())
    np.testing.assert_array_equal(c, [13 * 36, 13 * 36, 13 * 36, 13 * 36 + n - 1])


def test_validation() -> None:
    for args in ((0, 1, 0.0), (1, 0, 0.0), (85, 12, -1.0), (85, 12, 11.0), (85, 12, 0.2)):
        with pytest.raises(ValueError):
            Chunker(*args)
    with pytest.raises(ValueError):
        Chunker(85, 12).locate([np.nan], [0.0])
    empty = Chunker(85, 12, 0.0).overlap_locations([1.0, 2.0], [3.17, 0.0])
    assert all(len(a) == 0 for a in empty)


# ----------------------------------------------------------- brute-force overlap


def _sub_stripe_widths(ns: int, nss: int) -> np.ndarray:
    """Sub-chunk width (deg) of every sub-stripe, from sphgeom's sub-chunk 0 box."""
    ref = sg.Chunker(ns, nss)
    widths = []
    for ss in range(ns * nss):
        lon = ref.getSubChunkBoundingBox(ss, 0).getLon()  # dilated by ~1e-11 rad
        widths.append(360.0 / round(360.0 / (360.0 if lon.isFull() else lon.getSize().asDegrees())))
    return np.array(widths)


def _reference_overlaps(
    ns: int, nss: int, overlap: float, lon: np.ndarray, lat: np.ndarray
) -> tuple[set[tuple[int, int, int]], np.ndarray]:
    """Brute-force Qserv overlap from sphgeom's geometry; returns (locations, ambiguous).

    A point is in the overlap of a sub-chunk S (not its own) when it lies in S's
    box widened by ``overlap`` in latitude and by sphgeom's ``halfWidthForCircle
    (overlap, max |lat| of S's sub-stripe)`` in longitude (Qserv's maxAlpha).
    The overlap of a chunk is the union of those of its sub-chunks, i.e. the
    chunk box widened, sub-stripe by sub-stripe, the same way.  Every sub-chunk
    of the three nearest sub-stripes is tested; the ids of a sub-chunk are those
    of its centre.  Points within 1e-9 deg of an edge are flagged ambiguous.
    """
    ours, n_ss, h, tol = Chunker(ns, nss, overlap), ns * nss, 180.0 / (ns * nss), 1e-9
    widths = _sub_stripe_widths(ns, nss)
    lon = lon % 360.0
    ss0 = np.minimum(np.floor((lat + 90.0) / h).astype(int), n_ss - 1)
    ambiguous = np.zeros(lon.size, dtype=bool)
    found: set[tuple[int, int, int]] = set()
    radius = sg.Angle.fromDegrees(overlap)
    for ss in np.unique(np.concatenate([ss0 - 1, ss0, ss0 + 1])).tolist():
        pts = np.flatnonzero(np.abs(ss0 - ss) <= 1)
        if not 0 <= ss < n_ss:
            continue
        width, lat_min, lat_max = widths[ss], ss * h - 90.0, (ss + 1) * h - 90.0
        max_lat = sg.Angle.fromDegrees(max(abs(lat_min), abs(lat_max)))
        alpha = sg.Box.halfWidthForCircle(radius, max_lat).asDegrees()
        n_sc = round(360.0 / width)
        x, y = lon[pts, None], lat[pts]
        c = (x - np.arange(n_sc) * width) % 360.0  # eastward offset from each sub-chunk's west edge
        dist = np.where(c <= width, 0.0, np.minimum(360.0 - c, c - width))
        in_lat = (y >= lat_min - overlap) & (y <= lat_max + overlap)
        own = (ss0[pts] == ss)[:, None] & (np.floor(x / width) == np.arange(n_sc))
        hit = in_lat[:, None] & (dist <= alpha) & ~own
        edge = (np.abs(dist - alpha) < tol).any(axis=1) | (np.abs(c % width) < tol).any(axis=1)
        edge |= (np.abs(c % width - width) < tol).any(axis=1)
        edge &= in_lat
        for bound in (lat_min - overlap, lat_max + overlap, lat_min, lat_max):
            if abs(bound) < 90.0:  # the poles are not edges
                edge |= np.abs(y - bound) < tol
        ambiguous[pts] |= edge
        pi, sci = np.nonzero(hit)
        if pi.size:
            cc, cs = ours.locate((sci + 0.5) * width, np.full(sci.size, (lat_min + lat_max) / 2))
            found.update(zip(pts[pi].tolist(), cc.tolist(), cs.tolist(), strict=True))
    return found, ambiguous


def _sample(
    ns: int, nss: int, overlap: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points, points near sub-chunk edges and corners, polar caps, the seam."""
    h, widths = 180.0 / (ns * nss), _sub_stripe_widths(ns, nss)
    lat = rng.uniform(-90.0, 90.0, n)
    lon = rng.uniform(0.0, 360.0, n)
    ss = np.minimum(np.floor((lat + 90.0) / h).astype(int), ns * nss - 1)
    # snap to the south edge, the north edge or keep; then jitter by ~2 overlaps
    snap = rng.integers(0, 3, n)
    lat = np.where(snap == 0, ss * h - 90.0, np.where(snap == 1, (ss + 1) * h - 90.0, lat))
    lat = np.clip(lat + rng.uniform(-2 * overlap, 2 * overlap, n), -90.0, 90.0)
    w = widths[ss]
    span = 2 * overlap / np.maximum(np.cos(np.radians(np.abs(lat) + h)), 1e-3)
    snap = rng.integers(0, 3, n)
    edge = (np.floor(lon / w) + (snap == 1)) * w
    lon = np.where(snap == 2, lon, edge + rng.uniform(-1.0, 1.0, n) * np.minimum(span, w))
    k = n // 10
    lat[:k] = rng.uniform(90.0 - 3 * h, 90.0, k) * rng.choice([-1.0, 1.0], k)  # polar caps
    lon[k : 2 * k] = rng.uniform(-3 * overlap, 3 * overlap, k)  # the 0/360 seam
    lon[2 * k : 3 * k] = rng.uniform(0.0, 360.0, k)  # uniform
    lat[2 * k : 3 * k] = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, k)))
    return lon, lat


@pytest.mark.parametrize(
    ("ns", "nss", "overlap", "n"),
    [(85, 12, 0.01667, 12_000), (18, 5, 0.5, 20_000), (340, 3, 0.05, 6_000), (7, 4, 1.0, 20_000)],
)
def test_overlap_matches_brute_force(ns: int, nss: int, overlap: float, n: int) -> None:
    ours = Chunker(ns, nss, overlap)
    lon, lat = _sample(ns, nss, overlap, n, np.random.default_rng(7 * ns + nss))
    expected, ambiguous = _reference_overlaps(ns, nss, overlap, lon, lat)
    assert ambiguous.sum() < 0.001 * n
    row, chunk, sub = ours.overlap_locations(lon, lat)
    assert (np.diff(row) >= 0).all()
    triples = list(zip(row.tolist(), chunk.tolist(), sub.tolist(), strict=True))
    assert len(set(triples)) == len(triples)  # no duplicate copies in these configurations
    keep = ~ambiguous
    got = {t for t in triples if keep[t[0]]}
    assert got == {t for t in expected if keep[t[0]]}
    assert len(got) > 0.3 * n  # the sample really exercises the overlaps
    # Chunk level: overlaps of OTHER chunks, i.e. what a chunk needs from its neighbours.
    own, _ = ours.locate(lon, lat)
    r2, c2, _ = ours.overlap_locations(lon, lat, other_chunks_only=True)
    other = {(r, c) for r, c in zip(r2.tolist(), c2.tolist(), strict=True) if keep[r]}
    assert other == {(r, c) for r, c, _ in expected if keep[r] and c != own[r]}
    assert 0.05 * n < len(other) < len(got)
