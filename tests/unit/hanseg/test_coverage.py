"""The coverage check: a CT cut short, a CT whose top slice already holds the head, and the
structures at its edge are reported with numbers and names; a whole head is not. Tiny CTs for
the logic, the shipped case (test/) for the bar."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from hanseg.coverage import Reach, coverage_warnings, edge_warnings, measure_reach, reach_warnings
from hanseg.errors import PlansError
from hanseg.geometry import depth_below_top_mm
from hanseg.labels import LABEL_IDS
from hanseg.plans import load_plans, plans_from_json
from helpers import ROOT, tiny_plans

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: slices stored from the top of the head down (array index 0 is the most superior)
Z_DOWN = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
SHAPE_ZYX = (40, 32, 32)
SPACING_XYZ = (2.0, 2.0, 2.5)
CUT_SHORT = (
    "the CT covers 82 mm below the top of the head; in the model's training cases the organs at risk "
    "reach 150 to 200 mm below it: the CT is cut short, organs at risk lower than 82 mm are missing "
    "and those crossing its bottom slice are cut"
)
BOTTOM = "cut at the edge of the CT: Esophagus_S, SpinalCord touch the bottom slice and may continue beyond the scan"
TOP_CUT = (
    "the CT's top slice already holds the patient: the top of the head is cut off, organs at risk "
    "of the upper head may be missing or cut, and how far the CT reaches below the vertex is unknown"
)


def head_ct(top: int = 34, direction=IDENTITY, couch: bool = False, offset: int = 0) -> sitk.Image:
    """A soft-tissue block in air from the bottom slice up to slice ``top`` (exclusive, counted
    from the inferior end), 2.5 mm slices; ``couch``: a thin slab under it through every slice,
    as a head rest runs past the vertex; ``offset``: added to every value (raw scanner values)."""
    arr = np.full(SHAPE_ZYX, -1000, np.int16)
    arr[:top, 6:24, 6:26] = 40
    if couch:
        arr[:, 28:30, 2:30] = 200
    if direction == Z_DOWN:
        arr = arr[::-1].copy()
    ct = sitk.GetImageFromArray(arr + np.int16(offset))
    ct.SetSpacing(SPACING_XYZ)
    ct.SetDirection(direction)
    return ct


def oar_labels(direction=IDENTITY) -> np.ndarray:
    """Parotid_L in the top slice; SpinalCord and Esophagus_S in the bottom one; Brainstem inside."""
    labels = np.zeros(SHAPE_ZYX, np.uint8)
    labels[-1, 10:12, 20:22] = LABEL_IDS["Parotid_L"]
    labels[0, 14:16, 15:17] = LABEL_IDS["SpinalCord"]
    labels[0, 10:12, 15:17] = LABEL_IDS["Esophagus_S"]
    labels[20, 14:16, 15:17] = LABEL_IDS["Brainstem"]
    return labels[::-1].copy() if direction == Z_DOWN else labels


@pytest.mark.parametrize("direction", [IDENTITY, Z_DOWN], ids=["z-up", "z-down"])
def test_the_reach_is_measured_as_training_measured_the_oar_depths(direction):
    ct = head_ct(direction=direction)
    reach = measure_reach(ct, -500.0)
    # body top at slice 33 of 0..39 (z-up): 33 slices of 2.5 mm above the bottom slice
    assert reach == Reach(0, 1 if direction == IDENTITY else -1, False, True, 82.5)
    bottom = np.zeros(SHAPE_ZYX, bool)
    bottom[0 if direction == IDENTITY else -1] = True
    assert depth_below_top_mm(ct, bottom, -500.0) == reach.covered_mm


@pytest.mark.parametrize("direction", [IDENTITY, Z_DOWN], ids=["z-up", "z-down"])
def test_a_body_in_the_top_slice_is_a_cut_head_and_a_head_rest_is_not(direction):
    top_cut = measure_reach(head_ct(top=40, direction=direction), -500.0)
    assert top_cut is not None and top_cut.body_at_top and top_cut.body_at_bottom
    whole = measure_reach(head_ct(direction=direction, couch=True), -500.0)
    assert whole is not None and not whole.body_at_top and whole.covered_mm == 82.5


def test_raw_scanner_values_are_read_as_hounsfield_units():
    """HU + 1024 (nothing below 0): without the repair every voxel would be body, the top cut."""
    assert measure_reach(head_ct(offset=1024), -500.0) == measure_reach(head_ct(), -500.0)


def test_no_body_or_no_axial_axis_means_no_reach():
    assert measure_reach(head_ct(top=0), -500.0) is None
    oblique = head_ct()
    c, s = np.cos(np.radians(40)), np.sin(np.radians(40))
    oblique.SetDirection((1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c))
    assert measure_reach(oblique, -500.0) is None


def test_a_ct_short_of_the_training_oar_ends_is_reported_with_its_numbers():
    reach = Reach(0, 1, False, True, 82.5)
    assert reach_warnings(reach, (150.0, 200.0)) == [CUT_SHORT]
    assert reach_warnings(replace(reach, covered_mm=150.0), (150.0, 200.0)) == []
    assert reach_warnings(reach, None) == []  # a plan without the field: no statement
    assert reach_warnings(replace(reach, body_at_top=True), (150.0, 200.0)) == [TOP_CUT]


@pytest.mark.parametrize("direction", [IDENTITY, Z_DOWN], ids=["z-up", "z-down"])
def test_structures_at_the_top_and_bottom_slices_are_named_where_the_patient_is_cut(direction):
    cut = measure_reach(head_ct(top=40, direction=direction), -500.0)
    assert edge_warnings(oar_labels(direction), cut) == [
        "cut at the edge of the CT: Parotid_L touches the top slice and may continue beyond the scan",
        BOTTOM,
    ]
    # above a whole head the top slice is air: a label there is a network error, not a cut organ
    whole = measure_reach(head_ct(direction=direction), -500.0)
    assert edge_warnings(oar_labels(direction), whole) == [BOTTOM]


def test_without_a_superior_axis_the_edges_are_the_first_and_last_slices():
    assert edge_warnings(oar_labels(), None) == [
        "cut at the edge of the CT: Esophagus_S, SpinalCord touch the first slice and may continue beyond the scan",
        "cut at the edge of the CT: Parotid_L touches the last slice and may continue beyond the scan",
    ]
    inside = np.zeros(SHAPE_ZYX, np.uint8)
    inside[1:-1] = LABEL_IDS["Brainstem"]
    assert edge_warnings(inside, None) == []


def test_coverage_warnings_of_a_case_and_of_a_plan_without_oar_ends():
    plans = replace(tiny_plans(), oar_end_depth_mm=(150.0, 200.0))
    found = coverage_warnings(head_ct(), oar_labels(), plans)
    assert found == (CUT_SHORT, BOTTOM)
    assert coverage_warnings(head_ct(), oar_labels(), tiny_plans()) == found[1:]
    with pytest.raises(ValueError, match="label map shape"):
        coverage_warnings(head_ct(), oar_labels()[1:], plans)


def test_the_plan_field_is_optional_round_trips_and_is_checked():
    old = tiny_plans()
    assert old.oar_end_depth_mm is None  # plans written before the field still load
    new = replace(old, oar_end_depth_mm=(277.5, 337.5))
    assert plans_from_json(new.to_json()) == new
    for bad in ([337.5, 277.5], [0, 10], [1.0, 2.0, 3.0]):
        with pytest.raises(PlansError, match="oar_end_depth_mm"):
            plans_from_json({**old.to_json(), "oar_end_depth_mm": bad})


def test_training_plans_the_field_from_the_fingerprints_oar_depths():
    from training.plan import OAR_DEPTH_MARGIN_MM, make_plans, oar_end_depth

    assert oar_end_depth({"oar_depths_mm": [300.0, 277.5, 337.5]}) == (277.5, 337.5)
    assert oar_end_depth({"oar_depths_mm": [300.0, None]}) is None
    assert oar_end_depth({}) is None
    fp = {
        "median_spacing_xyz": [2.0, 2.0, 2.5],
        "hu": {"p0_5": -900.0, "p99_5": 1500.0, "mean": 50.0, "std": 300.0},
        "oar_depths_mm": [290.0, 310.0],
    }
    plans = make_plans(fp, "tiny", None, None, folds=[0], network="resunet")
    assert plans.oar_end_depth_mm == (290.0, 310.0)
    assert plans.oar_depth_mm == 310.0 + OAR_DEPTH_MARGIN_MM
    shipped = load_plans(ROOT / "model" / "plans.json")
    assert shipped.oar_end_depth_mm == (277.5, 337.5)
    assert shipped.oar_depth_mm == shipped.oar_end_depth_mm[1] + OAR_DEPTH_MARGIN_MM  # one fingerprint made both


def test_the_segmenter_reports_a_ct_whose_head_is_cut(tiny_model):
    from hanseg.inference import Segmenter

    prediction = Segmenter(tiny_model, device="cpu", tune=False).predict(head_ct(top=40), None)
    assert TOP_CUT in prediction.warnings


@pytest.fixture(scope="module")
def shipped_case() -> tuple[sitk.Image, np.ndarray]:
    ct = sitk.ReadImage(str(ROOT / "test/images/ct/case_01_CT.mha"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(ROOT / "test/ground_truth/case_01_seg.mha")))
    return ct, labels


def test_the_bar_on_the_shipped_case_whole_upper_half_lower_half(shipped_case):
    """The shipped phantom (never trained on) with its ground truth as the label map and the
    shipped plan: the whole head says nothing; cut to its upper half, the CT is short of where
    the OARs end and the structures crossing the cut are named; cut to its lower half, the top of
    the head is missing."""
    ct, labels = shipped_case
    plans = load_plans(ROOT / "model" / "plans.json")
    n = ct.GetSize()[2]  # slices run inferior to superior
    assert coverage_warnings(ct, labels, plans) == ()
    upper = coverage_warnings(ct[:, :, n // 2 :], np.ascontiguousarray(labels[n // 2 :]), plans)
    assert upper[0] == (
        "the CT covers 162 mm below the top of the head; in the model's training cases the organs at risk "
        "reach 278 to 338 mm below it: the CT is cut short, organs at risk lower than 162 mm are missing "
        "and those crossing its bottom slice are cut"
    )
    assert len(upper) == 2 and upper[1].startswith("cut at the edge of the CT: A_Carotid_L, ")
    assert upper[1].endswith("SpinalCord touch the bottom slice and may continue beyond the scan")
    lower = coverage_warnings(ct[:, :, : n // 2], np.ascontiguousarray(labels[: n // 2]), plans)
    assert lower[0] == TOP_CUT
    assert len(lower) == 2 and lower[1].endswith("SpinalCord touch the top slice and may continue beyond the scan")


def test_the_body_mask_from_preprocessing_gives_the_same_reach():
    """The coverage check reuses preprocessing's body mask instead of making it again."""
    from hanseg.checks import sanitize_ct
    from hanseg.geometry import body_mask

    for ct in (head_ct(), head_ct(top=40), head_ct(offset=1024)):
        found = body_mask(sanitize_ct(ct)[0], -500.0)
        assert measure_reach(ct, -500.0, found=found) == measure_reach(ct, -500.0)
