"""Every deliberate breakage of scripts/mutation_check.py still fits the code: its text occurs
exactly once in its file. Checked in the default tiers, so a refactor that moves a mutated line
is noticed in seconds rather than when CI reaches the mutation check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_mutation_matches_its_file_exactly_once():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    counts = {m.name: (ROOT / m.path).read_text().count(m.old) for m in module.MUTATIONS}
    assert len(counts) >= 12
    assert {name: n for name, n in counts.items() if n != 1} == {}
    # the mutation check leaves this test out (it fails on every applied mutation): by this name
    here = Path(__file__).relative_to(ROOT).as_posix()
    assert f"{here}::{test_every_mutation_matches_its_file_exactly_once.__name__}" == module.FIT_TEST
