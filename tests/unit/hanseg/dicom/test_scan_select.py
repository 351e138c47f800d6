"""Scanning a DICOM folder and choosing the CT and T1 MR per study (hanseg.dicom.scan/select)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from dicom_fixtures import (
    SeriesSpec,
    mr_spec,
    save,
    slice_dataset,
    uid,
    write_rtstruct,
    write_series,
)
from hanseg.dicom.scan import Unreadable, scan_folder
from hanseg.dicom.select import (
    SelectionRules,
    Skipped,
    rules_from_dict,
    rules_from_json,
    select_studies,
)
from hanseg.errors import DicomInputError

CT = SeriesSpec(n_slices=12)
DERIVED_SECONDARY = ("DERIVED", "SECONDARY", "AXIAL")  # what plastimatch and many TPS exports write
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
OBLIQUE_34 = (1.0, 0.0, 0.0, 0.0, 0.829038, -0.559193)  # column cosine tilted 34° out of the axial plane


def reasons(skipped: tuple[Skipped, ...]) -> dict[str, str]:
    return {s.description: s.reason for s in skipped}


# --- scan ---------------------------------------------------------------------------------


def test_scan_reads_nested_uid_named_files_and_skips_hidden_and_dicomdir(tmp_path: Path) -> None:
    paths = write_series(tmp_path, SeriesSpec(n_slices=3), names=["a/b/c/1.2.3", "x", "deep/er/y.dcm"])
    (tmp_path / ".hidden").write_bytes(paths[0].read_bytes())
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "copy").write_bytes(paths[0].read_bytes())
    (tmp_path / "DICOMDIR").write_bytes(b"not parsed")
    scan = scan_folder(tmp_path)
    assert scan.unreadable == ()
    assert len(scan.studies) == 1 and len(scan.series) == 1
    series = scan.series[0]
    assert sorted(i.path for i in series.instances) == sorted(paths)
    first = next(i for i in series.instances if i.path == paths[0])
    assert first.modality == "CT" and first.patient_id == "P1"
    assert first.image_type == ("ORIGINAL", "PRIMARY", "AXIAL")
    assert first.position == (-10.0, -20.0, 30.0)
    assert first.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert first.pixel_spacing == (0.9, 0.8)
    assert (first.rows, first.columns, first.number_of_frames) == (5, 4, 1)
    assert (first.rescale_slope, first.rescale_intercept) == (1.0, -1024.0)
    assert series.label == f"series {SeriesSpec().series_uid} 'CT head 2mm' (3 files)"


def test_corrupt_and_non_dicom_files_are_reported_and_the_rest_read(tmp_path: Path, caplog) -> None:
    paths = write_series(tmp_path, CT)
    (tmp_path / "notes.txt").write_text("scanned by the night shift\n")
    truncated = tmp_path / "ct" / "truncated"
    truncated.parent.mkdir()
    truncated.write_bytes(paths[0].read_bytes()[:300])  # preamble and a torn header
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(tmp_path)
    assert {u.path for u in scan.unreadable} == {tmp_path / "notes.txt", truncated}
    assert all(isinstance(u, Unreadable) and u.reason for u in scan.unreadable)
    assert len(scan.series[0].instances) == 12
    assert "notes.txt" in caplog.text and "truncated" in caplog.text


def test_file_without_preamble_is_read_only_with_a_sop_class(tmp_path: Path) -> None:
    ds = slice_dataset(CT, 0, (0.0, 0.0, 0.0), np.full((5, 4), 1000, dtype=np.uint16))
    save(ds, tmp_path / "bare", preamble=False)
    scan = scan_folder(tmp_path)
    assert scan.unreadable == () and scan.series[0].instances[0].sop_uid == ds.SOPInstanceUID
    del ds.SOPClassUID
    save(ds, tmp_path / "bare", preamble=False)
    scan = scan_folder(tmp_path)
    assert scan.series == () and [u.path.name for u in scan.unreadable] == ["bare"]


# --- CT selection -------------------------------------------------------------------------


def test_axial_original_ct_wins_over_localizer_derived_smaller_and_non_ct(tmp_path: Path, caplog) -> None:
    write_series(tmp_path, CT)
    write_series(
        tmp_path,
        SeriesSpec(series="scout", description="Topogram", n_slices=2, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")),
    )
    write_series(
        tmp_path, SeriesSpec(series="mip", description="MIP", n_slices=20, image_type=("DERIVED", "SECONDARY", "MIP"))
    )
    write_series(
        tmp_path, SeriesSpec(series="tps", description="CT from TPS", n_slices=20, image_type=DERIVED_SECONDARY)
    )
    write_series(tmp_path, SeriesSpec(series="small", description="CT small", n_slices=11))
    write_series(tmp_path, SeriesSpec(series="few", description="CT few", n_slices=6))
    write_series(tmp_path, SeriesSpec(series="sag", description="CT sag", n_slices=20, orientation=SAGITTAL))
    write_series(tmp_path, SeriesSpec(series="obl", description="CT oblique", n_slices=20, orientation=OBLIQUE_34))
    write_series(tmp_path, SeriesSpec(series="raw", description="CT no type", n_slices=20, image_type=("AXIAL",)))
    write_rtstruct(tmp_path)
    with caplog.at_level(logging.INFO):
        selections, without = select_studies(scan_folder(tmp_path))
    assert without == ()
    (sel,) = selections
    assert sel.ct.series_uid == CT.series_uid and sel.mr is None
    assert sel.study_uid == CT.study_uid and sel.patient_id == "P1"
    assert sel.warnings == ()  # the scanner's own series was used: nothing to check
    assert reasons(sel.skipped) == {
        "Topogram": "localizer",
        "MIP": "a MIP projection (ImageType DERIVED\\SECONDARY\\MIP): the extreme value along a slab, "
        "not the CT numbers of one slice",
        "CT from TPS": "a DERIVED\\SECONDARY image (ImageType DERIVED\\SECONDARY\\AXIAL), an export or "
        f"reconstruction: the ORIGINAL\\PRIMARY CT was chosen, series {CT.series_uid} 'CT head 2mm' (12 files)",
        "CT small": f"another CT was chosen: series {CT.series_uid} 'CT head 2mm' (12 files), with "
        "more slices or a longer extent (12 vs 11 slices, 22.0 vs 20.0 mm)",
        "CT few": "fewer than 10 slices (6)",
        "CT sag": "not axial (normal 90° from the patient axis)",
        "CT oblique": "not axial (normal 34° from the patient axis)",
        "CT no type": "ImageType AXIAL does not begin with ORIGINAL or DERIVED, then PRIMARY or SECONDARY, "
        "as a CT image's must",
        "clinical contours": "RTSTRUCT, not an image",
    }
    assert "RTSTRUCT, not an image" in caplog.text and "localizer" in caplog.text


@pytest.mark.parametrize(
    ("image_type", "kind"),
    [
        (DERIVED_SECONDARY, "DERIVED\\SECONDARY"),
        (("DERIVED", "PRIMARY", "AXIAL"), "DERIVED\\PRIMARY"),
        (("ORIGINAL", "SECONDARY"), "ORIGINAL\\SECONDARY"),
    ],
)
def test_an_export_is_the_ct_when_it_is_the_only_one_with_a_warning_naming_its_image_type(
    tmp_path: Path, caplog, image_type: tuple[str, ...], kind: str
) -> None:
    spec = SeriesSpec(description="exported CT", n_slices=12, image_type=image_type)
    write_series(tmp_path, spec)
    write_series(
        tmp_path,
        SeriesSpec(
            series="scout", description="Topogram", n_slices=12, image_type=("DERIVED", "SECONDARY", "LOCALIZER")
        ),
    )
    with caplog.at_level(logging.WARNING):
        (sel,), without = select_studies(scan_folder(tmp_path))
    assert without == () and sel.ct.series_uid == spec.series_uid
    shown = "\\".join(image_type)
    assert sel.warnings == (
        f"the CT series {spec.series_uid} 'exported CT' is {kind} (ImageType {shown}): an export or "
        "reconstruction, not the scanner's original; check it is the planning CT",
    )
    assert reasons(sel.skipped) == {"Topogram": "localizer"}  # a scout is never the CT, whatever else it says
    assert sel.warnings[0] in caplog.text


def test_among_exports_the_usual_ranking_decides(tmp_path: Path) -> None:
    write_series(tmp_path, SeriesSpec(series="a", description="export a", n_slices=12, image_type=DERIVED_SECONDARY))
    write_series(tmp_path, SeriesSpec(series="b", description="export b", n_slices=14, image_type=DERIVED_SECONDARY))
    (sel,), _ = select_studies(scan_folder(tmp_path))
    assert sel.ct.series_uid == uid("study-a", "b")
    assert len(sel.warnings) == 1 and sel.warnings[0].startswith(f"the CT series {uid('study-a', 'b')} 'export b' is ")
    assert reasons(sel.skipped)["export a"].startswith(f"another CT was chosen: series {uid('study-a', 'b')} ")


def test_a_series_with_original_and_derived_slices_counts_as_derived(tmp_path: Path) -> None:
    mixed = SeriesSpec(n_slices=12, overrides={4: {"ImageType": ["DERIVED", "SECONDARY", "AXIAL"]}})
    write_series(tmp_path, mixed)
    write_series(tmp_path, SeriesSpec(series="orig", description="CT original", n_slices=10))
    (sel,), _ = select_studies(scan_folder(tmp_path))
    assert sel.ct.series_uid == uid("study-a", "orig") and sel.warnings == ()
    assert reasons(sel.skipped)["CT head 2mm"].startswith(
        "a DERIVED/ORIGINAL\\PRIMARY/SECONDARY image (ImageType DERIVED\\SECONDARY\\AXIAL / ORIGINAL\\PRIMARY\\AXIAL)"
    )


def test_strict_rules_refuse_exports(tmp_path: Path) -> None:
    write_series(tmp_path, SeriesSpec(description="exported CT", n_slices=12, image_type=DERIVED_SECONDARY))
    strict = rules_from_dict({"ct_accepted_image_types": ["ORIGINAL", "PRIMARY"]})
    assert strict.ct_accepted_image_types == ("ORIGINAL", "PRIMARY")
    with pytest.raises(DicomInputError) as err:
        select_studies(scan_folder(tmp_path), strict)
    assert (
        f"series {CT.series_uid} 'exported CT' (CT): a DERIVED\\SECONDARY image (ImageType DERIVED\\SECONDARY\\AXIAL); "
        "the selection rules accept only ORIGINAL, PRIMARY (ct_accepted_image_types)"
    ) in str(err.value)
    # DERIVED\PRIMARY (a reconstruction from the raw data, say) admitted, a secondary copy not
    write_series(
        tmp_path, SeriesSpec(series="recon", description="recon", n_slices=12, image_type=("DERIVED", "PRIMARY"))
    )
    (sel,), _ = select_studies(
        scan_folder(tmp_path), rules_from_dict({"ct_accepted_image_types": ["original", "DERIVED", "PRIMARY"]})
    )
    assert sel.ct.series_uid == uid("study-a", "recon") and len(sel.warnings) == 1
    assert reasons(sel.skipped)["exported CT"].endswith(
        "accept only ORIGINAL, DERIVED, PRIMARY (ct_accepted_image_types)"
    )


def test_same_count_longer_extent_wins(tmp_path: Path) -> None:
    write_series(tmp_path, CT)
    write_series(tmp_path, SeriesSpec(series="wide", description="CT 3mm", n_slices=12, slice_spacing=3.0))
    (sel,), _ = select_studies(scan_folder(tmp_path))
    assert sel.ct.series_uid == uid("study-a", "wide")
    assert reasons(sel.skipped) == {
        "CT head 2mm": f"another CT was chosen: series {uid('study-a', 'wide')} 'CT 3mm' (12 files), with "
        "more slices or a longer extent (12 vs 12 slices, 33.0 vs 22.0 mm)"
    }


def test_two_equally_good_cts_are_an_error_naming_both(tmp_path: Path) -> None:
    write_series(tmp_path, SeriesSpec(series="soft", description="CT soft kernel", n_slices=12))
    write_series(tmp_path, SeriesSpec(series="bone", description="CT bone kernel", n_slices=12))
    with pytest.raises(DicomInputError) as err:
        select_studies(scan_folder(tmp_path))
    message = str(err.value)
    assert message.startswith(
        f"two CT series in study {uid('study-a')} are equally good (same number of slices, same extent): "
    )
    assert f"series {uid('study-a', 'soft')} 'CT soft kernel' (12 files)" in message
    assert f"series {uid('study-a', 'bone')} 'CT bone kernel' (12 files)" in message
    assert message.endswith("remove one of them from the input (for example keep the soft-tissue reconstruction)")


def test_no_ct_raises_with_an_inventory(tmp_path: Path) -> None:
    write_series(tmp_path, mr_spec(description="t2_tse_tra"))
    write_series(
        tmp_path,
        SeriesSpec(series="scout", description="Topogram", n_slices=2, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")),
    )
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(DicomInputError) as err:
        select_studies(scan_folder(tmp_path))
    message = str(err.value)
    assert message.startswith(f"no CT series found in {tmp_path}: found 1 CT, 1 MR, 1 unreadable files (")
    assert f"series {uid('study-a', 'scout')} 'Topogram' (CT): localizer" in message
    assert "'t2_tse_tra' (MR): a T2/FLAIR/diffusion or localizer series ('t2_tse_tra' contains 't2')" in message
    assert "at least 10 slices" in message


def test_empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(
        DicomInputError,
        match=r"no CT series found in .*: found no DICOM series "
        r"\(0 unreadable files\)",
    ):
        select_studies(scan_folder(tmp_path))


def test_two_studies_give_two_selections_and_a_study_without_ct_is_reported(tmp_path: Path) -> None:
    write_series(tmp_path, CT)
    write_series(tmp_path, SeriesSpec(study="study-b", n_slices=14, patient_id="P2"))
    write_series(tmp_path, mr_spec(study="study-c", patient_id="P3"))
    selections, without = select_studies(scan_folder(tmp_path))
    assert len(selections) == 2
    assert {(s.study_uid, s.patient_id, len(s.ct.instances)) for s in selections} == {
        (uid("study-a"), "P1", 12),
        (uid("study-b"), "P2", 14),
    }
    (other,) = without
    assert other.study_uid == uid("study-c") and other.patient_id == "P3"
    assert [(s.modality, s.reason) for s in other.skipped] == [("MR", "MR without a CT in its study")]


# --- MR selection -------------------------------------------------------------------------


def test_t1_is_chosen_over_t2_flair_and_3d_is_preferred(tmp_path: Path) -> None:
    write_series(tmp_path, CT)
    write_series(tmp_path, mr_spec(series="t2", description="T2 TSE ax", n_slices=30))
    write_series(tmp_path, mr_spec(series="flair", description="t1_flair_tra", n_slices=30))
    write_series(tmp_path, mr_spec(series="t1se", description="T1 SE ax", n_slices=25))
    write_series(tmp_path, mr_spec(series="t13d", description="t1_vibe", n_slices=12, mr={"MRAcquisitionType": "3D"}))
    write_series(tmp_path, mr_spec(series="pd", description="PD cor", n_slices=30))
    write_series(tmp_path, mr_spec(series="mpr", description="t1 MPR", n_slices=30, image_type=DERIVED_SECONDARY))
    write_series(
        tmp_path, mr_spec(series="loc", description="loc", n_slices=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    )
    (sel,), _ = select_studies(scan_folder(tmp_path))
    assert sel.mr is not None and sel.mr.description == "t1_vibe"
    assert reasons(sel.skipped) == {
        "T2 TSE ax": "a T2/FLAIR/diffusion or localizer series ('T2 TSE ax' contains 'T2')",
        "t1_flair_tra": "a T2/FLAIR/diffusion or localizer series ('t1_flair_tra' contains 'flair')",
        "T1 SE ax": f"another MR was chosen: series {uid('study-a', 't13d')} 't1_vibe' (12 files)",
        "PD cor": "not recognised as T1 ('PD cor' does not match the T1 pattern)",
        "t1 MPR": "derived image",  # an MR export is not accepted: only the CT rule changed
        "loc": "localizer",
    }


def test_t1_by_sequence_tags_when_descriptions_are_empty(tmp_path: Path) -> None:
    write_series(tmp_path, CT)
    write_series(
        tmp_path,
        mr_spec(
            series="long",
            description="",
            n_slices=30,
            mr={"EchoTime": 100, "RepetitionTime": 4000, "ScanningSequence": "SE"},
        ),
    )
    write_series(
        tmp_path,
        mr_spec(
            series="mprage",
            description="",
            n_slices=12,
            mr={"EchoTime": 3, "RepetitionTime": 2000, "MRAcquisitionType": "3D", "ScanningSequence": ["GR", "IR"]},
        ),
    )
    (sel,), _ = select_studies(scan_folder(tmp_path))
    assert sel.mr is not None and sel.mr.series_uid == uid("study-a", "mprage")
    assert reasons(sel.skipped) == {
        "": "no description, and its sequence tags do not look T1 (TE 100.0 ms, TR 4000.0 ms, SE)"
    }


def test_no_t1_is_fine(tmp_path: Path) -> None:
    write_series(tmp_path, CT)
    write_series(tmp_path, mr_spec(series="t2", description="t2_tse", n_slices=30))
    (sel,), _ = select_studies(scan_folder(tmp_path))
    assert sel.mr is None and [s.modality for s in sel.skipped] == ["MR"]


# --- rules --------------------------------------------------------------------------------


def test_rules_from_json_overrides_and_rejects_unknown_or_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"min_ct_slices": 5, "axial_tolerance_deg": 40, "mr_t1_pattern": "vibe"}))
    rules = rules_from_json(path)
    assert rules == SelectionRules(min_ct_slices=5, axial_tolerance_deg=40.0, mr_t1_pattern="vibe")
    with pytest.raises(DicomInputError, match=r"unknown setting\(s\) min_slices; known settings: min_ct_slices"):
        rules_from_dict({"min_slices": 3})
    with pytest.raises(DicomInputError, match="min_ct_slices must be a int, got '5'"):
        rules_from_dict({"min_ct_slices": "5"})
    with pytest.raises(DicomInputError, match="mr_t1_pattern is not a valid regular expression"):
        rules_from_dict({"mr_t1_pattern": "t1("})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            True,
            r" must be a list of ImageType words \(ORIGINAL, DERIVED, PRIMARY, SECONDARY\), got True$",
        ),
        ("ORIGINAL", r" must be a list .*got 'ORIGINAL'$"),
        (["ORIGINAL", "PRIMARY", "LOCALIZER"], " cannot hold LOCALIZER: a scout view is never a planning CT$"),
        (
            ["ORIGINAL", "PRIMARY", "AXIAL"],
            r": unknown ImageType word\(s\) AXIAL; known words: ORIGINAL, DERIVED, PRIMARY, SECONDARY$",
        ),
        (["ORIGINAL"], r" must name PRIMARY or SECONDARY \(ImageType value 2\): without one no CT could be accepted$"),
        (["PRIMARY", "SECONDARY"], r" must name ORIGINAL or DERIVED \(ImageType value 1\): "),
    ],
)
def test_accepted_image_types_are_checked(tmp_path: Path, value: object, message: str) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"ct_accepted_image_types": value}))
    with pytest.raises(
        DicomInputError, match=f"^selection rules {re.escape(str(path))}: ct_accepted_image_types{message}"
    ):
        rules_from_json(path)


def test_rules_change_the_choice(tmp_path: Path) -> None:
    write_series(tmp_path, SeriesSpec(n_slices=6))
    write_series(tmp_path, SeriesSpec(series="obl", description="CT oblique", n_slices=5, orientation=OBLIQUE_34))
    with pytest.raises(DicomInputError, match=r"'CT head 2mm' \(CT\): fewer than 10 slices \(6\)"):
        select_studies(scan_folder(tmp_path))
    (sel,), _ = select_studies(scan_folder(tmp_path), rules_from_dict({"min_ct_slices": 5}))
    assert len(sel.ct.instances) == 6
    assert reasons(sel.skipped) == {"CT oblique": "not axial (normal 34° from the patient axis)"}
    (sel,), _ = select_studies(scan_folder(tmp_path), rules_from_dict({"min_ct_slices": 5, "axial_tolerance_deg": 40}))
    assert len(sel.ct.instances) == 6
    assert reasons(sel.skipped)["CT oblique"].startswith("another CT was chosen: ")


def test_ct_with_broken_orientation_is_skipped(tmp_path: Path) -> None:
    write_series(tmp_path, CT)
    write_series(
        tmp_path,
        SeriesSpec(
            series="bad",
            description="CT broken",
            n_slices=20,
            overrides={3: {"ImageOrientationPatient": ["1", "0", "0", "1", "0", "0"]}},
        ),
    )
    (sel,), _ = select_studies(scan_folder(tmp_path))
    assert sel.ct.series_uid == CT.series_uid
    assert reasons(sel.skipped) == {"CT broken": "no valid slice position or orientation in its headers"}
