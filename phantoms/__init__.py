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

Two profiles (:mod:`phantoms.case`): ``simple`` (small cases' default, unchanged for years of
tests) and ``real`` (full size's default: the HaN-Seg download's grids, world frames, MR storage,
annotation table and a body that may reach far below the shoulders).

Rendering never evaluates a shape on the whole grid: each shape's canonical bounding box is
mapped to a voxel index box and only those voxels are tested (a full CT has 200 M voxels).

Modules: ``tissues`` (HU and T1 values), ``shapes`` (implicit solids), ``anatomy`` (the
structures in painting order), ``render`` (chunked painting onto any grid), ``case``
(pose, grids, intensities: :func:`make_case`), ``writers`` (raw and container layouts),
``variants`` (the same case on flipped, oblique, re-spaced grids). ``python -m phantoms``
writes cases.
"""

from .case import MR_UINT16_SEED, PROFILES, TALL_SEED, PhantomCase, Profile, case_seed, make_case, plan_case
from .errors import PhantomError
from .variants import GRID_VARIANTS, regrid, regrid_labels
from .writers import write_gc, write_raw

__all__ = [
    "GRID_VARIANTS",
    "MR_UINT16_SEED",
    "PROFILES",
    "TALL_SEED",
    "PhantomCase",
    "PhantomError",
    "Profile",
    "case_seed",
    "make_case",
    "plan_case",
    "regrid",
    "regrid_labels",
    "write_gc",
    "write_raw",
]
