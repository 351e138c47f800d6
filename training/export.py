"""Export trained folds into a model folder the container runs, and write its model card.

    python -m training.export --work WORK --out my_model [--folds all | 0 1 2 3 4] [--which best|last]
        [--data-note "what the data was"] [--data-command "how it was made"] [--version X.Y.Z]
        [--changes "what this stage changed"] [--command "a command of this stage" ...]
        [--force] [--replace-shipped]
    python -m training.export --card model/      # only rewrite model/README.md (and README's summary)

A folder that already holds a model is never overwritten silently: ``--force`` allows it, and
the shipped ``model/`` needs ``--replace-shipped`` (the old one is kept as
``model.bak-<version>``). Refused: exit 2 with the reason, before anything is read or written.

Writes ``plans.json`` (the work folder's plan, with the exported folds), ``fold_<k>.pt`` (state
dicts only), ``metadata.json`` and ``README.md`` (the model card, generated from the metadata by
:mod:`training.model_card`). The metadata follows a MONAI bundle's: version, changelog, training
data, one entry per training stage (commands, steps, minutes, validation Dice), scores, and the
sha256 of each weight file. A model trained ``--init-from`` another model folder inherits that
folder's changelog and stages, so a model trained in several stages keeps its whole history.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hanseg.errors import HansegError
from hanseg.plans import load_plans

from . import no_plan
from .model_card import write_card

log = logging.getLogger("training.export")
ROOT = Path(__file__).resolve().parent.parent
FIRST_VERSION = "0.1.0"
INTENDED_USE = "Research use only; not for clinical use."


@dataclasses.dataclass(frozen=True)
class StageNotes:
    """What the person exporting says about this stage (the numbers come from the work folder)."""

    data_note: str = ""
    data_command: str = ""
    version: str | None = None
    changes: str = ""
    commands: tuple[str, ...] = ()


def _fold_entry(work: Path, fold: str, k: int, which: str) -> tuple[dict, dict[str, Any]]:
    """(state dict, metadata entry) of one trained fold."""
    folder = work / f"fold_{fold}"
    path = folder / f"checkpoint_{which}.pt"
    if which == "best" and not path.is_file():
        path = folder / "checkpoint_last.pt"  # fold 'all' has no validation, hence no best
    import torch  # here, not at the top: `--help` answers before torch is imported

    state = torch.load(path, map_location="cpu", weights_only=False)
    val = folder / "val_dice.json"
    entry = {
        "model_fold": k,
        "trained_fold": fold,
        "checkpoint": path.name,
        "epochs_trained": state["epoch"] + 1,
        "config": state.get("config"),
        "validation": json.loads(val.read_text()) if val.is_file() else None,
    }
    return state["model"], entry


def _training_minutes(work: Path, folds: Sequence[str]) -> int:
    """Wall minutes of every epoch in the folds' ``log.csv`` (resumed runs included): its
    ``seconds`` column, the whole epoch, which files from before the ``train_seconds`` and
    ``val_seconds`` columns have too."""
    seconds = 0.0
    for fold in folds:
        log_csv = work / f"fold_{fold}" / "log.csv"
        if log_csv.is_file():
            with open(log_csv, newline="") as fh:
                seconds += sum(float(row["seconds"]) for row in csv.DictReader(fh) if row.get("seconds"))
    return round(seconds / 60)


def _lineage(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata of the model folder the first fold was initialised from, if it is one."""
    init = (entries[0].get("config") or {}).get("init_from")
    path = Path(init) / "metadata.json" if init else None
    if path is None or not path.is_file():
        return {}
    return json.loads(path.read_text())


def _next_version(previous: str | None) -> str:
    if not previous:
        return FIRST_VERSION
    major, minor, *_ = (int(p) for p in previous.split("."))
    return f"{major}.{minor + 1}.0"


def _validation(entries: list[dict[str, Any]]) -> float | None:
    means = [e["validation"]["mean"] for e in entries if e["validation"]]
    return sum(means) / len(means) if means else None


def build_metadata(
    work: Path, folds: Sequence[str], entries: list[dict[str, Any]], notes: StageNotes
) -> dict[str, Any]:
    """The structured ``metadata.json`` of a new export (weight hashes are added by export_model)."""
    parent = _lineage(entries)
    version = notes.version or _next_version(parent.get("version"))
    cfg = entries[0].get("config") or {}
    mean = _validation(entries)
    stage = {
        "version": version,
        "commands": list(notes.commands),
        "steps": entries[0]["epochs_trained"] * cfg.get("iters", 0),
        "training_minutes": _training_minutes(work, folds),
        "validation_mean_dice": mean,
    }
    splits = json.loads((work / "splits.json").read_text())
    n_val = sum(len(splits["folds"][int(f)]["val"]) for f in folds if f != "all")
    fingerprint = json.loads((work / "fingerprint.json").read_text())
    return {
        "name": "hanseg",
        "version": version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "description": parent.get("description", "30 head-and-neck OARs (HaN-Seg label ids 1..30)"),
        "intended_use": parent.get("intended_use", INTENDED_USE),
        "changelog": {version: notes.changes or "(no description given)", **parent.get("changelog", {})},
        "training_data": {
            "description": notes.data_note,
            "command": notes.data_command,
            "cases": fingerprint["cases"],
            "splits": splits,
        },
        "stages": [*parent.get("stages", []), stage],
        "folds": entries,
        "scores": {
            "validation": {
                "mean_dice": mean,
                "cases": n_val,
                "what": "the folds' validation cases, Dice on the network grid during training",
            }
        },
    }


#: the model process.py and the image use when no --model is given
SHIPPED_MODEL = ROOT / "model"
#: files whose presence means a folder holds a model
MODEL_FILES = ("plans.json", "metadata.json")


class ExportRefused(HansegError):
    """The export would overwrite a model without being told to."""


def _holds_model(folder: Path) -> bool:
    return folder.is_dir() and (any((folder / f).is_file() for f in MODEL_FILES) or any(folder.glob("fold_*.pt")))


def _version(folder: Path) -> str:
    try:
        return str(json.loads((folder / "metadata.json").read_text()).get("version", "unversioned"))
    except (OSError, ValueError):
        return "unversioned"


def check_target(out: Path, force: bool, replace_shipped: bool, shipped: Path | None = None) -> Path | None:
    """Where the model now in ``out`` must be kept before the export (None: nothing to keep).
    Raises :class:`ExportRefused` when ``out`` holds a model and the user did not say to replace it."""
    if not _holds_model(out):
        return None
    if out.resolve() == (shipped or SHIPPED_MODEL).resolve():
        if not replace_shipped:
            raise ExportRefused(
                f"{out} is the shipped model (version {_version(out)}) that process.py and the image use: "
                "export to a folder of your own (--out my_model, then process.py --model my_model), or give "
                "--replace-shipped to replace it (the old one is kept as model.bak-<version>)"
            )
        backup = out.parent / f"{out.name}.bak-{_version(out)}"
        n = 2
        while backup.exists():
            backup = out.parent / f"{out.name}.bak-{_version(out)}-{n}"
            n += 1
        return backup
    if not force:
        raise ExportRefused(
            f"{out} already holds a model (version {_version(out)}): choose another folder with --out, "
            "or give --force to overwrite it"
        )
    return None


class NoPlan(HansegError):
    """The work folder holds no ``plans.json``: ``training.plan`` has not been run on it."""


def export(work: Path, out: Path, folds: list[str], which: str, notes: StageNotes = StageNotes()) -> Path:
    if not (work / "plans.json").is_file():
        raise NoPlan(no_plan(work))
    plans = load_plans(work / "plans.json")
    pairs = [_fold_entry(work, fold, k, which) for k, fold in enumerate(folds)]
    states, entries = [p[0] for p in pairs], [p[1] for p in pairs]
    metadata = build_metadata(work, folds, entries, notes)  # before out/ is overwritten: it may be the parent
    plans = dataclasses.replace(plans, folds=tuple(range(len(folds))))
    from hanseg.model_dir import export_model  # imports torch

    files = export_model(out, plans, states, metadata)
    write_card(files.root)
    log.info("exported %d fold(s) to %s (version %s)", len(states), files.root, metadata["version"])
    return files.root


def card_only(model_dir: Path) -> Path:
    """Rewrite the model card, and README's summary when ``model_dir`` is this repository's model/."""
    readme = ROOT / "README.md" if Path(model_dir).resolve() == (ROOT / "model").resolve() else None
    path = write_card(model_dir, readme)
    log.info("wrote %s%s", path, f" and the summary in {readme}" if readme else "")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.export", description="Export trained folds into a model folder, with its model card."
    )
    ap.add_argument("--work", type=Path, help="work folder of training.plan / training.train")
    ap.add_argument("--out", type=Path, help="model folder to write")
    ap.add_argument("--folds", nargs="+", default=["all"], help="fold names: 0 1 2 ... or all")
    ap.add_argument("--which", choices=("best", "last"), default="best")
    ap.add_argument("--data-note", default="", help="what the training data was (kept in metadata.json)")
    ap.add_argument("--data-command", default="", help="the command that made or fetched the training data")
    ap.add_argument("--version", help="model version (default: the parent model's minor version + 1, or 0.1.0)")
    ap.add_argument("--changes", default="", help="what this stage changed, for the changelog")
    ap.add_argument("--command", action="append", default=[], help="a command of this stage (repeat for several)")
    ap.add_argument("--card", type=Path, metavar="MODEL_DIR", help="only rewrite MODEL_DIR/README.md from its metadata")
    ap.add_argument("--force", action="store_true", help="overwrite a folder that already holds a model")
    ap.add_argument(
        "--replace-shipped",
        action="store_true",
        help="replace the shipped model/ (the old one is kept as model.bak-<version>)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.card is not None:
        card_only(args.card)
        return 0
    if args.work is None or args.out is None:
        ap.error("--work and --out are required (or --card MODEL_DIR)")
    try:
        backup = check_target(args.out, args.force, args.replace_shipped)
    except ExportRefused as exc:
        log.error("%s", exc)
        return 2
    if backup is not None:
        shutil.copytree(args.out, backup)  # a copy: a failed export still leaves model/ whole
        log.info("the shipped model (version %s) is kept as %s", _version(args.out), backup)
    notes = StageNotes(args.data_note, args.data_command, args.version, args.changes, tuple(args.command))
    try:
        export(args.work, args.out, args.folds, args.which, notes)
    except NoPlan as exc:
        sys.stderr.write(f"python -m training.export: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
