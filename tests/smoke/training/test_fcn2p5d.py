"""The 2.5D network end to end, as a user runs it: plan --network fcn2p5d → train → export →
process.py on a case it never saw, whose labels come back on that case's CT grid."""

import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk
from helpers import ROOT

from hanseg.plans import load_plans
from phantoms import make_case, write_gc


def cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_2p5d_model_plans_trains_exports_and_runs_in_process_py(raw_phantoms, tmp_path):
    work, model = tmp_path / "work", tmp_path / "model"
    cli("-m", "training.plan", "--data", str(raw_phantoms), "--work", str(work), "--preset", "tiny",
        "--network", "fcn2p5d", "--spacing", "3", "3", "4", "--folds", "2")
    plans = load_plans(work / "plans.json")
    assert plans.network.name == "SliceFCN" and plans.network.kwargs["slices"] == 3
    cli("-m", "training.train", "--data", str(raw_phantoms), "--work", str(work), "--fold", "0", "--epochs", "2",
        "--iters", "4", "--batch", "2", "--val-every", "2", "--device", "cpu")
    cli("-m", "training.export", "--work", str(work), "--out", str(model), "--folds", "0",
        "--data-note", "smoke test phantoms 31, 32", "--changes", "2.5D smoke", "--command", "python -m x")
    write_gc(make_case(33, "small", "case_09"), tmp_path / "gc")
    cli("process.py", "--input", str(tmp_path / "gc/input"), "--output", str(tmp_path / "out"),
        "--model", str(model), "--device", "cpu")
    seg = sitk.ReadImage(str(tmp_path / "out/images/head_neck_oar/case_09_seg.mha"))
    ct = sitk.ReadImage(str(tmp_path / "gc/input/images/ct/case_09_CT.mha"))
    assert seg.GetSize() == ct.GetSize() and seg.GetPixelID() == sitk.sitkUInt8
    assert seg.GetOrigin() == ct.GetOrigin() and seg.GetSpacing() == ct.GetSpacing()
    assert seg.GetDirection() == ct.GetDirection()
    assert np.isin(sitk.GetArrayViewFromImage(seg), np.arange(31)).all()
    assert json.loads((tmp_path / "out/results.json").read_text())[0]["outputs"]
