"""The Grand-Challenge adapter: both interfaces, one code path (:func:`run` picks).

* Socket layout (newer phases): ``<input>/inputs.json`` is present; see :mod:`hanseg.sockets`.
* HaN-Seg 2023 layout (the official template), used when there is no ``inputs.json``.

HaN-Seg 2023 input:  ``<input>/images/ct/<name>`` and ``<input>/images/t1-mri/<name>``, paired by sorted
file name. Output: ``<output>/images/head_neck_oar/<CT name with "_CT" → "_seg">`` (same
ending as the CT) and ``<output>/results.json``, one entry per case as the template writes:
``{"outputs": [...], "inputs": [...], "error_messages": [...]}``.

One bad case never stops the others; its entry carries the reason and no output file is
left behind (label maps are written atomically).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk

from .errors import HansegError, InputLayoutError, OutputError
from .io import image_files, image_suffix, read_image, write_label_map
from .model_dir import sha256_file
from .resources import check_fits, peak_memory_gib
from .sockets import SocketConfig, find_socket_images, has_sockets, output_file

log = logging.getLogger(__name__)

CT_DIR = Path("images/ct")
MR_DIR = Path("images/t1-mri")
OUTPUT_DIR = Path("images/head_neck_oar")


class Predictor(Protocol):
    def predict(self, ct: sitk.Image, mr: sitk.Image | None) -> Any: ...


@dataclass(frozen=True)
class CaseFiles:
    ct: Path
    mr: Path | None


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
        raise InputLayoutError(f"no CT image found in {input_dir / CT_DIR} "
                               "(expected the Grand-Challenge layout images/ct/, images/t1-mri/)")
    if not mrs:
        log.warning("no T1 MR images in %s: every case is segmented from the CT alone", input_dir / MR_DIR)
        return [CaseFiles(ct, None) for ct in cts]
    if len(cts) != len(mrs):
        raise InputLayoutError(
            f"{len(cts)} CT images but {len(mrs)} MR images; they are paired by sorted name. "
            f"CT: {', '.join(p.name for p in cts)}; MR: {', '.join(p.name for p in mrs)}")
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


def segment(case: CaseFiles, out_path: Path, predictor: Predictor) -> tuple[str, ...]:
    """Read, predict, write the label map atomically on the CT grid; returns the warnings."""
    check_fits(case.ct)  # from the header, before the voxels are read
    ct = read_image(case.ct)
    mr = read_image(case.mr) if case.mr is not None else None
    prediction = predictor.predict(ct, mr)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_label_map(np.ascontiguousarray(prediction.labels), ct, out_path)
    log.info("%s → %s", case.ct.name, out_path)
    return tuple(prediction.warnings)


def process_case(case: CaseFiles, output_dir: Path, predictor: Predictor) -> dict[str, Any]:
    """Segment one case; never raises for bad input, the entry says what went wrong."""
    out_path = output_dir / OUTPUT_DIR / output_name(case.ct)
    try:
        warnings = segment(case, out_path, predictor)
    except (HansegError, OSError, MemoryError) as exc:
        log.error("%s: failed: %s", case.ct.name, exc)
        return _entry(case, None, [f"{case.ct.name}: {exc}"])
    return _entry(case, out_path.name, list(warnings))


def write_results(results: list[dict[str, Any]], output_dir: Path) -> Path:
    path = output_dir / "results.json"
    tmp = path.with_name(".results.json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    return path


def check_writable(folder: Path) -> None:
    """Fail before any work when the output folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {folder}: {exc.strerror or exc}") from exc


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


def run(input_dir: Path, output_dir: Path, predictor: Predictor, sockets: SocketConfig = SocketConfig()) -> int:
    """Run whichever interface is mounted: 0 if every case produced its output, 1 otherwise."""
    if has_sockets(input_dir):
        log.info("socket layout (%s/inputs.json)", input_dir)
        code = run_socket_case(input_dir, output_dir, predictor, sockets)
    else:
        log.info("HaN-Seg 2023 layout (no inputs.json)")
        code = run_hanseg2023(input_dir, output_dir, predictor)
    # The platform's memory limit is the usual reason a job dies without a message: say how close.
    log.info("peak memory %.2f GiB (the platform's limit is often 4 GB)", peak_memory_gib())
    return code


def run_socket_case(input_dir: Path, output_dir: Path, predictor: Predictor, config: SocketConfig) -> int:
    """The one case an ``inputs.json`` job holds → ``<output>/<output socket path>/output.mha``."""
    ct, mr = find_socket_images(input_dir, config)
    case, out_path = CaseFiles(ct, mr), output_file(output_dir, config)
    check_writable(out_path.parent)
    repeats = duplicates([case])
    if repeats:
        log.error("FAILED: %s", "; ".join(f"{p.name} is identical to {q.name}" for p, q in repeats.items()))
        return 1
    try:
        segment(case, out_path, predictor)
    except (HansegError, OSError, MemoryError) as exc:
        log.error("FAILED %s: %s", case.ct.name, exc)
        return 1
    return 0


def run_hanseg2023(input_dir: Path, output_dir: Path, predictor: Predictor) -> int:
    """Process every case of the 2023 layout and write ``results.json``."""
    cases = find_cases(input_dir)
    check_writable(output_dir / OUTPUT_DIR)
    check_writable(output_dir)
    log.info("%d case(s) in %s", len(cases), input_dir)
    repeats = duplicates(cases)
    results = []
    for case in cases:
        dup = [f"{p.name} is identical to {repeats[p].name}" for p in (case.ct, case.mr) if p in repeats]
        if dup:
            log.error("%s: not processed: %s", case.ct.name, "; ".join(dup))
            results.append(_entry(case, None, [f"{case.ct.name}: duplicate input: {'; '.join(dup)}"]))
            continue
        results.append(process_case(case, output_dir, predictor))
    write_results(results, output_dir)
    failed = [r for r in results if not r["outputs"]]
    for r in failed:
        log.error("FAILED %s", r["error_messages"][0])
    return 1 if failed else 0
