"""Transfer learning: start from other weights (``--init-from``) and freeze parts (``--freeze``).

Sources ``--init-from`` accepts (nothing is downloaded; fetch a bundle yourself, e.g.
``python -m monai.bundle download spleen_ct_segmentation --bundle_dir bundles``):

- a MONAI bundle folder (``models/model.pt``) or its ``model.pt``: a plain state dict;
- one of our model folders (``fold_0.pt``) or a training checkpoint (``checkpoint_*.pt``);
- the output of ``training.pretrain`` (``pretrained.pt``: the network after self-supervision);
- for the 2.5D network (``fcn2p5d``, default preset): a torchvision ``fcn_resnet50`` state dict,
  or an ImageNet ``resnet50`` one, whose names lack the ``backbone.`` prefix (it is added, and
  the classifier ``fc.`` is left out).

Adaptation rules, applied tensor by tensor to the network in ``plans.json``:

1. same name and shape → copied;
2. the tensor's shape depends on the number of **input channels** (found by building the
   network with one more input channel and seeing which tensors change) and the source has
   fewer (the spleen bundle: CT only; ours: CT + MR) → the source's kernels fill the first
   input channels; the extra channels start at **zero** (``--input-init zero``, default: at
   step 0 the network computes exactly the pretrained function of the CT, and the MR
   channel is learnt from there) or at the mean of the source's kernels with every channel
   scaled by n_source/n_target (``replicate``: a constant image gives the pretrained response);
3. the shape depends on the number of **output classes** (the bundle's 2 → our 31) → the
   network's fresh initialisation is kept (a new head);
4. anything else that differs, or a source in which fewer than half of the network's tensors
   are found, is an error naming the tensors: the source is another architecture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hanseg.errors import HansegError
from hanseg.networks import is_encoder_parameter

from .config import FREEZE_HELP  # the policies, named where the command line reads them

log = logging.getLogger(__name__)
Builder = Callable[[int, int], torch.nn.Module]


class TransferError(HansegError):
    """The ``--init-from`` weights cannot initialise the planned network."""


def _find_weights(path: Path) -> Path:
    """The weight file inside a bundle or model folder, or ``path`` itself."""
    if path.is_file():
        return path
    for candidate in (path / "models" / "model.pt", path / "model.pt", path / "fold_0.pt"):
        if candidate.is_file():
            return candidate
    raise TransferError(
        f"--init-from {path}: no weights found (looked for a file, models/model.pt, model.pt and fold_0.pt)"
    )


def read_source_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by name from any accepted source; DDP's ``module.`` prefix is removed."""
    file = _find_weights(Path(path))
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors have many types; all mean "not a weight file"
        raise TransferError(f"--init-from {file}: not a readable PyTorch weight file ({exc})") from exc
    for key in ("model", "state_dict", "network"):  # our checkpoints; common trainer layouts
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TransferError(f"--init-from {file}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def channel_dims(
    build: Builder, n_in: int, n_out: int
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Which tensors depend on the input / output channel counts, and along which axes.
    Found by building the network with one more of each: on the meta device (no memory), or
    on the CPU for networks whose constructor reads tensor values (SwinUNETR's)."""

    def shapes(i: int, o: int) -> dict[str, torch.Size]:
        try:
            with torch.device("meta"):
                return {k: v.shape for k, v in build(i, o).state_dict().items()}
        except (RuntimeError, NotImplementedError):
            return {k: v.shape for k, v in build(i, o).state_dict().items()}

    ref, more_in, more_out = shapes(n_in, n_out), shapes(n_in + 1, n_out), shapes(n_in, n_out + 1)

    def differing(other: dict[str, torch.Size]) -> dict[str, tuple[int, ...]]:
        axes = {k: tuple(i for i, (a, b) in enumerate(zip(shape, other[k])) if a != b) for k, shape in ref.items()}
        return {k: v for k, v in axes.items() if v}

    return differing(more_in), differing(more_out)


def _differs_only_along(s: torch.Tensor, t: torch.Tensor, axes: tuple[int, ...]) -> bool:
    return s.dim() == t.dim() and all(a == b for i, (a, b) in enumerate(zip(s.shape, t.shape)) if i not in axes)


@dataclass
class TransferReport:
    copied: list[str] = field(default_factory=list)
    input_adapted: list[str] = field(default_factory=list)
    new_head: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{len(self.copied)} tensors copied, {len(self.input_adapted)} input-adapted, "
            f"{len(self.new_head)} new (output head), {len(self.missing)} not in the source, "
            f"{len(self.unexpected)} source tensors unused"
        )


def _adapt_input(source: torch.Tensor, target: torch.Tensor, axis: int, rule: str) -> torch.Tensor:
    n_src, n_tgt = source.shape[axis], target.shape[axis]
    if rule == "zero":
        out = torch.zeros_like(target)
        out.narrow(axis, 0, n_src).copy_(source)
        return out
    mean = source.mean(dim=axis, keepdim=True)
    extra = mean.expand(*[n_tgt - n_src if i == axis else -1 for i in range(source.dim())])
    return torch.cat([source, extra], dim=axis) * (n_src / n_tgt)


def adapt_state(
    target: dict[str, torch.Tensor],
    source: dict[str, torch.Tensor],
    in_dims: dict[str, tuple[int, ...]],
    out_dims: dict[str, tuple[int, ...]],
    input_init: str = "zero",
) -> tuple[dict[str, torch.Tensor], TransferReport]:
    """A state dict for the target network built from ``source`` by the module's rules."""
    report, state, bad = TransferReport(), {}, []
    for key, t in target.items():
        s = source.get(key)
        in_axes = in_dims.get(key, ())
        if s is None:
            report.missing.append(key)
            state[key] = t
        elif s.shape == t.shape:
            report.copied.append(key)
            state[key] = s.to(t.dtype)
        elif len(in_axes) == 1 and _differs_only_along(s, t, in_axes) and s.shape[in_axes[0]] < t.shape[in_axes[0]]:
            state[key] = _adapt_input(s.to(t.dtype), t, in_axes[0], input_init)
            report.input_adapted.append(key)
        elif key in out_dims and _differs_only_along(s, t, out_dims[key]):
            report.new_head.append(key)
            state[key] = t
        else:
            bad.append(f"{key}: source {tuple(s.shape)} vs network {tuple(t.shape)}")
    report.unexpected = sorted(set(source) - set(target))
    if bad:
        raise TransferError(
            f"{len(bad)} tensors differ in shape beyond the input/output channels "
            f"(another architecture?): {'; '.join(bad[:5])}"
        )
    n_used = len(report.copied) + len(report.input_adapted)
    if n_used < len(target) / 2:
        raise TransferError(
            f"only {n_used} of the network's {len(target)} tensors are in the source "
            f"(e.g. missing {report.missing[:3]}): is plans.json's network the source's?"
        )
    return state, report


BACKBONE = "backbone."


def as_backbone(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain ResNet state dict (an ImageNet classifier: ``conv1.weight``, ``layer1...``,
    ``fc...``) renamed for a network whose ResNet sits under ``backbone.``; other sources as
    they are. The ``fc.`` classifier has no place in a segmentation network and is dropped."""
    wants = any(k.startswith(BACKBONE) for k in target)
    plain_resnet = "conv1.weight" in source and not any(k.startswith(BACKBONE) for k in source)
    if not (wants and plain_resnet):
        return source
    log.info("--init-from: a plain ResNet state dict, loaded as the network's backbone")
    return {BACKBONE + k: v for k, v in source.items() if not k.startswith("fc.")}


def init_from(
    net: torch.nn.Module, build: Builder, n_in: int, n_out: int, path: Path, input_init: str = "zero"
) -> TransferReport:
    """Load ``path`` into ``net`` by the adaptation rules; logs what was done."""
    in_dims, out_dims = channel_dims(build, n_in, n_out)
    target = net.state_dict()
    source = as_backbone(target, read_source_state(path))
    state, report = adapt_state(target, source, in_dims, out_dims, input_init)
    net.load_state_dict(state)
    log.info("initialised from %s: %s", path, report.describe())
    return report


# --- freezing --------------------------------------------------------------------------------


def frozen_parameter_names(net: torch.nn.Module, network_name: str, policy: str) -> set[str]:
    """Names of the parameters ``--freeze policy`` freezes."""
    names = [n for n, _ in net.named_parameters()]
    if policy == "none":
        return set()
    if policy == "encoder":
        return {n for n in names if is_encoder_parameter(network_name, n)}
    if policy.startswith("all-but-last:"):
        n_last = int(policy.split(":", 1)[1])
        params = dict(net.named_parameters())
        layers = [i for i, n in enumerate(names) if params[n].dim() >= 2]  # conv / linear weights
        if not 1 <= n_last <= len(layers):
            raise ValueError(f"--freeze {policy}: the network has {len(layers)} weight layers")
        return set(names[: layers[-n_last]])
    raise ValueError(f"--freeze {policy!r}: expected {FREEZE_HELP}")


def apply_freeze(net: torch.nn.Module, frozen: set[str]) -> list[str]:
    """Stop gradients of the frozen parameters; returns the names of the norm modules whose
    parameters are all frozen (train mode must keep them in eval, see :func:`train_mode`)."""
    for name, p in net.named_parameters():
        p.requires_grad_(name not in frozen)
    norms = []
    for name, m in net.named_modules():
        own = [f"{name}.{n}" if name else n for n, _ in m.named_parameters(recurse=False)]
        if isinstance(m, torch.nn.modules.batchnorm._NormBase) and own and all(n in frozen for n in own):
            norms.append(name)
    n_frozen = sum(p.numel() for n, p in net.named_parameters() if n in frozen)
    n_total = sum(p.numel() for p in net.parameters())
    if frozen:
        log.info("frozen: %d of %d parameters (%.0f %%)", n_frozen, n_total, 100 * n_frozen / max(n_total, 1))
    return norms


def train_mode(net: torch.nn.Module, frozen_norms: list[str]) -> None:
    """``net.train()``, except that frozen batch norms stay in eval mode: in train mode they
    would keep updating their running statistics, so a frozen layer would still change."""
    net.train()
    modules = dict(net.named_modules())
    for name in frozen_norms:
        modules[name].eval()
