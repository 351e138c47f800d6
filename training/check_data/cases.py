"""One case: every per-case check of a ``case_XX`` folder, in order (what a worker process runs)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import SimpleITK as sitk

from hanseg.checks import sanitize_ct
from hanseg.labels import OAR_NAMES

from .images import ct_findings, image_summary, load_image, mr_findings
from .masks import masks_pass
from .naming import CaseFiles, case_files, naming_findings
from .oar_table import csv_findings, used_masks
from .qa import write_overlay
from .registration import registration_findings
from .rules import ERROR, WARNING, CaseResult, Findings, Settings


def _check_images(
    files: CaseFiles,
    ct_path: Path,
    row: Mapping[str, float] | None,
    settings: Settings,
    out: Findings,
    summary: dict[str, object],
) -> dict[str, float]:
    """The checks that need the images (``ct_path``: the case's CT); returns the mask volumes."""
    loaded = load_image(ct_path, "ct", out)
    if loaded is None:
        return {}
    ct_info, ct, lo, hi = loaded
    summary.update(image_summary("ct", ct_info, lo, hi))
    ct_findings(ct, lo, hi, ct_info.file, out)
    mr = _mr(files.mr, out, summary)
    used = used_masks(files, row, settings.min_reliability)
    summary.update(masks=len(files.masks), masks_used=len(used))
    labels, volumes = masks_pass(files, ct_info, used, settings, out)
    ct_hu, _ = sanitize_ct(ct)  # what the network sees (and the QA window expects)
    del ct
    if settings.registration and mr is not None:
        mr_image, mr_file = mr
        summary.update(registration_findings(ct_hu, mr_image, mr_file, settings, out))
    if settings.qa_dir is not None:
        write_overlay(ct_hu, labels, settings.qa_dir, files.case_id, out)
    return volumes


def _mr(path: Path | None, out: Findings, summary: dict[str, object]) -> tuple[sitk.Image, str] | None:
    """The case's MR and its file name, its figures added to ``summary``; None without a readable MR."""
    if path is None:
        return None
    loaded = load_image(path, "mr", out)
    if loaded is None:
        return None
    info, mr, lo, hi = loaded
    summary.update(image_summary("mr", info, lo, hi))
    summary["mr_offset"] = mr_findings(mr, lo, hi, info.file, out)
    return mr, info.file


def check_case(folder: Path, row: Mapping[str, float] | None, has_table: bool, settings: Settings) -> CaseResult:
    """Every per-case check of one ``case_XX`` folder (runs in a worker process with --workers)."""
    start = time.perf_counter()
    files = case_files(folder)
    out = Findings(files.case_id)
    naming_findings(files, out)
    if has_table:
        csv_findings(files, row, settings.min_reliability, out)
    summary: dict[str, object] = {"case": files.case_id}
    volumes = _check_images(files, files.ct, row, settings, out, summary) if files.ct is not None else {}
    summary.update(
        errors=sum(f.severity == ERROR for f in out.items),
        warnings=sum(f.severity == WARNING for f in out.items),
        seconds=round(time.perf_counter() - start, 1),
    )
    summary.update({f"vol_{n}_ml": round(volumes[n], 4) for n in OAR_NAMES if n in volumes})
    return CaseResult(files.case_id, tuple(out.items), summary, volumes)
