"""The phantom generator's own error."""

from __future__ import annotations

from hanseg.errors import HansegError


class PhantomError(HansegError):
    """Bad arguments for phantom generation (unknown size, negative seed, bad case id)."""
