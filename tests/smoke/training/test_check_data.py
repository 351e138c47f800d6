"""``python -m training.check_data`` on small phantoms: a good dataset, then one planted fault
per copy, each of which must be named in ``findings.csv`` (file and check) with the right
severity and exit code. Registration runs in one test only (it is the slow part)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dataset.oar_data import read_oar_table, write_oar_table
from helpers import REAL_OAR_CSV_HEADER as REAL_HEADER
from helpers import ROOT
from training.check_data import ERROR, INFO, WARNING, load_table, main


@pytest.fixture
def data(raw_phantoms: Path, tmp_path: Path) -> Path:
    """A private copy of the shared two-case phantom dataset, to plant a fault in."""
    return Path(shutil.copytree(raw_phantoms, tmp_path / "data"))


def run_check(data: Path, tmp_path: Path, *extra: str, registration: bool = False) -> tuple[int, list[dict], Path]:
    out = tmp_path / "out"
    rc = main(["--data", str(data), "--out", str(out), *extra, *(() if registration else ("--no-registration",))])
    with (out / "findings.csv").open(newline="") as fh:
        return rc, list(csv.DictReader(fh)), out


def named(rows: list[dict], file: str, check: str, severity: str | None = None) -> list[dict]:
    return [
        r for r in rows if r["file"] == file and r["check"] == check and (severity is None or r["severity"] == severity)
    ]


def mask_path(data: Path, case: str, oar: str) -> Path:
    return data / case / f"{case}_OAR_{oar}.seg.nrrd"


def rewrite(path: Path, image: sitk.Image) -> None:
    sitk.WriteImage(image, str(path), True)


def test_good_dataset_passes_and_writes_tables_and_pictures(data: Path, tmp_path: Path, capsys) -> None:
    rc, rows, out = run_check(data, tmp_path)
    assert rc == 0
    assert not [r for r in rows if r["severity"] == ERROR]
    with (out / "cases.csv").open(newline="") as fh:
        cases = list(csv.DictReader(fh))
    assert [c["case"] for c in cases] == ["case_01", "case_02"]
    assert cases[0]["ct_size"] == "x".join(
        map(str, sitk.ReadImage(str(data / "case_01/case_01_IMG_CT.nrrd")).GetSize())
    )
    assert float(cases[0]["vol_Brainstem_ml"]) > 1
    for case in ("case_01", "case_02"):
        assert (out / "qa" / f"{case}.png").read_bytes()[:4] == b"\x89PNG"
    assert "0 error(s)" in capsys.readouterr().out


def test_mask_shifted_one_mm_is_off_grid(data: Path, tmp_path: Path, capsys) -> None:
    path = mask_path(data, "case_01", "Brainstem")
    mask = sitk.ReadImage(str(path))
    mask.SetOrigin(tuple(np.add(mask.GetOrigin(), (1.0, 0.0, 0.0))))
    rewrite(path, mask)
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 1
    [finding] = named(rows, path.name, "grid", ERROR)
    assert "origin" in finding["message"] and "1.000 mm" in finding["message"]
    assert path.name in capsys.readouterr().out


def test_mask_with_values_0_and_255_is_an_error(data: Path, tmp_path: Path) -> None:
    path = mask_path(data, "case_02", "Parotid_R")
    rewrite(path, sitk.ReadImage(str(path)) * 255)
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 1
    [finding] = named(rows, path.name, "mask_values", ERROR)
    assert "0, 255" in finding["message"]


def test_empty_mask_is_a_warning(data: Path, tmp_path: Path) -> None:
    path = mask_path(data, "case_01", "Lips")
    rewrite(path, sitk.ReadImage(str(path)) * 0)
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 0
    assert named(rows, path.name, "empty_mask", WARNING)


def test_unknown_oar_file_name_is_an_error(data: Path, tmp_path: Path) -> None:
    good = mask_path(data, "case_01", "Parotid_L")
    typo = good.with_name("case_01_OAR_Parotd_L.seg.nrrd")
    good.rename(typo)
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 1
    [finding] = named(rows, typo.name, "unknown_oar", ERROR)
    assert "did you mean Parotid_L" in finding["message"]
    assert named(rows, good.name, "oar_data", WARNING)  # OAR_data.csv says 1, and its file is gone


def test_oar_table_that_disagrees_with_the_files(data: Path, tmp_path: Path) -> None:
    table = read_oar_table(data / "OAR_data.csv")
    assert table["case_01"]["Lips"] == 1 and table["case_01"]["Brainstem"] == 1
    table["case_01"]["Brainstem"] = 0.0  # a mask that exists
    write_oar_table(table, data / "OAR_data.csv")
    mask_path(data, "case_01", "Lips").unlink()  # a value 1 for a missing mask
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 0
    [zero] = named(rows, "case_01_OAR_Brainstem.seg.nrrd", "oar_data", WARNING)
    assert "says 0" in zero["message"]
    [one] = named(rows, "case_01_OAR_Lips.seg.nrrd", "oar_data", WARNING)
    assert "says 1" in one["message"]


def test_case_missing_from_the_table_and_row_without_a_folder(data: Path, tmp_path: Path) -> None:
    table = read_oar_table(data / "OAR_data.csv")
    table["case_07"] = table.pop("case_02")
    write_oar_table(table, data / "OAR_data.csv")
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 0
    assert [r["case"] for r in named(rows, "OAR_data.csv", "oar_data", WARNING)] == ["case_07", "case_02"]


def test_real_header_line_is_read_by_oar_name(data: Path, tmp_path: Path) -> None:
    columns = REAL_HEADER.split(";")[1:]
    row1 = ["0" if c == "Lens_L" else "1" for c in columns]  # Lens_L is the file Eye_AL
    row2 = ["0.5" if c == "Pituitary" else "1" for c in columns]
    (data / "OAR_data.csv").write_text(
        "\n".join([REAL_HEADER, ";".join(["case_01", *row1]), ";".join(["case_02", *row2])]) + "\n"
    )
    table, problems = load_table(data)
    assert problems == [] and table is not None
    assert table["case_01"]["Eye_AL"] == 0 and table["case_01"]["Eye_PL"] == 1
    assert table["case_02"]["Pituitary"] == 0.5 and len(table["case_02"]) == 30
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 0
    assert named(rows, "case_01_OAR_Eye_AL.seg.nrrd", "oar_data", WARNING)
    assert not named(rows, "case_01_OAR_Eye_PL.seg.nrrd", "oar_data")
    [unreliable] = named(rows, "case_02_OAR_Pituitary.seg.nrrd", "oar_data", INFO)
    assert "0.5" in unreliable["message"] and "--min-oar-reliability" in unreliable["message"]


def test_mr_with_uint16_offset_is_flagged_and_still_registers(data: Path, tmp_path: Path) -> None:
    shutil.rmtree(data / "case_02")  # one case: registration is the slow part
    table = read_oar_table(data / "OAR_data.csv")
    write_oar_table({"case_01": table["case_01"]}, data / "OAR_data.csv")
    path = data / "case_01" / "case_01_IMG_MR_T1.nrrd"
    mr = sitk.ReadImage(str(path))
    stored = np.round(np.clip(sitk.GetArrayFromImage(mr), 0, None)).astype(np.uint16) + np.uint16(32768)
    shifted = sitk.GetImageFromArray(stored)
    shifted.CopyInformation(mr)
    rewrite(path, shifted)
    rc, rows, out = run_check(data, tmp_path, registration=True)
    assert rc == 0
    [offset] = named(rows, path.name, "mr", WARNING)
    assert "32768" in offset["message"]
    assert named(rows, path.name, "registration", INFO)
    with (out / "cases.csv").open(newline="") as fh:
        [case] = list(csv.DictReader(fh))
    assert case["reg_ok"] == "yes" and float(case["reg_outline_dice"]) > 0.8
    assert float(case["mr_offset"]) == 32768


def test_ct_stored_as_raw_values_is_a_warning(data: Path, tmp_path: Path) -> None:
    path = data / "case_02" / "case_02_IMG_CT.nrrd"
    ct = sitk.ReadImage(str(path))
    rewrite(path, sitk.Clamp(ct, sitk.sitkInt16, -1024, 3000) + 1024)
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 0
    [finding] = named(rows, path.name, "ct", WARNING)
    assert "not Hounsfield units" in finding["message"]


def test_overlapping_masks_name_the_winner(data: Path, tmp_path: Path) -> None:
    brainstem = sitk.ReadImage(str(mask_path(data, "case_01", "Brainstem")))
    cord_path = mask_path(data, "case_01", "SpinalCord")
    cord = sitk.ReadImage(str(cord_path))
    shared = int(sitk.GetArrayViewFromImage(brainstem).sum()) - int(
        (sitk.GetArrayViewFromImage(brainstem) & sitk.GetArrayViewFromImage(cord)).sum()
    )
    rewrite(cord_path, sitk.Or(cord, brainstem))
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 0
    [finding] = named(rows, "case_01_OAR_Brainstem.seg.nrrd", "overlap", WARNING)
    assert f"{shared} voxels" in finding["message"]
    assert "gives them to SpinalCord" in finding["message"] and "higher id wins" in finding["message"]


def test_case_without_ct_is_an_error(data: Path, tmp_path: Path) -> None:
    (data / "case_02" / "case_02_IMG_CT.nrrd").unlink()
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 1
    assert named(rows, "case_02_IMG_CT.nrrd", "layout", ERROR)


def test_workers_give_the_same_findings_in_the_same_order(data: Path, tmp_path: Path) -> None:
    mask = mask_path(data, "case_02", "Glottis")
    rewrite(mask, sitk.ReadImage(str(mask)) * 255)  # something to report in the second case
    _, one, _ = run_check(data, tmp_path)
    _, two, _ = run_check(data, tmp_path, "--workers", "2")
    assert one == two and named(two, mask.name, "mask_values", ERROR)


@pytest.mark.parametrize("args", [["--data", "/nonexistent/folder"], ["--workers", "0"], []])
def test_bad_arguments_exit_2(args: list[str], tmp_path: Path) -> None:
    if args[:1] == ["--workers"]:
        args = ["--data", str(tmp_path), *args]
    proc = subprocess.run(
        [sys.executable, "-m", "training.check_data", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr


def test_unreadable_mask_is_an_error(data: Path, tmp_path: Path) -> None:
    path = mask_path(data, "case_01", "Glottis")
    path.write_bytes(b"NRRD0004\nthis is not a header\n")
    rc, rows, _ = run_check(data, tmp_path)
    assert rc == 1
    [finding] = named(rows, path.name, "unreadable", ERROR)
    assert "cannot be read" in finding["message"]
