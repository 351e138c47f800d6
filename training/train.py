"""Train one fold (or all cases) from a planned work folder.

    python -m training.train --data DATA_RAW --work WORK [--fold 0|all] [--epochs 100]
        [--iters 250] [--batch 2] [--lr 1e-3] [--val-every 5] [--seed 0] [--device auto]
        [--loss dice_ce|dynamic|tvmf|bce] [--optimizer adamw|adam|sgd]
        [--init-from PATH [--input-init zero|replicate]] [--freeze none|encoder|all-but-last:N]

Multi-process: ``torchrun --standalone --nproc_per_node N -m training.train ...`` (see
:mod:`training.distributed`). Transfer learning: :mod:`training.transfer`. Losses:
:mod:`training.losses`.

Resumes from ``WORK/fold_<k>/checkpoint_last.pt`` when it exists (``--restart`` to start
over). Writes per fold: ``checkpoint_last.pt``, ``checkpoint_best.pt`` (best mean validation
Dice), ``log.csv`` (one row per epoch), ``curves.png``, ``val_dice.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch

from .dataset import find_raw_cases
from hanseg.inference import resolve_device
from hanseg.labels import NUM_CLASSES
from hanseg.networks import build_network
from hanseg.plans import Plans, load_plans, plans_from_json

from . import distributed as ddp
from .data import CachedCase, augment, cache_case, load_cached, sample_patch
from .losses import LOSSES, SegLoss, make_loss
from .transfer import FREEZE_HELP, apply_freeze, frozen_parameter_names, init_from, train_mode
from .validate import validate

log = logging.getLogger("training.train")
T = TypeVar("T")


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
    loss: str = "dice_ce"
    optimizer: str = "adamw"
    init_from: str | None = None
    input_init: str = "zero"
    freeze: str = "none"
    elastic: float = 0.0
    lowres: float = 0.0
    reslice: float = 0.0
    warmup: int = 0  # steps of linear learning-rate warm-up at the start of training
    amp: str = "auto"
    time_budget: float | None = None  # seconds for this run; lowers ``epochs`` to fit (see fit_epochs)


def fold_cases(work: Path, fold: str) -> tuple[list[str], list[str]]:
    splits = json.loads((work / "splits.json").read_text())["folds"]
    if fold == "all":
        ids = sorted(set(splits[0]["train"]) | set(splits[0]["val"]))
        return ids, []
    k = int(fold)
    if not 0 <= k < len(splits):
        raise SystemExit(f"--fold {fold}: splits.json has folds 0..{len(splits) - 1}")
    return splits[k]["train"], splits[k]["val"]


def cache_cases(data: Path, work: Path, plans: Plans, ids: list[str], workers: int = 1) -> list[Path]:
    """The preprocessed cache file of each case, made where it is missing or stale; with
    ``workers`` > 1 in that many processes, each with its share of SimpleITK's threads."""
    raw = {c.case_id: c for c in find_raw_cases(data)}
    missing = [i for i in ids if i not in raw]
    if missing:
        raise SystemExit(f"cases in splits.json not found in {data}: {', '.join(missing)}")
    if workers <= 1:
        return [cache_case(raw[i], plans, work / "cache") for i in ids]
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(threads,)) as pool:
        n = len(ids)  # plans travel as their JSON (the frozen mapping of network kwargs does not pickle)
        return list(pool.map(_cache_from_json, [raw[i] for i in ids], [plans.to_json()] * n, [work / "cache"] * n))


def _cache_from_json(case, plans_json: dict, cache_dir: Path) -> Path:
    return cache_case(case, plans_from_json(plans_json), cache_dir)


def _worker_init(threads: int) -> None:
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_cases(data: Path, work: Path, plans: Plans, ids: list[str]) -> list[CachedCase]:
    return [load_cached(path) for path in cache_cases(data, work, plans, ids)]


def sample_batch(cases: list[CachedCase], plans: Plans, cfg: TrainConfig, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cfg.batch`` patches (images, labels, present) cut on the CPU (cheap slicing)."""
    images, labels, present = [], [], []
    for _ in range(cfg.batch):
        case = cases[int(rng.integers(len(cases)))]
        img, lab = sample_patch(case, plans.patch_size_zyx, rng, cfg.fg_fraction)
        images.append(img), labels.append(lab), present.append(case.present)
    return np.stack(images), np.stack(labels), np.stack(present)


def augment_batch(batch: tuple[np.ndarray, np.ndarray, np.ndarray], cfg: TrainConfig, gen: torch.Generator,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch moved to ``device`` and augmented there (on a GPU the resampling would
    otherwise starve the network)."""
    image, label, pres = (torch.from_numpy(a).to(device) for a in batch)
    return augment(image, label, pres, gen, elastic=cfg.elastic, lowres=cfg.lowres,
                   reslice=cfg.reslice)


def prefetched(make: Callable[[], T], n: int, depth: int = 3) -> Iterator[T]:
    """``make()`` called ``n`` times in order by one background thread, up to ``depth`` ahead.
    The calls and their random draws happen in the same order as in a plain loop, and all
    ``n`` are done when the iteration ends, so generator states at epoch ends (kept by
    checkpoints) are exactly those of the plain loop. Patch cutting (NumPy, which releases the
    GIL) then overlaps the GPU's step instead of waiting for it."""
    out: queue.Queue = queue.Queue(maxsize=depth)

    def work() -> None:
        try:
            for _ in range(n):
                out.put((True, make()))
        except BaseException as exc:  # handed to the consumer, raised there
            out.put((False, exc))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    for _ in range(n):
        ok, item = out.get()
        if not ok:
            raise item
        yield item
    thread.join()


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


def progress(iterable, desc: str, total: int | None = None):
    """A tqdm bar on an interactive terminal; plain iteration in logs, CI and without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=not sys.stderr.isatty())


def poly_lr(base: float, step: int, total: int) -> float:
    return base * (1 - min(step, total - 1) / total) ** 0.9


@dataclass
class Trainer:
    """What one training step needs; ``net`` may be DDP-wrapped."""

    net: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss: SegLoss
    frozen_norms: list[str]
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast dtype of the forward pass; None: fp32


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: ``auto`` is fp16 on CUDA (with a gradient scaler) and fp32 on the CPU;
    ``bf16`` autocasts to bfloat16 on either (no scaler needed: bfloat16 has fp32's range);
    ``off`` is fp32. Weights and optimiser state stay fp32 in every case."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def train_epoch(tr: Trainer, cases, plans, cfg, rng, gen, epoch) -> float:
    tr.net.train()
    train_mode(ddp.unwrap(tr.net), tr.frozen_norms)
    params = [p for p in tr.net.parameters() if p.requires_grad]
    losses = []
    batches = prefetched(lambda: sample_batch(cases, plans, cfg, rng), cfg.iters)
    for it, batch in progress(enumerate(batches), f"epoch {epoch + 1}/{cfg.epochs}", cfg.iters):
        step, total = epoch * cfg.iters + it, cfg.epochs * cfg.iters
        for group in tr.opt.param_groups:
            group["lr"] = poly_lr(cfg.lr, step, total) * min(1.0, (step + 1) / max(cfg.warmup, 1))
        image, label, present = augment_batch(batch, cfg, gen, tr.device)
        label = label.long()
        tr.opt.zero_grad(set_to_none=True)
        with torch.autocast(tr.device.type, dtype=tr.amp_dtype or torch.float32, enabled=tr.amp_dtype is not None):
            logits = tr.net(image)
        loss = tr.loss(logits.float(), label, present, step / total)
        tr.scaler.scale(loss).backward()
        tr.scaler.unscale_(tr.opt)
        torch.nn.utils.clip_grad_norm_(params, 12.0)
        tr.scaler.step(tr.opt)
        tr.scaler.update()
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


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Only the trainable parameters: frozen ones get neither steps nor weight decay."""
    params = [p for p in net.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.99, nesterov=True, weight_decay=3e-5)  # nnU-Net's


def build_model(plans: Plans, cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    """The plan's network, initialised (``--init-from``) and frozen (``--freeze``)."""
    n_in = len(plans.channels)
    net = build_network(plans.network, n_in, NUM_CLASSES)
    if cfg.init_from:
        init_from(net, lambda i, o: build_network(plans.network, i, o), n_in, NUM_CLASSES,
                  Path(cfg.init_from), cfg.input_init)
    frozen_norms = apply_freeze(net, frozen_parameter_names(net, plans.network.name, cfg.freeze))
    return net.to(device), frozen_norms


def class_counts(cases: list[CachedCase]) -> np.ndarray:
    """Voxels per class over the training cases (sets the weighted-CE weights)."""
    return sum(np.bincount(c.labels.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] for c in cases)


RESUME_MUST_MATCH = ("loss", "optimizer", "freeze")


def resume(tr: Trainer, state: dict, rng, gen, ctx: ddp.DistContext, cfg: TrainConfig) -> tuple[int, float]:
    before = state.get("config") or {}
    changed = [f"--{k} {before[k]} (now {getattr(cfg, k)})" for k in RESUME_MUST_MATCH
               if k in before and before[k] != getattr(cfg, k)]
    if changed:
        raise SystemExit(f"the checkpoint was trained with {', '.join(changed)}: resume with the same "
                         "settings, or start over with --restart")
    ddp.unwrap(tr.net).load_state_dict(state["model"]), tr.opt.load_state_dict(state["optimizer"])
    tr.scaler.load_state_dict(state["scaler"]), tr.loss.load_state_dict(state.get("loss", {}))
    # checkpoints written before multi-process training kept one RNG pair
    rngs = state.get("rank_rng") or [{"np": state["np_rng"], "torch": state["torch_gen"]}]
    if len(rngs) == ctx.world:
        rng.bit_generator.state, _ = rngs[ctx.rank]["np"], gen.set_state(rngs[ctx.rank]["torch"])
    else:
        log.warning("checkpoint from %d process(es), now %d: the patch streams restart from the seed",
                    len(rngs), ctx.world)
    return state["epoch"] + 1, state["best"]


def save_epoch(tr: Trainer, ckpt: Checkpoints, folder: Path, epoch: int, cfg: TrainConfig, fold: str,
               best: float, scores: dict | None, rank_info: list[dict]) -> float:
    """Checkpoints (last, and best when validation improved) and the validation file; rank 0."""
    state = {"epoch": epoch, "model": ddp.unwrap(tr.net).state_dict(), "optimizer": tr.opt.state_dict(),
             "scaler": tr.scaler.state_dict(), "loss": tr.loss.state_dict(),
             "rank_rng": [r["rng"] for r in rank_info],
             "ranks": [{k: v for k, v in r.items() if k != "rng"} for r in rank_info],
             "best": best, "config": vars(cfg), "fold": fold}
    if scores is not None and scores["mean"] > best:
        best = state["best"] = scores["mean"]
        ckpt.save("checkpoint_best.pt", state)
        (folder / "val_dice.json").write_text(json.dumps({"epoch": epoch, **scores}, indent=1))
    ckpt.save("checkpoint_last.pt", state)
    return best


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    cfg = TrainConfig(args.epochs, args.iters, args.batch, args.lr, val_every=args.val_every, seed=args.seed,
                      loss=args.loss, optimizer=args.optimizer, init_from=args.init_from and str(args.init_from),
                      input_init=args.input_init, freeze=args.freeze, elastic=args.elastic,
                      lowres=args.lowres, reslice=args.reslice, warmup=args.warmup, amp=args.amp,
                      time_budget=args.time_budget)
    plans = load_plans(args.work / "plans.json")
    device, warning = resolve_device(args.device)
    if warning:
        log.warning(warning)
    ctx = ddp.init_distributed(device)
    device = ddp.rank_device(device, ctx)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one patch shape all run long: pick the fastest kernels once
    try:
        return train_fold(args, cfg, plans, device, ctx, t_start)
    finally:
        ddp.shutdown(ctx)


def train_fold(args: argparse.Namespace, cfg: TrainConfig, plans: Plans, device: torch.device,
               ctx: ddp.DistContext, t_start: float | None = None) -> int:
    train_ids, val_ids = fold_cases(args.work, args.fold)
    if ctx.is_main:  # rank 0 fills the cache first; the others then only read it
        cache_cases(args.data, args.work, plans, train_ids + val_ids, args.workers)
    ddp.barrier(ctx)
    train_cases = load_cases(args.data, args.work, plans, ddp.shard(train_ids, ctx))
    val_cases = load_cases(args.data, args.work, plans, val_ids) if ctx.is_main else []
    folder = args.work / f"fold_{args.fold}"
    ckpt = Checkpoints(folder)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP broadcasts them anyway)
    state = None if args.restart else ckpt.load_last()
    if state is not None and cfg.init_from:
        log.info("resuming: --init-from is not applied again (the checkpoint holds the weights)")
    net, frozen_norms = build_model(plans, cfg if state is None else replace(cfg, init_from=None), device)
    counts = ddp.sum_over_ranks(class_counts(train_cases), ctx) if cfg.loss == "dynamic" else None
    loss = make_loss(cfg.loss, NUM_CLASSES, counts)
    amp = amp_dtype(cfg.amp, device)
    tr = Trainer(ddp.wrap(net, ctx, device), make_optimizer(net, cfg),
                 torch.amp.GradScaler(device.type, enabled=amp == torch.float16), loss, frozen_norms, device, amp)
    rng = np.random.default_rng(cfg.seed if ctx.rank == 0 else [cfg.seed, ctx.rank])
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * ctx.rank)
    start, best = 0, -1.0
    if state is not None:
        start, best = resume(tr, state, rng, gen, ctx, cfg)
        log.info("resuming fold %s at epoch %d (best mean Dice so far %.3f)", args.fold, start, best)
    clock = EpochClock(time.perf_counter() if t_start is None else t_start)
    epoch, ceiling = start, cfg.epochs
    while epoch < cfg.epochs:
        cfg = fit_epochs(cfg, epoch, clock, ctx, ceiling)
        best, took = run_epoch(tr, train_cases, val_cases, plans, cfg, rng, gen, epoch, ckpt, folder, args.fold,
                               ctx, best)
        clock.record(*took)
        epoch += 1
    return 0


@dataclass
class EpochClock:
    """Wall time of this run's epochs, split into training and validation seconds."""

    start: float
    train_s: list[float] = field(default_factory=list)
    val_s: list[float] = field(default_factory=list)

    def record(self, train_s: float, val_s: float | None) -> None:
        self.train_s.append(train_s)
        if val_s is not None:
            self.val_s.append(val_s)


def epochs_within(seconds: float, train_s: float, val_s: float, val_every: int) -> int:
    """How many more epochs fit in ``seconds`` when each trains for ``train_s`` and every
    ``val_every``-th one, and the last, also validates for ``val_s``."""
    n = 0
    while (n + 1) * train_s + ((n + 1) // val_every + 1) * val_s <= seconds:
        n += 1
    return n


def fit_epochs(cfg: TrainConfig, epoch: int, clock: EpochClock, ctx: ddp.DistContext,
               ceiling: int | None = None) -> TrainConfig:
    """With ``--time-budget``: before each epoch after the first of this run, set
    ``cfg.epochs`` to what still fits (never below the epoch about to run, never above
    ``ceiling``, the ``--epochs`` asked for), from the median measured epoch. A validation not
    yet measured is costed as one training epoch; once measured, the estimate may rise again.
    The poly learning rate then decays to the new end, and the last epoch still validates and
    saves. Rank 0 decides for all ranks, so they stop together."""
    if cfg.time_budget is None or not clock.train_s:
        return cfg
    ceiling = cfg.epochs if ceiling is None else ceiling
    train_s = float(np.median(clock.train_s))  # the median: the first epoch also tunes cuDNN
    val_s = float(np.median(clock.val_s)) if clock.val_s else train_s
    left = cfg.time_budget - (time.perf_counter() - clock.start)
    fit = epoch + max(1, epochs_within(left, train_s, val_s, cfg.val_every))
    fit = ddp.gather(min(fit, ceiling), ctx)[0]
    if fit != cfg.epochs:
        log.info("time budget: %.0f s left, %.1f s per epoch (+%.1f s per validation): ending after epoch %d",
                 left, train_s, val_s, fit)
        cfg = replace(cfg, epochs=fit)
    return cfg


def run_epoch(tr: Trainer, train_cases, val_cases, plans, cfg, rng, gen, epoch, ckpt, folder, fold,
              ctx: ddp.DistContext, best: float) -> tuple[float, tuple[float, float | None]]:
    """One epoch: train, then (rank 0) validate, checkpoint and log. Returns the best Dice and
    the seconds spent training and validating (None: no validation this epoch)."""
    t0 = time.perf_counter()
    own_loss = train_epoch(tr, train_cases, plans, cfg, rng, gen, epoch)
    loss = ddp.mean_over_ranks(own_loss, ctx)
    rank_info = ddp.gather({"rank": ctx.rank, "loss": own_loss, "param_sha256": ddp.param_digest(tr.net),
                            "rng": {"np": rng.bit_generator.state, "torch": gen.get_state()}}, ctx)
    t_train, t_val, scores = time.perf_counter() - t0, None, None
    if ctx.is_main and val_cases and ((epoch + 1) % cfg.val_every == 0 or epoch == cfg.epochs - 1):
        scores = validate(ddp.unwrap(tr.net), val_cases, plans, tr.device)
        t_val = time.perf_counter() - t0 - t_train
    # every rank's adaptive loss learns from rank 0's validation (before the checkpoint keeps it)
    per_class = ddp.gather(scores["per_class"] if scores else None, ctx)[0]
    if per_class:
        tr.loss.on_validation({int(c): d for c, d in per_class.items()})
    if ctx.is_main:
        if len({r["param_sha256"] for r in rank_info}) != 1:
            log.error("ranks hold different weights after epoch %d: %s", epoch, rank_info)
        best = save_epoch(tr, ckpt, folder, epoch, cfg, fold, best, scores, rank_info)
        val_dice = f"{scores['mean']:.4f}" if scores else ""
        write_log(folder, {"epoch": epoch, "train_loss": f"{loss:.4f}", "val_dice": val_dice,
                           "lr": f"{tr.opt.param_groups[0]['lr']:.2e}", "seconds": f"{time.perf_counter() - t0:.1f}"})
        plot_curves(folder)
        log.info("epoch %d/%d loss %.4f%s (%.0f s)", epoch + 1, cfg.epochs, loss,
                 f" val mean Dice {val_dice}" if val_dice else "", time.perf_counter() - t0)
    ddp.barrier(ctx)
    return best, (t_train, t_val)


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
    ap.add_argument("--loss", choices=LOSSES, default="dice_ce",
                    help="dice_ce (default); dynamic = generalised Dice + weighted CE→focal; "
                         "tvmf = adaptive t-vMF Dice; bce = per-class binary CE")
    ap.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default="adamw")
    ap.add_argument("--init-from", type=Path, help="weights to start from: a MONAI bundle folder or "
                    "model.pt, one of our model folders, or a training checkpoint")
    ap.add_argument("--input-init", choices=("zero", "replicate"), default="zero",
                    help="how input channels the source lacks start (see training/transfer.py)")
    ap.add_argument("--freeze", default="none", help=FREEZE_HELP)
    ap.add_argument("--elastic", type=float, default=0.0, metavar="P",
                    help="probability of an elastic deformation per patch (on top of the affine one)")
    ap.add_argument("--lowres", type=float, default=0.0, metavar="P",
                    help="probability of a simulated coarser scan per patch (down- and up-sampled)")
    ap.add_argument("--reslice", type=float, default=0.0, metavar="P",
                    help="probability of a patch resampled as from another voxel lattice (slice spacing "
                         "and phase; see training.data.simulate_reslicing)")
    ap.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                    help="linear learning-rate warm-up over the first STEPS steps (useful with "
                         "--init-from: fresh Adam moments would otherwise move every weight by ~lr at once)")
    ap.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                    help="auto: fp16 autocast on CUDA, fp32 on the CPU; bf16: bfloat16 autocast "
                         "(about 1.4x faster steps on CPUs with AVX-512 BF16); off: fp32")
    ap.add_argument("--time-budget", type=float, metavar="SECONDS",
                    help="end this run within about SECONDS (caching included): before each epoch, "
                         "the epoch count is set to what still fits (at most --epochs), so the learning "
                         "rate still decays to zero and the last epoch validates and saves")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for preprocessing the cache (each case is independent)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
