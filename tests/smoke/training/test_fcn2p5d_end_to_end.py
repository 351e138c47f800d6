"""The 2.5D network end to end, as a user runs it: plan --network fcn2p5d → train → export (their
``main`` in this process) → process.py on a case it never saw, whose labels come back on that
case's CT grid."""

import numpy as np
import SimpleITK as sitk

from hanseg.plans import load_plans
from helpers import run_main, segment_unseen_phantom, train_in_process
from training.export import main as export_main


def test_a_2p5d_model_plans_trains_exports_and_runs_in_process_py(raw_phantoms, plan_work, tmp_path):
    work, model = tmp_path / "work", tmp_path / "model"
    plan_work(work, "--network", "fcn2p5d", "--spacing", "3", "3", "4", "--folds", "2")
    plans = load_plans(work / "plans.json")
    assert plans.network.name == "SliceFCN" and plans.network.kwargs["slices"] == 3
    train_in_process(raw_phantoms, work, "--epochs", "2", "--iters", "4", "--batch", "2", "--val-every", "2")
    run_main(
        export_main,
        "--work",
        str(work),
        "--out",
        str(model),
        "--folds",
        "0",
        "--data-note",
        "smoke test phantoms 31, 32",
        "--changes",
        "2.5D smoke",
        "--command",
        "python -m x",
    )
    seg, ct = segment_unseen_phantom(model, tmp_path)
    assert seg.GetSize() == ct.GetSize() and seg.GetPixelID() == sitk.sitkUInt8
    assert seg.GetOrigin() == ct.GetOrigin() and seg.GetSpacing() == ct.GetSpacing()
    assert seg.GetDirection() == ct.GetDirection()
    assert np.isin(sitk.GetArrayViewFromImage(seg), np.arange(31)).all()
