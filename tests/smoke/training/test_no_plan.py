"""A training command run on a work folder that ``training.plan`` has not planned yet says so in
one line naming the command to run first, and exits 2 (no traceback)."""

import subprocess
import sys

import pytest

from helpers import ROOT

COMMANDS = {
    "training.train": ["--data", "DATA_DIR", "--work", "WORK"],
    "training.export": ["--work", "WORK", "--out", "OUT"],
    "training.pretrain": ["--images", "DATA_DIR", "--work", "WORK"],
}


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_no_plan_is_one_line_and_exit_2(module, tmp_path):
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    data.mkdir()
    paths = {"WORK": str(work), "DATA_DIR": str(data), "OUT": str(tmp_path / "model")}
    args = [paths.get(a, a) for a in COMMANDS[module]]
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert f"{work} holds no plan (plans.json)" in output
    assert "python -m training.plan --data " in output and f"--work {work}` first" in output
    assert not (tmp_path / "model").exists()
