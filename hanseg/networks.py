"""Networks named in ``plans.json``, all MONAI classes: DynUNet, UNet (the residual UNet of
MONAI's spleen bundle), SegResNet, UNETR and SwinUNETR, and which parameters form each one's
encoder (for ``--freeze encoder``).

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


def _unetr(in_channels: int, out_channels: int, **kw: Any) -> torch.nn.Module:
    return nets.UNETR(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kw)


def _swinunetr(in_channels: int, out_channels: int, **kw: Any) -> torch.nn.Module:
    return nets.SwinUNETR(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kw)


NETWORKS: Mapping[str, Callable[..., torch.nn.Module]] = {
    "DynUNet": _dynunet,
    "UNet": _unet,
    "SegResNet": _segresnet,
    "UNETR": _unetr,
    "SwinUNETR": _swinunetr,
}

#: Parameter-name prefixes of each network's encoder (the contracting path and bottleneck),
#: for ``--freeze encoder``. MONAI's UNet nests its levels (see :func:`_unet_is_encoder`).
ENCODER_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "DynUNet": ("input_block.", "downsamples.", "bottleneck."),
    "SegResNet": ("convInit.", "down_layers."),
    "UNETR": ("vit.", "encoder1.", "encoder2.", "encoder3.", "encoder4."),
    "SwinUNETR": ("swinViT.", "encoder1.", "encoder2.", "encoder3.", "encoder4.", "encoder10."),
}


def _unet_is_encoder(name: str) -> bool:
    """MONAI's UNet is ``Sequential(down, SkipConnection(Sequential(down, ..., up)), up)``:
    a parameter is in the encoder when, after stepping through the nested ``1.submodule.``
    levels, it sits in a level's ``0`` (down) block, or in the innermost (bottom) block."""
    rest = name.removeprefix("model.")
    while rest.startswith("1.submodule."):
        rest = rest.removeprefix("1.submodule.")
    return not rest.startswith("2.")


def is_encoder_parameter(network_name: str, parameter: str) -> bool:
    """True when ``parameter`` (a ``named_parameters`` name) belongs to the encoder."""
    if network_name == "UNet":
        return _unet_is_encoder(parameter)
    if network_name not in ENCODER_PREFIXES:
        raise PlansError(f"no encoder is defined for {network_name!r}")
    return parameter.startswith(ENCODER_PREFIXES[network_name])


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
