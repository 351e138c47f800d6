"""One synthetic case: pose, grids, the ground-truth CT -> MR transform, intensities."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hanseg.geometry import Grid
from hanseg.labels import LABEL_IDS, NUM_OARS, OAR_NAMES

from .anatomy import HEAD_CENTRE, LOWEST_OAR_Z, build_anatomy
from .errors import PhantomError
from .render import Affine, Warp, render
from .shapes import Vec, _v, rotation_matrix
from .tissues import _TISSUES, TID, TISSUE_NAMES

log = logging.getLogger(__name__)

#: Grid recipes per size: CT in-plane voxels, xy spacing range, z spacing, slice range;
#: MR in-plane voxels, xy spacing range, z spacing range, slice range; CT xy shift (mm).
SIZES = {
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
    return Grid(origin, (sp, sp, sz), (n, n, nz)), affine, centre


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
    return Grid(origin, (sp, sp, sz), (n, n, nz)), affine


def _geometry(rng: np.random.Generator, size: str, s: float) -> _Geometry:
    spec = SIZES[size]
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
    ox, oy, _ = grid.origin_xyz
    sx, sy, _ = grid.spacing_xyz
    y0 = oy + (body_rows.max() + 1) * sy + rng.uniform(2.0, 6.0)
    x = ox + np.arange(grid.size_xyz[0]) * sx
    y = oy + np.arange(grid.size_xyz[1]) * sy
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
    sigma = (0.0, 0.6 / grid.spacing_xyz[1], 0.6 / grid.spacing_xyz[0])
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
    img.SetSpacing(tuple(float(v) for v in grid.spacing_xyz))
    img.SetOrigin(tuple(float(v) for v in grid.origin_xyz))
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
    if size not in SIZES:
        raise PhantomError(f"unknown phantom size {size!r}; use one of {', '.join(SIZES)}")
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
    log.debug("%s: s=%.3f missing=%s CT %s MR %s", case_id, s, missing, geo.ct_grid.size_xyz, geo.mr_grid.size_xyz)
    return PhantomCase(case_id, _to_image(ct, geo.ct_grid), _to_image(mr, geo.mr_grid),
                       _to_image(labels, geo.ct_grid), present, geo.ct_to_mr)



def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` (0-based) of a run with ``--seed seed``: independent streams."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])

