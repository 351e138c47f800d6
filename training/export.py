"""Export trained folds into a model folder the container runs.

    python -m training.export --work WORK --out model/ [--folds all | 0 1 2 3 4]
        [--which best|last] [--data-note "phantoms: seeds ..."]

Writes ``plans.json`` (the work folder's plan, with the exported folds), ``fold_<k>.pt``
(state dicts only) and ``metadata.json`` (version, training data, validation scores per
OAR, training configuration, sha256 of each weight file).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path

import torch

import hanseg
from hanseg.model_dir import export_model
from hanseg.plans import load_plans

log = logging.getLogger("training.export")


def export(work: Path, out: Path, folds: list[str], which: str, data_note: str) -> Path:
    plans = load_plans(work / "plans.json")
    states, meta_folds = [], []
    for k, fold in enumerate(folds):
        folder = work / f"fold_{fold}"
        path = folder / f"checkpoint_{which}.pt"
        if which == "best" and not path.is_file():
            path = folder / "checkpoint_last.pt"  # fold 'all' has no validation, hence no best
        state = torch.load(path, map_location="cpu", weights_only=False)
        states.append(state["model"])
        val = folder / "val_dice.json"
        meta_folds.append({"model_fold": k, "trained_fold": fold, "checkpoint": path.name,
                           "epochs_trained": state["epoch"] + 1, "config": state.get("config"),
                           "validation": json.loads(val.read_text()) if val.is_file() else None})
    plans = dataclasses.replace(plans, folds=tuple(range(len(folds))))
    fingerprint = json.loads((work / "fingerprint.json").read_text())
    metadata = {
        "name": "hanseg", "version": hanseg.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training_data": {"note": data_note, "cases": fingerprint["cases"],
                          "splits": json.loads((work / "splits.json").read_text())},
        "folds": meta_folds,
    }
    files = export_model(out, plans, states, metadata)
    log.info("exported %d fold(s) to %s", len(states), files.root)
    return files.root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export trained folds into a model folder.")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", nargs="+", default=["all"], help="fold names: 0 1 2 ... or all")
    ap.add_argument("--which", choices=("best", "last"), default="best")
    ap.add_argument("--data-note", default="", help="what the training data was (kept in metadata.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    export(args.work, args.out, args.folds, args.which, args.data_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
