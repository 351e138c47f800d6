"""Preprocessed-case cache, patch sampling that oversamples small OARs, augmentation.

The cache holds, per case, the output of ``hanseg.preprocess.preprocess_case`` (the
inference code path) plus the label map brought onto the same grid. A case is recomputed
only when the plan's preprocessing fields change (the key is stored with it).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dataset.raw import RawCase, label_map
from hanseg.geometry import index3
from hanseg.io import image_like, read_image
from hanseg.labels import lr_swap_table
from hanseg.plans import Plans
from hanseg.preprocess import PREPROCESSING_VERSION, labels_to_grid, preprocess_case

log = logging.getLogger(__name__)
COORDS_PER_CLASS = 2000


@dataclass
class CachedCase:
    case_id: str
    image: np.ndarray  # (C, Z, Y, X) float16
    labels: np.ndarray  # (Z, Y, X) uint8
    present: np.ndarray  # (31,) bool
    coords: dict[int, np.ndarray]  # class -> (n, 3) voxel coordinates z,y,x (a sample)


def preprocessing_key(plans: Plans) -> str:
    """Hash of every plan field that changes the preprocessed arrays, and of the version of the
    preprocessing code itself (:data:`hanseg.preprocess.PREPROCESSING_VERSION`)."""
    fields = {
        "channels": [c.name for c in plans.channels],
        "norm": [vars(c.normalization) for c in plans.channels],
        "spacing": plans.spacing_xyz_mm,
        "margin": plans.crop_margin_mm,
        "threshold": plans.body_threshold_hu,
        "v": PREPROCESSING_VERSION,
    }
    if plans.oar_depth_mm is not None:  # only then: caches of plans without a depth keep their keys
        fields["oar_depth"] = plans.oar_depth_mm
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:16]


def _class_coords(labels: np.ndarray, rng: np.random.Generator) -> dict[int, np.ndarray]:
    out = {}
    for c in np.unique(labels):
        zyx = np.argwhere(labels == c)
        keep = rng.choice(len(zyx), min(COORDS_PER_CLASS, len(zyx)), replace=False)
        out[int(c)] = zyx[keep].astype(np.int16)
    return out


def cache_case(case: RawCase, plans: Plans, cache_dir: Path) -> Path:
    """Preprocess one raw case into ``cache_dir/<case_id>.npz`` unless it is already there."""
    path = cache_dir / f"{case.case_id}.npz"
    # the masks left out (OAR_data.csv) change the labels too; a complete case keeps the plain key
    key = preprocessing_key(plans) + (f"-without-{'+'.join(case.unreliable)}" if case.unreliable else "")
    if path.is_file():
        with np.load(path) as data:
            if str(data["key"]) == key:
                return path
    ct = read_image(case.ct)
    mr = read_image(case.mr) if case.mr else None
    pre = preprocess_case(ct, mr, plans)
    labels = labels_to_grid(image_like(label_map(case, ct), ct), pre)
    coords = _class_coords(labels, np.random.default_rng(0))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    # Any, not ndarray: mypy would match a dict of arrays against savez's allow_pickle flag (numpy >= 2.1),
    # and naming that flag here would store it as an array under older numpy
    by_class: dict[str, Any] = {f"coords_{c}": v for c, v in coords.items()}
    np.savez_compressed(
        tmp,
        key=key,
        image=pre.image.astype(np.float16),
        labels=labels,
        present=case.present,
        warnings=np.array(pre.warnings, dtype=str),
        **by_class,
    )
    tmp.replace(path)
    log.info(
        "cached %s: grid %s%s", case.case_id, pre.grid.shape, f" ({'; '.join(pre.warnings)})" if pre.warnings else ""
    )
    return path


def load_cached(path: Path) -> CachedCase:
    with np.load(path) as data:
        coords = {int(k.split("_")[1]): data[k] for k in data.files if k.startswith("coords_")}
        return CachedCase(path.stem, data["image"], data["labels"], data["present"], coords)


def sample_patch(
    case: CachedCase, patch: tuple[int, int, int], rng: np.random.Generator, fg_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """One (image, labels) patch. With probability ``fg_fraction`` it is centred on a voxel of
    a foreground class drawn uniformly among the case's classes, so a 0.1 mL cochlea is seen as
    often as a 80 mL mandible; otherwise anywhere. Padded where the patch leaves the volume."""
    shape = np.array(case.labels.shape)
    fg = [c for c in case.coords if c != 0]
    if fg and rng.random() < fg_fraction:
        pts = case.coords[int(rng.choice(fg))]
        centre = pts[rng.integers(len(pts))].astype(int)
    else:
        centre = np.array([rng.integers(s) for s in shape])
    half = np.array(patch) // 2
    lo = centre - half + rng.integers(-half // 2, half // 2 + 1)
    hi = lo + np.array(patch)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(hi, shape)
    image = np.zeros((case.image.shape[0], *patch), np.float32)
    image[0] = case.image[0].min()  # CT padding = air after normalisation
    labels = np.zeros(patch, np.uint8)
    dst = tuple(slice(a - start, b - start) for a, b, start in zip(src_lo, src_hi, lo))
    src = tuple(slice(a, b) for a, b in zip(src_lo, src_hi))
    image[(slice(None), *dst)] = case.image[(slice(None), *src)]
    labels[dst] = case.labels[src]
    return image, labels


SWAP = torch.tensor(lr_swap_table())


def augment(
    image: torch.Tensor,
    labels: torch.Tensor,
    present: torch.Tensor,
    gen: torch.Generator,
    mr_dropout: float = 0.2,
    elastic: float = 0.0,
    lowres: float = 0.0,
    reslice: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch augmentation on (B,C,Z,Y,X) images and (B,Z,Y,X) labels.

    Left-right mirroring flips the x axis (patient left-right on the canonical LPS grid) AND
    swaps every L/R label pair, so a mirrored left parotid is labelled as a right one. Random
    rotation/scaling (nearest for labels), CT intensity shift/scale and noise, and MR dropout
    (zeroed channel, the network's CT-only path). ``elastic``: probability per sample of an
    elastic deformation on top of the affine one (same resampling, see :func:`elastic_field`).
    ``lowres``: probability per sample of a coarser acquisition (see :func:`simulate_low_resolution`).
    ``reslice``: probability per sample of a scan on another voxel lattice (see :func:`simulate_reslicing`).

    The tensors may live on a GPU: the work (resampling, noise) then runs there, while every
    random parameter is still drawn from the CPU generator ``gen``, so a run's draws do not
    depend on the device and a checkpoint's generator state resumes them."""
    b, dev = image.shape[0], image.device
    flip = (torch.rand(b, generator=gen) < 0.5).to(dev)
    if flip.any():
        image[flip] = image[flip].flip(-1)
        labels[flip] = SWAP.to(dev)[labels[flip].long()].to(labels.dtype).flip(-1)
        present[flip] = present[flip][:, SWAP.to(present.device)]
    image, labels = _random_affine(image, labels, gen, elastic=elastic)
    if lowres > 0:  # no random draws otherwise, so runs without it are reproduced exactly
        image = simulate_low_resolution(image, gen, lowres)
    if reslice > 0:  # likewise
        image = simulate_reslicing(image, gen, reslice)
    scale = (1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1)).to(dev)
    shift = (0.1 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1)).to(dev)
    image[:, 0] = image[:, 0] * scale + shift + 0.05 * _noise(image[:, 0].shape, gen, dev)
    if image.shape[1] > 1:
        drop = (torch.rand(b, generator=gen) < mr_dropout).to(dev)
        image[drop, 1:] = 0
    return image, labels, present


def _noise(shape: torch.Size, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal noise on ``device``. On the CPU it comes straight from ``gen`` (as it
    always has, so CPU runs reproduce); on a GPU from a generator there seeded by one draw of
    ``gen``: drawing a batch's millions of normals on the CPU would cost as much as the step."""
    if device.type == "cpu":
        return torch.randn(shape, generator=gen)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)


def simulate_low_resolution(image: torch.Tensor, gen: torch.Generator, p: float, min_zoom: float = 0.5) -> torch.Tensor:
    """Each sample with probability ``p``: every channel down-sampled by one zoom factor drawn
    in [``min_zoom``, 1] (area average) and up-sampled back (trilinear), as from a scan with
    coarser voxels resampled to the network grid (nnU-Net's low-resolution simulation).
    The labels keep their resolution: the network learns to recover it."""
    b, shape = image.shape[0], image.shape[2:]
    pick = torch.rand(b, generator=gen) < p
    zoom = min_zoom + (1 - min_zoom) * torch.rand(b, generator=gen)
    for i in torch.nonzero(pick).flatten().tolist():
        small = [max(1, round(n * float(zoom[i]))) for n in shape]
        coarse = F.interpolate(image[i : i + 1], size=small, mode="area")
        image[i : i + 1] = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=False)
    return image


def simulate_reslicing(image: torch.Tensor, gen: torch.Generator, p: float, max_factor: float = 1.6) -> torch.Tensor:
    """Each sample with probability ``p``: the patch as if the scan had come on another voxel
    lattice. Per axis a spacing factor f (log-uniform in [1/``max_factor``, ``max_factor``],
    in network voxels) and a phase φ in [0, 1) are drawn; the image is interpolated linearly
    onto the lattice (j + φ)·f, then back onto the network's one, as inference's two linear
    resamplings (scanner grid -> re-gridded export -> network grid) would do it.

    Why: the phantoms' slices fall exactly on the network's 2.5 mm lattice, so without this a
    network never sees the blur of a lattice that does not, and loses 0.02 mean Dice (0.15 on
    the cochleae) on CTs with 2.0 mm slices (``benchmarks.phantom_eval``, variant ``respaced``).
    The labels stay: they describe the anatomy, whatever the lattice."""
    b = image.shape[0]
    pick = torch.rand(b, generator=gen) < p
    log_f = (torch.rand(b, 3, generator=gen) * 2 - 1) * float(np.log(max_factor))
    phase = torch.rand(b, 3, generator=gen)
    for i in torch.nonzero(pick).flatten().tolist():
        sample = image[i]
        for axis in range(3):
            sample = reslice_axis(sample, axis + 1, float(torch.exp(log_f[i, axis])), float(phase[i, axis]))
        image[i] = sample
    return image


def reslice_axis(x: torch.Tensor, dim: int, factor: float, phase: float) -> torch.Tensor:
    """``x`` interpolated linearly along ``dim`` onto the lattice (j + ``phase``)·``factor``
    (in ``x``'s voxels) and back onto its own, edges clamped (see :func:`linear_along`)."""
    n = x.shape[dim]
    m = max(1, int(np.floor((n - 1) / factor - phase)) + 1)
    there = (torch.arange(m, dtype=torch.float64) + phase) * factor  # new lattice, in old voxels
    back = torch.arange(n, dtype=torch.float64) / factor - phase  # old lattice, in new voxels
    return linear_along(linear_along(x, there, dim), back, dim)


def linear_along(x: torch.Tensor, positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` sampled at fractional ``positions`` (voxel units) along ``dim`` by linear
    interpolation; positions outside [0, n-1] take the nearest edge value (border padding)."""
    n = x.shape[dim]
    pos = positions.clamp(0, n - 1)
    lo = pos.floor().long().clamp(max=max(n - 2, 0))
    w = (pos - lo).to(x.dtype).to(x.device)
    shape = [1] * x.dim()
    shape[dim] = -1
    w = w.view(shape)
    lo, hi = lo.to(x.device), (lo + 1).clamp(max=n - 1).to(x.device)
    return x.index_select(dim, lo) * (1 - w) + x.index_select(dim, hi) * w


def elastic_field(
    n: int,
    shape_zyx: tuple[int, int, int],
    gen: torch.Generator,
    max_voxels: float = 4.0,
    control: int = 5,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Smooth random displacements, (n, Z, Y, X, 3) in grid_sample's normalised x,y,z units:
    uniform in ±``max_voxels`` on a ``control``³ lattice, trilinearly interpolated, so the
    deformation bends organs over ~patch/4 without tearing them."""
    coarse = (torch.rand(n, 3, control, control, control, generator=gen) * 2 - 1) * max_voxels
    field = F.interpolate(coarse.to(device), size=shape_zyx, mode="trilinear", align_corners=True)
    per_voxel = torch.tensor([2.0 / shape_zyx[2], 2.0 / shape_zyx[1], 2.0 / shape_zyx[0]], device=device)  # x, y, z
    return field.permute(0, 2, 3, 4, 1) * per_voxel


def _random_affine(
    image: torch.Tensor,
    labels: torch.Tensor,
    gen: torch.Generator,
    max_deg: float = 10.0,
    max_scale: float = 0.1,
    elastic: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    b = image.shape[0]
    theta = torch.zeros(b, 3, 4)
    for i in range(b):
        ang = torch.deg2rad((torch.rand(3, generator=gen) * 2 - 1) * max_deg)
        s = 1 + (torch.rand(1, generator=gen).item() * 2 - 1) * max_scale
        cz, sz = torch.cos(ang[0]), torch.sin(ang[0])
        cy, sy = torch.cos(ang[1]), torch.sin(ang[1])
        cx, sx = torch.cos(ang[2]), torch.sin(ang[2])
        rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        theta[i, :, :3] = (rz @ ry @ rx) * s
    grid = F.affine_grid(theta.to(image.device), list(image.shape), align_corners=False)
    if elastic > 0:  # no random draws otherwise, so runs without it are reproduced exactly
        bend = torch.rand(b, generator=gen) < elastic
        if bend.any():
            bend = bend.to(image.device)
            grid[bend] = grid[bend] + elastic_field(int(bend.sum()), index3(image.shape[2:]), gen, device=image.device)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    lab = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return image, lab[:, 0].to(labels.dtype)
