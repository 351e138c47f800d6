"""Does the CT cover the head and neck? Warnings for a study that is cut.

A CT that stops in the neck (a study cut off, half a series received) or that begins below the
vertex is segmented like any other: the organs outside it are missing and those at its edge are
cut, and nothing else in the pipeline says so. Three statements, each a warning of the case:

* the CT's most superior slice already holds the patient: the top of the head is cut off;
* the CT reaches less far below the top of the head than the lowest OAR ended in every training
  case (the plan's ``oar_end_depth_mm``): organs below are missing, with the numbers;
* the structures of the label map that touch the CT's top or bottom slice where the patient is
  cut there (the body reaches that slice), by name: they may continue beyond the scan.

Axes and units (see :mod:`hanseg.geometry`): arrays are z,y,x; depths are mm along the patient's
superior-inferior axis, measured from the top of the body exactly as training measured the OAR
depths (:func:`hanseg.geometry.depth_below_top_mm`), so the CT's reach and the plan's numbers
compare like with like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .checks import sanitize_ct
from .geometry import BodyMask, body_mask, slice_step_mm, superior_axis, top_ct_slice
from .labels import OAR_NAMES
from .plans import Plans

log = logging.getLogger(__name__)

#: Block size (mm) of the body mask: the one training measured the OAR depths with.
WORK_MM = 4.0


@dataclass(frozen=True)
class Reach:
    """Where the patient lies along the CT's superior axis.

    ``axis``/``sign``: the array axis (z=0, y=1, x=2) that points most nearly to the patient's
    superior, +1 when the index grows superiorly. ``body_at_top``/``body_at_bottom``: the CT's
    most superior/inferior slice holds the body (the patient is cut there; at the bottom of a
    head-and-neck CT, always). ``covered_mm``: from the top of the body to the CT's most
    inferior slice (slice centre to slice centre, as the OAR depths are measured).
    """

    axis: int
    sign: int
    body_at_top: bool
    body_at_bottom: bool
    covered_mm: float


def measure_reach(
    ct: sitk.Image, threshold_hu: float, work_mm: float = WORK_MM, found: BodyMask | None = None
) -> Reach | None:
    """The :class:`Reach` of ``ct``; None without a body above ``threshold_hu`` or when the
    slices are not roughly axial (then superior cannot be told from the voxel axes).

    The body is :func:`hanseg.geometry.body_mask`'s (the component that reaches deepest inside
    itself), not every voxel above the threshold: a head rest or couch runs through the top
    slices of a CT whose head is whole. ``found``: that mask as preprocessing made it (on the
    sanitised CT, at ``work_mm``), so it is not made twice."""
    if found is None:
        ct, _ = sanitize_ct(ct)  # a CT stored as HU + 1024 would be all body; its warnings come from preprocessing
    axes = superior_axis(ct)
    if axes is None:
        log.info("reach of the CT not measured: its slices are not axial enough to tell superior from the voxel axes")
        return None
    body, stride = found if found is not None else body_mask(ct, threshold_hu, work_mm)
    if body is None:
        log.info("reach of the CT not measured: no body above %.0f HU", threshold_hu)
        return None
    axis, sign = axes
    present = np.nonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    at_low, at_high = int(present.min()) == 0, int(present.max()) == body.shape[axis] - 1
    n = ct.GetSize()[2 - axis]
    # from the top as depth_below_top_mm measures it (what training planned the OAR depths with)
    top_ct = top_ct_slice(body, stride, axis, sign, n)
    bottom_ct = 0 if sign > 0 else n - 1
    covered_mm = float(abs(top_ct - bottom_ct) * slice_step_mm(ct, axis))
    at_top, at_bottom = (at_high, at_low) if sign > 0 else (at_low, at_high)
    return Reach(axis, sign, at_top, at_bottom, covered_mm)


def reach_warnings(reach: Reach, end_depth_mm: tuple[float, float] | None) -> list[str]:
    """What the CT's reach means for the OARs: its top cut, or its bottom above where the
    lowest OAR ended in every training case (``end_depth_mm``: the plan's shallowest and
    deepest; None: no statement about the bottom)."""
    if reach.body_at_top:
        # depths count from the top of the head: with it cut off they cannot be told
        return [
            "the CT's top slice already holds the patient: the top of the head is cut off, organs at risk "
            "of the upper head may be missing or cut, and how far the CT reaches below the vertex is unknown"
        ]
    if end_depth_mm is None or reach.covered_mm >= end_depth_mm[0]:
        return []
    shallowest, deepest = end_depth_mm
    return [
        f"the CT covers {reach.covered_mm:.0f} mm below the top of the head; in the model's training cases "
        f"the organs at risk reach {shallowest:.0f} to {deepest:.0f} mm below it: the CT is cut short, organs "
        f"at risk lower than {reach.covered_mm:.0f} mm are missing and those crossing its bottom slice are cut"
    ]


def edge_structures(labels: np.ndarray, axis: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the OARs in the first slice of ``labels`` along ``axis``, those in its last), by name."""

    def names(plane: np.ndarray) -> tuple[str, ...]:
        ids = np.unique(plane)
        return tuple(OAR_NAMES[i - 1] for i in ids.tolist() if 1 <= i <= len(OAR_NAMES))

    n = labels.shape[axis]
    return names(labels.take(0, axis=axis)), names(labels.take(n - 1, axis=axis))


def edge_warnings(labels: np.ndarray, reach: Reach | None) -> list[str]:
    """One warning per end of the CT that structures of ``labels`` touch, naming them. The ends
    are the top and bottom along the patient's superior axis, each only where the body reaches
    it: above a whole head the top slice is air, and a label there is the network's mistake, not
    an organ cut by the scan. Without a reach (no body, or slices not axial), the first and
    last slices of the array."""
    if reach is None:
        first, last = edge_structures(labels, 0)
        ends = {"first": first, "last": last}
    else:
        low, high = edge_structures(labels, reach.axis)
        top, bottom = (high, low) if reach.sign > 0 else (low, high)
        ends = {"top": top if reach.body_at_top else (), "bottom": bottom if reach.body_at_bottom else ()}
    return [
        f"cut at the edge of the CT: {', '.join(names)} {'touches' if len(names) == 1 else 'touch'} "
        f"the {end} slice and may continue beyond the scan"
        for end, names in ends.items()
        if names
    ]


def coverage_warnings(
    ct: sitk.Image, labels: np.ndarray, plans: Plans, found: BodyMask | None = None
) -> tuple[str, ...]:
    """The coverage warnings of one case: ``labels`` (uint8 z,y,x, OAR ids) on the grid of
    ``ct`` (HU), with the plan's body threshold and OAR end depths; ``found``: the CT's body
    mask as preprocessing made it (:attr:`hanseg.preprocess.PreprocessedCase.ct_body`)."""
    if labels.shape != tuple(reversed(ct.GetSize())):
        raise ValueError(f"label map shape {labels.shape} (z,y,x) != CT size {tuple(reversed(ct.GetSize()))}")
    reach = measure_reach(ct, plans.body_threshold_hu, found=found)
    if reach is not None:
        log.info(
            "the CT covers %.0f mm below the top of the body%s",
            reach.covered_mm,
            " (its top slice already holds the body)" if reach.body_at_top else "",
        )
    warnings = ([] if reach is None else reach_warnings(reach, plans.oar_end_depth_mm)) + edge_warnings(labels, reach)
    for warning in warnings:
        log.warning("%s", warning)
    return tuple(warnings)
