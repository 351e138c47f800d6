"""The command line of ``python -m phantoms``: write synthetic head-and-neck phantoms.

Its own module (not ``__main__``) so that worker processes can import the job function."""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hanseg.labels import OAR_NAMES

from .case import SIZES, case_seed, make_case
from .writers import OAR_CSV, _update_oar_csv, write_gc, write_raw

log = logging.getLogger("phantoms")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m phantoms", description="Write synthetic head-and-neck phantoms.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--cases", type=int, default=1, help="number of cases (case_01 .. case_NN)")
    p.add_argument("--seed", type=int, default=0, help="base seed; case i uses a seed derived from it")
    p.add_argument("--layout", choices=("raw", "gc"), default="raw", help="HaN-Seg raw or container input layout")
    p.add_argument("--size", choices=tuple(SIZES), default="small", help="grid size")
    p.add_argument("--workers", type=int, default=1, help="processes (cases are made independently)")
    args = p.parse_args(argv)
    if args.cases < 1 or args.seed < 0:
        p.error("--cases must be >= 1 and --seed >= 0")
    return args


def make_and_write(seed: int, size: str, case_id: str, layout: str, out: Path) -> tuple[str, tuple[str, ...], str]:
    """One case made and written without its ``OAR_data.csv`` row (a worker process must not
    race others on the shared table); returns its id, annotated OARs and a log line."""
    case = make_case(seed, size, case_id)
    (write_raw if layout == "raw" else write_gc)(case, out, table=False)
    missing = sorted(set(OAR_NAMES) - set(case.present))
    line = (f"{case_id}: CT {case.ct.GetSize()}, MR {case.mr.GetSize()}, {len(case.present)} OARs"
            + (f" (not annotated: {', '.join(missing)})" if missing else ""))
    return case_id, tuple(case.present), line


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse(argv)
    width = max(2, len(str(args.cases)))
    jobs = [(case_seed(args.seed, i), args.size, f"case_{i + 1:0{width}d}", args.layout, Path(args.out))
            for i in range(args.cases)]
    if args.workers > 1:  # cases are independent: the same files, in any number of processes
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(make_and_write, *zip(*jobs)))
    else:
        done = [make_and_write(*job) for job in jobs]
    table = Path(args.out) / (OAR_CSV if args.layout == "raw" else f"ground_truth/{OAR_CSV}")
    for case_id, present, line in done:
        _update_oar_csv(table, case_id, present)
        log.info(line)
    log.info("wrote %d %s case(s) to %s (%s layout)", args.cases, args.size, args.out, args.layout)
    return 0


