"""The disk floor: new associations are refused while the storage is nearly full.

A study that arrives on a nearly full disk would be stored only in part (the sender gets
0xA700 for the rest) and the node would then have no room for the segmentation or the
results it sends on. So before an association is accepted the free space under
``--storage`` is compared with a floor: the larger of ``--min-free-gb`` and
``--min-free-percent`` of the file system's size (both must hold: 5 GB and 10 % by
default). Below it, the delivered studies past their retention are removed first (the
``prune`` callback), the free space is measured again, and only then is the association
refused. The scanner keeps its study and sends it again later.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import NodeConfig

log = logging.getLogger(__name__)

#: Decimal gigabytes, as ``df -H`` and disk vendors count them.
GB = 1_000_000_000


@dataclass(frozen=True)
class Usage:
    """Bytes free to this process (``statvfs`` f_bavail) and the file system's size."""

    free: int
    total: int


FreeSpace = Callable[[Path], Usage]


def disk_usage(path: Path) -> Usage:
    usage = shutil.disk_usage(path)
    return Usage(usage.free, usage.total)


def _gb(n: float) -> str:
    return f"{n / GB:.2f} GB"


def floor_bytes(total: int, min_free_gb: float, min_free_fraction: float) -> int:
    """The free space to keep: the larger of the two floors (``total`` is the file system's size)."""
    return max(math.ceil(min_free_gb * GB), math.ceil(min_free_fraction * total))


def _no_prune() -> None:
    """Nothing to remove (a node without retention, or a test)."""


@dataclass(frozen=True)
class DiskGuard:
    """Says whether a new association may be accepted, given the free space under ``storage``."""

    storage: Path
    min_free_gb: float = 5.0
    min_free_fraction: float = 0.10
    prune: Callable[[], None] = _no_prune
    free_space: FreeSpace = disk_usage
    # associations arrive in parallel threads: one prune at a time, and the others measure after it
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, config: NodeConfig, prune: Callable[[], None] = _no_prune) -> DiskGuard:
        return cls(config.storage, config.min_free_gb, config.min_free_fraction, prune)

    def measure(self) -> Usage | str:
        """The free space under ``storage``, or why it cannot be measured."""
        try:
            return self.free_space(self.storage)
        except OSError as exc:  # e.g. the storage volume is not mounted: accept no data onto it
            return f"the free space under {self.storage} cannot be measured ({exc.strerror or exc})"

    def shortfall(self, measured: Usage | str) -> str | None:
        """Why ``measured`` is below the floor, or None when it is not."""
        if isinstance(measured, str):
            return measured
        floor = floor_bytes(measured.total, self.min_free_gb, self.min_free_fraction)
        if measured.free >= floor:
            return None
        return (
            f"only {_gb(measured.free)} free under {self.storage} (file system of {_gb(measured.total)}), "
            f"below the floor of {_gb(floor)} (the larger of --min-free-gb {self.min_free_gb:g} "
            f"and --min-free-percent {self.min_free_fraction * 100:g})"
        )

    def check(self) -> str | None:
        """None when a new association may be accepted; else why not, for the log.

        Below the floor, ``prune`` is called once and the space measured again: the refusal
        stands only if that did not free enough."""
        with self._lock:
            measured = self.measure()
            if isinstance(measured, str) or self.shortfall(measured) is None:
                return self.shortfall(measured)  # nothing to prune on a storage that cannot be read
            pruned = "; delivered studies past their retention were already removed"
            try:
                self.prune()
            except Exception:  # a failed clean-up must not hide the full disk behind a traceback
                log.exception("removing delivered studies past their retention failed")
                pruned = "; removing delivered studies past their retention failed (see the log)"
            why = self.shortfall(self.measure())
        if why is None:
            log.info("free space under %s is above the floor again after removing delivered studies", self.storage)
            return None
        return why + pruned
