from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks.dicom_path import SEGMENTED, TruthPredictor, command, main, seg_labels, table
from dicom_fixtures import SeriesSpec, write_series
from hanseg.labels import LABEL_IDS


def test_the_segmentation_seconds_are_read_from_the_log_line_inference_writes():
    log = "2026-12-01 INFO hanseg.inference: segmented in 24.5 s\n... segmented in 3 s"
    assert SEGMENTED.findall(log) == ["24.5", "3"]


def test_the_table_has_a_row_per_layout_and_the_summary():
    runs = {
        "mha": {"seconds": 60.0, "segmentation_seconds": 50.0, "peak_rss_gib": 1.2, "exit_code": 0},
        "dicom": {"seconds": 75.0, "segmentation_seconds": 50.5, "peak_rss_gib": 1.4, "exit_code": 0},
    }
    text = table({"runs": runs, "summary": {"seconds_ratio_dicom_over_mha": 1.25}})
    assert "| mha | 60.0 | 50.0 | 1.2 | 0 |" in text and "| dicom | 75.0 | 50.5 | 1.4 | 0 |" in text
    assert text.endswith('{"seconds_ratio_dicom_over_mha": 1.25}')


def truth_on(spec: SeriesSpec, path: Path) -> np.ndarray:
    """A label map on the grid of ``spec``'s CT, written to ``path``: Brainstem and SpinalCord
    on some slices, nothing on the others."""
    labels = np.zeros((spec.n_slices, spec.rows, spec.columns), np.uint8)
    labels[2:5, 1:4, 1:3] = LABEL_IDS["Brainstem"]
    labels[7, 2, 2] = LABEL_IDS["SpinalCord"]
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((spec.pixel_spacing[1], spec.pixel_spacing[0], spec.slice_spacing))
    image.SetOrigin(spec.origin)
    sitk.WriteImage(image, str(path))
    return labels


def test_the_stand_in_gives_the_truth_on_the_grid_of_the_ct_it_is_given(tmp_path):
    spec = SeriesSpec(n_slices=12)
    labels = truth_on(spec, tmp_path / "truth.mha")
    ct = sitk.ReadImage(str(tmp_path / "truth.mha"), sitk.sitkInt16)
    assert np.array_equal(TruthPredictor(tmp_path / "truth.mha").predict(ct, None).labels, labels)
    ct.SetOrigin((spec.origin[0], spec.origin[1], spec.origin[2] + spec.slice_spacing))  # one slice up
    moved = TruthPredictor(tmp_path / "truth.mha").predict(ct, None).labels
    assert np.array_equal(moved[:-1], labels[1:]) and not moved[-1].any()


def test_a_stand_in_run_builds_the_real_rtstruct_and_seg_of_the_truth(tmp_path):
    """``--run-stand-in`` (what ``--stand-in`` starts per layout) on a DICOM folder: the SEG
    decodes to the ground truth it was given, slice for slice."""
    spec = SeriesSpec(n_slices=12)
    write_series(tmp_path / "in", spec)
    labels = truth_on(spec, tmp_path / "truth.mha")
    assert main(["--run-stand-in", str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path / "truth.mha")]) == 0
    rtstruct = next((tmp_path / "out").rglob("rtstruct.dcm"))
    assert np.array_equal(seg_labels(rtstruct.with_name("seg.dcm"), rtstruct), labels)
    assert command(tmp_path / "in", tmp_path / "out", tmp_path, tmp_path / "truth.mha")[1:4] == [
        "-m",
        "benchmarks.dicom_path",
        "--run-stand-in",
    ]


def test_the_table_names_the_predictor():
    runs = {"mha": {"seconds": 9.0, "segmentation_seconds": None, "peak_rss_gib": 0.8, "exit_code": 0}}
    text = table({"predictor": "stand-in: case_01_seg.mha, no network", "runs": runs, "summary": {}})
    assert text.startswith("predictor: stand-in") and "| mha | 9.0 | None | 0.8 | 0 |" in text
