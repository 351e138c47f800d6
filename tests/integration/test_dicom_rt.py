"""The DICOM path with the real parts: the ``test/`` case exported as a scanner/PACS export
(shuffled, UID-named files; CT, MR, scout, reformat and T2 in one folder) through
``process.py`` with the shipped model; the RTSTRUCT read back by plastimatch (an independent
reader) and rasterised on the CT, the SEG decoded by highdicom, both validated by dciodvfy.

The tools are Debian packages (``scripts/setup_tools.sh``): missing ones skip these tests on
a developer's machine and fail them in CI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hanseg.labels import LABEL_IDS, OAR_NAMES
from helpers import ROOT, need_tools
from phantoms.dicom_export import ExportOptions, ExportRecord, export_case


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.logical_and(a, b).sum()) / max(1, int(a.sum()) + int(b.sum()))


EXPECTED = ROOT / "test/expected_output/images/head_neck_oar/case_01_seg.mha"
#: OARs smaller than this are left out of the Dice bar: one voxel of a 0.2 mL cochlea moves it a lot.
MIN_VOLUME_ML = 1.0
MIN_DICE = 0.95


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> ExportRecord:
    folder = tmp_path_factory.mktemp("dicom") / "in"
    return export_case(
        ROOT / "test/images/ct/case_01_CT.mha",
        ROOT / "test/images/t1-mri/case_01_T1.mha",
        folder,
        seed=5,
        options=ExportOptions(patient_id="case_01"),
    )


@pytest.fixture(scope="module")
def processed(exported: ExportRecord, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dicom_out")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "process.py"),
            "--input",
            str(exported.folder),
            "--output",
            str(out),
            "--model",
            str(ROOT / "model"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    (study,) = results["studies"]
    return {
        "out": out,
        "study": study,
        "log": done.stderr,
        "files": {o["type"]: Path(o["path"]) for o in study["outputs"]},
    }


def test_the_planning_ct_and_the_t1_are_chosen_and_the_rest_reported(exported, processed):
    study = processed["study"]
    used = {i["role"]: i["series_uid"] for i in study["inputs"]}
    assert used == {"ct": exported.ct.series_uid, "mr": exported.mr.series_uid}
    skipped = {s["series_uid"] for s in study["skipped_series"]}
    assert skipped == {exported.localizer.series_uid, exported.derived.series_uid, exported.t2.series_uid}
    assert study["error_messages"] == []  # the planning CT and its T1 were found and used: nothing to report
    assert set(processed["files"]) == {"rtstruct", "seg"}


def test_rtstruct_read_back_by_plastimatch_matches_the_mha_path(exported, processed, tmp_path):
    (plastimatch,) = need_tools("plastimatch")
    ct_files = tmp_path / "ct"  # plastimatch reads one folder: gather the CT series alone
    ct_files.mkdir()
    for path in exported.ct.files:
        shutil.copy(path, ct_files / path.name)
    masks = tmp_path / "masks"
    done = subprocess.run(
        [
            plastimatch,
            "convert",
            "--input",
            str(processed["files"]["rtstruct"]),
            "--referenced-ct",
            str(ct_files),
            "--output-prefix",
            str(masks),
            "--prefix-format",
            "nrrd",
            "--xor-contours",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected_img = sitk.ReadImage(str(EXPECTED))
    expected = sitk.GetArrayFromImage(expected_img)
    voxel_ml = float(np.prod(expected_img.GetSpacing())) / 1000
    scores = {}
    for name in OAR_NAMES:
        truth = expected == LABEL_IDS[name]
        if truth.sum() * voxel_ml < MIN_VOLUME_ML:
            continue
        mask_img = sitk.ReadImage(str(masks / f"{name}.nrrd"))
        assert mask_img.GetSize() == expected_img.GetSize()
        assert mask_img.GetOrigin() == pytest.approx(expected_img.GetOrigin(), abs=1e-3)
        scores[name] = dice(sitk.GetArrayFromImage(mask_img) > 0, truth)
    assert len(scores) >= 15  # the test case has 19 OARs of at least 1 mL
    low = {n: round(s, 3) for n, s in scores.items() if s < MIN_DICE}
    assert not low, f"plastimatch's rasterisation disagrees with the label map: {low}"
    assert float(np.mean(list(scores.values()))) >= 0.98


def test_seg_decodes_to_the_mha_path_label_map(processed):
    seg = hd.seg.segread(processed["files"]["seg"])
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(EXPECTED)))
    rtstruct = pydicom.dcmread(processed["files"]["rtstruct"])
    series = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    slice_uids = [item.ReferencedSOPInstanceUID for item in series.ContourImageSequence]  # slice k order
    labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    numbers = seg.get_pixels_by_source_instance(slice_uids, combine_segments=True, assert_missing_frames_are_empty=True)
    assert numbers.shape == expected.shape
    decoded = np.zeros_like(expected)
    for number, name in labels.items():
        decoded[numbers == number] = LABEL_IDS[name]
    assert np.mean(decoded == expected) > 0.999


@pytest.mark.parametrize("kind", ["rtstruct", "seg"])
def test_dciodvfy_reports_no_error(processed, kind):
    (dciodvfy,) = need_tools("dciodvfy")
    done = subprocess.run([dciodvfy, str(processed["files"][kind])], capture_output=True, text=True, timeout=120)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], "\n".join(errors)


def test_the_rtstruct_references_the_ct(exported, processed):
    ds = pydicom.dcmread(processed["files"]["rtstruct"])
    ct = pydicom.dcmread(exported.ct.files[0], stop_before_pixels=True)
    assert ds.StudyInstanceUID == ct.StudyInstanceUID
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == ct.FrameOfReferenceUID
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == exported.ct.series_uid
    referenced = {item.ReferencedSOPInstanceUID for item in series.ContourImageSequence}
    assert referenced == {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in exported.ct.files}
    assert "not reviewed" in ds.SeriesDescription
