"""Self-supervised pretraining of a planned network on unlabelled scans, for ``--init-from``.

    python -m training.pretrain --images UNLABELLED --work WORK [--steps 2000] [--objectives ...]

``WORK/plans.json`` (from ``training.plan`` on the labelled data) names the network and the
preprocessing; the scans go through the same ``hanseg.preprocess.preprocess_case`` as
training and inference (registration, crop, spacing, normalisation), so the encoder sees what
fine-tuning will feed it. ``UNLABELLED`` is a HaN-Seg raw layout (``case_XX/..._IMG_CT.nrrd``
and ``_IMG_MR_T1.nrrd``; masks ignored) or a folder of images (.nrrd, .mha, .nii.gz, ...):
``<id>_CT.<ext>`` with an optional ``<id>_MR_T1.<ext>``, and any other image taken as a CT;
or a folder of DICOM files as a PACS exports them (any names and nesting), where each study's
planning CT and T1 MR are chosen by the rules of ``process.py``'s DICOM layout
(``--series-rules`` overrides them). A scan that cannot be read is logged, listed under
``skipped`` in ``pretrain.json`` and left out: one broken export among thousands of
unlabelled scans does not stop the run.

The objectives of the SwinUNETR self-supervised recipe (Tang et al. 2022), each switched on
or off with ``--objectives``; two augmented views of every patch go through the network:

- ``inpaint``: cuboids of each view are dropped (MONAI's ``RandCoarseDropout``) and the
  network's output (one channel per input channel) must restore the view (L1);
- ``rotation``: each view is turned by 0/90/180/270° in the axial plane (0/180° where the
  patch is not square in-plane) and a head on the pooled bottleneck features tells which;
- ``contrastive``: a projection of the two views' pooled bottleneck features is pulled
  together and pushed from the other patches' (MONAI's ``ContrastiveLoss``).

Writes to ``--out`` (default ``WORK/pretrain``): ``pretrained.pt`` (the network's state dict:
``training.train --init-from .../pretrained.pt [--freeze encoder]``; its output layer, sized
for reconstruction, is replaced by a new 31-class head there), ``checkpoint_last.pt`` (resumed
unless ``--restart``), ``log.csv``, ``curves.png`` and ``pretrain.json`` (settings, steps,
seconds, scans). Works for every network kind whose bottleneck :data:`BOTTLENECKS` names.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import operator
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __name__ == "__main__":
    # --help and usage errors answer before torch, MONAI and training.train are imported (~5 s):
    # the command line is built by training.config, which imports none of them
    from .config import pretrain_parser

    pretrain_parser().parse_args()

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from monai.losses import ContrastiveLoss
from monai.transforms import RandCoarseDropout
from torch import nn

from dataset.raw import find_raw_cases
from hanseg.dicom.scan import scan_folder
from hanseg.dicom.select import SelectionRules, StudySelection, rules_from_json
from hanseg.errors import HansegError
from hanseg.folders import has_dicom
from hanseg.inference import resolve_device
from hanseg.io import IMAGE_SUFFIXES, image_suffix, read_image
from hanseg.layouts.dicom import read_study, select_all
from hanseg.networks import build_network
from hanseg.plans import Plans, load_plans
from hanseg.preprocess import preprocess_case

from . import distributed as ddp
from . import no_plan
from .config import OBJECTIVES, PretrainConfig, pretrain_config_from_args, pretrain_parser
from .data import CachedCase, augment, preprocessing_key, sample_patch
from .train import Checkpoints, amp_dtype, optimiser_step, poly_lr, progress, write_log
from .train import autocast as autocast_of

log = logging.getLogger("training.pretrain")


class PretrainError(HansegError):
    """The unlabelled scans or the settings cannot be used for pretraining."""


@dataclass(frozen=True)
class Scan:
    """One unlabelled scan in image files: a CT and, when there is one, its T1 MR."""

    scan_id: str
    ct: Path
    mr: Path | None = None

    @property
    def has_mr(self) -> bool:
        return self.mr is not None

    def read(self) -> tuple[sitk.Image, sitk.Image | None]:
        return read_image(self.ct), read_image(self.mr) if self.mr else None

    def source(self) -> str:
        """The files behind the scan (path, size, time): another folder's scan of the same id
        or a rewritten file is not taken for the cached one."""
        return "|".join(_file_source(p) for p in (self.ct, self.mr) if p is not None)


@dataclass(frozen=True)
class DicomScan:
    """One DICOM study's selected planning CT and T1 MR; named by the CT's SeriesInstanceUID
    (a cache file name that carries no patient name and changes when the series does)."""

    scan_id: str
    selection: StudySelection
    rules: SelectionRules

    @property
    def has_mr(self) -> bool:
        return self.selection.mr is not None

    def read(self) -> tuple[sitk.Image, sitk.Image | None]:
        volumes = read_study(self.selection, self.rules)
        return volumes.ct, volumes.mr

    def source(self) -> str:
        """The series behind the scan: UIDs and instance counts (a resent series with more or
        fewer slices, or another T1, is preprocessed again)."""
        series = [s for s in (self.selection.ct, self.selection.mr) if s is not None]
        return "|".join(f"{s.series_uid}:{len(s.instances)}" for s in series)


def _file_source(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


AnyScan = Scan | DicomScan


# --- finding and preprocessing the scans ------------------------------------------------------


def dicom_scans(root: Path, rules: SelectionRules) -> list[DicomScan]:
    """The studies of a DICOM folder that have a planning CT (with the DICOM layout's rules;
    studies without one, and unreadable files, are logged by the selection and left out)."""
    scan = scan_folder(root)
    for item in scan.unreadable:
        log.warning("not DICOM or unreadable, left out: %s (%s)", item.path, item.reason)
    chosen, failed, _ = select_all(scan, rules)
    for entry in failed:
        log.warning("left out: %s", entry["error_messages"][0])
    if not chosen:
        raise PretrainError(
            f"no study with a usable planning CT under {root} "
            f"({len(scan.studies)} DICOM study(ies), {len(scan.unreadable)} unreadable file(s))"
        )
    return [DicomScan(sel.ct.series_uid, sel, rules) for sel in chosen]


def find_scans(root: Path, rules: SelectionRules | None = None) -> Sequence[AnyScan]:
    """The scans under ``root``: a HaN-Seg raw layout (masks ignored), a DICOM folder, or a
    folder of images."""
    root = Path(root)
    if not root.is_dir():
        raise PretrainError(f"--images {root}: not a folder")
    if has_dicom(root):
        return dicom_scans(root, rules or SelectionRules())
    if any(p.is_dir() for p in root.glob("case_*")):
        return [Scan(c.case_id, c.ct, c.mr) for c in find_raw_cases(root)]
    images = sorted(p for p in root.rglob("*") if p.is_file() and image_suffix(p))
    mr = {_stem(p).removesuffix("_MR_T1"): p for p in images if _stem(p).endswith("_MR_T1")}
    scans = [
        Scan(_stem(p).removesuffix("_CT"), p, mr.get(_stem(p).removesuffix("_CT")))
        for p in images
        if not _stem(p).endswith("_MR_T1")
    ]
    if not scans:
        raise PretrainError(
            f"no scans under {root}: expected a HaN-Seg raw layout (case_XX/), DICOM files "
            f"or image files ({', '.join(IMAGE_SUFFIXES)})"
        )
    return scans


def _stem(path: Path) -> str:
    return path.name[: -len(image_suffix(path) or "")]


def cache_scan(scan: AnyScan, plans: Plans, cache_dir: Path) -> Path:
    """``preprocess_case`` of one scan into ``cache_dir/<id>.npz``, unless there already from
    the same plan's preprocessing of the same source."""
    path, key = cache_dir / f"{scan.scan_id}.npz", preprocessing_key(plans)
    source = scan.source()
    if path.is_file():
        with np.load(path) as data:
            if str(data["key"]) == key and "source" in data and str(data["source"]) == source:
                return path
    pre = preprocess_case(*scan.read(), plans)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, key=key, source=source, image=pre.image.astype(np.float16))
    tmp.replace(path)
    log.info("cached %s: grid %s", scan.scan_id, pre.grid.shape)
    return path


def load_scan(path: Path) -> CachedCase:
    """A cached scan as training's :class:`CachedCase` with no labels: patches fall anywhere."""
    with np.load(path) as data:
        image = data["image"]
    labels = np.broadcast_to(np.uint8(0), image.shape[1:])  # shape only, no memory
    return CachedCase(path.stem, image, labels, np.zeros(31, bool), {})


@dataclass(frozen=True)
class Prepared:
    """The scans that preprocessing took, and why it left the others out."""

    scans: tuple[AnyScan, ...]
    cases: tuple[CachedCase, ...]
    skipped: tuple[dict[str, str], ...]


def prepare_scans(scans: Sequence[AnyScan], plans: Plans, cache_dir: Path) -> Prepared:
    """Preprocess (or take from the cache) every scan; one that cannot be read or preprocessed
    is logged and left out, and none at all is an error that gives the reasons."""
    kept, cases, skipped = [], [], []
    for scan in scans:
        try:
            cases.append(load_scan(cache_scan(scan, plans, cache_dir)))
            kept.append(scan)
        except (HansegError, ValueError, OSError, MemoryError) as exc:
            log.warning("scan %s left out: %s", scan.scan_id, exc)
            skipped.append({"scan": scan.scan_id, "reason": str(exc)})
    if not cases:
        reasons = "; ".join(f"{s['scan']}: {s['reason']}" for s in skipped[:3])
        raise PretrainError(f"none of the {len(scans)} scan(s) could be used ({reasons})")
    return Prepared(tuple(kept), tuple(cases), tuple(skipped))


# --- the network with its self-supervision heads ----------------------------------------------


def _monai_unet_bottom(net: nn.Module) -> nn.Module:
    """MONAI's UNet nests ``Sequential(down, SkipConnection(inner), up)``; the bottom is the
    innermost SkipConnection's submodule."""
    level = net.get_submodule("model")
    while isinstance(inner := level.get_submodule("1.submodule"), nn.Sequential) and len(inner) == 3:
        level = inner
    return level.get_submodule("1.submodule")


#: The module whose output is a network's deepest encoder features, by plans.json class name.
BOTTLENECKS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "UNet": _monai_unet_bottom,
    "DynUNet": lambda net: net.get_submodule("bottleneck"),
    "SwinUNETR": lambda net: net.get_submodule("encoder10"),
    "SegResNet": lambda net: list(net.get_submodule("down_layers").children())[-1],
    "SliceFCN": lambda net: net.get_submodule("backbone"),
}


def pooled(features: torch.Tensor, batch: int) -> torch.Tensor:
    """``(N, F, ...)`` features → ``(batch, F)``: averaged over space, and over the slices of a
    2.5D network (whose N is batch × slices)."""
    flat = features.flatten(2).mean(2)
    return flat.reshape(batch, -1, flat.shape[1]).mean(1)


class SelfSupervised(nn.Module):
    """The plan's network (output = one channel per input channel, for inpainting) plus a
    rotation head and a contrastive projection on its pooled bottleneck features."""

    def __init__(
        self, net: nn.Module, network_name: str, channels: int, patch_zyx: tuple[int, ...], rotations: int
    ) -> None:
        super().__init__()
        if network_name not in BOTTLENECKS:
            raise PretrainError(
                f"pretraining has no bottleneck defined for {network_name}; it works for {', '.join(BOTTLENECKS)}"
            )
        self.net = net
        self._features: torch.Tensor | None = None
        BOTTLENECKS[network_name](net).register_forward_hook(self._keep)
        with torch.no_grad():
            net.eval()(torch.zeros(1, channels, *patch_zyx))
        width = pooled(self._bottleneck(), 1).shape[1]
        self.rotation_head = nn.Linear(width, rotations)
        self.projection = nn.Sequential(nn.Linear(width, 256), nn.ReLU(inplace=True), nn.Linear(256, 128))

    def _keep(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self._features = output

    def _bottleneck(self) -> torch.Tensor:
        """The bottleneck's output of the last forward pass."""
        if self._features is None:
            raise PretrainError("the network's bottleneck gave no output: its forward hook never ran")
        return self._features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        restored = self.net(x)
        feats = pooled(self._bottleneck(), x.shape[0])
        return restored, self.rotation_head(feats), self.projection(feats)


# --- the views and the losses -----------------------------------------------------------------


def rotation_count(patch_zyx: tuple[int, ...]) -> int:
    """4 quarter turns in the axial (y, x) plane on a square patch, else 0° and 180°."""
    return 4 if patch_zyx[1] == patch_zyx[2] else 2


def rotate(x: torch.Tensor, k: torch.Tensor, rotations: int) -> torch.Tensor:
    """Sample i turned by ``k[i]`` steps of 360/``rotations`` degrees in the (y, x) plane."""
    quarter = 4 // rotations
    return torch.stack([torch.rot90(s, int(q) * quarter, dims=(-2, -1)) for s, q in zip(x, k)])


def dropout(views: torch.Tensor, masker: RandCoarseDropout) -> torch.Tensor:
    """Each view with cuboids replaced by random values (MONAI's RandCoarseDropout)."""
    masked = [masker(v) for v in views]
    # MONAI returns MetaTensors; the network and the losses get plain tensors
    return torch.stack([m.as_tensor() if hasattr(m, "as_tensor") else torch.as_tensor(m) for m in masked])


def make_masker(cfg: PretrainConfig, patch_zyx: tuple[int, ...], seed: int) -> RandCoarseDropout:
    largest = [max(2, int(p * cfg.hole_fraction)) for p in patch_zyx]
    masker = RandCoarseDropout(
        holes=cfg.holes,
        spatial_size=[max(1, s // 4) for s in largest],
        max_holes=cfg.holes * 2,
        max_spatial_size=largest,
        prob=1.0,
    )
    masker.set_random_state(seed)
    return masker


@dataclass
class Run:
    """What the steps advance: the model, the optimiser and every random stream."""

    model: SelfSupervised
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    gen: torch.Generator
    masker: RandCoarseDropout
    rotations: int
    device: torch.device
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None = None  # autocast dtype of the forward pass; None: fp32
    forward: nn.Module | None = None  # the DDP-wrapped model under torchrun; None: ``model`` itself
    ctx: ddp.DistContext = field(default_factory=ddp.DistContext)


#: each rank's random streams start at ``seed + RANK_SEED_STEP * rank`` (rank 0: the single-process ones)
RANK_SEED_STEP = 7919


def autocast(run: Run) -> torch.autocast:
    """The forward pass's mixed precision, as in training (weights and losses stay fp32)."""
    return autocast_of(run.device, run.amp_dtype)


def step_losses(run: Run, patches: torch.Tensor, cfg: PretrainConfig) -> dict[str, torch.Tensor]:
    """The enabled objectives' losses on two augmented views of ``patches`` (B, C, Z, Y, X)."""
    b = patches.shape[0]
    views = []
    for _ in range(2):
        view, _, _ = augment(
            patches.clone(),
            torch.zeros(patches.shape[:1] + patches.shape[2:], dtype=torch.uint8),
            torch.zeros(b, 31, dtype=torch.bool),
            run.gen,
        )
        views.append(view)
    k = (
        torch.randint(0, run.rotations, (2 * b,), generator=run.gen)
        if "rotation" in cfg.objectives
        else torch.zeros(2 * b, dtype=torch.long)
    )
    target = rotate(torch.cat(views), k, run.rotations)
    inputs = dropout(target, run.masker) if "inpaint" in cfg.objectives else target
    with autocast(run):
        outputs = (run.forward or run.model)(inputs.to(run.device))
    restored, rot_logits, proj = (t.float() for t in outputs)
    losses = {}
    if "inpaint" in cfg.objectives:
        losses["inpaint"] = F.l1_loss(restored, target.to(run.device))
    if "rotation" in cfg.objectives:
        losses["rotation"] = F.cross_entropy(rot_logits, k.to(run.device))
    if "contrastive" in cfg.objectives:
        losses["contrastive"] = ContrastiveLoss(temperature=cfg.temperature)(proj[:b], proj[b:])
    return losses


def train_step(run: Run, scans: list[CachedCase], plans: Plans, cfg: PretrainConfig, step: int) -> dict[str, float]:
    """One optimiser step; returns each objective's loss and the total."""
    for group in run.opt.param_groups:
        group["lr"] = poly_lr(cfg.lr, step, cfg.steps)
    patches = [
        sample_patch(scans[int(run.rng.integers(len(scans)))], plans.patch_size_zyx, run.rng, 0.0)[0]
        for _ in range(cfg.batch)
    ]
    losses = step_losses(run, torch.from_numpy(np.stack(patches)), cfg)
    total = functools.reduce(operator.add, losses.values())  # never empty: pretrain() checks --objectives
    run.opt.zero_grad(set_to_none=True)
    optimiser_step(run.opt, run.scaler, total, list(run.model.parameters()), 12.0)
    return {"total": total.item(), **{k: v.item() for k, v in losses.items()}}


# --- checkpoints, logs, curves ----------------------------------------------------------------


def streams_of(run: Run) -> dict:
    """This rank's random streams: patch sampling, augmentation, the dropped cuboids."""
    return {"rng": run.rng.bit_generator.state, "gen": run.gen.get_state(), "masker": run.masker.R.get_state()}


def state_of(run: Run, step: int, cfg: PretrainConfig, seconds: float) -> dict:
    """The checkpoint: the weights (the same on every rank), every rank's random streams
    and parameter digest. Collective under torchrun: every rank calls it."""
    streams = ddp.gather(streams_of(run), run.ctx)
    digests = ddp.gather(ddp.param_digest(run.model), run.ctx)
    return {
        "step": step,
        "model": run.model.state_dict(),
        "opt": run.opt.state_dict(),
        "scaler": run.scaler.state_dict(),
        "config": asdict(cfg),
        "seconds": seconds,
        "world": run.ctx.world,
        "streams": streams,
        "param_sha256": digests,
    }


def resume(run: Run, state: dict, cfg: PretrainConfig) -> tuple[int, float]:
    """Continue a checkpoint of the same settings (``steps`` may grow); the step and seconds done."""
    if "streams" not in state:
        raise PretrainError(
            "the checkpoint was written by an earlier training.pretrain, which kept one "
            "process's random streams only: start over with --restart"
        )
    saved = {k: v for k, v in state["config"].items() if k not in ("steps", "save_every")}
    wanted = {k: v for k, v in asdict(cfg).items() if k not in ("steps", "save_every")}
    saved["objectives"] = tuple(saved["objectives"])
    if saved != wanted:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise PretrainError(
            f"the checkpoint was made with other settings ({', '.join(diff)}): pass them again, or --restart"
        )
    if int(state["world"]) != run.ctx.world:
        raise PretrainError(
            f"the checkpoint was made by {state['world']} process(es) and this run has "
            f"{run.ctx.world}: start it with torchrun --nproc_per_node {state['world']}, or --restart"
        )
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["opt"])
    run.scaler.load_state_dict(state["scaler"])
    own = state["streams"][run.ctx.rank]
    run.rng.bit_generator.state = own["rng"]
    run.gen.set_state(own["gen"])
    run.masker.R.set_state(own["masker"])
    return int(state["step"]), float(state["seconds"])


def plot(folder: Path) -> None:
    """``curves.png``: each objective's loss against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(folder / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("total", *OBJECTIVES):
        if key in rows[0]:
            ax.plot([int(r["step"]) for r in rows], [float(r[key]) for r in rows], label=key)
    ax.set_xlabel("step"), ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "curves.png", dpi=80)
    plt.close(fig)


# --- the run ----------------------------------------------------------------------------------


def make_run(plans: Plans, cfg: PretrainConfig, device: torch.device, ctx: ddp.DistContext = ddp.SINGLE_PROCESS) -> Run:
    """The model (the same initial weights on every rank), its optimiser and this rank's streams."""
    torch.manual_seed(cfg.seed)
    channels = len(plans.channels)
    net = build_network(plans.network, channels, channels)
    rotations = rotation_count(plans.patch_size_zyx)
    model = SelfSupervised(net, plans.network.name, channels, plans.patch_size_zyx, rotations).to(device)
    # With an objective switched off its head (or, without inpainting, the decoder) gets no
    # gradient, which DDP's reducer must be told about.
    forward = ddp.wrap(model, ctx, device, find_unused=set(cfg.objectives) != set(OBJECTIVES)) if ctx.active else None
    unwrapped = ddp.unwrap(forward) if forward is not None else model
    if not isinstance(unwrapped, SelfSupervised):  # never: DDP holds the model it was given
        raise PretrainError(f"the DDP-wrapped model is a {type(unwrapped).__name__}, not the pretraining model")
    model = unwrapped
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp, seed = amp_dtype(cfg.amp, device), cfg.seed + RANK_SEED_STEP * ctx.rank
    return Run(
        model,
        opt,
        np.random.default_rng(seed),
        torch.Generator().manual_seed(seed),
        make_masker(cfg, plans.patch_size_zyx, seed),
        rotations,
        device,
        torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
        amp,
        forward,
        ctx,
    )


def pretrain(
    images: Path,
    work: Path,
    out: Path,
    cfg: PretrainConfig,
    device: str = "auto",
    restart: bool = False,
    rules: SelectionRules | None = None,
) -> Path:
    """Pretrain WORK's planned network on the scans under ``images``; returns ``pretrained.pt``."""
    unknown = sorted(set(cfg.objectives) - set(OBJECTIVES))
    if unknown or not cfg.objectives:
        raise PretrainError(f"--objectives: choose among {', '.join(OBJECTIVES)} (got {list(cfg.objectives)})")
    plans, dev = load_plans(work / "plans.json"), resolve_device(device)[0]
    ctx = ddp.init_distributed(dev)
    try:
        return pretrain_ranks(images, work, out, cfg, plans, ddp.rank_device(dev, ctx), ctx, restart, rules)
    finally:
        ddp.shutdown(ctx)


def prepare_on_ranks(
    images: Path, work: Path, plans: Plans, ctx: ddp.DistContext, rules: SelectionRules | None
) -> Prepared:
    """Rank 0 preprocesses into the cache first; the other ranks then read it."""
    scans = find_scans(images, rules)
    prepared = prepare_scans(scans, plans, work / "cache_unlabelled") if ctx.is_main else None
    ddp.barrier(ctx)
    return prepared or prepare_scans(scans, plans, work / "cache_unlabelled")


def pretrain_ranks(
    images: Path,
    work: Path,
    out: Path,
    cfg: PretrainConfig,
    plans: Plans,
    dev: torch.device,
    ctx: ddp.DistContext,
    restart: bool,
    rules: SelectionRules | None,
) -> Path:
    """The steps, on one process or on each of torchrun's: every rank trains on its share
    of the scans, DDP averages the gradients, rank 0 writes the log, checkpoints and output."""
    prepared = prepare_on_ranks(images, work, plans, ctx, rules)
    cases = ddp.shard(list(prepared.cases), ctx)
    run, ckpt = make_run(plans, cfg, dev, ctx), Checkpoints(out)
    state = None if restart else ckpt.load_last()
    if restart and ctx.is_main:
        (out / "log.csv").unlink(missing_ok=True)
    start, seconds = resume(run, state, cfg) if state else (0, 0.0)
    if start:
        log.info("resuming pretraining at step %d of %d", start, cfg.steps)
    run.model.train()
    window, began = [], time.perf_counter() - seconds
    steps = range(start, cfg.steps)
    for step in progress(steps, "pretraining", len(steps)) if ctx.is_main else steps:
        window.append(train_step(run, cases, plans, cfg, step))
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - began
            means = {k: ddp.mean_over_ranks(float(np.mean([w[k] for w in window])), ctx) for k in window[0]}
            checkpoint = state_of(run, step + 1, cfg, elapsed)
            if ctx.is_main:
                write_log(
                    out,
                    {"step": step + 1, **means, "lr": poly_lr(cfg.lr, step, cfg.steps), "seconds": round(elapsed, 1)},
                )
                ckpt.save("checkpoint_last.pt", checkpoint)
                log.info("step %d/%d loss %.4f", step + 1, cfg.steps, means["total"])
            window = []
    path = finish(run, out, cfg, prepared, plans, time.perf_counter() - began) if ctx.is_main else out / "pretrained.pt"
    ddp.barrier(ctx)
    return path


def finish(run: Run, out: Path, cfg: PretrainConfig, prepared: Prepared, plans: Plans, seconds: float) -> Path:
    """``pretrained.pt`` (the network alone), ``pretrain.json`` and ``curves.png``."""
    path = out / "pretrained.pt"
    tmp = out / ".pretrained.pt.tmp"
    torch.save(run.model.net.state_dict(), tmp)
    tmp.replace(path)
    (out / "pretrain.json").write_text(
        json.dumps(
            {
                "network": plans.network.name,
                "config": asdict(cfg),
                "seconds": round(seconds, 1),
                "scans": [s.scan_id for s in prepared.scans],
                "with_mr": sum(s.has_mr for s in prepared.scans),
                "skipped": list(prepared.skipped),
                "processes": run.ctx.world,
            },
            indent=1,
        )
        + "\n"
    )
    if (out / "log.csv").is_file():
        plot(out)
    log.info(
        "pretrained %s for %d steps on %d scans (%.0f s; %d left out): %s",
        plans.network.name,
        cfg.steps,
        len(prepared.scans),
        seconds,
        len(prepared.skipped),
        path,
    )
    return path


def main(argv: list[str] | None = None) -> int:
    args = pretrain_parser().parse_args(argv)
    if not (args.work / "plans.json").is_file():
        sys.stderr.write(f"python -m training.pretrain: error: {no_plan(args.work)}\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = pretrain_config_from_args(args)
    try:
        rules = rules_from_json(args.series_rules) if args.series_rules else None
        pretrain(args.images, args.work, args.out or args.work / "pretrain", cfg, args.device, args.restart, rules)
    except HansegError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
