"""The command line of ``python -m evaluation.demo``, built without importing torch, SimpleITK
or the network code, so that its ``--help`` and usage errors answer at once: the demo parses
with it before its heavy imports when run as a script (the pattern of training.config's
``train_parser``)."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demo_parser() -> argparse.ArgumentParser:
    """``python -m evaluation.demo``'s command line (its description: the module doc's first line)."""
    parser = argparse.ArgumentParser(
        description="Demo: run the container's ``process.py`` on the ``test/`` sample and report what it wrote."
    )
    parser.add_argument("--input", type=Path, default=ROOT / "test")
    parser.add_argument("--output", type=Path, default=ROOT / "demo_output")
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--device", default="auto")
    return parser
