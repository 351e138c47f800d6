"""The window feed that start-up timing chose, remembered per machine and model, so that a
second run on the same machine does not time the network again (about a second on 2 CPU
cores; a node or a batch of ``process.py`` runs pays it once).

The key holds everything the timing depends on: the model's fingerprint (weights, plan,
version), the device (the CPU's model name or the GPU's name), the threads torch uses, the
torch version and the precision. Anything else, and the feed is timed again.

Where: ``$HANSEG_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/hanseg``, else
``~/.cache/hanseg``; ``HANSEG_CACHE_DIR=off`` turns the cache off. A folder that cannot be
read or written (a read-only container) only means the feed is timed on every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV = "HANSEG_CACHE_DIR"
FILE_NAME = "window_feeds.json"
#: Entries kept: one per model, machine and setting is a few hundred bytes.
MAX_ENTRIES = 64


def cache_file() -> Path | None:
    """The cache's JSON file, or None when ``HANSEG_CACHE_DIR=off`` or there is no home folder."""
    chosen = os.environ.get(ENV)
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen) / FILE_NAME
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = Path(os.path.expanduser("~"))
        if not home.is_absolute():  # a container user without a home: no cache, timed every start
            return None
        base = str(home / ".cache")
    return Path(base) / "hanseg" / FILE_NAME


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux), else what the platform module says."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def feed_key(model_fingerprint: str, device: str, threads: int, torch_version: str, precision: str) -> str:
    """One string from everything the timing depends on (see the module docstring)."""
    parts = [model_fingerprint, device, str(threads), torch_version, precision]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(key: str) -> dict[str, Any] | None:
    """The stored feed for ``key``, or None (no cache, no entry, an unreadable file)."""
    path = cache_file()
    if path is None:
        return None
    entry = _read(path).get(key)
    return entry if isinstance(entry, dict) else None


def store(key: str, entry: dict[str, Any]) -> None:
    """Store ``entry`` under ``key``, atomically; a folder that cannot be written is skipped."""
    path = cache_file()
    if path is None:
        return
    data = _read(path)
    data.pop(key, None)
    data[key] = entry
    while len(data) > MAX_ENTRIES:  # the oldest first: dicts keep insertion order
        data.pop(next(iter(data)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
    except OSError as exc:
        log.debug("window feed not cached (%s): it is timed again on the next start", exc)
