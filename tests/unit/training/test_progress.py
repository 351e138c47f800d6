"""Progress on a terminal (a tqdm bar on stderr) and in logs (lines, no bar), and the
``log.csv`` columns a resumed run from before ``train_seconds``/``val_seconds`` keeps
readable (:mod:`training.progress`, :func:`training.train.write_log`, the readers)."""

from __future__ import annotations

import csv
import io
import logging
import sys

from training import progress
from training.export import _training_minutes
from training.train import write_log

log = logging.getLogger("test.progress")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(monkeypatch) -> FakeTerminal:
    """stderr replaced by a fake terminal; called in the test itself, since pytest puts its
    own stderr back between a fixture's setup and the test."""
    fake = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", fake)
    return fake


def test_steps_on_a_terminal_draw_a_bar_with_loss_and_seconds_per_step(monkeypatch, caplog):
    caplog.set_level(logging.INFO, "test.progress")
    fake = terminal(monkeypatch)
    with progress.Steps(3, "epoch 1/2", log, every=1) as steps:
        for loss in (0.9, 0.8, 0.7):
            steps.update(loss)
            assert steps.bar is not None
            steps.bar.refresh()  # tqdm redraws at most every 0.1 s by itself
    shown = fake.getvalue()
    assert "epoch 1/2" in shown and "loss=0.7000" in shown and "s/step=" in shown
    assert caplog.records == []  # the bar instead of lines


def test_steps_without_a_terminal_log_every_n_steps_and_the_last(caplog):
    caplog.set_level(logging.INFO, "test.progress")
    assert not progress.interactive()  # pytest captures stderr: no terminal
    with progress.Steps(5, "epoch 1/2", log, every=2) as steps:
        for loss in (0.9, 0.8, 0.7, 0.6, 0.5):
            steps.update(loss)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" loss")[0] for line in lines] == [
        "epoch 1/2 step 2/5",
        "epoch 1/2 step 4/5",
        "epoch 1/2 step 5/5",
    ]
    assert lines[-1].startswith("epoch 1/2 step 5/5 loss 0.5000 (") and lines[-1].endswith(" s per step)")


def test_disabled_steps_say_nothing(monkeypatch, caplog):
    caplog.set_level(logging.INFO, "test.progress")
    fake = terminal(monkeypatch)
    with progress.Steps(2, "epoch 1/1", log, every=1, enabled=False) as steps:
        steps.update(1.0)
        steps.update(1.0)
    assert fake.getvalue() == "" and caplog.records == []


def test_each_logs_one_line_per_item_without_a_terminal(caplog):
    caplog.set_level(logging.INFO, "test.progress")
    assert list(progress.each(["case_01", "case_02"], 2, "segmenting", log)) == ["case_01", "case_02"]
    lines = [r.getMessage() for r in caplog.records]
    assert [line.rsplit(" in ", 1)[0] for line in lines] == ["segmenting 1/2: case_01", "segmenting 2/2: case_02"]
    assert all(line.endswith(" s") for line in lines)
    custom = list(progress.each([3], 1, "x", log, line=lambda item, i, s: f"item {item} number {i}"))
    assert custom == [3] and caplog.records[-1].getMessage() == "item 3 number 1"


def test_each_on_a_terminal_draws_a_bar(monkeypatch, caplog):
    caplog.set_level(logging.INFO, "test.progress")
    fake = terminal(monkeypatch)
    assert list(progress.each(range(3), 3, "segmenting", log)) == [0, 1, 2]
    assert "segmenting" in fake.getvalue() and "3/3" in fake.getvalue()
    assert caplog.records == []


def test_log_csv_from_before_the_seconds_columns_is_extended_not_misaligned(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    (fold / "log.csv").write_text("epoch,train_loss,val_dice,lr,seconds\n0,4.9340,,6.31e-04,2.5\n")
    row = {"epoch": 1, "train_loss": "4.7", "val_dice": "0.1", "lr": "1e-4", "seconds": "3.5"}
    write_log(fold, {**row, "train_seconds": "3.0", "val_seconds": "0.4"})
    write_log(fold, {**row, "epoch": 2, "train_seconds": "3.1", "val_seconds": ""})
    with open(fold / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert [r["train_seconds"] for r in rows] == ["", "3.0", "3.1"]
    assert [r["val_seconds"] for r in rows] == ["", "0.4", ""]
    assert [r["seconds"] for r in rows] == ["2.5", "3.5", "3.5"]


def test_export_reads_training_minutes_from_old_and_new_log_csv(tmp_path):
    old, new = tmp_path / "fold_0", tmp_path / "fold_1"
    old.mkdir()
    new.mkdir()
    (old / "log.csv").write_text("epoch,train_loss,val_dice,lr,seconds\n0,4.9,,6e-04,60.0\n1,4.7,0.1,1e-04,60.0\n")
    (new / "log.csv").write_text(
        "epoch,train_loss,val_dice,lr,seconds,train_seconds,val_seconds\n0,4.9,0.1,6e-04,120.0,100.0,15.0\n"
    )
    assert _training_minutes(tmp_path, ["0"]) == 2
    assert _training_minutes(tmp_path, ["0", "1"]) == 4


def test_check_data_keeps_its_line_per_case(caplog):
    from types import SimpleNamespace

    from training.check_data.runner import _progress

    caplog.set_level(logging.INFO, "training.check_data")
    case = SimpleNamespace(case_id="case_01", summary={"seconds": 1.5, "errors": 0, "warnings": 2})
    assert list(_progress(iter([case]), 1)) == [case]  # type: ignore[list-item]
    assert caplog.records[-1].getMessage() == "case_01 checked (1/1) in 1.5 s: 0 errors, 2 warnings"
