"""Check :class:`hanseg.fcn2p5d.SliceFCN` against torchvision's ``fcn_resnet50``.

    PYTHON_WITH_TORCHVISION scripts/torchvision_fcn_check.py [--save-state fcn.pt]

Run it with a Python that has torchvision (its wheels pin one torch release, so it is not in
this project's environment; ``pip install torch==2.14.1 torchvision==0.29.1`` in a separate
venv does). It

1. loads torchvision's randomly initialised ``fcn_resnet50(num_classes=31)`` state dict into a
   ``SliceFCN`` with 1 channel × 3 slices (torchvision's 3 input channels), strictly;
2. compares the two networks' logits on the same slices (eval mode): they must agree to 1e-5;
3. writes the state dict's names and shapes to ``tests/data/torchvision_fcn_resnet50.json``,
   which the unit tests (run without torchvision) compare with ``SliceFCN`` at the default preset;
4. with ``--save-state``, saves the state dict (with the auxiliary head that torchvision's
   pretrained weights carry) to try ``training.train --init-from`` on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
import torchvision
from torchvision.models.segmentation import fcn_resnet50

ROOT = Path(__file__).resolve().parent.parent
# run as a file, from any folder (scripts/ is no package): the project goes on sys.path first
sys.path.insert(0, str(ROOT))
from hanseg.fcn2p5d import SliceFCN, stack_slices  # noqa: E402

log = logging.getLogger("torchvision_fcn_check")
KEYS_FILE = ROOT / "tests" / "data" / "torchvision_fcn_resnet50.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save-state", type=Path, help="also save torchvision's state dict (aux head included) here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.manual_seed(0)
    theirs = fcn_resnet50(weights=None, weights_backbone=None, num_classes=31, aux_loss=False).eval()
    ours = SliceFCN(3, in_channels=1, out_channels=31, slices=3).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    window = torch.randn(1, 1, 4, 72, 56)
    with torch.no_grad():
        mine = ours(window)  # (1, 31, 4, 72, 56)
        ref = theirs(stack_slices(window, 3))["out"]  # (4, 31, 72, 56)
    diff = float((mine[0].permute(1, 0, 2, 3) - ref).abs().max())
    log.info("torchvision %s, torch %s: max |logit difference| %.2e", torchvision.__version__, torch.__version__, diff)
    if diff > 1e-5:
        raise SystemExit(f"SliceFCN differs from torchvision's fcn_resnet50 by {diff:.2e}")
    shapes = {k: list(v.shape) for k, v in theirs.state_dict().items()}
    KEYS_FILE.write_text(
        json.dumps(
            {"torchvision": torchvision.__version__, "num_classes": 31, "in_channels": 3, "state_dict": shapes},
            indent=0,
        )
        + "\n"
    )
    log.info("wrote %d names to %s", len(shapes), KEYS_FILE)
    if args.save_state:
        with_aux = fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
        torch.save(with_aux.state_dict(), args.save_state)
        log.info("saved fcn_resnet50(num_classes=21, aux_loss=True) state dict to %s", args.save_state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
