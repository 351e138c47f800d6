"""Networks selectable in plans.json (DynUNet, the spleen bundle's residual UNet, UNETR,
SwinUNETR, SegResNet), their patch rules, and fold ensembles at inference."""

import numpy as np
import pytest
import torch

from hanseg.budget import RunSettings
from hanseg.errors import PlansError
from hanseg.inference import Segmenter
from hanseg.labels import NUM_CLASSES
from hanseg.networks import build_network
from hanseg.plans import plans_from_json
from helpers import write_tiny_model
from training.plan import NETWORK_KINDS, SPLEEN_BUNDLE_UNET, make_plans

FINGERPRINT = {
    "median_spacing_xyz": [1.5, 1.5, 2.5],
    "hu": {"p0_5": -1000.0, "p99_5": 1500.0, "mean": 50.0, "std": 300.0},
}


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_every_network_kind_plans_builds_and_runs(kind):
    plans = make_plans(FINGERPRINT, "tiny", None, None, [0], kind)
    net = build_network(plans.network, len(plans.channels), NUM_CLASSES).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 2, *plans.patch_size_zyx))
    assert tuple(out.shape) == (1, NUM_CLASSES, *plans.patch_size_zyx)


def test_resunet_is_the_spleen_bundle_network_and_patches_are_rounded_up():
    plans = make_plans(FINGERPRINT, "small", None, None, [0], "resunet")
    assert plans.network.name == "UNet" and dict(plans.network.kwargs) == SPLEEN_BUNDLE_UNET
    assert make_plans(FINGERPRINT, "small", None, (40, 90, 90), [0], "resunet").patch_size_zyx == (48, 96, 96)
    swin = make_plans(FINGERPRINT, "small", None, None, [0], "swinunetr")
    assert swin.patch_size_zyx == (64, 96, 96)  # 48 → 64: SwinUNETR needs multiples of 32
    unetr = make_plans(FINGERPRINT, "small", None, None, [0], "unetr")
    assert list(unetr.network.kwargs["img_size"]) == list(unetr.patch_size_zyx)


@pytest.mark.parametrize(
    "network, patch, message",
    [
        ({"name": "UNETR", "kwargs": {"img_size": [32, 64, 64]}}, [32, 32, 32], "img_size"),
        ({"name": "SwinUNETR", "kwargs": {}}, [48, 64, 64], "multiple of 32"),
        ({"name": "UNet", "kwargs": {"channels": [4, 8, 16], "strides": [2, 2]}}, [30, 32, 32], "multiple of 4"),
    ],
)
def test_a_patch_the_network_cannot_take_is_refused_at_load(network, patch, message):
    plans = make_plans(FINGERPRINT, "tiny", None, None, [0], "dynunet").to_json()
    plans.update(network=network, patch_size_zyx=patch)
    with pytest.raises(PlansError, match=message):
        plans_from_json(plans)


def _softmax_of_mean_log(*probs: np.ndarray) -> np.ndarray:
    """softmax(mean of log p): the softmax of the folds' mean logits (log p = logits − lse)."""
    mean = np.mean([np.log(p) for p in probs], axis=0)
    e = np.exp(mean - mean.max(0))
    return e / e.sum(0)


def test_fold_ensemble_averages_its_folds_logits(tmp_path):
    """Two folds in one model folder: the softmax of their mean logits (nnU-Net v2's average),
    blended windows included, since blending is linear."""
    both = Segmenter(write_tiny_model(tmp_path / "both", folds=(0, 1)), device="cpu", time_budget_s=None)
    first = Segmenter(write_tiny_model(tmp_path / "f0", seed=0), device="cpu", time_budget_s=None)
    second = Segmenter(write_tiny_model(tmp_path / "f1", seed=1), device="cpu", time_budget_s=None)
    image = np.random.default_rng(0).normal(size=(2, 20, 40, 40)).astype(np.float32)
    p0 = first.probabilities(image, RunSettings(1, (), 0.25))
    p1 = second.probabilities(image, RunSettings(1, (), 0.25))
    assert not np.allclose(p0, p1, atol=1e-3)
    np.testing.assert_allclose(
        both.probabilities(image, RunSettings(2, (), 0.25)), _softmax_of_mean_log(p0, p1), atol=1e-5
    )
    np.testing.assert_allclose(both.probabilities(image, RunSettings(1, (), 0.25)), p0, atol=1e-6)


@pytest.mark.parametrize("kind", ["unetr", "resunet"])
def test_the_container_runs_a_model_of_another_network(tmp_path, kind):
    """A model folder whose plan names UNETR (fixed input size) or the bundle UNet (batch norm)
    runs through the Segmenter like the default DynUNet, on an image smaller than the patch."""
    from hanseg.model_dir import export_model

    plans = make_plans(FINGERPRINT, "tiny", (4.0, 4.0, 4.0), None, [0], kind)
    torch.manual_seed(0)
    state = build_network(plans.network, 2, NUM_CLASSES).state_dict()
    export_model(tmp_path / "m", plans, [state], {"version": "test"})
    seg = Segmenter(tmp_path / "m", device="cpu", time_budget_s=None)
    image = np.random.default_rng(0).normal(size=(2, 20, 50, 40)).astype(np.float32)
    p = seg.probabilities(image, RunSettings(1, (2,), 0.25))
    assert p.shape == (NUM_CLASSES, 20, 50, 40)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
