"""Grand-Challenge entry point: segment 30 head-and-neck OARs from CT + T1 MR.

    python process.py [--input /input] [--output /output] [--model model/] [--device auto|cpu|cuda]

Reads ``<input>/images/ct/*`` and ``<input>/images/t1-mri/*`` (paired by sorted name), writes
``<output>/images/head_neck_oar/<CT name, _CT→_seg>`` and ``<output>/results.json``.
All real work lives in the ``hanseg`` package; this file only wires it together.
Exit code: 0 if every case produced its label map, 1 otherwise (reasons at the end of the log).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hanseg.challenge import run
from hanseg.errors import HansegError
from hanseg.inference import Segmenter

DEFAULT_MODEL = Path(__file__).resolve().parent / "model"
log = logging.getLogger("process")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=Path("/input"), help="input folder (default /input)")
    parser.add_argument("--output", type=Path, default=Path("/output"), help="output folder (default /output)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: the baked model/)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        segmenter = Segmenter(args.model, device=args.device)  # built once, before any case
        return run(args.input, args.output, segmenter)
    except HansegError as exc:
        log.error("FAILED: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
