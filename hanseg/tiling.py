"""Sliding windows over the inference grid and their gaussian blend, as MONAI's
``sliding_window_inference(mode="gaussian")`` computes them, with nothing slow besides the
network.

The windows are MONAI's (:func:`hanseg.geometry.window_starts` on each axis, the grid padded
symmetrically with zeros where it is shorter than the patch), and so are the weights
(``compute_importance_map``: a gaussian, sigma = 0.125 × the patch, raised to at least 1e-3
at the window's edges). The result
equals MONAI's to float rounding (``tests/unit/hanseg/test_tiling.py`` compares them).
What is done differently, measured on the shipped model at full size, where MONAI spent about
a third of the sliding window's seconds outside the network:

* each window's logits are added to the output with a fused multiply-add (``addcmul_``), one
  axial slice at a time: a slice of bfloat16 channels-last logits is put in the output's layout
  while it sits in the cache, and widened to float32 (exactly) by the add itself, about a third
  of the time of converting the whole window first (timed while this was written: a few
  seconds of a full-size case's ``sliding-window`` step);
* the weight sum that divides the blend is one channel, accumulated as the windows go;
* a window without a body voxel adds its background logit to channel 0 only.

Axis order: (channels, z, y, x) arrays, as everywhere in :mod:`hanseg`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from .geometry import window_starts

#: MONAI's default gaussian width, as a fraction of the patch: sliding_window_inference's
#: ``sigma_scale``, which the plan's windows have always been blended with.
SIGMA_SCALE = 0.125

Corner = tuple[int, int, int]
#: windows (B, C, *patch) and their corners → logits (B, K, *patch), any float type and layout
WindowPredictor = Callable[[torch.Tensor, Sequence[Corner]], torch.Tensor]


def gaussian_1d(n: int, sigma_scale: float = SIGMA_SCALE) -> torch.Tensor:
    """MONAI's gaussian importance along one patch axis of ``n`` voxels (peak 1 at the centre)."""
    x = torch.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=torch.float32)
    return torch.exp(x**2 / (-2 * (n * sigma_scale) ** 2))


#: MONAI's floor for the weights: the gaussian's corners would otherwise weigh ~1e-10 and a
#: voxel that only corners reach would be divided by almost nothing.
MIN_WEIGHT = 1e-3


def importance_map(patch_zyx: Sequence[int]) -> torch.Tensor:
    """The (Z, Y, X) weight of each voxel of a window: the outer product of the axes'
    gaussians, at least :data:`MIN_WEIGHT` (or its smallest value, if larger), as MONAI's."""
    gz, gy, gx = (gaussian_1d(n) for n in patch_zyx)
    weight = gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return weight.clamp_(min=max(float(weight.min()), MIN_WEIGHT))


def padding(shape_zyx: Sequence[int], patch_zyx: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(before, after) zeros per axis that bring an axis shorter than the patch up to it, half
    before (rounded down), as MONAI pads."""
    diffs = [max(p - n, 0) for n, p in zip(shape_zyx, patch_zyx)]
    return tuple((d // 2, d - d // 2) for d in diffs)


def corners(shape_zyx: Sequence[int], patch_zyx: Sequence[int], overlap: float) -> list[Corner]:
    """Every window's first voxel (z, y, x) on a grid at least as large as the patch, in
    MONAI's order (x fastest)."""
    starts = [window_starts(n, p, overlap) for n, p in zip(shape_zyx, patch_zyx)]
    return [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]


def add_by_slice(
    target: torch.Tensor,
    source: torch.Tensor,
    weight: torch.Tensor | None = None,
    channels: torch.Tensor | None = None,
    assign: bool = False,
) -> None:
    """``target`` (C, Z, Y, X, float32, default layout) += ``source`` (C, Z, Y, X, any float
    type and layout), its channels taken in the order ``channels`` and times ``weight``
    (Z, Y, X) when given (``assign``: = instead of +=), one axial slice at a time: a slice of
    bfloat16 channels-last logits is put in ``target``'s layout while it sits in the cache and
    widened to float32 (exactly) by the add itself (see the module docstring)."""
    for k in range(target.shape[1]):
        part = source[:, k].contiguous()
        if channels is not None:
            part = part[channels]
        if weight is not None:
            target[:, k].addcmul_(part, weight[k])
        elif assign:
            target[:, k].copy_(part)
        else:
            target[:, k] += part


def _batches(items: list[Corner], size: int) -> Iterator[list[Corner]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def blend(
    image: np.ndarray,
    patch_zyx: Sequence[int],
    overlap: float,
    n_classes: int,
    predict: WindowPredictor,
    batch: int = 1,
    skip: Callable[[Corner], bool] | None = None,
    air_logit: float = 0.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Gaussian-blended logits (K, Z, Y, X), float32 in CPU memory, of ``predict`` run over
    the sliding windows of ``image`` (C, Z, Y, X), ``batch`` windows per call.

    ``skip(corner)`` True: that window is not run; it counts as background, logit
    ``air_logit`` for class 0 and 0 for the others (the caller's test that it holds no body)."""
    shape = image.shape[1:]
    pads = padding(shape, patch_zyx)
    source = torch.from_numpy(image)
    if any(any(p) for p in pads):
        source = torch.nn.functional.pad(source, [v for p in reversed(pads) for v in p])  # x first, as torch pads
    grid = tuple(source.shape[1:])
    weight = importance_map(patch_zyx)
    out = torch.zeros((n_classes, *grid), dtype=torch.float32)
    weights = torch.zeros(grid, dtype=torch.float32)  # their sum at each voxel divides the blend
    pz, py, px = patch_zyx
    run = []
    for corner in corners(grid, patch_zyx, overlap):
        z, y, x = corner
        weights[z : z + pz, y : y + py, x : x + px] += weight
        if skip is not None and skip(corner):
            out[0, z : z + pz, y : y + py, x : x + px].add_(weight, alpha=air_logit)
        else:
            run.append(corner)
    for group in _batches(run, batch):
        windows = torch.stack([source[:, z : z + pz, y : y + py, x : x + px] for z, y, x in group])
        logits = predict(windows if device is None else windows.to(device), group).to("cpu")
        for (z, y, x), one in zip(group, logits):
            add_by_slice(out[:, z : z + pz, y : y + py, x : x + px], one, weight)
    out /= weights
    if any(any(p) for p in pads):
        (z0, _), (y0, _), (x0, _) = pads
        out = out[:, z0 : z0 + shape[0], y0 : y0 + shape[1], x0 : x0 + shape[2]]
    return out
