"""The README's recipe comparison (benchmarks.recipes) end to end at toy size: plan per recipe,
the bundle stand-in, every recipe trained and validated, one table."""

import json
import subprocess
import sys

import torch

from hanseg.labels import OAR_NAMES
from helpers import ROOT


def test_recipes_script_trains_every_recipe_and_writes_the_table(raw_phantoms, tmp_path):
    out = tmp_path / "recipes"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.recipes",
            "--data",
            str(raw_phantoms),
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--spacing",
            "4",
            "4",
            "5",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--iters",
            "2",
            "--val-every",
            "1",
            "--bundle-steps",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert list(rows) == ["default", "spleen_finetune", "res3dunet_dynamic", "tvmf", "dynunet_dynamic"]
    assert all(0 <= r["mean"] <= 1 and r["steps"] == 2 for r in rows.values())
    table = (out / "results.md").read_text()
    assert all(f"| {oar} |" in table for oar in OAR_NAMES)
    # the bundle stand-in has the spleen bundle's shapes: 1 input channel, 2 classes
    bundle = torch.load(out / "bundle" / "models" / "model.pt", weights_only=True)
    assert bundle["model.0.conv.unit0.conv.weight"].shape[1] == 1 and bundle[
        "model.2.1.conv.unit0.conv.bias"
    ].shape == (2,)
    spleen = torch.load(out / "spleen_finetune" / "fold_0" / "checkpoint_last.pt", weights_only=False)
    assert spleen["config"]["freeze"] == "all-but-last:2" and spleen["config"]["loss"] == "bce"
    commands = (out / "commands.sh").read_text()
    assert "--init-from" in commands and "--freeze encoder" in commands and "--loss tvmf" in commands
