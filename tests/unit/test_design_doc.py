"""docs/design.md's layout names every module of the code it describes, so a new module cannot
go undocumented (the list fell behind once: seven modules were missing)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hanseg", "dataset", "phantoms", "evaluation", "training", "benchmarks")


def test_every_module_is_named_in_the_design_layout():
    text = (ROOT / "docs" / "design.md").read_text()
    layout = text[: text.index("```", text.index("```") + 3)]  # the first code block: the layout
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", layout))
    missing = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.stem not in ("__init__", "__main__") and path.stem not in words
    ]
    assert missing == [], f"docs/design.md's layout does not name: {missing}"
