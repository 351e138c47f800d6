"""Rendering engine: affine maps from a grid to canonical space, a smooth warp, chunked painting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from hanseg.geometry import Grid

from .shapes import Structure, Vec


@dataclass(frozen=True)
class Affine:
    """``q = A @ p + b``: a map from a grid's physical space to canonical space."""

    A: np.ndarray
    b: Vec

    def inverse_apply(self, q: np.ndarray) -> np.ndarray:
        """Physical points for canonical points ``q`` (n, 3)."""
        return np.linalg.solve(self.A, (q - self.b).T).T


@dataclass(frozen=True)
class Warp:
    """Smooth divergence-free displacement (mm) for per-case shape jitter.

    Each component is a sum of sinusoids of the *other two* coordinates, so the field has
    zero divergence and (to first order) leaves every OAR volume unchanged: volume ranges
    stay physiological while shapes and relative positions still vary.
    """

    terms: tuple[tuple[int, float, float, float, float], ...]  # (component, amp, k1, k2, phase)

    @property
    def max_amp(self) -> float:
        per = [0.0, 0.0, 0.0]
        for c, a, *_ in self.terms:
            per[c] += abs(a)
        return float(math.sqrt(sum(p * p for p in per)))

    def apply(self, q: list[np.ndarray]) -> None:
        """Displace the coordinate arrays in place."""
        disp = [np.zeros_like(q[0]) for _ in range(3)]
        for c, a, k1, k2, ph in self.terms:
            o1, o2 = [i for i in range(3) if i != c]
            arg = q[o1] * np.float32(k1) + q[o2] * np.float32(k2) + np.float32(ph)
            disp[c] += np.float32(a) * np.sin(arg)
        for c in range(3):
            q[c] += disp[c]

    @staticmethod
    def random(rng: np.random.Generator, amplitude: float = 2.5, n_terms: int = 2) -> Warp:
        terms = []
        for c in range(3):
            for _ in range(n_terms):
                wavelength = rng.uniform(120.0, 220.0)  # low frequency: whole-organ shifts
                ang = rng.uniform(0, 2 * math.pi)
                k = 2 * math.pi / wavelength
                amp = amplitude / n_terms * rng.uniform(0.5, 1.0)
                terms.append((c, amp, k * math.cos(ang), k * math.sin(ang), rng.uniform(0, 2 * math.pi)))
        return Warp(tuple(terms))


def _index_affine(grid: Grid, to_canon: Affine) -> tuple[np.ndarray, Vec]:
    """``q = G @ (i, j, k) + h``: voxel index (x,y,z order) straight to canonical mm."""
    G = to_canon.A @ np.diag(grid.spacing_xyz)
    h = to_canon.A @ np.asarray(grid.origin_xyz) + to_canon.b
    return G, h


def _index_box(lo: Vec, hi: Vec, G: np.ndarray, h: Vec, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Half-open index box (x,y,z) covering the canonical box ``[lo, hi]``, or None."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    idx = np.linalg.solve(G, (corners - h).T).T
    a = np.maximum(np.floor(idx.min(axis=0)).astype(int) - 1, 0)
    b = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 2, np.asarray(size))
    if np.any(b <= a):
        return None
    return a, b


def _coords(G: np.ndarray, h: Vec, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Canonical coordinates (float32, [z,y,x] arrays) of the voxels in index box [a, b)."""
    i = np.arange(a[0], b[0], dtype=np.float32)[None, None, :]
    j = np.arange(a[1], b[1], dtype=np.float32)[None, :, None]
    k = np.arange(a[2], b[2], dtype=np.float32)[:, None, None]
    g = G.astype(np.float32)
    return [g[c, 0] * i + g[c, 1] * j + g[c, 2] * k + np.float32(h[c]) for c in range(3)]


def _zyx(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice, slice]:
    return slice(a[2], b[2]), slice(a[1], b[1]), slice(a[0], b[0])


@overload
def render(
    grid: Grid,
    to_canon: Affine,
    warp: Warp,
    structures: Sequence[Structure],
    with_labels: Literal[True],
    chunk_voxels: int = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def render(
    grid: Grid,
    to_canon: Affine,
    warp: Warp,
    structures: Sequence[Structure],
    with_labels: Literal[False],
    chunk_voxels: int = ...,
) -> tuple[np.ndarray, None]: ...


@overload
def render(
    grid: Grid,
    to_canon: Affine,
    warp: Warp,
    structures: Sequence[Structure],
    with_labels: bool,
    chunk_voxels: int = ...,
) -> tuple[np.ndarray, np.ndarray | None]: ...


def render(
    grid: Grid,
    to_canon: Affine,
    warp: Warp,
    structures: Sequence[Structure],
    with_labels: bool,
    chunk_voxels: int = 6_000_000,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Paint ``structures`` in order onto ``grid``: tissue ids and (optionally) labels.

    Works in z-slabs so memory stays bounded on a full-size CT; inside a slab the
    canonical coordinates are computed once for the union of the active boxes and each
    structure only tests its own sub-box.
    """
    nx, ny, nz = grid.size_xyz
    tissue = np.zeros((nz, ny, nx), dtype=np.uint8)  # 0 == AIR
    labels = np.zeros((nz, ny, nx), dtype=np.uint8) if with_labels else None
    G, h = _index_affine(grid, to_canon)
    margin = warp.max_amp + 0.5
    boxes = []
    for s in structures:
        lo, hi = s.shape.bounds()
        boxes.append(_index_box(lo - margin, hi + margin, G, h, grid.size_xyz))
    slab = max(1, chunk_voxels // (nx * ny))
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        active = []
        for s, box in zip(structures, boxes):
            if box is None or box[1][2] <= k0 or box[0][2] >= k1:
                continue
            a, b = box[0].copy(), box[1].copy()
            a[2], b[2] = max(a[2], k0), min(b[2], k1)
            active.append((s, a, b))
        if active:
            _paint_slab(active, G, h, warp, tissue, labels)
    return tissue, labels


def _paint_slab(active, G, h, warp: Warp, tissue: np.ndarray, labels: np.ndarray | None) -> None:
    lo = np.min([a for _, a, _ in active], axis=0)
    hi = np.max([b for _, _, b in active], axis=0)
    q = _coords(G, h, lo, hi)
    warp.apply(q)
    for s, a, b in active:
        rel = _zyx(a - lo, b - lo)
        m = s.shape.contains(tuple(c[rel] for c in q))
        if not m.any():
            continue
        dst = _zyx(a, b)
        if s.tissue is not None:
            tissue[dst][m] = s.tissue
        if labels is not None and s.label is not None:
            labels[dst][m] = s.label
