"""Case folders and file names: what a ``case_XX`` folder holds, by the names training reads
(:mod:`dataset.raw`), and the findings about missing, unknown and misspelt files."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from hanseg.labels import OAR_NAMES, oar_file_name

from .rules import Findings


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    folder: Path
    ct: Path | None
    mr: Path | None
    masks: dict[str, Path]  # known OAR name -> file, in label order
    unknown: tuple[str, ...]  # *.seg.nrrd files with no known OAR name
    other: tuple[str, ...]  # files training never reads


def case_files(folder: Path) -> CaseFiles:
    """What a case folder holds, by the names training looks for (:mod:`dataset.raw`)."""
    cid = folder.name
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    ct, mr = f"{cid}_IMG_CT.nrrd", f"{cid}_IMG_MR_T1.nrrd"
    masks = {n: folder / oar_file_name(cid, n) for n in OAR_NAMES if oar_file_name(cid, n) in names}
    known = {ct, mr, *(p.name for p in masks.values())}
    unknown = tuple(n for n in names if n.endswith(".seg.nrrd") and n not in known)
    other = tuple(n for n in names if n not in known and n not in unknown)
    return CaseFiles(
        cid, folder, folder / ct if ct in names else None, folder / mr if mr in names else None, masks, unknown, other
    )


def _unknown_name_message(name: str, cid: str) -> str:
    prefix = f"{cid}_OAR_"
    if not name.startswith(prefix):
        return (
            f"a mask file that does not follow {prefix}<OAR>.seg.nrrd (another case's file, or renamed?): "
            "training never reads it. Move it to its own case folder or rename it"
        )
    oar = name[len(prefix) : -len(".seg.nrrd")]
    close = difflib.get_close_matches(oar, OAR_NAMES, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"'{oar}' is not one of the 30 HaN-Seg OAR names{hint}: training ignores this file and treats the "
        f"OAR as not annotated in {cid}, so its voxels are silently lost. Rename the file to "
        f"{prefix}<name>.seg.nrrd with a name from hanseg.labels.OAR_NAMES"
    )


def naming_findings(files: CaseFiles, out: Findings) -> None:
    for name in files.unknown:
        out.error(name, "unknown_oar", _unknown_name_message(name, files.case_id))
    for name in files.other:
        out.info(name, "layout", "not a file training reads (ignored)")
    if files.ct is None:
        out.error(
            f"{files.case_id}_IMG_CT.nrrd",
            "layout",
            f"{files.case_id} has no CT: training skips the whole case and its masks. Add the CT under "
            "this exact name, or remove the folder from the dataset",
        )
    if files.mr is None:
        out.warning(
            f"{files.case_id}_IMG_MR_T1.nrrd",
            "layout",
            "no T1 MR: this case trains from the CT alone (MR channel zero). Add the MR if there is one",
        )
