"""Train one fold (or all cases) from a planned work folder.

    python -m training.train --data DATA_RAW --work WORK [--fold 0|all] [--epochs 100]
        [--iters 250] [--batch 2] [--lr 1e-3] [--val-every 5] [--seed 0] [--device auto]

Resumes from ``WORK/fold_<k>/checkpoint_last.pt`` when it exists (``--restart`` to start
over). Writes per fold: ``checkpoint_last.pt``, ``checkpoint_best.pt`` (best mean validation
Dice), ``log.csv`` (one row per epoch), ``curves.png``, ``val_dice.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hanseg.dataset import find_raw_cases
from hanseg.inference import resolve_device
from hanseg.labels import NUM_CLASSES
from hanseg.networks import build_network
from hanseg.plans import Plans, load_plans

from .data import CachedCase, augment, cache_case, load_cached, sample_patch
from .losses import dice_ce_loss
from .validate import validate

log = logging.getLogger("training.train")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    iters: int = 250
    batch: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-5
    fg_fraction: float = 0.67
    val_every: int = 5
    seed: int = 0


def fold_cases(work: Path, fold: str) -> tuple[list[str], list[str]]:
    splits = json.loads((work / "splits.json").read_text())["folds"]
    if fold == "all":
        ids = sorted(set(splits[0]["train"]) | set(splits[0]["val"]))
        return ids, []
    k = int(fold)
    if not 0 <= k < len(splits):
        raise SystemExit(f"--fold {fold}: splits.json has folds 0..{len(splits) - 1}")
    return splits[k]["train"], splits[k]["val"]


def load_cases(data: Path, work: Path, plans: Plans, ids: list[str]) -> list[CachedCase]:
    raw = {c.case_id: c for c in find_raw_cases(data)}
    missing = [i for i in ids if i not in raw]
    if missing:
        raise SystemExit(f"cases in splits.json not found in {data}: {', '.join(missing)}")
    return [load_cached(cache_case(raw[i], plans, work / "cache")) for i in ids]


def make_batch(cases: list[CachedCase], plans: Plans, cfg: TrainConfig, rng: np.random.Generator,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels, present = [], [], []
    for _ in range(cfg.batch):
        case = cases[int(rng.integers(len(cases)))]
        img, lab = sample_patch(case, plans.patch_size_zyx, rng, cfg.fg_fraction)
        images.append(img), labels.append(lab), present.append(case.present)
    image = torch.from_numpy(np.stack(images))
    label = torch.from_numpy(np.stack(labels))
    pres = torch.from_numpy(np.stack(present))
    return augment(image, label, pres, gen)


class Checkpoints:
    """last/best checkpoints of one fold, with everything needed to resume exactly."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, state: dict) -> None:
        tmp = self.folder / f".{name}.tmp"
        torch.save(state, tmp)
        tmp.replace(self.folder / name)

    def load_last(self) -> dict | None:
        path = self.folder / "checkpoint_last.pt"
        return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def progress(iterable, desc: str):
    """A tqdm bar on an interactive terminal; plain iteration in logs, CI and without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, leave=False, disable=not sys.stderr.isatty())


def poly_lr(base: float, step: int, total: int) -> float:
    return base * (1 - min(step, total - 1) / total) ** 0.9


def train_epoch(net, opt, scaler, cases, plans, cfg, rng, gen, device, epoch) -> float:
    net.train()
    losses = []
    for it in progress(range(cfg.iters), f"epoch {epoch + 1}/{cfg.epochs}"):
        for group in opt.param_groups:
            group["lr"] = poly_lr(cfg.lr, epoch * cfg.iters + it, cfg.epochs * cfg.iters)
        image, label, present = make_batch(cases, plans, cfg, rng, gen)
        image, label, present = image.to(device), label.long().to(device), present.to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = net(image)
        loss = dice_ce_loss(logits.float(), label, present)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    return float(np.mean(losses))


def write_log(folder: Path, row: dict) -> None:
    path = folder / "log.csv"
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def plot_curves(folder: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no curves.png")
        return
    with open(folder / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    ep = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ep, [float(r["train_loss"]) for r in rows], label="train loss")
    val = [(int(r["epoch"]), float(r["val_dice"])) for r in rows if r["val_dice"]]
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "o-", color="tab:orange", label="val mean Dice")
        ax2.set_ylabel("mean Dice"), ax2.set_ylim(0, 1)
    ax.set_xlabel("epoch"), ax.set_ylabel("loss"), ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(folder / "curves.png", dpi=80)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(args.epochs, args.iters, args.batch, args.lr, val_every=args.val_every, seed=args.seed)
    plans = load_plans(args.work / "plans.json")
    device, warning = resolve_device(args.device)
    if warning:
        log.warning(warning)
    train_ids, val_ids = fold_cases(args.work, args.fold)
    train_cases = load_cases(args.data, args.work, plans, train_ids)
    val_cases = load_cases(args.data, args.work, plans, val_ids)
    folder = args.work / f"fold_{args.fold}"
    ckpt = Checkpoints(folder)
    torch.manual_seed(cfg.seed)
    net = build_network(plans.network, len(plans.channels), NUM_CLASSES).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    start, best = 0, -1.0
    state = None if args.restart else ckpt.load_last()
    if state is not None:
        net.load_state_dict(state["model"]), opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        rng.bit_generator.state, _ = state["np_rng"], gen.set_state(state["torch_gen"])
        start, best = state["epoch"] + 1, state["best"]
        log.info("resuming fold %s at epoch %d (best mean Dice so far %.3f)", args.fold, start, best)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        loss = train_epoch(net, opt, scaler, train_cases, plans, cfg, rng, gen, device, epoch)
        val_dice, scores = "", None
        last = epoch == cfg.epochs - 1
        if val_cases and ((epoch + 1) % cfg.val_every == 0 or last):
            scores = validate(net, val_cases, plans, device)
            val_dice = scores["mean"]
        state = {"epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(),
                 "scaler": scaler.state_dict(), "np_rng": rng.bit_generator.state,
                 "torch_gen": gen.get_state(), "best": best, "config": vars(cfg), "fold": args.fold}
        if scores is not None and scores["mean"] > best:
            best = state["best"] = scores["mean"]
            ckpt.save("checkpoint_best.pt", state)
            (folder / "val_dice.json").write_text(json.dumps({"epoch": epoch, **scores}, indent=1))
        ckpt.save("checkpoint_last.pt", state)
        write_log(folder, {"epoch": epoch, "train_loss": f"{loss:.4f}", "val_dice": val_dice and f"{val_dice:.4f}",
                           "lr": f"{opt.param_groups[0]['lr']:.2e}", "seconds": f"{time.perf_counter() - t0:.1f}"})
        plot_curves(folder)
        log.info("epoch %d/%d loss %.4f%s (%.0f s)", epoch + 1, cfg.epochs, loss,
                 f" val mean Dice {val_dice:.3f}" if val_dice != "" else "", time.perf_counter() - t0)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train one fold from a planned work folder.")
    ap.add_argument("--data", type=Path, required=True, help="raw dataset folder (case_XX/...)")
    ap.add_argument("--work", type=Path, required=True, help="work folder made by training.plan")
    ap.add_argument("--fold", default="0", help="fold index from splits.json, or 'all'")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--iters", type=int, default=250, help="iterations per epoch")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--restart", action="store_true", help="ignore checkpoint_last.pt")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
