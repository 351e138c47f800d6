"""``training.export`` never overwrites a model silently: a folder that holds one needs
``--force``, the shipped model needs ``--replace-shipped`` and is kept as ``model.bak-<version>``;
a refusal exits 2 before anything is read or written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import training.export as export_module
from helpers import ROOT
from training.export import ExportRefused, check_target, main


def a_model(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"version": version}))
    (folder / "fold_0.pt").write_bytes(b"weights")
    return folder


def test_a_new_or_empty_folder_is_written_without_asking(tmp_path):
    assert check_target(tmp_path / "new", force=False, replace_shipped=False) is None
    (tmp_path / "empty").mkdir()
    assert check_target(tmp_path / "empty", force=False, replace_shipped=False) is None


def test_a_folder_with_a_model_needs_force(tmp_path):
    mine = a_model(tmp_path / "my_model", "0.2.0")
    with pytest.raises(ExportRefused, match=r"already holds a model \(version 0\.2\.0\).*--force"):
        check_target(mine, force=False, replace_shipped=False)
    assert check_target(mine, force=True, replace_shipped=False) is None


def test_the_shipped_model_needs_replace_shipped_even_with_force_and_is_kept(tmp_path):
    shipped = a_model(tmp_path / "model", "0.5.1")
    for force in (False, True):
        with pytest.raises(ExportRefused, match=r"shipped model \(version 0\.5\.1\).*--out my_model"):
            check_target(shipped, force=force, replace_shipped=False, shipped=shipped)
    assert check_target(shipped, False, True, shipped=shipped) == tmp_path / "model.bak-0.5.1"
    (tmp_path / "model.bak-0.5.1").mkdir()
    assert check_target(shipped, False, True, shipped=shipped) == tmp_path / "model.bak-0.5.1-2"


def test_the_command_refuses_the_shipped_model_before_reading_anything(tmp_path):
    before = {p.name: p.read_bytes() for p in (ROOT / "model").iterdir() if p.is_file()}
    assert main(["--work", str(tmp_path / "no-such-work"), "--out", str(ROOT / "model")]) == 2
    assert {p.name: p.read_bytes() for p in (ROOT / "model").iterdir() if p.is_file()} == before


def test_replacing_the_shipped_model_keeps_a_copy_first(tmp_path, monkeypatch):
    shipped = a_model(tmp_path / "model", "0.5.1")
    monkeypatch.setattr(export_module, "SHIPPED_MODEL", shipped)
    written = []

    def fake_export(work, out, *args, **kwargs):  # the training part is tested in the smoke tier
        written.append(out)
        (out / "metadata.json").write_text(json.dumps({"version": "0.6.0"}))
        return out

    monkeypatch.setattr(export_module, "export", fake_export)
    assert main(["--work", str(tmp_path), "--out", str(shipped), "--replace-shipped"]) == 0
    assert written == [shipped]
    kept = tmp_path / "model.bak-0.5.1"
    assert json.loads((kept / "metadata.json").read_text())["version"] == "0.5.1"
    assert (kept / "fold_0.pt").read_bytes() == b"weights"
