"""The input and output folders are checked before the model is loaded: which layout, a clear
message naming the folder and the layouts looked for, an output that cannot be written; and
``process.py --help`` answers without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dicom_fixtures import SeriesSpec, write_series
from hanseg.errors import InputLayoutError, OutputError
from hanseg.folders import check_can_write, check_writable, detect_layout
from helpers import ROOT


def test_each_layout_is_recognised(tmp_path):
    (tmp_path / "sockets").mkdir()
    (tmp_path / "sockets/inputs.json").write_text("[]")
    (tmp_path / "gc2023/images/ct").mkdir(parents=True)
    write_series(tmp_path / "dicom", SeriesSpec())
    assert [detect_layout(tmp_path / name) for name in ("sockets", "gc2023", "dicom")] == ["sockets", "gc2023", "dicom"]


def test_a_missing_or_empty_input_names_the_folder_and_the_layouts(tmp_path):
    with pytest.raises(
        InputLayoutError, match=r"input folder .*missing.* does not exist.*inputs\.json.*images/ct/.*DICOM"
    ):
        detect_layout(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/notes.txt").write_text("not an image")
    with pytest.raises(InputLayoutError, match=r"no input found in .*empty: looked for inputs\.json"):
        detect_layout(tmp_path / "empty")


def test_an_output_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutputError, match="cannot write to the output folder"):
        check_writable(tmp_path / "a-file" / "out")
    with pytest.raises(OutputError, match="a-file is a file, not a folder"):
        check_can_write(tmp_path / "a-file" / "out" / "deeper")
    check_can_write(tmp_path / "new" / "out")  # its parent can take it
    assert not (tmp_path / "new").exists()  # and nothing was made yet


def test_process_py_reports_a_wrong_input_before_looking_at_the_model(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "process.py"), "--input", str(tmp_path / "missing"), "--output",
         str(tmp_path / "out"), "--model", str(tmp_path / "no-model")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"the input folder {tmp_path / 'missing'} does not exist" in done.stderr
    assert "model" not in done.stderr.replace("--model", "")  # the (missing) model was never looked at


def test_process_py_help_does_not_import_torch():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['process.py', '--help']\n"
        "try:\n    runpy.run_path('process.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'pydicom' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "--time-budget" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "False False"
