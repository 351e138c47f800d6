import dataclasses
import json

import pytest

from hanseg.errors import ModelError, PlansError
from hanseg.inference import Segmenter, resolve_device
from hanseg.model_dir import load_model_dir
from hanseg.plans import load_plans, plans_from_json, save_plans
from helpers import write_tiny_model


def test_plans_round_trip(tiny_model, tmp_path):
    plans = load_plans(tiny_model / "plans.json")
    save_plans(plans, tmp_path / "again.json")
    assert load_plans(tmp_path / "again.json") == plans
    assert plans.spacing_xyz_mm == (4.0, 4.0, 4.0) and plans.patch_size_zyx == (16, 32, 32)
    assert plans.channel_names == ("CT", "MR_T1") and plans.uses_mr
    with pytest.raises(dataclasses.FrozenInstanceError):
        plans.overlap = 0.9  # type: ignore[misc]  # the point: Plans is frozen, the field read-only


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["labels"].reverse(), "label"),
        (lambda d: d.pop("spacing_xyz_mm"), "spacing_xyz_mm"),
        (lambda d: d.__setitem__("patch_size_zyx", [64, 64]), "patch_size_zyx"),
        (lambda d: d["channels"].reverse(), "channels"),
        (lambda d: d["channels"][0]["normalization"].pop("std"), "std"),
        (lambda d: d.__setitem__("overlap", 1.5), "overlap"),
    ],
)
def test_bad_plans_are_refused_with_the_field_named(tiny_model, change, message):
    data = json.loads((tiny_model / "plans.json").read_text())
    change(data)
    with pytest.raises(PlansError, match=message):
        plans_from_json(data)


def test_missing_weight_and_bad_hash_are_refused_at_start(tmp_path):
    root = write_tiny_model(tmp_path / "m", folds=(0, 1))
    assert len(load_model_dir(root).weight_paths) == 2
    (root / "fold_1.pt").write_bytes((root / "fold_1.pt").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="sha256"):
        Segmenter(root)
    (root / "fold_1.pt").unlink()
    with pytest.raises(ModelError, match=r"fold_1\.pt"):
        load_model_dir(root)
    with pytest.raises(ModelError, match="does not exist"):
        load_model_dir(tmp_path / "nowhere")
    (root / "plans.json").unlink()
    with pytest.raises(PlansError, match=r"plans\.json"):
        load_model_dir(root)


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path):
    root = write_tiny_model(tmp_path / "m")
    data = json.loads((root / "plans.json").read_text())
    data["network"]["kwargs"]["channels"] = [8, 16]
    (root / "plans.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="does not fit"):
        Segmenter(root)


def test_cuda_without_gpu_falls_back_to_cpu_with_a_warning(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, warning = resolve_device("cuda")
    assert device.type == "cpu" and warning is not None and "no CUDA" in warning
    assert resolve_device("auto") == (torch.device("cpu"), None)
