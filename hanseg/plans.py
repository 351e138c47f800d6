"""``model/plans.json``: the contract between training and inference.

Training writes it; inference reads it into the frozen dataclasses below and never
guesses. Every field is plain JSON data (no expressions, no environment variables).
Axis conventions follow :mod:`hanseg.io`: ``spacing_xyz_mm`` is SimpleITK order in mm,
``patch_size_zyx`` is numpy order in voxels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import PlansError
from .labels import OAR_NAMES
from .network_kinds import BY_CLASS

PLANS_FORMAT_VERSION = 1
#: HU above which a voxel is body (crop box, windows that run); the planner uses it too.
DEFAULT_BODY_THRESHOLD_HU = -500.0
CHANNELS_KNOWN = ("CT", "MR_T1")


@dataclass(frozen=True)
class Normalization:
    """How one input channel is scaled before the network sees it.

    ``scheme="ct"``: clip to ``[clip_low, clip_high]`` HU, then ``(x - mean) / std``, all
    fixed numbers from the training set's foreground (nnU-Net's CT scheme: HU are absolute,
    so dataset-wide statistics transfer between scanners).
    ``scheme="zscore"``: per image, clip to its own ``percentiles`` inside the foreground,
    then subtract its mean and divide by its std (MR intensities have no absolute unit).
    """

    scheme: str
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        if self.scheme == "ct":
            missing = [k for k in ("clip_low", "clip_high", "mean", "std") if getattr(self, k) is None]
            if missing:
                raise PlansError(f"CT normalisation needs {', '.join(missing)}")
            if not self.std or self.std <= 0:
                raise PlansError(f"CT normalisation std must be > 0, got {self.std}")
        elif self.scheme != "zscore":
            raise PlansError(f"unknown normalisation scheme {self.scheme!r} (ct or zscore)")


@dataclass(frozen=True)
class Channel:
    name: str
    normalization: Normalization


@dataclass(frozen=True)
class NetworkSpec:
    """A MONAI network by class name and its keyword arguments (see :mod:`hanseg.networks`)."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def patch_divisor(self) -> int:
        """Every patch axis must be a multiple of this for the network to run; 1 where the
        network adapts (DynUNet: its strides are planned from the patch) or is not in the table
        (building it fails later, with the known names)."""
        kind = BY_CLASS.get(self.name)
        return kind.patch_divisor(self.kwargs) if kind else 1

    def check_patch(self, patch_zyx: tuple[int, ...]) -> None:
        """Refuse, at load, a patch the network cannot take (the table's patch rule)."""
        kind = BY_CLASS.get(self.name)
        error = kind.patch_error(self.kwargs, patch_zyx) if kind else None
        if error:
            raise PlansError(f"{self.name}: {error}")


@dataclass(frozen=True)
class Plans:
    labels: tuple[str, ...]
    channels: tuple[Channel, ...]
    spacing_xyz_mm: tuple[float, float, float]
    patch_size_zyx: tuple[int, int, int]
    network: NetworkSpec
    folds: tuple[int, ...] = (0,)
    overlap: float = 0.5
    sw_batch_size: int = 1
    crop_margin_mm: float = 10.0
    body_threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU
    #: Post-processing: per OAR (label order), keep at most this many connected components
    #: (the largest). Planned from the training ground truth; empty = no post-processing.
    max_components: tuple[int, ...] = ()
    #: Crop: the OARs lie at most this many mm below the top of the body (planned from the
    #: training ground truth, with a margin); the crop box, and so the network grid, stops
    #: there. None: no limit (the whole body box).
    oar_depth_mm: float | None = None
    #: Coverage check: how far (mm) below the top of the body the lowest OAR ends in the training
    #: ground truth, (the shallowest case, the deepest case), no margin. A CT that stops above
    #: the first below the top of the head is cut short (:mod:`hanseg.coverage`). None: not
    #: planned (older plans): no statement about how far the CT reaches.
    oar_end_depth_mm: tuple[float, float] | None = None
    format_version: int = PLANS_FORMAT_VERSION

    def __post_init__(self) -> None:
        if tuple(self.labels) != OAR_NAMES:
            raise PlansError(
                "plans.json labels differ from the challenge's 30 OARs in order; "
                "a model trained with another label order would write wrong ids"
            )
        names = tuple(c.name for c in self.channels)
        if not names or names[0] != "CT" or any(n not in CHANNELS_KNOWN for n in names):
            raise PlansError(f"channels must start with CT and be among {CHANNELS_KNOWN}, got {names}")
        if len(self.spacing_xyz_mm) != 3 or min(self.spacing_xyz_mm) <= 0:
            raise PlansError(f"spacing_xyz_mm must be 3 positive numbers, got {self.spacing_xyz_mm}")
        if len(self.patch_size_zyx) != 3 or min(self.patch_size_zyx) < 8:
            raise PlansError(f"patch_size_zyx must be 3 ints >= 8, got {self.patch_size_zyx}")
        self.network.check_patch(self.patch_size_zyx)
        if not 0 <= self.overlap < 1:
            raise PlansError(f"overlap must be in [0, 1), got {self.overlap}")
        if not self.folds:
            raise PlansError("plans.json lists no folds")
        if self.max_components and (len(self.max_components) != len(OAR_NAMES) or min(self.max_components) < 1):
            raise PlansError(f"max_components must be {len(OAR_NAMES)} ints >= 1 (or empty), got {self.max_components}")
        if self.oar_depth_mm is not None and self.oar_depth_mm <= 0:
            raise PlansError(f"oar_depth_mm must be a positive number of mm (or null), got {self.oar_depth_mm}")
        end = self.oar_end_depth_mm
        if end is not None and (len(end) != 2 or not 0 < end[0] <= end[1]):
            raise PlansError(
                f"oar_end_depth_mm must be [shallowest, deepest] in mm, 0 < the first <= the second, got {end}"
            )

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    @property
    def uses_mr(self) -> bool:
        return "MR_T1" in self.channel_names

    def weight_file(self, fold: int) -> str:
        """File name, inside the model folder, of one fold's weights."""
        return f"fold_{fold}.pt"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; :func:`plans_from_json` reads it back to an equal object."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["channels"] = [{"name": c.name, "normalization": asdict(c.normalization)} for c in self.channels]
        data["network"] = {"name": self.network.name, "kwargs": dict(self.network.kwargs)}
        plain: dict[str, Any] = json.loads(json.dumps(data))  # tuples → lists
        return plain


def _tuple(value: Any, kind: type, n: int | None, what: str) -> tuple[Any, ...]:
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise PlansError(f"{what}: expected a list of {kind.__name__}, got {value!r}") from exc
    if n is not None and len(out) != n:
        raise PlansError(f"{what}: expected {n} values, got {len(out)}")
    return out


def _end_depth(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    shallowest, deepest = _tuple(value, float, 2, "oar_end_depth_mm")
    return shallowest, deepest


def plans_from_json(data: Mapping[str, Any]) -> Plans:
    """Build :class:`Plans` from parsed JSON, with a clear error for each bad field."""
    try:
        channels = tuple(
            Channel(
                c["name"],
                Normalization(
                    **{**c["normalization"], "percentiles": tuple(c["normalization"].get("percentiles", (0.5, 99.5)))}
                ),
            )
            for c in data["channels"]
        )
        network = NetworkSpec(data["network"]["name"], MappingProxyType(dict(data["network"].get("kwargs", {}))))
        return Plans(
            labels=tuple(data["labels"]),
            channels=channels,
            spacing_xyz_mm=_tuple(data["spacing_xyz_mm"], float, 3, "spacing_xyz_mm"),
            patch_size_zyx=_tuple(data["patch_size_zyx"], int, 3, "patch_size_zyx"),
            network=network,
            folds=_tuple(data.get("folds", (0,)), int, None, "folds"),
            overlap=float(data.get("overlap", 0.5)),
            sw_batch_size=int(data.get("sw_batch_size", 1)),
            crop_margin_mm=float(data.get("crop_margin_mm", 10.0)),
            body_threshold_hu=float(data.get("body_threshold_hu", DEFAULT_BODY_THRESHOLD_HU)),
            max_components=_tuple(data.get("max_components", ()), int, None, "max_components"),
            oar_depth_mm=None if data.get("oar_depth_mm") is None else float(data["oar_depth_mm"]),
            oar_end_depth_mm=_end_depth(data.get("oar_end_depth_mm")),
            format_version=int(data.get("format_version", PLANS_FORMAT_VERSION)),
        )
    except KeyError as exc:
        raise PlansError(f"plans.json lacks the field {exc.args[0]!r}") from exc
    except TypeError as exc:
        raise PlansError(f"plans.json has a malformed field: {exc}") from exc


def load_plans(path: Path) -> Plans:
    path = Path(path)
    if not path.is_file():
        raise PlansError(f"{path} not found: the model folder must hold plans.json")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PlansError(f"{path} is not valid JSON: {exc}") from exc
    if data.get("format_version", PLANS_FORMAT_VERSION) > PLANS_FORMAT_VERSION:
        raise PlansError(
            f"{path} has format_version {data['format_version']}; this code reads "
            f"up to {PLANS_FORMAT_VERSION}: update the container"
        )
    return plans_from_json(data)


def save_plans(plans: Plans, path: Path) -> None:
    Path(path).write_text(json.dumps(plans.to_json(), indent=2) + "\n")
