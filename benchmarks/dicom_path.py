"""What the DICOM path costs against the ``.mha`` path, on the same images, in one run.

    python -m benchmarks.dicom_path --model model --out bench/dicom_path [--case test | --tall]

The baseline is ``process.py`` on the HaN-Seg 2023 layout (``mha``). The same CT and MR are
then exported as a scanner/PACS export (``phantoms.dicom_export``: CT, T1, T2, scout and a
reformat in one folder, shuffled, UID-named files) and run through ``process.py`` again
(``dicom``): scan, series selection, volume building, the same segmentation, RTSTRUCT and SEG.
Each run is its own process (wall seconds and peak RSS from ``wait4``) with ``--time-budget 0``,
so both do the same work per window. ``--tall`` uses the real-size phantom that reaches the
thorax (1024×1024×330) instead of the ``test/`` case.

Writes ``results.json`` and ``results.md``: seconds, peak RSS, the DICOM path's overhead, the
segmentation seconds the log reports, the size of the objects written, and the agreement of
the SEG (decoded by highdicom) with the ``.mha`` path's label map.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk

from benchmarks.inference_vs_monai import ProcessRun, run_one
from hanseg.compare import per_oar_dice
from hanseg.labels import LABEL_IDS
from phantoms import TALL_SEED, Profile, make_case, write_gc
from phantoms.dicom_export import ExportOptions, export_case

log = logging.getLogger("benchmarks.dicom_path")
ROOT = Path(__file__).resolve().parent.parent
SEGMENTED = re.compile(r"segmented in ([0-9.]+) s")


def mha_input(out: Path, tall: bool) -> Path:
    """The 2023 layout of the case: ``test/`` as it is, or the tall real-size phantom."""
    if not tall:
        return ROOT / "test"
    folder = out / "tall_case"
    if not (folder / "input/images/ct").is_dir():
        write_gc(make_case(TALL_SEED, "full", "case_01", profile=Profile(real=True, tall=True)), folder)
    return folder / "input"


def dicom_input(images: Path, out: Path) -> Path:
    folder = out / "dicom_input"
    if not folder.is_dir():
        ct = next((images / "images/ct").iterdir())
        mr = next((images / "images/t1-mri").iterdir(), None)
        export_case(ct, mr, folder, seed=1, options=ExportOptions(patient_id="bench"))
    return folder


class LayoutRun(ProcessRun):
    """``process.py`` on one layout: :func:`run_one`'s measures, the seconds its log gives for
    the segmentation (None where it says none), and the output folder."""

    segmentation_seconds: float | None
    output: str


def run(layout: str, input_dir: Path, out: Path, model: Path) -> LayoutRun:
    output = out / f"{layout}_output"
    shutil.rmtree(output, ignore_errors=True)
    cmd = [
        sys.executable,
        str(ROOT / "process.py"),
        "--input",
        str(input_dir),
        "--output",
        str(output),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--time-budget",
        "0",
    ]
    measured = run_one(cmd, out / f"{layout}.log", None)
    found = SEGMENTED.findall((out / f"{layout}.log").read_text())
    return {**measured, "segmentation_seconds": float(found[-1]) if found else None, "output": str(output)}


def seg_labels(seg_path: Path, rtstruct_path: Path) -> np.ndarray:
    """The SEG as a label map in the CT's slice order (read from the RTSTRUCT's references)."""
    rtstruct = pydicom.dcmread(rtstruct_path, stop_before_pixels=True)
    series = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    uids = [item.ReferencedSOPInstanceUID for item in series.ContourImageSequence]
    seg = hd.seg.segread(seg_path)
    numbers = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    labels = np.zeros(numbers.shape, np.uint8)
    for item in seg.SegmentSequence:
        labels[numbers == int(item.SegmentNumber)] = LABEL_IDS[str(item.SegmentLabel)]
    return labels


def compare(mha: LayoutRun, dicom: LayoutRun) -> dict:
    """Agreement of the DICOM path's SEG with the .mha path's label map, and the object sizes."""
    label_map = next((Path(mha["output"]) / "images/head_neck_oar").iterdir())
    rtstruct = next(Path(dicom["output"]).rglob("rtstruct.dcm"))
    seg = rtstruct.with_name("seg.dcm")
    scores = per_oar_dice(seg_labels(seg, rtstruct), sitk.GetArrayFromImage(sitk.ReadImage(str(label_map))))
    return {
        "seconds_ratio_dicom_over_mha": round(dicom["seconds"] / mha["seconds"], 2),
        "extra_seconds": round(dicom["seconds"] - mha["seconds"], 1),
        "seg_vs_mha_mean_dice": round(float(np.mean(list(scores.values()))), 4),
        "seg_vs_mha_min_dice": round(min(scores.values()), 4),
        "rtstruct_mib": round(rtstruct.stat().st_size / 2**20, 1),
        "seg_mib": round(seg.stat().st_size / 2**20, 1),
    }


def table(results: dict) -> str:
    rows = [
        "| layout | seconds | segmentation s (log) | peak RSS (GiB) | exit |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for layout, r in results["runs"].items():
        rows.append(
            f"| {layout} | {r['seconds']} | {r['segmentation_seconds']} | {r['peak_rss_gib']} | {r['exit_code']} |"
        )
    return "\n".join([*rows, "", json.dumps(results["summary"])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The DICOM path against the .mha path on the same images.")
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "dicom_path")
    ap.add_argument("--tall", action="store_true", help="the real-size phantom down to the thorax, not test/")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    images = mha_input(args.out, args.tall)
    runs = {
        "mha": run("mha", images, args.out, args.model),
        "dicom": run("dicom", dicom_input(images, args.out), args.out, args.model),
    }
    failed = [k for k, r in runs.items() if r["exit_code"] != 0]
    results = {
        "case": "tall" if args.tall else "test",
        "runs": runs,
        "summary": {} if failed else compare(runs["mha"], runs["dicom"]),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(table(results) + "\n")
    log.info("\n%s", table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
