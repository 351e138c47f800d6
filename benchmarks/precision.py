"""How well the labels of a bfloat16 run agree with those of a float32 run, on unseen phantoms.

    python -m benchmarks.precision --model model --cases 5 --seed 9000 --size small \
        --out bench/precision [--record]

The cases are made exactly as ``benchmarks.phantom_eval`` makes them (``make_case(case_seed(seed,
i), size, "case_<i+1>")``, container input layout; seed 9000 was never used for training data).
``process.py`` runs once over all of them with ``--precision fp32`` and once with ``--precision
bf16`` (``--device cpu`` both; each run timed as a whole). Then, per case and per OAR, the Dice
of the bf16 label map against the fp32 one (:func:`hanseg.compare.per_oar_dice`), pooled as the
mean per OAR over the cases where that OAR is in either map, and the voxels whose label differs.
Each precision is also scored against the phantoms' ground truth with ``evaluation.metrics``
(mean over OARs of each OAR's Dice averaged over cases, as ``phantom_eval`` reports it).

The targets (:data:`TARGETS`) are judged and printed (``PASS``/``FAIL`` lines), but the exit code
is 0 either way: this is a measurement. Writes ``summary.json`` and ``summary.md`` in ``--out``;
with ``--record`` the numbers go into ``MODEL/metadata.json`` as ``precision_agreement`` (with
this command and the CPU) and the model card is rewritten.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from benchmarks.phantom_eval import run_process
from evaluation.metrics import evaluate, write_outputs
from hanseg.compare import per_oar_dice
from hanseg.labels import OAR_NAMES
from hanseg.precision import CPUINFO, cpu_bf16_units, cpu_flags
from phantoms import case_seed, make_case, write_gc
from training.export import card_only
from training.model_card import read_metadata

log = logging.getLogger("benchmarks.precision")
ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("fp32", "bf16")
PRED_DIR = Path("images/head_neck_oar")

#: bf16 labels against fp32 labels: mean Dice over OARs, and the lowest OAR's; the mean Dice
#: against the ground truth may be lower in bf16 than in fp32 by at most ``truth_drop``.
TARGETS = {"mean_dice": 0.995, "min_oar_dice": 0.98, "truth_drop": 0.002}


def pool_dice(per_case: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per OAR, the mean Dice over the cases that score it (those where it is in either map),
    in label order."""
    pooled = {}
    for oar in OAR_NAMES:
        scores = [case[oar] for case in per_case.values() if oar in case]
        if scores:
            pooled[oar] = float(np.mean(scores))
    return pooled


def changed_voxels(labels: np.ndarray, reference: np.ndarray) -> dict[str, int]:
    """Per OAR, the voxels that are this OAR in exactly one of the two maps (only OARs with any)."""
    n = len(OAR_NAMES) + 1
    in_labels = np.bincount(labels.ravel(), minlength=n)
    in_reference = np.bincount(reference.ravel(), minlength=n)
    both = np.bincount(labels[labels == reference].ravel(), minlength=n)
    counts = {name: int(in_labels[i] + in_reference[i] - 2 * both[i]) for i, name in enumerate(OAR_NAMES, start=1)}
    return {name: count for name, count in counts.items() if count}


def agreement(per_case: Mapping[str, Mapping[str, float]], voxels_changed: int, voxels_total: int) -> dict[str, Any]:
    """The bf16-vs-fp32 figures: per-OAR Dice pooled over cases, their mean, the lowest OAR
    ``[name, dice]`` and the fraction of all voxels whose label changed."""
    pooled = pool_dice(per_case)
    lowest = min(pooled.items(), key=lambda item: item[1])
    return {
        "mean_dice": float(np.mean(list(pooled.values()))),
        "lowest_oar": [lowest[0], lowest[1]],
        "per_oar_dice": pooled,
        "voxels_changed": int(voxels_changed),
        "voxels_changed_fraction": voxels_changed / voxels_total,
    }


def judge(agree: Mapping[str, Any], truth: Mapping[str, float]) -> list[tuple[bool, str]]:
    """Each target: (met, one line saying what was asked and what was measured)."""
    low_oar, low_dice = agree["lowest_oar"]
    drop = truth["fp32"] - truth["bf16"]
    return [
        (
            agree["mean_dice"] >= TARGETS["mean_dice"],
            f"mean Dice bf16 vs fp32 {agree['mean_dice']:.4f} (target >= {TARGETS['mean_dice']})",
        ),
        (
            low_dice >= TARGETS["min_oar_dice"],
            f"lowest OAR Dice bf16 vs fp32 {low_dice:.4f} ({low_oar}) (target every OAR >= {TARGETS['min_oar_dice']})",
        ),
        (
            drop <= TARGETS["truth_drop"] + 1e-12,  # 0.870 - 0.868 is 0.0020000000000000018 in floats
            f"mean Dice against the truth: fp32 {truth['fp32']:.4f}, bf16 {truth['bf16']:.4f}, "
            f"drop {drop:+.4f} (target drop <= {TARGETS['truth_drop']})",
        ),
    ]


def cpu_description(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU's model name and which bfloat16 units (amx_bf16, avx512_bf16) it has."""
    name = ""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
                break
    except OSError:
        pass
    return {"model": name, "bf16_units": list(cpu_bf16_units(cpu_flags(cpuinfo)))}


def command(args: argparse.Namespace) -> str:
    """The command that reproduces these numbers (paths as given)."""
    return (
        f"python -m benchmarks.precision --model {args.model} --cases {args.cases} --seed {args.seed} "
        f"--size {args.size}"
    )


def record_entry(
    cmd: str, settings: Mapping[str, Any], cpu: Mapping[str, Any], summary: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``precision_agreement`` value of ``metadata.json`` (rounded for the reader)."""
    agree = summary["bf16_vs_fp32"]
    low_oar, low_dice = agree["lowest_oar"]
    return {
        "command": cmd,
        "settings": dict(settings),
        "cpu": dict(cpu),
        "bf16_vs_fp32": {
            "mean_dice": round(agree["mean_dice"], 5),
            "lowest_oar": [low_oar, round(low_dice, 5)],
            "per_oar_dice": {oar: round(d, 5) for oar, d in agree["per_oar_dice"].items()},
            "voxels_changed_fraction": float(f"{agree['voxels_changed_fraction']:.3g}"),
        },
        "truth_mean_dice": {p: round(summary["truth_mean_dice"][p], 5) for p in PRECISIONS},
        "seconds_per_case": {p: round(summary["seconds_per_case"][p], 1) for p in PRECISIONS},
    }


def record(model: Path, entry: Mapping[str, Any]) -> None:
    """``entry`` into ``model/metadata.json`` as ``precision_agreement``; the card rewritten."""
    meta = read_metadata(model)
    meta["precision_agreement"] = dict(entry)
    (Path(model) / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    card_only(model)


def read_labels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int64)


def compare_runs(case_ids: list[str], fp32_dir: Path, bf16_dir: Path) -> dict[str, Any]:
    """Per case: bf16-vs-fp32 Dice per OAR and voxels changed (all, and per OAR)."""
    per_case, changed, total, changed_per_oar = {}, {}, 0, {}
    for case_id in case_ids:
        name = f"{case_id}_seg.mha"
        ref, labels = read_labels(fp32_dir / name), read_labels(bf16_dir / name)
        if ref.shape != labels.shape:
            raise SystemExit(f"{name}: bf16 grid {labels.shape} differs from fp32 grid {ref.shape}")
        per_case[case_id] = per_oar_dice(labels, ref)
        changed[case_id] = int((labels != ref).sum())
        changed_per_oar[case_id] = changed_voxels(labels, ref)
        total += ref.size
    return {"per_case": per_case, "changed": changed, "total": total, "changed_per_oar": changed_per_oar}


def table(summary: Mapping[str, Any], lowest: int = 5) -> str:
    agree = summary["bf16_vs_fp32"]
    changed_per_oar = summary["voxels_changed_per_oar"]
    rows = [
        "| OAR (lowest bf16-vs-fp32 Dice first) | Dice bf16 vs fp32 | voxels changed (all cases) |",
        "| --- | ---: | ---: |",
    ]
    ranked = sorted(agree["per_oar_dice"].items(), key=lambda item: item[1])
    for oar, dice in ranked[:lowest]:
        rows.append(f"| {oar} | {dice:.4f} | {changed_per_oar.get(oar, 0)} |")
    truth, seconds = summary["truth_mean_dice"], summary["seconds_per_case"]
    rows += [
        f"| **mean over {len(ranked)} OARs** | **{agree['mean_dice']:.4f}** | "
        f"{agree['voxels_changed']} of {summary['voxels_total']} ({agree['voxels_changed_fraction']:.2e}) |",
        "",
        "| precision | mean Dice against truth | s/case |",
        "| --- | ---: | ---: |",
        *(f"| {p} | {truth[p]:.4f} | {seconds[p]:.1f} |" for p in PRECISIONS),
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="bf16 vs fp32 labels of a model on unseen phantoms.")
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--cases", type=int, default=5)
    ap.add_argument("--seed", type=int, default=9000, help="never one used for training data")
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "precision")
    ap.add_argument(
        "--record", action="store_true", help="store the numbers in MODEL/metadata.json and rewrite its model card"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cases = [make_case(case_seed(args.seed, i), args.size, f"case_{i + 1:02d}") for i in range(args.cases)]
    folder = args.out / "cases"
    for case in cases:
        write_gc(case, folder)
    seconds = {}
    for precision in PRECISIONS:
        log.info("process.py --precision %s on %d cases", precision, len(cases))
        seconds[precision] = run_process(folder / "input", args.out / precision, args.model, "cpu", precision) / len(
            cases
        )
        log.info("%s: %.1f s per case", precision, seconds[precision])
    case_ids = [case.case_id for case in cases]
    runs = compare_runs(case_ids, args.out / "fp32" / PRED_DIR, args.out / "bf16" / PRED_DIR)
    truth = {
        p: write_outputs(evaluate(args.out / p / PRED_DIR, folder / "ground_truth"), args.out / p / "eval")["mean_dice"]
        for p in PRECISIONS
    }
    changed_per_oar = {oar: sum(case.get(oar, 0) for case in runs["changed_per_oar"].values()) for oar in OAR_NAMES}
    settings = {"cases": args.cases, "seed": args.seed, "size": args.size, "device": "cpu"}
    summary = {
        "settings": settings,
        "cpu": cpu_description(),
        "bf16_vs_fp32": agreement(runs["per_case"], sum(runs["changed"].values()), runs["total"]),
        "voxels_total": runs["total"],
        "voxels_changed_per_oar": {oar: n for oar, n in changed_per_oar.items() if n},
        "per_case": {
            c: {
                "dice": runs["per_case"][c],
                "voxels_changed": runs["changed"][c],
                "per_oar": runs["changed_per_oar"][c],
            }
            for c in case_ids
        },
        "truth_mean_dice": truth,
        "seconds_per_case": seconds,
    }
    verdicts = judge(summary["bf16_vs_fp32"], truth)
    summary["targets"] = {"asked": TARGETS, "met": [ok for ok, _ in verdicts]}
    lines = [f"{'PASS' if ok else 'FAIL'}: {text}" for ok, text in verdicts]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = f"{table(summary)}\n\n" + "\n".join(f"- {line}" for line in lines) + f"\n\n`{command(args)}`\n"
    (args.out / "summary.md").write_text(md)
    print(table(summary))
    print("\n".join(lines))
    if args.record:
        record(args.model, record_entry(command(args), settings, summary["cpu"], summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
