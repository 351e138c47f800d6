"""The training settings in one place: :class:`TrainConfig`, and the command line made from it;
:class:`PretrainConfig` and ``training.pretrain``'s command line likewise.

This module imports neither torch nor MONAI (nor anything that does): the command lines are
built from it, so ``--help`` and a usage error answer before the heavy imports (the training
CLIs parse their arguments first; ``tests/integration/test_cli_help.py`` times it).

Each field of :class:`TrainConfig` is one ``--kebab-case`` option of ``python -m training.train``
(type from its annotation, help, choices and metavar from its metadata, default from the
field), and every checkpoint records the whole config as ``config`` (which
``training.export`` copies into the model's ``metadata.json``). A setting a run may change
belongs here rather than as a constant in the code: only then do those records show it.

A new field needs a default that reproduces what training did before it existed: resuming an
old checkpoint (whose ``config`` lacks the key) then continues as it would have.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the losses :func:`training.losses.make_loss` builds, by their ``--loss`` name
LOSSES = ("dice_ce", "dynamic", "tvmf", "bce")
#: the ``--freeze`` policies :func:`training.transfer.frozen_parameter_names` knows
FREEZE_HELP = (
    "none | encoder (contracting path + bottleneck) | all-but-last:N (train only the "
    "last N convolution/linear layers and what follows them, e.g. their norms)"
)

OPTIMIZERS = ("adamw", "adam", "sgd")
#: ``--weight-decay`` when not given: what each optimiser got before it was a setting (AdamW
#: 1e-5, decoupled; SGD nnU-Net's 3e-5; Adam none), so old runs are reproduced exactly.
DEFAULT_WEIGHT_DECAY = {"adamw": 1e-5, "adam": 0.0, "sgd": 3e-5}


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A :class:`TrainConfig` field: its default, its ``--help`` text and optionally
    ``choices`` and ``metavar``; ``default_help`` replaces the "(default: ...)" suffix."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings (see the module docstring). ``weight_decay=None`` becomes
    the optimiser's default on construction; ``dataclasses.replace(cfg, optimizer=...)`` keeps
    the number already there unless it also passes ``weight_decay=None``."""

    epochs: int = setting(100, "training epochs; the poly learning rate decays to zero at the last")
    iters: int = setting(250, "iterations (optimiser steps) per epoch")
    batch: int = setting(2, "patches per step, per process under torchrun")
    lr: float = setting(1e-3, "peak learning rate, then the poly decay (exponent 0.9)", metavar="LR")
    weight_decay: float | None = setting(
        None,
        "weight decay: decoupled for adamw, L2 for sgd and adam",
        metavar="WD",
        default_help="the optimiser's: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_WEIGHT_DECAY.items()),
    )
    fg_fraction: float = setting(
        0.67,
        "fraction of patches centred on a foreground voxel (of a class "
        "drawn uniformly among the case's); the rest anywhere",
        metavar="F",
    )
    val_every: int = setting(5, "validate every N epochs and after the last", metavar="N")
    val_overlap: float = setting(
        0.25, "sliding-window overlap of validation; inference uses plans.json's overlap", metavar="F"
    )
    seed: int = setting(0, "seed of the initial weights, the patch sampler and the augmentation")
    loss: str = setting(
        "dice_ce",
        "dice_ce = Dice + cross-entropy; dynamic = generalised Dice + weighted CE→focal; "
        "tvmf = adaptive t-vMF Dice; bce = per-class binary CE",
        choices=LOSSES,
    )
    optimizer: str = setting("adamw", "adamw, adam, or sgd (Nesterov, momentum 0.99: nnU-Net's)", choices=OPTIMIZERS)
    init_from: str | None = setting(
        None,
        "weights to start from: a MONAI bundle folder or model.pt, one of our model folders, or a training checkpoint",
        metavar="PATH",
        default_help="random initialisation",
    )
    input_init: str = setting(
        "zero", "how input channels the source lacks start, see training/transfer.py", choices=("zero", "replicate")
    )
    freeze: str = setting("none", FREEZE_HELP, metavar="POLICY")
    elastic: float = setting(
        0.0, "probability of an elastic deformation per patch, on top of the affine one", metavar="P"
    )
    lowres: float = setting(0.0, "probability of a simulated coarser scan per patch: down- and up-sampled", metavar="P")
    reslice: float = setting(
        0.0,
        "probability of a patch resampled as from another voxel lattice: another "
        "slice spacing and phase, see training.data.simulate_reslicing",
        metavar="P",
    )
    min_oar_reliability: float = setting(
        1.0,
        "OARs that OAR_data.csv rates below this for a case (the download has 0.5 for some) are "
        "left out of that case's loss, like a missing mask; 0 keeps every mask file",
        metavar="R",
    )
    mr_dropout: float = setting(
        0.2,
        "probability per patch of zeroed MR channels: trains the CT-only path the model takes when MR is missing",
        metavar="P",
    )
    grad_clip: float = setting(
        12.0, "clip the L2 norm of all trainable gradients to NORM, as nnU-Net does", metavar="NORM"
    )
    warmup: int = setting(
        0,
        "linear learning-rate warm-up over the first STEPS steps (useful with "
        "--init-from: fresh Adam moments would otherwise move every weight by ~lr at once)",
        metavar="STEPS",
    )
    amp: str = setting(
        "auto",
        "auto: fp16 autocast on CUDA, fp32 on the CPU; bf16: bfloat16 autocast "
        "(about 1.4x faster steps on CPUs with AVX-512 BF16); off: fp32",
        choices=("auto", "bf16", "off"),
    )
    time_budget: float | None = setting(
        None,
        "end this run within about SECONDS (caching included): before each epoch, the epoch count "
        "is set to what still fits (at most --epochs), so the learning rate still decays to zero and "
        "the last epoch validates and saves",
        metavar="SECONDS",
        default_help="no limit",
    )

    def __post_init__(self) -> None:
        # resolved here, once, so the checkpoint records the number the optimiser used
        if self.optimizer not in DEFAULT_WEIGHT_DECAY:
            raise ValueError(f"optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer])


def _option_type(annotation: Any) -> type:
    """``int``, ``float`` or ``str`` from a field annotation (``X | None`` gives ``X``)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    if annotation not in (int, float, str):
        raise TypeError(f"TrainConfig fields must be int, float or str (or None), not {annotation!r}")
    return annotation


def _help(f: dataclasses.Field) -> str:
    shown = f.metadata.get("default_help", f.default)
    # argparse %-formats help strings
    return f"{f.metadata['help']} (default: {shown})".replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """One option per :class:`TrainConfig` field, ``--kebab-case`` of its name."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        extra = {k: f.metadata[k] for k in ("choices", "metavar") if k in f.metadata}
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=_option_type(hints[f.name]),
            default=f.default,
            help=_help(f),
            **extra,
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed options (other attributes of ``args`` are ignored)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


# --- pretraining (training.pretrain) ---------------------------------------------------------

#: the self-supervision objectives of ``training.pretrain`` (see its module doc)
OBJECTIVES = ("inpaint", "rotation", "contrastive")


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run's settings (recorded in every checkpoint and in pretrain.json)."""

    steps: int = 2000
    batch: int = 2  # patches per process and step
    lr: float = 5e-4
    weight_decay: float = 1e-5
    objectives: tuple[str, ...] = OBJECTIVES
    temperature: float = 0.5  # of the contrastive loss (the SwinUNETR recipe's)
    holes: int = 6  # cuboids dropped per view, at least ...
    hole_fraction: float = 0.25  # ... each at most this fraction of the patch per axis
    seed: int = 0
    save_every: int = 50
    amp: str = "auto"  # as training's --amp: fp16 with a gradient scaler on CUDA, fp32 on the CPU


#: the :class:`PretrainConfig` fields given as one option each, with their default
PRETRAIN_OPTIONS = (
    "steps",
    "batch",
    "lr",
    "weight_decay",
    "temperature",
    "holes",
    "hole_fraction",
    "seed",
    "save_every",
)


def pretrain_parser() -> argparse.ArgumentParser:
    """``python -m training.pretrain``'s command line."""
    ap = argparse.ArgumentParser(
        prog="python -m training.pretrain",
        description="Self-supervised pretraining on unlabelled scans (see the module doc).",
    )
    ap.add_argument(
        "--images",
        type=Path,
        required=True,
        help="unlabelled scans: a raw layout, a folder of DICOM files or a folder of images",
    )
    ap.add_argument(
        "--series-rules",
        type=Path,
        metavar="JSON",
        help="DICOM input: series selection rules overriding the defaults (as process.py's)",
    )
    ap.add_argument("--work", type=Path, required=True, help="work folder with plans.json (python -m training.plan)")
    ap.add_argument("--out", type=Path, help="output folder (default: WORK/pretrain)")
    defaults = PretrainConfig()
    for name in PRETRAIN_OPTIONS:
        value = getattr(defaults, name)
        ap.add_argument("--" + name.replace("_", "-"), type=type(value), default=value, help=f"(default: {value})")
    ap.add_argument(
        "--objectives",
        nargs="+",
        default=list(OBJECTIVES),
        choices=OBJECTIVES,
        help="self-supervision objectives (default: all three)",
    )
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument(
        "--amp",
        default=defaults.amp,
        choices=("auto", "bf16", "off"),
        help="mixed precision: auto is fp16 on CUDA and fp32 on the CPU (default: auto)",
    )
    ap.add_argument("--restart", action="store_true", help="start over instead of resuming checkpoint_last.pt")
    return ap


def pretrain_config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The :class:`PretrainConfig` of parsed options."""
    return PretrainConfig(
        **{k: getattr(args, k) for k in PRETRAIN_OPTIONS}, objectives=tuple(args.objectives), amp=args.amp
    )


def train_parser() -> argparse.ArgumentParser:
    """The command line: where to train (these options are not recorded), then one option per
    :class:`TrainConfig` field."""
    ap = argparse.ArgumentParser(
        prog="python -m training.train", description="Train one fold from a planned work folder."
    )
    ap.add_argument("--data", type=Path, required=True, help="raw dataset folder (case_XX/...)")
    ap.add_argument("--work", type=Path, required=True, help="work folder made by training.plan")
    ap.add_argument("--fold", default="0", help="fold index from splits.json, or 'all' (default: 0)")
    ap.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto = CUDA when a GPU is present, else the CPU (default: auto)",
    )
    ap.add_argument("--restart", action="store_true", help="ignore checkpoint_last.pt")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes for preprocessing the cache (each case is independent; default: 1)",
    )
    add_config_arguments(
        ap.add_argument_group(
            "training settings", "the fields of training.config.TrainConfig, recorded in every checkpoint"
        )
    )
    return ap
