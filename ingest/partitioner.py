"""Spherical partitioning of (lon, lat) positions into Qserv chunks and sub-chunks.

Owns the sky partitioning scheme that every table of a Skyshard database shares,
reproducing bit for bit what Qserv's partitioner (``sph-partition``, C++ class
``lsst::partition::Chunker`` in ``src/partition/Chunker.cc``) computes:

* the sky is cut into ``num_stripes`` latitude stripes of height 180/num_stripes
  degrees, each stripe into ``num_sub_stripes`` sub-stripes;
* a stripe (sub-stripe) is cut into ``segments(latMin, latMax, height)`` chunks
  (sub-chunks per chunk = ``segments(...) // chunks``) of equal longitude width;
  ``segments`` uses the largest ``|lat|`` of the band, so a band touching a pole
  has a single chunk;
* ``chunkId = stripe * 2 * num_stripes + chunk`` and ``subChunkId =
  subStripeInStripe * maxSubChunksPerChunk + subChunkInChunk``;
* the overlap of a sub-chunk is its box widened by ``overlap`` degrees in
  latitude and by ``alpha = maxAlpha(overlap, max |lat| of its sub-stripe)``
  degrees in longitude.  Qserv writes a copy of a row for every sub-chunk, of
  any chunk including the row's own, whose overlap holds the row; those copies
  (carrying the chunk and sub-chunk whose overlap they are in) make up
  ``<Table>FullOverlap_<chunkId>``.

All geometry is numpy-vectorised; only the per-sub-stripe tables are built with
a Python loop (with the ``math`` module, i.e. the same libm as the C++ code).
It does not read or write files: the loader decides what to do with the ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Chunker"]

_DEG_PER_RAD = 57.2957795130823208767981548141
_RAD_PER_DEG = 0.0174532925199432957692369076849
_EPSILON_DEG = 0.001 / 3600  # 1 mas, Qserv's clampLon tolerance

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Locations = tuple[IntArray, IntArray, npt.NDArray[np.int32]]


def _segments(lat_min: float, lat_max: float, width: float) -> int:
    """Qserv ``segments()``: number of equal-width pieces of a latitude band."""
    lat = max(abs(lat_min), abs(lat_max))
    if lat > 90.0 - 1 / 3600.0 or width >= 180.0:
        return 1
    lat *= _RAD_PER_DEG
    cw = math.cos(width * _RAD_PER_DEG)
    sl = math.sin(lat)
    cl = math.cos(lat)
    x = cw - sl * sl
    u = cl * cl
    y = math.sqrt(abs(u * u - x * x))
    return int(math.floor(360.0 / abs(_DEG_PER_RAD * math.atan2(y, x))))


def _max_alpha(r: float, center_lat: float) -> float:
    """Qserv ``maxAlpha()``: half-width in longitude of a circle of radius r."""
    if r == 0.0:
        return 0.0
    lat = min(max(center_lat, -90.0), 90.0)
    if abs(lat) + r > 90.0 - 1 / 3600.0:
        return 180.0
    r *= _RAD_PER_DEG
    lat *= _RAD_PER_DEG
    y = math.sin(r)
    x = math.sqrt(abs(math.cos(lat - r) * math.cos(lat + r)))
    return _DEG_PER_RAD * abs(math.atan(y / x))


def _clamp_lon(lon: FloatArray) -> FloatArray:
    return np.where(lon > 360.0 - _EPSILON_DEG, 360.0, lon)


@dataclass(frozen=True)
class Chunker:
    """Qserv partitioning with ``num_stripes`` stripes of ``num_sub_stripes`` sub-stripes.

    ``overlap`` is the overlap radius in degrees (Qserv's ``part.overlap``).
    Positions are in degrees; longitudes are reduced into [0, 360) and
    latitudes clamped into [-90, 90] before locating them.
    """

    num_stripes: int
    num_sub_stripes: int
    overlap: float = 0.0
    _chunks_per_stripe: IntArray = field(init=False, repr=False, compare=False)
    _sub_chunks_per_chunk: IntArray = field(init=False, repr=False, compare=False)
    _sub_chunk_width: FloatArray = field(init=False, repr=False, compare=False)
    _alpha: FloatArray = field(init=False, repr=False, compare=False)
    _max_sub_chunks: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ns, nss, overlap = self.num_stripes, self.num_sub_stripes, float(self.overlap)
        if ns < 1 or nss < 1:
            raise ValueError("num_stripes and num_sub_stripes must be positive")
        if ns * nss > 180 * 3600:
            raise ValueError("sub-stripes are thinner than 1 arcsecond")
        if not 0.0 <= overlap <= 10.0:
            raise ValueError("overlap must lie in [0, 10] degrees")
        stripe_height = 180.0 / ns
        ss_height = 180.0 / (ns * nss)
        if ss_height < overlap:
            raise ValueError("overlap is larger than the sub-stripe height")
        chunks = np.empty(ns, dtype=np.int64)
        sub_chunks = np.empty(ns * nss, dtype=np.int64)
        width = np.empty(ns * nss, dtype=np.float64)
        alpha = np.empty(ns * nss, dtype=np.float64)
        for i in range(ns):
            nc = _segments(i * stripe_height - 90.0, (i + 1) * stripe_height - 90.0, stripe_height)
            chunks[i] = nc
            for j in range(nss):
                ss = i * nss + j
                lat_min = ss * ss_height - 90.0
                lat_max = (ss + 1) * ss_height - 90.0
                nsc = _segments(lat_min, lat_max, ss_height) // nc
                sub_chunks[ss] = nsc
                width[ss] = 360.0 / (nsc * nc)
                alpha[ss] = _max_alpha(overlap, max(abs(lat_min), abs(lat_max)))
                if alpha[ss] > width[ss]:
                    raise ValueError("overlap is larger than the sub-chunk width")
        object.__setattr__(self, "_chunks_per_stripe", chunks)
        object.__setattr__(self, "_sub_chunks_per_chunk", sub_chunks)
        object.__setattr__(self, "_sub_chunk_width", width)
        object.__setattr__(self, "_alpha", alpha)
        object.__setattr__(self, "_max_sub_chunks", int(sub_chunks.max()))

    # ------------------------------------------------------------------ ids

    @property
    def _ss_height(self) -> float:
        return 180.0 / (self.num_stripes * self.num_sub_stripes)

    def _chunk_id(self, stripe: IntArray, chunk: IntArray) -> IntArray:
        return stripe * (2 * self.num_stripes) + chunk

    def _sub_chunk_id(
        self, stripe: IntArray, ss: IntArray, chunk: IntArray, sc: IntArray
    ) -> npt.NDArray[np.int32]:
        local = (ss - stripe * self.num_sub_stripes) * self._max_sub_chunks
        return (local + sc - chunk * self._sub_chunks_per_chunk[ss]).astype(np.int32)

    def _stripe_chunk(self, chunk_id: int) -> tuple[int, int]:
        stripe, chunk = divmod(int(chunk_id), 2 * self.num_stripes)
        if not (0 <= stripe < self.num_stripes and chunk < self._chunks_per_stripe[stripe]):
            raise ValueError(f"invalid chunk id {chunk_id}")
        return stripe, chunk

    def chunk_ids(self) -> IntArray:
        """Every chunk id on the sky, ascending."""
        ns = self.num_stripes
        return np.concatenate(
            [
                s * 2 * ns + np.arange(n, dtype=np.int64)
                for s, n in enumerate(self._chunks_per_stripe)
            ]
        )

    def sub_chunk_ids(self, chunk_id: int) -> npt.NDArray[np.int32]:
        """Every sub-chunk id of ``chunk_id``, ascending (Qserv ``getSubChunks``)."""
        stripe, _ = self._stripe_chunk(chunk_id)
        first = stripe * self.num_sub_stripes
        counts = self._sub_chunks_per_chunk[first : first + self.num_sub_stripes]
        return np.concatenate(
            [j * self._max_sub_chunks + np.arange(n, dtype=np.int32) for j, n in enumerate(counts)]
        ).astype(np.int32)

    def chunk_box(self, chunk_id: int) -> tuple[float, float, float, float]:
        """``(lon_min, lon_max, lat_min, lat_max)`` of a chunk (Qserv ``getChunkBounds``)."""
        stripe, chunk = self._stripe_chunk(chunk_id)
        width = 360.0 / float(self._chunks_per_stripe[stripe])
        nss, h = self.num_sub_stripes, self._ss_height
        lon_max = (chunk + 1) * width
        return (
            chunk * width,
            360.0 if lon_max > 360.0 - _EPSILON_DEG else lon_max,
            max(stripe * nss * h - 90.0, -90.0),
            min((stripe + 1) * nss * h - 90.0, 90.0),
        )

    def sub_chunk_box(self, chunk_id: int, sub_chunk_id: int) -> tuple[float, float, float, float]:
        """``(lon_min, lon_max, lat_min, lat_max)`` of a sub-chunk (Qserv ``getSubChunkBounds``)."""
        stripe, chunk = self._stripe_chunk(chunk_id)
        local, sc_in_chunk = divmod(int(sub_chunk_id), self._max_sub_chunks)
        ss = stripe * self.num_sub_stripes + local
        if not (0 <= local < self.num_sub_stripes and sc_in_chunk < self._sub_chunks_per_chunk[ss]):
            raise ValueError(f"invalid sub-chunk id {sub_chunk_id} of chunk {chunk_id}")
        sc = chunk * int(self._sub_chunks_per_chunk[ss]) + sc_in_chunk
        width, h = float(self._sub_chunk_width[ss]), self._ss_height
        lon_max = (sc + 1) * width
        return (
            sc * width,
            360.0 if lon_max > 360.0 - _EPSILON_DEG else lon_max,
            max(ss * h - 90.0, -90.0),
            min((ss + 1) * h - 90.0, 90.0),
        )

    # ------------------------------------------------------------- location

    def _cells(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> dict[str, np.ndarray]:
        """Normalised positions and their (sub-stripe, stripe, sub-chunk, chunk) indexes."""
        lon_a, lat_a = np.broadcast_arrays(
            np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        )
        if np.isnan(lon_a).any() or np.isnan(lat_a).any() or np.isinf(lon_a).any():
            raise ValueError("longitudes must be finite and latitudes not NaN")
        # Qserv reduceLon(): fmod, then fold negatives into [0, 360).
        lon_n = np.fmod(lon_a, 360.0)
        lon_n = np.where(lon_n < 0.0, lon_n + 360.0, lon_n)
        lon_n = np.where(lon_n == 360.0, 0.0, lon_n)
        lat_n = np.clip(lat_a, -90.0, 90.0)
        n_ss = self.num_stripes * self.num_sub_stripes
        ss = np.minimum(np.floor((lat_n + 90.0) / self._ss_height).astype(np.int64), n_ss - 1)
        stripe = ss // self.num_sub_stripes
        per_chunk = self._sub_chunks_per_chunk[ss]
        n_sub = self._chunks_per_stripe[stripe] * per_chunk
        sc = np.minimum(np.floor(lon_n / self._sub_chunk_width[ss]).astype(np.int64), n_sub - 1)
        return {
            "lon": lon_n, "lat": lat_n, "ss": ss, "stripe": stripe,
            "sc": sc, "chunk": sc // per_chunk, "n_sub": n_sub,
        }  # fmt: skip

    def locate(
        self, lon: npt.ArrayLike, lat: npt.ArrayLike
    ) -> tuple[IntArray, npt.NDArray[np.int32]]:
        """``(chunk_id int64, sub_chunk_id int32)`` of each position (Qserv ``locate``)."""
        c = self._cells(lon, lat)
        return (
            self._chunk_id(c["stripe"], c["chunk"]),
            self._sub_chunk_id(c["stripe"], c["ss"], c["chunk"], c["sc"]),
        )

    # -------------------------------------------------------------- overlap

    def _up_down(
        self, rows: IntArray, lon: FloatArray, tss: IntArray, out: list[Locations]
    ) -> None:
        """Sub-chunks of sub-stripes ``tss`` whose overlap holds ``lon`` (Qserv ``_upDownOverlap``)."""
        tstripe = tss // self.num_sub_stripes
        per_chunk = self._sub_chunks_per_chunk[tss]
        n_sub = self._chunks_per_stripe[tstripe] * per_chunk
        width, alpha = self._sub_chunk_width[tss], self._alpha[tss]
        lo = np.floor((lon - alpha) / width).astype(np.int64)
        hi = np.floor((lon + alpha) / width).astype(np.int64)
        lo = np.where(lo < 0, lo + n_sub, lo)
        hi = np.where(hi >= n_sub, hi - n_sub, hi)
        wraps = lo > hi
        # Non-wrapping: lo..hi.  Wrapping: lo..n_sub-1, then 0..hi (same order as Qserv).
        last = np.where(wraps, n_sub - 1, hi)
        candidates = [(lo + k, lo + k <= last) for k in range(int((last - lo).max(initial=-1)) + 1)]
        for k in range(int(np.where(wraps, hi, -1).max(initial=-1)) + 1):
            candidates.append((np.full_like(lo, k), wraps & (k <= hi)))
        for sc, keep in candidates:
            chunk = sc[keep] // per_chunk[keep]
            out.append(
                (
                    rows[keep],
                    self._chunk_id(tstripe[keep], chunk),
                    self._sub_chunk_id(tstripe[keep], tss[keep], chunk, sc[keep]),
                )
            )

    def overlap_locations(
        self, lon: npt.ArrayLike, lat: npt.ArrayLike, *, other_chunks_only: bool = False
    ) -> Locations:
        """Overlap copies exactly as Qserv's partitioner emits them.

        Returns ``(row_index, chunk_id, sub_chunk_id)``: one entry per position
        and per sub-chunk whose overlap region (box widened by ``overlap`` in
        latitude and ``alpha`` in longitude, minus the sub-chunk itself) holds
        the position, sorted by row and, within a row, in Qserv's emission
        order.  These are the rows of ``<Table>FullOverlap_<chunk_id>`` with
        their chunk/sub-chunk columns; like Qserv, they include sub-chunks of
        the position's own chunk.  ``other_chunks_only=True`` keeps only the
        entries whose chunk differs from the position's own chunk (the copies
        a chunk needs from its neighbours).  Row indexes refer to the
        flattened (broadcast) inputs.  As in Qserv, a (row, sub-chunk) pair
        can repeat only in a sub-stripe of two sub-chunks (left == right).
        """
        c = self._cells(lon, lat)
        lon_n, lat_n, ss = c["lon"].ravel(), c["lat"].ravel(), c["ss"].ravel()
        stripe, sc, chunk, n_sub = (c[k].ravel() for k in ("stripe", "sc", "chunk", "n_sub"))
        rows = np.arange(lon_n.size, dtype=np.int64)
        out: list[Locations] = []
        if self.overlap > 0.0:
            h, ov = self._ss_height, float(self.overlap)
            n_ss = self.num_stripes * self.num_sub_stripes
            lat_min = np.maximum(ss * h - 90.0, -90.0)
            lat_max = np.minimum((ss + 1) * h - 90.0, 90.0)
            down = (ss > 0) & (lat_n < lat_min + ov)
            self._up_down(rows[down], lon_n[down], ss[down] - 1, out)
            up = (ss < n_ss - 1) & (lat_n >= lat_max - ov)
            self._up_down(rows[up], lon_n[up], ss[up] + 1, out)
            width, alpha = self._sub_chunk_width[ss], self._alpha[ss]
            per_chunk = self._sub_chunks_per_chunk[ss]
            many = n_sub > 1
            left = many & (lon_n < sc * width + alpha)
            right = many & (lon_n > _clamp_lon((sc + 1) * width) - alpha)
            for mask, step in ((left, -1), (right, 1)):
                osc = np.mod(sc[mask] + step, n_sub[mask])
                ochunk = osc // per_chunk[mask]
                out.append(
                    (
                        rows[mask],
                        self._chunk_id(stripe[mask], ochunk),
                        self._sub_chunk_id(stripe[mask], ss[mask], ochunk, osc),
                    )
                )
        if not out:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty.copy(), np.empty(0, dtype=np.int32)
        row_i = np.concatenate([o[0] for o in out])
        chunk_i = np.concatenate([o[1] for o in out])
        sub_i = np.concatenate([o[2] for o in out])
        order = np.argsort(row_i, kind="stable")
        row_i, chunk_i, sub_i = row_i[order], chunk_i[order], sub_i[order]
        if other_chunks_only:
            keep = chunk_i != self._chunk_id(stripe, chunk)[row_i]
            row_i, chunk_i, sub_i = row_i[keep], chunk_i[keep], sub_i[keep]
        return row_i, chunk_i, sub_i

    def sub_chunk_overlap_locations(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> Locations:
        """Positions in the overlap of a sub-chunk other than their own, same or other chunk.

        Identical to ``overlap_locations(lon, lat)``: Qserv's FullOverlap tables
        are exactly the sub-chunk overlaps (the near-neighbour per-sub-chunk
        joins read them with ``WHERE subChunkId = ...``).
        """
        return self.overlap_locations(lon, lat)
