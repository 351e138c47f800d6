"""Writers: the HaN-Seg raw layout and the Grand-Challenge container input layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import SimpleITK as sitk

from dataset.oar_data import read_oar_table, write_oar_table
from hanseg.errors import HansegError
from hanseg.labels import LABEL_IDS, oar_file_name

from .case import PhantomCase
from .errors import PhantomError

OAR_CSV = "OAR_data.csv"


def _write(img: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def _update_oar_csv(path: Path, case_id: str, values: Mapping[str, float]) -> None:
    """Add or replace this case's row (OAR name -> 1, 0.5 or 0) in ``OAR_data.csv``, written in
    the download's format (:mod:`dataset.oar_data`), so that cases written one at a time still
    end up in a single table as in HaN-Seg. An existing table (also one of this tool's older
    comma-separated ones) is read back by OAR name and rewritten."""
    table: dict[str, dict[str, float]] = {}
    if path.exists():
        try:
            table = read_oar_table(path)
        except HansegError as exc:
            raise PhantomError(f"{path} exists but is not an OAR table ({exc}); remove it or write elsewhere") from exc
    table[case_id] = dict(values)
    write_oar_table(table, path)


def _out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PhantomError(f"output path {out_dir} exists and is not a folder")
    return out_dir


def write_raw(case: PhantomCase, out_dir: Path, table: bool = True) -> Path:
    """HaN-Seg layout: ``out_dir/<id>/<id>_IMG_CT.nrrd``, ``<id>_IMG_MR_T1.nrrd``, one binary
    ``<id>_OAR_<name>.seg.nrrd`` per OAR with a mask (value 1 or 0.5), and (``table``) the
    case's row of ``out_dir/OAR_data.csv``."""
    out_dir = _out_dir(out_dir)
    folder = out_dir / case.case_id
    _write(case.ct, folder / f"{case.case_id}_IMG_CT.nrrd")
    _write(case.mr, folder / f"{case.case_id}_IMG_MR_T1.nrrd")
    for name in case.present:
        mask = sitk.Cast(sitk.Equal(case.labels, LABEL_IDS[name]), sitk.sitkUInt8)
        _write(mask, folder / oar_file_name(case.case_id, name))
    if table:
        _update_oar_csv(out_dir / OAR_CSV, case.case_id, case.oar_values)
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
        _update_oar_csv(out_dir / "ground_truth" / OAR_CSV, case.case_id, case.oar_values)
