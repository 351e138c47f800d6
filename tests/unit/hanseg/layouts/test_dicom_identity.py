"""Each result once: the RTSTRUCT and SEG UIDs follow from what made them (the CT series, the
instances used, the model, the name map), so the same input gives the same objects and any
change gives new ones; a result made to replace an earlier one says so and still passes
dciodvfy."""

import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from dicom_fixtures import SeriesSpec, mr_spec, write_series
from hanseg.dicom.identity import Predecessor, output_identity
from hanseg.dicom.names import default_styles
from hanseg.layouts.dicom import DicomConfig, run_dicom
from helpers import FakePredictor, need_tools

CT = SeriesSpec(n_slices=12)
MODEL_1 = DicomConfig(model_fingerprint="m1")


def uids(out: Path) -> dict[str, tuple[str, str]]:
    """(series, instance) UID of the rtstruct and the seg written under ``out``."""
    found = {}
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[path.stem] = (str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    return found


def segment(folder: Path, out: Path, config: DicomConfig = MODEL_1) -> dict:
    assert run_dicom(folder, out, FakePredictor(), config) == 0
    return uids(out)


@pytest.fixture
def study(tmp_path) -> Path:
    write_series(tmp_path / "in", CT)
    return tmp_path / "in"


def test_the_same_input_gives_the_same_uids_and_four_different_ones(study, tmp_path):
    first = segment(study, tmp_path / "a")
    assert first == segment(study, tmp_path / "b")
    assert len({u for pair in first.values() for u in pair}) == 4
    assert all(u.startswith("1.2.826.0.1.3680043.8.498.") for pair in first.values() for u in pair)


def test_another_model_name_map_slice_set_or_mr_gives_new_uids(study, tmp_path):
    base = set(segment(study, tmp_path / "base").values())
    other_model = segment(study, tmp_path / "model", DicomConfig(model_fingerprint="m2"))
    assert set(other_model.values()).isdisjoint(base)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"Brainstem": {"name": "BrainStem"}}))
    renamed = segment(study, tmp_path / "names", DicomConfig(names=names, model_fingerprint="m1"))
    assert set(renamed.values()).isdisjoint(base)
    fewer = write_series(tmp_path / "fewer", CT)
    fewer[-1].unlink()  # the last slice: still a whole stack, one slice shorter
    assert set(segment(tmp_path / "fewer", tmp_path / "fewer-out").values()).isdisjoint(base)
    write_series(study, mr_spec())
    assert set(segment(study, tmp_path / "mr").values()).isdisjoint(base)


def test_the_uids_do_not_depend_on_the_order_of_the_instances():
    styles = default_styles()
    a = output_identity("1.2.3", ["1.2.3.1", "1.2.3.2"], [], "m", styles)
    b = output_identity("1.2.3", ["1.2.3.2", "1.2.3.1"], [], "m", styles)
    assert a == b
    assert a != output_identity("1.2.3", ["1.2.3.1", "1.2.3.2"], ["1.2.4.1"], "m", styles)


def test_a_replacing_result_names_the_one_it_replaces_and_passes_dciodvfy(study, tmp_path):
    earlier = Predecessor("1.2.826.0.1.1", "1.2.826.0.1.2", "1.2.826.0.1.3", "1.2.826.0.1.4")
    config = DicomConfig(model_fingerprint="m1", replaces={CT.series_uid: earlier})
    assert run_dicom(study, tmp_path / "out", FakePredictor(), config) == 0
    rtstruct = pydicom.dcmread(next((tmp_path / "out").rglob("rtstruct.dcm")))
    seg = pydicom.dcmread(next((tmp_path / "out").rglob("seg.dcm")))
    assert rtstruct.SeriesDescription.startswith("OARs, replaces earlier result")
    assert seg.SeriesDescription == rtstruct.SeriesDescription
    assert rtstruct.PredecessorStructureSetSequence[0].ReferencedSOPInstanceUID == earlier.rtstruct_sop_uid
    assert earlier.rtstruct_sop_uid in rtstruct.StructureSetDescription
    (entry,) = json.loads((tmp_path / "out" / "results.json").read_text())["studies"]
    replaced = {o["type"]: o["replaces_sop_instance_uid"] for o in entry["outputs"]}
    assert replaced == {"rtstruct": earlier.rtstruct_sop_uid, "seg": earlier.seg_sop_uid}
    assert {o["ct_series_uid"] for o in entry["outputs"]} == {CT.series_uid}
    for path in (tmp_path / "out").rglob("*.dcm"):
        done = subprocess.run([*need_tools("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (path.name, errors)
