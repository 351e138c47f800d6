"""docs/container.md names every package of ``requirements.txt`` (the image installs that file)."""

from __future__ import annotations

import re

from helpers import ROOT


def requirement_names() -> set[str]:
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return {re.split(r"[<>=!~\[ ;]", line)[0].lower() for line in lines if line}


def test_every_requirement_is_named_in_the_container_doc():
    doc = (ROOT / "docs" / "container.md").read_text().lower()
    names = requirement_names()
    assert {"torch", "starlette", "pyjpegls"} <= names  # the file was parsed
    missing = sorted(n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", doc))
    assert missing == [], f"docs/container.md does not name {', '.join(missing)} of requirements.txt"
