"""The DICOM layout end to end on tiny synthetic series, with a fake predictor (labels every
voxel above 0 HU as Brainstem): selection, outputs, results.json and each bad input."""

import json
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from dicom_fixtures import SeriesSpec, mr_spec, save, with_changes, write_series
from hanseg.errors import DicomInputError, NameMapError
from hanseg.folders import has_dicom
from hanseg.layouts import run
from hanseg.layouts.dicom import DicomConfig, run_dicom
from helpers import FakePredictor

CT = SeriesSpec(n_slices=12)


def outputs(out: Path) -> list[Path]:
    return sorted(p.relative_to(out) for p in out.rglob("*.dcm"))


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_detection_needs_a_dicom_file_and_ignores_other_folders(tmp_path):
    assert not has_dicom(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    assert not has_dicom(tmp_path)
    write_series(tmp_path, CT)
    assert has_dicom(tmp_path)


def test_one_study_gives_one_rtstruct_and_one_seg_of_the_ct_series(tmp_path):
    write_series(tmp_path / "in", CT)
    write_series(tmp_path / "in", mr_spec())
    predictor = FakePredictor()
    qa = tmp_path / "qa" / "new"  # made when missing
    assert run(tmp_path / "in", tmp_path / "out", predictor, dicom=DicomConfig(qa_dir=qa)) == 0
    # the QA picture of the result: <qa>/<study UID>/<CT series UID>.png, nothing else there
    assert sorted(p.relative_to(qa) for p in qa.rglob("*") if p.is_file()) == [
        Path(CT.study_uid) / f"{CT.series_uid}.png"
    ]
    with Image.open(qa / CT.study_uid / f"{CT.series_uid}.png") as picture:
        assert picture.format == "PNG" and picture.width >= 300 and picture.height >= 150
    assert predictor.calls == [((4, 5, 12), (4, 5, 12))]  # x,y,z: the MR was given too
    rel = Path(CT.study_uid) / CT.series_uid
    assert outputs(tmp_path / "out") == [rel / "rtstruct.dcm", rel / "seg.dcm"]
    (entry,) = results(tmp_path / "out")["studies"]
    assert [i["role"] for i in entry["inputs"]] == ["ct", "mr"]
    assert entry["inputs"][0]["series_uid"] == CT.series_uid
    assert "Brainstem" not in entry["empty_structures"] and "Parotid_L" in entry["empty_structures"]
    rs = pydicom.dcmread(tmp_path / "out" / rel / "rtstruct.dcm")
    assert [r.ROIName for r in rs.StructureSetROISequence] == ["Brainstem"]
    assert rs.StudyInstanceUID == CT.study_uid


def test_two_studies_give_one_result_each(tmp_path):
    write_series(tmp_path / "in", CT)
    write_series(tmp_path / "in", with_changes(CT, study="study-b", patient_id="P2"))
    assert run_dicom(tmp_path / "in", tmp_path / "out", FakePredictor()) == 0
    assert len(results(tmp_path / "out")["studies"]) == 2
    assert len(outputs(tmp_path / "out")) == 4


def test_a_folder_without_a_ct_is_refused_naming_what_it_holds(tmp_path):
    write_series(tmp_path / "in", mr_spec())
    with pytest.raises(DicomInputError, match="no CT series found"):
        run_dicom(tmp_path / "in", tmp_path / "out", FakePredictor())
    assert outputs(tmp_path / "out") == []


def test_two_equal_ct_candidates_fail_their_study_naming_both(tmp_path):
    write_series(tmp_path / "in", CT)
    twin = with_changes(CT, series="ct-sharp", description="CT head bone kernel")
    write_series(tmp_path / "in", twin)
    write_series(tmp_path / "in", with_changes(CT, study="study-b", patient_id="P2"))
    assert run_dicom(tmp_path / "in", tmp_path / "out", FakePredictor()) == 1  # study b still done
    tie, done = results(tmp_path / "out")["studies"]
    message = tie["error_messages"][0]
    assert CT.series_uid in message and twin.series_uid in message and "equally good" in message
    assert message.count(CT.study_uid) == 1  # the study is named once, not prefixed again
    assert len(done["outputs"]) == 2 and not list((tmp_path / "out" / CT.study_uid).glob("*"))


def test_a_qa_picture_that_cannot_be_drawn_changes_nothing_else(tmp_path, monkeypatch, caplog):
    import hanseg.qa_picture

    def broken(*args, **kwargs):
        raise RuntimeError("no pictures today")

    monkeypatch.setattr(hanseg.qa_picture, "write_qa_png", broken)
    write_series(tmp_path / "in", CT)
    assert run_dicom(tmp_path / "in", tmp_path / "out", FakePredictor(), DicomConfig(qa_dir=tmp_path / "qa")) == 0
    assert len(outputs(tmp_path / "out")) == 2
    assert results(tmp_path / "out")["studies"][0]["error_messages"] == []
    assert f"study {CT.study_uid}: no QA picture: no pictures today" in caplog.text


def test_a_missing_slice_fails_the_study_and_writes_nothing(tmp_path):
    paths = write_series(tmp_path / "in", CT)
    paths[5].unlink()
    assert run_dicom(tmp_path / "in", tmp_path / "out", FakePredictor()) == 1
    (entry,) = results(tmp_path / "out")["studies"]
    assert "missing" in entry["error_messages"][0]
    assert outputs(tmp_path / "out") == []


def test_a_corrupt_file_among_good_ones_is_reported_and_the_rest_is_segmented(tmp_path):
    write_series(tmp_path / "in", CT)
    (tmp_path / "in" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    assert run_dicom(tmp_path / "in", tmp_path / "out", FakePredictor()) == 0
    unreadable = results(tmp_path / "out")["unreadable_files"]
    assert [u["path"] for u in unreadable] == ["broken.dcm"]
    assert len(outputs(tmp_path / "out")) == 2


def test_an_mr_that_cannot_be_built_is_reported_and_the_ct_alone_is_segmented(tmp_path):
    write_series(tmp_path / "in", CT)
    paths = write_series(tmp_path / "in", mr_spec())
    paths[4].unlink()  # a gap in the MR
    predictor = FakePredictor()
    assert run_dicom(tmp_path / "in", tmp_path / "out", predictor) == 0
    assert predictor.calls == [((4, 5, 12), None)]
    (entry,) = results(tmp_path / "out")["studies"]
    assert any("the MR is not used" in m for m in entry["warnings"])


def test_the_name_map_renames_and_drops_structures(tmp_path):
    write_series(tmp_path / "in", CT)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"Brainstem": {"name": "BrainStem_auto", "colour": [1, 2, 3]}}))
    assert run_dicom(tmp_path / "in", tmp_path / "out", FakePredictor(), DicomConfig(names=names)) == 0
    rs = pydicom.dcmread(next((tmp_path / "out").rglob("rtstruct.dcm")))
    assert [r.ROIName for r in rs.StructureSetROISequence] == ["BrainStem_auto"]
    assert [int(v) for v in rs.ROIContourSequence[0].ROIDisplayColor] == [1, 2, 3]
    names.write_text(json.dumps({"Brainstem": None}))
    out = tmp_path / "out2"
    assert run_dicom(tmp_path / "in", out, FakePredictor(), DicomConfig(names=names)) == 1
    assert outputs(out) == []  # nothing left to write: the study fails and says so


def test_a_bad_name_map_stops_before_any_case(tmp_path):
    write_series(tmp_path / "in", CT)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"Brainstorm": {"name": "x"}}))
    predictor = FakePredictor()
    with pytest.raises(NameMapError):
        run_dicom(tmp_path / "in", tmp_path / "out", predictor, DicomConfig(names=names))
    assert predictor.calls == []


def test_a_non_dicom_file_without_preamble_is_not_taken_for_dicom(tmp_path):
    ds = pydicom.Dataset()
    ds.PatientID = "x"
    save(ds, tmp_path / "bare", preamble=False)
    assert not has_dicom(tmp_path)


def test_a_t1_in_its_own_study_of_the_same_patient_is_used_and_that_study_is_no_failure(tmp_path):
    write_series(tmp_path / "in", CT)
    write_series(tmp_path / "in", mr_spec(study="study-mr", frame_of_reference="for-mr"))
    predictor = FakePredictor()
    assert run_dicom(tmp_path / "in", tmp_path / "out", predictor) == 0
    assert predictor.calls == [((4, 5, 12), (4, 5, 12))]
    report = results(tmp_path / "out")
    (entry,) = report["studies"]
    assert [i["role"] for i in entry["inputs"]] == ["ct", "mr"]
    (other,) = report["studies_without_ct"]
    assert other["study_uid"] == mr_spec(study="study-mr").study_uid and CT.study_uid in other["reason"]


def test_an_mr_of_another_patient_is_not_used(tmp_path):
    write_series(tmp_path / "in", CT)
    write_series(tmp_path / "in", mr_spec(study="study-mr", patient_id="P9"))
    predictor = FakePredictor()
    assert run_dicom(tmp_path / "in", tmp_path / "out", predictor) == 0
    assert predictor.calls == [((4, 5, 12), None)]
    assert "not segmented" in results(tmp_path / "out")["studies_without_ct"][0]["reason"]


def test_the_same_patient_rule_can_be_switched_off(tmp_path):
    write_series(tmp_path / "in", CT)
    write_series(tmp_path / "in", mr_spec(study="study-mr"))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"mr_from_other_studies": False}))
    predictor = FakePredictor()
    assert run_dicom(tmp_path / "in", tmp_path / "out", predictor, DicomConfig(rules=rules)) == 0
    assert predictor.calls == [((4, 5, 12), None)]
