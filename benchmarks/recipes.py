"""The project's training recipes side by side on phantoms, with the same data, split and steps.

    python -m benchmarks.recipes --data data/raw --out bench/recipes --epochs 8 --iters 100 \
        [--recipes default spleen_finetune res3dunet_dynamic tvmf] [--preset small]

Recipes (the command lines each one runs are written to ``commands.sh``):

- ``default``: DynUNet, marginal Dice + CE, AdamW (the shipped model's recipe).
- ``spleen_finetune``: MONAI's spleen-CT bundle UNet (residual, 16–256 channels, batch norm)
  fine-tuned from a bundle ``model.pt``: 1 → 2 input channels, 2 → 31 outputs, all but the
  last two layers frozen, binary cross-entropy, Adam at 3e-4.
- ``res3dunet_dynamic``: the same residual 3D U-Net from the same checkpoint with the encoder
  frozen, generalised Dice + weighted CE → focal (dynamic schedule).
- ``tvmf``: DynUNet with the adaptive t-vMF Dice loss.
- ``dynunet_dynamic``: DynUNet from scratch with the dynamic loss (separates the loss's effect
  from the transfer's).

Nothing is downloaded, so the bundle ``model.pt`` is a stand-in built here with the bundle's
exact network definition, pretrained on the phantoms' CT (fold-0 training cases only) to
segment "any OAR" against background, the way the spleen model segments one organ. With the
real bundle, pass its folder to ``--init-from`` instead (``python -m monai.bundle download
spleen_ct_segmentation``). Every recipe is validated on the fold-0 validation cases; the
per-OAR Dice table goes to ``results.md`` and ``results.json``. Re-running continues
interrupted runs (training resumes from its checkpoints).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":
    # --help and usage errors answer before torch, MONAI and training.train are imported (~5 s):
    # the command line is built by benchmarks.cli_parsers, which imports none of them
    from benchmarks.cli_parsers import recipes_parser

    recipes_parser().parse_args()

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks import nets

from benchmarks.cli_parsers import RECIPE_NAMES, recipes_parser, same_names
from hanseg.labels import OAR_NAMES
from hanseg.plans import load_plans
from training.data import augment, sample_patch
from training.plan import SPLEEN_BUNDLE_UNET
from training.train import fold_cases, load_cases, poly_lr

log = logging.getLogger("benchmarks.recipes")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Recipe:
    network: str
    train_args: tuple[str, ...]
    from_bundle: bool = False
    description: str = ""


RECIPES = {
    "default": Recipe(
        "dynunet",
        ("--loss", "dice_ce", "--optimizer", "adamw", "--lr", "2e-3"),
        description="DynUNet, Dice+CE, AdamW 2e-3",
    ),
    "spleen_finetune": Recipe(
        "resunet",
        ("--loss", "bce", "--optimizer", "adam", "--lr", "3e-4", "--freeze", "all-but-last:2"),
        True,
        "spleen-bundle UNet, frozen but last 2 layers, BCE, Adam 3e-4",
    ),
    "res3dunet_dynamic": Recipe(
        "resunet",
        ("--loss", "dynamic", "--optimizer", "adamw", "--lr", "1e-3", "--freeze", "encoder"),
        True,
        "residual 3D U-Net, frozen encoder, GDice + wCE→focal, AdamW 1e-3",
    ),
    "tvmf": Recipe(
        "dynunet",
        ("--loss", "tvmf", "--optimizer", "adamw", "--lr", "2e-3"),
        description="DynUNet, adaptive t-vMF Dice, AdamW 2e-3",
    ),
    # Ablation: the dynamic loss without transfer or freezing, on the default network.
    "dynunet_dynamic": Recipe(
        "dynunet",
        ("--loss", "dynamic", "--optimizer", "adamw", "--lr", "2e-3"),
        description="DynUNet from scratch, GDice + wCE→focal, AdamW 2e-3 (ablation)",
    ),
}
same_names("RECIPES", RECIPES, RECIPE_NAMES)


def run(cmd: list[str], log_file: Path) -> None:
    """Run a command (output to ``log_file``); raises on failure. Training times come from
    each run's ``log.csv``, so a resumed run still counts its whole training."""
    log.info("$ %s", shlex.join(cmd))
    with open(log_file, "a") as fh:
        done = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(cmd)}; see {log_file}")


def plan(data: Path, out: Path, name: str, args: argparse.Namespace) -> Path:
    work = out / name
    if not (work / "plans.json").is_file():
        run(
            [
                sys.executable,
                "-m",
                "training.plan",
                "--data",
                str(data),
                "--work",
                str(work),
                "--preset",
                args.preset,
                "--network",
                RECIPES[name].network,
                "--folds",
                str(args.folds),
                *(["--spacing", *map(str, args.spacing)] if args.spacing else []),
                *(["--patch", *map(str, args.patch)] if args.patch else []),
            ],
            out / "recipes.log",
        )
    cache = work / "cache"  # one preprocessing cache for all recipes (same spacing and normalisation)
    if not cache.exists():
        (out / "cache").mkdir(exist_ok=True)
        cache.symlink_to(Path("..") / "cache")
    return work


def make_bundle_checkpoint(data: Path, work: Path, dest: Path, steps: int, seed: int = 0) -> Path:
    """A stand-in for the spleen bundle's ``models/model.pt``: its network definition
    (1 CT channel in, 2 classes out), trained ``steps`` steps on "any OAR vs background"."""
    path = dest / "models" / "model.pt"
    if path.is_file():
        return path
    plans = load_plans(work / "plans.json")
    cases = load_cases(data, work, plans, fold_cases(work, "0")[0])
    torch.manual_seed(seed)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    net = nets.UNet(spatial_dims=3, in_channels=1, out_channels=2, **SPLEEN_BUNDLE_UNET)
    opt, loss_fn = torch.optim.Adam(net.parameters(), 1e-3), DiceCELoss(to_onehot_y=True, softmax=True)
    net.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = poly_lr(1e-3, step, steps)
        pairs = [sample_patch(cases[int(rng.integers(len(cases)))], plans.patch_size_zyx, rng, 0.67) for _ in range(2)]
        image = torch.from_numpy(np.stack([p[0] for p in pairs]))
        labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
        image, labels, _ = augment(image, labels, torch.ones(2, len(OAR_NAMES) + 1, dtype=torch.bool), gen)
        opt.zero_grad()
        loss = loss_fn(net(image[:, :1]), (labels[:, None] > 0).long())
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log.info("bundle stand-in: step %d/%d loss %.3f", step + 1, steps, loss.item())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    (dest / "configs").mkdir(exist_ok=True)
    (dest / "configs" / "metadata.json").write_text(
        json.dumps(
            {
                "note": "stand-in for MONAI spleen_ct_segmentation (same network_def); pretrained here on "
                f"phantom CT, binary any-OAR vs background, {steps} steps, seed {seed}",
                "network_def": {
                    "_target_": "UNet",
                    "spatial_dims": 3,
                    "in_channels": 1,
                    "out_channels": 2,
                    **SPLEEN_BUNDLE_UNET,
                },
            },
            indent=1,
        )
    )
    return path


def summarise(out: Path, names: list[str]) -> dict:
    rows = {}
    for name in names:
        fold = out / name / "fold_0"
        val = json.loads((fold / "val_dice.json").read_text())
        ckpt = torch.load(fold / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        with open(fold / "log.csv") as fh:  # training time of every epoch, across resumptions
            seconds = sum(float(r["seconds"]) for r in csv.DictReader(fh))
        rows[name] = {
            "description": RECIPES[name].description,
            "mean": val["mean"],
            "per_oar": val["per_oar"],
            "best_epoch": val["epoch"] + 1,
            "epochs": ckpt["epoch"] + 1,
            "steps": (ckpt["epoch"] + 1) * ckpt["config"]["iters"],
            "minutes": seconds / 60,
            "command": RECIPES[name].train_args,
        }
    return rows


def write_table(out: Path, rows: dict) -> None:
    names = list(rows)
    lines = ["| OAR | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    lines.append("| **mean** | " + " | ".join(f"**{rows[n]['mean']:.3f}**" for n in names) + " |")
    for oar in OAR_NAMES:
        cells = [f"{rows[n]['per_oar'][oar]:.2f}" if oar in rows[n]["per_oar"] else "–" for n in names]
        lines.append(f"| {oar} | " + " | ".join(cells) + " |")
    lines.append(
        "| steps (best epoch) | " + " | ".join(f"{rows[n]['steps']} ({rows[n]['best_epoch']})" for n in names) + " |"
    )
    lines.append("| training minutes | " + " | ".join(f"{rows[n]['minutes']:.1f}" for n in names) + " |")
    legend = "\n".join(f"- `{n}`: {rows[n]['description']}" for n in names)
    (out / "results.md").write_text("\n".join(lines) + "\n\n" + legend + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = recipes_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    works = {name: plan(args.data, args.out, name, args) for name in args.recipes}
    bundle = None
    if any(RECIPES[n].from_bundle for n in args.recipes):
        first = next(n for n in args.recipes if RECIPES[n].from_bundle)
        make_bundle_checkpoint(args.data, works[first], args.out / "bundle", args.bundle_steps)
        bundle = args.out / "bundle"
    commands = []
    for name in args.recipes:
        cmd = [
            sys.executable,
            "-m",
            "training.train",
            "--data",
            str(args.data),
            "--work",
            str(works[name]),
            "--fold",
            "0",
            "--epochs",
            str(args.epochs),
            "--iters",
            str(args.iters),
            "--batch",
            "2",
            "--val-every",
            str(args.val_every),
            "--device",
            args.device,
            *RECIPES[name].train_args,
        ]
        if RECIPES[name].from_bundle:
            cmd += ["--init-from", str(bundle)]
        commands.append(shlex.join(cmd))
        run(cmd, args.out / f"{name}.log")
    (args.out / "commands.sh").write_text("\n".join(commands) + "\n")
    rows = summarise(args.out, args.recipes)
    write_table(args.out, rows)
    for name, row in rows.items():
        log.info("%-18s mean Dice %.3f (%d steps, %.1f min)", name, row["mean"], row["steps"], row["minutes"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
