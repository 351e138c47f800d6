"""What every input layout shares once it has found a case's files: reading, predicting,
writing the label map atomically, and the checks made before any work (output writable,
no input given twice)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk

from ..io import image_suffix, read_image, write_label_map
from ..model_dir import sha256_file
from ..prefetch import PREFETCH
from ..resources import check_fits, current_rss_bytes, image_bytes
from ..timing import step

log = logging.getLogger(__name__)


class PredictionLike(Protocol):
    """What the layouts read of a prediction (:class:`hanseg.inference.Prediction`)."""

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def warnings(self) -> Sequence[str]: ...


class Predictor(Protocol):
    def predict(self, ct: sitk.Image, mr: sitk.Image | None) -> PredictionLike: ...


@dataclass(frozen=True)
class CaseFiles:
    ct: Path
    mr: Path | None


def segment(case: CaseFiles, out_path: Path, predictor: Predictor, qa_path: Path | None = None) -> tuple[str, ...]:
    """Read, predict, write the label map atomically on the CT grid; returns the warnings.
    With ``qa_path``, the QA picture is written there too (:func:`write_qa`)."""
    with step("read"):
        ahead = PREFETCH.take(case.ct), None if case.mr is None else PREFETCH.take(case.mr)
        PREFETCH.drop()  # only the first case is read ahead; nothing else stays held
        # from the header, before the voxels are read: images read ahead are in the process's
        # memory already and must not count twice, so the check sees what it would without them
        held = sum(image_bytes(image) for image in ahead if image is not None)
        check_fits(case.ct, in_use=current_rss_bytes() - held)
        ct = ahead[0] or read_image(case.ct)
        mr = None if case.mr is None else ahead[1] or read_image(case.mr)
    prediction = predictor.predict(ct, mr)
    with step("write"):
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_label_map(np.ascontiguousarray(prediction.labels), ct, out_path)
    log.info("%s → %s", case.ct.name, out_path)
    if qa_path is not None:
        write_qa(qa_path, case.ct.name, ct, prediction, mr, title=qa_path.stem)
    return tuple(prediction.warnings)


def write_qa(
    path: Path,
    case: str,
    ct: sitk.Image,
    prediction: PredictionLike,
    mr: sitk.Image | None,
    **options: Any,
) -> Path | None:
    """The QA picture of a prediction (:mod:`hanseg.qa_picture`) at ``path``, with the MR where
    the prediction registered it (``mr_transform``). A picture that cannot be drawn never fails
    or changes the segmentation: a warning names the case and the run goes on."""
    transform = getattr(prediction, "mr_transform", None)
    try:
        with step("qa"):
            from ..qa_picture import write_qa_png

            labels = sitk.GetImageFromArray(np.ascontiguousarray(prediction.labels, np.uint8))
            labels.CopyInformation(ct)
            shown = mr if transform is not None else None  # an MR that was not registered is not shown
            written = write_qa_png(path, ct, labels, mr=shown, mr_transform=transform, **options)
    except Exception as exc:  # the picture is an extra: the segmentation stands whatever happens to it
        log.warning("%s: no QA picture: %s", case, exc)
        return None
    log.info("%s: QA picture %s", case, written)
    return written


def case_message(case: str, exc: BaseException) -> str:
    """``exc``'s message prefixed with the case it is about (``case_01_CT.mha: ...``), unless it
    names the case already: an error about a file starts with that file's name
    (:mod:`hanseg.errors`), and the name is said once."""
    text = str(exc) or type(exc).__name__
    return text if case in text else f"{case}: {text}"


def qa_name(ct_path: Path) -> str:
    """The QA picture's name for a CT: its name without the image ending and a final ``_CT``
    (``case_01_CT.mha`` → ``case_01.png``)."""
    name = ct_path.name
    stem = name[: len(name) - len(image_suffix(ct_path) or "")]
    return f"{stem.removesuffix('_CT') or stem}.png"


def write_json(report: Any, output_dir: Path, name: str = "results.json") -> Path:
    """``report`` as ``<output_dir>/<name>``, written atomically (a reader never sees half)."""
    path = output_dir / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    return path


def duplicates(cases: list[CaseFiles]) -> dict[Path, Path]:
    """Input files whose bytes equal an earlier input file's: duplicate → first. The platform
    gives each case its own images, so a repeat means a mix-up (the template rejects it)."""
    first: dict[str, Path] = {}
    repeats = {}
    for path in [p for c in cases for p in (c.ct, c.mr) if p is not None]:
        digest = sha256_file(path)
        if digest in first:
            repeats[path] = first[digest]
        else:
            first[digest] = path
    return repeats
