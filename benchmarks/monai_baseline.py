"""The baseline: a MONAI bundle-style pipeline with the same network, weights and plan.

    python -m benchmarks.monai_baseline --input IN --output OUT --model model --invert probabilities|labels

``IN`` is the 2023 container layout (one case). The MR is registered to the CT with the same
function ``process.py`` uses and resampled onto the CT grid (``the same way for both``); then
the usual bundle chain: LoadImaged (CT + MR-on-CT as two channels) → EnsureChannelFirstd →
Orientationd → Spacingd to the plan's spacing → the plan's normalisation → the network's
axis order → SlidingWindowInferer (gaussian, the plan's roi and overlap, 4 windows per call
as in the spleen bundle's inference.json) → softmax →
Invertd back to the CT grid → argmax → the same largest-component post-processing → save.

``--invert probabilities`` inverts all 31 probability channels (what a bundle's
``Invertd(keys="pred")`` does); ``--invert labels`` takes the argmax first and inverts the
label map with nearest neighbour (the fallback a careful user would take when the former does
not fit in memory). No cropping to the body: the bundle sees the whole field of view.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    Invertd,
    Lambdad,
    LoadImaged,
    Orientationd,
    Spacingd,
    Transposed,
)

from hanseg.errors import InputLayoutError
from hanseg.io import read_image, write_label_map
from hanseg.labels import NUM_CLASSES
from hanseg.layouts.gc2023 import find_cases, output_name
from hanseg.model_dir import load_model_dir, load_state_dict
from hanseg.networks import build_network
from hanseg.plans import Plans
from hanseg.postprocess import keep_largest_components
from hanseg.preprocess import crop_boxes, normalize_ct, normalize_zscore
from hanseg.registration import register_mr_to_ct

#: Windows per network call: the spleen bundle's ``inferer.sw_batch_size`` (model-zoo
#: ``spleen_ct_segmentation/configs/inference.json``); 1.4× faster per window than 1 on 2 cores.
BUNDLE_SW_BATCH_SIZE = 4

log = logging.getLogger("benchmarks.monai_baseline")


def mr_on_ct_grid(ct: sitk.Image, mr: sitk.Image, plans: Plans, folder: Path) -> Path:
    """Register (as process.py does) and resample the MR onto the CT's grid, 0 outside its FOV;
    all 0 when the registration fails its sanity check (process.py's CT-only fallback)."""
    _, head = crop_boxes(ct, mr, plans.body_threshold_hu, plans.crop_margin_mm, plans.oar_depth_mm)
    result = register_mr_to_ct(ct, mr, head, plans.body_threshold_hu)
    on_ct = sitk.Resample(mr, ct, result.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    if not result.ok:
        log.warning("MR not used (CT-only fallback): %s", result.message)
        on_ct *= 0.0
    path = folder / "mr_on_ct.mha"
    sitk.WriteImage(on_ct, str(path))
    return path


def normalise(plans: Plans):
    """The plan's normalisation, in place on the (C, X, Y, Z) tensor: CT window + z-score, MR z-score."""

    def apply(image: torch.Tensor) -> torch.Tensor:
        arr = image.numpy()  # shares memory with the tensor
        arr[0] = normalize_ct(arr[0].copy(), plans.channels[0].normalization)
        if arr.shape[0] > 1:
            arr[1] = normalize_zscore(arr[1].copy(), plans.channels[1].normalization, arr[1] > 0)
        return image

    return apply


def preprocessing(plans: Plans, load: bool = True) -> Compose:
    """The bundle chain up to the network. ``load=False`` starts from a channel-first
    ``MetaTensor`` instead of a file (tests build it without ITK, see :func:`metatensor`)."""
    # MONAI arrays are (C, X, Y, Z); the network was trained on (C, Z, Y, X) in LPS.
    head = [LoadImaged("image", reader="ITKReader", image_only=True), EnsureChannelFirstd("image")] if load else []
    return Compose(
        [
            *head,
            Orientationd("image", axcodes="LPS"),
            Spacingd("image", pixdim=plans.spacing_xyz_mm, mode="bilinear"),
            Lambdad("image", normalise(plans)),
            Transposed("image", (0, 3, 2, 1)),
        ]
    )


def metatensor(image: sitk.Image) -> MetaTensor:
    """``image`` as MONAI's ITKReader + EnsureChannelFirst give it: (1, X, Y, Z) with the RAS
    affine (LPS → RAS flips the first two rows)."""
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    affine[:3, 3] = lps_to_ras @ np.array(image.GetOrigin())
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)[None].astype(np.float32)
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), affine=torch.from_numpy(affine))


def load_network(model: Path) -> tuple[Plans, torch.nn.Module]:
    files = load_model_dir(model)
    net = build_network(files.plans.network, len(files.plans.channels), NUM_CLASSES)
    net.load_state_dict(load_state_dict(files.weight_paths[0]))
    return files.plans, net.eval()


@torch.inference_mode()
def segment(ct_path: Path, mr_path: Path, model: Path, invert: str, scratch: Path) -> np.ndarray:
    plans, net = load_network(model)
    ct = read_image(ct_path)
    pre = preprocessing(plans)
    data = pre({"image": [str(ct_path), str(mr_on_ct_grid(ct, read_image(mr_path), plans, scratch))]})
    inferer = SlidingWindowInferer(
        roi_size=plans.patch_size_zyx, sw_batch_size=BUNDLE_SW_BATCH_SIZE, overlap=plans.overlap, mode="gaussian"
    )
    log.info("network input %s (C,Z,Y,X), whole field of view", tuple(data["image"].shape))
    logits = inferer(data["image"][None], net)[0]
    data["pred"] = torch.softmax(logits, dim=0)
    del logits
    if invert == "labels":
        data = AsDiscreted("pred", argmax=True)(data)
    data = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=invert == "labels")(data)
    pred = data["pred"]
    labels = pred.argmax(0) if invert == "probabilities" else pred[0]
    labels = np.ascontiguousarray(labels.numpy().astype(np.uint8).transpose(2, 1, 0))  # x,y,z → z,y,x
    keep_largest_components(labels, plans.max_components)
    return labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--invert", choices=("probabilities", "labels"), required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    [case] = find_cases(args.input)
    if case.mr is None:
        raise InputLayoutError(f"{case.ct.name} has no T1 MR: the baseline's input is CT and MR as two channels")
    with tempfile.TemporaryDirectory() as scratch:
        labels = segment(case.ct, case.mr, args.model, args.invert, Path(scratch))
    out = args.output / "images/head_neck_oar" / output_name(case.ct)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_label_map(labels, read_image(case.ct), out)
    log.info("baseline (%s inverted) done in %.1f s → %s", args.invert, time.perf_counter() - start, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
