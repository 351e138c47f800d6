import math

import torch

from training.losses import dice_ce_loss, marginal_probabilities


def test_marginal_probabilities_move_absent_mass_to_background():
    logits = torch.log(torch.tensor([0.5, 0.2, 0.3])).view(1, 3, 1, 1, 1)
    present = torch.tensor([[True, True, False]])
    p = marginal_probabilities(logits, present).view(3)
    assert torch.allclose(p, torch.tensor([0.8, 0.2, 0.0]), atol=1e-6)


def test_loss_with_all_classes_present_is_dice_plus_ce_by_hand():
    # two voxels, two classes; probabilities p(voxel0)=[0.75,0.25], p(voxel1)=[0.4,0.6]; target [0, 1]
    probs = torch.tensor([[0.75, 0.4], [0.25, 0.6]])
    logits = torch.log(probs).view(1, 2, 2, 1, 1)
    target = torch.tensor([0, 1]).view(1, 2, 1, 1)
    present = torch.tensor([[True, True]])
    ce = -(math.log(0.75) + math.log(0.6)) / 2
    dice1 = 2 * 0.6 / ((0.25 + 0.6) + 1)  # foreground class 1 only
    expected = ce + (1 - dice1)
    assert abs(dice_ce_loss(logits, target, present, smooth=0).item() - expected) < 1e-5


def cube_and_perfect_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2×2×2 cube of class 1 in a 4³ patch, and 3-class logits that predict it exactly."""
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3, 1:3] = 1
    logits = torch.full((1, 3, 4, 4, 4), -10.0)
    logits[:, 0][target == 0] = 10
    logits[:, 1][target == 1] = 10
    return target, logits


def test_predicting_an_absent_class_is_free():
    target, good = cube_and_perfect_logits()
    absent_predicted = good.clone()
    absent_predicted[:, 0][target == 0] = -10
    absent_predicted[:, 2][target == 0] = 10  # class 2 everywhere the GT says background
    present = torch.tensor([[True, True, False]])
    l_good = dice_ce_loss(good, target, present).item()
    l_absent = dice_ce_loss(absent_predicted, target, present).item()
    assert abs(l_good - l_absent) < 1e-4
    all_present = torch.tensor([[True, True, True]])
    assert dice_ce_loss(absent_predicted, target, all_present).item() > l_good + 1.0


def test_dice_ignores_classes_outside_the_patch_but_ce_still_sees_them():
    """Class 2 is annotated in the case but not in this patch: a small false-positive
    probability for it must not turn the Dice term into ~1 (the collapse to background)."""
    target, logits = cube_and_perfect_logits()
    noisy = logits.clone()
    noisy[:, 2] = 0.0  # a little probability for class 2 everywhere
    present = torch.tensor([[True, True, True]])
    clean_loss = dice_ce_loss(logits, target, present).item()
    noisy_loss = dice_ce_loss(noisy, target, present).item()
    assert clean_loss < 1e-3
    assert 0 < noisy_loss - clean_loss < 0.1  # CE notices, Dice of class 2 is not counted
