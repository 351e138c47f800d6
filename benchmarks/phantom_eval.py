"""Score a model folder on unseen phantom cases, on their own grid and re-gridded.

    python -m benchmarks.phantom_eval --model model --cases 5 --seed 9000 --size small \
        --variants original flipped oblique respaced --precision auto --out bench/phantom_eval

For each variant the cases are written in the container's input layout (CT re-gridded,
ground truth re-gridded per label with linear interpolation and a 0.5 threshold, MR untouched;
the last column scores against a nearest-neighbour re-gridded truth instead), ``process.py`` runs on them
as the container would (``--precision`` passed on: ``auto`` is the container's default), and ``evaluation.metrics`` scores the outputs. Writes per variant the
evaluation folder, plus ``summary.json`` and ``summary.md`` (mean Dice, mean HD95, lowest
OAR, seconds per case, and the difference to the original grid). With ``--record`` the scores
go into the model's ``metadata.json`` (``scores.unseen_phantoms``, with this command) and its
model card is rewritten: that is where README and the card quote them from.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import SimpleITK as sitk

from evaluation.metrics import evaluate, write_outputs
from hanseg.precision import PRECISIONS
from phantoms import (
    GRID_VARIANTS,
    PhantomCase,
    case_seed,
    make_case,
    regrid,
    regrid_labels,
    write_gc,
)
from training.export import card_only
from training.model_card import read_metadata
from training.progress import each

log = logging.getLogger("benchmarks.phantom_eval")
ROOT = Path(__file__).resolve().parent.parent


def write_variant(case: PhantomCase, variant: str, out: Path) -> None:
    """The case on the variant's grid; its truth in ``ground_truth`` (per-label linear, see
    :func:`phantoms.regrid_labels`) and, for comparison, ``ground_truth_nearest``."""
    write_gc(case, out)
    nearest = out / "ground_truth_nearest" / f"{case.case_id}_seg.mha"
    nearest.parent.mkdir(parents=True, exist_ok=True)
    if variant == "original":
        sitk.WriteImage(case.labels, str(nearest), True)
        return
    ct_path = out / "input/images/ct" / f"{case.case_id}_CT.mha"
    gt_path = out / "ground_truth" / f"{case.case_id}_seg.mha"
    sitk.WriteImage(regrid(case.ct, variant), str(ct_path), True)
    sitk.WriteImage(regrid_labels(case.labels, variant), str(gt_path), True)
    sitk.WriteImage(regrid(case.labels, variant, sitk.sitkNearestNeighbor, 0), str(nearest), True)


def run_process(inputs: Path, output: Path, model: Path, device: str, precision: str = "auto") -> float:
    """``process.py`` over every case of ``inputs`` in one process, like the container; returns
    wall seconds. Its log (which precision it resolved, and why) goes to ``output/process.log``."""
    output.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(ROOT / "process.py"),
        "--input",
        str(inputs),
        "--output",
        str(output),
        "--model",
        str(model),
        "--device",
        device,
        "--precision",
        precision,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (output / "process.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"process.py --precision {precision} failed on {inputs}:\n{done.stderr[-3000:]}")
    return seconds


def run_variant(folder: Path, model: Path, device: str, precision: str = "auto") -> float:
    """:func:`run_process` on a variant's folder (``input`` → ``output``)."""
    return run_process(folder / "input", folder / "output", model, device, precision)


def table(summary: dict) -> str:
    base = summary["original"]["mean_dice"] if "original" in summary else None
    rows = [
        (
            "| grid | mean Dice | Δ vs original | mean HD95 (mm) | lowest OAR Dice | s/case "
            "| mean Dice, nearest-neighbour truth |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variant, s in summary.items():
        delta = f"{s['mean_dice'] - base:+.3f}" if base is not None else ""
        low = s["min_oar_dice"]
        rows.append(
            f"| {variant} | {s['mean_dice']:.3f} | {delta} | {s['mean_hd95']:.2f} | "
            f"{low[0]:.3f} ({low[1]}) | {s['seconds_per_case']:.1f} | {s['mean_dice_nearest_truth']:.3f} |"
        )
    return "\n".join(rows)


def command(args: argparse.Namespace) -> str:
    """The command that reproduces these scores (paths as given)."""
    return (
        f"python -m benchmarks.phantom_eval --model {args.model} --cases {args.cases} --seed {args.seed} "
        f"--size {args.size} --variants {' '.join(args.variants)} --precision {args.precision}"
    )


def record(args: argparse.Namespace, summary: dict) -> None:
    """The scores into ``metadata.json`` (``scores.unseen_phantoms``), then the model card rewritten."""
    meta = read_metadata(args.model)
    grids = {
        v: {
            "mean_dice": s["mean_dice"],
            "mean_hd95_mm": s["mean_hd95"],
            "lowest_oar": list(s["min_oar_dice"]),
            "seconds_per_case": s["seconds_per_case"],
            "mean_dice_nearest_truth": s["mean_dice_nearest_truth"],
        }
        for v, s in summary.items()
    }
    first = next(iter(summary.values()))
    meta.setdefault("scores", {})["unseen_phantoms"] = {
        "command": command(args),
        "settings": {"cases": args.cases, "seed": args.seed, "size": args.size, "precision": args.precision},
        "grids": grids,
        "per_oar_dice": {oar: round(v["dice"], 4) for oar, v in first["per_oar"].items()},
    }
    (args.model / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    card_only(args.model)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Score a model on unseen phantoms and re-gridded copies.")
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--cases", type=int, default=5)
    ap.add_argument("--seed", type=int, default=9000, help="never one used for training data")
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["original", "flipped", "oblique", "respaced"],
        choices=["original", *GRID_VARIANTS],
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="process.py's --precision (auto: bfloat16 on a CPU with AMX/AVX512-BF16, float16 on CUDA, else float32)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "phantom_eval")
    ap.add_argument(
        "--record",
        action="store_true",
        help="store the scores in MODEL/metadata.json and rewrite its model card (needs 'original' first)",
    )
    args = ap.parse_args(argv)
    if args.record and args.variants[0] != "original":
        ap.error("--record needs 'original' as the first variant: it is the headline grid")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # progress per case (a bar on a terminal, a line per case in logs): phantoms take seconds each
    names = [f"case_{i + 1:02d}" for i in range(args.cases)]
    cases = [
        make_case(case_seed(args.seed, i), args.size, name)
        for i, name in each(enumerate(names), len(names), "making phantoms", log, name=lambda item: item[1])
    ]
    summary = {}
    for variant in args.variants:
        folder = args.out / variant
        for case in each(cases, len(cases), f"writing {variant}", log, name=lambda c: c.case_id):
            write_variant(case, variant, folder)
        seconds = run_variant(folder, args.model, args.device, args.precision)
        pred = folder / "output/images/head_neck_oar"
        s = write_outputs(evaluate(pred, folder / "ground_truth"), folder / "eval")
        nearest = write_outputs(evaluate(pred, folder / "ground_truth_nearest"), folder / "eval_nearest")
        summary[variant] = {
            **s,
            "seconds_per_case": seconds / len(cases),
            "mean_dice_nearest_truth": nearest["mean_dice"],
        }
        log.info("%s: mean Dice %.3f, mean HD95 %.2f mm", variant, s["mean_dice"], s["mean_hd95"])
    meta = {
        "model": str(args.model),
        "cases": args.cases,
        "seed": args.seed,
        "size": args.size,
        "precision": args.precision,
    }
    (args.out / "summary.json").write_text(json.dumps({"settings": meta, "variants": summary}, indent=1) + "\n")
    (args.out / "summary.md").write_text(table(summary) + "\n")
    print(table(summary))
    if args.record:
        record(args, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
