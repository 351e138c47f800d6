import json
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.errors import InputLayoutError
from hanseg.layouts import run
from hanseg.layouts.gc2023 import find_cases, output_name
from helpers import FakePredictor
from helpers import write_ct as write


def test_output_name_follows_the_template():
    assert output_name(Path("case_01_IMG_CT.nrrd")) == "case_01_IMG_seg.nrrd"
    assert output_name(Path("case_07_CT.mha")) == "case_07_seg.mha"
    assert output_name(Path("scan.nii.gz")) == "scan_seg.nii.gz"


def test_cases_pair_by_sorted_name_and_ignore_non_images(tmp_path):
    for name in ("b_CT.mha", "a_CT.mha"):
        write(tmp_path / "images/ct" / name)
    for name in ("b_T1.mha", "a_T1.mha"):
        write(tmp_path / "images/t1-mri" / name)
    (tmp_path / "images/ct/README.txt").write_text("not an image")
    cases = find_cases(tmp_path)
    assert [(c.ct.name, c.mr.name if c.mr else None) for c in cases] == [
        ("a_CT.mha", "a_T1.mha"),
        ("b_CT.mha", "b_T1.mha"),
    ]


def test_unequal_counts_name_the_files(tmp_path):
    write(tmp_path / "images/ct/a_CT.mha")
    write(tmp_path / "images/ct/b_CT.mha")
    write(tmp_path / "images/t1-mri/a_T1.mha")
    with pytest.raises(InputLayoutError, match=r"2 CT images but 1 MR.*b_CT\.mha"):
        find_cases(tmp_path)


def test_empty_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputLayoutError, match="no CT image"):
        find_cases(tmp_path)


def test_run_writes_outputs_and_results_json(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write(inp / "images/ct/case_01_CT.nrrd")
    write(inp / "images/t1-mri/case_01_T1.nrrd", size=(5, 6, 7))
    predictor = FakePredictor()
    assert run(inp, out, predictor) == 0
    assert predictor.calls == [((8, 9, 10), (5, 6, 7))]
    seg = sitk.ReadImage(str(out / "images/head_neck_oar/case_01_seg.nrrd"))
    assert seg.GetPixelID() == sitk.sitkUInt8 and seg.GetSize() == (8, 9, 10)
    assert set(np.unique(sitk.GetArrayFromImage(seg))) == {0, 5}
    assert json.loads((out / "results.json").read_text()) == [
        {
            "outputs": [{"type": "metaio_image", "filename": "case_01_seg.nrrd"}],
            "inputs": [
                {"type": "metaio_ct_image", "filename": "case_01_CT.nrrd"},
                {"type": "metaio_mrt1_image", "filename": "case_01_T1.nrrd"},
            ],
            "error_messages": [],
        }
    ]


def test_bad_case_does_not_stop_the_others_and_leaves_no_file(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write(inp / "images/ct/a_CT.mha", value=100)
    (inp / "images/ct/b_CT.mha").write_bytes(b"truncated")
    write(inp / "images/ct/c_CT.mha", value=200)
    assert run(inp, out, FakePredictor()) == 1
    results = json.loads((out / "results.json").read_text())
    assert [bool(r["outputs"]) for r in results] == [True, False, True]
    assert "b_CT.mha" in results[1]["error_messages"][0]
    assert results[0]["error_messages"] == ["no MR"]  # CT-only warning travels to results.json
    assert sorted(p.name for p in (out / "images/head_neck_oar").iterdir()) == ["a_seg.mha", "c_seg.mha"]


def test_duplicate_images_are_refused_by_name(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write(inp / "images/ct/a_CT.mha", value=100)
    write(inp / "images/ct/b_CT.mha", value=100)  # same bytes as a_CT.mha
    write(inp / "images/t1-mri/a_T1.mha", value=7)
    write(inp / "images/t1-mri/b_T1.mha", value=8)
    assert run(inp, out, FakePredictor()) == 1
    results = json.loads((out / "results.json").read_text())
    assert bool(results[0]["outputs"]) and not results[1]["outputs"]
    assert "b_CT.mha is identical to a_CT.mha" in results[1]["error_messages"][0]


def test_unwritable_output_fails_before_any_case(tmp_path):
    from hanseg.errors import OutputError

    write(tmp_path / "in/images/ct/a_CT.mha")
    (tmp_path / "blocker").write_text("a file where the output folder should be")
    predictor = FakePredictor()
    with pytest.raises(OutputError, match="cannot write to the output folder"):
        run(tmp_path / "in", tmp_path / "blocker" / "out", predictor)
    assert predictor.calls == []


def test_read_only_input_just_works(tmp_path):
    import os
    import stat

    inp = tmp_path / "in"
    write(inp / "images/ct/a_CT.mha")
    for p in [inp, *inp.rglob("*")]:
        os.chmod(p, stat.S_IREAD | stat.S_IEXEC | stat.S_IRGRP | stat.S_IXGRP)
    try:
        assert run(inp, tmp_path / "out", FakePredictor()) == 0
    finally:
        for p in [inp, *inp.rglob("*")]:
            os.chmod(p, stat.S_IRWXU)


def test_an_unreadable_ct_is_named_once_in_one_log_line_and_one_message(tmp_path, caplog):
    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "images/ct").mkdir(parents=True)
    (inp / "images/ct/case_01_CT.mha").write_bytes(b"garbage\x00\x01")
    write(inp / "images/t1-mri/case_01_T1.mha", value=7)
    with caplog.at_level(logging.INFO):
        assert run(inp, out, FakePredictor()) == 1
    (message,) = json.loads((out / "results.json").read_text())[0]["error_messages"]
    assert message.startswith("case_01_CT.mha: cannot be read as an image")
    assert message.count("case_01_CT.mha") == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [e for e in errors if "cannot be read" in e] == [f"FAILED {message}"]  # the reason once, in one line
    assert all(e.count("case_01_CT.mha") == 1 for e in errors)
    assert len(errors) == len(set(errors))


def test_an_unreadable_mr_names_its_case_and_itself_once_each(tmp_path, caplog):
    inp, out = tmp_path / "in", tmp_path / "out"
    write(inp / "images/ct/case_01_CT.mha", value=100)
    (inp / "images/t1-mri").mkdir(parents=True)
    (inp / "images/t1-mri/case_01_T1.mha").write_bytes(b"garbage")
    assert run(inp, out, FakePredictor()) == 1
    (message,) = json.loads((out / "results.json").read_text())[0]["error_messages"]
    assert message.startswith("case_01_CT.mha: case_01_T1.mha: cannot be read as an image")
    assert message.count("case_01_CT.mha") == 1 and message.count("case_01_T1.mha") == 1
