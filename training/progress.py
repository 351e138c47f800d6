"""Progress that a person at a terminal sees and a log keeps readable: a tqdm bar on stderr
when stderr is an interactive terminal, log lines otherwise (CI, ``2> file``, ``| tee``).

Shared by the training tools and the benchmarks (which may import :mod:`training`; this module
imports nothing of the project, so it makes no import cycle). tqdm is in requirements-train.txt;
without it the log lines are used on a terminal too.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def interactive() -> bool:
    """Whether stderr is an interactive terminal (the bars' stream); False when it is closed
    or replaced by something without ``isatty``."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm() -> Any:
    """tqdm's bar class, or None where it is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def bar(iterable: Iterable[T], desc: str, total: int | None = None, **kwargs: Any) -> Iterable[T]:
    """A tqdm bar over ``iterable`` on an interactive terminal; the plain iterable otherwise."""
    tqdm = _tqdm() if interactive() else None
    if tqdm is None:
        return iterable
    return tqdm(iterable, desc=desc, total=total, **kwargs)


def each(
    items: Iterable[T],
    total: int,
    desc: str,
    log: logging.Logger,
    line: Callable[[T, int, float], str] | None = None,
    unit: str = "case",
    name: Callable[[T], object] = str,
) -> Iterator[T]:
    """``items``, one at a time, with a bar on a terminal, else one log line per item once the
    caller is done with it: ``line(item, i, seconds)`` (default ``"<desc> i/total: <name(item)>
    in N s"``), where ``seconds`` runs from the end of the previous item to the end of this one,
    so it counts the work wherever it happens (making the item or using it)."""
    tqdm = _tqdm() if interactive() else None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc, unit=unit)
        return
    began = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        seconds = time.perf_counter() - began
        log.info("%s", line(item, i, seconds) if line else f"{desc} {i}/{total}: {name(item)} in {seconds:.1f} s")
        began = time.perf_counter()


class Steps:
    """Progress through ``total`` steps of a loop that reports a value (a loss) per step: a bar
    with the value and the seconds per step on a terminal; else a log line every ``every``
    steps and after the last, so a log gets a line at least once per loop. ``enabled`` False:
    neither (the other processes of a multi-process run)."""

    def __init__(
        self, total: int, desc: str, log: logging.Logger, every: int = 50, value: str = "loss", enabled: bool = True
    ) -> None:
        self.total, self.desc, self.log, self.every, self.value = total, desc, log, max(1, every), value
        self.enabled = enabled
        self.done = 0
        self.began = self.last = time.perf_counter()
        self.since = 0  # steps since the last log line
        tqdm = _tqdm() if enabled and interactive() else None
        self.bar = tqdm(total=total, desc=desc, unit="step", leave=False) if tqdm is not None else None

    def update(self, value: float) -> None:
        """One step done, ``value`` its loss."""
        if not self.enabled:
            return
        self.done += 1
        self.since += 1
        now = time.perf_counter()
        per_step = (now - self.began) / self.done
        if self.bar is not None:
            self.bar.set_postfix({self.value: f"{value:.4f}", "s/step": f"{per_step:.2f}"}, refresh=False)
            self.bar.update(1)
        elif self.done % self.every == 0 or self.done == self.total:
            self.log.info(
                "%s step %d/%d %s %.4f (%.2f s per step)",
                self.desc,
                self.done,
                self.total,
                self.value,
                value,
                (now - self.last) / self.since,
            )
            self.last, self.since = now, 0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
