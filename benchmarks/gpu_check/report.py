"""The JSON output: one document, rewritten atomically after every stage, each stage timed and
its failure recorded without stopping the others."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .constants import SCHEMA
from .processes import Job
from .summary import build_summary

#: One logger for the whole check, named as when it was one module.
log = logging.getLogger("benchmarks.gpu_check")


class StageFailed(Exception):
    """A stage ran and its check failed (the message says how)."""


class Report:
    """The JSON document, rewritten (atomically) after every stage."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "schema": SCHEMA,
            **meta,
            "ok": None,
            "exit_code": None,
            "failures": [],
            "stages": {},
            "summary": {},
        }
        self.started = time.perf_counter()

    def ok(self, name: str) -> bool:
        return self.data["stages"].get(name, {}).get("ok") is True

    def skip(self, name: str, reason: str) -> None:
        log.info("[%s] skipped: %s", name, reason)
        self.data["stages"][name] = {"ok": None, "skipped": reason}
        self.write()

    def fail(self, message: str) -> None:
        self.data["failures"].append(message)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Times the block; a :class:`StageFailed` or any other exception is recorded as the
        stage's failure and the run goes on."""
        record: dict[str, Any] = {"ok": None, "background_jobs": Job.running()}
        self.data["stages"][name] = record
        log.info(
            "[%s] start%s",
            name,
            f" (background: {', '.join(record['background_jobs'])})" if record["background_jobs"] else "",
        )
        start = time.perf_counter()
        try:
            yield record
            if record["ok"] is None:
                record["ok"] = True
        except StageFailed as exc:
            record.update(ok=False, error=str(exc))
        except Exception as exc:  # recorded; the other stages still run
            log.exception("[%s] crashed", name)
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            record["seconds"] = round(time.perf_counter() - start, 2)
            if record["ok"] is False:
                self.fail(f"{name}: {record.get('error')}")
                log.error("[%s] FAILED after %.1f s: %s", name, record["seconds"], record.get("error"))
            elif record["ok"]:
                log.info("[%s] ok in %.1f s", name, record["seconds"])
            self.write()

    def finish(self, exit_code: int) -> None:
        self.data.update(
            ok=not self.data["failures"],
            exit_code=exit_code,
            finished=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            total_seconds=round(time.perf_counter() - self.started, 1),
        )
        self.write()

    def write(self) -> None:
        self.data["summary"] = build_summary(self.data)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        tmp.replace(self.path)
