"""The few-label study: which recipe to use with 3, 6 or 12 labelled cases, measured on phantoms.

    python -m benchmarks.few_labels --out bench/few_labels [--sizes 3 6 12] [--steps 200] \
        [--pretrain-steps 500] [--arms scratch ssl_full ssl_frozen fcn2p5d default]

Data, fixed by seeds and the same for every arm: a labelled pool (the first 3, 6 or 12 cases
train), 30 unlabelled cases (their masks are never read, except by the ``default`` arm's
bundle stand-in, see below), validation phantoms (best-epoch choice) and unseen test phantoms
(the scores). One plan (spacing, patch, normalisation) from the labelled pool serves all arms.

Arms, each trained for the same number of optimiser steps (``--steps``) with the same loss
(``--loss``, default ``dynamic``: the one that learnt fastest in ``benchmarks.recipes``),
optimiser (AdamW), learning rate and seed; only the network, its initialisation
and what is frozen differ:

- ``scratch``: the residual 3D U-Net (the spleen bundle's, the shipped model's network) from random weights;
- ``ssl_full``: the same network from ``training.pretrain`` on the unlabelled cases (inpainting,
  rotation, contrastive), every layer fine-tuned;
- ``ssl_frozen``: the same, encoder frozen;
- ``fcn2p5d``: the 2.5D FCN-ResNet (``--fcn-preset``) from random weights;
- ``default``: the shipped model's recipe: the 3D U-Net from a spleen-bundle stand-in,
  encoder frozen. Nothing is downloaded, so the stand-in is the bundle's network trained here
  on "any OAR vs background" of the unlabelled cases (``benchmarks.recipes``): it is the only
  arm that sees labels beyond the labelled pool (binary ones, as the real bundle saw its
  spleens), so it is a reference, not an equal competitor.

Every trained model is exported and run on the test phantoms by the Segmenter (the code
``process.py`` runs; no mirroring, no time budget, the same for all), and scored by
``evaluation.metrics``. ``results.md`` and ``results.json`` hold per-OAR Dice and HD95, the
means, the wall-clock minutes of training and pretraining, and each arm against ``scratch``
at the same size: the mean Dice difference, the OARs better and worse, and a two-sided
Wilcoxon signed-rank test paired by OAR (OARs where both arms score the same are dropped),
Holm-adjusted over every comparison in the table. The OAR is the unit: with a few test
phantoms the spread between patients is not in the p-values. Re-running continues where it
stopped (finished parts are kept, training resumes from its checkpoints).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

if __name__ == "__main__":
    # --help and usage errors answer before torch, MONAI and training.train are imported (~5 s):
    # the command line is built by benchmarks.cli_parsers, which imports none of them
    from benchmarks.cli_parsers import few_labels_parser

    few_labels_parser().parse_args()

import numpy as np
from scipy.stats import wilcoxon

from benchmarks.cli_parsers import ARMS, few_labels_parser, same_names
from benchmarks.recipes import make_bundle_checkpoint, run
from hanseg.inference import Segmenter
from hanseg.io import read_image, write_label_map
from hanseg.labels import OAR_NAMES
from training.progress import each

log = logging.getLogger("benchmarks.few_labels")
#: the arm every other one is compared with, at each size
BASELINE = "scratch"
#: fewer OARs with a difference than this give no p-value (the exact test cannot reach 0.05 below 6)
MIN_PAIRS = 6
#: Base seeds of the phantom sets (never those of the shipped model's data, 1000, or of the
#: unseen-phantom scores, 9000).
SEEDS = {"labelled": 3100, "unlabelled": 3200, "val": 3300, "test": 3400}


@dataclass(frozen=True)
class Arm:
    network: str  # training.plan --network
    init: str | None = None  # "ssl" | "bundle" | None
    freeze: str = "none"
    description: str = ""


ARM_RECIPES = {
    "scratch": Arm("resunet", description="3D residual U-Net, random initialisation"),
    "ssl_full": Arm(
        "resunet", "ssl", "none", "3D residual U-Net, self-supervised on the unlabelled cases, all layers tuned"
    ),
    "ssl_frozen": Arm("resunet", "ssl", "encoder", "3D residual U-Net, self-supervised, encoder frozen"),
    "fcn2p5d": Arm("fcn2p5d", description="2.5D FCN-ResNet over slice stacks, random initialisation"),
    "default": Arm(
        "resunet",
        "bundle",
        "encoder",
        "the shipped recipe: spleen-bundle stand-in, encoder frozen "
        "(stand-in trained on the unlabelled cases' any-OAR masks)",
    ),
}
same_names("ARM_RECIPES", ARM_RECIPES, ARMS)


# --- data -------------------------------------------------------------------------------------


def _write_case(kind: str, index: int, case_id: str, size: str, folder: Path) -> str:
    from phantoms import case_seed, make_case, write_gc, write_raw

    case = make_case(case_seed(SEEDS[kind], index), size, case_id)
    (write_gc if kind == "test" else write_raw)(case, folder)
    return case_id


def make_data(out: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    """The four phantom sets (made once; a finished set is kept): labelled pool and validation
    cases in one raw layout, unlabelled cases in another, test cases in the container layout."""
    n_pool = args.pool
    if max(args.sizes) > n_pool:
        raise SystemExit(f"--sizes {max(args.sizes)} needs a labelled pool of at least that many (--pool {n_pool})")
    ids = {
        "labelled": [f"case_{i + 1:02d}" for i in range(n_pool)],
        "val": [f"case_{n_pool + i + 1:02d}" for i in range(args.val)],
        "unlabelled": [f"case_{i + 1:02d}" for i in range(args.unlabelled)],
        "test": [f"case_{i + 1:02d}" for i in range(args.test)],
    }
    folders = {
        "labelled": out / "data/labelled",
        "val": out / "data/labelled",
        "unlabelled": out / "data/unlabelled",
        "test": out / "data/test",
    }
    jobs = []
    for kind, names in ids.items():
        for i, case_id in enumerate(names):
            done = folders[kind] / ("input/images/ct" if kind == "test" else case_id)
            if not (done / f"{case_id}_CT.mha").is_file() and not (done / f"{case_id}_IMG_CT.nrrd").is_file():
                jobs.append((kind, i, case_id, args.size, folders[kind]))
    if jobs:
        log.info("writing %d phantom cases", len(jobs))
        with ProcessPoolExecutor(args.workers) as pool:
            written = pool.map(_write_case, *zip(*jobs))
            list(each(written, len(jobs), "writing phantoms", log))
    return ids


# --- planning, pretraining, training ----------------------------------------------------------


def plan(
    out: Path,
    name: str,
    network: str,
    args: argparse.Namespace,
    train: list[str],
    val: list[str],
    shared_cache: bool = True,
) -> Path:
    """A work folder with the study's plan for ``network`` and a one-fold split (train, val).
    The labelled arms share one preprocessing cache (their plans differ only in the network)."""
    work = out / "work" / name
    if not (work / "plans.json").is_file():
        run(
            [
                sys.executable,
                "-m",
                "training.plan",
                "--data",
                str(out / "data/labelled"),
                "--work",
                str(work),
                "--network",
                network,
                "--preset",
                args.fcn_preset if network == "fcn2p5d" else args.preset,
                "--spacing",
                *map(str, args.spacing),
                "--patch",
                *map(str, args.patch),
                "--folds",
                "1",
            ],
            out / "study.log",
        )
    (work / "splits.json").write_text(json.dumps({"seed": 0, "folds": [{"train": train, "val": val}]}, indent=1))
    cache = work / "cache"
    if shared_cache and not cache.exists():
        (out / "cache").mkdir(exist_ok=True)
        cache.symlink_to((out / "cache").resolve())
    return work


def pretrain(out: Path, args: argparse.Namespace, ids: dict[str, list[str]]) -> tuple[Path, float]:
    """``training.pretrain`` on the unlabelled cases; the weights and the wall-clock minutes."""
    work = plan(out, "ssl", "resunet", args, ids["labelled"], ids["val"])
    weights = work / "pretrain/pretrained.pt"
    cmd = [
        sys.executable,
        "-m",
        "training.pretrain",
        "--images",
        str(out / "data/unlabelled"),
        "--work",
        str(work),
        "--steps",
        str(args.pretrain_steps),
        "--device",
        args.device,
        "--seed",
        str(args.seed),
    ]
    run(cmd, out / "pretrain.log")
    return weights, json.loads((work / "pretrain/pretrain.json").read_text())["seconds"] / 60


def bundle(out: Path, args: argparse.Namespace, ids: dict[str, list[str]]) -> Path:
    """The spleen-bundle stand-in, trained on the unlabelled cases' any-OAR masks."""
    work = out / "work" / "bundle"
    # the stand-in reads the unlabelled layout: its own cache (other cases under the same ids)
    plan(out, "bundle", "resunet", args, ids["unlabelled"], [], shared_cache=False)
    make_bundle_checkpoint(out / "data/unlabelled", work, out / "bundle", args.bundle_steps, args.seed)
    return out / "bundle"


def train(
    out: Path, arm: str, n: int, args: argparse.Namespace, ids: dict[str, list[str]], sources: dict[str, Path]
) -> Path:
    """Train one arm on the first ``n`` labelled cases; returns its work folder."""
    recipe = ARM_RECIPES[arm]
    work = plan(out, f"{arm}_n{n}", recipe.network, args, ids["labelled"][:n], ids["val"])
    epochs = max(1, args.steps // args.iters)
    cmd = [
        sys.executable,
        "-m",
        "training.train",
        "--data",
        str(out / "data/labelled"),
        "--work",
        str(work),
        "--fold",
        "0",
        "--epochs",
        str(epochs),
        "--iters",
        str(args.iters),
        "--batch",
        "2",
        "--val-every",
        str(args.val_every),
        "--lr",
        str(args.lr),
        "--loss",
        args.loss,
        "--optimizer",
        "adamw",
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--freeze",
        recipe.freeze,
    ]
    if recipe.init:
        cmd += ["--init-from", str(sources[recipe.init])]
    (work / "command.sh").write_text(shlex.join(cmd) + "\n")
    run(cmd, out / f"{arm}_n{n}.log")
    return work


# --- scoring ----------------------------------------------------------------------------------


def score(out: Path, arm: str, n: int, work: Path) -> dict:
    """Export the best checkpoint, segment the test phantoms, score them (kept once done)."""
    folder = out / "scores" / f"{arm}_n{n}"
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    from evaluation.metrics import evaluate, write_outputs

    model = out / "models" / f"{arm}_n{n}"
    shutil.rmtree(model, ignore_errors=True)
    run(
        [
            sys.executable,
            "-m",
            "training.export",
            "--work",
            str(work),
            "--out",
            str(model),
            "--folds",
            "0",
            "--data-note",
            f"few-label study: {n} labelled phantoms",
            "--changes",
            f"arm {arm}",
            "--command",
            (work / "command.sh").read_text().strip(),
        ],
        out / "study.log",
    )
    segmenter = Segmenter(model, device="cpu", time_budget_s=None, mirroring=False, tune=False)
    pred = folder / "pred"
    pred.mkdir(parents=True, exist_ok=True)
    tests = sorted((out / "data/test/input/images/ct").glob("*_CT.mha"))
    for ct_path in each(tests, len(tests), f"segmenting ({arm}, {n} labelled)", log, name=lambda p: p.name):
        case_id = ct_path.name.removesuffix("_CT.mha")
        mr = out / "data/test/input/images/t1-mri" / f"{case_id}_T1.mha"
        ct = read_image(ct_path)
        labels = segmenter.predict(ct, read_image(mr) if mr.is_file() else None).labels
        write_label_map(labels, ct, pred / f"{case_id}_seg.mha")
    return write_outputs(evaluate(pred, out / "data/test/ground_truth"), folder)


def training_record(work: Path, iters: int) -> dict:
    """Minutes of training (every epoch, across resumptions), steps done, the best epoch
    (1-based, the exported one) and its validation Dice."""
    with open(work / "fold_0/log.csv") as fh:
        rows = list(csv.DictReader(fh))
    val = json.loads((work / "fold_0/val_dice.json").read_text())
    return {
        "minutes": sum(float(r["seconds"]) for r in rows) / 60,
        "steps": len(rows) * iters,
        "best_epoch": int(val["epoch"]) + 1,
        "validation_dice": val["mean"],
    }


# --- results ----------------------------------------------------------------------------------


def _cell(row: dict | None, key: str, digits: int) -> str:
    return "–" if row is None or row.get(key) is None else f"{row[key]:.{digits}f}"


def means_table(results: dict, sizes: list[int], key: str, digits: int) -> list[str]:
    """Arms × labelled-case counts of one summary number."""
    lines = ["| arm | " + " | ".join(f"{n} labelled" for n in sizes) + " |", "| --- |" + " ---: |" * len(sizes)]
    for arm, by_n in results.items():
        lines.append(f"| `{arm}` | " + " | ".join(_cell(by_n.get(str(n)), key, digits) for n in sizes) + " |")
    return lines


def per_oar_table(results: dict, n: int) -> list[str]:
    """OARs × arms, "Dice / HD95 mm", for ``n`` labelled cases."""
    arms = [a for a in results if str(n) in results[a]]
    lines = ["| OAR | " + " | ".join(f"`{a}`" for a in arms) + " |", "| --- |" + " ---: |" * len(arms)]
    for oar in OAR_NAMES:
        cells = []
        for a in arms:
            v = results[a][str(n)]["per_oar"].get(oar)
            cells.append("–" if v is None else f"{v['dice']:.2f} / {v['hd95']:.1f}")
        lines.append(f"| {oar} | " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Paired:
    """One arm against the baseline at one size, paired by OAR (Dice, arm minus baseline)."""

    mean_difference: float
    better: int
    worse: int
    p: float | None  # two-sided Wilcoxon signed-rank, before adjustment; None: too few pairs


def paired_by_oar(arm: dict, baseline: dict) -> Paired:
    """``arm`` against ``baseline`` over the OARs both scored (``per_oar`` of a summary)."""
    oars = [o for o in OAR_NAMES if o in arm and o in baseline]
    diff = np.array([arm[o]["dice"] - baseline[o]["dice"] for o in oars], dtype=float)
    moved = diff[diff != 0]
    p = float(wilcoxon(moved).pvalue) if len(moved) >= MIN_PAIRS else None
    return Paired(float(diff.mean()) if len(diff) else 0.0, int((moved > 0).sum()), int((moved < 0).sum()), p)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error), in the order given."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def comparisons(results: dict, sizes: list[int]) -> dict[str, dict[str, dict]]:
    """Every arm against :data:`BASELINE` at every size both have, with Holm-adjusted p."""
    pairs = {
        (arm, str(n)): paired_by_oar(results[arm][str(n)]["per_oar"], results[BASELINE][str(n)]["per_oar"])
        for arm in results
        if arm != BASELINE
        for n in sizes
        if str(n) in results[arm] and str(n) in results.get(BASELINE, {})
    }
    tested = {key: pair.p for key, pair in pairs.items() if pair.p is not None}
    adjusted = dict(zip(tested, holm(list(tested.values()))))
    out: dict[str, dict[str, dict]] = {}
    for (arm, n), pair in pairs.items():
        out.setdefault(arm, {})[n] = {**asdict(pair), "p_holm": adjusted.get((arm, n))}
    return out


def comparison_table(compared: dict, sizes: list[int]) -> list[str]:
    """Arms × sizes: "Δ Dice (OARs better/worse, Holm-adjusted p)"."""
    lines = ["| arm | " + " | ".join(f"{n} labelled" for n in sizes) + " |", "| --- |" + " ---: |" * len(sizes)]
    for arm, by_n in compared.items():
        cells = []
        for n in sizes:
            c = by_n.get(str(n))
            p = "–" if c is None or c["p_holm"] is None else f"{c['p_holm']:.3f}"
            cells.append("–" if c is None else f"{c['mean_difference']:+.3f} ({c['better']}↑ {c['worse']}↓, p {p})")
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    return lines


def write_results(out: Path, results: dict, meta: dict) -> None:
    sizes = meta["settings"]["sizes"]
    lines = [
        "# Few-label study",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Every arm: {meta['settings']['steps']} optimiser steps, seed {meta['settings']['seed']}; "
        f"pretraining {meta['pretrain']['steps']} steps ({meta['pretrain']['minutes']:.1f} min); "
        f"scored on {meta['settings']['test']} unseen test phantoms.",
        "",
        "## Mean Dice on the test phantoms",
        "",
        *means_table(results, sizes, "mean_dice", 3),
        "",
        "## Mean HD95 (mm)",
        "",
        *means_table(results, sizes, "mean_hd95", 2),
        "",
        "## Training minutes (wall clock, this machine)",
        "",
        *means_table(results, sizes, "minutes", 1),
        "",
    ]
    compared = comparisons(results, sizes)  # empty without the baseline arm
    if compared:
        lines += [
            f"## Against `{BASELINE}`, paired by OAR",
            "",
            f"Mean Dice difference (arm minus {BASELINE}), OARs better ↑ and worse ↓ (ties dropped), and the "
            "two-sided Wilcoxon signed-rank p, Holm-adjusted over the table; the OAR is the unit, so the "
            "spread between patients is not in it.",
            "",
            *comparison_table(compared, sizes),
            "",
        ]
    for n in sizes:
        lines += [f"## Per OAR, {n} labelled cases (Dice / HD95 mm)", "", *per_oar_table(results, n), ""]
    lines += ["## Arms", ""] + [f"- `{a}`: {ARM_RECIPES[a].description}" for a in results]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps({**meta, "arms": results, "against_" + BASELINE: compared}, indent=1) + "\n"
    )


def command(args: argparse.Namespace) -> str:
    """The command that reproduces these results: every setting, spelled out."""
    parts = ["python -m benchmarks.few_labels"]
    for key, value in vars(args).items():
        if key in ("workers", "device", "tables_only"):  # change how fast or what is written, not the results
            continue
        shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"--{key.replace('_', '-')} {shown}")
    return " ".join(parts)


def parse(argv: list[str] | None) -> argparse.Namespace:
    return few_labels_parser().parse_args(argv)


def study_meta(args: argparse.Namespace, cases: dict[str, list[str]], pretrain_minutes: float) -> dict:
    """What results.json records beside the arms: the command, the settings, seeds and cases."""
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "tables_only")} | {"out": str(args.out)}
    return {
        "command": command(args),
        "settings": settings,
        "seeds": SEEDS,
        "cases": cases,
        "pretrain": {"steps": args.pretrain_steps, "minutes": pretrain_minutes},
    }


def tables_only(args: argparse.Namespace) -> int:
    """The tables again from the runs already scored in ``--out`` (runs of some sizes each, in
    parallel, gathered into one table); a run not yet scored is left out, with a warning."""
    previous = json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").is_file() else {}
    pretrain_json = args.out / "work/ssl/pretrain/pretrain.json"
    minutes = json.loads(pretrain_json.read_text())["seconds"] / 60 if pretrain_json.is_file() else 0.0
    results: dict[str, dict[str, dict]] = {}
    for n in sorted(args.sizes):
        for arm in args.arms:
            summary = args.out / "scores" / f"{arm}_n{n}" / "summary.json"
            if not summary.is_file():
                log.warning("%s with %d labelled cases has not been scored: left out", arm, n)
                continue
            work = args.out / "work" / f"{arm}_n{n}"
            results.setdefault(arm, {})[str(n)] = {
                **json.loads(summary.read_text()),
                **training_record(work, args.iters),
            }
    meta = study_meta(args, previous.get("cases", {}), minutes)
    write_results(args.out, results, meta)
    print((args.out / "results.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tables_only:
        return tables_only(args)
    ids = make_data(args.out, args)
    sources, pre_minutes = {}, 0.0
    if any(ARM_RECIPES[a].init == "ssl" for a in args.arms):
        sources["ssl"], pre_minutes = pretrain(args.out, args, ids)
    if any(ARM_RECIPES[a].init == "bundle" for a in args.arms):
        sources["bundle"] = bundle(args.out, args, ids)
    results: dict[str, dict[str, dict]] = {}
    meta = study_meta(args, ids, pre_minutes)
    for n in sorted(args.sizes):
        for arm in args.arms:
            started = time.perf_counter()
            work = train(args.out, arm, n, args, ids, sources)
            summary = score(args.out, arm, n, work)
            results.setdefault(arm, {})[str(n)] = {**summary, **training_record(work, args.iters)}
            log.info(
                "%s, %d labelled: mean Dice %.3f, HD95 %.1f mm (%.0f s)",
                arm,
                n,
                summary["mean_dice"],
                summary["mean_hd95"],
                time.perf_counter() - started,
            )
            write_results(args.out, results, meta)  # after every run: an interrupted study shows its progress
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
