"""Writers: the HaN-Seg raw layout and the Grand-Challenge container input layout."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from hanseg.labels import LABEL_IDS, OAR_NAMES, oar_file_name

from .case import PhantomCase
from .errors import PhantomError

OAR_CSV = "OAR_data.csv"


def _write(img: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def _update_oar_csv(path: Path, case_id: str, present: Sequence[str]) -> None:
    """Add or replace this case's row in ``OAR_data.csv`` (one row per case, sorted), so
    cases written one at a time still end up in a single table as in HaN-Seg."""
    rows: dict[str, list[str]] = {}
    if path.exists():
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header != ["id", *OAR_NAMES]:
                raise PhantomError(f"{path} exists but is not an OAR table written by this tool")
            rows = {r[0]: r for r in reader if r}
    rows[case_id] = [case_id, *("1" if n in present else "0" for n in OAR_NAMES)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *OAR_NAMES])
        writer.writerows(rows[k] for k in sorted(rows))


def _out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PhantomError(f"output path {out_dir} exists and is not a folder")
    return out_dir


def write_raw(case: PhantomCase, out_dir: Path, table: bool = True) -> Path:
    """HaN-Seg layout: ``out_dir/<id>/<id>_IMG_CT.nrrd``, ``<id>_IMG_MR_T1.nrrd``, one binary
    ``<id>_OAR_<name>.seg.nrrd`` per annotated OAR, and (``table``) the case's row of
    ``out_dir/OAR_data.csv``."""
    out_dir = _out_dir(out_dir)
    folder = out_dir / case.case_id
    _write(case.ct, folder / f"{case.case_id}_IMG_CT.nrrd")
    _write(case.mr, folder / f"{case.case_id}_IMG_MR_T1.nrrd")
    for name in case.present:
        mask = sitk.Cast(sitk.Equal(case.labels, LABEL_IDS[name]), sitk.sitkUInt8)
        _write(mask, folder / oar_file_name(case.case_id, name))
    if table:
        _update_oar_csv(out_dir / OAR_CSV, case.case_id, case.present)
    return folder


def write_gc(case: PhantomCase, out_dir: Path, table: bool = True) -> None:
    """Container input layout: ``input/images/ct/<id>_CT.mha``,
    ``input/images/t1-mri/<id>_T1.mha``; ground truth ``ground_truth/<id>_seg.mha`` (the
    name the container gives its output) and (``table``) ``ground_truth/OAR_data.csv``."""
    out_dir = _out_dir(out_dir)
    _write(case.ct, out_dir / "input" / "images" / "ct" / f"{case.case_id}_CT.mha")
    _write(case.mr, out_dir / "input" / "images" / "t1-mri" / f"{case.case_id}_T1.mha")
    _write(case.labels, out_dir / "ground_truth" / f"{case.case_id}_seg.mha")
    if table:
        _update_oar_csv(out_dir / "ground_truth" / OAR_CSV, case.case_id, case.present)

