"""Real-size cases: a CT that reaches the thorax against the same case cut to the head and neck.

    python -m benchmarks.real_size --model model --out bench/real_size [--seed 0]
        [--docker IMAGE] [--variants cut tall tall_no_depth]

The real HaN-Seg CTs run from about 32 M to 340 M voxels (1024×1024 in-plane, up to ~330
slices): the long ones reach far below the neck. This makes one phantom of the real profile
that reaches the thorax (``phantoms``, ``tall``) and writes it three ways, each run by
``process.py`` in its own process (wall seconds and peak RSS from ``wait4``), in one run:

* ``cut``: the same case with its CT and truth cut to the head and neck (the baseline: what
  the case would cost if the scanner had stopped below the OARs);
* ``tall``: the whole CT, down to the thorax;
* ``tall_no_depth``: the whole CT with a copy of the model whose plan has no ``oar_depth_mm``
  (the network grid then covers the whole body box): what the depth limit saves.

Every variant runs with ``--time-budget 0`` (the richest settings: all folds, the mirror), so
each does the same work per window; under a time budget a longer case could drop the mirror.

With ``--docker IMAGE`` each variant also runs in the image under the platform's flags
(``--memory=4g --memory-swap=4g``, ``docker/platform_flags.sh``); the exit code says whether it
fit. Writes ``results.json`` and ``results.md``: voxels, seconds, peak RSS, the time ratio
tall / cut, mean Dice against the truth, and the bytes per CT voxel the memory pre-check
(``hanseg.resources``) is derived from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks.inference_vs_monai import agreement, run_one
from hanseg.plans import load_plans, save_plans
from phantoms import TALL_SEED, PhantomCase, Profile, make_case, write_gc
from training.progress import each

log = logging.getLogger("benchmarks.real_size")
ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("cut", "tall", "tall_no_depth")
#: Kept below the lowest OAR in the ``cut`` variant, as a head-and-neck CT would end.
CUT_BELOW_OARS_MM = 20.0


def cut_to_head_and_neck(case: PhantomCase) -> tuple[sitk.Image, sitk.Image]:
    """CT and labels of ``case`` without the slices more than :data:`CUT_BELOW_OARS_MM` below
    the lowest OAR (z index grows superior in the phantoms)."""
    labels = sitk.GetArrayViewFromImage(case.labels)
    lowest = int(np.nonzero(labels.any(axis=(1, 2)))[0].min())
    start = max(0, lowest - int(np.ceil(CUT_BELOW_OARS_MM / case.ct.GetSpacing()[2])))
    size = list(case.ct.GetSize())
    size[2] -= start
    cut = [sitk.RegionOfInterest(img, size, [0, 0, start]) for img in (case.ct, case.labels)]
    return cut[0], cut[1]


def write_variants(case: PhantomCase, out: Path) -> dict[str, Path]:
    folders = {}
    for variant in VARIANTS:
        folder = out / variant
        if not (folder / "input/images/ct").is_dir():
            write_gc(case, folder)
            if variant == "cut":
                ct, labels = cut_to_head_and_neck(case)
                sitk.WriteImage(ct, str(folder / "input/images/ct" / f"{case.case_id}_CT.mha"), True)
                sitk.WriteImage(labels, str(folder / "ground_truth" / f"{case.case_id}_seg.mha"), True)
        folders[variant] = folder
    return folders


def model_without_depth(model: Path, out: Path) -> Path:
    """A copy of ``model`` whose plan has no ``oar_depth_mm`` (the crop is the whole body box)."""
    copy = out / "model_no_depth"
    shutil.copytree(model, copy, dirs_exist_ok=True)
    plans = load_plans(copy / "plans.json")
    save_plans(dataclasses.replace(plans, oar_depth_mm=None), copy / "plans.json")
    return copy


def docker_run(image: str, folder: Path, model: Path) -> dict:
    """``folder``'s case through ``image`` under the platform's flags, with ``model`` mounted at
    /opt/ml/model as Grand-Challenge mounts an uploaded model."""
    flags = subprocess.run(
        ["bash", "-c", "source docker/platform_flags.sh && printf '%s\\n' \"${PLATFORM_FLAGS[@]}\""],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = folder / "docker_output"
    out.mkdir(exist_ok=True)
    out.chmod(0o777)
    cmd = [
        "docker",
        "run",
        *flags,
        "-v",
        f"{folder / 'input'}:/input:ro",
        "-v",
        f"{out}:/output",
        "-v",
        f"{model.resolve()}:/opt/ml/model:ro",
    ]
    done = run_one([*cmd, image], folder / "docker.log", None)
    peaks = [line for line in (folder / "docker.log").read_text().splitlines() if "peak memory" in line]
    return {"exit_code": done["exit_code"], "seconds": done["seconds"], "log_peak": peaks[-1] if peaks else ""}


def ct_voxels(folder: Path) -> int:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(next((folder / "input/images/ct").iterdir())))
    reader.ReadImageInformation()
    return int(np.prod(reader.GetSize()))


def run_variant(variant: str, folder: Path, model: Path) -> dict:
    out = folder / "output"
    shutil.rmtree(out, ignore_errors=True)
    # --time-budget 0: the richest settings for every variant, so they do the same work per window
    # (under a budget a longer case could drop the mirror and look cheaper than it is)
    cmd = [
        sys.executable,
        str(ROOT / "process.py"),
        "--input",
        str(folder / "input"),
        "--output",
        str(out),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--time-budget",
        "0",
    ]
    result = {"ct_voxels": ct_voxels(folder), **run_one(cmd, folder / "process.log", None)}
    if result["exit_code"] == 0:
        seg = next((out / "images/head_neck_oar").iterdir())
        result["dice_vs_truth"] = agreement(seg, folder / "ground_truth" / seg.name)["mean_dice"]
    return result


def summary(results: dict) -> dict:
    runs = results["runs"]
    cut, tall = runs.get("cut"), runs.get("tall")
    out = {}
    if cut and tall and cut["exit_code"] == 0 and tall["exit_code"] == 0:
        out["time_ratio_tall_over_cut"] = round(tall["seconds"] / cut["seconds"], 2)
        extra = tall["ct_voxels"] - cut["ct_voxels"]
        if extra > 0:  # what each extra CT voxel costs in peak memory, the pre-check's slope
            out["bytes_per_extra_ct_voxel"] = round((tall["peak_rss_gib"] - cut["peak_rss_gib"]) * 2**30 / extra, 2)
    return out


def table(results: dict) -> str:
    rows = [
        "| variant | CT voxels (M) | seconds | peak RSS (GiB) | exit | mean Dice vs truth | docker 4 GB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for variant, r in results["runs"].items():
        dock = r.get("docker")
        dock_text = f"exit {dock['exit_code']} in {dock['seconds']} s" if dock else ""
        rows.append(
            f"| {variant} | {r['ct_voxels'] / 1e6:.0f} | {r['seconds']} | {r['peak_rss_gib']} | {r['exit_code']} "
            f"| {r.get('dice_vs_truth', '')} | {dock_text} |"
        )
    return "\n".join([*rows, "", json.dumps(results["summary"])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Real-size CTs: reaching the thorax vs cut to the head and neck.")
    ap.add_argument("--model", type=Path, default=ROOT / "model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "real_size")
    ap.add_argument(
        "--seed", type=int, default=TALL_SEED, help="phantom seed (the case is made tall whatever the seed)"
    )
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--docker", metavar="IMAGE", help="also run each variant in IMAGE under the platform's flags")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    case = make_case(args.seed, "full", "case_01", profile=Profile(real=True, tall=True))
    folders = write_variants(case, args.out)
    models = {"cut": args.model, "tall": args.model, "tall_no_depth": model_without_depth(args.model, args.out)}
    results: dict = {"settings": {"seed": args.seed, "model": str(args.model)}, "runs": {}}
    # one process.py run per variant of the case, minutes each on a CPU: a bar, or a line per run
    for variant in each(args.variants, len(args.variants), "segmenting variants", log, unit="run"):
        results["runs"][variant] = run_variant(variant, folders[variant], models[variant])
        if args.docker:
            results["runs"][variant]["docker"] = docker_run(args.docker, folders[variant], models[variant])
        log.info("%s: %s", variant, results["runs"][variant])
    results["summary"] = summary(results)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
