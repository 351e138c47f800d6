"""The socket layout (inputs.json) and the /opt/ml/model override, with a fake predictor."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.errors import InputLayoutError
from hanseg.layouts import run
from hanseg.layouts.sockets import SocketConfig, find_socket_images, read_inputs_json
from hanseg.model_dir import resolve_model_root
from helpers import FakePredictor
from helpers import write_ct as write


def socket(slug: str, rel: str, key: str = "socket", kind: str = "Image") -> dict:
    return {
        key: {"slug": slug, "kind": kind, "relative_path": rel, "super_kind": "Image"},
        "image": {"name": f"{slug}.mha"},
        "file": None,
        "value": None,
    }


def make_job(root: Path, sockets: list[dict], images: dict[str, tuple]) -> Path:
    for rel, size in images.items():
        write(root / rel / "scan.mha", value=len(rel), size=size)
    (root / "inputs.json").write_text(json.dumps(sockets))
    return root


HANSEG_SOCKETS = [socket("head-neck-ct", "images/head-neck-ct"), socket("head-neck-t1-mri", "images/head-neck-t1-mri")]
HANSEG_IMAGES = {"images/head-neck-ct": (8, 9, 10), "images/head-neck-t1-mri": (5, 6, 7)}


@pytest.mark.parametrize("key", ["socket", "interface"])  # current and older platform versions
def test_socket_job_writes_output_mha_and_no_results_json(tmp_path, key):
    sockets = [socket("head-neck-ct", "images/head-neck-ct", key), socket("t1-mri", "images/t1-mri", key)]
    inp = make_job(tmp_path / "in", sockets, {"images/head-neck-ct": (8, 9, 10), "images/t1-mri": (5, 6, 7)})
    predictor, out = FakePredictor(), tmp_path / "out"
    assert run(inp, out, predictor) == 0
    assert predictor.calls == [((8, 9, 10), (5, 6, 7))]  # the CT socket was read as CT, the MR as MR
    seg = sitk.ReadImage(str(out / "images/head_neck_oar/output.mha"))
    assert seg.GetPixelID() == sitk.sitkUInt8 and seg.GetSize() == (8, 9, 10)
    assert set(np.unique(sitk.GetArrayFromImage(seg))) == {0, 5}
    assert not (out / "results.json").exists()


def test_output_socket_path_is_configurable(tmp_path):
    inp = make_job(tmp_path / "in", HANSEG_SOCKETS, HANSEG_IMAGES)
    assert run(inp, tmp_path / "out", FakePredictor(), SocketConfig(output_path="images/oar-seg")) == 0
    assert (tmp_path / "out/images/oar-seg/output.mha").is_file()


def test_explicit_slugs_override_the_names(tmp_path):
    sockets = [socket("scan-a", "images/a"), socket("scan-b", "images/b")]
    inp = make_job(tmp_path, sockets, {"images/a": (5, 6, 7), "images/b": (8, 9, 10)})
    with pytest.raises(InputLayoutError, match="pass --ct-socket"):
        find_socket_images(inp, SocketConfig())
    ct, mr = find_socket_images(inp, SocketConfig(ct_slug="scan-b", mr_slug="scan-a"))
    assert mr is not None and (ct.parent.name, mr.parent.name) == ("b", "a")


def test_ct_only_job_and_other_sockets_ignored(tmp_path, caplog):
    sockets = [
        socket("head-neck-ct", "images/head-neck-ct"),
        socket("age-in-years", "age-in-years.json", kind="Integer"),
    ]
    inp = make_job(tmp_path, sockets, {"images/head-neck-ct": (8, 9, 10)})
    with caplog.at_level(logging.INFO):
        ct, mr = find_socket_images(inp, SocketConfig())
    assert ct.name == "scan.mha" and mr is None
    assert "segmented from the CT alone" in caplog.text and "age-in-years" in caplog.text


def test_two_ct_like_sockets_are_refused_not_guessed(tmp_path):
    sockets = [socket("ct-planning", "images/ct-a"), socket("ct-followup", "images/ct-b")]
    inp = make_job(tmp_path, sockets, {"images/ct-a": (5, 6, 7), "images/ct-b": (5, 6, 7)})
    with pytest.raises(InputLayoutError, match=r"which socket holds the CT.*ct-planning"):
        find_socket_images(inp, SocketConfig())


def test_missing_image_and_bad_json_are_named(tmp_path):
    inp = make_job(tmp_path, HANSEG_SOCKETS, {"images/head-neck-ct": (8, 9, 10)})
    with pytest.raises(InputLayoutError, match=r"head-neck-t1-mri.*found none"):
        find_socket_images(inp, SocketConfig())
    (inp / "inputs.json").write_text('{"not": "a list"}')
    with pytest.raises(InputLayoutError, match="list of socket values"):
        read_inputs_json(inp)
    (inp / "inputs.json").write_text(json.dumps([socket("ct", "../etc")]))
    with pytest.raises(InputLayoutError, match="unsafe relative_path"):
        read_inputs_json(inp)


def test_failed_socket_case_exits_1_and_leaves_no_output(tmp_path):
    inp = make_job(tmp_path / "in", HANSEG_SOCKETS, HANSEG_IMAGES)
    (inp / "images/head-neck-ct/scan.mha").write_bytes(b"truncated")
    out = tmp_path / "out"
    assert run(inp, out, FakePredictor()) == 1
    assert [p.name for p in (out / "images/head_neck_oar").iterdir()] == []


def test_uploaded_model_overrides_the_baked_one(tmp_path, caplog):
    baked, uploaded = tmp_path / "baked", tmp_path / "opt_ml_model"
    baked.mkdir(), uploaded.mkdir()
    with caplog.at_level(logging.INFO):
        assert resolve_model_root(None, baked, uploaded) == baked  # empty: the baked model
        (uploaded / "notes.txt").write_text("x")
        assert resolve_model_root(None, baked, uploaded) == baked  # no plans.json: warned
        assert "no plans.json" in caplog.text
        (uploaded / "model").mkdir()
        (uploaded / "model/plans.json").write_text("{}")
        assert resolve_model_root(None, baked, uploaded) == uploaded / "model"  # tar of the folder
        (uploaded / "plans.json").write_text("{}")
        assert resolve_model_root(None, baked, uploaded) == uploaded  # tar -C model .
        assert "uploaded model" in caplog.text
    assert resolve_model_root(tmp_path / "x", baked, uploaded) == tmp_path / "x"  # --model wins
