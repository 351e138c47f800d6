""":func:`hanseg.tiling.blend` equals MONAI's gaussian sliding window on tiny arrays: the same
windows, weights (with MONAI's 1e-3 floor), padding and division, whatever the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map
from monai.inferers.utils import sliding_window_inference

from hanseg.tiling import MIN_WEIGHT, blend, corners, importance_map, padding

PATCH = (8, 8, 8)


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 1)).eval()


def monai(image: np.ndarray, net: torch.nn.Module, overlap: float, batch: int) -> torch.Tensor:
    with torch.no_grad():
        out = sliding_window_inference(
            torch.from_numpy(image[None]), PATCH, batch, lambda w: net(w).clone(), overlap, mode="gaussian"
        )
    assert isinstance(out, torch.Tensor)
    return out[0]


@pytest.mark.parametrize(
    "shape,overlap,batch",
    [((20, 24, 28), 0.5, 1), ((20, 24, 28), 0.25, 2), ((6, 24, 9), 0.5, 3), ((8, 8, 8), 0.5, 1), ((5, 3, 30), 0.0, 2)],
)
def test_blend_equals_monais_sliding_window(shape, overlap, batch):
    image = np.random.default_rng(1).normal(size=(2, *shape)).astype(np.float32)
    net = tiny_net()
    with torch.no_grad():
        ours = blend(image, PATCH, overlap, 3, lambda w, _c: net(w), batch=batch)
    reference = monai(image, net, overlap, batch)
    assert ours.shape == reference.shape == (3, *shape)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_weights_are_monais_with_its_floor():
    ours = importance_map((6, 10, 12))
    torch.testing.assert_close(ours, compute_importance_map((6, 10, 12), mode="gaussian", sigma_scale=0.125))
    assert float(ours.min()) == pytest.approx(MIN_WEIGHT) and float(ours.max()) <= 1.0


def test_padding_is_symmetric_half_before():
    assert padding((5, 8, 20), (8, 8, 8)) == ((1, 2), (0, 0), (0, 0))
    assert corners((8, 8, 12), (8, 8, 8), 0.5) == [(0, 0, 0), (0, 0, 4)]


def test_a_skipped_window_counts_as_background_exactly():
    """Windows answered without the network equal a network that returns the air logit on
    channel 0 and 0 elsewhere for those windows, and the others are untouched."""
    shape = (20, 16, 16)
    image = np.random.default_rng(2).normal(size=(2, *shape)).astype(np.float32)
    net = tiny_net()
    air = {(0, 0, 0), (0, 8, 8)}
    calls: list[tuple[int, int, int]] = []

    def run(windows: torch.Tensor, at) -> torch.Tensor:
        calls.extend(at)
        return net(windows)

    def reference_predict(windows: torch.Tensor, at) -> torch.Tensor:
        out = net(windows)
        for i, corner in enumerate(at):
            if tuple(corner) in air:
                out[i] = 0.0
                out[i, 0] = 9.0
        return out

    with torch.no_grad():
        ours = blend(image, PATCH, 0.5, 3, run, skip=lambda c: c in air, air_logit=9.0)
        reference = blend(image, PATCH, 0.5, 3, reference_predict)
    assert not air & set(calls) and len(calls) == len(corners(shape, PATCH, 0.5)) - len(air)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
