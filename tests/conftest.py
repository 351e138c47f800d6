"""Shared fixtures: tiny networks in temporary model folders (no committed fake weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hanseg.labels import NUM_CLASSES, OAR_NAMES
from hanseg.model_dir import export_model
from hanseg.networks import build_network
from hanseg.plans import plans_from_json

TINY_NETWORK = {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}


def write_tiny_model(root: Path, folds: tuple[int, ...] = (0,), channels: tuple[str, ...] = ("CT", "MR_T1"),
                     spacing=(4.0, 4.0, 4.0), patch=(16, 32, 32), seed: int = 0) -> Path:
    """A complete, valid model folder with an untrained tiny UNet (for pipeline tests only)."""
    norms = {"CT": {"scheme": "ct", "clip_low": -1000, "clip_high": 1500, "mean": 0.0, "std": 500.0},
             "MR_T1": {"scheme": "zscore", "percentiles": [0.5, 99.5]}}
    plans = {"labels": list(OAR_NAMES),
             "channels": [{"name": c, "normalization": norms[c]} for c in channels],
             "spacing_xyz_mm": list(spacing), "patch_size_zyx": list(patch),
             "network": TINY_NETWORK, "folds": list(folds), "overlap": 0.25}
    loaded = plans_from_json(plans)
    states = []
    for fold in folds:
        torch.manual_seed(seed + fold)
        states.append(build_network(loaded.network, len(channels), NUM_CLASSES).state_dict())
    export_model(root, loaded, states, {"version": "test", "trained": False})
    return root


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "model")


@pytest.fixture(scope="session")
def raw_phantoms(tmp_path_factory) -> Path:
    """Two small phantom cases in the HaN-Seg raw layout (shared by the training tests)."""
    from hanseg.phantom import make_case, write_raw
    root = tmp_path_factory.mktemp("raw") / "raw"
    for i, seed in enumerate((31, 32)):
        write_raw(make_case(seed, "small", f"case_{i + 1:02d}"), root)
    return root
