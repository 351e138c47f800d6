"""Mutation check: the test suite must fail on a broken product.

    .venv/bin/python scripts/mutation_check.py [--only NAME ...] [--list] [-- PYTEST ARGS]

Copies the tree (the files git tracks, and untracked ones it does not ignore) to a temporary
folder once, then for each mutation below: applies it (a textual replacement that must match
exactly once, so a mutation that no longer fits the code is an error, not a silent pass), runs
the unit and smoke tiers with ``-x``, quickest modules first (``--fast-first``, on every core:
they stop at the first failing test, so a mutation costs the time to its first failure), and
restores the file. Each mutation must make a test fail (pytest's ``FAILED`` line; with
``-x`` under pytest-xdist the session then ends as interrupted); an import or collection error
does not count as caught, since the mutations keep the code importable. Exit 0 when every mutation was caught, 1 when one
was not, 2 when a mutation no longer matches the code.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("mutation_check")


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str  # the breakage, as a physicist would notice it
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "background",
        "the label map is all background",
        "hanseg/inference.py",
        "return Prediction(labels, warnings, seconds, registered)",
        "return Prediction(np.zeros_like(labels), warnings, seconds, registered)",
    ),
    Mutation(
        "mr-unused",
        "the MR is registered but never reaches the network",
        "hanseg/preprocess.py",
        "return normalize_zscore(values, norm, inside & (values > 0)), result",
        "return zeros, result",
    ),
    Mutation(
        "no-holes",
        "the RTSTRUCT loses its holes",
        "hanseg/dicom/contours.py",
        "return [Loop(points[n], bool(holes[n])) for n in rank]",
        "return [Loop(points[n], False) for n in rank if not holes[n]]",
    ),
    Mutation(
        "left-right",
        "left and right OARs are swapped in the label map",
        "hanseg/postprocess.py",
        "        keep_largest_components(labels[box.slices], max_components)\n    return labels\n",
        "        keep_largest_components(labels[box.slices], max_components)\n"
        "    from .labels import lr_swap_table\n"
        "    return np.asarray(lr_swap_table(), np.uint8)[labels]\n",
    ),
    Mutation(
        "ready-at-once",
        "the node segments a study without waiting for it to be complete",
        "hanseg/node/jobs.py",
        "(RECEIVING, now - stable_seconds)",
        "(RECEIVING, now + stable_seconds)",
    ),
    Mutation(
        "restart-keeps-silence",
        "after a restart the node takes the silence before the crash for a complete study",
        "hanseg/node/jobs.py",
        "(RECEIVING, now, RECEIVING, READY)",
        "(RECEIVING, None, RECEIVING, READY)",
    ),
    Mutation(
        "no-replaces",
        "a result made on a study completed late does not say which result it replaces",
        "hanseg/node/worker.py",
        "predecessor = self._delivered(latest)",
        "predecessor = None",
    ),
    Mutation(
        "seg-numbers",
        "the DICOM SEG numbers its segments one off",
        "hanseg/dicom/seg.py",
        "segment_number=number,",
        "segment_number=number + 1,",
    ),
    Mutation(
        "unblended-edges",
        "each window's logits are added without the gaussian weights",
        "hanseg/tiling.py",
        "target[:, k].addcmul_(part, weight[k])",
        "target[:, k].add_(part)",
    ),
    Mutation(
        "bf16-everywhere",
        "auto takes bfloat16 on a CPU that would only emulate it",
        "hanseg/precision.py",
        'return Precision("fp32", "auto: this CPU has no bfloat16 units (AMX-BF16 or AVX512-BF16)")',
        'return Precision("bf16", "auto: this CPU has no bfloat16 units (AMX-BF16 or AVX512-BF16)")',
    ),
    Mutation(
        "actions-open",
        "the dashboard re-queues or re-sends a job for anyone who asks, without a token",
        "hanseg/node/web.py",
        'user = authenticate(request.headers.get("authorization", ""), ctx.settings.tokens)',
        'user = authenticate(request.headers.get("authorization", ""), ctx.settings.tokens) or "anyone"',
    ),
    Mutation(
        "metrics-blind",
        "/metrics never counts a received instance",
        "hanseg/node/telemetry.py",
        "            self.metrics.instances.inc()",
        "            pass",
    ),
)


def copy_tree(dest: Path) -> None:
    """The files git knows of (tracked, or untracked and not ignored), and a link to .venv."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / ".venv").symlink_to(ROOT / ".venv")


def apply(tree: Path, mutation: Mutation) -> str:
    """Apply ``mutation`` in ``tree``; returns the original text of its file."""
    path = tree / mutation.path
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        raise LookupError(f"{mutation.name}: the text to mutate occurs {count} times in {mutation.path}")
    path.write_text(text.replace(mutation.old, mutation.new))
    return text


#: tests/unit/test_mutations_fit.py's test (every mutation matches its file once)
FIT_TEST = "tests/unit/test_mutations_fit.py::test_every_mutation_matches_its_file_exactly_once"


def run_tiers(tree: Path, extra: list[str]) -> tuple[int, str, float]:
    """The unit tier, then the smoke tier, stopping at the first failure: (exit code, the
    failing test, seconds)."""
    cmd = [
        str(tree / ".venv/bin/python"),
        "-m",
        "pytest",
        "-x",
        "-q",
        "-rf",
        "-p",
        "no:cacheprovider",
        "-n",
        "auto",
        "--dist",
        "loadfile",
        "--no-loadscope-reorder",
        "--fast-first",
        "-m",
        "(unit or smoke) and not slow and not container",
        "tests/unit",
        "tests/smoke",
        # the check that each mutation still fits the code fails on every applied mutation:
        # it must not be what catches one
        f"--deselect={FIT_TEST}",
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (tests/\S+)", done.stdout, re.M)
    errors = re.findall(r"^ERROR (\S+)", done.stdout, re.M)
    where = failed[0] if failed and not errors else done.stdout[-600:]
    return done.returncode, where, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.name:14s} {m.path:28s} {m.what}")
        return 0 if args.list else 2
    with tempfile.TemporaryDirectory(prefix="hanseg-mutants.") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        try:
            for m in chosen:  # every mutation must still fit the code before any runs
                (tree / m.path).write_text(apply(tree, m))
        except LookupError as exc:
            log.error("%s", exc)
            return 2
        missed = []
        for m in chosen:
            original = apply(tree, m)
            try:
                code, where, seconds = run_tiers(tree, args.pytest_args)
            finally:
                (tree / m.path).write_text(original)
            caught = code in (1, 2) and where.startswith("tests/")  # 2: -x under xdist stops the session
            log.info("%-14s %s in %.0f s: %s (%s)", m.name, "CAUGHT" if caught else "MISSED", seconds, where, m.what)
            if not caught:
                missed.append(m.name)
    if missed:
        log.error("the tests pass with these breakages: %s", ", ".join(missed))
        return 1
    log.info("all %d mutation(s) caught", len(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
