"""What the DICOM path costs against the ``.mha`` path, on the same images, in one run.

    python -m benchmarks.dicom_path --model model --out bench/dicom_path [--tall] [--stand-in]

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

``--stand-in`` runs no network: each layout's process (``python -m benchmarks.dicom_path
--run-stand-in``, the same ``hanseg.layouts.run`` that ``process.py`` calls) is given the
phantom's ground-truth label map as its prediction, read from disk. Everything around the
network is the real code: reading the ``.mha`` files or scanning, selecting and building the
DICOM volumes, then writing the label map, or building, checking and writing the RTSTRUCT and
the SEG. So each peak RSS is what the layout's own work costs (plus reading the map, the same
in both), in minutes instead of the network's. The SEG decodes to the same map as the ``.mha``
output (Dice 1). Its files go beside the real runs' (``*_stand_in*``), sharing the images.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":
    # --help and usage errors answer before highdicom, SimpleITK and the phantoms are imported:
    # the command line is built by benchmarks.cli_parsers, which imports none of them
    from benchmarks.cli_parsers import dicom_path_parser

    dicom_path_parser().parse_args()

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk

from benchmarks.cli_parsers import dicom_path_parser
from benchmarks.inference_vs_monai import ProcessRun, run_one
from hanseg.compare import per_oar_dice
from hanseg.labels import LABEL_IDS
from hanseg.layouts import run as run_layout
from hanseg.layouts.dicom import DicomConfig
from phantoms import TALL_SEED, Profile, make_case, write_gc
from phantoms.dicom_export import ExportOptions, export_case

log = logging.getLogger("benchmarks.dicom_path")
ROOT = Path(__file__).resolve().parent.parent
SEGMENTED = re.compile(r"segmented in ([0-9.]+) s")
#: the model version and fingerprint the stand-in's DICOM objects are written with
STAND_IN = "stand-in"


def mha_input(out: Path, tall: bool) -> Path:
    """The 2023 layout of the case: ``test/`` as it is, or the tall real-size phantom."""
    if not tall:
        return ROOT / "test"
    folder = out / "tall_case"
    if not (folder / "input/images/ct").is_dir():
        write_gc(make_case(TALL_SEED, "full", "case_01", profile=Profile(real=True, tall=True)), folder)
    return folder / "input"


def truth_path(images: Path) -> Path:
    """The ground-truth label map of the case whose ``images/`` are under ``images``: ``test/``
    and the phantom's ``tall_case/`` both keep it in ``ground_truth/`` beside the inputs."""
    for folder in (images / "ground_truth", images.parent / "ground_truth"):
        found = sorted(folder.glob("*_seg.mha"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no ground_truth/*_seg.mha beside {images}")


def dicom_input(images: Path, out: Path) -> Path:
    folder = out / "dicom_input"
    if not folder.is_dir():
        ct = next((images / "images/ct").iterdir())
        mr = next((images / "images/t1-mri").iterdir(), None)
        export_case(ct, mr, folder, seed=1, options=ExportOptions(patient_id="bench"))
    return folder


@dataclass(frozen=True)
class StandInPrediction:
    labels: np.ndarray
    warnings: tuple[str, ...] = ()


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


class TruthPredictor:
    """Stand-in for the network: the ground-truth label map, on the grid of the CT it is given
    (the DICOM volume's grid is the ``.mha`` CT's up to the decimals DICOM stores; nearest
    neighbour where it is not)."""

    def __init__(self, truth: Path) -> None:
        self.truth = truth

    def predict(self, ct: sitk.Image, mr: sitk.Image | None) -> StandInPrediction:
        truth = sitk.ReadImage(str(self.truth), sitk.sitkUInt8)
        if not _same_grid(truth, ct):
            truth = sitk.Resample(truth, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        log.info("stand-in: the label map of %s, no network", self.truth.name)
        return StandInPrediction(sitk.GetArrayFromImage(truth))


def run_stand_in(input_dir: Path, output_dir: Path, truth: Path) -> int:
    """One layout's process with the stand-in predictor: what ``process.py`` does otherwise."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dicom = DicomConfig(model_version=STAND_IN, model_fingerprint=STAND_IN)
    return run_layout(input_dir, output_dir, TruthPredictor(truth), dicom=dicom)


class LayoutRun(ProcessRun):
    """``process.py`` on one layout: :func:`run_one`'s measures, the seconds its log gives for
    the segmentation (None where it says none), and the output folder."""

    segmentation_seconds: float | None
    output: str


def command(input_dir: Path, output: Path, model: Path, truth: Path | None) -> list[str]:
    """``process.py`` on the network, or (``truth``) this module's stand-in run."""
    if truth is not None:
        return [
            sys.executable,
            "-m",
            "benchmarks.dicom_path",
            "--run-stand-in",
            str(input_dir),
            str(output),
            str(truth),
        ]
    return [
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


def run(layout: str, input_dir: Path, out: Path, model: Path, truth: Path | None = None) -> LayoutRun:
    name = f"{layout}_stand_in" if truth is not None else layout
    output = out / f"{name}_output"
    shutil.rmtree(output, ignore_errors=True)
    measured = run_one(command(input_dir, output, model, truth), out / f"{name}.log", None)
    found = SEGMENTED.findall((out / f"{name}.log").read_text())
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
        f"predictor: {results.get('predictor', 'network')}",
        "",
        "| layout | seconds | segmentation s (log) | peak RSS (GiB) | exit |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for layout, r in results["runs"].items():
        rows.append(
            f"| {layout} | {r['seconds']} | {r['segmentation_seconds']} | {r['peak_rss_gib']} | {r['exit_code']} |"
        )
    return "\n".join([*rows, "", json.dumps(results["summary"])])


def main(argv: list[str] | None = None) -> int:
    args = dicom_path_parser().parse_args(argv)
    if args.run_stand_in:
        return run_stand_in(*args.run_stand_in)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    images = mha_input(args.out, args.tall)
    truth = truth_path(images) if args.stand_in else None
    runs = {
        "mha": run("mha", images, args.out, args.model, truth),
        "dicom": run("dicom", dicom_input(images, args.out), args.out, args.model, truth),
    }
    failed = [k for k, r in runs.items() if r["exit_code"] != 0]
    results = {
        "case": "tall" if args.tall else "test",
        "predictor": f"stand-in: {truth.name}, no network" if truth is not None else "network",
        "runs": runs,
        "summary": {} if failed else compare(runs["mha"], runs["dicom"]),
    }
    stem = "results_stand_in" if truth is not None else "results"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(table(results) + "\n")
    log.info("\n%s", table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
