"""One record per network kind: everything the runtime and the planner need to know about a
network, in one table instead of if-chains on class names spread over three modules.

A :class:`NetworkKind` holds

* ``kind``: the ``--network`` name of ``training.plan`` (``dynunet``, ``resunet``, ...);
* ``class_name``: the name ``plans.json`` stores (``network.name``) and the MONAI class name;
* ``class_attr``: the class attribute of ``module`` that :mod:`hanseg.networks` builds
  (strings, so this table, and :mod:`hanseg.plans` that reads it, never import torch or MONAI);
* ``module``: ``monai.networks.nets`` for MONAI's networks, :mod:`hanseg.fcn2p5d` for the 2.5D one;
* ``patch_divisor`` / ``patch_check``: the patch rule: every patch axis must be a multiple of
  the divisor (a function of the plan's kwargs), and an optional extra check (UNETR's img_size);
* ``encoder``: which parameters form the encoder (for ``--freeze encoder``);
* ``kwargs_builder`` and ``presets``: how ``training.plan`` turns a preset (``tiny``, ``small``,
  ``default``) into the network's kwargs. The builder is named, not called here, because the
  DynUNet planner (``training.plan.dynunet_kwargs``) depends on the patch and the spacing and
  is planning logic; ``presets`` holds each preset's fixed inputs to that builder.

Values are tuples and read-only mappings so that the table cannot be changed by a caller;
:func:`plain` turns them into the JSON-shaped dicts and lists that ``plans.json`` holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

#: Presets of ``training.plan --preset``, smallest first.
PRESET_NAMES = ("tiny", "small", "default")

#: Names of the kwargs builders that ``training.plan`` implements (see :class:`NetworkKind`).
KWARGS_AS_IS = "as_is"  # the preset's kwargs, unchanged
KWARGS_IMG_SIZE = "img_size_from_patch"  # ``img_size`` = the patch, then the preset's kwargs
KWARGS_DYNUNET = "dynunet"  # ``dynunet_kwargs(patch, spacing, **preset)``
KWARGS_BUILDER_NAMES = (KWARGS_AS_IS, KWARGS_IMG_SIZE, KWARGS_DYNUNET)

#: Where the MONAI networks' classes live.
MONAI_NETS = "monai.networks.nets"

#: Named encoder rules, for networks whose encoder is not a set of name prefixes.
ENCODER_MONAI_UNET = "monai_unet_nested"

Kwargs = Mapping[str, Any]


def _frozen(value: Any) -> Any:
    """Lists → tuples and dicts → read-only mappings, recursively: table entries stay constant."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """Tuples → lists and mappings → dicts, recursively: the JSON shape ``plans.json`` holds
    (a plan built in memory must equal the same plan read back from the file)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _multiple_of(n: int) -> Callable[[Kwargs], int]:
    """A divisor that does not depend on the kwargs."""

    def divisor(kwargs: Kwargs) -> int:
        return n

    return divisor


def _unet_divisor(kwargs: Kwargs) -> int:
    """MONAI's UNet halves the grid once per stride: the product of the strides (the largest
    component of an anisotropic stride)."""
    return int(math.prod(max(s) if isinstance(s, (list, tuple)) else int(s) for s in kwargs.get("strides", [])))


def _segresnet_divisor(kwargs: Kwargs) -> int:
    """SegResNet downsamples by 2 between its down blocks (MONAI's default: 4 blocks)."""
    divisor: int = 2 ** (len(kwargs.get("blocks_down", (1, 2, 2, 4))) - 1)
    return divisor


def _img_size_is_patch(kwargs: Kwargs, patch_zyx: Sequence[int]) -> str | None:
    """UNETR's position embeddings are sized for one input size: the plan's patch."""
    img = kwargs.get("img_size")
    if img is None or tuple(int(v) for v in img) != tuple(patch_zyx):
        return f"network img_size {img} must equal patch_size_zyx {patch_zyx}"
    return None


def _unet_is_encoder(name: str) -> bool:
    """MONAI's UNet is ``Sequential(down, SkipConnection(Sequential(down, ..., up)), up)``:
    a parameter is in the encoder when, after stepping through the nested ``1.submodule.``
    levels, it sits in a level's ``0`` (down) block, or in the innermost (bottom) block."""
    rest = name.removeprefix("model.")
    while rest.startswith("1.submodule."):
        rest = rest.removeprefix("1.submodule.")
    return not rest.startswith("2.")


ENCODER_RULES: Mapping[str, Callable[[str], bool]] = MappingProxyType({ENCODER_MONAI_UNET: _unet_is_encoder})


@dataclass(frozen=True)
class Encoder:
    """The encoder (contracting path and bottleneck): parameter-name prefixes, or a named rule
    of :data:`ENCODER_RULES` where the encoder is nested (MONAI's UNet)."""

    prefixes: tuple[str, ...] = ()
    rule: str | None = None

    def contains(self, parameter: str) -> bool:
        """True when ``parameter`` (a ``named_parameters`` name) belongs to the encoder."""
        if self.rule is not None:
            return ENCODER_RULES[self.rule](parameter)
        return parameter.startswith(self.prefixes)


@dataclass(frozen=True)
class NetworkKind:
    """Everything about one network kind (see the module docstring for each field)."""

    kind: str
    class_name: str
    class_attr: str
    patch_divisor: Callable[[Kwargs], int]
    encoder: Encoder
    kwargs_builder: str
    presets: Mapping[str, Kwargs]
    patch_check: Callable[[Kwargs, Sequence[int]], str | None] | None = None
    module: str = MONAI_NETS

    def patch_error(self, kwargs: Kwargs, patch_zyx: Sequence[int]) -> str | None:
        """Why this network cannot take ``patch_zyx`` (without the class name), or None."""
        div = self.patch_divisor(kwargs)
        if any(p % div for p in patch_zyx):
            return f"every patch axis must be a multiple of {div}, got {patch_zyx}"
        return self.patch_check(kwargs, patch_zyx) if self.patch_check else None


def _kind(
    kind: str,
    class_name: str,
    divisor: Callable[[Kwargs], int],
    encoder: Encoder,
    builder: str,
    presets: Mapping[str, Kwargs],
    check: Callable[[Kwargs, Sequence[int]], str | None] | None = None,
) -> NetworkKind:
    """A record whose MONAI attribute is its class name (true of every network so far)."""
    return NetworkKind(kind, class_name, class_name, divisor, encoder, builder, _frozen(presets), check)


#: The spleen_ct_segmentation bundle's UNet, at every preset, so the bundle's ``model.pt``
#: loads with ``--init-from``.
_SPLEEN_BUNDLE_UNET = {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"}
_UNETR_DIMS = {"tiny": (8, 96, 192, 4), "small": (16, 192, 768, 6), "default": (16, 768, 3072, 12)}
_VIT_ENCODER = ("encoder1.", "encoder2.", "encoder3.", "encoder4.")

#: The table, in ``--network`` order (the first is the default network).
KINDS: tuple[NetworkKind, ...] = (
    # nnU-Net's network: strides and kernels are planned from the patch and spacing.
    _kind(
        "dynunet",
        "DynUNet",
        _multiple_of(1),
        Encoder(("input_block.", "downsamples.", "bottleneck.")),
        KWARGS_DYNUNET,
        {
            "tiny": {"filters": [8, 16, 32], "res_block": False},
            "small": {"filters": [8, 16, 32, 64, 128], "res_block": False},
            "default": {"filters": [32, 64, 128, 256, 320, 320], "res_block": True},
        },
    ),
    _kind(
        "resunet",
        "UNet",
        _unet_divisor,
        Encoder(rule=ENCODER_MONAI_UNET),
        KWARGS_AS_IS,
        dict.fromkeys(PRESET_NAMES, _SPLEEN_BUNDLE_UNET),
    ),
    # ViT patches of 16 voxels; MONAI's default sizes at 'default'.
    _kind(
        "unetr",
        "UNETR",
        _multiple_of(16),
        Encoder(("vit.", *_VIT_ENCODER)),
        KWARGS_IMG_SIZE,
        {
            p: {"feature_size": f, "hidden_size": h, "mlp_dim": m, "num_heads": n, "norm_name": "instance"}
            for p, (f, h, m, n) in _UNETR_DIMS.items()
        },
        _img_size_is_patch,
    ),
    # Five stages that halve the grid.
    _kind(
        "swinunetr",
        "SwinUNETR",
        _multiple_of(32),
        Encoder(("swinViT.", *_VIT_ENCODER, "encoder10.")),
        KWARGS_AS_IS,
        {p: {"feature_size": f, "norm_name": "instance"} for p, f in zip(PRESET_NAMES, (12, 24, 48))},
    ),
    _kind(
        "segresnet",
        "SegResNet",
        _segresnet_divisor,
        Encoder(("convInit.", "down_layers.")),
        KWARGS_AS_IS,
        {p: {"init_filters": f} for p, f in zip(PRESET_NAMES, (8, 16, 32))},
    ),
    # 2.5D: torchvision's FCN-ResNet50 at 'default' (its state dicts load); any window size works
    # (the logits are interpolated back to the slice), and the encoder is the ResNet backbone.
    NetworkKind(
        "fcn2p5d",
        "SliceFCN",
        "SliceFCN",
        _multiple_of(1),
        Encoder(("backbone.",)),
        KWARGS_AS_IS,
        _frozen(
            {
                "tiny": {"slices": 3, "layers": [1, 1, 1, 1], "width": 8},
                "small": {"slices": 5, "layers": [1, 2, 2, 1], "width": 16},
                "default": {"slices": 5, "layers": [3, 4, 6, 3], "width": 64},
            }
        ),
        module="hanseg.fcn2p5d",
    ),
)

BY_KIND: Mapping[str, NetworkKind] = MappingProxyType({k.kind: k for k in KINDS})
BY_CLASS: Mapping[str, NetworkKind] = MappingProxyType({k.class_name: k for k in KINDS})
