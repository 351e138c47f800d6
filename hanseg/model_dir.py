"""The model folder (``model/`` baked into the image, or ``/opt/ml/model``).

Layout: ``plans.json``, one ``fold_<k>.pt`` state dict per fold listed in the plan, and
optionally ``metadata.json`` (version, training data, scores, ``weights_sha256``). When the
metadata names a hash for a weight file, the file must match it: a half-copied or swapped
checkpoint is refused at start-up, before any case is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ModelError
from .plans import Plans, load_plans, save_plans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFiles:
    root: Path
    plans: Plans
    weight_paths: tuple[Path, ...]  # one per fold, in the plan's fold order
    metadata: Mapping[str, Any]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(files: ModelFiles) -> str:
    """One sha256 for the model: its version, its plan and the sha256 of each weight file (from
    metadata.json, which :func:`load_model_dir` has checked, else computed). What makes two
    results of the same input differ; DICOM outputs derive their UIDs from it."""
    recorded = files.metadata.get("weights_sha256", {})
    digest = hashlib.sha256(f"version={files.metadata.get('version', 'unversioned')}".encode())
    # the plan too: it decides the preprocessing and what is said about a case (coverage)
    digest.update(f";plans.json={sha256_file(files.root / 'plans.json')}".encode())
    for path in files.weight_paths:
        digest.update(f";{path.name}={recorded.get(path.name) or sha256_file(path)}".encode())
    return digest.hexdigest()


def _read_metadata(root: Path) -> dict[str, Any]:
    path = root / "metadata.json"
    if not path.is_file():
        return {}
    try:
        metadata: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    return metadata


def load_model_dir(root: Path) -> ModelFiles:
    """Check the model folder completely (plans, weights, hashes) and describe it."""
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"model folder {root} does not exist")
    plans = load_plans(root / "plans.json")
    metadata = _read_metadata(root)
    hashes = metadata.get("weights_sha256", {})
    paths = []
    for fold in plans.folds:
        path = root / plans.weight_file(fold)
        if not path.is_file():
            raise ModelError(f"model folder {root} is incomplete: {path.name} (fold {fold}) is missing")
        expected = hashes.get(path.name)
        if expected is not None and sha256_file(path) != expected:
            raise ModelError(
                f"{path} does not match the sha256 in metadata.json: the file is "
                "corrupt or from another model; copy the model folder again"
            )
        paths.append(path)
    return ModelFiles(root, plans, tuple(paths), metadata)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load one fold's weights as plain tensors (``weights_only``: no code runs on load)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise ModelError(f"{path} cannot be loaded as weights: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds {type(state).__name__}, expected a state dict")
    return state


def export_model(
    root: Path, plans: Plans, states: list[dict[str, torch.Tensor]], metadata: Mapping[str, Any]
) -> ModelFiles:
    """Write a complete model folder: plans.json, one weight file per fold, metadata.json
    with the sha256 of each weight file (checked again by :func:`load_model_dir`)."""
    if len(states) != len(plans.folds):
        raise ValueError(f"{len(states)} state dicts for folds {plans.folds}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    save_plans(plans, root / "plans.json")
    hashes = {}
    for fold, state in zip(plans.folds, states):
        path = root / plans.weight_file(fold)
        torch.save({k: v.detach().cpu() for k, v in state.items()}, path)
        hashes[path.name] = sha256_file(path)
    meta = {**metadata, "weights_sha256": hashes}
    (root / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return load_model_dir(root)


UPLOADED_MODEL = Path("/opt/ml/model")  # where Grand-Challenge extracts a separately uploaded model tarball


def _model_in(folder: Path) -> Path | None:
    """``folder`` itself, or its single sub-folder, when it holds a ``plans.json`` (a tarball
    made with ``tar -C model .`` or ``tar model/`` both work)."""
    if (folder / "plans.json").is_file():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return subs[0] if len(subs) == 1 and (subs[0] / "plans.json").is_file() else None


def resolve_model_root(explicit: Path | None, baked: Path, uploaded: Path = UPLOADED_MODEL) -> Path:
    """The model to run: ``--model`` if given, else an uploaded model in ``/opt/ml/model``,
    else the model baked into the image. Logs which, so a job's log says what ran."""
    if explicit is not None:
        log.info("using the model given with --model: %s", explicit)
        return Path(explicit)
    found = _model_in(uploaded)
    if found is not None:
        log.info("using the uploaded model in %s (overrides the baked %s)", found, baked)
        return found
    if uploaded.is_dir() and any(uploaded.iterdir()):
        log.warning("%s has files but no plans.json: ignored, using the baked model %s", uploaded, baked)
    else:
        log.info("using the baked model %s", baked)
    return baked
