"""The folders under ``--storage`` and what the worker does with them: a job's snapshot of
everything received for its study (hard links, no copy), atomic moves, and removing what a
delivered job used once its retention ends."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .store import fsync_dir


@dataclass(frozen=True)
class Layout:
    """The folders under ``--storage``."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def database(self) -> Path:
        return self.root / "node.sqlite3"

    def job(self, job_id: int) -> Path:
        return self.jobs / str(job_id)


@dataclass(frozen=True)
class Snapshot:
    """A job's input folder and the (series UID, SOP instance UID) pairs in it."""

    folder: Path
    instances: frozenset[tuple[str, str]]


def link_file(source: Path, target: Path) -> None:
    """A hard link (no copy of the bytes; the file is never changed in place), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def link_outputs(
    layout: Layout, outputs: list[dict[str, str]], source_job: int, target_job: int
) -> list[dict[str, str]]:
    """``source_job``'s result files linked into ``target_job``'s output folder, at the same
    relative paths: the output records with their new paths. FileNotFoundError when one of the
    files is gone (retention, or the free-space guard, removed it)."""
    linked = []
    for output in outputs:
        source = Path(output["path"])
        target = layout.job(target_job) / "output" / source.relative_to(layout.job(source_job) / "output")
        link_file(source, target)
        linked.append({**output, "path": str(target)})
    return linked


def link_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*.dcm")):
        link_file(path, target / path.relative_to(source))
    target.mkdir(parents=True, exist_ok=True)
    fsync_dir(target)


def move_tree(src: Path, dst: Path) -> None:
    """Rename within one file system (atomic: a crash leaves the folder in one place or the other)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def instances_in(folder: Path) -> frozenset[tuple[str, str]]:
    """The (series UID, SOP instance UID) pairs of a ``<series>/<instance>.dcm`` folder."""
    return frozenset((f.parent.name, f.stem) for f in folder.glob("*/*.dcm"))


def take_snapshot(layout: Layout, job_id: int, study_uid: str) -> Snapshot | None:
    """The job's input: hard links to everything received for the study so far (the union of
    every association that sent it), taken when the job starts. ``incoming/`` keeps the
    originals, so a later job of the study sees them too. None: nothing of the study is here."""
    folder = layout.job(job_id) / "input"
    source = layout.incoming / study_uid
    if source.is_dir():
        partial = folder.with_name(".input-partial")
        shutil.rmtree(partial, ignore_errors=True)
        link_tree(source, partial)
        if folder.is_dir():  # an earlier snapshot of this job: keep what only it holds (a release
            # before snapshots moved ``incoming/<study>`` here)
            for path in folder.rglob("*.dcm"):
                if not (partial / path.relative_to(folder)).exists():
                    link_file(path, partial / path.relative_to(folder))
        shutil.rmtree(folder, ignore_errors=True)
        move_tree(partial, folder)
    if not folder.is_dir():
        return None
    instances = instances_in(folder)
    return Snapshot(folder, instances) if instances else None


def remove_received(folder: Path, used: Iterable[tuple[str, str]], last_used: float | None) -> None:
    """Remove the study's received files that its jobs used and that were not written again
    since the last of them (``last_used``). An instance being received right now (written, not
    yet counted: the sender was not answered yet) is never removed under it; it makes the next job."""
    for series_uid, sop_uid in used:
        path = folder / series_uid / f"{sop_uid}.dcm"
        try:
            if path.stat().st_mtime <= (last_used or 0.0):
                path.unlink()
        except FileNotFoundError:
            continue
    for sub in [*sorted(folder.glob("*"), reverse=True), folder]:
        with contextlib.suppress(OSError):  # not empty: something arrived since
            sub.rmdir()
