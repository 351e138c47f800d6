"""Fixtures, and the test tiers as markers: a test's folder under ``tests/`` names its tier.

* ``unit``: exact tests on tiny arrays and files (seconds);
* ``smoke``: CPU runs with tiny networks and small phantoms: training, ``process.py`` end to end;
* ``integration``: the real parts: hadolint, the shipped model against ``test/expected_output``,
  and (also marked ``container``) the Docker image built and run by a private engine.

``slow`` (full-size data) and ``container`` are deselected by default (``pyproject.toml``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import write_tiny_model

TIERS = ("unit", "smoke", "integration")


def pytest_configure(config: pytest.Config) -> None:
    """The window-feed cache is off (``HANSEG_CACHE_DIR=off``): tests that time the feeds must
    time them, and a developer's cache must not leak into a test; the cache's own tests set a
    folder. Under pytest-xdist, each worker gets its share of the cores: torch, ITK and OpenMP in
    this process and in every process a test starts (they inherit the environment). Two
    workers that each use every core would wait on each other's threads."""
    os.environ["HANSEG_CACHE_DIR"] = "off"
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = max(1, (os.cpu_count() or 1) // workers)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[name] = str(threads)
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


#: The modules that take longest, longest first (``scripts/run_tests.sh``'s ``--durations``,
#: summed per file; docs/testing.md). They are started first, so that with pytest-xdist
#: (``--dist loadfile --no-loadscope-reorder``) no worker starts a long module while the other
#: sits idle at the end. Only the order changes: a module missing here runs after these.
SLOWEST_FIRST = (
    "smoke/benchmarks/test_few_labels.py",
    "integration/test_node_orthanc.py",
    "smoke/training/test_pretrain.py",
    "smoke/hanseg/test_real_data_quirks.py",
    "smoke/training/test_train.py",
    "smoke/training/test_training_loop.py",
    "integration/test_node_chaos.py",
    "integration/test_node_dashboard.py",
    "smoke/phantoms/test_phantoms.py",
    "smoke/hanseg/test_process_e2e.py",
    "smoke/benchmarks/test_recipes.py",
    "smoke/hanseg/test_registration.py",
    "integration/test_dicom_rt.py",
    "integration/test_real_ct_export.py",
    "smoke/hanseg/test_node_studies.py",
    "integration/test_cli_help.py",
    "smoke/training/test_check_data.py",
    "integration/test_shipped_model.py",
    "smoke/training/test_transfer.py",
    "smoke/training/test_fcn2p5d_end_to_end.py",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast-first",
        action="store_true",
        help="run the quickest modules first (the unit tier, then the smoke tier's quick modules): "
        "with -x, a broken product fails in seconds (scripts/mutation_check.py)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live under tests/<tier>/ with a tier in {TIERS}")
        item.add_marker(getattr(pytest.mark, tier))
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> tuple[int, int]:
        module = Path(str(item.fspath)).relative_to(here).as_posix()
        slow = SLOWEST_FIRST.index(module) if module in SLOWEST_FIRST else len(SLOWEST_FIRST)
        if config.getoption("--fast-first"):
            return (TIERS.index(module.split("/")[0]), -slow)
        return (slow, 0)

    items.sort(key=rank)  # stable: a module's tests keep their order and stay together


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "model")


@pytest.fixture(scope="session")
def raw_phantoms(tmp_path_factory) -> Path:
    """Two small phantom cases in the HaN-Seg raw layout (shared by the training tests)."""
    from phantoms import make_case, write_raw

    root = tmp_path_factory.mktemp("raw") / "raw"
    for i, seed in enumerate((31, 32)):
        write_raw(make_case(seed, "small", f"case_{i + 1:02d}"), root)
    return root


PlanWork = Callable[..., Path]


@pytest.fixture(scope="session")
def plan_work(raw_phantoms, tmp_path_factory) -> PlanWork:
    """``plan_work(work, *plan options)``: ``training.plan`` of the raw phantoms into ``work``
    (in this process), with its preprocessed cache copied in from one made once per session
    and preprocessing key (the plan's spacing and normalisation; the network does not change
    it), so that each training test does not register the same phantoms again. The cache is
    the one ``training.train`` would make: tests/smoke/training/test_training_loop.py checks
    that path on its own."""
    from dataset.raw import find_raw_cases
    from hanseg.plans import load_plans
    from helpers import run_main
    from training.data import preprocessing_key
    from training.plan import main as plan_main
    from training.train import cache_cases

    shared = tmp_path_factory.mktemp("shared_cache")

    def plan(work: Path, *options: str) -> Path:
        run_main(plan_main, "--data", str(raw_phantoms), "--work", str(work), "--preset", "tiny", *options)
        plans = load_plans(work / "plans.json")
        cache = shared / preprocessing_key(plans)
        if not cache.is_dir():
            ids = [case.case_id for case in find_raw_cases(raw_phantoms)]
            cache_cases(raw_phantoms, cache.with_suffix(".tmp"), plans, ids)
            (cache.with_suffix(".tmp") / "cache").rename(cache)
        shutil.copytree(cache, work / "cache")
        return work

    return plan
