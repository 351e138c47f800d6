"""Plan: dataset fingerprint → ``plans.json`` (spacing, patch, normalisation, network).

    python -m training.plan --data DATA_RAW --work WORK [--spacing X Y Z] [--patch Z Y X]
                            [--preset tiny|small|default] [--folds 5] [--seed 0]

Writes ``WORK/plans.json``, ``WORK/fingerprint.json`` and ``WORK/splits.json``.

CT normalisation follows nnU-Net: HU are absolute, so the clip window is the 0.5/99.5
percentiles of HU inside annotated OARs over the whole training set, and mean/std are
taken inside that window. The target spacing defaults to the median CT spacing.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from dataset.raw import RawCase, find_raw_cases, label_map
from hanseg.geometry import depth_below_top_mm
from hanseg.io import read_image
from hanseg.labels import OAR_NAMES
from hanseg.network_kinds import (
    BY_KIND,
    KWARGS_AS_IS,
    KWARGS_DYNUNET,
    KWARGS_IMG_SIZE,
    plain,
)
from hanseg.plans import DEFAULT_BODY_THRESHOLD_HU, NetworkSpec, Plans, plans_from_json, save_plans

log = logging.getLogger("training.plan")

#: Patch per preset; each network's own per-preset arguments are in its record of
#: :mod:`hanseg.network_kinds` (DynUNet's filters and residual blocks included).
PRESETS: dict[str, dict[str, Any]] = {
    # CI smoke tests: a fraction of a second per step on a CPU.
    "tiny": {"patch": (32, 64, 64)},
    # CPU-trainable (about 1 s per step of 2 patches on 2 cores): the shipped phantom model.
    "small": {"patch": (48, 96, 96)},
    # GPU training on real HaN-Seg (nnU-Net 3d_fullres scale).
    "default": {"patch": (64, 160, 160)},
}


#: Added to the deepest OAR of the training set below the top of the body: a patient's OARs may
#: sit a little lower than every training case's, and the crop must never cut one.
OAR_DEPTH_MARGIN_MM = 30.0


def fingerprint(cases: Sequence[RawCase], samples_per_case: int = 20000, seed: int = 0) -> dict[str, Any]:
    """Spacings, sizes, foreground HU statistics, OAR component counts and how deep below the top
    of the body the OARs reach, over the training set."""
    rng = np.random.default_rng(seed)
    spacings, sizes, values, depths = [], [], [], []
    components = dict.fromkeys(OAR_NAMES, 1)
    for case in cases:
        ct = read_image(case.ct)
        spacings.append(ct.GetSpacing())
        sizes.append(ct.GetSize())
        labels = label_map(case, ct)
        for name, n in count_components(labels).items():
            components[name] = max(components[name], n)
        depths.append(depth_below_top_mm(ct, labels > 0, DEFAULT_BODY_THRESHOLD_HU))
        fg = sitk.GetArrayViewFromImage(ct)[labels > 0]
        if fg.size:
            values.append(rng.choice(fg, min(samples_per_case, fg.size), replace=False))
    hu = np.concatenate(values).astype(np.float64)
    lo, hi = np.percentile(hu, [0.5, 99.5])
    inside = np.clip(hu, lo, hi)
    return {
        "cases": [c.case_id for c in cases],
        "spacings_xyz": spacings,
        "sizes_xyz": sizes,
        "median_spacing_xyz": np.median(spacings, axis=0).tolist(),
        "hu": {"p0_5": float(lo), "p99_5": float(hi), "mean": float(inside.mean()), "std": float(inside.std())},
        "max_components": components,
        "oar_depths_mm": depths,
    }


def oar_depth(fp: dict[str, Any]) -> float | None:
    """The plan's crop depth: the deepest OAR below the top of the body over the training set,
    plus :data:`OAR_DEPTH_MARGIN_MM`; None when a case could not be measured (no limit then)."""
    depths = fp.get("oar_depths_mm") or [None]
    return None if any(d is None for d in depths) else round(max(depths) + OAR_DEPTH_MARGIN_MM, 1)


def oar_end_depth(fp: dict[str, Any]) -> tuple[float, float] | None:
    """How far below the top of the body the lowest OAR ends over the training set: (the
    shallowest case, the deepest case), mm, no margin. The coverage check at inference warns
    about a CT that stops above the first: it would have cut every training case's OARs. None
    when a case could not be measured (no extent check then)."""
    depths = fp.get("oar_depths_mm") or [None]
    if any(d is None for d in depths):
        return None
    return round(min(depths), 1), round(max(depths), 1)


def count_components(labels: np.ndarray) -> dict[str, int]:
    """OAR name → number of 26-connected components in one label map (present OARs only)."""
    out = {}
    for label, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is not None and label <= len(OAR_NAMES):
            out[OAR_NAMES[label - 1]] = ndimage.label(labels[where] == label, np.ones((3, 3, 3), bool))[1]
    return out


def dynunet_kwargs(
    patch_zyx: Sequence[int], spacing_xyz: Sequence[float], filters: Sequence[int], res_block: bool = True
) -> dict[str, Any]:
    """nnU-Net's rule for strides: halve an axis at a level while its spacing is at most twice
    the finest current spacing and it keeps at least 4 voxels. Kernels are 1 along an axis
    that is much coarser than the others (thick slices), 3 otherwise. Lists are z,y,x."""
    spacing = np.array(spacing_xyz[::-1], float)
    size = np.array(patch_zyx, float)
    kernels, strides = [[3, 3, 3]], [[1, 1, 1]]
    kernels[0] = [1 if s > 2 * spacing.min() else 3 for s in spacing]
    for _ in filters[1:]:
        stride = [2 if (s <= 2 * spacing.min() and n >= 8) else 1 for s, n in zip(spacing, size)]
        strides.append(stride)
        spacing = spacing * np.array(stride)
        size = size / np.array(stride)
        kernels.append([1 if s > 2 * spacing.min() else 3 for s in spacing])
    return {
        "kernel_size": kernels,
        "strides": strides,
        "upsample_kernel_size": strides[1:],
        "filters": list(filters),
        "norm_name": "instance",
        "res_block": res_block,
    }


#: ``--network`` choices, in the table's order (records in :mod:`hanseg.network_kinds`).
#: ``resunet`` is exactly the architecture of MONAI's spleen_ct_segmentation bundle at every
#: preset (so the bundle's ``model.pt`` loads with ``--init-from``).
NETWORK_KINDS = tuple(BY_KIND)
SPLEEN_BUNDLE_UNET = plain(BY_KIND["resunet"].presets["default"])

KwargsBuilder = Callable[[Mapping[str, Any], Sequence[int], Sequence[float]], dict[str, Any]]

#: The planner behind each builder name of the table: (preset record, patch, spacing) → kwargs.
KWARGS_BUILDERS: Mapping[str, KwargsBuilder] = {
    KWARGS_AS_IS: lambda preset, patch, spacing: plain(preset),
    KWARGS_IMG_SIZE: lambda preset, patch, spacing: {"img_size": list(patch), **plain(preset)},
    KWARGS_DYNUNET: lambda preset, patch, spacing: dynunet_kwargs(patch, spacing, **preset),
}


def network_spec(kind: str, preset: str, patch: Sequence[int], spacing_xyz: Sequence[float]) -> dict[str, Any]:
    """``{"name", "kwargs"}`` of the plan's network. The patch must already fit the network
    (:func:`fit_patch`)."""
    record = BY_KIND.get(kind)
    if record is None:
        raise ValueError(f"unknown network kind {kind!r}; known: {', '.join(NETWORK_KINDS)}")
    build = KWARGS_BUILDERS[record.kwargs_builder]
    return {"name": record.class_name, "kwargs": build(record.presets[preset], patch, spacing_xyz)}


def fit_patch(spec: dict[str, Any], patch: Sequence[int]) -> list[int]:
    """Round each patch axis up to the multiple the network needs (UNETR 16, SwinUNETR 32,
    the residual UNet 2^levels; DynUNet plans its strides around any patch)."""
    div = NetworkSpec(spec["name"], spec["kwargs"]).patch_divisor()
    return [int(-(-p // div) * div) for p in patch]


def make_plans(
    fp: dict[str, Any],
    preset: str,
    spacing_xyz: Sequence[float] | None,
    patch_zyx: Sequence[int] | None,
    folds: Sequence[int],
    network: str = "dynunet",
) -> Plans:
    spacing = list(spacing_xyz or fp["median_spacing_xyz"])
    patch = list(patch_zyx or PRESETS[preset]["patch"])
    fitted = fit_patch(network_spec(network, preset, patch, spacing), patch)
    if fitted != patch:
        log.info("patch %s rounded up to %s for %s", patch, fitted, network)
    patch = fitted
    hu = fp["hu"]
    return plans_from_json(
        {
            "labels": list(OAR_NAMES),
            "channels": [
                {
                    "name": "CT",
                    "normalization": {
                        "scheme": "ct",
                        "clip_low": hu["p0_5"],
                        "clip_high": hu["p99_5"],
                        "mean": hu["mean"],
                        "std": hu["std"],
                    },
                },
                {"name": "MR_T1", "normalization": {"scheme": "zscore", "percentiles": [0.5, 99.5]}},
            ],
            "spacing_xyz_mm": spacing,
            "patch_size_zyx": patch,
            "network": network_spec(network, preset, patch, spacing),
            "folds": list(folds),
            "overlap": 0.5,
            "max_components": [fp["max_components"][n] for n in OAR_NAMES] if "max_components" in fp else [],
            "oar_depth_mm": oar_depth(fp),
            "oar_end_depth_mm": oar_end_depth(fp),
        }
    )


def make_splits(case_ids: Sequence[str], n_folds: int, seed: int) -> list[dict[str, list[str]]]:
    """k-fold split by case; n_folds=1 means train on all with no held-out validation."""
    ids = np.array(sorted(case_ids))
    np.random.default_rng(seed).shuffle(ids)
    if n_folds <= 1:
        return [{"train": sorted(ids.tolist()), "val": []}]
    parts = np.array_split(ids, n_folds)
    return [
        {"train": sorted(np.concatenate(parts[:k] + parts[k + 1 :]).tolist()), "val": sorted(parts[k].tolist())}
        for k in range(n_folds)
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.plan", description="Plan training from a HaN-Seg raw dataset."
    )
    ap.add_argument("--data", type=Path, required=True, help="raw dataset folder (case_XX/...)")
    ap.add_argument("--work", type=Path, required=True, help="work folder for plans, cache, runs")
    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="small",
        help="network and patch size (patch Z Y X: "
        + ", ".join(f"{name} {' '.join(map(str, p['patch']))}" for name, p in PRESETS.items())
        + "): tiny = CI smoke tests, small = CPU-trainable (the shipped phantom model), "
        "default = GPU training on real HaN-Seg (default: small)",
    )
    ap.add_argument(
        "--network",
        choices=NETWORK_KINDS,
        default="dynunet",
        help="network family (sized by --preset); resunet = the MONAI spleen bundle's UNet",
    )
    ap.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="target spacing, mm")
    ap.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"), help="patch size, voxels")
    ap.add_argument("--folds", type=int, default=5, help="number of folds for splits.json (1 = all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cases = find_raw_cases(args.data)
    fp = fingerprint(cases, seed=args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "fingerprint.json").write_text(json.dumps(fp, indent=1))
    splits = make_splits(fp["cases"], args.folds, args.seed)
    (args.work / "splits.json").write_text(json.dumps({"seed": args.seed, "folds": splits}, indent=1))
    plans = make_plans(fp, args.preset, args.spacing, args.patch, folds=[0], network=args.network)
    save_plans(plans, args.work / "plans.json")
    log.info(
        "planned %d cases: %s, spacing %s mm, patch %s, HU window [%.0f, %.0f]",
        len(cases),
        plans.network.name,
        plans.spacing_xyz_mm,
        plans.patch_size_zyx,
        fp["hu"]["p0_5"],
        fp["hu"]["p99_5"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
