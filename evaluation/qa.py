"""QA picture of a segmentation from image files: a thin command line over :mod:`hanseg.qa_picture`.

    python -m evaluation.qa --ct CT --labels LABELS [--truth TRUTH] [--mr MR [--register]] --out PNG

Three CT slices through the centre of the segmented region (axial, coronal, sagittal) in
physical proportions, each organ's outline in its colour and a legend; ``--truth`` is drawn
dashed; ``--mr`` adds a row with the MR resampled in physical space onto the same planes
(``--register``: first registered to the CT with the product's own rigid registration).
Bad input (a missing or unreadable file, labels not on the CT's grid) is one line on stderr
and exit code 2, and nothing is written.

:func:`overlay_png` keeps the older call of ``evaluation/demo.py`` and ``training/check_data``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import SimpleITK as sitk


def overlay_png(ct: sitk.Image, labels: sitk.Image, path: Path, title: str = "") -> Path:
    """The QA picture of ``labels`` on ``ct`` written to ``path`` (PNG, atomically)."""
    from hanseg.qa_picture import write_qa_png

    return write_qa_png(Path(path), ct, labels, title=title)


class BadInput(Exception):
    """Input this tool cannot draw; the message is the one line it prints."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluation.qa", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ct", type=Path, required=True, help="the CT image (any format SimpleITK reads)")
    parser.add_argument("--labels", type=Path, required=True, help="the label map on the CT's grid (ids 0..30)")
    parser.add_argument("--truth", type=Path, help="a reference label map on the CT's grid, drawn dashed")
    parser.add_argument("--mr", type=Path, help="a T1 MR, shown in a second row (resampled in physical space)")
    parser.add_argument(
        "--register", action="store_true", help="register the MR to the CT first (hanseg.registration, rigid)"
    )
    parser.add_argument("--title", default=None, help="text at the top (default: the labels' file name)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    if args.register and args.mr is None:
        parser.error("--register needs --mr")
    return args


def _read(path: Path, what: str) -> sitk.Image:
    import SimpleITK as sitk

    if not path.is_file():
        raise BadInput(f"{what} {path}: no such file")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise BadInput(f"{what} {path}: cannot be read ({str(exc).strip().splitlines()[-1]})") from exc


def _check_grid(image: sitk.Image, ct: sitk.Image, what: str) -> None:
    import numpy as np

    same = (
        image.GetSize() == ct.GetSize()
        and np.allclose(image.GetSpacing(), ct.GetSpacing(), atol=1e-4)
        and np.allclose(image.GetOrigin(), ct.GetOrigin(), atol=1e-3)
        and np.allclose(image.GetDirection(), ct.GetDirection(), atol=1e-4)
    )
    if not same:
        raise BadInput(
            f"{what} is not on the CT's grid (size {image.GetSize()} vs {ct.GetSize()}, "
            f"spacing {tuple(round(s, 4) for s in image.GetSpacing())} vs {tuple(round(s, 4) for s in ct.GetSpacing())})"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # before any heavy import: --help answers at once
    try:
        ct = _read(args.ct, "CT")
        labels = _read(args.labels, "labels")
        _check_grid(labels, ct, f"labels {args.labels}")
        truth = None
        if args.truth is not None:
            truth = _read(args.truth, "truth")
            _check_grid(truth, ct, f"truth {args.truth}")
        mr = None if args.mr is None else _read(args.mr, "MR")
    except BadInput as exc:
        print(f"evaluation.qa: error: {exc}", file=sys.stderr)
        return 2
    from hanseg.qa_picture import write_qa_png

    transform = None
    if mr is not None and args.register:
        from hanseg.registration import register_mr_to_ct

        result = register_mr_to_ct(ct, mr)
        print(f"evaluation.qa: {result.message}", file=sys.stderr)
        transform = result.transform
    title = args.title if args.title is not None else args.labels.name
    path = write_qa_png(args.out, ct, labels, truth=truth, mr=mr, mr_transform=transform, title=title)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
