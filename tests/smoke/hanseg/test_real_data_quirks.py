"""The real download's quirks through ``process.py`` with the shipped model, at small scale.

One phantom case is written several ways, each into its own HaN-Seg 2023 input folder (the
duplicate check would refuse repeated files in one folder), and segmented by the code path of
``process.py`` (:func:`hanseg.layouts.run`, one :class:`Segmenter` built once): as it is (``base``), with its MR stored as unsigned 16-bit with the
+32768 offset (``offset``, against ``rounded``: the same integers without the offset), with its
MR header 700 mm away in world coordinates (``far``), and a CT that reaches the thorax
(``tall``) against the same CT cut to the head and neck (``cut``). The MR must be used in every
case, and the Dice against the truth must stay within 0.01 of the case without the quirk.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.compare import per_oar_dice
from hanseg.inference import Segmenter
from hanseg.layouts import run
from helpers import ROOT
from phantoms import Profile, make_case

SEED = 4711


def uint16(mr: sitk.Image, offset: int) -> sitk.Image:
    out = sitk.Cast(sitk.Round(mr) + offset, sitk.sitkUInt16)
    out.CopyInformation(mr)
    return out


def moved(mr: sitk.Image, shift_mm: tuple[float, float, float]) -> sitk.Image:
    out = sitk.Image(mr)
    out.SetOrigin(tuple(o + s for o, s in zip(mr.GetOrigin(), shift_mm)))
    return out


def cut_below(ct: sitk.Image, labels: sitk.Image, keep_mm: float) -> tuple[sitk.Image, sitk.Image]:
    """CT and labels without the slices more than ``keep_mm`` below the lowest OAR."""
    lowest = int(np.nonzero(sitk.GetArrayViewFromImage(labels).any(axis=(1, 2)))[0].min())
    start = max(0, lowest - int(np.ceil(keep_mm / ct.GetSpacing()[2])))
    size = [*ct.GetSize()[:2], ct.GetSize()[2] - start]
    return sitk.RegionOfInterest(ct, size, [0, 0, start]), sitk.RegionOfInterest(labels, size, [0, 0, start])


def write(folder: Path, name: str, ct: sitk.Image, mr: sitk.Image, labels: sitk.Image) -> None:
    case = folder / name
    for sub, image in (("input/images/ct", ct), ("input/images/t1-mri", mr), ("truth", labels)):
        (case / sub).mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(ct, str(case / "input/images/ct" / f"{name}_CT.mha"), True)
    sitk.WriteImage(mr, str(case / "input/images/t1-mri" / f"{name}_T1.mha"), True)
    sitk.WriteImage(labels, str(case / "truth" / f"{name}_seg.mha"), True)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("quirks")
    base = make_case(SEED, "small", "base", profile=Profile(real=True, tall=False, mr_uint16=False))
    tall = make_case(SEED, "small", "tall", profile=Profile(real=True, tall=True, mr_uint16=False))
    write(folder, "base", base.ct, base.mr, base.labels)
    write(folder, "offset", base.ct, uint16(base.mr, 32768), base.labels)
    write(folder, "rounded", base.ct, uint16(base.mr, 0), base.labels)
    write(folder, "far", base.ct, moved(base.mr, (700.0, -450.0, 520.0)), base.labels)
    write(folder, "tall", tall.ct, tall.mr, tall.labels)
    cut_ct, cut_labels = cut_below(tall.ct, tall.labels, 20.0)
    write(folder, "cut", cut_ct, tall.mr, cut_labels)
    # no mirroring and untuned windows: the quirks, not the test-time settings, are under test, and
    # the cases are compared with each other, so every one runs with the same fixed settings
    segmenter = Segmenter(ROOT / "model", "cpu", mirroring=False, tune=False)
    with capture_logs() as logs:
        for case in ("base", "offset", "rounded", "far", "tall", "cut"):
            assert run(folder / case / "input", folder / case / "output", segmenter) == 0, case
    (folder / "log.txt").write_text(logs.getvalue())
    return folder


@contextlib.contextmanager
def capture_logs() -> Iterator[io.StringIO]:
    text, handler = io.StringIO(), logging.StreamHandler()
    handler.stream = text
    logging.getLogger("hanseg").addHandler(handler)
    level = logging.getLogger("hanseg").level
    logging.getLogger("hanseg").setLevel(logging.INFO)
    try:
        yield text
    finally:
        logging.getLogger("hanseg").removeHandler(handler)
        logging.getLogger("hanseg").setLevel(level)


def label_map(folder: Path, name: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name / "output/images/head_neck_oar" / f"{name}_seg.mha")))


def dice_vs_truth(folder: Path, name: str) -> float:
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name / "truth" / f"{name}_seg.mha")))
    return float(np.mean(list(per_oar_dice(label_map(folder, name), truth).values())))


def messages(folder: Path) -> dict[str, list[str]]:
    return {case.name: json.loads((case / "output/results.json").read_text())[0]["error_messages"]
            for case in folder.iterdir() if case.is_dir()}


def test_the_mr_is_used_in_every_case(segmented):
    for name, said in messages(segmented).items():
        assert not [m for m in said if "MR not used" in m], (name, said)
    assert segmented.joinpath("log.txt").read_text().count("MR registered to CT") == 6


def test_an_offset_mr_gives_exactly_the_labels_of_the_same_mr_without_the_offset(segmented):
    assert any("+32768 offset" in m for m in messages(segmented)["offset"])
    np.testing.assert_array_equal(label_map(segmented, "offset"), label_map(segmented, "rounded"))
    assert abs(dice_vs_truth(segmented, "rounded") - dice_vs_truth(segmented, "base")) <= 0.01


def test_an_mr_far_away_in_world_coordinates_changes_nothing_that_matters(segmented):
    assert abs(dice_vs_truth(segmented, "far") - dice_vs_truth(segmented, "base")) <= 0.01
    agree = per_oar_dice(label_map(segmented, "far"), label_map(segmented, "base"))
    assert min(agree.values()) > 0.95


def test_a_ct_that_reaches_the_thorax_is_segmented_like_its_head_and_neck_cut(segmented):
    tall, cut = label_map(segmented, "tall"), label_map(segmented, "cut")
    assert tall.shape[0] > cut.shape[0] * 1.4                           # it really reaches far lower
    below = tall.shape[0] - cut.shape[0]
    assert not tall[:below].any()                                       # nothing segmented in the thorax
    assert abs(dice_vs_truth(segmented, "tall") - dice_vs_truth(segmented, "cut")) <= 0.01
    assert "segmented down to 368 mm below the top of the body" in segmented.joinpath("log.txt").read_text()
