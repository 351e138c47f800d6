"""Choose test-time mirroring, folds and overlap so a case fits a time budget.

The cost of the sliding window is (windows at an overlap) × (folds) × (1 + mirrored passes)
× (seconds per window). Seconds per window are measured once when the :class:`Segmenter`
is built (the machine decides: a T4, an H100 or two CPU cores differ by 100×); the window
count comes from the case's grid. The richest setting of :func:`ladder` whose estimate fits
the seconds left is used, and the choice is logged. If even the leanest does not fit, the
leanest runs, with a warning (a slow answer beats no answer).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .geometry import window_starts

log = logging.getLogger(__name__)

#: Array axes (z, y, x) mirrored at test time: only x, patient left-right, the one mirror
#: training augments with (with the L/R label swap, see training/data.py). The network never
#: saw upside-down or back-to-front heads, so z or y mirrors would only add errors.
MIRROR_AXES = (2,)


@dataclass(frozen=True)
class RunSettings:
    n_folds: int
    mirror_axes: tuple[int, ...]  # array axes (z=0, y=1, x=2) flipped, one extra pass each
    overlap: float

    @property
    def passes(self) -> int:
        return self.n_folds * (1 + len(self.mirror_axes))

    def describe(self) -> str:
        mirrors = "+".join("zyx"[a] for a in self.mirror_axes) or "none"
        return f"{self.n_folds} fold(s), mirroring {mirrors}, overlap {self.overlap:g}"


def n_windows(shape_zyx: tuple[int, ...], patch_zyx: tuple[int, ...], overlap: float) -> int:
    """Sliding windows over a grid, counted as MONAI places them (:func:`geometry.window_starts`)."""
    return math.prod(len(window_starts(s, r, overlap)) for s, r in zip(shape_zyx, patch_zyx))


def body_windows(body: np.ndarray, patch_zyx: tuple[int, ...], overlap: float) -> int:
    """Windows, placed as MONAI places them over ``body``'s grid, that hold a body voxel: the
    ones inference runs (see :meth:`hanseg.inference.Segmenter.probabilities`)."""
    starts = [window_starts(n, roi, overlap) for n, roi in zip(body.shape, patch_zyx)]
    return sum(
        bool(body[tuple(slice(s, s + r) for s, r in zip(corner, patch_zyx))].any())
        for corner in itertools.product(*starts)
    )


def ladder(n_folds: int, overlap: float, mirroring: bool = True) -> list[RunSettings]:
    """From the richest setting to the leanest: mirrors go first, then folds, then overlap."""
    steps = []
    for folds in range(n_folds, 0, -1):
        if mirroring:
            steps.append(RunSettings(folds, MIRROR_AXES, overlap))
        steps.append(RunSettings(folds, (), overlap))
    for lower in (0.25, 0.0):
        if lower < overlap:
            steps.append(RunSettings(1, (), lower))
    return steps


def choose(
    shape_zyx: tuple[int, ...],
    patch_zyx: tuple[int, ...],
    n_folds: int,
    overlap: float,
    seconds_per_window: float,
    seconds_left: float | None,
    mirroring: bool = True,
    windows_at: Callable[[float], int] | None = None,
) -> tuple[RunSettings, float]:
    """The richest setting whose estimated seconds fit ``seconds_left`` (None: no budget).
    ``windows_at(overlap)`` counts the windows that will run, if not all of the grid's."""

    def seconds(option: RunSettings) -> float:
        count = windows_at(option.overlap) if windows_at else n_windows(shape_zyx, patch_zyx, option.overlap)
        return count * option.passes * seconds_per_window

    options = ladder(n_folds, overlap, mirroring)
    if seconds_left is None:
        return options[0], seconds(options[0])
    for option in options:
        if seconds(option) <= seconds_left:
            return option, seconds(option)
    lean = options[-1]
    log.warning(
        "even %s needs about %.0f s, more than the %.0f s left of the time budget: running it anyway",
        lean.describe(),
        seconds(lean),
        seconds_left,
    )
    return lean, seconds(lean)


#: A measured seconds per window this many times the one timed at start-up is worth a warning:
#: the measured one also holds cutting and blending the windows, which the start-up timing
#: leaves out (a few per cent on a CPU), so small gaps are no sign of a slower machine.
SLOWER_THAN_TUNED = 1.5


def remade_estimate(tuned_s: float, measured_s: float, windows_left: int) -> tuple[str, str | None]:
    """The case's network estimate re-made from the seconds per window measured on its first
    windows (``windows_left``: window passes still to run), and a warning when they are more
    than :data:`SLOWER_THAN_TUNED` times the ``tuned_s`` of start-up (0: not timed, no warning)."""
    info = (
        f"network: about {measured_s * windows_left:.0f} s left at {measured_s:.3f} s per window "
        f"(timed at start-up: {tuned_s:.3f} s)"
    )
    if tuned_s <= 0 or measured_s <= SLOWER_THAN_TUNED * tuned_s:
        return info, None
    return info, (
        f"windows take {measured_s:.3f} s each, {measured_s / tuned_s:.1f}x the {tuned_s:.3f} s timed at "
        "start-up: this machine is slower now than when it was tuned (other processes on the CPU, "
        "thermal throttling, a smaller or shared GPU), and the case will take longer than estimated"
    )
