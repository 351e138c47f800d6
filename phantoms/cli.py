"""The command line of ``python -m phantoms``: write synthetic head-and-neck phantoms.

Its own module (not ``__main__``) so that worker processes can import the job function."""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from hanseg.labels import OAR_NAMES

from .case import DEFAULT_PROFILE, PROFILES, SIZES, Profile, case_seed, make_case
from .writers import OAR_CSV, _update_oar_csv, write_gc, write_raw

log = logging.getLogger("phantoms")

_PROFILE_HELP = (
    "simple: the phantoms as always (fixed grids, MR a few mm from the CT, float32 MR); real: the HaN-Seg "
    "download's properties (CT 1024x1024 in-plane at full size over a 500-800 mm field of view, 2-3 mm "
    "slices, one case in three reaching far below the shoulders, MR 512x512 with 57-144 slices in world "
    "coordinates unrelated to the CT's, some MRs uint16 + 32768, OAR_data.csv values 1/0.5/0, and in a run "
    "of two or more cases one case like case_19). Default: real for --size full, simple for --size small"
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m phantoms", description="Write synthetic head-and-neck phantoms.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--cases", type=int, default=1, help="number of cases (case_01 .. case_NN)")
    p.add_argument("--seed", type=int, default=0, help="base seed; case i uses a seed derived from it")
    p.add_argument("--layout", choices=("raw", "gc"), default="raw", help="HaN-Seg raw or container input layout")
    p.add_argument("--size", choices=tuple(SIZES), default="small", help="grid size")
    p.add_argument("--profile", choices=tuple(PROFILES), default=None, help=_PROFILE_HELP)
    p.add_argument("--workers", type=int, default=1, help="processes (cases are made independently)")
    p.add_argument(
        "--case-seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="make exactly these cases, one per seed as make_case(S) takes it, instead of --cases "
        "derived from --seed (e.g. 0 11: phantoms.TALL_SEED and phantoms.MR_UINT16_SEED)",
    )
    args = p.parse_args(argv)
    if args.cases < 1 or args.seed < 0 or min(args.case_seeds or [0]) < 0:
        p.error("--cases must be >= 1 and --seed and --case-seeds >= 0")
    if args.case_seeds:
        args.cases = len(args.case_seeds)
    args.profile = args.profile or DEFAULT_PROFILE[args.size]
    return args


def run_profiles(seed: int, cases: int, profile: str) -> list[Profile]:
    """The profile of each case of a run. In a real-profile run of two or more cases one case,
    chosen from the seed, follows case_19 (a missing mask, values 0.5), so that every such run
    holds what a loader of the real table must cope with; the others draw their quirks."""
    base = PROFILES[profile]
    out = [base] * cases
    if base.real and cases >= 2:
        out[int(np.random.default_rng([int(seed), 19]).integers(cases))] = replace(base, unreliable=True)
    return out


def make_and_write(
    seed: int, size: str, case_id: str, layout: str, out: Path, profile: Profile | str | None = None
) -> tuple[str, dict[str, float], str]:
    """One case made and written without its ``OAR_data.csv`` row (a worker process must not
    race others on the shared table); returns its id, its table row and a log line."""
    case = make_case(seed, size, case_id, profile)
    (write_raw if layout == "raw" else write_gc)(case, out, table=False)
    missing = sorted(set(OAR_NAMES) - set(case.present))
    line = (
        f"{case_id}: CT {case.ct.GetSize()}, MR {case.mr.GetSize()} {case.mr.GetPixelIDTypeAsString()}, "
        f"{len(case.present)} OARs"
        + (f" (not annotated: {', '.join(missing)})" if missing else "")
        + (f" (unreliable: {', '.join(case.unreliable)})" if case.unreliable else "")
    )
    return case_id, case.oar_values, line


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse(argv)
    width = max(2, len(str(args.cases)))
    profiles = run_profiles(args.seed, args.cases, args.profile)
    seeds = args.case_seeds or [case_seed(args.seed, i) for i in range(args.cases)]
    jobs = [
        (seeds[i], args.size, f"case_{i + 1:0{width}d}", args.layout, Path(args.out), profiles[i])
        for i in range(args.cases)
    ]
    if args.workers > 1:  # cases are independent: the same files, in any number of processes
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(make_and_write, *zip(*jobs)))
    else:
        done = [make_and_write(*job) for job in jobs]
    table = Path(args.out) / (OAR_CSV if args.layout == "raw" else f"ground_truth/{OAR_CSV}")
    for case_id, values, line in done:
        _update_oar_csv(table, case_id, values)
        log.info(line)
    log.info(
        "wrote %d %s case(s), %s profile, to %s (%s layout)", args.cases, args.size, args.profile, args.out, args.layout
    )
    return 0
