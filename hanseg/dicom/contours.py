"""Binary masks to closed planar contours that lie on voxel edges.

Coordinates: a contour's ``points`` are an ``(N, 2)`` float array of **(x, y) = (column,
row) continuous pixel indices** of one z,y,x slice (see :mod:`hanseg.io`), so the writer can
pass ``(x, y, k)`` straight to SimpleITK's ``TransformContinuousIndexToPhysicalPoint``.
Pixel ``(row r, column c)`` covers ``[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]``; every vertex
is at a half-integer position. Why edges, not centres: a polygon through voxel centres
cuts every boundary voxel in half and shrinks each structure by half a voxel all round
(a one-voxel blob would become a point).

Semantics (what a reader must do to get the mask back):

* Every loop is a *simple* polygon (no vertex repeats); loops never cross. Two loops can
  meet only at an isolated corner point.
* Outer boundaries and holes are separate loops on the same slice. A hole is written as a
  closed contour inside its outer contour; the area covered is the **even-odd (XOR)** rule
  over all loops of the slice. Rasterising the loops with that rule at pixel centres gives
  back the mask exactly. A reader that ORs the contours of a slice fills the holes:
  plastimatch does so by default (exact only with ``--xor-contours``), as did platipy
  before its 2024 XOR fix and dcmrtstruct2nii before v3. The other convention, a keyhole
  cut joining hole and outer boundary, is not written.
* Orientation: outer loops have positive shoelace area in (x, y), holes negative; i.e.
  with rows drawn downwards, outer loops run clockwise and holes anticlockwise.
* Diagonal rule: pixels that touch only at a corner are *not* connected, neither
  foreground pixels (two pieces) nor background pixels (a hole stays a hole even when it
  touches the outside at one corner). Tracing follows each boundary and splits a loop
  wherever it comes back to a vertex it has passed, so the result does not depend on
  which way the trace turned at such a corner.
* Collinear vertices are removed: a rectangle has 4 points; every loop has at least 4.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

# Direction codes of a boundary edge, in (x, y) with y (rows) growing downwards.
EAST, SOUTH, WEST, NORTH = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class Loop:
    """One closed contour of a slice: ``points`` (N, 2) as (x, y) continuous pixel indices,
    the closing edge from the last point back to the first implied."""

    points: np.ndarray = field(repr=False)
    is_hole: bool

    @property
    def area(self) -> float:
        """Signed shoelace area in pixels: positive for outer loops, negative for holes."""
        return signed_area(self.points)


def signed_area(points: np.ndarray) -> float:
    """Shoelace area of a closed polygon given as (N, 2) (x, y) points."""
    x, y = points[:, 0], points[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0


@dataclass(frozen=True, eq=False)
class _Edges:
    """Directed boundary edges on the vertex lattice of a (rows, columns) crop.

    Vertex ``(i, j)`` (row, column) is the corner at pixel position ``(j - 0.5, i - 0.5)``;
    its id is ``i * (width + 1) + j``. Each edge keeps the foreground on its right (screen
    view, rows downwards).
    """

    src: np.ndarray  # vertex id where the edge starts
    dst: np.ndarray  # vertex id where it ends
    direction: np.ndarray  # EAST/SOUTH/WEST/NORTH
    width: int  # pixels per row of the crop (vertices per row: width + 1)


def _boundary_edges(mask: np.ndarray) -> _Edges:
    """All pixel sides between foreground and background, found with array comparisons."""
    w = mask.shape[1]
    p = np.pad(mask.astype(bool), 1)
    stride = w + 1
    parts = []
    # Horizontal sides at vertex row i between pixel rows i-1 (above) and i (below).
    above, below = p[:-1, 1:-1], p[1:, 1:-1]
    for sel, d, step in ((below & ~above, EAST, 1), (above & ~below, WEST, -1)):
        i, j = np.nonzero(sel)
        start = i * stride + (j if step == 1 else j + 1)
        parts.append((start, start + step, d))
    # Vertical sides at vertex column j between pixel columns j-1 (left) and j (right).
    left, right = p[1:-1, :-1], p[1:-1, 1:]
    for sel, d, step in ((left & ~right, SOUTH, stride), (right & ~left, NORTH, -stride)):
        i, j = np.nonzero(sel)
        start = (i if step > 0 else i + 1) * stride + j
        parts.append((start, start + step, d))
    src = np.concatenate([s for s, _, _ in parts])
    dst = np.concatenate([t for _, t, _ in parts])
    direction = np.concatenate([np.full(len(s), d, np.int8) for s, _, d in parts])
    return _Edges(src, dst, direction, w)


def _successors(edges: _Edges) -> np.ndarray:
    """For each edge, the edge that continues the boundary from its end vertex.

    Most vertices have one outgoing edge. A vertex where pixels touch only diagonally has
    two; there the trace turns left (away from the foreground it follows), which pairs
    neighbouring half-edges so the two paths touch without crossing.
    Loops that pass such a vertex twice are split afterwards (see :func:`_trace`).
    """
    n_vertices = int(max(edges.src.max(), edges.dst.max())) + 1
    out_count = np.bincount(edges.src, minlength=n_vertices)
    out_edge = np.full(n_vertices, -1, np.int64)
    out_edge[edges.src] = np.arange(len(edges.src))
    nxt: np.ndarray = out_edge[edges.dst]
    saddle = out_count[edges.dst] == 2
    if saddle.any():
        keys = edges.src.astype(np.int64) * 4 + edges.direction
        order = np.argsort(keys)
        wanted = edges.dst[saddle].astype(np.int64) * 4 + (edges.direction[saddle] + 3) % 4
        nxt[saddle] = order[np.searchsorted(keys, wanted, sorter=order)]
    return nxt


def _trace(nxt: list[int], src: list[int]) -> list[list[int]]:
    """Follow successor links into loops of edge indices, splitting at repeated vertices
    so that every loop is simple."""
    seen = bytearray(len(nxt))
    loops: list[list[int]] = []
    for start in range(len(nxt)):
        if seen[start]:
            continue
        stack: list[int] = []
        where: dict[int, int] = {}
        e = start
        while not seen[e]:
            seen[e] = 1
            v = src[e]
            if v in where:  # back at a vertex already on this path: close the sub-loop
                at = where[v]
                loops.append(stack[at:])
                for done in stack[at:]:
                    del where[src[done]]
                del stack[at:]
            where[v] = len(stack)
            stack.append(e)
            e = nxt[e]
        loops.append(stack)
    return loops


def _loop_corners(loops: list[list[int]], edges: _Edges) -> tuple[np.ndarray, np.ndarray]:
    """All loops at once: the lattice (row, column) of every corner, i.e. the start vertex
    of each edge whose direction differs from the edge before it in its loop, and the
    number of corners per loop. Done as flat arrays because a noisy mask has many tiny
    loops and per-loop numpy calls would dominate."""
    lengths = np.fromiter((len(lp) for lp in loops), np.int64, count=len(loops))
    order = np.fromiter(itertools.chain.from_iterable(loops), np.int64, count=int(lengths.sum()))
    starts = np.cumsum(lengths) - lengths
    prev = np.arange(len(order)) - 1
    prev[starts] = starts + lengths - 1  # the edge before a loop's first is its last
    d = edges.direction[order]
    keep = d != d[prev]
    counts = np.add.reduceat(keep.astype(np.int64), starts)
    i, j = np.divmod(edges.src[order[keep]], edges.width + 1)
    return np.stack([i, j], axis=1), counts


def _areas(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Signed shoelace area of each loop of flat, loop-after-loop corner arrays."""
    starts = np.cumsum(counts) - counts
    nxt = np.arange(len(x)) + 1
    nxt[starts + counts - 1] = starts  # the point after a loop's last is its first
    return np.add.reduceat(x * y[nxt] - x[nxt] * y, starts) / 2.0


def slice_contours(mask2d: np.ndarray) -> list[Loop]:
    """Closed voxel-edge contours of a 2D (rows, columns) mask: outer loops first, then
    holes, each group ordered by its top-most, then left-most point. Empty mask: []."""
    if mask2d.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {mask2d.shape}")
    rows = np.flatnonzero(mask2d.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(mask2d.any(axis=0))
    # Only the bounding box is traced: most OARs cover a small part of a 512x512 slice.
    crop = mask2d[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    edges = _boundary_edges(crop)
    loops = _trace(_successors(edges).tolist(), edges.src.tolist())
    lattice, counts = _loop_corners(loops, edges)
    # Lattice vertex (i, j) of the crop lies at pixel position (j - 0.5, i - 0.5).
    x = lattice[:, 1] + (cols[0] - 0.5)
    y = lattice[:, 0] + (rows[0] - 0.5)
    holes = _areas(x, y, counts) < 0
    starts = np.cumsum(counts) - counts
    rank = np.lexsort((np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts), holes))
    points = np.split(np.stack([x, y], axis=1), starts[1:])
    return [Loop(points[n], bool(holes[n])) for n in rank]


def mask_contours(mask3d: np.ndarray) -> dict[int, list[Loop]]:
    """Per slice index k (axis 0 of a z,y,x mask), the loops of that slice; slices without
    foreground are absent."""
    if mask3d.ndim != 3:
        raise ValueError(f"expected a 3D z,y,x mask, got shape {mask3d.shape}")
    contours = {int(k): slice_contours(mask3d[k]) for k in np.flatnonzero(mask3d.any(axis=(1, 2)))}
    log.debug("%d loops on %d slices", sum(map(len, contours.values())), len(contours))
    return contours


def fill_loops(loops: list[Loop], shape: tuple[int, int]) -> np.ndarray:
    """The inverse of :func:`slice_contours`: the (rows, columns) boolean mask of pixels
    whose centres lie inside ``loops`` under the even-odd rule.

    Each edge crossing a row of pixel centres flips every pixel left of the crossing;
    the flips are marked at the row start and at the crossing and summed along the row.
    """
    rows, cols = shape
    flips = np.zeros((rows, cols + 1), np.int64)
    for loop in loops:
        x0, y0 = loop.points[:, 0], loop.points[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        for a, b, c, d in zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist()):
            if b == d:
                continue  # horizontal edges cross no row of centres
            r = np.arange(max(0, int(np.ceil(min(b, d)))), min(rows, int(np.floor(max(b, d))) + 1))
            r = r[(r > min(b, d)) & (r < max(b, d))]
            crossing = a + (r - b) * (c - a) / (d - b)
            np.add.at(flips, (r, 0), 1)
            np.add.at(flips, (r, np.clip(np.ceil(crossing).astype(np.int64), 0, cols)), 1)
    return (np.cumsum(flips, axis=1)[:, :cols] % 2).astype(bool)
