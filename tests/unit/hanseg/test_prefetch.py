"""The first case's images read ahead while the model loads: the same images, the same checks
before any voxel is read, nothing reported twice, and nothing held that the case does not take."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg import prefetch, resources
from hanseg.io import read_image
from hanseg.prefetch import Prefetch, first_gc2023_case


def write(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), value, np.int16)), str(path))
    return path


def test_the_first_case_is_the_one_the_layout_pairs(tmp_path: Path):
    cts = [write(tmp_path / f"images/ct/case_0{i}_CT.mha") for i in (2, 1)]
    mrs = [write(tmp_path / f"images/t1-mri/case_0{i}_T1.mha") for i in (2, 1)]
    (tmp_path / "images/ct/notes.txt").write_text("not an image")
    assert first_gc2023_case(tmp_path) == (cts[1], mrs[1])
    mrs[0].unlink()
    assert first_gc2023_case(tmp_path) is None  # 2 CTs, 1 MR: the layout refuses, nothing is read
    mrs[1].unlink()
    assert first_gc2023_case(tmp_path) == (cts[1], None)  # CT only
    assert first_gc2023_case(tmp_path / "missing") is None


def test_an_image_read_ahead_is_handed_over_once_and_equals_a_plain_read(tmp_path: Path):
    ct, mr = write(tmp_path / "ct.mha", 40), write(tmp_path / "mr.mha", 7)
    ahead = Prefetch()
    ahead.start(ct, [mr])
    got = ahead.take(mr)
    assert got is not None
    assert np.array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(read_image(mr)))
    assert ahead.take(mr) is None  # handed over once
    ahead.drop()
    assert ahead.take(ct) is None  # dropped: the case reads it itself


def test_a_file_that_fails_is_left_to_the_case_to_read_and_report(tmp_path: Path, caplog):
    bad = tmp_path / "bad.mha"
    bad.write_text("not an image")
    ahead = Prefetch()
    with caplog.at_level(logging.INFO):
        ahead.start(bad)
        assert ahead.take(bad) is None
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]  # nothing said here


def test_a_ct_too_large_for_memory_is_not_read_before_the_cases_own_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ct = write(tmp_path / "ct.mha")
    monkeypatch.setattr(resources, "memory_limit_bytes", lambda: 1)
    read: list[Path] = []
    monkeypatch.setattr(prefetch, "read_image", lambda path: read.append(path))
    ahead = Prefetch()
    ahead.start(ct)
    assert ahead.take(ct) is None and read == []


def test_the_cases_memory_check_does_not_count_an_image_read_ahead_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Read ahead, the CT is in the process's memory before the case checks whether it fits:
    the check must see the memory in use without it, as it would have without the read-ahead
    (a tall CT in a 4 GB container failed its check otherwise)."""
    from hanseg.layouts import common
    from helpers import FakePredictor

    ct = write(tmp_path / "in/case_01_CT.mha", 40)
    seen: list[int | None] = []
    monkeypatch.setattr(common, "check_fits", lambda path, in_use=None: seen.append(in_use))
    monkeypatch.setattr(common, "current_rss_bytes", lambda: 10**9)
    ahead = Prefetch()
    monkeypatch.setattr(common, "PREFETCH", ahead)
    ahead.start(ct)
    common.segment(common.CaseFiles(ct, None), tmp_path / "out/case_01_seg.mha", FakePredictor())
    assert seen == [10**9 - resources.image_bytes(read_image(ct))]
    common.segment(common.CaseFiles(ct, None), tmp_path / "out/case_01_seg.mha", FakePredictor())
    assert seen[-1] == 10**9  # nothing read ahead the second time: nothing held back
