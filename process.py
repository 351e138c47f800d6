"""Grand-Challenge entry point: segment 30 head-and-neck OARs from CT + T1 MR.

    python process.py [--input /input] [--output /output] [--model DIR] [--device auto|cpu|cuda]

Grand-Challenge socket layout (``<input>/inputs.json``): CT and MR sockets → one label map at
``<output>/<--output-socket>/output.mha``. Otherwise the HaN-Seg 2023 layout:
``<input>/images/ct/*`` and ``<input>/images/t1-mri/*`` (paired by sorted name) →
``<output>/images/head_neck_oar/<CT name, _CT→_seg>`` and ``<output>/results.json``.
DICOM layout (a folder of DICOM files, any names and nesting, e.g. a PACS export): per study
the planning CT and the T1 MR chosen by rules → ``<output>/<study UID>/<CT series UID>/``
``rtstruct.dcm`` and ``seg.dcm``, and ``<output>/results.json``.
Model: ``--model``, else an uploaded model in /opt/ml/model, else the baked ``model/``.
All real work lives in the ``hanseg`` package; this file only wires it together.
Exit code: 0 if every case produced its label map, 1 otherwise (reasons at the end of the log).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from hanseg import DEFAULT_TIME_BUDGET_S
from hanseg.errors import HansegError
from hanseg.folders import OUTPUT_SOCKET_PATH, check_can_write, check_writable, detect_layout
from hanseg.precision import PRECISIONS
from hanseg.timing import CLOCK, process_age_s, step

DEFAULT_MODEL = Path(__file__).resolve().parent / "model"
log = logging.getLogger("process")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=Path("/input"), help="input folder (default /input)")
    parser.add_argument("--output", type=Path, default=Path("/output"), help="output folder (default /output)")
    parser.add_argument(
        "--model", type=Path, help="model folder (default: /opt/ml/model if it holds a model, else the baked model/)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="number format of the network: auto = bfloat16 on a CPU with AMX/AVX512-BF16, float16 on "
        "CUDA, float32 otherwise (the log says which and why); blending and softmax are float32 always",
    )
    parser.add_argument("--ct-socket", help="socket layout: slug of the CT input (default: the 'ct' socket)")
    parser.add_argument("--mr-socket", help="socket layout: slug of the T1 MR input (default: the 'mri'/'t1' socket)")
    parser.add_argument(
        "--output-socket",
        default=OUTPUT_SOCKET_PATH,
        help=f"socket layout: relative_path of the output (default {OUTPUT_SOCKET_PATH})",
    )
    parser.add_argument(
        "--names",
        type=Path,
        metavar="MAP",
        help="DICOM layout: JSON/TOML file that renames, recolours or drops structures "
        "(docs/dicom.md; default: the 30 HaN-Seg names)",
    )
    parser.add_argument(
        "--series-rules",
        type=Path,
        metavar="JSON",
        help="DICOM layout: overrides of the CT/MR series selection rules (docs/dicom.md)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=DEFAULT_TIME_BUDGET_S,
        metavar="SECONDS",
        help="seconds per case; chooses test-time mirroring, folds and overlap to fit "
        f"(default {DEFAULT_TIME_BUDGET_S:g}; 0 = the richest settings, no budget)",
    )
    parser.add_argument("--no-mirroring", action="store_true", help="no test-time left-right mirroring")
    parser.add_argument(
        "--qa",
        type=Path,
        metavar="DIR",
        help="also write a QA picture of each result (PNG: three CT slices, outlines, legend; the "
        "registered MR below): DIR/<case>.png, DICOM layout DIR/<study UID>/<CT series UID>.png",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, python_s: float | None = None) -> int:
    """``python_s``: seconds from the process's start to here, when run as a script."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    CLOCK.reset()
    if python_s is not None:
        CLOCK.add("python", python_s)
    try:
        return _run(args)
    finally:
        log.info(CLOCK.summary())


def _run(args: argparse.Namespace) -> int:
    try:
        # the folders first: a wrong path is reported at once, not after the model was loaded and timed
        layout = detect_layout(args.input)
        check_can_write(args.output)
        if args.qa is not None:
            check_writable(args.qa)  # made if missing, like the output's folders, before the model loads
        log.info("input %s: %s layout; output %s is writable", args.input, layout, args.output)
        from hanseg.prefetch import PREFETCH, first_gc2023_case  # SimpleITK, not torch

        first = first_gc2023_case(args.input) if layout == "gc2023" else None
        if first is not None:  # read while torch, MONAI and the model load (hanseg/prefetch.py)
            PREFETCH.start(first[0], [first[1]] if first[1] else [])
        # torch, MONAI and the DICOM libraries only now: --help and a wrong folder answer in a second
        with step("imports"):
            from hanseg.inference import Segmenter
            from hanseg.layouts import run
            from hanseg.layouts.dicom import DicomConfig
            from hanseg.layouts.sockets import SocketConfig
            from hanseg.model_dir import resolve_model_root

        with step("model"):  # built once, before any case
            model = resolve_model_root(args.model, DEFAULT_MODEL)
            segmenter = Segmenter(
                model, args.device, args.time_budget or None, not args.no_mirroring, precision=args.precision
            )
        sockets = SocketConfig(args.ct_socket, args.mr_socket, args.output_socket)
        dicom = DicomConfig(
            args.names, args.series_rules, segmenter.model_version, segmenter.model_fingerprint, qa_dir=args.qa
        )
        return run(args.input, args.output, segmenter, sockets, dicom, qa_dir=args.qa)
    except HansegError as exc:
        log.error("FAILED: %s", exc)
        return 1


if __name__ == "__main__":
    code = main(python_s=process_age_s())
    # Every output is written and closed (atomically) by now: skip the interpreter's teardown of
    # torch and the 31-channel buffers, about 0.7 s of a case's wall time, once the logs are out.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
