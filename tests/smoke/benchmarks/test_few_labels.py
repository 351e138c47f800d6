"""The few-label study (benchmarks.few_labels) end to end at toy size: the four phantom sets,
self-supervised pretraining, the bundle stand-in, every arm trained, exported, run on the test
phantoms and scored, and the tables written."""

import json
import subprocess
import sys

import torch

from benchmarks.few_labels import ARMS
from hanseg.labels import OAR_NAMES
from helpers import ROOT


def test_the_study_runs_every_arm_and_writes_its_tables(tmp_path):
    out = tmp_path / "study"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.few_labels",
        "--out",
        str(out),
        "--sizes",
        "1",
        "--pool",
        "1",
        "--unlabelled",
        "2",
        "--val",
        "1",
        "--test",
        "1",
        "--steps",
        "2",
        "--iters",
        "2",
        "--pretrain-steps",
        "2",
        "--bundle-steps",
        "2",
        "--spacing",
        "6",
        "6",
        "8",
        "--patch",
        "16",
        "32",
        "32",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    # per-case progress without a terminal: a line per phantom written and per test case segmented
    assert "writing phantoms 5/5: case_" in done.stderr and "\r" not in done.stderr
    assert "segmenting (scratch, 1 labelled) 1/1: case_01_CT.mha in " in done.stderr
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == list(ARMS)
    for arm, by_n in results["arms"].items():
        row = by_n["1"]
        assert 0 <= row["mean_dice"] <= 1 and row["mean_hd95"] >= 0 and row["steps"] == 2, arm
        assert set(row["per_oar"]) <= set(OAR_NAMES) and row["cases"] == 1
    assert results["cases"]["labelled"] == ["case_01"] and results["cases"]["val"] == ["case_02"]
    # the arms differ only where they should: initialisation and freezing
    commands = {arm: (out / "work" / f"{arm}_n1" / "command.sh").read_text() for arm in ARMS}
    assert "--freeze none" in commands["ssl_full"] and "pretrain/pretrained.pt" in commands["ssl_full"]
    assert "--freeze encoder" in commands["ssl_frozen"] and "--init-from" not in commands["scratch"]
    assert "bundle" in commands["default"] and "--freeze encoder" in commands["default"]
    plans = json.loads((out / "work/fcn2p5d_n1/plans.json").read_text())
    assert plans["network"]["name"] == "SliceFCN"
    assert plans["channels"] == json.loads((out / "work/scratch_n1/plans.json").read_text())["channels"]
    ssl = torch.load(out / "work/ssl_full_n1/fold_0/checkpoint_last.pt", weights_only=False)
    assert ssl["config"]["init_from"].endswith("pretrained.pt")
    table = (out / "results.md").read_text()
    assert "## Mean Dice on the test phantoms" in table and all(f"`{a}`" in table for a in ARMS)
    assert all(f"| {oar} |" in table for oar in OAR_NAMES)
    assert "## Against `scratch`, paired by OAR" in table
    assert set(results["against_scratch"]) == set(ARMS) - {"scratch"}
    assert all(
        set(c["1"]) == {"mean_difference", "better", "worse", "p", "p_holm"}
        for c in results["against_scratch"].values()
    )
    # the tables again from the scored runs alone (as after runs of some sizes each, in parallel)
    again = subprocess.run([*cmd, "--tables-only"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    gathered = json.loads((out / "results.json").read_text())
    assert gathered["arms"] == results["arms"] and gathered["command"] == results["command"]
