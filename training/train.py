"""Train one fold (or all cases) from a planned work folder.

    python -m training.train --data DATA_RAW --work WORK [--fold 0|all] [options]

``python -m training.train --help`` lists the options. The training settings among them are
the fields of :class:`training.config.TrainConfig` (the options are made from them, so the two
cannot drift), and every checkpoint records them under ``config``.

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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

if __name__ == "__main__":
    # --help and usage errors answer before torch, MONAI and the network code are imported (~5 s):
    # the command line is built by training.config, which imports none of them
    from .config import train_parser

    train_parser().parse_args()

import numpy as np
import torch

from dataset.raw import find_raw_cases
from hanseg.inference import resolve_device
from hanseg.labels import NUM_CLASSES
from hanseg.networks import build_network
from hanseg.plans import Plans, load_plans, plans_from_json

from . import distributed as ddp
from . import no_plan
from .config import TrainConfig, config_from_args, train_parser
from .data import CachedCase, augment, cache_case, load_cached, sample_patch
from .losses import SegLoss, make_loss
from .progress import Steps, bar
from .transfer import apply_freeze, frozen_parameter_names, init_from, train_mode
from .validate import validate

log = logging.getLogger("training.train")
T = TypeVar("T")
#: Without a terminal (CI, a log file), a training line every this many steps (and after an
#: epoch's last); on a terminal the bar shows every step instead.
LOG_EVERY = 50


def fold_cases(work: Path, fold: str) -> tuple[list[str], list[str]]:
    splits = json.loads((work / "splits.json").read_text())["folds"]
    if fold == "all":
        ids = sorted(set(splits[0]["train"]) | set(splits[0]["val"]))
        return ids, []
    k = int(fold)
    if not 0 <= k < len(splits):
        raise SystemExit(f"--fold {fold}: splits.json has folds 0..{len(splits) - 1}")
    return splits[k]["train"], splits[k]["val"]


def cache_cases(
    data: Path, work: Path, plans: Plans, ids: list[str], workers: int = 1, min_reliability: float = 1.0
) -> list[Path]:
    """The preprocessed cache file of each case, made where it is missing or stale; with
    ``workers`` > 1 in that many processes, each with its share of SimpleITK's threads. OARs
    that ``OAR_data.csv`` rates below ``min_reliability`` are left out (see dataset.raw)."""
    raw = {c.case_id: c for c in find_raw_cases(data, min_reliability)}
    missing = [i for i in ids if i not in raw]
    if missing:
        raise SystemExit(f"cases in splits.json not found in {data}: {', '.join(missing)}")
    if workers <= 1:
        return [cache_case(raw[i], plans, work / "cache") for i in ids]
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
    ) as pool:
        n = len(ids)  # plans travel as their JSON (the frozen mapping of network kwargs does not pickle)
        return list(pool.map(_cache_from_json, [raw[i] for i in ids], [plans.to_json()] * n, [work / "cache"] * n))


def _cache_from_json(case, plans_json: dict, cache_dir: Path) -> Path:
    return cache_case(case, plans_from_json(plans_json), cache_dir)


def _worker_init(threads: int) -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_cases(data: Path, work: Path, plans: Plans, ids: list[str], min_reliability: float = 1.0) -> list[CachedCase]:
    return [load_cached(path) for path in cache_cases(data, work, plans, ids, min_reliability=min_reliability)]


def sample_batch(
    cases: list[CachedCase], plans: Plans, cfg: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cfg.batch`` patches (images, labels, present) cut on the CPU (cheap slicing)."""
    images, labels, present = [], [], []
    for _ in range(cfg.batch):
        case = cases[int(rng.integers(len(cases)))]
        img, lab = sample_patch(case, plans.patch_size_zyx, rng, cfg.fg_fraction)
        images.append(img)
        labels.append(lab)
        present.append(case.present)
    return np.stack(images), np.stack(labels), np.stack(present)


def augment_batch(
    batch: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: TrainConfig,
    gen: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch moved to ``device`` and augmented there (on a GPU the resampling would
    otherwise starve the network)."""
    image, label, pres = (torch.from_numpy(a).to(device) for a in batch)
    return augment(
        image, label, pres, gen, mr_dropout=cfg.mr_dropout, elastic=cfg.elastic, lowres=cfg.lowres, reslice=cfg.reslice
    )


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
    """A tqdm bar on an interactive terminal; plain iteration in logs, CI and without tqdm
    (:func:`training.progress.bar`)."""
    return bar(iterable, desc, total, leave=False)


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


@dataclass
class FoldRun:
    """One fold's training as its epochs see it: what they read (cases, plan, settings) and
    what they advance (the weights in ``tr``, the random streams, the best Dice so far).
    ``cfg`` may be replaced between epochs (``--time-budget`` lowers ``epochs``)."""

    tr: Trainer
    cfg: TrainConfig
    plans: Plans
    train_cases: list[CachedCase]  # this rank's share
    rng: np.random.Generator  # patch sampling, this rank's stream
    gen: torch.Generator  # augmentation, this rank's stream
    ckpt: Checkpoints
    fold: str
    val_cases: list[CachedCase] = field(default_factory=list)  # rank 0's; none on the others
    ctx: ddp.DistContext = field(default_factory=ddp.DistContext)
    best: float = -1.0  # best mean validation Dice so far


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: ``auto`` is fp16 on CUDA (with a gradient scaler) and fp32 on the CPU;
    ``bf16`` autocasts to bfloat16 on either (no scaler needed: bfloat16 has fp32's range);
    ``off`` is fp32. Weights and optimiser state stay fp32 in every case."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def train_epoch(fr: FoldRun, epoch: int) -> float:
    """``cfg.iters`` optimiser steps; returns this rank's mean training loss."""
    tr, cfg = fr.tr, fr.cfg
    tr.net.train()
    train_mode(ddp.unwrap(tr.net), tr.frozen_norms)
    params = [p for p in tr.net.parameters() if p.requires_grad]
    losses = []
    batches = prefetched(lambda: sample_batch(fr.train_cases, fr.plans, cfg, fr.rng), cfg.iters)
    # a bar (steps, loss, seconds per step) on rank 0's terminal, else a line every LOG_EVERY steps
    with Steps(cfg.iters, f"epoch {epoch + 1}/{cfg.epochs}", log, LOG_EVERY, enabled=fr.ctx.is_main) as shown:
        for it, batch in enumerate(batches):
            step, total = epoch * cfg.iters + it, cfg.epochs * cfg.iters
            for group in tr.opt.param_groups:
                group["lr"] = poly_lr(cfg.lr, step, total) * min(1.0, (step + 1) / max(cfg.warmup, 1))
            image, label, present = augment_batch(batch, cfg, fr.gen, tr.device)
            losses.append(train_step(tr, params, image, label.long(), present, step / total, cfg.grad_clip))
            shown.update(losses[-1])
    return float(np.mean(losses))


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """The forward pass's mixed precision (``dtype`` None: fp32); weights and losses stay fp32."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def optimiser_step(
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: torch.Tensor,
    params: list[torch.nn.Parameter],
    grad_clip: float,
) -> None:
    """Backward through the gradient scaler, clip the true gradients, step (a step whose fp16
    gradients overflowed is skipped by the scaler)."""
    scaler.scale(loss).backward()
    scaler.unscale_(opt)  # clip the true gradients, not the fp16-scaled ones
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)
    scaler.update()


def train_step(
    tr: Trainer,
    params: list[torch.nn.Parameter],
    image: torch.Tensor,
    label: torch.Tensor,
    present: torch.Tensor,
    progress: float,
    grad_clip: float,
) -> float:
    """One optimiser step on one augmented batch; ``progress`` (0..1 through training) feeds
    the losses that change over training. Returns the loss."""
    tr.opt.zero_grad(set_to_none=True)
    with autocast(tr.device, tr.amp_dtype):
        logits = tr.net(image)
    loss = tr.loss(logits.float(), label, present, progress)
    optimiser_step(tr.opt, tr.scaler, loss, params, grad_clip)
    return loss.item()


def write_log(folder: Path, row: dict) -> None:
    """``row`` appended to ``folder/log.csv``. A file begun with other columns (a run resumed
    from before ``train_seconds``/``val_seconds`` were logged) is rewritten once with the union
    of both, old rows left empty in the new columns, so every row stays under its header."""
    path = folder / "log.csv"
    fields = list(row)
    rows: list[dict] = []
    if path.is_file():
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            old = list(reader.fieldnames or [])
            if old != fields:
                rows = list(reader)
        if old == fields:
            with open(path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=fields).writerow(row)
            return
        fields = old + [f for f in fields if f not in old]
    tmp = folder / ".log.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows([*rows, row])
    tmp.replace(path)


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
    """Only the trainable parameters: frozen ones get neither steps nor weight decay.
    ``cfg.weight_decay`` is already the optimiser's default when not given (see TrainConfig)."""
    params = [p for p in net.parameters() if p.requires_grad]
    decay = cfg.weight_decay
    if decay is None:  # never: TrainConfig.__post_init__ sets it
        raise ValueError("TrainConfig.weight_decay was not resolved to the optimiser's default")
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.99, nesterov=True, weight_decay=decay)


def build_model(plans: Plans, cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    """The plan's network, initialised (``--init-from``) and frozen (``--freeze``)."""
    n_in = len(plans.channels)
    net = build_network(plans.network, n_in, NUM_CLASSES)
    if cfg.init_from:
        init_from(
            net, lambda i, o: build_network(plans.network, i, o), n_in, NUM_CLASSES, Path(cfg.init_from), cfg.input_init
        )
    frozen_norms = apply_freeze(net, frozen_parameter_names(net, plans.network.name, cfg.freeze))
    return net.to(device), frozen_norms


def class_counts(cases: list[CachedCase]) -> np.ndarray:
    """Voxels per class over the training cases (sets the weighted-CE weights)."""
    counts = np.zeros(NUM_CLASSES, np.int64)
    for c in cases:
        counts += np.bincount(c.labels.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return counts


def make_trainer(
    plans: Plans, cfg: TrainConfig, device: torch.device, ctx: ddp.DistContext, train_cases: list[CachedCase]
) -> Trainer:
    """The network (initialised, frozen, DDP-wrapped), its optimiser, gradient scaler and loss."""
    net, frozen_norms = build_model(plans, cfg, device)
    counts = ddp.sum_over_ranks(class_counts(train_cases), ctx) if cfg.loss == "dynamic" else None
    loss = make_loss(cfg.loss, NUM_CLASSES, counts)
    amp = amp_dtype(cfg.amp, device)
    return Trainer(
        ddp.wrap(net, ctx, device),
        make_optimizer(net, cfg),
        torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
        loss,
        frozen_norms,
        device,
        amp,
    )


#: Settings a resumed run cannot change: the loss and optimiser states in the checkpoint, and
#: which parameters have been trained, belong to them.
RESUME_MUST_MATCH = ("loss", "optimizer", "freeze")


def resume_conflicts(state: dict, cfg: TrainConfig) -> list[str]:
    """What ``cfg`` changes that resuming from ``state`` cannot: the RESUME_MUST_MATCH settings
    its ``config`` records (older checkpoints lack newer keys: nothing to compare), and the
    weight decay. That one is read from the optimiser state, which the resumed optimiser
    keeps, rather than from ``config``: older checkpoints recorded 1e-5 whatever the optimiser."""
    before = state.get("config") or {}
    changed = [
        f"--{k.replace('_', '-')} {before[k]} (now {getattr(cfg, k)})"
        for k in RESUME_MUST_MATCH
        if k in before and before[k] != getattr(cfg, k)
    ]
    groups = (state.get("optimizer") or {}).get("param_groups") or [{}]
    used = groups[0].get("weight_decay")
    if used is not None and used != cfg.weight_decay:
        changed.append(f"--weight-decay {used} (now {cfg.weight_decay})")
    return changed


def resume(fr: FoldRun, state: dict) -> int:
    """Weights, optimiser, scaler, loss state, random streams and best Dice from a checkpoint;
    returns the epoch to continue at."""
    changed = resume_conflicts(state, fr.cfg)
    if changed:
        raise SystemExit(
            f"the checkpoint was trained with {', '.join(changed)}: resume with the same "
            "settings, or start over with --restart"
        )
    tr = fr.tr
    ddp.unwrap(tr.net).load_state_dict(state["model"])
    tr.opt.load_state_dict(state["optimizer"])
    tr.scaler.load_state_dict(state["scaler"])
    tr.loss.load_state_dict(state.get("loss", {}))
    # checkpoints written before multi-process training kept one RNG pair
    rngs = state.get("rank_rng") or [{"np": state["np_rng"], "torch": state["torch_gen"]}]
    if len(rngs) == fr.ctx.world:
        fr.rng.bit_generator.state = rngs[fr.ctx.rank]["np"]
        fr.gen.set_state(rngs[fr.ctx.rank]["torch"])
    else:
        log.warning(
            "checkpoint from %d process(es), now %d: the patch streams restart from the seed", len(rngs), fr.ctx.world
        )
    fr.best = state["best"]
    return state["epoch"] + 1


def save_epoch(fr: FoldRun, epoch: int, scores: dict | None, rank_info: list[dict]) -> None:
    """Checkpoints (last, and best when validation improved: ``fr.best`` rises then) and the
    validation file; rank 0."""
    tr = fr.tr
    state = {
        "epoch": epoch,
        "model": ddp.unwrap(tr.net).state_dict(),
        "optimizer": tr.opt.state_dict(),
        "scaler": tr.scaler.state_dict(),
        "loss": tr.loss.state_dict(),
        "rank_rng": [r["rng"] for r in rank_info],
        "ranks": [{k: v for k, v in r.items() if k != "rng"} for r in rank_info],
        "best": fr.best,
        "config": vars(fr.cfg),
        "fold": fr.fold,
    }
    if scores is not None and scores["mean"] > fr.best:
        fr.best = state["best"] = scores["mean"]
        fr.ckpt.save("checkpoint_best.pt", state)
        (fr.ckpt.folder / "val_dice.json").write_text(json.dumps({"epoch": epoch, **scores}, indent=1))
    fr.ckpt.save("checkpoint_last.pt", state)


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    cfg = config_from_args(args)
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


def train_fold(
    args: argparse.Namespace,
    cfg: TrainConfig,
    plans: Plans,
    device: torch.device,
    ctx: ddp.DistContext,
    t_start: float | None = None,
) -> int:
    train_ids, val_ids = fold_cases(args.work, args.fold)
    if ctx.is_main:  # rank 0 fills the cache first; the others then only read it
        cache_cases(args.data, args.work, plans, train_ids + val_ids, args.workers, cfg.min_oar_reliability)
    ddp.barrier(ctx)
    train_cases = load_cases(args.data, args.work, plans, ddp.shard(train_ids, ctx), cfg.min_oar_reliability)
    val_cases = load_cases(args.data, args.work, plans, val_ids, cfg.min_oar_reliability) if ctx.is_main else []
    ckpt = Checkpoints(args.work / f"fold_{args.fold}")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP broadcasts them anyway)
    state = None if args.restart else ckpt.load_last()
    if state is not None and cfg.init_from:
        log.info("resuming: --init-from is not applied again (the checkpoint holds the weights)")
    tr = make_trainer(plans, cfg if state is None else replace(cfg, init_from=None), device, ctx, train_cases)
    rng = np.random.default_rng(cfg.seed if ctx.rank == 0 else [cfg.seed, ctx.rank])
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * ctx.rank)
    fr = FoldRun(tr, cfg, plans, train_cases, rng, gen, ckpt, args.fold, val_cases, ctx)
    epoch = 0
    if state is not None:
        epoch = resume(fr, state)
        log.info("resuming fold %s at epoch %d (best mean Dice so far %.3f)", args.fold, epoch, fr.best)
    clock = EpochClock(time.perf_counter() if t_start is None else t_start)
    ceiling = cfg.epochs  # --epochs: what --time-budget may lower, never raise
    while epoch < fr.cfg.epochs:
        fr.cfg = fit_epochs(fr.cfg, epoch, clock, ctx, ceiling)
        clock.record(*run_epoch(fr, epoch))
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


def fit_epochs(
    cfg: TrainConfig, epoch: int, clock: EpochClock, ctx: ddp.DistContext, ceiling: int | None = None
) -> TrainConfig:
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
        log.info(
            "time budget: %.0f s left, %.1f s per epoch (+%.1f s per validation): ending after epoch %d",
            left,
            train_s,
            val_s,
            fit,
        )
        cfg = replace(cfg, epochs=fit)
    return cfg


def run_epoch(fr: FoldRun, epoch: int) -> tuple[float, float | None]:
    """One epoch: train, then (rank 0) validate, checkpoint and log; ``fr.best`` follows the
    validation. Returns the seconds spent training and validating (None: no validation)."""
    tr, cfg, ctx = fr.tr, fr.cfg, fr.ctx
    t0 = time.perf_counter()
    own_loss = train_epoch(fr, epoch)
    loss = ddp.mean_over_ranks(own_loss, ctx)
    rank_info = ddp.gather(
        {
            "rank": ctx.rank,
            "loss": own_loss,
            "param_sha256": ddp.param_digest(tr.net),
            "rng": {"np": fr.rng.bit_generator.state, "torch": fr.gen.get_state()},
        },
        ctx,
    )
    t_train, t_val, scores = time.perf_counter() - t0, None, None
    if ctx.is_main and fr.val_cases and ((epoch + 1) % cfg.val_every == 0 or epoch == cfg.epochs - 1):
        log.info("epoch %d/%d: validating on %d case(s)", epoch + 1, cfg.epochs, len(fr.val_cases))
        scores = validate(ddp.unwrap(tr.net), fr.val_cases, fr.plans, tr.device, overlap=cfg.val_overlap)
        t_val = time.perf_counter() - t0 - t_train
        log.info("epoch %d/%d: validation done in %.1f s, mean Dice %.4f", epoch + 1, cfg.epochs, t_val, scores["mean"])
    # every rank's adaptive loss learns from rank 0's validation (before the checkpoint keeps it)
    per_class = ddp.gather(scores["per_class"] if scores else None, ctx)[0]
    if per_class:
        tr.loss.on_validation({int(c): d for c, d in per_class.items()})
    if ctx.is_main:
        if len({r["param_sha256"] for r in rank_info}) != 1:
            log.error("ranks hold different weights after epoch %d: %s", epoch, rank_info)
        save_epoch(fr, epoch, scores, rank_info)
        log_epoch(fr, epoch, loss, scores, time.perf_counter() - t0, t_train, t_val)
    ddp.barrier(ctx)
    return t_train, t_val


def log_epoch(
    fr: FoldRun,
    epoch: int,
    loss: float,
    scores: dict | None,
    seconds: float,
    train_s: float | None = None,
    val_s: float | None = None,
) -> None:
    """The epoch's row of ``log.csv``, the curves and the log line; rank 0. ``seconds``: the
    whole epoch (training, validation, checkpoints); ``train_s``/``val_s`` its training and
    validation (empty in the row when there was none)."""
    folder = fr.ckpt.folder
    val_dice = f"{scores['mean']:.4f}" if scores else ""
    write_log(
        folder,
        {
            "epoch": epoch,
            "train_loss": f"{loss:.4f}",
            "val_dice": val_dice,
            "lr": f"{fr.tr.opt.param_groups[0]['lr']:.2e}",
            "seconds": f"{seconds:.1f}",
            "train_seconds": "" if train_s is None else f"{train_s:.1f}",
            "val_seconds": "" if val_s is None else f"{val_s:.1f}",
        },
    )
    plot_curves(folder)
    log.info(
        "epoch %d/%d loss %.4f%s (%.0f s)",
        epoch + 1,
        fr.cfg.epochs,
        loss,
        f" val mean Dice {val_dice}" if val_dice else "",
        seconds,
    )


#: the command line (built in training.config, so that --help needs no torch)
build_parser = train_parser


def main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    if not (args.work / "plans.json").is_file():
        sys.stderr.write(f"python -m training.train: error: {no_plan(args.work, args.data)}\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
