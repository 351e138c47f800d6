"""Demo: run the container's ``process.py`` on the ``test/`` sample and report what it wrote.

    python -m evaluation.demo [--input test] [--output demo_output] [--model model] [--device auto]

Prints where the outputs are and the volume of every OAR found. If the model folder holds no
trained model yet, the pipeline is shown with an UNTRAINED tiny network built in a temporary
folder, and the demo says so loudly: its labels are then meaningless.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":
    # --help and usage errors answer before torch, SimpleITK and the network code are imported (~2 s):
    # the command line is built by evaluation.cli_parsers, which imports none of them
    from .cli_parsers import demo_parser

    demo_parser().parse_args()

import numpy as np
import SimpleITK as sitk
import torch

from hanseg.errors import ModelError
from hanseg.folders import CT_DIR
from hanseg.labels import LABEL_NAMES, NUM_CLASSES, OAR_NAMES
from hanseg.layouts.gc2023 import OUTPUT_DIR
from hanseg.model_dir import export_model, load_model_dir
from hanseg.networks import build_network
from hanseg.plans import plans_from_json

from .cli_parsers import demo_parser
from .metrics import present_in, score_case

log = logging.getLogger("evaluation.demo")
ROOT = Path(__file__).resolve().parent.parent

#: Only for showing the pipeline when no trained model is present: coarse and tiny.
UNTRAINED_PLANS = {
    "channels": [
        {
            "name": "CT",
            "normalization": {"scheme": "ct", "clip_low": -1000, "clip_high": 1500, "mean": 0.0, "std": 500.0},
        },
        {"name": "MR_T1", "normalization": {"scheme": "zscore"}},
    ],
    "spacing_xyz_mm": [3.0, 3.0, 3.0],
    "patch_size_zyx": [32, 64, 64],
    "network": {"name": "UNet", "kwargs": {"channels": [8, 16], "strides": [2], "num_res_units": 0}},
}


def untrained_model(root: Path) -> Path:
    plans = plans_from_json({**UNTRAINED_PLANS, "labels": list(OAR_NAMES)})
    torch.manual_seed(0)
    net = build_network(plans.network, len(plans.channels), NUM_CLASSES)
    export_model(root, plans, [net.state_dict()], {"version": "untrained-demo", "trained": False})
    return root


def oar_volumes_ml(path: Path) -> dict[str, float]:
    image = sitk.ReadImage(str(path))
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    counts = np.bincount(sitk.GetArrayViewFromImage(image).ravel(), minlength=NUM_CLASSES)
    return {LABEL_NAMES[i]: counts[i] * voxel_ml for i in range(1, NUM_CLASSES) if counts[i]}


def qa_picture(ct_path: Path, seg_path: Path) -> Path | None:
    """The QA picture (:mod:`hanseg.qa_picture`) next to the output folder."""
    from .qa import overlay_png

    png = seg_path.parent.parent.parent / f"qa_{seg_path.name.split('.')[0]}.png"
    return overlay_png(sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(seg_path)), png, title=seg_path.name)


def scores_against(gt_path: Path, seg_path: Path) -> dict[str, tuple[float, float]]:
    """OAR → (Dice, HD95 mm) when the sample ships its ground truth (test/ground_truth)."""
    if not gt_path.is_file():
        return {}
    seg = sitk.ReadImage(str(seg_path))
    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(gt_path)))
    scores = score_case("", sitk.GetArrayFromImage(seg), gt, present_in(gt), tuple(reversed(seg.GetSpacing())))
    return {s.oar: (s.dice, s.hd95) for s in scores}


def report(output: Path, input_dir: Path) -> None:
    for entry in json.loads((output / "results.json").read_text()):
        ct_name = entry["inputs"][0]["filename"]
        for msg in entry["error_messages"]:
            log.warning("%s: %s", ct_name, msg)
        for out in entry["outputs"]:
            path = output / OUTPUT_DIR / out["filename"]
            volumes = oar_volumes_ml(path)
            scores = scores_against(input_dir / "ground_truth" / out["filename"], path)
            lines = [
                f"  {name:<16} {ml:8.2f} mL"
                + (f"   Dice {scores[name][0]:.3f}  HD95 {scores[name][1]:6.2f} mm" if name in scores else "")
                for name, ml in volumes.items()
            ]
            if scores:
                lines.append(
                    f"  mean Dice over {len(scores)} annotated OARs: "
                    f"{np.mean([d for d, _ in scores.values()]):.3f} (vs {input_dir / 'ground_truth'})"
                )
            log.info("%s → %s\n%d OARs found:\n%s", ct_name, path, len(volumes), "\n".join(lines))
            png = qa_picture(input_dir / CT_DIR / ct_name, path)
            if png:
                log.info("QA overlay: %s", png)
    log.info("results.json: %s", output / "results.json")


def main(argv: list[str] | None = None) -> int:
    args = demo_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        try:
            load_model_dir(model)
        except ModelError as exc:
            log.warning(
                "no usable trained model in %s (%s).\n*** Showing the pipeline with an UNTRAINED "
                "network: the label map below is NOT a segmentation. ***",
                model,
                exc,
            )
            model = untrained_model(Path(tmp) / "model")
        cmd = [
            sys.executable,
            str(ROOT / "process.py"),
            "--input",
            str(args.input),
            "--output",
            str(args.output),
            "--model",
            str(model),
            "--device",
            args.device,
        ]
        log.info("running: %s", " ".join(cmd))
        code = subprocess.run(cmd, check=False).returncode
    if (args.output / "results.json").is_file():
        report(args.output, args.input)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
