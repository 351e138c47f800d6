"""Synthetic head-and-neck phantoms: CT, T1 MR and the 30 HaN-Seg OAR labels.

Why this exists: the real HaN-Seg data cannot ship with the container or its CI, yet the
pipeline (reading, registration, cropping, the network, writing) must be exercised on data
that looks like the real thing. The phantom is built from analytic shapes in millimetres
so that it can be rendered on *any* grid: the CT grid, the MR's own (rotated, shifted,
coarser) grid, small grids for fast tests and full 1024x1024 grids for timing.

Coordinates (see :mod:`hanseg.geometry`): ITK physical space is LPS in mm (+x patient left,
+y posterior, +z superior); arrays are indexed [z, y, x].

Three spaces are involved:

* *canonical* space: the anatomy below is written in it, origin near the sella turcica,
  for a head of nominal size;
* *CT physical* space: canonical points scaled by the case's global size ``s``, rotated by a
  small head pose about the head centre and shifted;
* *MR physical* space: CT physical points mapped by the ground-truth rigid ``ct_to_mr``.

Rendering never evaluates a shape on the whole grid: each shape's canonical bounding box is
mapped to a voxel index box and only those voxels are tested (a full CT has 200 M voxels).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import multiprocessing as mp
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hanseg.errors import HansegError
from hanseg.labels import LABEL_IDS, NUM_OARS, OAR_NAMES, oar_file_name

log = logging.getLogger(__name__)

Vec = np.ndarray  # shape (3,), float64, x,y,z


class PhantomError(HansegError):
    """Bad arguments for phantom generation (unknown size, negative seed, bad case id)."""


# =========================================================================================
# Tissues: one id per tissue class, mapped to CT HU and to T1 MR intensity.
# OARs reuse the tissue class of their surroundings on purpose: a network must learn
# shape and position, not a grey value that only a phantom would give away.
# =========================================================================================

#: name -> (CT HU, T1 MR intensity in arbitrary units ~0..1000)
_TISSUES: dict[str, tuple[float, float]] = {
    "AIR": (-1000.0, 0.0),
    "FAT": (-100.0, 900.0),
    "SKIN": (30.0, 380.0),
    "MUSCLE": (50.0, 300.0),
    "GREY": (40.0, 430.0),
    "WHITE": (29.0, 580.0),
    "CSF": (8.0, 60.0),
    "CORTICAL": (1500.0, 25.0),
    "TRABECULAR": (420.0, 640.0),
    "TEETH": (2400.0, 15.0),
    "DENSE": (1900.0, 20.0),  # petrous temporal bone
    "AIR_IN": (-990.0, 0.0),  # air inside the body (sinuses, airway)
    "LUNG": (-850.0, 15.0),
    "GLAND_P": (30.0, 620.0),  # parotid: fatty gland, bright on T1
    "GLAND_S": (42.0, 450.0),  # submandibular / lacrimal
    "THYROID": (95.0, 470.0),  # iodine makes the thyroid brighter on CT, as in reality
    "BLOOD": (45.0, 40.0),  # non-contrast CT; flow void on MR
    "NERVE": (32.0, 540.0),
    "VITREOUS": (8.0, 70.0),
    "LENS": (75.0, 380.0),
    "CARTILAGE": (110.0, 280.0),
    "CORD": (34.0, 470.0),
    "DISC": (85.0, 300.0),
    "FLUID": (12.0, 60.0),
    "COUCH_SHELL": (200.0, 0.0),
    "COUCH_CORE": (-200.0, 0.0),
}
TISSUE_NAMES: tuple[str, ...] = tuple(_TISSUES)
TID: dict[str, int] = {n: i for i, n in enumerate(TISSUE_NAMES)}
_BODY_FREE = (TID["AIR"], TID["COUCH_SHELL"], TID["COUCH_CORE"])


# =========================================================================================
# Shapes: implicit solids in canonical millimetres.
# =========================================================================================

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


class Shape(Protocol):
    """A solid: a conservative bounding box and a vectorised inside test."""

    def bounds(self) -> tuple[Vec, Vec]: ...

    def contains(self, q: Coords) -> np.ndarray: ...

    def grown(self, d: float) -> "Shape": ...


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid; ``rot`` rows are its local axes in canonical coordinates."""

    center: Vec
    radii: Vec
    rot: np.ndarray | None = None

    def bounds(self) -> tuple[Vec, Vec]:
        if self.rot is None:
            half = self.radii
        else:  # extent of a rotated ellipsoid along each world axis
            half = np.sqrt(((self.rot * self.radii[:, None]) ** 2).sum(axis=0))
        return self.center - half, self.center + half

    def contains(self, q: Coords) -> np.ndarray:
        d = [q[i] - np.float32(self.center[i]) for i in range(3)]
        if self.rot is not None:
            r = self.rot.astype(np.float32)
            d = [r[i, 0] * d[0] + r[i, 1] * d[1] + r[i, 2] * d[2] for i in range(3)]
        acc = (d[0] * np.float32(1 / self.radii[0])) ** 2
        acc += (d[1] * np.float32(1 / self.radii[1])) ** 2
        acc += (d[2] * np.float32(1 / self.radii[2])) ** 2
        return acc <= 1.0

    def grown(self, d: float) -> "Ellipsoid":
        return Ellipsoid(self.center, np.maximum(self.radii + d, 0.1), self.rot)


@dataclass(frozen=True)
class Tube:
    """Points within ``radius`` of a polyline, measured after dividing coordinates by
    ``scale`` (so a vertical tube with scale (2, 1, 1) has an elliptic cross-section)."""

    points: np.ndarray  # (n, 3)
    radius: float
    scale: Vec = field(default_factory=lambda: np.ones(3))

    def bounds(self) -> tuple[Vec, Vec]:
        half = self.radius * self.scale
        return self.points.min(axis=0) - half, self.points.max(axis=0) + half

    def contains(self, q: Coords) -> np.ndarray:
        inv = (1.0 / self.scale).astype(np.float32)
        p = [q[i] * inv[i] for i in range(3)]
        pts = (self.points / self.scale).astype(np.float32)
        best = None
        for a, b in zip(pts[:-1], pts[1:]):
            u = b - a
            inv_len2 = np.float32(1.0 / max(float(u @ u), 1e-9))
            d = [p[i] - a[i] for i in range(3)]
            t = np.clip((d[0] * u[0] + d[1] * u[1] + d[2] * u[2]) * inv_len2, 0.0, 1.0)
            d2 = (d[0] - t * u[0]) ** 2 + (d[1] - t * u[1]) ** 2 + (d[2] - t * u[2]) ** 2
            best = d2 if best is None else np.minimum(best, d2, out=best)
        return best <= np.float32(self.radius**2)

    def grown(self, d: float) -> "Tube":
        return Tube(self.points, max(self.radius + d / float(self.scale.min()), 0.1), self.scale)


@dataclass(frozen=True)
class Union:
    parts: tuple[Shape, ...]

    def bounds(self) -> tuple[Vec, Vec]:
        bs = [p.bounds() for p in self.parts]
        return np.min([b[0] for b in bs], axis=0), np.max([b[1] for b in bs], axis=0)

    def contains(self, q: Coords) -> np.ndarray:
        out = self.parts[0].contains(q)
        for p in self.parts[1:]:
            out |= p.contains(q)
        return out

    def grown(self, d: float) -> "Union":
        return Union(tuple(p.grown(d) for p in self.parts))


@dataclass(frozen=True)
class Difference:
    """``keep`` minus ``cut`` (e.g. a gland lobe minus the trachea it wraps)."""

    keep: Shape
    cut: Shape

    def bounds(self) -> tuple[Vec, Vec]:
        return self.keep.bounds()

    def contains(self, q: Coords) -> np.ndarray:
        return self.keep.contains(q) & ~self.cut.contains(q)

    def grown(self, d: float) -> "Difference":
        return Difference(self.keep.grown(d), self.cut)


@dataclass(frozen=True)
class Clip:
    """``shape`` restricted to ``lo <= q[axis] <= hi`` (e.g. brainstem above the foramen
    magnum, where the spinal cord label takes over)."""

    shape: Shape
    axis: int
    lo: float = -math.inf
    hi: float = math.inf

    def bounds(self) -> tuple[Vec, Vec]:
        lo, hi = (b.copy() for b in self.shape.bounds())
        lo[self.axis] = max(lo[self.axis], self.lo)
        hi[self.axis] = min(hi[self.axis], self.hi)
        return lo, hi

    def contains(self, q: Coords) -> np.ndarray:
        c = q[self.axis]
        return self.shape.contains(q) & (c >= self.lo) & (c <= self.hi)

    def grown(self, d: float) -> "Clip":
        return Clip(self.shape.grown(d), self.axis, self.lo, self.hi)


@dataclass(frozen=True)
class Structure:
    """One painting step. ``label`` None leaves the label map alone; an int paints it
    (0 erases: used for OARs that are "not annotated" and for e.g. teeth inside the
    oral cavity, which the annotation excludes)."""

    name: str
    shape: Shape
    tissue: int | None
    label: int | None = None


def _v(*xs: float) -> Vec:
    return np.asarray(xs, dtype=np.float64)


def rotation_matrix(axis: Sequence[float], degrees: float) -> np.ndarray:
    """Right-handed rotation about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = math.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)


# =========================================================================================
# Rendering engine: grids, affine maps to canonical space, smooth warp, chunked painting.
# =========================================================================================


@dataclass(frozen=True)
class Grid:
    """Identity-direction image grid; ``size``, ``spacing``, ``origin`` in x,y,z order."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def extent_mm(self) -> np.ndarray:
        return np.asarray(self.size, dtype=float) * np.asarray(self.spacing)

    def empty_image(self, pixel: int) -> sitk.Image:
        img = sitk.Image([int(n) for n in self.size], pixel)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        return img


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
    def random(rng: np.random.Generator, amplitude: float = 2.5, n_terms: int = 2) -> "Warp":
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
    G = to_canon.A @ np.diag(grid.spacing)
    h = to_canon.A @ np.asarray(grid.origin) + to_canon.b
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
    nx, ny, nz = grid.size
    tissue = np.zeros((nz, ny, nx), dtype=np.uint8)  # 0 == AIR
    labels = np.zeros((nz, ny, nx), dtype=np.uint8) if with_labels else None
    G, h = _index_affine(grid, to_canon)
    margin = warp.max_amp + 0.5
    boxes = []
    for s in structures:
        lo, hi = s.shape.bounds()
        boxes.append(_index_box(lo - margin, hi + margin, G, h, grid.size))
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


# =========================================================================================
# Anatomy in canonical millimetres (nominal head, origin near the sella turcica).
# =========================================================================================

#: Canonical point the head pose rotates about and the grids are centred on.
HEAD_CENTRE = _v(0.0, 8.0, 0.0)
#: Lowest canonical z any OAR reaches (cord / oesophagus), plus margin: the CT must reach it.
LOWEST_OAR_Z = -215.0
#: Lowest canonical z the MR must reach ("head and upper neck").
MR_LOWEST_Z = -100.0
#: Spinal cord centre line; the canal, vertebrae and cord follow it (cervical lordosis).
_CORD_LINE = np.array([[0, 27, -36], [0, 27, -80], [0, 30, -130], [0, 35, -190], [0, 42, -340]], float)


def _cord_y(z: float) -> float:
    return float(np.interp(-z, -_CORD_LINE[:, 2], _CORD_LINE[:, 1]))


class _Builder:
    """Collects structures in painting order and draws the per-case jitter.

    OAR volumes scale with ``s`` (times a small per-OAR factor) while positions scale with
    ``s``: real organ volumes vary less than the cube of head size, and this keeps every
    volume inside its physiological range for the whole +-10 % range of ``s``.
    """

    def __init__(self, rng: np.random.Generator, s: float, missing: Iterable[str]):
        self.rng = rng
        self.oar_scale = s ** (-2.0 / 3.0)  # canonical radius factor: physical = s**(1/3)
        self.tube_scale = 1.0 / s  # canonical radius factor: physical radius = nominal
        self.missing = frozenset(missing)
        self.items: list[Structure] = []

    def off(self, mm: float = 1.0) -> Vec:
        """Random position jitter (canonical mm)."""
        return self.rng.uniform(-mm, mm, 3)

    def k_oar(self) -> float:
        """Radius factor of an ellipsoidal OAR: physical volume ~ s."""
        return self.oar_scale * self.rng.uniform(0.975, 1.025)

    def k_tube(self) -> float:
        """Radius factor of a tubular OAR: its length already grows with ``s``, so the
        cross-section stays nominal and the volume again grows like ``s``."""
        return self.tube_scale * self.rng.uniform(0.975, 1.025)

    def k_bg(self) -> float:
        return self.rng.uniform(0.97, 1.03)

    def add(self, name: str, shape: Shape, tissue: str | None, label: int | None = None) -> None:
        self.items.append(Structure(name, shape, None if tissue is None else TID[tissue], label))

    def oar(self, name: str, shape: Shape, tissue: str) -> None:
        """Paint an OAR; an OAR that is "not annotated" keeps its tissue but erases its label."""
        self.add(name, shape, tissue, 0 if name in self.missing else LABEL_IDS[name])

    def layers(self, name: str, shapes: Sequence[Shape], steps: Sequence[tuple[float, str]]) -> None:
        """Concentric layers of a union of shapes: ``(grow_mm, tissue)`` outermost first."""
        for d, tissue in steps:
            self.add(f"{name}:{tissue}", Union(tuple(sh.grown(d) for sh in shapes)), tissue)


def _ell(c: Sequence[float], r: Sequence[float], k: float = 1.0, rot: np.ndarray | None = None) -> Ellipsoid:
    return Ellipsoid(np.asarray(c, float), np.asarray(r, float) * k, rot)


def _tube(pts: Sequence[Sequence[float]], r: float, k: float = 1.0, scale: Sequence[float] = (1, 1, 1)) -> Tube:
    return Tube(np.asarray(pts, float), r * k, np.asarray(scale, float))


def _arch(y0: float, curv: float, half_width: float, z: float, n: int = 9) -> np.ndarray:
    """Parabolic dental/mandibular arch ``y = y0 + curv * x**2`` at height ``z``."""
    x = np.linspace(-half_width, half_width, n)
    return np.stack([x, y0 + curv * x**2, np.full(n, z)], axis=1)


def _envelopes(b: _Builder) -> None:
    """Body outline: shoulders, neck, cranium, face; skin, subcutaneous fat, muscle core."""
    k = b.k_bg
    trunk = _tube([(0, 25, -270), (0, 25, -700)], 100, k(), (1.85, 1, 1))
    shoulders = Union((_ell((0, 25, -270), (185, 100, 110), k()), trunk))
    neck = _tube([(0, 18, -10), (0, 20, -100), (0, 24, -170), (0, 28, -260)], 60, k(), (1.05, 1, 1))
    cranium = _ell((0, 14, 38), (77, 98, 82), k())
    face = _ell((0, -5, -22), (72, 82, 50), k())
    chin = _ell((0, -52, -58), (34, 30, 22), k())
    jaw = _ell((0, -28, -66), (60, 50, 28), k())
    nose = _ell((0, -82, -8), (12, 14, 20), k())
    ears = [_ell((sx * 78, 15, -5), (5, 12, 24), k()) for sx in (1, -1)]
    core = [shoulders, neck, cranium, face, chin, jaw]
    b.layers("body", core + [nose] + ears, [(0.0, "SKIN")])
    b.layers("subcut", core + [nose.grown(-2)], [(-2.0, "FAT")])
    b.layers("core", core[1:], [(-8.0, "MUSCLE")])
    b.layers("trunk", [shoulders], [(-14.0, "MUSCLE")])


def _trunk(b: _Builder) -> None:
    """Shoulder girdle at the bottom of a full field of view."""
    for sx in (1, -1):
        b.add("lung", _ell((sx * 62, 30, -268), (48, 55, 62), b.k_bg()), "LUNG")
        clav = _tube([(sx * 18, -38, -198), (sx * 70, -32, -200), (sx * 135, 10, -212)], 6.5, b.k_bg())
        b.layers("clavicle", [clav], [(0.0, "CORTICAL"), (-2.5, "TRABECULAR")])
        head = _ell((sx * 150, 20, -240), (24, 24, 24), b.k_bg())
        b.layers("humerus", [head], [(0.0, "CORTICAL"), (-3.0, "TRABECULAR")])
        scap = _ell((sx * 95, 85, -250), (45, 5, 50), b.k_bg(), rotation_matrix((0, 0, 1), sx * 20))
        b.layers("scapula", [scap], [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")])
    b.layers("sternum", [_ell((0, -45, -225), (20, 7, 22), b.k_bg())], [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")])


def _spine(b: _Builder) -> None:
    """Atlas, vertebral bodies with discs, arches and processes, then the CSF-filled canal."""
    y1 = _cord_y(-42)
    b.layers("atlas", [_ell((0, y1 - 4, -42), (22, 22, 5), b.k_bg())], [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")])
    b.layers("dens", [_ell((0, y1 - 16, -44), (5, 5, 10), b.k_bg())], [(0.0, "CORTICAL"), (-1.5, "TRABECULAR")])
    for lvl in range(15):  # C2 .. T6
        z = -58.0 - 18.0 * lvl
        yc = _cord_y(z)
        g = 1.0 + 0.03 * lvl  # lower vertebrae are larger
        body = _ell((0, yc - 18, z), (9 * g, 8 * g, 7), b.k_bg())
        arch = _ell((0, yc + 1, z), (15 * g, 13 * g, 5), b.k_bg())
        spinous = _ell((0, yc + 20, z - 4), (3.5, 11 * g, 4.5), b.k_bg())
        transverse = _ell((0, yc - 5, z), (24 * g, 5, 4.5), b.k_bg())
        b.layers("vertebra", [arch, spinous, transverse, body], [(0.0, "CORTICAL")])
        b.layers("vertebral_body", [body], [(-1.5, "TRABECULAR")])
        b.add("disc", _ell((0, yc - 18, z + 9), (8.5 * g, 7.5 * g, 2.0)), "DISC")
    canal = _tube(np.vstack([[0, 27, -30], _CORD_LINE]), 7.5, b.k_bg(), (1.25, 1, 1))
    b.add("canal", canal, "CSF")


def _skull_and_brain(b: _Builder) -> None:
    """Calvarium and posterior fossa (cortical / diploe / cortical), CSF, grey and white
    matter, cerebellum and ventricles."""
    cal = _ell((0, 14, 38), (72, 93, 77), b.k_bg())
    fossa = _ell((0, 45, -10), (55, 40, 30), b.k_bg())
    both = [cal, fossa]
    steps = [(0.0, "CORTICAL"), (-2.0, "TRABECULAR"), (-5.0, "CORTICAL"), (-7.0, "CSF"), (-9.0, "GREY")]
    b.layers("skull", both, steps)
    b.add("white", cal.grown(-14.0), "WHITE")
    b.add("cerebellar_white", _ell((0, 47, -12), (26, 16, 12), b.k_bg()), "WHITE")
    for sx in (1, -1):
        b.add("lateral_ventricle", _ell((sx * 12, 10, 42), (6, 24, 10), b.k_bg()), "CSF")
    b.add("third_ventricle", _ell((0, 12, 25), (2, 10, 7)), "CSF")
    b.add("fourth_ventricle", _ell((0, 38, -14), (7, 4, 6)), "CSF")


def _skull_base_and_face(b: _Builder) -> None:
    """Skull base, temporal bones, maxilla, zygomas, orbits, paranasal sinuses, nasal cavity."""
    bone = [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")]
    b.layers("skull_base", [_ell((0, -6, -20), (50, 36, 15), b.k_bg())], bone)
    b.add("clivus", _tube([(0, 2, -6), (0, 13, -36)], 6, b.k_bg()), "TRABECULAR")
    b.layers("maxilla", [_ell((0, -48, -20), (36, 26, 14), b.k_bg())], bone)
    for sx in (1, -1):
        zyg = _tube([(sx * 42, -58, -2), (sx * 57, -30, -10), (sx * 62, 0, -8)], 5, b.k_bg())
        b.layers("zygoma", [zyg], bone)
        rot = rotation_matrix((0, 0, 1), sx * 40)
        b.add("petrous", _ell((sx * 31, 20, -12), (20, 7.5, 8), b.k_bg(), rot), "DENSE")
        b.add("mastoid", _ell((sx * 50, 32, -20), (9, 11, 13), b.k_bg()), "TRABECULAR")
        b.add("ear_canal", _tube([(sx * 44, 16, -10), (sx * 80, 14, -7)], 3.5), "AIR_IN")
        b.add("maxillary_sinus", _ell((sx * 23, -50, -8), (11, 14, 11), b.k_bg()), "AIR_IN")
        b.add("orbit_wall", _ell((sx * 32, -50, 5), (19, 26, 18)), "CORTICAL")
        b.add("orbit_fat", _ell((sx * 32, -51, 5), (17, 25, 16)), "FAT")
    b.add("nasal_cavity", _ell((0, -62, -5), (9, 24, 15), b.k_bg()), "AIR_IN")
    b.add("ethmoid", _ell((0, -52, 10), (7, 15, 10), b.k_bg()), "AIR_IN")
    b.add("frontal_sinus", _ell((0, -74, 30), (12, 4, 8), b.k_bg()), "AIR_IN")
    b.add("sphenoid_sinus", _ell((0, -20, -14), (11, 9, 8), b.k_bg()), "AIR_IN")
    b.add("palate", _ell((0, -45, -24), (24, 24, 2.2), b.k_bg()), "CORTICAL")


AIRWAY = [(0, -22, -12), (0, -10, -30), (0, -7, -55), (0, -12, -78), (0, -18, -90)]
TRACHEA = [(0, -20, -118), (0, -18, -160), (0, -12, -330)]


def _neck_soft(b: _Builder) -> None:
    """Muscles, fat planes, veins, pharynx, hyoid and laryngo-tracheal cartilages."""
    for sx in (1, -1):
        b.add("masseter", _ell((sx * 57, -8, -40), (6, 15, 22), b.k_bg()), "MUSCLE")
        b.add("pterygoid", _ell((sx * 36, -2, -42), (6, 10, 17), b.k_bg()), "MUSCLE")
        b.add("parapharyngeal_fat", _ell((sx * 28, 8, -30), (6, 8, 14), b.k_bg()), "FAT")
        b.add("posterior_fat", _ell((sx * 40, 45, -110), (12, 14, 40), b.k_bg()), "FAT")
        scm = [(sx * 52, 38, -24), (sx * 48, 20, -80), (sx * 22, -32, -165)]
        b.add("sternocleidomastoid", _tube(scm, 8, b.k_bg()), "MUSCLE")
        jug = [(sx * 40, 22, -20), (sx * 40, 14, -80), (sx * 34, 0, -150), (sx * 30, -2, -190)]
        b.add("jugular", _tube(jug, 5, b.k_bg()), "BLOOD")
    b.add("pharynx_wall", _tube(AIRWAY, 7.5, 1.0, (1.6, 1, 1)), "MUSCLE")
    b.add("pharynx_air", _tube(AIRWAY, 5, 1.0, (1.8, 1, 1)), "AIR_IN")
    b.add("hyoid", _tube([(-20, -14, -80), (-10, -34, -80), (10, -34, -80), (20, -14, -80)], 3), "CORTICAL")
    shield = Difference(_ell((0, -22, -96), (19, 18, 18)), _ell((0, -22, -96), (16.5, 15.5, 18)))
    b.add("thyroid_cartilage", Clip(shield, axis=1, hi=-16), "CARTILAGE")
    b.add("cricoid", _ell((0, -19, -126), (13, 13, 6)), "CARTILAGE")
    b.add("trachea_wall", _tube(TRACHEA, 10.5), "CARTILAGE")
    b.add("trachea_air", _tube(TRACHEA, 8.5), "AIR_IN")


def _brain_oars(b: _Builder) -> None:
    """Brainstem (in its CSF cistern), chiasm, pituitary and optic nerves."""
    o = b.off()
    stem_line = np.array([(0, 16, 18), (0, 21, -8), (0, 27, -36)], float) + o
    stem = _tube(stem_line, 11, b.k_tube(), (1.15, 1, 1))
    b.add("prepontine_cistern", Clip(stem.grown(2.5), axis=2, lo=-40), "CSF")
    b.oar("Brainstem", Clip(stem, axis=2, lo=-36 + o[2]), "WHITE")
    o = b.off()
    b.add("suprasellar_cistern", _ell((0, -6, 8) + o, (15, 11, 6)), "CSF")
    for sx, name in ((1, "OpticNrv_L"), (-1, "OpticNrv_R")):
        pts = np.array([(sx * 29, -47, 3.5), (sx * 20, -33, 5), (sx * 13, -19, 7), (sx * 7, -10, 8.5)]) + o
        b.oar(name, _tube(pts, 2.0, b.k_tube()), "NERVE")
    b.oar("OpticChiasm", _ell((0, -8, 9) + o, (8, 5, 2.6), b.k_oar(), rotation_matrix((1, 0, 0), -20)), "NERVE")
    b.oar("Pituitary", _ell((0, -4, -1) + b.off(0.5), (6.5, 5, 4), b.k_oar()), "GREY")


def _eye_oars(b: _Builder) -> None:
    """Lacrimal glands, globes (sclera + vitreous), anterior segments with the lens."""
    for sx, side in ((1, "L"), (-1, "R")):
        o = b.off()
        rot = rotation_matrix((0, 1, 0), sx * 25)
        b.oar(f"Glnd_Lacrimal_{side}", _ell(_v(sx * 45, -57, 17) + o, (8.5, 4.6, 4), b.k_oar(), rot), "GLAND_S")
        k = b.k_oar()
        centre = _v(sx * 31, -58, 4) + o
        b.oar(f"Eye_P{side}", _ell(centre, (12, 12, 12), k), "MUSCLE")  # sclera
        b.add("vitreous", _ell(centre, (11, 11, 11), k), "VITREOUS")
        b.oar(f"Eye_A{side}", _ell(centre + (0, -9.9 * k, 0), (7.5, 3.8, 7.5), b.k_oar()), "VITREOUS")
        b.add("lens", _ell(centre + (0, -6.5 * k, 0), (4.5, 2, 4.5), k), "LENS")
        b.oar(f"Cochlea_{side}", _ell(_v(sx * 29, 17, -11) + b.off(0.7), (3.2, 2.8, 2.4), b.k_oar()), "FLUID")


def _face_oars(b: _Builder) -> None:
    """Parotids, submandibular glands, oral cavity, mandible with teeth, buccal mucosa, lips."""
    for sx, side in ((1, "L"), (-1, "R")):
        b.oar(f"Parotid_{side}", _ell(_v(sx * 53.5, 22, -30) + b.off(), (12, 21.5, 30), b.k_oar()), "GLAND_P")
        b.oar(f"Glnd_Submand_{side}", _ell(_v(sx * 28, -12, -76) + b.off(), (11.8, 15, 11.3), b.k_oar()), "GLAND_S")
    o = b.off()
    b.oar("Cavity_Oral", _ell(_v(0, -42, -45) + o, (28, 34.5, 17.5), b.k_oar()), "MUSCLE")
    b.add("oral_air", _ell(_v(0, -45, -29) + o, (14, 18, 1.6)), "AIR_IN")
    b.add("upper_teeth", _tube(_arch(-64, 0.03, 30, -31, 7) + o, 3.5, 1.0, (1, 1, 1.5)), "TEETH", label=0)
    _mandible(b, o)
    k = b.k_oar()
    buccal = Union(tuple(_ell(_v(sx * 36, -45, -36) + o, (4, 22, 11), k) for sx in (1, -1)))
    b.oar("BuccalMucosa", buccal, "MUSCLE")
    b.oar("Lips", _ell(_v(0, -80, -37) + o, (24, 7, 13), b.k_oar()), "MUSCLE")


def _mandible(b: _Builder, o: Vec) -> None:
    """U-shaped body plus two rami (cortical shell, trabecular core) and the lower teeth."""
    k = b.k_tube()
    body = _tube(_arch(-65, 0.0304, 48, -57) + o, 6, k, (1, 1, 2.5))
    rami = [_tube(np.array([(sx * 48, 5, -60), (sx * 51, 8, -8)]) + o, 4.5, k, (1, 3, 1)) for sx in (1, -1)]
    bone = Union((body, *rami))
    b.oar("Bone_Mandible", bone, "CORTICAL")
    b.add("mandible_marrow", bone.grown(-2.5), "TRABECULAR")
    teeth = _tube(_arch(-63, 0.031, 28, -41, 7) + o, 3.5, k, (1, 1, 1.5))
    b.oar("Bone_Mandible", teeth, "TEETH")


def _neck_oars(b: _Builder) -> None:
    """Larynx (supraglottic, glottis, arytenoids), cricopharyngeus, oesophagus, thyroid,
    carotids and the spinal cord."""
    o = b.off()
    b.oar("Larynx_SG", _ell(_v(0, -22, -96) + o, (15.5, 15.5, 16), b.k_oar()), "MUSCLE")
    b.add("laryngeal_vestibule", _ell(_v(0, -20, -96) + o, (5, 7, 12)), "AIR_IN")
    b.oar("Glottis", _ell(_v(0, -22, -116) + o, (11, 10.5, 4.8), b.k_oar()), "MUSCLE")
    b.add("rima_glottidis", _ell(_v(0, -22, -116) + o, (2, 7, 3.2)), "AIR_IN")
    k = b.k_oar()
    b.oar("Arytenoid", Union(tuple(_ell(_v(sx * 6, -11, -108) + o, (4, 4.5, 6.5), k) for sx in (1, -1))), "CARTILAGE")
    b.oar("Cricopharyngeus", _ell(_v(0, -2, -124) + o, (11, 6.5, 6.5), b.k_oar()), "MUSCLE")
    oes = np.array([(0, -1, -131), (0, 0, -160), (0, 2, -190)]) + o
    b.oar("Esophagus_S", _tube(oes, 1.0, b.k_tube(), (9.5, 6.5, 1)), "MUSCLE")
    b.add("oesophageal_air", _tube(oes, 0.25, 1.0, (9, 6, 1)), "AIR_IN")
    trachea = _tube(TRACHEA, 11.0)
    k = b.k_oar()
    lobes = [_ell(_v(sx * 17, -13, -142) + o, (8, 10, 22), k) for sx in (1, -1)]
    isthmus = _ell(_v(0, -33, -132) + o, (10, 2.8, 5), k)
    b.oar("Glnd_Thyroid", Difference(Union((*lobes, isthmus)), trachea), "THYROID")
    for sx, side in ((1, "L"), (-1, "R")):
        pts = np.array([(24, -6, -185), (27, -6, -150), (28, 2, -110), (30, 12, -70), (30, 16, -30),
                        (28, 14, -15)], float)
        pts[:, 0] *= sx
        b.oar(f"A_Carotid_{side}", _tube(pts + b.off(), 3.0, b.k_tube()), "BLOOD")
    cord = _tube(_CORD_LINE + b.off(0.5) * (1, 1, 0), 4.5, b.k_tube(), (1.3, 1, 1))
    b.add("cord_below_annotation", Clip(cord, axis=2, hi=-190), "CORD")
    b.oar("SpinalCord", Clip(cord, axis=2, lo=-190, hi=-36), "CORD")


def build_anatomy(rng: np.random.Generator, s: float, missing: Iterable[str]) -> list[Structure]:
    """All structures of one case, in painting order (later ones overwrite earlier ones)."""
    b = _Builder(rng, s, missing)
    for part in (_envelopes, _trunk, _spine, _skull_and_brain, _skull_base_and_face, _neck_soft,
                 _brain_oars, _eye_oars, _face_oars, _neck_oars):
        part(b)
    return b.items


# =========================================================================================
# Case geometry: pose, grids, ground-truth CT -> MR transform.
# =========================================================================================

#: Grid recipes per size: CT in-plane voxels, xy spacing range, z spacing, slice range;
#: MR in-plane voxels, xy spacing range, z spacing range, slice range; CT xy shift (mm).
_SIZES = {
    "small": dict(ct_n=256, ct_sp=(0.95, 1.05), ct_sz=2.5, ct_nz=None, mr_n=128, mr_sp=(1.8, 2.0),
                  mr_sz=(3.5, 3.7), mr_nz=(60, 66), shift=(10.0, 6.0)),
    "full": dict(ct_n=1024, ct_sp=(0.52, 0.60), ct_sz=2.0, ct_nz=(190, 210), mr_n=512, mr_sp=(0.48, 0.52),
                 mr_sz=(2.9, 3.1), mr_nz=(78, 84), shift=(20.0, 15.0)),
}
#: Probability that one OAR is "not annotated" in a case, and the most per case.
P_MISSING = 0.03
MAX_MISSING = 2


@dataclass(frozen=True)
class PhantomCase:
    """One synthetic case, as the HaN-Seg data provide it."""

    case_id: str
    ct: sitk.Image  # int16 HU on the CT grid
    mr: sitk.Image  # float32 T1 on its own grid
    labels: sitk.Image  # uint8 0..30 on the CT grid
    present: tuple[str, ...]  # annotated OARs, in label order
    ct_to_mr: sitk.Euler3DTransform  # CT physical point -> MR physical point


@dataclass(frozen=True)
class _Geometry:
    s: float
    ct_grid: Grid
    mr_grid: Grid
    ct_affine: Affine  # CT physical -> canonical
    mr_affine: Affine  # MR physical -> canonical
    ct_to_mr: sitk.Euler3DTransform


def _random_rotation(rng: np.random.Generator, lo_deg: float, hi_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    return rotation_matrix(axis, rng.uniform(lo_deg, hi_deg) * rng.choice((-1.0, 1.0)))


def _scalp_top(to_phys) -> float:
    """Highest physical z of the scalp, sampled on the nominal cranium ellipsoid."""
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 24), np.linspace(0, 0.5 * np.pi, 12))
    pts = np.stack([np.cos(u) * np.cos(v), np.sin(u) * np.cos(v), np.sin(v)], -1).reshape(-1, 3)
    pts = pts * (77 * 1.03, 98 * 1.03, 82 * 1.03) + (0, 14, 38)
    return float(to_phys(pts)[:, 2].max())


def _ct_geometry(rng: np.random.Generator, spec: dict, s: float) -> tuple[Grid, Affine, Vec]:
    """CT grid and head pose: a few degrees of rotation, head centred with a random shift."""
    R = _random_rotation(rng, 0.0, 4.0)
    sx, sy = spec["shift"]
    centre = _v(rng.uniform(-sx, sx), rng.uniform(-sy, sy), 0.0)
    affine = Affine(R.T / s, HEAD_CENTRE - R.T @ centre / s)
    to_phys = affine.inverse_apply
    n, sp, sz = spec["ct_n"], rng.uniform(*spec["ct_sp"]), spec["ct_sz"]
    top = _scalp_top(to_phys) + rng.uniform(6.0, 15.0)
    bottom = float(to_phys(np.array([[0.0, 25.0, LOWEST_OAR_Z]]))[0, 2]) - 10.0 * s
    nz = math.ceil((top - bottom) / sz) + int(rng.integers(0, 5))
    if spec["ct_nz"] is not None:
        nz = max(nz, int(rng.integers(spec["ct_nz"][0], spec["ct_nz"][1] + 1)))
    origin = (-(n - 1) / 2 * sp, -(n - 1) / 2 * sp, top - (nz - 1) * sz)
    return Grid((n, n, nz), (sp, sp, sz), origin), affine, centre


def _ct_to_mr(rng: np.random.Generator, centre: Vec) -> sitk.Euler3DTransform:
    """Ground-truth rigid offset of the MR: 4-10 degrees about a random axis through the
    head centre and 8-20 mm translation (never tiny, so an identity overlay is clearly off)."""
    R = _random_rotation(rng, 4.0, 10.0)
    direction = rng.normal(size=3)
    t = direction / np.linalg.norm(direction) * rng.uniform(8.0, 20.0)
    tr = sitk.Euler3DTransform()
    tr.SetCenter(tuple(float(c) for c in centre))
    tr.SetMatrix(tuple(float(x) for x in R.ravel()), 1e-6)
    tr.SetTranslation(tuple(float(x) for x in t))
    return tr


def _euler_affine(tr: sitk.Euler3DTransform) -> tuple[np.ndarray, Vec]:
    """``T(p) = M @ p + c`` for an Euler transform."""
    M = np.asarray(tr.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(tr.GetCenter()), np.asarray(tr.GetTranslation())
    return M, c + t - M @ c


def _mr_geometry(rng: np.random.Generator, spec: dict, ct_affine: Affine, centre: Vec,
                 tr: sitk.Euler3DTransform) -> tuple[Grid, Affine]:
    """MR grid around the head in MR space: smaller field of view, head and upper neck."""
    M, c = _euler_affine(tr)
    # MR physical -> CT physical is M^T (p - c); compose with CT physical -> canonical.
    affine = Affine(ct_affine.A @ M.T, ct_affine.b - ct_affine.A @ M.T @ c)
    to_phys = affine.inverse_apply
    n, sp = spec["mr_n"], rng.uniform(*spec["mr_sp"])
    sz, nz = rng.uniform(*spec["mr_sz"]), int(rng.integers(spec["mr_nz"][0], spec["mr_nz"][1] + 1))
    mid = M @ centre + c + np.append(rng.uniform(-5, 5, 2), 0.0)
    top = _scalp_top(to_phys) + rng.uniform(4.0, 10.0)
    origin = (mid[0] - (n - 1) / 2 * sp, mid[1] - (n - 1) / 2 * sp, top - (nz - 1) * sz)
    return Grid((n, n, nz), (sp, sp, sz), origin), affine


def _geometry(rng: np.random.Generator, size: str, s: float) -> _Geometry:
    spec = _SIZES[size]
    ct_grid, ct_affine, centre = _ct_geometry(rng, spec, s)
    tr = _ct_to_mr(rng, centre)
    mr_grid, mr_affine = _mr_geometry(rng, spec, ct_affine, centre, tr)
    return _Geometry(s, ct_grid, mr_grid, ct_affine, mr_affine, tr)


# =========================================================================================
# Intensities: CT HU and T1 MR from the tissue map.
# =========================================================================================


def _lut(rng: np.random.Generator, column: int, rel: float, floor: float) -> np.ndarray:
    """Per-case tissue values: nominal value plus a small case-specific offset."""
    base = np.array([_TISSUES[n][column] for n in TISSUE_NAMES], dtype=np.float32)
    jitter = rng.normal(0.0, 1.0, base.size) * np.maximum(np.abs(base) * rel, floor)
    return (base + jitter.astype(np.float32)).astype(np.float32)


def _paint_couch(tissue: np.ndarray, grid: Grid, rng: np.random.Generator) -> None:
    """Curved carbon-fibre couch (shell + foam core) just posterior to the body, fixed to
    the scanner (not to the patient), painted only where there is air."""
    body_rows = np.nonzero((tissue != 0).any(axis=(0, 2)))[0]
    if body_rows.size == 0:
        return
    ox, oy, _ = grid.origin
    sx, sy, _ = grid.spacing
    y0 = oy + (body_rows.max() + 1) * sy + rng.uniform(2.0, 6.0)
    x = ox + np.arange(grid.size[0]) * sx
    y = oy + np.arange(grid.size[1]) * sy
    top = y0 - 2e-4 * x**2  # the couch curves up towards the patient at its edges
    depth = y[:, None] - top[None, :]
    inside = (depth >= 0) & (depth <= 45.0) & (np.abs(x)[None, :] <= 260.0)
    shell = inside & ((depth <= 2.5) | (depth >= 42.5))
    couch = np.where(shell, TID["COUCH_SHELL"], TID["COUCH_CORE"]).astype(np.uint8)
    for k in range(tissue.shape[0]):
        sl = tissue[k]
        m = inside & (sl == 0)
        sl[m] = couch[m]


def _ct_from_tissue(tissue: np.ndarray, grid: Grid, rng: np.random.Generator, chunk: int = 16) -> np.ndarray:
    """HU = per-case tissue value, slight in-plane blur (scanner PSF), Gaussian noise."""
    lut = _lut(rng, 0, 0.04, 3.0)
    lut[TID["AIR"]] = -1000.0
    noise_sd = rng.uniform(10.0, 20.0)
    sigma = (0.0, 0.6 / grid.spacing[1], 0.6 / grid.spacing[0])
    out = np.empty(tissue.shape, dtype=np.int16)
    for k0 in range(0, tissue.shape[0], chunk):
        f = lut[tissue[k0:k0 + chunk]]
        f = ndimage.gaussian_filter(f, sigma, mode="nearest")
        f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(noise_sd)
        np.clip(f, -1024, 3071, out=f)
        out[k0:k0 + chunk] = np.rint(f)
    return out


def _mr_from_tissue(tissue: np.ndarray, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """T1 = per-case tissue value, blur, smooth multiplicative bias field, Rician noise."""
    lut = _lut(rng, 1, 0.05, 5.0)
    lut[TID["AIR"]] = 0.0
    f = ndimage.gaussian_filter(lut[tissue], (0.4, 0.6, 0.6))
    nz, ny, nx = f.shape
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in (nz, ny, nx))
    c = rng.uniform(-0.12, 0.12, 6).astype(np.float32)
    bias = (1 + c[0] * x[None, None, :] + c[1] * y[None, :, None] + c[2] * z[:, None, None]
            + c[3] * x[None, None, :] * y[None, :, None] + c[4] * z[:, None, None] ** 2 + c[5] * x[None, None, :] ** 2)
    f *= bias
    sd = np.float32(rng.uniform(8.0, 15.0))
    re = f + rng.standard_normal(f.shape, dtype=np.float32) * sd
    im = rng.standard_normal(f.shape, dtype=np.float32) * sd
    return np.sqrt(re * re + im * im).astype(np.float32)


# =========================================================================================
# Public API
# =========================================================================================


def _to_image(arr: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(v) for v in grid.spacing))
    img.SetOrigin(tuple(float(v) for v in grid.origin))
    return img


def _choose_missing(rng: np.random.Generator) -> tuple[str, ...]:
    """A few OARs are "not annotated", as in the real data (tissue drawn, no label)."""
    hits = [n for n in OAR_NAMES if rng.random() < P_MISSING]
    return tuple(hits[:MAX_MISSING])


def _check_labels(labels: np.ndarray, present: Sequence[str], case_id: str) -> None:
    """Every present OAR must be drawn and lie wholly inside the field of view."""
    boxes = ndimage.find_objects(labels, max_label=NUM_OARS)
    for name in present:
        box = boxes[LABEL_IDS[name] - 1]
        if box is None:
            raise RuntimeError(f"{case_id}: OAR {name} was painted over completely")
        if any(sl.start == 0 or sl.stop == n for sl, n in zip(box, labels.shape)):
            raise RuntimeError(f"{case_id}: OAR {name} touches the edge of the CT field of view")


def _validate(seed: int, size: str, case_id: str) -> None:
    if size not in _SIZES:
        raise PhantomError(f"unknown phantom size {size!r}; use one of {', '.join(_SIZES)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise PhantomError(f"seed must be a non-negative integer, got {seed!r}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", case_id or ""):
        raise PhantomError(f"case id {case_id!r} must be letters, digits, '_' or '-' (e.g. case_01)")


def make_case(seed: int, size: str = "small", case_id: str = "case_01") -> PhantomCase:
    """Build one synthetic case; identical output for identical ``(seed, size)``."""
    _validate(seed, size, case_id)
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.9, 1.1)  # global head size
    missing = _choose_missing(rng)
    anatomy = build_anatomy(rng, s, missing)
    warp = Warp.random(rng)
    geo = _geometry(rng, size, s)
    tissue, labels = render(geo.ct_grid, geo.ct_affine, warp, anatomy, with_labels=True)
    present = tuple(n for n in OAR_NAMES if n not in missing)
    _check_labels(labels, present, case_id)
    _paint_couch(tissue, geo.ct_grid, rng)
    ct = _ct_from_tissue(tissue, geo.ct_grid, rng)
    del tissue
    mr_tissue, _ = render(geo.mr_grid, geo.mr_affine, warp, anatomy, with_labels=False)
    mr = _mr_from_tissue(mr_tissue, geo.mr_grid, rng)
    log.debug("%s: s=%.3f missing=%s CT %s MR %s", case_id, s, missing, geo.ct_grid.size, geo.mr_grid.size)
    return PhantomCase(case_id, _to_image(ct, geo.ct_grid), _to_image(mr, geo.mr_grid),
                       _to_image(labels, geo.ct_grid), present, geo.ct_to_mr)


# =========================================================================================
# Writers: HaN-Seg raw layout and Grand-Challenge container input layout.
# =========================================================================================

OAR_CSV = "OAR_data.csv"


def _write(img: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def _update_oar_csv(path: Path, case_id: str, present: Sequence[str]) -> None:
    """Add or replace this case's row in ``OAR_data.csv`` (one row per case, sorted), so
    cases written one at a time still end up in a single table as in HaN-Seg."""
    rows: dict[str, list[str]] = {}
    if path.exists():
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header != ["id", *OAR_NAMES]:
                raise PhantomError(f"{path} exists but is not an OAR table written by this tool")
            rows = {r[0]: r for r in reader if r}
    rows[case_id] = [case_id, *("1" if n in present else "0" for n in OAR_NAMES)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *OAR_NAMES])
        writer.writerows(rows[k] for k in sorted(rows))


def _out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PhantomError(f"output path {out_dir} exists and is not a folder")
    return out_dir


def write_raw(case: PhantomCase, out_dir: Path, table: bool = True) -> Path:
    """HaN-Seg layout: ``out_dir/<id>/<id>_IMG_CT.nrrd``, ``<id>_IMG_MR_T1.nrrd``, one binary
    ``<id>_OAR_<name>.seg.nrrd`` per annotated OAR, and (``table``) the case's row of
    ``out_dir/OAR_data.csv``."""
    out_dir = _out_dir(out_dir)
    folder = out_dir / case.case_id
    _write(case.ct, folder / f"{case.case_id}_IMG_CT.nrrd")
    _write(case.mr, folder / f"{case.case_id}_IMG_MR_T1.nrrd")
    for name in case.present:
        mask = sitk.Cast(sitk.Equal(case.labels, LABEL_IDS[name]), sitk.sitkUInt8)
        _write(mask, folder / oar_file_name(case.case_id, name))
    if table:
        _update_oar_csv(out_dir / OAR_CSV, case.case_id, case.present)
    return folder


def write_gc(case: PhantomCase, out_dir: Path, table: bool = True) -> None:
    """Container input layout: ``input/images/ct/<id>_CT.mha``,
    ``input/images/t1-mri/<id>_T1.mha``; ground truth ``ground_truth/<id>_seg.mha`` (the
    name the container gives its output) and (``table``) ``ground_truth/OAR_data.csv``."""
    out_dir = _out_dir(out_dir)
    _write(case.ct, out_dir / "input" / "images" / "ct" / f"{case.case_id}_CT.mha")
    _write(case.mr, out_dir / "input" / "images" / "t1-mri" / f"{case.case_id}_T1.mha")
    _write(case.labels, out_dir / "ground_truth" / f"{case.case_id}_seg.mha")
    if table:
        _update_oar_csv(out_dir / "ground_truth" / OAR_CSV, case.case_id, case.present)


# =========================================================================================
# CLI
# =========================================================================================


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` (0-based) of a run with ``--seed seed``: independent streams."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hanseg.phantom", description="Write synthetic head-and-neck phantoms.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--cases", type=int, default=1, help="number of cases (case_01 .. case_NN)")
    p.add_argument("--seed", type=int, default=0, help="base seed; case i uses a seed derived from it")
    p.add_argument("--layout", choices=("raw", "gc"), default="raw", help="HaN-Seg raw or container input layout")
    p.add_argument("--size", choices=tuple(_SIZES), default="small", help="grid size")
    p.add_argument("--workers", type=int, default=1, help="processes (cases are made independently)")
    args = p.parse_args(argv)
    if args.cases < 1 or args.seed < 0:
        p.error("--cases must be >= 1 and --seed >= 0")
    return args


def _make_and_write(seed: int, size: str, case_id: str, layout: str, out: Path) -> tuple[str, tuple[str, ...], str]:
    """One case made and written without its ``OAR_data.csv`` row (a worker process must not
    race others on the shared table); returns its id, annotated OARs and a log line."""
    case = make_case(seed, size, case_id)
    (write_raw if layout == "raw" else write_gc)(case, out, table=False)
    missing = sorted(set(OAR_NAMES) - set(case.present))
    line = (f"{case_id}: CT {case.ct.GetSize()}, MR {case.mr.GetSize()}, {len(case.present)} OARs"
            + (f" (not annotated: {', '.join(missing)})" if missing else ""))
    return case_id, tuple(case.present), line


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse(argv)
    width = max(2, len(str(args.cases)))
    jobs = [(case_seed(args.seed, i), args.size, f"case_{i + 1:0{width}d}", args.layout, Path(args.out))
            for i in range(args.cases)]
    if args.workers > 1:  # cases are independent: the same files, in any number of processes
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_make_and_write, *zip(*jobs)))
    else:
        done = [_make_and_write(*job) for job in jobs]
    table = Path(args.out) / (OAR_CSV if args.layout == "raw" else f"ground_truth/{OAR_CSV}")
    for case_id, present, line in done:
        _update_oar_csv(table, case_id, present)
        log.info(line)
    log.info("wrote %d %s case(s) to %s (%s layout)", args.cases, args.size, args.out, args.layout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# =========================================================================================
# The same case on other grids (flipped, oblique, re-spaced): what a robust pipeline must
# handle. Used by the end-to-end tests and the model benchmark.
# =========================================================================================

_OBLIQUE = math.radians(15.0)
#: kind -> (direction matrix, row-major 3x3; spacing factor x,y,z)
_TILT = math.radians(10.0)
_AXES = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # identity direction
GRID_VARIANTS: dict[str, tuple[tuple[float, ...], tuple[float, float, float]]] = {
    "flipped": ((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (1.0, 1.0, 1.0)),
    "oblique": ((math.cos(_OBLIQUE), -math.sin(_OBLIQUE), 0.0, math.sin(_OBLIQUE), math.cos(_OBLIQUE), 0.0,
                 0.0, 0.0, 1.0), (1.0, 1.0, 1.0)),
    "respaced": (_AXES, (1.3, 1.3, 0.8)),
    # "respaced" one axis group at a time, to tell which one costs (benchmarks.phantom_eval)
    "respaced_xy": (_AXES, (1.3, 1.3, 1.0)),
    "respaced_z": (_AXES, (1.0, 1.0, 0.8)),
    # Slices stacked along an axis tilted 10° towards y (a tilted gantry): not orthonormal.
    "sheared": ((1.0, 0.0, 0.0, 0.0, 1.0, math.sin(_TILT), 0.0, 0.0, math.cos(_TILT)), (1.0, 1.0, 1.0)),
}


def regrid(image: sitk.Image, kind: str, interpolator: int = sitk.sitkLinear, default: float = -1000.0) -> sitk.Image:
    """``image`` resampled onto a grid of another ``kind`` (see :data:`GRID_VARIANTS`) around
    the same physical centre: flipped axes, a 15° in-plane rotation, other spacings, or a
    sheared (gantry-tilt) grid."""
    if kind not in GRID_VARIANTS:
        raise PhantomError(f"unknown grid variant {kind!r}; known: {', '.join(GRID_VARIANTS)}")
    direction, factor = GRID_VARIANTS[kind]
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing()) * np.array(factor)
    size = np.ceil(size / np.array(factor)).astype(int)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint(((np.array(image.GetSize()) - 1) / 2).tolist()))
    d = np.array(direction).reshape(3, 3)
    ref = sitk.Image([int(s) for s in size], image.GetPixelID())
    ref.SetSpacing(spacing.tolist())
    ref.SetDirection(direction)
    ref.SetOrigin((centre - d @ ((size - 1) / 2 * spacing)).tolist())
    return sitk.Resample(image, ref, sitk.Transform(), interpolator, float(default), image.GetPixelID())


def regrid_labels(labels: sitk.Image, kind: str) -> sitk.Image:
    """A label map on the grid of another ``kind``, each label's mask interpolated linearly and
    kept where it reaches 0.5 (the largest wins where two do): the anatomy's surfaces sampled at
    the new voxel centres, as nnU-Net resamples segmentations. Nearest neighbour instead copies
    the old voxels' staircase onto the new grid, and on a coarser grid moves small structures'
    boundaries by up to half an old voxel: a reference that penalises a smooth prediction."""
    array = sitk.GetArrayViewFromImage(labels)
    values = [v for v in np.unique(array) if v != 0]
    if not values:
        return regrid(labels, kind, sitk.sitkNearestNeighbor, 0)
    out: np.ndarray | None = None
    for value in values:
        mask = sitk.GetImageFromArray((array == value).astype(np.float32))
        mask.CopyInformation(labels)
        moved = regrid(mask, kind, sitk.sitkLinear, 0.0)
        p = sitk.GetArrayViewFromImage(moved)
        if out is None:  # the first label's grid gives the shape and geometry of the result
            out, best, geometry = np.zeros(p.shape, array.dtype), np.full(p.shape, 0.5, np.float32), moved
        wins = p >= best
        out[wins], best[wins] = value, p[wins]
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(geometry)
    return result
