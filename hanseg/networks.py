"""Networks named in ``plans.json``: MONAI's DynUNet, UNet (the residual UNet of MONAI's
spleen bundle), SegResNet, UNETR and SwinUNETR, and the 2.5D :class:`hanseg.fcn2p5d.SliceFCN`,
built from the records of :mod:`hanseg.network_kinds` (which class, which parameters form the
encoder for ``--freeze encoder``); this module is the one place that imports them.

The plan stores the class name and its keyword arguments; input and output channel counts
are not stored there but derived (channels in the plan, 31 classes), so they cannot
disagree with the label map.
"""

from __future__ import annotations

import importlib
import itertools
import logging

import torch

from .errors import PlansError
from .network_kinds import BY_CLASS, NetworkKind
from .plans import NetworkSpec

log = logging.getLogger(__name__)


def network_kind(network_name: str) -> NetworkKind:
    """The table's record for a ``plans.json`` network name; the error names the known ones."""
    kind = BY_CLASS.get(network_name)
    if kind is None:
        raise PlansError(f"unknown network {network_name!r}; known: {', '.join(BY_CLASS)}")
    return kind


def is_encoder_parameter(network_name: str, parameter: str) -> bool:
    """True when ``parameter`` (a ``named_parameters`` name) belongs to the encoder."""
    kind = BY_CLASS.get(network_name)
    if kind is None:
        raise PlansError(f"no encoder is defined for {network_name!r}")
    return kind.encoder.contains(parameter)


def build_network(spec: NetworkSpec, in_channels: int, out_channels: int) -> torch.nn.Module:
    """Instantiate the plan's network; a clear error names a bad class or argument."""
    kind = network_kind(spec.name)
    network_class = getattr(importlib.import_module(kind.module), kind.class_attr)
    kwargs = dict(spec.kwargs)
    for key in ("spatial_dims", "in_channels", "out_channels"):
        if key in kwargs:
            raise PlansError(f"network kwargs must not set {key!r}: it is derived from the plan")
    try:
        net: torch.nn.Module = network_class(
            spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kwargs
        )
    except TypeError as exc:
        raise PlansError(f"network {spec.name}: bad arguments {kwargs}: {exc}") from exc
    n_params = sum(p.numel() for p in net.parameters())
    log.debug("built %s with %d parameters", spec.name, n_params)
    return net


_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_TRANSPOSED = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
_BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def fold_batch_norm(network: torch.nn.Module) -> int:
    """Fold each batch norm that directly follows a convolution into that convolution's
    weights and bias, for inference only (``network`` must be in eval mode); returns how many.

    In eval mode a batch norm is a fixed per-channel scale and shift, so the folded convolution
    gives the same output (to float rounding) with one pass over the activations less: on the
    shipped UNet the batch norms took a fifth of the network's time. Two shapes are folded:
    MONAI's ``Convolution`` block (``conv``, then ``adn`` whose first layer is the norm, the
    ``NDA`` order its UNet uses) and a convolution followed by a batch norm in a ``Sequential``.
    """
    if network.training:
        raise ValueError("fold_batch_norm is for inference: call network.eval() first")
    folded = 0
    for module in list(network.modules()):
        conv, adn = getattr(module, "conv", None), getattr(module, "adn", None)
        if isinstance(conv, _CONVS + _TRANSPOSED) and isinstance(adn, torch.nn.Sequential) and len(adn) > 0:
            name, first = next(iter(adn.named_children()))
            if isinstance(first, _BATCH_NORMS):
                module.conv = _folded(conv, first)
                setattr(adn, name, torch.nn.Identity())
                folded += 1
        if isinstance(module, torch.nn.Sequential):
            names = [n for n, _ in module.named_children()]
            for before, after in itertools.pairwise(names):
                conv, norm = getattr(module, before), getattr(module, after)
                if isinstance(conv, _CONVS + _TRANSPOSED) and isinstance(norm, _BATCH_NORMS):
                    setattr(module, before, _folded(conv, norm))
                    setattr(module, after, torch.nn.Identity())
                    folded += 1
    return folded


def _folded(conv: torch.nn.Module, norm: torch.nn.Module) -> torch.nn.Module:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    assert isinstance(conv, _CONVS + _TRANSPOSED) and isinstance(norm, _BATCH_NORMS)
    fused: torch.nn.Module = fuse_conv_bn_eval(conv, norm, transpose=isinstance(conv, _TRANSPOSED))
    return fused
