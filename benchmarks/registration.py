"""Registration benchmark: the shipped MR→CT schedule against the previous one, same run.

    python -m benchmarks.registration --out bench/registration \
        [--cases 5] [--full-cases 1] [--seed 9100] [--sizes small full] [--repeat 3]

Cases are phantoms never used in tests or training: case ``i`` of a size has the seed
``case_seed(--seed, i)``; ``--cases`` small ones (256×256×~150 CT at ~1×1×2.5 mm) and
``--full-cases`` full-size ones (1024×1024×~200 CT at ~0.6×0.6×2.5 mm, real-data profile,
~20 s each to make), cached as .mha under ``--out``/cases. Each case is registered as
preprocessing does it (:func:`hanseg.checks.sanitize_mr`, then the head box of
:func:`hanseg.preprocess.crop_boxes`) with both schedules of :mod:`hanseg.registration`:
``previous`` (:data:`~hanseg.registration.PREVIOUS_SCHEDULE`) and ``current`` (the default
:class:`~hanseg.registration.RegistrationSettings`), ``--repeat`` times, alternating which goes
first, so that both see the same machine load.

Per case and schedule: wall seconds (median of the repeats) and process CPU seconds (median;
ITK's threads add up), target registration error (mm: the largest distance between where the
found and the true transform send 400 OAR voxels), rotation error (degrees), outline Dice (the
sanity check's) and whether the check passed. Writes ``results.json`` and ``results.md`` and
prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import SimpleITK as sitk

from hanseg.checks import sanitize_mr
from hanseg.plans import DEFAULT_BODY_THRESHOLD_HU
from hanseg.preprocess import crop_boxes
from hanseg.registration import PREVIOUS_SCHEDULE, RegistrationSettings, register_mr_to_ct
from phantoms import case_seed, make_case

log = logging.getLogger("benchmarks.registration")
ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = {"previous": PREVIOUS_SCHEDULE, "current": RegistrationSettings()}
CROP_MARGIN_MM = 10.0  # the plans' default crop margin, as preprocessing uses it


@dataclass
class Case:
    name: str
    ct: sitk.Image
    mr: sitk.Image
    labels: sitk.Image
    truth: sitk.Euler3DTransform


class Run(TypedDict):
    """One schedule on one case: medians over the repeats and the last repeat's accuracy."""

    case: str
    ct_size: str
    schedule: str
    seconds: float
    cpu_seconds: float
    seconds_all: list[float]
    tre_mm: float
    rotation_error_deg: float
    outline_dice: float
    ok: bool


def load_case(folder: Path, size: str, seed: int) -> Case:
    """The phantom ``(seed, size)``, made and cached under ``folder`` on first use."""
    out = folder / f"{size}_{seed}"
    files = {name: out / f"{name}.mha" for name in ("ct", "mr", "labels")}
    if not (out / "ct_to_mr.tfm").is_file():
        log.info("making the %s phantom %d ...", size, seed)
        made = make_case(seed, size)
        out.mkdir(parents=True, exist_ok=True)
        for name, image in (("ct", made.ct), ("mr", made.mr), ("labels", made.labels)):
            sitk.WriteImage(image, str(files[name]), True)
        sitk.WriteTransform(made.ct_to_mr, str(out / "ct_to_mr.tfm"))
    images = {name: sitk.ReadImage(str(path)) for name, path in files.items()}
    truth = sitk.Euler3DTransform(sitk.ReadTransform(str(out / "ct_to_mr.tfm")))
    return Case(f"{size}_{seed}", images["ct"], images["mr"], images["labels"], truth)


def target_registration_error(
    found: sitk.Transform, truth: sitk.Transform, ct: sitk.Image, labels: sitk.Image
) -> float:
    """Largest distance (mm) between where the two transforms send 400 voxels spread over the
    head (the OAR voxels): the error that matters for the MR channel (the registration tests
    hold it under 2 mm)."""
    zyx = np.argwhere(sitk.GetArrayViewFromImage(labels) > 0)
    pick = zyx[np.linspace(0, len(zyx) - 1, 400).astype(int)]
    points = [ct.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in pick]
    return max(math.dist(found.TransformPoint(p), truth.TransformPoint(p)) for p in points)


def rotation_between(a: sitk.Euler3DTransform, b: sitk.Euler3DTransform) -> float:
    """The angle (degrees) of the rotation that takes ``b``'s to ``a``'s."""
    ra = np.array(a.GetMatrix()).reshape(3, 3)
    rb = np.array(b.GetMatrix()).reshape(3, 3)
    return math.degrees(math.acos(float(np.clip((np.trace(ra @ rb.T) - 1) / 2, -1, 1))))


def benchmark_case(case: Case, repeat: int) -> list[Run]:
    """Both schedules on ``case``, ``repeat`` times each, interleaved."""
    mr, _ = sanitize_mr(case.mr)
    _, head = crop_boxes(case.ct, mr, DEFAULT_BODY_THRESHOLD_HU, CROP_MARGIN_MM, None)
    wall: dict[str, list[float]] = {name: [] for name in SCHEDULES}
    cpu: dict[str, list[float]] = {name: [] for name in SCHEDULES}
    results = {}
    for r in range(repeat):
        order = list(SCHEDULES) if r % 2 == 0 else list(reversed(SCHEDULES))
        for name in order:
            t, c = time.perf_counter(), time.process_time()
            results[name] = register_mr_to_ct(case.ct, mr, head, DEFAULT_BODY_THRESHOLD_HU, SCHEDULES[name])
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    runs = []
    for name, result in results.items():
        run: Run = {
            "case": case.name,
            "ct_size": "×".join(map(str, case.ct.GetSize())),
            "schedule": name,
            "seconds": round(statistics.median(wall[name]), 3),
            "cpu_seconds": round(statistics.median(cpu[name]), 3),
            "seconds_all": [round(s, 3) for s in wall[name]],
            "tre_mm": round(target_registration_error(result.transform, case.truth, case.ct, case.labels), 3),
            "rotation_error_deg": round(rotation_between(result.transform, case.truth), 3),
            "outline_dice": round(result.outline_dice, 4),
            "ok": result.ok,
        }
        log.info("%s", run)
        runs.append(run)
    return runs


def table(runs: list[Run]) -> str:
    rows = [
        "| case | CT voxels | schedule | seconds (median) | CPU seconds | TRE (mm) | rotation error (°) "
        "| outline Dice | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        rows.append(
            f"| {r['case']} | {r['ct_size']} | {r['schedule']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} "
            f"| {r['tre_mm']:.2f} | {r['rotation_error_deg']:.2f} | {r['outline_dice']:.3f} | {r['ok']} |"
        )
    return "\n".join(rows) + "\n"


def summary(runs: list[Run]) -> str:
    """Per size: total seconds of each schedule, the speed-up and the worst TRE."""
    lines = []
    for size in sorted({r["case"].split("_")[0] for r in runs}):
        of = {
            name: [r for r in runs if r["schedule"] == name and r["case"].startswith(size + "_")] for name in SCHEDULES
        }
        seconds = {name: sum(r["seconds"] for r in rs) for name, rs in of.items()}
        worst = {name: max(r["tre_mm"] for r in rs) for name, rs in of.items()}
        lines.append(
            f"{size}: {len(of['current'])} cases, previous {seconds['previous']:.2f} s, current "
            f"{seconds['current']:.2f} s (×{seconds['previous'] / max(seconds['current'], 1e-9):.1f} faster); "
            f"worst TRE previous {worst['previous']:.2f} mm, current {worst['current']:.2f} mm; "
            f"all ok: previous {all(r['ok'] for r in of['previous'])}, current {all(r['ok'] for r in of['current'])}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/registration")
    ap.add_argument("--sizes", nargs="+", default=["small", "full"], choices=["small", "full"])
    ap.add_argument("--cases", type=int, default=5, help="small phantoms")
    ap.add_argument("--full-cases", type=int, default=1, help="full-size phantoms (~20 s each to make, cached)")
    ap.add_argument("--seed", type=int, default=9100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {"small": args.cases, "full": args.full_cases}
    runs: list[Run] = []
    meta = {
        **{k: str(v) for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "itk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
        "schedules": {name: asdict(settings) for name, settings in SCHEDULES.items()},
    }
    for size in args.sizes:
        for i in range(counts[size]):
            case = load_case(args.out / "cases", size, case_seed(args.seed, i))
            runs += benchmark_case(case, args.repeat)
            (args.out / "results.json").write_text(json.dumps({"settings": meta, "runs": runs}, indent=1) + "\n")
    (args.out / "results.md").write_text(table(runs) + "\n" + summary(runs))
    print(table(runs))
    print(summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
