"""The recipe losses (generalised Dice, weighted CE → focal, t-vMF) against values worked out by hand on tiny tensors."""

import math

import numpy as np
import pytest
import torch

from training.losses import (
    AdaptiveTvmfLoss,
    bce_loss,
    dynamic_loss,
    enet_class_weights,
    focal_loss,
    generalised_dice_loss,
    make_loss,
    tvmf_dice_loss,
    weighted_ce,
)

# Two voxels, two classes: p(voxel 0) = [0.75, 0.25], p(voxel 1) = [0.4, 0.6]; target [0, 1].
PROBS = torch.tensor([[0.75, 0.4], [0.25, 0.6]]).view(1, 2, 2, 1, 1)
LOGITS = torch.log(PROBS)
TARGET = torch.tensor([0, 1]).view(1, 2, 1, 1)
ONEHOT = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 2, 1, 1)
BOTH = torch.tensor([[True, True]])


def test_generalised_dice_by_hand():
    # each class has one ground-truth voxel: w = 1/1² for both
    inter = 0.75 + 0.6
    union = (0.75 + 0.4 + 1) + (0.25 + 0.6 + 1)
    assert generalised_dice_loss(PROBS, ONEHOT, smooth=0).item() == pytest.approx(1 - 2 * inter / union, abs=1e-6)


def test_generalised_dice_weights_small_classes_by_inverse_square_volume():
    # 4 voxels: class 0 on three (perfectly predicted), class 1 on one (predicted as class 0)
    probs = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]).view(1, 2, 4, 1, 1)
    onehot = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]).view(1, 2, 4, 1, 1)
    w0, w1 = 1 / 9, 1 / 1
    expected = 1 - 2 * (w0 * 3) / (w0 * (4 + 3) + w1 * (0 + 1))
    assert generalised_dice_loss(probs, onehot, smooth=0).item() == pytest.approx(expected, abs=1e-6)


def test_focal_by_hand():
    expected = ((0.25**2) * -math.log(0.75) + (0.4**2) * -math.log(0.6)) / 2
    assert focal_loss(PROBS, TARGET, gamma=2).item() == pytest.approx(expected, abs=1e-6)
    # gamma 0 is plain cross-entropy
    assert focal_loss(PROBS, TARGET, gamma=0).item() == pytest.approx(-(math.log(0.75) + math.log(0.6)) / 2, abs=1e-6)


def test_weighted_ce_by_hand():
    w = torch.tensor([1.0, 3.0])
    expected = (1 * -math.log(0.75) + 3 * -math.log(0.6)) / (1 + 3)
    assert weighted_ce(PROBS, TARGET, w).item() == pytest.approx(expected, abs=1e-6)


def test_enet_weights_by_hand():
    w = enet_class_weights(np.array([90, 10, 0]))
    assert w == pytest.approx([1 / math.log(1.02 + 0.9), 1 / math.log(1.02 + 0.1), 1 / math.log(1.02)], rel=1e-6)
    assert w[2] == pytest.approx(50.5, abs=0.01)  # an OAR never seen gets the bounded maximum


def test_dynamic_schedule_moves_from_weighted_ce_to_focal():
    w = torch.tensor([1.0, 3.0])
    gd = generalised_dice_loss(PROBS, ONEHOT).item()
    start = dynamic_loss(LOGITS, TARGET, BOTH, 0.0, w).item()
    end = dynamic_loss(LOGITS, TARGET, BOTH, 1.0, w).item()
    middle = dynamic_loss(LOGITS, TARGET, BOTH, 0.5, w).item()
    wce, fl = weighted_ce(PROBS, TARGET, w).item(), focal_loss(PROBS, TARGET).item()
    assert start == pytest.approx(gd + wce, abs=1e-5)
    assert end == pytest.approx(gd + fl, abs=1e-5)
    assert middle == pytest.approx(gd + 0.5 * wce + 0.5 * fl, abs=1e-5)


def test_tvmf_by_hand():
    # class 0: p = (0.75, 0.4), g = (1, 0): cos = 0.75 / sqrt(0.75² + 0.4²)
    # class 1: p = (0.25, 0.6), g = (0, 1): cos = 0.6 / sqrt(0.25² + 0.6²)
    cos0 = 0.75 / math.hypot(0.75, 0.4)
    cos1 = 0.6 / math.hypot(0.25, 0.6)
    kappa = torch.tensor([0.0, 4.0])
    phi0 = cos0  # κ = 0: φ = cos θ
    phi1 = (1 + cos1) / (1 + 4 * (1 - cos1)) - 1
    expected = ((1 - phi0) ** 2 + (1 - phi1) ** 2) / 2
    assert tvmf_dice_loss(LOGITS, TARGET, BOTH, kappa).item() == pytest.approx(expected, abs=1e-5)


def test_tvmf_larger_kappa_demands_more_overlap():
    k0 = tvmf_dice_loss(LOGITS, TARGET, BOTH, torch.tensor([0.0, 0.0])).item()
    k32 = tvmf_dice_loss(LOGITS, TARGET, BOTH, torch.tensor([32.0, 32.0])).item()
    assert k32 > k0
    perfect = torch.log(ONEHOT.clamp_min(1e-9))
    assert tvmf_dice_loss(perfect, TARGET, BOTH, torch.tensor([32.0, 32.0])).item() == pytest.approx(0, abs=1e-5)


def test_tvmf_skips_classes_without_ground_truth_and_has_finite_gradients():
    logits = torch.zeros(1, 3, 2, 1, 1, requires_grad=True)  # class 2 absent from the case
    loss = tvmf_dice_loss(logits, TARGET, torch.tensor([[True, True, False]]), torch.zeros(3))
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    two = tvmf_dice_loss(torch.zeros(1, 2, 2, 1, 1), TARGET, BOTH, torch.zeros(2)).item()
    assert loss.item() == pytest.approx(two, abs=1e-6)  # absent class 2's mass went to background


def test_bce_by_hand_and_absent_channels_are_left_out():
    logits = torch.zeros(1, 3, 1, 1, 1)
    target = torch.zeros(1, 1, 1, 1, dtype=torch.long)
    # sigmoid(0) = 0.5 for every channel: each channel's BCE is ln 2
    assert bce_loss(logits, target, torch.tensor([[True, True, True]])).item() == pytest.approx(math.log(2), abs=1e-6)
    loud = logits.clone()
    loud[:, 2] = 20.0  # the absent class fires: no target, no cost
    assert bce_loss(loud, target, torch.tensor([[True, True, False]])).item() == pytest.approx(math.log(2), abs=1e-6)
    assert bce_loss(loud, target, torch.tensor([[True, True, True]])).item() > 5


def test_adaptive_kappa_follows_validation_dice_and_resumes():
    loss = make_loss("tvmf", 3)
    assert isinstance(loss, AdaptiveTvmfLoss) and loss.kappa.tolist() == [0, 0, 0]
    loss.on_validation({0: 0.99, 2: 0.5})
    assert loss.kappa.tolist() == pytest.approx([32 * 0.99, 0, 16])
    again = make_loss("tvmf", 3)
    assert isinstance(again, AdaptiveTvmfLoss)
    again.load_state_dict(loss.state_dict())
    assert again.kappa.tolist() == loss.kappa.tolist()


def test_loss_registry():
    for name in ("dice_ce", "dynamic", "tvmf", "bce"):
        value = make_loss(name, 2, np.array([10, 1]))(LOGITS, TARGET, BOTH, 0.3)
        assert torch.isfinite(value)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("lovasz", 2)
