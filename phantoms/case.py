"""One synthetic case: pose, grids, the ground-truth CT -> MR transform, intensities.

Two *profiles* say what a case imitates (:class:`Profile`; ``make_case(..., profile=...)``,
``python -m phantoms --profile``):

``simple`` (the default for size ``small``)
    The phantoms as they have always been, byte for byte: fixed grid recipes per size
    (:data:`SIZES`), the MR a few mm and degrees from the CT in the same world frame, float32
    T1, every drawn OAR annotated with value 1 (a few "not annotated", value 0).

``real`` (the default for size ``full``)
    The properties of the real HaN-Seg download (shared notes, "Data"). Grid recipe
    (:data:`REAL_SIZES`, :func:`real_geometry`), at full size:

    * CT 1024 x 1024 in-plane, field of view drawn in 500-800 mm (spacing = FOV / 1024),
      slices of 2, 2.5 or 3 mm from 6-15 mm above the scalp down to a bottom drawn between
      just below the lowest OAR (canonical z -225) and the upper thorax (-400);
    * one case in three (:data:`P_TALL`) is *tall*: 2 mm slices over 630-670 mm, i.e. 315-335
      slices (330-351 M voxels), far below the shoulders (seed :data:`TALL_SEED` is tall);
    * below the neck the body goes on (arms, rib cage, lungs, heart, aorta, spine, liver,
      stomach: :mod:`phantoms.anatomy`), painted only below every OAR and never labelled;
    * MR 512 x 512 in-plane at a 250-360 mm field of view, slices of 1.7-3.0 mm over a z extent
      drawn in 170-300 mm but at least from above the scalp down to C2 (the upper neck), the
      slice count clipped to 57-144: always a smaller field of view than the CT's, in-plane
      and in z;
    * the MR header in world coordinates unrelated to the CT's: its frame is shifted by
      150-450 mm per axis, along z far enough that the two fields of view do not overlap
      (headers alone put the MR nowhere near the CT), and ``ct_to_mr`` includes the shift;
    * about 6 MRs in 42 (:data:`P_MR_UINT16`; seed :data:`MR_UINT16_SEED`) stored as uint16
      holding round(T1) + 32768;
    * about one case in 42 (:data:`P_UNRELIABLE`; the command line forces one per run of two
      or more cases) follows case_19: no OpticChiasm mask (value 0) and the brainstem, optic
      nerves and pituitary flagged 0.5 in ``OAR_data.csv`` while their masks are written.

    At size ``small`` the same recipe runs at 256 x 256 (CT, 300-400 mm) and 128 x 128 (MR,
    250-290 mm) in-plane, tall cases with 3 mm slices: the quirks without a full-size render.
    ``Profile(tall=True, mr_uint16=False, ...)`` forces a quirk; ``None`` draws it from the
    seed, in a random stream of its own, so forcing one leaves the others as drawn.

The real profile draws its quirks, its grids and the body below the neck from streams of their
own (:func:`_real_streams`): the head-and-neck anatomy of a seed is the same in both profiles.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hanseg.geometry import Grid, vec3
from hanseg.labels import LABEL_IDS, NUM_OARS, OAR_NAMES

from .anatomy import HEAD_CENTRE, LOWEST_OAR_Z, build_anatomy
from .errors import PhantomError
from .render import Affine, Warp, render
from .shapes import Structure, Vec, _v, rotation_matrix
from .tissues import _TISSUES, TID, TISSUE_NAMES

log = logging.getLogger(__name__)

#: Grid recipes per size: CT in-plane voxels, xy spacing range, z spacing, slice range;
#: MR in-plane voxels, xy spacing range, z spacing range, slice range; CT xy shift (mm).
SIZES = {
    "small": dict(
        ct_n=256,
        ct_sp=(0.95, 1.05),
        ct_sz=2.5,
        ct_nz=None,
        mr_n=128,
        mr_sp=(1.8, 2.0),
        mr_sz=(3.5, 3.7),
        mr_nz=(60, 66),
        shift=(10.0, 6.0),
    ),
    "full": dict(
        ct_n=1024,
        ct_sp=(0.52, 0.60),
        ct_sz=2.0,
        ct_nz=(190, 210),
        mr_n=512,
        mr_sp=(0.48, 0.52),
        mr_sz=(2.9, 3.1),
        mr_nz=(78, 84),
        shift=(20.0, 15.0),
    ),
}
#: Probability that one OAR is "not annotated" in a case, and the most per case.
P_MISSING = 0.03
MAX_MISSING = 2

#: Real profile, per size: in-plane voxels and field of view (mm) of CT and MR, the slice
#: thickness of a tall CT, the CT xy shift (mm). The rest of the recipe is common:
REAL_SIZES = {
    "small": dict(ct_n=256, ct_fov=(300.0, 400.0), tall_sz=3.0, mr_n=128, mr_fov=(250.0, 290.0), shift=(10.0, 6.0)),
    "full": dict(ct_n=1024, ct_fov=(500.0, 800.0), tall_sz=2.0, mr_n=512, mr_fov=(250.0, 360.0), shift=(20.0, 15.0)),
}
CT_SLICE_MM = (2.0, 2.5, 3.0)  # slice thickness of a CT that is not tall
CT_BOTTOM_Z = (-400.0, LOWEST_OAR_Z - 10.0)  # canonical z of its bottom: upper thorax .. below the OARs
TALL_EXTENT_MM = (630.0, 670.0)  # z extent of a tall CT (from above the scalp)
MR_SLICE_MM = (1.7, 3.0)
MR_EXTENT_MM = (170.0, 300.0)  # drawn MR z extent, but at least down to MR_NECK_Z
MR_NECK_Z = -60.0  # canonical z of C2: a real MR covers the head and at least the upper neck
MR_SLICES = (57, 144)
MR_OFFSET_MM = (150.0, 450.0)  # per-axis shift of the MR's world frame
MR_UINT16_OFFSET = 32768
P_TALL = 1.0 / 3.0
P_MR_UINT16 = 6.0 / 42.0
P_UNRELIABLE = 1.0 / 42.0
#: case_19 of the download: this OAR has no mask (0), these are flagged 0.5 (masks written).
UNRELIABLE_MISSING = "OpticChiasm"
UNRELIABLE_OARS = ("Brainstem", "OpticNrv_L", "OpticNrv_R", "Pituitary")
#: Seeds whose real-profile draws (at any size) give a tall CT (MR float32), and a uint16 MR
#: (CT not tall): ``make_case(TALL_SEED, "full")`` is the largest kind of case, 1024 x 1024 x 330
#: (346 M voxels). For tests and benchmarks; tests/smoke/phantoms checks both draws.
TALL_SEED = 0
MR_UINT16_SEED = 11


@dataclass(frozen=True)
class Profile:
    """What a case imitates: ``real=False`` is the simple profile (no quirks may be forced),
    ``real=True`` the HaN-Seg download's; each quirk ``None`` is drawn from the seed, a bool
    forces it. :meth:`resolve` gives the profile with every quirk decided."""

    real: bool = True
    tall: bool | None = None  # CT far below the shoulders (P_TALL)
    mr_uint16: bool | None = None  # MR stored as uint16, round(T1) + 32768 (P_MR_UINT16)
    unreliable: bool | None = None  # the case_19 pattern in OAR_data.csv (P_UNRELIABLE)

    @property
    def name(self) -> str:
        return "real" if self.real else "simple"

    def resolve(self, rng: np.random.Generator) -> Profile:
        """Every quirk decided: forced ones kept, the others drawn (always three draws, so
        forcing one leaves the others as they would have been)."""
        if not self.real:
            return Profile(False, False, False, False)
        u = rng.random(3)
        return Profile(
            True,
            _decide(self.tall, u[0], P_TALL),
            _decide(self.mr_uint16, u[1], P_MR_UINT16),
            _decide(self.unreliable, u[2], P_UNRELIABLE),
        )


def _decide(forced: bool | None, u: float, p: float) -> bool:
    """A quirk: as forced, or drawn with probability ``p`` from the uniform draw ``u``."""
    return bool(u < p) if forced is None else bool(forced)


#: The named profiles, and the one each size uses unless told otherwise.
PROFILES = {"simple": Profile(real=False), "real": Profile()}
DEFAULT_PROFILE = {"small": "simple", "full": "real"}


@dataclass(frozen=True)
class PhantomCase:
    """One synthetic case, as the HaN-Seg data provide it."""

    case_id: str
    ct: sitk.Image  # int16 HU on the CT grid
    mr: sitk.Image  # float32 T1 on its own grid (real profile, some cases: uint16 T1 + 32768)
    labels: sitk.Image  # uint8 0..30 on the CT grid
    present: tuple[str, ...]  # OARs with a mask (drawn in ``labels``), in label order
    ct_to_mr: sitk.Euler3DTransform  # CT physical point -> MR physical point
    unreliable: tuple[str, ...] = ()  # OARs whose masks are flagged 0.5 in OAR_data.csv

    @property
    def oar_values(self) -> dict[str, float]:
        """This case's row of ``OAR_data.csv``: 1 annotated, 0.5 unreliable, 0 no mask."""
        return {n: (0.5 if n in self.unreliable else 1.0) if n in self.present else 0.0 for n in OAR_NAMES}


@dataclass(frozen=True)
class CaseGeometry:
    """Both grids of a case, their maps to canonical space and the ground-truth transform."""

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


def _head_pose(rng: np.random.Generator, shift: tuple[float, float], s: float) -> tuple[Affine, Vec]:
    """CT physical -> canonical map: a few degrees of rotation, head centred with a random
    xy shift (the centre, in CT physical mm, is returned too)."""
    R = _random_rotation(rng, 0.0, 4.0)
    sx, sy = shift
    centre = _v(rng.uniform(-sx, sx), rng.uniform(-sy, sy), 0.0)
    return Affine(R.T / s, HEAD_CENTRE - R.T @ centre / s), centre


def _ct_geometry(rng: np.random.Generator, spec: dict, s: float) -> tuple[Grid, Affine, Vec]:
    """CT grid and head pose (simple profile): fixed in-plane size, scalp to below the OARs."""
    affine, centre = _head_pose(rng, spec["shift"], s)
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


def _mr_affine(ct_affine: Affine, tr: sitk.Euler3DTransform) -> tuple[Affine, np.ndarray, Vec]:
    """MR physical -> canonical map, and ``M``, ``c`` of ``ct_to_mr(p) = M @ p + c``."""
    M, c = _euler_affine(tr)
    # MR physical -> CT physical is M^T (p - c); compose with CT physical -> canonical.
    return Affine(ct_affine.A @ M.T, ct_affine.b - ct_affine.A @ M.T @ c), M, c


def _mr_geometry(
    rng: np.random.Generator, spec: dict, ct_affine: Affine, centre: Vec, tr: sitk.Euler3DTransform
) -> tuple[Grid, Affine]:
    """MR grid around the head in MR space: smaller field of view, head and upper neck."""
    affine, M, c = _mr_affine(ct_affine, tr)
    to_phys = affine.inverse_apply
    n, sp = spec["mr_n"], rng.uniform(*spec["mr_sp"])
    sz, nz = rng.uniform(*spec["mr_sz"]), int(rng.integers(spec["mr_nz"][0], spec["mr_nz"][1] + 1))
    mid = M @ centre + c + np.append(rng.uniform(-5, 5, 2), 0.0)
    top = _scalp_top(to_phys) + rng.uniform(4.0, 10.0)
    origin = (mid[0] - (n - 1) / 2 * sp, mid[1] - (n - 1) / 2 * sp, top - (nz - 1) * sz)
    return Grid(origin, (sp, sp, sz), (n, n, nz)), affine


def _geometry(rng: np.random.Generator, size: str, s: float) -> CaseGeometry:
    spec = SIZES[size]
    ct_grid, ct_affine, centre = _ct_geometry(rng, spec, s)
    tr = _ct_to_mr(rng, centre)
    mr_grid, mr_affine = _mr_geometry(rng, spec, ct_affine, centre, tr)
    return CaseGeometry(s, ct_grid, mr_grid, ct_affine, mr_affine, tr)


# =========================================================================================
# Real profile: the HaN-Seg download's grids and world frames.
# =========================================================================================


def _real_ct_geometry(rng: np.random.Generator, spec: dict, s: float, tall: bool) -> tuple[Grid, Affine, Vec]:
    """CT grid of the real profile: n x n in-plane over a 500-800 mm field of view (full
    size), from above the scalp down to a drawn bottom, or (tall) 630-670 mm in thin slices."""
    affine, centre = _head_pose(rng, spec["shift"], s)
    to_phys = affine.inverse_apply
    n = spec["ct_n"]
    sp = rng.uniform(*spec["ct_fov"]) / n
    top = _scalp_top(to_phys) + rng.uniform(6.0, 15.0)
    if tall:
        sz = float(spec["tall_sz"])
        nz = math.ceil(rng.uniform(*TALL_EXTENT_MM) / sz)
    else:
        sz = float(rng.choice(CT_SLICE_MM))
        # the bottom is measured at the cord, as in the simple recipe; at most -225 keeps
        # every OAR 10 mm (canonical) inside the field of view
        bottom = float(to_phys(np.array([[0.0, 25.0, rng.uniform(*CT_BOTTOM_Z)]]))[0, 2])
        nz = math.ceil((top - bottom) / sz) + 1
    origin = (-(n - 1) / 2 * sp, -(n - 1) / 2 * sp, top - (nz - 1) * sz)
    return Grid(origin, (sp, sp, sz), (n, n, nz)), affine, centre


def _real_mr_geometry(
    rng: np.random.Generator, spec: dict, ct_affine: Affine, centre: Vec, tr: sitk.Euler3DTransform
) -> tuple[Grid, Affine]:
    """MR grid of the real profile, in MR space before its world shift: n x n in-plane over
    250-360 mm (full size), 1.7-3.0 mm slices from above the scalp over a z extent drawn in
    170-300 mm but reaching C2, with 57-144 slices (the count wins)."""
    affine, M, c = _mr_affine(ct_affine, tr)
    to_phys = affine.inverse_apply
    n = spec["mr_n"]
    sp = rng.uniform(*spec["mr_fov"]) / n
    sz = rng.uniform(*MR_SLICE_MM)
    top = _scalp_top(to_phys) + rng.uniform(4.0, 10.0)
    neck = float(to_phys(np.array([[0.0, 25.0, MR_NECK_Z]]))[0, 2])
    extent = max(rng.uniform(*MR_EXTENT_MM), top - neck + 10.0)  # 10 mm: C2's body is also in view
    nz = int(np.clip(math.ceil(extent / sz), *MR_SLICES))
    mid = M @ centre + c + np.append(rng.uniform(-5, 5, 2), 0.0)
    origin = (mid[0] - (n - 1) / 2 * sp, mid[1] - (n - 1) / 2 * sp, top - (nz - 1) * sz)
    return Grid(origin, (sp, sp, sz), (n, n, nz)), affine


def _z_range(grid: Grid) -> tuple[float, float]:
    """Lowest and highest voxel centre along z (identity direction)."""
    return grid.origin_xyz[2], grid.origin_xyz[2] + (grid.size_xyz[2] - 1) * grid.spacing_xyz[2]


def _mr_world_shift(rng: np.random.Generator, ct_grid: Grid, mr_grid: Grid) -> np.ndarray:
    """Shift (mm) of the MR's world frame: 150-450 mm per axis with random signs, and along z
    at least far enough that the MR's field of view and the CT's are disjoint: in the real
    data resampling an MR into its CT by the headers alone gives no overlap."""
    d = rng.uniform(*MR_OFFSET_MM, 3) * rng.choice((-1.0, 1.0), 3)
    (ct_lo, ct_hi), (mr_lo, mr_hi) = _z_range(ct_grid), _z_range(mr_grid)
    clear = (ct_hi - mr_lo) if d[2] > 0 else (ct_lo - mr_hi)  # smallest shift that separates them
    d[2] = clear + math.copysign(rng.uniform(20.0, 300.0), d[2])
    return d


def _shift_mr_frame(
    d: np.ndarray, mr_grid: Grid, mr_affine: Affine, tr: sitk.Euler3DTransform
) -> tuple[Grid, Affine, sitk.Euler3DTransform]:
    """The MR grid, its map to canonical space and ``ct_to_mr``, all in the frame moved by
    ``d``: the ground truth stays the truth (MR voxels see the same anatomy)."""
    grid = Grid(vec3(np.asarray(mr_grid.origin_xyz) + d), mr_grid.spacing_xyz, mr_grid.size_xyz)
    affine = Affine(mr_affine.A, mr_affine.b - mr_affine.A @ d)
    moved = sitk.Euler3DTransform()
    moved.SetCenter(tr.GetCenter())
    moved.SetMatrix(tr.GetMatrix(), 1e-6)
    moved.SetTranslation(tuple(float(t) for t in np.asarray(tr.GetTranslation()) + d))
    return grid, affine, moved


def real_geometry(rng: np.random.Generator, size: str, s: float, tall: bool) -> CaseGeometry:
    """The real profile's grid recipe (see the module docstring): CT grid and pose, the
    ground-truth rigid MR offset, the MR grid, then the MR's unrelated world frame. Renders
    nothing, so tests can check the recipe at full size."""
    if size not in REAL_SIZES:
        raise PhantomError(f"unknown phantom size {size!r}; use one of {', '.join(REAL_SIZES)}")
    spec = REAL_SIZES[size]
    ct_grid, ct_affine, centre = _real_ct_geometry(rng, spec, s, tall)
    tr = _ct_to_mr(rng, centre)
    mr_grid, mr_affine = _real_mr_geometry(rng, spec, ct_affine, centre, tr)
    mr_grid, mr_affine, tr = _shift_mr_frame(_mr_world_shift(rng, ct_grid, mr_grid), mr_grid, mr_affine, tr)
    return CaseGeometry(s, ct_grid, mr_grid, ct_affine, mr_affine, tr)


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
        f = lut[tissue[k0 : k0 + chunk]]
        f = ndimage.gaussian_filter(f, sigma, mode="nearest")
        f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(noise_sd)
        np.clip(f, -1024, 3071, out=f)
        out[k0 : k0 + chunk] = np.rint(f)
    return out


def _mr_from_tissue(tissue: np.ndarray, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """T1 = per-case tissue value, blur, smooth multiplicative bias field, Rician noise."""
    lut = _lut(rng, 1, 0.05, 5.0)
    lut[TID["AIR"]] = 0.0
    f = ndimage.gaussian_filter(lut[tissue], (0.4, 0.6, 0.6))
    nz, ny, nx = f.shape
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in (nz, ny, nx))
    c = rng.uniform(-0.12, 0.12, 6).astype(np.float32)
    bias = (
        1
        + c[0] * x[None, None, :]
        + c[1] * y[None, :, None]
        + c[2] * z[:, None, None]
        + c[3] * x[None, None, :] * y[None, :, None]
        + c[4] * z[:, None, None] ** 2
        + c[5] * x[None, None, :] ** 2
    )
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


def _store_mr(mr: np.ndarray, uint16: bool) -> np.ndarray:
    """T1 as float32, or as some HaN-Seg MRs hold it: unsigned 16-bit, round(T1) + 32768."""
    if not uint16:
        return mr
    return np.clip(np.rint(mr) + MR_UINT16_OFFSET, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _validate(seed: int, size: str, case_id: str = "case_01") -> None:
    if size not in SIZES:
        raise PhantomError(f"unknown phantom size {size!r}; use one of {', '.join(SIZES)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise PhantomError(f"seed must be a non-negative integer, got {seed!r}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", case_id or ""):
        raise PhantomError(f"case id {case_id!r} must be letters, digits, '_' or '-' (e.g. case_01)")


def get_profile(profile: str | Profile | None, size: str) -> Profile:
    """A profile by name (None: the size's default, :data:`DEFAULT_PROFILE`), checked."""
    if profile is None:
        profile = DEFAULT_PROFILE.get(size, "simple")
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise PhantomError(f"unknown phantom profile {profile!r}; use one of {', '.join(PROFILES)}")
        return PROFILES[profile]
    if not isinstance(profile, Profile):
        raise PhantomError(f"profile must be a name ({', '.join(PROFILES)}) or a Profile, got {profile!r}")
    if not profile.real and (profile.tall, profile.mr_uint16, profile.unreliable) != (None, None, None):
        raise PhantomError(
            "quirks (tall, mr_uint16, unreliable) exist only in the real profile; use Profile(real=True, ...)"
        )
    return profile


def _real_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Quirk, body-below-the-neck and grid streams of the real profile, independent of the
    main stream (which keeps the head-and-neck anatomy of the seed) and of each other."""
    quirks, below_neck, grid = np.random.SeedSequence([int(seed), 0x4E41]).spawn(3)
    return np.random.default_rng(quirks), np.random.default_rng(below_neck), np.random.default_rng(grid)


@dataclass(frozen=True)
class CasePlan:
    """Everything about a case but its voxels: what :func:`make_case` renders."""

    profile: Profile  # resolved: every quirk decided
    anatomy: list[Structure]
    warp: Warp
    geometry: CaseGeometry
    missing: tuple[str, ...]  # OARs without a mask (tissue drawn, no label)
    unreliable: tuple[str, ...]  # OARs with a mask, flagged 0.5
    rng: np.random.Generator  # the main stream, where the intensities go on


def plan_case(seed: int, size: str = "small", profile: str | Profile | None = None) -> CasePlan:
    """Anatomy, annotation, grids and transform of a case, without rendering (cheap: full-size
    grids can be checked this way). The main stream's draws come in the order they always
    have, so a simple case is what it was."""
    _validate(seed, size)
    prof = get_profile(profile, size)
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.9, 1.1)  # global head size
    missing = _choose_missing(rng)
    if not prof.real:
        anatomy = build_anatomy(rng, s, missing)
        warp = Warp.random(rng)
        return CasePlan(prof.resolve(rng), anatomy, warp, _geometry(rng, size, s), missing, (), rng)
    quirk_rng, body_rng, grid_rng = _real_streams(seed)
    prof = prof.resolve(quirk_rng)
    unreliable: tuple[str, ...] = ()
    if prof.unreliable:
        missing = missing + ((UNRELIABLE_MISSING,) if UNRELIABLE_MISSING not in missing else ())
        unreliable = tuple(n for n in UNRELIABLE_OARS if n not in missing)
    anatomy = build_anatomy(rng, s, missing, body_rng)
    warp = Warp.random(rng)
    geometry = real_geometry(grid_rng, size, s, bool(prof.tall))
    return CasePlan(prof, anatomy, warp, geometry, missing, unreliable, rng)


def make_case(
    seed: int, size: str = "small", case_id: str = "case_01", profile: str | Profile | None = None
) -> PhantomCase:
    """Build one synthetic case; identical output for identical ``(seed, size, profile)``.
    ``profile`` None is the size's default: simple for ``small``, real for ``full``."""
    _validate(seed, size, case_id)
    plan = plan_case(seed, size, profile)
    geo, rng = plan.geometry, plan.rng
    tissue, labels = render(geo.ct_grid, geo.ct_affine, plan.warp, plan.anatomy, with_labels=True)
    present = tuple(n for n in OAR_NAMES if n not in plan.missing)
    _check_labels(labels, present, case_id)
    _paint_couch(tissue, geo.ct_grid, rng)
    ct = _ct_from_tissue(tissue, geo.ct_grid, rng)
    del tissue
    mr_tissue, _ = render(geo.mr_grid, geo.mr_affine, plan.warp, plan.anatomy, with_labels=False)
    mr = _store_mr(_mr_from_tissue(mr_tissue, geo.mr_grid, rng), bool(plan.profile.mr_uint16))
    log.debug(
        "%s: %s profile, s=%.3f missing=%s unreliable=%s CT %s MR %s %s",
        case_id,
        plan.profile.name,
        geo.s,
        plan.missing,
        plan.unreliable,
        geo.ct_grid.size_xyz,
        geo.mr_grid.size_xyz,
        mr.dtype,
    )
    return PhantomCase(
        case_id,
        _to_image(ct, geo.ct_grid),
        _to_image(mr, geo.mr_grid),
        _to_image(labels, geo.ct_grid),
        present,
        geo.ct_to_mr,
        plan.unreliable,
    )


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` (0-based) of a run with ``--seed seed``: independent streams."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])
