"""Networks named in ``plans.json``, all MONAI classes.

The plan stores the class name and its keyword arguments; input and output channel counts
are not stored there but derived (channels in the plan, 31 classes), so they cannot
disagree with the label map.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import torch
from monai.networks import nets

from .errors import PlansError
from .plans import NetworkSpec

log = logging.getLogger(__name__)


def _dynunet(in_channels: int, out_channels: int, **kw: Any) -> torch.nn.Module:
    return nets.DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kw)


def _unet(in_channels: int, out_channels: int, **kw: Any) -> torch.nn.Module:
    return nets.UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kw)


def _segresnet(in_channels: int, out_channels: int, **kw: Any) -> torch.nn.Module:
    return nets.SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kw)


NETWORKS: Mapping[str, Callable[..., torch.nn.Module]] = {
    "DynUNet": _dynunet,
    "UNet": _unet,
    "SegResNet": _segresnet,
}


def build_network(spec: NetworkSpec, in_channels: int, out_channels: int) -> torch.nn.Module:
    """Instantiate the plan's network; a clear error names a bad class or argument."""
    if spec.name not in NETWORKS:
        raise PlansError(f"unknown network {spec.name!r}; known: {', '.join(NETWORKS)}")
    kwargs = dict(spec.kwargs)
    for key in ("spatial_dims", "in_channels", "out_channels"):
        if key in kwargs:
            raise PlansError(f"network kwargs must not set {key!r}: it is derived from the plan")
    try:
        net = NETWORKS[spec.name](in_channels, out_channels, **kwargs)
    except TypeError as exc:
        raise PlansError(f"network {spec.name}: bad arguments {kwargs}: {exc}") from exc
    n_params = sum(p.numel() for p in net.parameters())
    log.debug("built %s with %d parameters", spec.name, n_params)
    return net
