"""The HaN-Seg 2023 layout (the official template), used when there is no ``inputs.json``.

Input: ``<input>/images/ct/<name>`` and ``<input>/images/t1-mri/<name>``, paired by sorted
file name. Output: ``<output>/images/head_neck_oar/<CT name with "_CT" → "_seg">`` (same
ending as the CT) and ``<output>/results.json``, one entry per case as the template writes:
``{"outputs": [...], "inputs": [...], "error_messages": [...]}``.

One bad case never stops the others; its entry carries the reason and no output file is
left behind (label maps are written atomically).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import HansegError, InputLayoutError
from ..folders import CT_DIR, MR_DIR, check_writable
from ..io import image_files, image_suffix
from .common import CaseFiles, Predictor, case_message, duplicates, qa_name, segment, write_json

log = logging.getLogger(__name__)

OUTPUT_DIR = Path("images/head_neck_oar")


def output_name(ct_path: Path) -> str:
    """The template's rule (``_CT`` → ``_seg``); a name without ``_CT`` gets ``_seg`` appended
    before its ending so the output can never overwrite or mimic the input name."""
    name = ct_path.name
    if "_CT" in name:
        return name.replace("_CT", "_seg")
    suffix = image_suffix(ct_path) or ""
    return f"{name[: len(name) - len(suffix)]}_seg{suffix}"


def find_cases(input_dir: Path) -> list[CaseFiles]:
    """CT/MR pairs by sorted file name; CT-only cases when there is no MR at all."""
    cts = image_files(input_dir / CT_DIR)
    mrs = image_files(input_dir / MR_DIR)
    if not cts:
        raise InputLayoutError(
            f"no CT image found in {input_dir / CT_DIR} "
            "(expected the Grand-Challenge layout images/ct/, images/t1-mri/)"
        )
    if not mrs:
        log.warning("no T1 MR images in %s: every case is segmented from the CT alone", input_dir / MR_DIR)
        return [CaseFiles(ct, None) for ct in cts]
    if len(cts) != len(mrs):
        raise InputLayoutError(
            f"{len(cts)} CT images but {len(mrs)} MR images; they are paired by sorted name. "
            f"CT: {', '.join(p.name for p in cts)}; MR: {', '.join(p.name for p in mrs)}"
        )
    return [CaseFiles(ct, mr) for ct, mr in zip(cts, mrs)]


def _entry(case: CaseFiles, output: str | None, messages: list[str]) -> dict[str, Any]:
    inputs = [{"type": "metaio_ct_image", "filename": case.ct.name}]
    if case.mr is not None:
        inputs.append({"type": "metaio_mrt1_image", "filename": case.mr.name})
    return {
        "outputs": [{"type": "metaio_image", "filename": output}] if output else [],
        "inputs": inputs,
        "error_messages": messages,
    }


def process_case(case: CaseFiles, output_dir: Path, predictor: Predictor, qa_dir: Path | None = None) -> dict[str, Any]:
    """Segment one case; never raises for bad input, the entry says what went wrong. With
    ``qa_dir``, its QA picture goes to ``<qa_dir>/<case>.png`` (:func:`qa_name`)."""
    out_path = output_dir / OUTPUT_DIR / output_name(case.ct)
    try:
        warnings = segment(case, out_path, predictor, None if qa_dir is None else qa_dir / qa_name(case.ct))
    except (HansegError, OSError, MemoryError) as exc:
        message = case_message(case.ct.name, exc)
        log.error("FAILED %s", message)
        return _entry(case, None, [message])
    return _entry(case, out_path.name, list(warnings))


def write_results(results: list[dict[str, Any]], output_dir: Path) -> Path:
    return write_json(results, output_dir)


def run_hanseg2023(input_dir: Path, output_dir: Path, predictor: Predictor, qa_dir: Path | None = None) -> int:
    """Process every case of the 2023 layout and write ``results.json`` (and, with ``qa_dir``,
    one QA picture per case there)."""
    cases = find_cases(input_dir)
    check_writable(output_dir / OUTPUT_DIR)
    check_writable(output_dir)
    log.info("%d case(s) in %s", len(cases), input_dir)
    repeats = duplicates(cases)
    results = []
    for case in cases:
        dup = [f"{p.name} is identical to {repeats[p].name}" for p in (case.ct, case.mr) if p in repeats]
        if dup:
            message = f"{case.ct.name}: duplicate input: {'; '.join(dup)}"
            log.error("FAILED %s", message)
            results.append(_entry(case, None, [message]))
            continue
        results.append(process_case(case, output_dir, predictor, qa_dir))
    write_results(results, output_dir)
    failed = [r["inputs"][0]["filename"] for r in results if not r["outputs"]]
    if failed:  # each reason was logged once as it happened; this line only counts them
        log.error(
            "%d of %d case(s) failed (reasons above and in results.json): %s",
            len(failed),
            len(results),
            ", ".join(failed),
        )
    return 1 if failed else 0
