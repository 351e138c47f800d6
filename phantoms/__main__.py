"""python -m phantoms: write synthetic head-and-neck phantoms (see :mod:`phantoms.cli`)."""

from .cli import main

raise SystemExit(main())
