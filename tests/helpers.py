"""Helpers shared by the tests (imported as ``helpers``; pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from hanseg.labels import NUM_CLASSES, OAR_NAMES
from hanseg.model_dir import export_model
from hanseg.networks import build_network
from hanseg.plans import Plans, plans_from_json

#: The repository root.
ROOT = Path(__file__).resolve().parents[1]

#: The header line of the real download's OAR_data.csv, exactly (../shared/notes/hanseg-facts.md, "Data").
REAL_OAR_CSV_HEADER = (
    ";Arytenoid;Brainstem;BuccalMucosa;A_Carotid_L;A_Carotid_R;Esophagus_S;Cochlea_L;Cochlea_R;"
    "Cricopharyngeus;Eye_L;Eye_R;Lens_L;Lens_R;Glnd_Lacrimal_L;Glnd_Lacrimal_R;Glottis;Larynx_SG;"
    "Lips;Bone_Mandible;OpticChiasm;OpticNrv_L;OpticNrv_R;Cavity_Oral;Parotid_L;Parotid_R;"
    "Pituitary;SpinalCord;Glnd_Submand_L;Glnd_Submand_R;Glnd_Thyroid"
)


def need_tools(*tools: str, install: str = "scripts/setup_tools.sh installs them") -> list[str]:
    """The paths of ``tools``; a missing one skips the test on a developer's machine and fails
    it in CI, where a skip would hide a missing install step."""
    # PATH, then the running interpreter's bin folder (.venv/bin: tools pip installs, e.g. hadolint)
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    found = {t: path for t in tools if (path := shutil.which(t, path=search)) is not None}
    missing = [t for t in tools if t not in found]
    if missing:
        message = f"{', '.join(missing)} not installed ({install})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [found[t] for t in tools]


@dataclass(frozen=True)
class CliRun:
    """What a CLI run left behind, in the shape of ``subprocess.CompletedProcess``."""

    args: tuple[str, ...]
    returncode: int
    stderr: str  # the log records at INFO and above, formatted as the CLIs' own basicConfig does


def run_main(main: Callable[[list[str]], int | None], *args: str, check: bool = True) -> CliRun:
    """``main(list(args))`` in this process, as ``python -m`` would run it but without a new
    interpreter importing torch and MONAI again (seconds per call): the log records are
    captured as the process's stderr would hold them and ``SystemExit`` becomes the return
    code. For the tests where the process boundary is not what is checked; each CLI keeps one
    test through a real subprocess. ``check``: assert exit 0, with the log's tail."""
    import io
    import logging

    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        try:
            code = main(list(args))
        except SystemExit as stop:
            if isinstance(stop.code, str):
                logging.getLogger("run_main").error("%s", stop.code)
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    done = CliRun(args, int(code or 0), text.getvalue())
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def train_in_process(data: Path, work: Path, *options: str, check: bool = True) -> CliRun:
    """``python -m training.train --data DATA --work WORK --fold 0 --device cpu OPTIONS`` in this
    process (:func:`run_main`)."""
    from training.train import main

    return run_main(
        main, "--data", str(data), "--work", str(work), "--fold", "0", "--device", "cpu", *options, check=check
    )


def segment_unseen_phantom(
    model: Path, folder: Path, seed: int = 33, case_id: str = "case_09"
) -> tuple[sitk.Image, sitk.Image]:
    """``process.py`` with ``model`` on a phantom no test trains on (2023 layout in ``folder``):
    its (label map, CT), after checking that the run succeeded and wrote results.json."""
    import json
    import subprocess
    import sys

    from phantoms import make_case, write_gc

    write_gc(make_case(seed, "small", case_id), folder / "gc")
    done = subprocess.run(
        [
            sys.executable,
            "process.py",
            "--input",
            str(folder / "gc/input"),
            "--output",
            str(folder / "out"),
            "--model",
            str(model),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((folder / "out/results.json").read_text())[0]["outputs"]
    seg = sitk.ReadImage(str(folder / f"out/images/head_neck_oar/{case_id}_seg.mha"))
    return seg, sitk.ReadImage(str(folder / f"gc/input/images/ct/{case_id}_CT.mha"))


TINY_NETWORK = {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}


def tiny_plans(
    folds: tuple[int, ...] = (0,),
    channels: tuple[str, ...] = ("CT", "MR_T1"),
    spacing=(4.0, 4.0, 4.0),
    patch=(16, 32, 32),
) -> Plans:
    """Valid plans for the tiny UNet: fixed CT window, z-scored MR."""
    norms = {
        "CT": {"scheme": "ct", "clip_low": -1000, "clip_high": 1500, "mean": 0.0, "std": 500.0},
        "MR_T1": {"scheme": "zscore", "percentiles": [0.5, 99.5]},
    }
    return plans_from_json(
        {
            "labels": list(OAR_NAMES),
            "channels": [{"name": c, "normalization": norms[c]} for c in channels],
            "spacing_xyz_mm": list(spacing),
            "patch_size_zyx": list(patch),
            "network": TINY_NETWORK,
            "folds": list(folds),
            "overlap": 0.25,
        }
    )


def write_tiny_model(
    root: Path,
    folds: tuple[int, ...] = (0,),
    channels: tuple[str, ...] = ("CT", "MR_T1"),
    spacing=(4.0, 4.0, 4.0),
    patch=(16, 32, 32),
    seed: int = 0,
) -> Path:
    """A complete, valid model folder with an untrained tiny UNet (for pipeline tests only)."""
    loaded = tiny_plans(folds, channels, spacing, patch)
    states = []
    for fold in folds:
        torch.manual_seed(seed + fold)
        states.append(build_network(loaded.network, len(channels), NUM_CLASSES).state_dict())
    export_model(root, loaded, states, {"version": "test", "trained": False})
    return root


@dataclass
class FakePrediction:
    labels: np.ndarray
    warnings: tuple = ()


class FakePredictor:
    """Labels every voxel above 0 HU as Brainstem (5); records what it was given."""

    def __init__(self):
        self.calls = []

    def predict(self, ct, mr):
        self.calls.append((ct.GetSize(), None if mr is None else mr.GetSize()))
        arr = sitk.GetArrayFromImage(ct)
        return FakePrediction((arr > 0).astype(np.uint8) * 5, () if mr is not None else ("no MR",))


def write_ct(path: Path, value: int = 100, size=(8, 9, 10)) -> None:
    """A tiny CT file: air with a box of ``value`` HU."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(size[::-1], -1000, np.int16)
    arr[2:-2, 2:-2, 2:-2] = value
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.6, 2.0))
    sitk.WriteImage(img, str(path), True)
