"""Validation during training: sliding-window prediction on whole cached validation cases
and per-OAR Dice on the canonical grid (a fast proxy; the challenge metrics on the CT grid
are ``evaluation.metrics``)."""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from hanseg.labels import LABEL_NAMES, NUM_CLASSES
from hanseg.plans import Plans

from .data import CachedCase


def dice(p: np.ndarray, g: np.ndarray) -> float:
    """Dice of two boolean masks (g is not empty)."""
    return float(2 * (p & g).sum() / (p.sum() + g.sum()))


def dice_per_class(pred: np.ndarray, gt: np.ndarray, present: np.ndarray) -> dict[int, float]:
    """Dice of each annotated foreground class; classes not annotated in the case are skipped."""
    out = {}
    for c in range(1, NUM_CLASSES):
        if not present[c]:
            continue
        p, g = pred == c, gt == c
        if not g.any():
            continue
        out[c] = dice(p, g)
    return out


@torch.inference_mode()
def predict_cached(
    net: torch.nn.Module, case: CachedCase, plans: Plans, device: torch.device, *, overlap: float
) -> np.ndarray:
    """The case's labels from Gaussian-blended sliding windows of the plan's patch that overlap by
    ``overlap`` (``--val-overlap``: lower than inference's ``plans.overlap``, since validation is
    a proxy that runs every few epochs)."""
    image = torch.from_numpy(case.image.astype(np.float32))[None]
    # blended on the network's device: a 31-channel case is ~0.3 GB, nothing for a GPU, and
    # blending it on the CPU would cost more than the windows themselves
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        logits = sliding_window_inference(
            image,
            plans.patch_size_zyx,
            plans.sw_batch_size,
            net,
            overlap=overlap,
            mode="gaussian",
            sw_device=device,
            device=device,
        )
    return logits[0].argmax(0).cpu().numpy().astype(np.uint8)


def validate(
    net: torch.nn.Module, cases: list[CachedCase], plans: Plans, device: torch.device, *, overlap: float
) -> dict:
    """``mean`` (over OARs), ``per_oar`` (by name) and ``per_class`` (by label, background 0
    included: the adaptive t-vMF loss sets a κ for every class). ``overlap``: of the sliding
    windows (:func:`predict_cached`)."""
    net.eval()
    per_class: dict[int, list[float]] = {}
    for case in cases:
        pred = predict_cached(net, case, plans, device, overlap=overlap)
        per_class.setdefault(0, []).append(dice(pred == 0, case.labels == 0))
        for c, d in dice_per_class(pred, case.labels, case.present).items():
            per_class.setdefault(c, []).append(d)
    net.train()
    per_oar = {LABEL_NAMES[c]: float(np.mean(v)) for c, v in sorted(per_class.items()) if c}
    return {
        "mean": float(np.mean(list(per_oar.values()))) if per_oar else 0.0,
        "per_oar": per_oar,
        "per_class": {str(c): float(np.mean(v)) for c, v in sorted(per_class.items())},
    }
