"""Fixtures, and the test tiers as markers: a test's folder under ``tests/`` names its tier.

* ``unit``: exact tests on tiny arrays and files (seconds);
* ``smoke``: CPU runs with tiny networks and small phantoms: training, ``process.py`` end to end;
* ``integration``: the real parts: hadolint, the shipped model against ``test/expected_output``,
  and (also marked ``container``) the Docker image built and run by a private engine.

``slow`` (full-size data) and ``container`` are deselected by default (``pyproject.toml``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_tiny_model

TIERS = ("unit", "smoke", "integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live under tests/<tier>/ with a tier in {TIERS}")
        item.add_marker(getattr(pytest.mark, tier))


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
