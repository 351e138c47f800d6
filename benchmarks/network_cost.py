"""Time and memory per case of the 2.5D network beside the 3D one, through ``process.py``.

    python -m benchmarks.network_cost --out bench/network_cost [--size small] [--cases 2]

Every model runs ``process.py`` on the same phantom cases, each in its own process (wall
seconds and peak RSS from ``wait4``, as ``benchmarks.inference_vs_monai`` measures), with
``--time-budget 0`` (the richest settings: the mirror too), so each does its full work:

* ``3d_shipped``: the shipped ``model/`` (the baseline: what runs today);
* ``3d_untrained``: its plan and network with random weights;
* ``2p5d_small`` and ``2p5d_resnet50``: the same plan (spacing, patch, normalisation) with the
  2.5D network at the ``small`` preset and at ``default`` (torchvision's FCN-ResNet50), random
  weights.

Random weights leave the arithmetic of the network unchanged but not post-processing, which
costs more on a noisy output: compare the 2.5D rows with ``3d_untrained``, and that with
``3d_shipped`` for what training changes. Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

if __name__ == "__main__":
    # --help and usage errors answer before torch and the networks are imported: the command
    # line is built by benchmarks.cli_parsers, which imports none of them
    from benchmarks.cli_parsers import network_cost_parser

    network_cost_parser().parse_args()

import torch

from benchmarks.cli_parsers import NETWORK_COST_MODELS, network_cost_parser, same_names
from benchmarks.inference_vs_monai import run_one
from hanseg.labels import NUM_CLASSES
from hanseg.model_dir import export_model, load_model_dir
from hanseg.network_kinds import BY_KIND, plain
from hanseg.networks import build_network
from hanseg.plans import NetworkSpec, load_plans
from phantoms import case_seed, make_case, write_gc

log = logging.getLogger("benchmarks.network_cost")
ROOT = Path(__file__).resolve().parent.parent
MODELS = ("3d_shipped", "3d_untrained", "2p5d_small", "2p5d_resnet50")
same_names("benchmarks.network_cost.MODELS", MODELS, NETWORK_COST_MODELS)


def random_model(shipped: Path, out: Path, network: NetworkSpec, seed: int = 0) -> Path:
    """``shipped``'s plan with ``network`` and random weights (one fold), as a model folder."""
    plans = load_plans(shipped / "plans.json")
    plans = dataclasses.replace(plans, network=network, folds=(0,))
    torch.manual_seed(seed)
    state = build_network(plans.network, len(plans.channels), NUM_CLASSES).state_dict()
    export_model(out, plans, [state], {"version": "benchmark", "trained": False})
    return out


def models(shipped: Path, out: Path) -> dict[str, Path]:
    network = load_plans(shipped / "plans.json").network
    fcn = {p: NetworkSpec("SliceFCN", plain(BY_KIND["fcn2p5d"].presets[p])) for p in ("small", "default")}
    return {
        "3d_shipped": shipped,
        "3d_untrained": random_model(shipped, out / "3d_untrained", network),
        "2p5d_small": random_model(shipped, out / "2p5d_small", fcn["small"]),
        "2p5d_resnet50": random_model(shipped, out / "2p5d_resnet50", fcn["default"]),
    }


def parameters(model: Path) -> int:
    files = load_model_dir(model)
    return sum(v.numel() for v in torch.load(files.weight_paths[0], map_location="cpu", weights_only=True).values())


def table(results: dict) -> str:
    base = results["3d_untrained"]["seconds_per_case"]
    rows = [
        "| model | network | parameters | s/case | × 3d_untrained | peak RSS (GiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        rows.append(
            f"| `{name}` | {r['network']} | {r['parameters'] / 1e6:.1f} M | {r['seconds_per_case']:.1f} | "
            f"{r['seconds_per_case'] / base:.2f} | {r['peak_rss_gib']:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = network_cost_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cases = args.out / "cases"
    for i in range(args.cases):
        write_gc(make_case(case_seed(args.seed, i), args.size, f"case_{i + 1:02d}"), cases)
    folders = models(args.model, args.out / "models")
    results = {}
    for name in args.models:
        cmd = [
            sys.executable,
            str(ROOT / "process.py"),
            "--input",
            str(cases / "input"),
            "--output",
            str(args.out / "output" / name),
            "--model",
            str(folders[name]),
            "--device",
            "cpu",
            "--time-budget",
            "0",
        ]
        measured = run_one(cmd, args.out / f"{name}.log", None)
        results[name] = {
            "network": load_plans(folders[name] / "plans.json").network.name,
            "parameters": parameters(folders[name]),
            **measured,
            "seconds_per_case": measured["seconds"] / args.cases,
        }
        log.info("%s: %.1f s/case, peak %.2f GiB", name, results[name]["seconds_per_case"], measured["peak_rss_gib"])
    settings = {"size": args.size, "cases": args.cases, "seed": args.seed, "device": "cpu"}
    (args.out / "results.json").write_text(json.dumps({"settings": settings, "models": results}, indent=1) + "\n")
    (args.out / "results.md").write_text(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
