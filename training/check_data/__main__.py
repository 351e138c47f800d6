"""``python -m training.check_data``: the command line of :mod:`training.check_data.cli`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
