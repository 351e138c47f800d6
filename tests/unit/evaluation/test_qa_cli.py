"""``python -m evaluation.qa`` on tiny .mha files: writes the PNG; bad input exits 2 with one
line and writes nothing; ``--help`` answers before any heavy import."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from evaluation.qa import main
from helpers import ROOT


def _image(arr: np.ndarray, spacing=(1.0, 1.0, 3.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    return img


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ct = np.full((10, 20, 20), -1000, np.int16)
    ct[2:8, 4:16, 4:16] = 40
    labels = np.zeros(ct.shape, np.uint8)
    labels[3:6, 6:10, 6:10] = 5
    labels[3:6, 6:10, 10:14] = 30
    paths = {"ct": tmp_path / "ct.mha", "labels": tmp_path / "labels.mha", "mr": tmp_path / "mr.mha"}
    sitk.WriteImage(_image(ct), str(paths["ct"]))
    sitk.WriteImage(_image(labels), str(paths["labels"]))
    sitk.WriteImage(_image((ct + 1000).astype(np.float32), (2.0, 2.0, 2.0)), str(paths["mr"]))
    paths["other_grid"] = tmp_path / "other.mha"
    sitk.WriteImage(_image(labels[:, :, :19].copy()), str(paths["other_grid"]))
    return paths


def test_the_cli_writes_the_picture_with_truth_and_mr(files, tmp_path):
    out = tmp_path / "pics" / "qa.png"
    args = ["--ct", str(files["ct"]), "--labels", str(files["labels"]), "--out", str(out)]
    assert main([*args, "--truth", str(files["labels"]), "--mr", str(files["mr"])]) == 0
    with Image.open(out) as with_mr:
        assert with_mr.format == "PNG"
        tall = with_mr.height
    assert main(args) == 0
    with Image.open(out) as ct_only:
        assert ct_only.height < tall  # the MR row is gone


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": "missing.mha"}, "labels {}: no such file"),
        ({"labels": "other_grid"}, "is not on the CT's grid"),
        ({"truth": "other_grid"}, "truth {} is not on the CT's grid"),
        ({"ct": "not_an_image"}, "CT {}: cannot be read"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_nothing_written(files, tmp_path, capsys, change, message):
    (tmp_path / "not_an_image").write_text("hello")
    paths = {"ct": files["ct"], "labels": files["labels"]}
    for key, name in change.items():
        paths[key] = files.get(name, tmp_path / name)
    out = tmp_path / "out.png"
    argv = [f"--{k}={v}" for k, v in paths.items()] + ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (key,) = change
    assert err.count("\n") == 1 and err.startswith("evaluation.qa: error: ")
    assert message.format(paths[key]) in err
    assert not out.exists() and list(tmp_path.glob("*.png")) == []


def test_help_is_fast():
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "evaluation.qa", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "--register" in done.stdout
    assert time.perf_counter() - start < 3.0
    # nothing heavy imported before argparse answers
    probe = "import sys, evaluation.qa; print(sorted(m for m in ('SimpleITK', 'numpy', 'PIL', 'torch') if m in sys.modules))"
    listed = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listed.stdout.strip() == "[]", listed.stderr
