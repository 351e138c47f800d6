"""The 2.5D network: an FCN with a ResNet backbone that reads ``slices`` adjacent axial slices
(× the input channels) as the channels of one 2D image and predicts the centre slice.

It is written here rather than imported from torchvision because torchvision's wheels are
built against one torch release each and this project supports a range (the CPU wheel of
torch 2.13 has no matching torchvision). The module names and tensor shapes are torchvision's
``fcn_resnet50`` (ResNet "v1.5": the stride sits in the 3×3 convolution; layers 3 and 4
dilated instead of strided, output stride 8; ``FCNHead``), so at the ``default`` preset a
torchvision state dict (``fcn_resnet50(...).state_dict()`` or an ImageNet ``resnet50``
state dict, see :mod:`training.transfer`) loads key for key. ``tests`` hold the key list.

Axes: the network is called like the 3D networks, on ``(B, C, Z, Y, X)`` windows, and returns
``(B, classes, Z, Y, X)`` logits, so the Segmenter's sliding window, blending, mirroring and
the way back to the CT grid are the 3D ones. Inside, slice ``z`` is predicted from slices
``z - slices//2 .. z + slices//2`` of the same window; the window's first and last slices
repeat their edge slice (replicate padding). Gaussian blending gives those edge slices low
weight wherever windows overlap, and at the top and bottom of the scan replicate padding is
what a 2D reader of the first slice would have anyway. Input channel ``c * slices + j`` is
channel ``c`` at offset ``j - slices//2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

EXPANSION = 4  # a bottleneck block's output has 4× its width (ResNet-50 and deeper)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride, dilation) → 1×1, plus the shortcut (projected when the shape changes)."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = _bn(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        y: torch.Tensor = self.relu(out + shortcut)
        return y


class Backbone(nn.Module):
    """ResNet without its pooling and classifier; layers 3 and 4 dilated (output stride 8)."""

    def __init__(self, in_channels: int, layers: Sequence[int], width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes, self.dilation = width, 1
        self.layer1 = self._layer(width, layers[0], stride=1, dilate=False)
        self.layer2 = self._layer(width * 2, layers[1], stride=2, dilate=False)
        self.layer3 = self._layer(width * 4, layers[2], stride=2, dilate=True)
        self.layer4 = self._layer(width * 8, layers[3], stride=2, dilate=True)
        self.out_channels = width * 8 * EXPANSION

    def _layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        """torchvision's rule: a dilated layer keeps the resolution (stride 1) and multiplies
        the dilation by the stride; its first block still uses the previous dilation."""
        previous = self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * EXPANSION, 1, stride=stride, bias=False), _bn(planes * EXPANSION)
            )
        blocks_ = [Bottleneck(self.inplanes, planes, stride, previous, downsample)]
        self.inplanes = planes * EXPANSION
        blocks_ += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        y: torch.Tensor = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return y


def fcn_head(in_channels: int, classes: int) -> nn.Sequential:
    """torchvision's FCNHead: 3×3 conv to a quarter of the channels, BN, ReLU, dropout, 1×1."""
    inter = in_channels // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
        _bn(inter),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Conv2d(inter, classes, 1),
    )


def _init(module: nn.Module) -> None:
    """torchvision's ResNet initialisation (He, fan-out) so a network from scratch starts alike."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight), nn.init.zeros_(m.bias)


def stack_slices(x: torch.Tensor, slices: int) -> torch.Tensor:
    """``(B, C, Z, Y, X)`` → ``(B·Z, C·slices, Y, X)``: each slice with its neighbours as
    channels, the window's ends replicated (see the module docstring)."""
    b, c, z, y, w = x.shape
    half = slices // 2
    padded = F.pad(x, (0, 0, 0, 0, half, half), mode="replicate") if half else x
    windows = padded.unfold(2, slices, 1)  # (B, C, Z, Y, X, slices)
    return windows.permute(0, 2, 1, 5, 3, 4).reshape(b * z, c * slices, y, w)


def unstack_slices(out: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B·Z, K, Y, X)`` → ``(B, K, Z, Y, X)``: the inverse of :func:`stack_slices`'s batching."""
    bz, k, y, w = out.shape
    return out.reshape(batch, bz // batch, k, y, w).permute(0, 2, 1, 3, 4)


class SliceFCN(nn.Module):
    """FCN-ResNet over slice stacks (see the module docstring). ``layers`` are the bottleneck
    blocks per stage and ``width`` the first stage's width: (3, 4, 6, 3) and 64 are ResNet-50."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        slices: int = 5,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"SliceFCN reads 3D windows (spatial_dims=3), got spatial_dims={spatial_dims}")
        if slices < 1 or slices % 2 == 0:
            raise ValueError(f"slices must be odd (a centre slice and as many on each side), got {slices}")
        if len(layers) != 4:
            raise ValueError(f"layers must give the blocks of 4 stages, got {list(layers)}")
        self.slices = slices
        self.backbone = Backbone(in_channels * slices, layers, width)
        self.classifier = fcn_head(self.backbone.out_channels, out_channels)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"SliceFCN expects (B, C, Z, Y, X) windows, got shape {tuple(x.shape)}")
        images = stack_slices(x, self.slices)
        logits = self.classifier(self.backbone(images))
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return unstack_slices(logits, x.shape[0])
