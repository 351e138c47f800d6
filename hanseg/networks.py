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
