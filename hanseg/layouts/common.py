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

from ..io import read_image, write_label_map
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


def segment(case: CaseFiles, out_path: Path, predictor: Predictor) -> tuple[str, ...]:
    """Read, predict, write the label map atomically on the CT grid; returns the warnings."""
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
    return tuple(prediction.warnings)


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
