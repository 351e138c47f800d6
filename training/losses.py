"""Dice + cross-entropy that does not punish the network for OARs a case lacks.

HaN-Seg cases miss some OARs (not annotated, not absent from the body). Their voxels carry
label 0 in the ground truth, so a plain loss would teach "this OAR is background here".
We use the *marginal* loss (Shi et al., MedIA 2021): for a case, the probabilities of its
absent classes are added to the background probability before the loss, so predicting an
absent OAR where the ground truth says background costs nothing, and the absent classes get
no Dice term. With every class present it is exactly Dice + CE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def marginal_probabilities(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax with absent classes merged into background.

    logits: (B, C, *spatial); present: (B, C) bool, present[:, 0] is ignored (background is
    always there). Returns (B, C, *spatial) probabilities where absent classes are 0 and
    background holds their mass.
    """
    probs = torch.softmax(logits.float(), dim=1)
    absent = (~present.bool()).clone()
    absent[:, 0] = False
    shape = absent.shape + (1,) * (logits.dim() - 2)
    absent_mass = (probs * absent.view(shape)).sum(dim=1)
    probs = probs * (~absent).view(shape)
    probs[:, 0] = probs[:, 0] + absent_mass
    return probs


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor,
                 smooth: float = 1e-5) -> torch.Tensor:
    """Marginal CE + marginal soft Dice over the foreground classes found in the batch.

    target: (B, *spatial) int64 labels. Absent classes never occur in ``target``.
    The Dice is a *batch* Dice (sums over batch and space) and only covers classes that have
    ground truth in the batch: a patch holds a handful of the 30 OARs, and a Dice term for an
    OAR outside the patch is ~0 whatever the network does unless it predicts exactly nothing,
    which drives the network to predict background everywhere. False positives of OARs not
    in the patch are still penalised by the cross-entropy.
    """
    n_classes = logits.shape[1]
    probs = marginal_probabilities(logits, present)
    ce = F.nll_loss(torch.log(probs.clamp_min(1e-8)), target)
    onehot = F.one_hot(target, n_classes).movedim(-1, 1).float()
    dims = (0,) + tuple(range(2, logits.dim()))
    inter = (probs * onehot).sum(dims)
    truth = onehot.sum(dims)
    dice = (2 * inter + smooth) / (probs.sum(dims) + truth + smooth)   # (C,)
    use = truth > 0
    use[0] = False                                                     # foreground only
    dice_loss = 1 - dice[use].mean() if use.any() else logits.sum() * 0
    return ce + dice_loss
