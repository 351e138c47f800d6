"""Compare a container's outputs with the expected ones (used by ``test.sh`` and the tests).

    python -m hanseg.compare --label-map OUT.mha --expected EXPECTED.mha [--min-dice 0.98]
                             [--results results.json --expected-results expected_output.json]

The label map must be on exactly the expected grid (size, spacing, origin, direction), be
uint8, and agree per OAR with Dice ≥ ``--min-dice`` (1.0 would demand bit-identical output).
The expected outputs are float32's; :data:`DEFAULT_MIN_DICE` (0.98) lets the same network in
bfloat16 or float16, or on other hardware, differ at the near-tie voxels of an OAR's edge: on
the shipped ``test/`` case bfloat16 gave 0.9868-0.9956 for its lowest OAR depending on the
thread count, since one voxel of a small optic nerve is about 1 % of its Dice. A wrong label, a
swapped side or a shifted grid still scores far below. ``results.json`` must equal the
expected JSON. Exit 0 when all holds, 1 with every difference listed otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .labels import OAR_NAMES

log = logging.getLogger(__name__)


#: Per-OAR Dice the outputs must reach against the expected (float32) ones: see the module docstring.
DEFAULT_MIN_DICE = 0.98


def grid_differences(image: sitk.Image, expected: sitk.Image, tol: float = 1e-4) -> list[str]:
    problems = []
    if image.GetSize() != expected.GetSize():
        problems.append(f"size {image.GetSize()} != expected {expected.GetSize()}")
    for name in ("Spacing", "Origin", "Direction"):
        got, want = getattr(image, f"Get{name}")(), getattr(expected, f"Get{name}")()
        if not np.allclose(got, want, atol=tol):
            problems.append(f"{name.lower()} {tuple(round(v, 5) for v in got)} != expected {want}")
    if image.GetPixelID() != sitk.sitkUInt8:
        problems.append(f"pixel type {image.GetPixelIDTypeAsString()}, expected 8-bit unsigned integer")
    return problems


def per_oar_dice(labels: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Dice per OAR present in either map (an OAR absent from both is not scored)."""
    n = int(max(labels.max(initial=0), expected.max(initial=0), len(OAR_NAMES))) + 1  # any stray id counts too
    counts = np.bincount(labels.ravel().astype(np.int64) * n + expected.ravel(), minlength=n * n)
    joint = counts.reshape(n, n)
    scores = {}
    for i, name in enumerate(OAR_NAMES, start=1):
        a, b, both = joint[i, :].sum(), joint[:, i].sum(), joint[i, i]
        if a + b:
            scores[name] = float(2 * both / (a + b))
    return scores


def compare_label_maps(path: Path, expected_path: Path, min_dice: float) -> list[str]:
    image, expected = sitk.ReadImage(str(path)), sitk.ReadImage(str(expected_path))
    problems = grid_differences(image, expected)
    if image.GetSize() != expected.GetSize():
        return problems
    labels, want = sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(expected)
    if labels.max(initial=0) > len(OAR_NAMES):
        problems.append(f"label {labels.max()} > {len(OAR_NAMES)}")
        return problems
    scores = per_oar_dice(labels, want)
    low = {k: round(v, 4) for k, v in scores.items() if v < min_dice}
    if low:
        problems.append(f"OARs with Dice < {min_dice} against the expected map: {low}")
    log.info(
        "label map %s: %d OARs compared, lowest Dice %.4f", path.name, len(scores), min(scores.values(), default=1.0)
    )
    return problems


def compare_results(path: Path, expected_path: Path) -> list[str]:
    got, want = json.loads(path.read_text()), json.loads(expected_path.read_text())
    return (
        []
        if got == want
        else [
            f"{path.name} differs from {expected_path.name}:\n"
            f"  got      {json.dumps(got)}\n  expected {json.dumps(want)}"
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label-map", type=Path, required=True)
    ap.add_argument("--expected", type=Path, required=True, help="expected label map")
    ap.add_argument("--min-dice", type=float, default=DEFAULT_MIN_DICE)
    ap.add_argument("--results", type=Path, help="results.json written by the container")
    ap.add_argument("--expected-results", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for path in (args.label_map, args.expected, args.results, args.expected_results):
        if path is not None and not path.is_file():
            log.error("FAIL: %s does not exist", path)
            return 1
    problems = compare_label_maps(args.label_map, args.expected, args.min_dice)
    if args.results is not None and args.expected_results is not None:
        problems += compare_results(args.results, args.expected_results)
    for p in problems:
        log.error("FAIL: %s", p)
    if not problems:
        log.info("PASS: outputs match the expected ones")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
