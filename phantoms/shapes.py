"""Implicit solids in canonical millimetres, and the painting steps made of them."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .errors import PhantomError

Vec = np.ndarray  # shape (3,), float64, x,y,z

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


class Shape(Protocol):
    """A solid: a conservative bounding box and a vectorised inside test."""

    def bounds(self) -> tuple[Vec, Vec]: ...

    def contains(self, q: Coords) -> np.ndarray: ...

    def grown(self, d: float) -> Shape: ...


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

    def grown(self, d: float) -> Ellipsoid:
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
        best: np.ndarray | None = None
        for a, b in itertools.pairwise(pts):
            u = b - a
            inv_len2 = np.float32(1.0 / max(float(u @ u), 1e-9))
            d = [p[i] - a[i] for i in range(3)]
            t = np.clip((d[0] * u[0] + d[1] * u[1] + d[2] * u[2]) * inv_len2, 0.0, 1.0)
            d2 = (d[0] - t * u[0]) ** 2 + (d[1] - t * u[1]) ** 2 + (d[2] - t * u[2]) ** 2
            best = d2 if best is None else np.minimum(best, d2, out=best)
        if best is None:
            raise PhantomError(f"a tube needs at least two points, got {len(self.points)}")
        return best <= np.float32(self.radius**2)

    def grown(self, d: float) -> Tube:
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

    def grown(self, d: float) -> Union:
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

    def grown(self, d: float) -> Difference:
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

    def grown(self, d: float) -> Clip:
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


def rotation_matrix(axis: npt.ArrayLike, degrees: float) -> np.ndarray:
    """Right-handed rotation about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = math.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)
