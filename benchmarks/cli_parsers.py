"""The command lines of the heavy benchmarks (``benchmarks.few_labels``, ``benchmarks.recipes``,
``benchmarks.runtimes``, ``benchmarks.dicom_path``, ``benchmarks.network_cost``), built without importing torch, MONAI or training.train, so that their
``--help`` and usage errors answer at once: each module parses with these before its heavy
imports when run as a script (the pattern of training.config's ``train_parser``).

The names a parser offers as choices live here; the modules that define what the names stand
for check at import that they offer the same ones.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: benchmarks.few_labels' arms, in the order they are run and tabled
ARMS = ("scratch", "ssl_full", "ssl_frozen", "fcn2p5d", "default")
#: benchmarks.recipes' RECIPES, in their order
RECIPE_NAMES = ("default", "spleen_finetune", "res3dunet_dynamic", "tvmf", "dynunet_dynamic")
#: benchmarks.runtimes' RUNTIMES, in their order
RUNTIME_NAMES = (
    "torch_fp32",
    "torch_bf16",
    "torch_compile_fp32",
    "torch_compile_bf16",
    "openvino_fp32",
    "openvino_bf16",
    "onnxruntime_fp32",
)

#: benchmarks.network_cost's models, in their order
NETWORK_COST_MODELS = ("3d_shipped", "3d_untrained", "2p5d_small", "2p5d_resnet50")


def same_names(what: str, defined: Iterable[str], offered: tuple[str, ...]) -> None:
    """Raise unless ``defined`` (a dict's keys, in order) are the names a parser ``offered``."""
    if tuple(defined) != offered:
        raise RuntimeError(f"{what} {tuple(defined)} differ from benchmarks.cli_parsers' {offered}")


def few_labels_parser() -> argparse.ArgumentParser:
    """``python -m benchmarks.few_labels``'s command line."""
    ap = argparse.ArgumentParser(description="Few-label study on phantoms (see the module doc).")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "few_labels")
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 6, 12], help="labelled training cases per run")
    ap.add_argument(
        "--pool",
        type=int,
        default=12,
        help="labelled pool: each run trains on its first N cases "
        "(fixed apart from --sizes, so that a run of some sizes uses the same cases and validation set)",
    )
    ap.add_argument("--unlabelled", type=int, default=30)
    ap.add_argument("--val", type=int, default=3, help="validation phantoms (best-epoch choice)")
    ap.add_argument("--test", type=int, default=3, help="unseen test phantoms (the scores)")
    ap.add_argument("--size", choices=("small", "full"), default="small", help="phantom grid size")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--steps", type=int, default=200, help="optimiser steps of every arm")
    ap.add_argument("--iters", type=int, default=50, help="steps per epoch")
    ap.add_argument("--val-every", type=int, default=2, help="validate every N epochs (and after the last)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--loss",
        default="dynamic",
        help="training.train --loss of every arm (dynamic: generalised Dice + "
        "weighted CE -> focal, the loss that learnt fastest in benchmarks.recipes)",
    )
    ap.add_argument("--pretrain-steps", type=int, default=500)
    ap.add_argument("--bundle-steps", type=int, default=200, help="steps of the spleen-bundle stand-in")
    ap.add_argument("--preset", default="tiny", choices=("tiny", "small", "default"), help="the 3D network's")
    ap.add_argument("--fcn-preset", default="small", choices=("tiny", "small", "default"), help="the 2.5D network's")
    ap.add_argument("--spacing", type=float, nargs=3, default=[3.0, 3.0, 4.0], metavar=("X", "Y", "Z"))
    ap.add_argument("--patch", type=int, nargs=3, default=[32, 48, 48], metavar=("Z", "Y", "X"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="processes writing phantoms")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--tables-only",
        action="store_true",
        help="only write results.md/json again from the runs already scored in --out",
    )
    return ap


def recipes_parser() -> argparse.ArgumentParser:
    """``python -m benchmarks.recipes``'s command line."""
    ap = argparse.ArgumentParser(description="Train the project's recipes on phantoms and compare them.")
    ap.add_argument("--data", type=Path, required=True, help="raw phantom dataset (python -m phantoms --layout raw)")
    ap.add_argument("--out", type=Path, default=Path("bench/recipes"))
    ap.add_argument("--recipes", nargs="+", choices=sorted(RECIPE_NAMES), default=list(RECIPE_NAMES))
    ap.add_argument("--preset", default="small", choices=("tiny", "small", "default"))
    ap.add_argument("--spacing", type=float, nargs=3, help="target spacing x y z in mm (default: planned)")
    ap.add_argument("--patch", type=int, nargs=3, help="patch z y x in voxels (default: the preset's)")
    ap.add_argument("--folds", type=int, default=6, help="folds of splits.json (fold 0 is used)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--val-every", type=int, default=4)
    ap.add_argument("--bundle-steps", type=int, default=300, help="pretraining steps of the bundle stand-in")
    ap.add_argument("--device", default="cpu")
    return ap


def runtimes_parser() -> argparse.ArgumentParser:
    """``python -m benchmarks.runtimes``'s command line (its description: the module doc's first line)."""
    ap = argparse.ArgumentParser(
        description="Other runtimes for the shipped network, measured: adopted only if they win."
    )
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--case", type=Path, default=ROOT / "test", help="a folder with images/ct and images/t1-mri")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/runtimes")
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 2], help="windows per call to time")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7, help="timed calls; the median is reported (at least 5)")
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIME_NAMES), choices=list(RUNTIME_NAMES))
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--skip-agreement", action="store_true", help="no whole-case label agreement")
    ap.add_argument("--max-load", type=float, default=0.8, help="wait until the 1-minute load is below this")
    ap.add_argument("--max-wait-s", type=float, default=600.0)
    return ap


def runtimes_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``benchmarks.runtimes``' options parsed and checked (a usage error exits with 2)."""
    ap = runtimes_parser()
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be at least 5")
    return args


def dicom_path_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.dicom_path", description="The DICOM path against the .mha path on the same images."
    )
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "dicom_path")
    ap.add_argument("--tall", action="store_true", help="the real-size phantom down to the thorax, not test/")
    ap.add_argument(
        "--stand-in",
        action="store_true",
        help="no network: both layouts are given the ground-truth label map, so the runs measure "
        "reading and writing alone (the real RTSTRUCT and SEG building); results_stand_in.*",
    )
    ap.add_argument("--run-stand-in", nargs=3, type=Path, metavar=("INPUT", "OUTPUT", "TRUTH"), help=argparse.SUPPRESS)
    return ap


def network_cost_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.network_cost", description="2.5D against 3D: seconds and peak memory per case."
    )
    ap.add_argument("--model", type=Path, default=ROOT / "model", help="the shipped 3D model (the baseline)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "network_cost")
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--seed", type=int, default=9100)
    ap.add_argument("--models", nargs="+", choices=NETWORK_COST_MODELS, default=list(NETWORK_COST_MODELS))
    return ap
