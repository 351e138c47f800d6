"""End to end: ``python process.py`` on a small phantom in the Grand-Challenge layout with a
tiny (untrained) network, on the original grid and on flipped / oblique / re-spaced grids."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from helpers import ROOT, run_main
from phantoms import make_case, regrid, write_gc
from process import main as process_main


def run_process(inp: Path, out: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(ROOT / "process.py"),
        "--input",
        str(inp),
        "--output",
        str(out),
        "--model",
        str(model),
        "--device",
        "cpu",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def check_output(out: Path, ct: sitk.Image, name: str) -> np.ndarray:
    seg = sitk.ReadImage(str(out / "images/head_neck_oar" / name))
    assert seg.GetPixelID() == sitk.sitkUInt8
    assert seg.GetSize() == ct.GetSize()
    assert seg.GetSpacing() == pytest.approx(ct.GetSpacing(), abs=1e-6)
    assert seg.GetOrigin() == pytest.approx(ct.GetOrigin(), abs=1e-6)
    assert seg.GetDirection() == pytest.approx(ct.GetDirection(), abs=1e-6)
    arr = sitk.GetArrayFromImage(seg)
    assert arr.max() <= 30
    return arr


@pytest.fixture(scope="module")
def phantom_gc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gc")
    write_gc(make_case(777, "small", "case_01"), root)
    return root


def test_process_py_writes_a_valid_label_map_and_results_json(phantom_gc, tiny_model, tmp_path):
    out = tmp_path / "out"
    done = run_process(phantom_gc / "input", out, tiny_model, "--qa", str(tmp_path / "qa"))
    assert done.returncode == 0, done.stderr[-3000:]
    # --qa: the case's QA picture, with the registered MR in a second row (taller than wide)
    assert [p.name for p in (tmp_path / "qa").iterdir()] == ["case_01.png"]
    with Image.open(tmp_path / "qa/case_01.png") as picture:
        assert picture.format == "PNG" and 600 <= picture.width <= 2000 and picture.height > picture.width
    ct = sitk.ReadImage(str(phantom_gc / "input/images/ct/case_01_CT.mha"))
    labels = check_output(out, ct, "case_01_seg.mha")
    assert labels.any()  # an untrained net still labels something; empty would mean a bug
    results = json.loads((out / "results.json").read_text())
    # the untrained tiny network labels organs in the bottom slice, which the coverage check
    # rightly reports; nothing else may be said about this whole phantom head
    messages = results[0].pop("error_messages")
    assert all(m.startswith("cut at the edge of the CT: ") for m in messages), messages
    results[0]["error_messages"] = []
    assert results == [
        {
            "outputs": [{"type": "metaio_image", "filename": "case_01_seg.mha"}],
            "inputs": [
                {"type": "metaio_ct_image", "filename": "case_01_CT.mha"},
                {"type": "metaio_mrt1_image", "filename": "case_01_T1.mha"},
            ],
            "error_messages": [],
        }
    ]
    assert "MR registered to CT" in done.stderr
    # the network estimate re-made from the case's first windows, at the measured seconds per window
    assert "network: about " in done.stderr and " s per window (timed at start-up: " in done.stderr


@pytest.mark.parametrize("kind", ["flipped", "oblique", "respaced", "sheared"])
def test_any_ct_grid_gets_a_label_map_on_exactly_that_grid(phantom_gc, tiny_model, tmp_path, kind):
    inp = tmp_path / "in"
    (inp / "images/ct").mkdir(parents=True)
    (inp / "images/t1-mri").mkdir(parents=True)
    ct = regrid(sitk.ReadImage(str(phantom_gc / "input/images/ct/case_01_CT.mha")), kind)
    sitk.WriteImage(ct, str(inp / "images/ct/case_01_CT.nrrd"), True)
    mr = phantom_gc / "input/images/t1-mri/case_01_T1.mha"
    (inp / "images/t1-mri/case_01_T1.mha").write_bytes(mr.read_bytes())
    # process.py's main in this process: the first test above runs it as a process
    run_main(
        process_main,
        "--input",
        str(inp),
        "--output",
        str(tmp_path / "out"),
        "--model",
        str(tiny_model),
        "--device",
        "cpu",
    )
    check_output(tmp_path / "out", ct, "case_01_seg.nrrd")
    messages = json.loads((tmp_path / "out/results.json").read_text())[0]["error_messages"]
    assert any("not orthonormal" in m for m in messages) == (kind == "sheared")


def test_a_missing_model_stops_before_reading_any_case(phantom_gc, tmp_path):
    done = run_process(phantom_gc / "input", tmp_path / "out", tmp_path / "no_model")
    assert done.returncode == 1
    assert "model folder" in done.stderr and "does not exist" in done.stderr
    assert not (tmp_path / "out").exists()
