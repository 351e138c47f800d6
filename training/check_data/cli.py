"""The command line: the options of ``python -m training.check_data`` and :func:`main`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from .report import log_summary, setup_summary_log, write_cases, write_findings
from .rules import ERROR, Settings
from .runner import check_dataset


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m training.check_data", description="Check a HaN-Seg raw dataset before training (errors exit 1)."
    )
    p.add_argument("--data", type=Path, required=True, help="raw dataset folder (case_XX/..., OAR_data.csv)")
    p.add_argument("--out", type=Path, default=Path("check_data"), help="folder for the tables and QA pictures")
    p.add_argument("--no-registration", action="store_true", help="skip the MR-to-CT registration (the slow part)")
    p.add_argument("--workers", type=int, default=1, help="cases checked in this many processes")
    p.add_argument(
        "--min-oar-reliability",
        type=float,
        default=1.0,
        metavar="R",
        help="as training's option: masks OAR_data.csv rates below R are left out of the label map",
    )
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data}: not a folder")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if not 0.0 <= args.min_oar_reliability <= 1.0:
        p.error("--min-oar-reliability must be within 0..1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    setup_summary_log()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        registration=not args.no_registration, min_reliability=args.min_oar_reliability, qa_dir=args.out / "qa"
    )
    result = check_dataset(args.data, settings, args.workers)
    write_findings(result, args.out / "findings.csv")
    write_cases(result, args.out / "cases.csv")
    log_summary(result, args.data, args.out)
    return 1 if result.count(ERROR) else 0
