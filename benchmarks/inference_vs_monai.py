"""Inference benchmark: our ``process.py`` against a MONAI bundle-style baseline, same run.

    python -m benchmarks.inference_vs_monai --model model --out bench/inference \
        [--sizes small 512 1024] [--seed 4242] [--variants ours monai monai_labels] \
        [--precision auto|fp32|bf16] [--repeat N]

Cases (phantoms, never used in training): ``test`` (the shipped sample case in ``test/``, as
``test.sh`` and the demo run it), ``small`` (the generator's small grid), ``1024``
(a full-size HaN-Seg-like CT, 1024×1024×~200 at ~0.6×0.6×2 mm, MR on its own grid) and ``512``
(the same case resampled to 512×512 in-plane). Each variant runs in its own process:

* ``ours``: ``process.py`` (crop to the body, per-class running argmax back to the CT grid) at
  its default settings and ``--precision`` (default auto), mirroring off as the baseline has none;
* ``ours_fp32``: the same with ``--precision fp32`` (what ``auto`` gains);
* ``ours_before``: ``process.py`` of another checkout (``--before DIR``, e.g. a ``git worktree``
  of an earlier commit) with the same options but ``--precision``, which it may not have;
* ``monai``: :mod:`benchmarks.monai_baseline` with ``Invertd`` on all 31 probability channels;
* ``monai_labels``: the same with argmax before ``Invertd`` (nearest-neighbour inversion).

Per run: wall seconds, peak RSS of the process (``wait4``; each variant is one process), exit
status and the error's last line if it failed; for the baselines, per-OAR Dice of their label
map against ours; for every variant, mean Dice against the phantom's ground truth (brought onto
the case's CT grid by nearest neighbour for the 512² case), which says whose differences are
errors. For ours, the seconds of each step as its log's summary line gives them
(:mod:`hanseg.timing`), the network's and the rest, and what no step covers (the interpreter's
exit). A variant may get ``--memory-cap-gib`` of address space so that a pipeline that
cannot fit fails with MemoryError instead of taking the machine down. Writes
``results.json`` and ``results.md`` and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TypedDict

import numpy as np
import SimpleITK as sitk

from hanseg.compare import per_oar_dice
from hanseg.precision import PRECISIONS
from hanseg.timing import parse_summary
from phantoms import PhantomCase, make_case, write_gc

log = logging.getLogger("benchmarks.inference_vs_monai")
ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("ours", "ours_fp32", "ours_before", "monai", "monai_labels")
OURS = ("ours", "ours_fp32", "ours_before")


def in_plane_resampled(image: sitk.Image, size_xy: int, interpolator: int, default: float) -> sitk.Image:
    """``image`` on a grid with ``size_xy`` voxels in-plane over the same field of view."""
    factor = image.GetSize()[0] / size_xy
    ref = sitk.Image([size_xy, size_xy, image.GetSize()[2]], image.GetPixelID())
    ref.SetSpacing((image.GetSpacing()[0] * factor, image.GetSpacing()[1] * factor, image.GetSpacing()[2]))
    ref.SetDirection(image.GetDirection())
    half = (factor - 1) / 2  # keep the outer edges of the field of view where they were
    ref.SetOrigin(image.TransformContinuousIndexToPhysicalPoint((half, half, 0.0)))
    return sitk.Resample(image, ref, sitk.Transform(), interpolator, default, image.GetPixelID())


def make_cases(folder: Path, sizes: list[str], seed: int) -> dict[str, Path]:
    cases = {}
    full: PhantomCase | None = None  # the 512 and 1024 cases' phantom, made when first needed
    for size in sizes:
        out = folder / f"case_{size}"
        if size == "test" and not (out / "input").exists():  # the shipped sample case, as it is
            out.mkdir(parents=True, exist_ok=True)
            (out / "input").symlink_to(ROOT / "test")
            (out / "ground_truth").symlink_to(ROOT / "test/ground_truth")
        if not (out / "input/images/ct").is_dir():
            if size == "small":
                case = make_case(seed, size="small")
            else:
                if full is None:
                    full = make_case(seed, size="full")
                case = full
            write_gc(case, out)
            if size == "512":
                ct = in_plane_resampled(case.ct, 512, sitk.sitkLinear, -1000.0)
                sitk.WriteImage(ct, str(out / "input/images/ct/case_01_CT.mha"), True)
        ct = sitk.ReadImage(str(out / "input/images/ct/case_01_CT.mha"))
        log.info(
            "case %s: CT %s voxels (x,y,z) at %s mm", size, ct.GetSize(), tuple(round(s, 3) for s in ct.GetSpacing())
        )
        cases[size] = out
    return cases


def command(
    variant: str, case: Path, out: Path, model: Path, precision: str = "auto", before: Path | None = None
) -> list[str]:
    if variant in OURS:
        precision_args = (
            [] if variant == "ours_before" else ["--precision", "fp32" if variant == "ours_fp32" else precision]
        )
        return [
            sys.executable,
            str((before if variant == "ours_before" and before else ROOT) / "process.py"),
            "--input",
            str(case / "input"),
            "--output",
            str(out),
            "--model",
            str(model),
            "--device",
            "cpu",
            "--no-mirroring",  # the same passes as the baseline
            *precision_args,
        ]
    invert = "probabilities" if variant == "monai" else "labels"
    return [
        sys.executable,
        "-m",
        "benchmarks.monai_baseline",
        "--input",
        str(case / "input"),
        "--output",
        str(out),
        "--model",
        str(model),
        "--invert",
        invert,
    ]


class Agreement(TypedDict):
    """Per-OAR Dice of two label maps (:func:`agreement`); the means None where no OAR is in both."""

    mean_dice: float | None
    min_dice: float | None
    per_oar: dict[str, float]


class _Measured(TypedDict):
    seconds: float
    peak_rss_gib: float
    exit_code: int


class ProcessRun(_Measured, total=False):
    """What :func:`run_one` measures of one process."""

    error: str  # the last line of its log that says Error, when it failed
    seconds_all: list[float]  # every run's seconds, with --repeat (the figures are the median run's)


class StepFields(TypedDict, total=False):
    """Ours: where its seconds went (:func:`step_fields`)."""

    steps: dict[str, float]  # seconds per step, from the log's summary line
    network_seconds: float  # inside the network's forward calls
    other_seconds: float  # the wall time less the network's
    unaccounted_seconds: float  # the wall time less every step (the interpreter's exit)


class RunResult(ProcessRun, StepFields, total=False):
    """One variant on one case: :func:`run_one`'s keys, then what ``main`` adds."""

    ct_size: str  # x×y×z voxels
    agreement: Agreement  # with ours (the other variants)
    truth_dice: float | None  # mean Dice against the phantom's ground truth, when it ran


class Results(TypedDict):
    """results.json: the settings, then each case's runs by variant."""

    settings: dict[str, str | int | None]
    cases: dict[str, dict[str, RunResult]]


def run_one(cmd: list[str], log_path: Path, cap_bytes: int | None) -> ProcessRun:
    """Run ``cmd`` as its own process; wall time and peak RSS from wait4."""

    def limit() -> None:
        if cap_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    start = time.perf_counter()
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=limit)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    result: ProcessRun = {
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "exit_code": code,
    }
    if code != 0:
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        result["error"] = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
    return result


def run_median(cmd: list[str], out: Path, log_path: Path, cap_bytes: int | None, repeat: int) -> ProcessRun:
    """``cmd`` run ``repeat`` times into a fresh ``out``; the run of median seconds (the
    lower middle for an even count), its log left at ``log_path``, with every run's seconds."""
    runs: list[tuple[ProcessRun, str]] = []
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        run = run_one(cmd, log_path, cap_bytes)
        runs.append((run, log_path.read_text()))
    ordered = sorted(runs, key=lambda r: r[0]["seconds"])
    median, text = ordered[(len(ordered) - 1) // 2]
    log_path.write_text(text)
    if repeat > 1:
        median = {**median, "seconds_all": [r["seconds"] for r, _ in runs]}
    return median


def agreement(first: Path, second: Path) -> Agreement:
    """Per-OAR Dice of two label maps, on the first one's grid (the second is brought there by
    nearest neighbour when its grid differs: the 1024² truth for the 512² case)."""
    a, b = sitk.ReadImage(str(first)), sitk.ReadImage(str(second))
    if a.GetSize() != b.GetSize() or not np.allclose(a.GetSpacing(), b.GetSpacing()):
        b = sitk.Resample(b, a, sitk.Transform(), sitk.sitkNearestNeighbor, 0, b.GetPixelID())
    scores = per_oar_dice(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))  # copies: views die with images
    return {
        "mean_dice": round(float(np.mean(list(scores.values()))), 4) if scores else None,
        "min_dice": round(min(scores.values()), 4) if scores else None,
        "per_oar": {k: round(v, 4) for k, v in scores.items()},
    }


def step_fields(log_text: str, seconds: float) -> StepFields:
    """Ours: the steps of its log's summary line, the network's seconds, the rest of the wall
    time, and what no step covers; nothing when the log has no summary (a failed start)."""
    steps = parse_summary(log_text)
    if steps is None:
        return {}
    network = steps.get("network", 0.0)
    return {
        "steps": steps,
        "network_seconds": round(network, 1),
        "other_seconds": round(seconds - network, 1),
        "unaccounted_seconds": round(seconds - sum(steps.values()), 1),
    }


def steps_table(results: Results) -> str:
    """Where ours spent its seconds, one column per case and variant of ours."""
    runs = {f"{size} {v}": r for size, by in results["cases"].items() for v, r in by.items() if "steps" in r}
    if not runs:
        return ""
    names = list(dict.fromkeys(name for r in runs.values() for name in r["steps"]))
    rows = ["| step | " + " | ".join(runs) + " |", "| --- |" + " ---: |" * len(runs)]
    for name in names:
        rows.append(f"| {name} | " + " | ".join(f"{r['steps'].get(name, 0.0):.1f}" for r in runs.values()) + " |")
    for label, key in (
        ("not in any step (exit)", "unaccounted_seconds"),
        ("**all but the network**", "other_seconds"),
    ):
        rows.append(f"| {label} | " + " | ".join(f"{r[key]:.1f}" for r in runs.values()) + " |")  # type: ignore[literal-required]
    rows.append("| **wall** | " + " | ".join(f"{r['seconds']:.1f}" for r in runs.values()) + " |")
    return "\n".join(rows) + "\n"


def table(results: Results) -> str:
    rows = [
        "| case | variant | seconds | peak RSS (GiB) | exit | agreement with ours: mean Dice (min) "
        "| mean Dice vs truth | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, runs in results["cases"].items():
        for variant, r in runs.items():
            agree = r.get("agreement")
            agree_txt = (
                f"{agree['mean_dice']:.3f} ({agree['min_dice']:.3f})"
                if agree and agree["mean_dice"] is not None
                else ""
            )
            rows.append(
                f"| {size} ({r['ct_size']}) | {variant} | {r['seconds']} | {r['peak_rss_gib']} | {r['exit_code']} | "
                f"{agree_txt} | {r.get('truth_dice', '')} | {r.get('error', '')[:120]} |"
            )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/inference")
    ap.add_argument("--sizes", nargs="+", default=["small", "512", "1024"], choices=["test", "small", "512", "1024"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--before", type=Path, help="ours_before: the checkout whose process.py it runs")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per variant; the figures are the median run's (default 1)"
    )
    ap.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="ours: process.py --precision (default auto)"
    )
    ap.add_argument(
        "--memory-cap-gib",
        type=float,
        default=20.0,
        help="address-space cap per baseline run, so a run that cannot fit fails cleanly",
    )
    args = ap.parse_args(argv)
    if "ours_before" in args.variants and args.before is None:
        ap.error("ours_before needs --before DIR (a checkout of the earlier code, e.g. git worktree add DIR COMMIT)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    cases = make_cases(args.out / "cases", args.sizes, args.seed)
    results: Results = {
        "settings": {
            **{k: str(v) for k, v in vars(args).items()},
            "cpus": os.cpu_count(),
            "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        },
        "cases": {},
    }
    for size, case in cases.items():
        runs: dict[str, RunResult] = {}
        results["cases"][size] = runs
        ct_size = "×".join(map(str, sitk.ReadImage(str(case / "input/images/ct/case_01_CT.mha")).GetSize()))
        for variant in args.variants:
            out = args.out / "outputs" / size / variant
            cap = int(args.memory_cap_gib * 2**30) if variant not in OURS else None
            log_path = args.out / f"{size}_{variant}.log"
            log.info("%s / %s ...", size, variant)
            r: RunResult = {
                **run_median(
                    command(variant, case, out, args.model, args.precision, args.before),
                    out,
                    log_path,
                    cap,
                    args.repeat,
                ),
                "ct_size": ct_size,
            }
            if variant in OURS:
                r.update(step_fields(log_path.read_text(), r["seconds"]))
            label_map = out / "images/head_neck_oar/case_01_seg.mha"
            if variant != "ours" and r["exit_code"] == 0 and (args.out / "outputs" / size / "ours").is_dir():
                r["agreement"] = agreement(
                    args.out / "outputs" / size / "ours/images/head_neck_oar/case_01_seg.mha", label_map
                )
            if r["exit_code"] == 0:
                r["truth_dice"] = agreement(label_map, case / "ground_truth/case_01_seg.mha")["mean_dice"]
            log.info("%s / %s: %s", size, variant, {k: v for k, v in r.items() if k not in ("agreement", "steps")})
            runs[variant] = r
            (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(table(results) + "\n" + steps_table(results))
    print(table(results))
    print(steps_table(results))
    for size, runs in results["cases"].items():
        ours = runs.get("ours")
        for variant in ("ours_before", "ours_fp32", "monai", "monai_labels"):
            other = runs.get(variant)
            if ours and other and other["exit_code"] == 0:
                print(
                    f"{size}: {variant} / ours: time ×{other['seconds'] / ours['seconds']:.2f}, "
                    f"peak RSS ×{other['peak_rss_gib'] / ours['peak_rss_gib']:.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
