"""Training losses that do not punish the network for OARs a case lacks.

``--loss``: ``dice_ce`` (default, below), and the seed work's ``dynamic`` (generalised Dice +
weighted CE → focal), ``tvmf`` (adaptive t-vMF Dice) and ``bce`` (further down).

HaN-Seg cases miss some OARs (not annotated, not absent from the body). Their voxels carry
label 0 in the ground truth, so a plain loss would teach "this OAR is background here".
We use the *marginal* loss (Shi et al., MedIA 2021): for a case, the probabilities of its
absent classes are added to the background probability before the loss, so predicting an
absent OAR where the ground truth says background costs nothing, and the absent classes get
no Dice term. With every class present it is exactly Dice + CE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import LOSSES  # here too: what make_loss knows is named where the command line reads it


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


def dice_ce_loss(
    logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor, smooth: float = 1e-5
) -> torch.Tensor:
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
    dims = (0, *range(2, logits.dim()))
    inter = (probs * onehot).sum(dims)
    truth = onehot.sum(dims)
    dice = (2 * inter + smooth) / (probs.sum(dims) + truth + smooth)  # (C,)
    use = truth > 0
    use[0] = False  # foreground only
    dice_loss = 1 - dice[use].mean() if use.any() else logits.sum() * 0
    return ce + dice_loss


# ---------------------------------------------------------------------------------------------
# The losses of the recipes from the literature (the seed work). All take the marginal probabilities, so an
# OAR a case lacks is never taught as background, and all skip classes without ground truth in
# the batch (their terms would be constants or push the OAR to vanish everywhere).
# Shapes: logits (B, C, *spatial); target (B, *spatial) int64; present (B, C) bool.
# ---------------------------------------------------------------------------------------------


def _onehot(target: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(target, n_classes).movedim(-1, 1).float()


def _sum_dims(x: torch.Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.dim()))


def generalised_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Generalised Dice (Sudre et al. 2017): class weights 1 / volume², so a cochlea counts as
    much as the background. Over the classes (background included) with ground truth here."""
    dims = _sum_dims(probs)
    truth = onehot.sum(dims)
    use = truth > 0
    w = 1.0 / truth[use] ** 2
    inter = (w * (probs * onehot).sum(dims)[use]).sum()
    union = (w * (probs.sum(dims)[use] + truth[use])).sum()
    return 1 - (2 * inter + smooth) / (union + smooth)


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) without class balancing: mean of (1 - p_t)^γ · −log p_t."""
    p_t = probs.gather(1, target[:, None]).clamp_min(1e-8)
    return ((1 - p_t) ** gamma * -torch.log(p_t)).mean()


def weighted_ce(probs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with per-class weights; the mean is weighted (PyTorch's convention)."""
    return F.nll_loss(torch.log(probs.clamp_min(1e-8)), target, weight=weights.to(probs))


def enet_class_weights(counts: np.ndarray, c: float = 1.02) -> np.ndarray:
    """ENet's class weights (Paszke et al. 2016), w = 1 / ln(c + frequency): bounded in
    [1/ln(1+c), 1/ln(c)] = [1.4, 50.5], unlike inverse frequency which would give a cochlea
    10^6 times the weight of the background."""
    freq = np.asarray(counts, np.float64) / max(float(np.sum(counts)), 1.0)
    return (1.0 / np.log(c + freq)).astype(np.float32)


def dynamic_loss(
    logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor, progress: float, class_weights: torch.Tensor
) -> torch.Tensor:
    """Generalised Dice + (1 − t)·weighted CE + t·focal, t = fraction of training done: the
    weighted CE drives the rare OARs early, the focal term the hard voxels late."""
    t = min(max(float(progress), 0.0), 1.0)
    probs = marginal_probabilities(logits, present)
    gd = generalised_dice_loss(probs, _onehot(target, logits.shape[1]))
    return gd + (1 - t) * weighted_ce(probs, target, class_weights) + t * focal_loss(probs, target)


def tvmf_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor, kappa: torch.Tensor
) -> torch.Tensor:
    """t-vMF Dice loss (Kato & Hotta 2022). Per class, cos θ between the probability and the
    one-hot vectors over batch and space; t-vMF similarity φ = (1 + cos θ)/(1 + κ(1 − cos θ)) − 1;
    loss (1 − φ)², averaged over the classes with ground truth here. κ = 0 gives (1 − cos θ)²;
    a larger κ makes the similarity more compact (demands more overlap)."""
    probs = marginal_probabilities(logits, present)
    onehot = _onehot(target, logits.shape[1])
    dims = _sum_dims(probs)
    use = onehot.sum(dims) > 0  # select before the square root: its gradient at 0 is infinite
    inter, p2, g2 = ((probs * onehot).sum(dims)[use], probs.square().sum(dims)[use], onehot.square().sum(dims)[use])
    cos = inter / (p2 * g2).sqrt().clamp_min(1e-8)
    k = kappa.to(cos)[use]
    phi = (1 + cos) / (1 + k * (1 - cos)) - 1
    return ((1 - phi) ** 2).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per class channel (sigmoid, one-hot targets), as in the MONAI
    bundle fine-tuning recipe. An OAR the case lacks has no target at all, so its channel
    is left out (the multi-label form of the marginal loss)."""
    onehot = _onehot(target, logits.shape[1])
    mask = present.bool().clone()
    mask[:, 0] = True
    mask = mask.view(mask.shape + (1,) * (logits.dim() - 2)).expand_as(logits).float()
    per_voxel = F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none")
    return (per_voxel * mask).sum() / mask.sum()


class SegLoss:
    """A training loss as the loop uses it: ``loss(logits, target, present, progress)``;
    adaptive losses learn from each validation (:meth:`on_validation`) and are resumable."""

    name = "dice_ce"

    def __call__(self, logits, target, present, progress: float) -> torch.Tensor:
        return dice_ce_loss(logits, target, present)

    def on_validation(self, dice: dict[int, float]) -> None:
        """``dice``: class index (0 = background) → validation Dice."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class BceLoss(SegLoss):
    name = "bce"

    def __call__(self, logits, target, present, progress: float) -> torch.Tensor:
        return bce_loss(logits, target, present)


class DynamicLoss(SegLoss):
    name = "dynamic"

    def __init__(self, class_weights: np.ndarray) -> None:
        self.weights = torch.as_tensor(class_weights, dtype=torch.float32)

    def __call__(self, logits, target, present, progress: float) -> torch.Tensor:
        return dynamic_loss(logits, target, present, progress, self.weights)


class AdaptiveTvmfLoss(SegLoss):
    """κ starts at 0 for every class and becomes λ × that class's validation Dice after each
    validation (λ = 32 as in the paper): classes already segmented well get a compact
    similarity, hard ones a wide one. A class missing from a validation keeps its κ."""

    name = "tvmf"

    def __init__(self, n_classes: int, lam: float = 32.0) -> None:
        self.lam, self.kappa = lam, torch.zeros(n_classes)

    def __call__(self, logits, target, present, progress: float) -> torch.Tensor:
        return tvmf_dice_loss(logits, target, present, self.kappa)

    def on_validation(self, dice: dict[int, float]) -> None:
        for c, d in dice.items():
            self.kappa[c] = self.lam * float(d)

    def state_dict(self) -> dict:
        return {"kappa": self.kappa.tolist(), "lambda": self.lam}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.kappa, self.lam = torch.tensor(state["kappa"], dtype=torch.float32), float(state["lambda"])


def make_loss(name: str, n_classes: int, class_counts: np.ndarray | None = None) -> SegLoss:
    """The loss named on the command line; ``class_counts`` (voxels per class in the training
    set) sets the weighted-CE weights of ``dynamic``."""
    if name == "dice_ce":
        return SegLoss()
    if name == "bce":
        return BceLoss()
    if name == "dynamic":
        counts = class_counts if class_counts is not None else np.ones(n_classes)
        return DynamicLoss(enet_class_weights(counts))
    if name == "tvmf":
        return AdaptiveTvmfLoss(n_classes)
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
