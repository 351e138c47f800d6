"""CPU smoke test of the training path, as a user runs it: phantoms (raw layout) → plan →
train a tiny network a few steps (loss must fall) → resume → export → process.py, each a real
``python -m`` process (the other training tests call the CLIs' ``main`` in-process)."""

import csv
import json
import subprocess
import sys

import pytest
import SimpleITK as sitk

from hanseg.labels import OAR_NAMES
from hanseg.model_dir import load_model_dir
from hanseg.plans import load_plans
from helpers import ROOT, segment_unseen_phantom, train_in_process


def cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory, raw_phantoms):
    root = tmp_path_factory.mktemp("train")
    work = root / "work"
    cli(
        "-m",
        "training.plan",
        "--data",
        str(raw_phantoms),
        "--work",
        str(work),
        "--preset",
        "tiny",
        "--spacing",
        "3",
        "3",
        "4",
        "--folds",
        "2",
    )
    common = [
        "-m",
        "training.train",
        "--data",
        str(raw_phantoms),
        "--work",
        str(work),
        "--fold",
        "0",
        "--iters",
        "6",
        "--batch",
        "2",
        "--lr",
        "3e-3",
        "--val-every",
        "2",
        "--device",
        "cpu",
    ]
    cli(*common, "--epochs", "3")
    resumed = cli(*common, "--epochs", "4")
    return root, work, resumed


def test_loss_falls_and_logs_are_written(trained):
    _, work, _ = trained
    with open(work / "fold_0" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0] - 0.2, losses
    assert rows[1]["val_dice"] != "" and 0 <= float(rows[1]["val_dice"]) <= 1
    # each epoch's training and validation seconds (validation every 2nd epoch and each run's last)
    assert all(float(r["train_seconds"]) > 0 for r in rows)
    assert [r["val_seconds"] != "" for r in rows] == [False, True, True, True]
    assert all(float(r["seconds"]) >= float(r["train_seconds"]) for r in rows)
    assert (work / "fold_0" / "curves.png").stat().st_size > 1000
    assert len(list((work / "cache").glob("case_*.npz"))) == 2


def test_plan_holds_the_fingerprint(trained):
    _, work, _ = trained
    plans = load_plans(work / "plans.json")
    assert plans.spacing_xyz_mm == (3.0, 3.0, 4.0) and plans.patch_size_zyx == (32, 64, 64)
    ct = plans.channels[0].normalization
    assert ct.clip_low is not None and ct.clip_high is not None and ct.mean is not None and ct.std is not None
    assert -1000 <= ct.clip_low < 0 < ct.mean < ct.clip_high and ct.std > 0
    components = dict(zip(OAR_NAMES, plans.max_components))
    assert components["Brainstem"] == 1 and components["BuccalMucosa"] == 2  # left and right sides
    splits = json.loads((work / "splits.json").read_text())["folds"]
    assert [len(f["val"]) for f in splits] == [1, 1]


def test_training_resumes_from_its_checkpoint(trained):
    _, _, resumed = trained
    assert "resuming fold 0 at epoch 3" in resumed.stderr
    assert "cached case_" not in resumed.stderr  # the preprocessed cache is reused
    assert "epoch 1/4" not in resumed.stderr
    # no terminal: progress as log lines, not bars (the last step of the epoch always logs)
    assert "epoch 4/4 step 6/6 loss " in resumed.stderr and "s per step)" in resumed.stderr
    assert "epoch 4/4: validating on 1 case(s)" in resumed.stderr
    assert "epoch 4/4: validation done in " in resumed.stderr and ", mean Dice " in resumed.stderr
    assert "\r" not in resumed.stderr


def test_exported_model_runs_in_process_py(trained, tmp_path):
    _, work, _ = trained
    model = tmp_path / "model"
    cli(
        "-m",
        "training.export",
        "--work",
        str(work),
        "--out",
        str(model),
        "--folds",
        "0",
        "--data-note",
        "smoke test phantoms 31, 32",
        "--changes",
        "first stage",
        "--command",
        "python -m x",
    )
    files = load_model_dir(model)
    meta = files.metadata
    assert meta["training_data"]["description"] == "smoke test phantoms 31, 32"
    assert meta["version"] == "0.1.0" and meta["changelog"] == {"0.1.0": "first stage"}
    assert [s["version"] for s in meta["stages"]] == ["0.1.0"] and meta["stages"][0]["commands"] == ["python -m x"]
    assert meta["stages"][0]["steps"] == meta["folds"][0]["epochs_trained"] * 6  # --iters 6
    assert meta["scores"]["validation"]["mean_dice"] == meta["folds"][0]["validation"]["mean"]
    assert "Model card: hanseg 0.1.0" in (model / "README.md").read_text()
    assert set(meta["weights_sha256"]) == {"fold_0.pt"}
    best_epoch = json.loads((work / "fold_0" / "val_dice.json").read_text())["epoch"]
    assert meta["folds"][0]["checkpoint"] == "checkpoint_best.pt"
    assert meta["folds"][0]["epochs_trained"] == best_epoch + 1
    assert meta["folds"][0]["validation"]["epoch"] == best_epoch
    seg, ct = segment_unseen_phantom(model, tmp_path)
    assert seg.GetSize() == ct.GetSize() and seg.GetPixelID() == sitk.sitkUInt8


def test_adaptive_tvmf_kappa_is_learnt_from_validation_and_checkpointed(raw_phantoms, plan_work, tmp_path):
    work = plan_work(tmp_path / "work", "--spacing", "4", "4", "5", "--folds", "2")
    train_in_process(
        raw_phantoms, work, "--epochs", "1", "--iters", "2", "--val-every", "1", "--loss", "tvmf", "--elastic", "0.5"
    )
    import torch

    state = torch.load(work / "fold_0" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    val = json.loads((work / "fold_0" / "val_dice.json").read_text())
    kappa, dice = state["loss"]["kappa"], val["per_class"]
    assert len(dice) > 3 and dice["0"] > 0
    for c in range(len(kappa)):  # κ = 32 × validation Dice; 0 for classes not validated yet
        assert kappa[c] == pytest.approx(32 * dice.get(str(c), 0.0), rel=1e-5, abs=1e-6)
    assert state["config"]["loss"] == "tvmf" and state["config"]["elastic"] == 0.5
