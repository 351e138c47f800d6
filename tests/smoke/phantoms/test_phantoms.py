"""Tests of the synthetic head-and-neck phantom (phantoms).

The phantom stands in for real HaN-Seg data in every other test and in the demo, so these
tests pin what makes it worth training on: plausible HU and volumes, correct sides, a
correct ground-truth CT->MR transform, OARs that are *not* separable by intensity alone,
and exactly the file names the real data / the container use.
"""

from __future__ import annotations

import csv
import functools
import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import phantoms
import phantoms.case
from hanseg.labels import LABEL_IDS, LR_PAIRS, NUM_OARS, OAR_NAMES, oar_file_name
from phantoms.cli import main as phantoms_main
from phantoms.case import MAX_MISSING

SEEDS = (0, 1, 2, 3)

#: Physiological volume ranges in mL (the brief's, from the HaN-Seg literature).
VOLUME_ML: dict[str, tuple[float, float]] = {
    "Parotid": (20, 35), "Glnd_Submand": (6, 12), "Bone_Mandible": (60, 90), "Brainstem": (20, 35),
    "Cavity_Oral": (40, 100), "Glnd_Thyroid": (10, 25), "Larynx_SG": (10, 25), "Eye_P": (5, 8),
    "Eye_A": (0.5, 1.5), "OpticNrv": (0.3, 0.8), "OpticChiasm": (0.2, 0.6), "Pituitary": (0.3, 1.0),
    "Cochlea": (0.05, 0.15), "Glnd_Lacrimal": (0.4, 1.0), "Arytenoid": (0.5, 1.5), "A_Carotid": (2, 8),
    "BuccalMucosa": (5, 15), "Cricopharyngeus": (1, 4), "Esophagus_S": (8, 20), "Glottis": (1, 4),
    "Lips": (5, 15), "SpinalCord": (8, 20),
}


def _range_for(name: str) -> tuple[float, float]:
    for prefix, rng in VOLUME_ML.items():
        if name.startswith(prefix):
            return rng
    raise KeyError(name)


@functools.lru_cache(maxsize=None)
def _case(seed: int) -> phantoms.PhantomCase:
    return phantoms.make_case(seed, "small", case_id=f"case_{seed + 1:02d}")


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def _centroid_mm(labels: np.ndarray, img: sitk.Image, label: int) -> np.ndarray:
    zyx = np.argwhere(labels == label).mean(axis=0)
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx[::-1])))


def _ball(mm: float, spacing_xyz: tuple[float, ...]) -> np.ndarray:
    sp = np.asarray(spacing_xyz)[::-1]
    r = np.ceil(mm / sp).astype(int)
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    return (zz * sp[0]) ** 2 + (yy * sp[1]) ** 2 + (xx * sp[2]) ** 2 <= mm**2


def _body_mask(a: np.ndarray, threshold: float) -> np.ndarray:
    """Largest connected component above ``threshold`` with holes filled slice by slice
    (the couch is separate from the body, the skull and airways are inside it)."""
    m = a > threshold
    lab, n = ndimage.label(m)
    if n > 1:
        sizes = ndimage.sum(m, lab, range(1, n + 1))
        m = lab == 1 + int(np.argmax(sizes))
    return np.stack([ndimage.binary_fill_holes(s) for s in m])


# --- determinism and basic image properties -----------------------------------------------


def test_same_seed_same_case_and_different_seed_different_case():
    a, b = phantoms.make_case(5), phantoms.make_case(5)
    for attr in ("ct", "mr", "labels"):
        np.testing.assert_array_equal(_arr(getattr(a, attr)), _arr(getattr(b, attr)))
        assert getattr(a, attr).GetOrigin() == getattr(b, attr).GetOrigin()
    assert a.present == b.present
    assert a.ct_to_mr.GetParameters() == b.ct_to_mr.GetParameters()
    c = _case(0)
    assert c.ct.GetSize() != a.ct.GetSize() or not np.array_equal(_arr(c.ct), _arr(a.ct))
    assert c.ct_to_mr.GetParameters() != a.ct_to_mr.GetParameters()


def test_case_seeds_are_deterministic_and_distinct():
    assert phantoms.case_seed(3, 0) == phantoms.case_seed(3, 0)
    assert len({phantoms.case_seed(3, i) for i in range(20)} | {phantoms.case_seed(4, 0)}) == 21


def test_ct_is_int16_hounsfield_with_air_bone_and_soft_tissue():
    c = _case(0)
    assert c.ct.GetPixelID() == sitk.sitkInt16
    assert c.ct.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    ct = _arr(c.ct).astype(np.float32)
    for corner in (ct[:4, :8, :8], ct[-4:, :8, -8:], ct[:4, :8, -8:]):  # anterior corners: air
        assert -1030 < corner.mean() < -970
    assert ct.min() >= -1024 and ct.max() > 700 and (ct > 1000).sum() > 1000
    soft = (ct > 0) & (ct < 80)
    assert soft.mean() > 0.05


def test_mr_is_on_its_own_smaller_grid():
    c = _case(0)
    assert c.mr.GetPixelID() in (sitk.sitkFloat32, sitk.sitkInt16)
    assert c.mr.GetSize() != c.ct.GetSize() and c.mr.GetSpacing() != c.ct.GetSpacing()
    ct_extent = np.multiply(c.ct.GetSize(), c.ct.GetSpacing())
    mr_extent = np.multiply(c.mr.GetSize(), c.mr.GetSpacing())
    assert np.all(mr_extent < ct_extent)
    mr = _arr(c.mr)
    assert mr.min() >= 0 and np.percentile(mr, 99) > 300  # dark air, bright fat / marrow


def test_labels_are_uint8_in_range_and_present_oars_drawn_inside_the_fov():
    for seed in SEEDS:
        c = _case(seed)
        lab = _arr(c.labels)
        assert c.labels.GetPixelID() == sitk.sitkUInt8
        assert c.labels.GetSize() == c.ct.GetSize() and c.labels.GetOrigin() == c.ct.GetOrigin()
        found = set(np.unique(lab).tolist())
        assert found <= set(range(NUM_OARS + 1))
        assert found - {0} == {LABEL_IDS[n] for n in c.present}
        assert len(c.present) >= NUM_OARS - MAX_MISSING
        boxes = ndimage.find_objects(lab)
        for name in c.present:
            box = boxes[LABEL_IDS[name] - 1]
            assert all(0 < sl.start and sl.stop < n for sl, n in zip(box, lab.shape)), name


def test_unannotated_oars_are_absent_from_labels_but_tissue_is_drawn(monkeypatch):
    monkeypatch.setattr(phantoms.case, "P_MISSING", 1.0)  # every OAR "missing": the cap applies
    c = phantoms.make_case(0)
    missing = [n for n in OAR_NAMES if n not in c.present]
    assert len(missing) == MAX_MISSING
    lab = _arr(c.labels)
    for name in missing:
        assert not (lab == LABEL_IDS[name]).any()
    # Same seed and same draws otherwise: the tissue (hence the CT) keeps the organ.
    ref = _case(0)
    ref_lab = _arr(ref.labels)
    for name in missing:
        m = ref_lab == LABEL_IDS[name]
        if m.any() and c.ct.GetSize() == ref.ct.GetSize():
            hu = _arr(c.ct)[m].mean()
            assert abs(hu - _arr(ref.ct)[m].mean()) < 40


# --- anatomy -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_oar_volumes_are_physiological(seed):
    c = _case(seed)
    lab = _arr(c.labels)
    voxel_ml = float(np.prod(c.labels.GetSpacing())) / 1000.0
    counts = np.bincount(lab.ravel(), minlength=NUM_OARS + 1)
    for name in c.present:
        lo, hi = _range_for(name)
        vol = counts[LABEL_IDS[name]] * voxel_ml
        assert lo <= vol <= hi, f"seed {seed}: {name} {vol:.3f} mL outside [{lo}, {hi}]"


def test_left_organs_lie_at_larger_x_than_right_organs():
    for seed in SEEDS:
        c = _case(seed)
        lab = _arr(c.labels)
        for left, right in LR_PAIRS:
            if left in c.present and right in c.present:
                xl = _centroid_mm(lab, c.labels, LABEL_IDS[left])[0]
                xr = _centroid_mm(lab, c.labels, LABEL_IDS[right])[0]
                assert xl > xr + 10, f"seed {seed}: {left} x={xl:.1f} not left of {right} x={xr:.1f}"


def test_anatomical_order_along_the_body_axis():
    """Superior-inferior order of a few landmarks (LPS: +z superior, +y posterior)."""
    c = _case(1)
    lab = _arr(c.labels)
    z = {n: _centroid_mm(lab, c.labels, LABEL_IDS[n])[2] for n in c.present}
    y = {n: _centroid_mm(lab, c.labels, LABEL_IDS[n])[1] for n in c.present}
    chain = ["OpticChiasm", "Pituitary", "Cavity_Oral", "Larynx_SG", "Glottis", "Glnd_Thyroid"]
    chain = [n for n in chain if n in z]
    assert all(z[a] > z[b] for a, b in zip(chain, chain[1:])), z
    if {"Eye_PL", "Brainstem", "Esophagus_S", "SpinalCord"} <= set(y):
        assert y["Eye_PL"] < y["Brainstem"] and y["Esophagus_S"] < y["SpinalCord"]


def test_bone_surrounds_the_cochlea_and_air_fills_the_trachea():
    c = _case(2)
    ct, lab = _arr(c.ct).astype(np.float32), _arr(c.labels)
    for name in ("Cochlea_L", "Cochlea_R"):
        if name in c.present:
            m = lab == LABEL_IDS[name]
            ring = ndimage.binary_dilation(m, _ball(4.0, c.ct.GetSpacing())) & ~m
            assert np.median(ct[ring]) > 700
    thyroid = lab == LABEL_IDS["Glnd_Thyroid"]
    if thyroid.any():
        k = int(np.argwhere(thyroid)[:, 0].mean())
        assert (ct[k] < -800)[thyroid[k].any(axis=1)].any()  # the airway between the lobes


# --- realism: intensity must not give OARs away -------------------------------------------


def _shell_mean(ct: np.ndarray, lab: np.ndarray, label: int, spacing, mm: float = 8.0) -> float:
    """Mean HU of unlabelled soft tissue within ``mm`` of an OAR."""
    ball = _ball(mm, spacing)
    box = ndimage.find_objects((lab == label).astype(np.uint8))[0]
    box = tuple(slice(max(sl.start - r, 0), sl.stop + r) for sl, r in zip(box, np.array(ball.shape) // 2 + 1))
    ct, lab = ct[box], lab[box]  # dilate a crop, not the whole volume
    m = lab == label
    shell = ndimage.binary_dilation(m, ball) & ~m & (lab == 0)
    v = ct[shell]
    return float(v[(v > -50) & (v < 150)].mean())


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_neighbouring_soft_tissue_oars_are_not_separable_by_hu(seed):
    c = _case(seed)
    ct, lab, sp = _arr(c.ct).astype(np.float32), _arr(c.labels), c.ct.GetSpacing()
    means = {n: float(ct[lab == LABEL_IDS[n]].mean()) for n in c.present}
    for side in ("L", "R"):
        group = [means.get(f"Parotid_{side}"), means.get(f"Glnd_Submand_{side}")]
        if f"Parotid_{side}" in c.present:
            group.append(_shell_mean(ct, lab, LABEL_IDS[f"Parotid_{side}"], sp))
        group = [g for g in group if g is not None]
        assert max(group) - min(group) <= 30, (side, group)
    if "Brainstem" in c.present:
        shell = _shell_mean(ct, lab, LABEL_IDS["Brainstem"], sp)
        assert abs(means["Brainstem"] - shell) <= 15
    if "OpticChiasm" in c.present:
        assert abs(means["OpticChiasm"] - _shell_mean(ct, lab, LABEL_IDS["OpticChiasm"], sp)) <= 20
    if "Cavity_Oral" in c.present:
        assert abs(means["Cavity_Oral"] - _shell_mean(ct, lab, LABEL_IDS["Cavity_Oral"], sp)) <= 30


# --- the ground-truth CT -> MR transform ---------------------------------------------------


def _mr_body_dice(c: phantoms.PhantomCase, transform: sitk.Transform) -> float:
    mr = sitk.Resample(c.mr, c.ct, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    ones = sitk.Cast(c.mr * 0 + 1, sitk.sitkUInt8)
    fov = _arr(sitk.Resample(ones, c.ct, transform, sitk.sitkNearestNeighbor, 0)) > 0
    mr_body = _body_mask(ndimage.gaussian_filter(_arr(mr), 1.0), 100.0) & fov
    ct_body = _body_mask(_arr(c.ct), -400.0) & fov
    return 2.0 * (mr_body & ct_body).sum() / (mr_body.sum() + ct_body.sum())


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_ground_truth_transform_overlays_mr_on_ct(seed):
    c = _case(seed)
    assert isinstance(c.ct_to_mr, sitk.Euler3DTransform)
    angle = np.degrees(np.arccos((np.trace(np.reshape(c.ct_to_mr.GetMatrix(), (3, 3))) - 1) / 2))
    assert 3.9 <= angle <= 10.1 and 7.9 <= np.linalg.norm(c.ct_to_mr.GetTranslation()) <= 20.1
    good = _mr_body_dice(c, c.ct_to_mr)
    identity = _mr_body_dice(c, sitk.Euler3DTransform())
    assert good > 0.95
    assert identity < good - 0.03


# --- writers and CLI -----------------------------------------------------------------------


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_write_raw_uses_the_hanseg_names(tmp_path):
    c = _case(0)
    folder = phantoms.write_raw(c, tmp_path)
    assert folder == tmp_path / c.case_id
    expected = {f"{c.case_id}_IMG_CT.nrrd", f"{c.case_id}_IMG_MR_T1.nrrd"}
    expected |= {oar_file_name(c.case_id, n) for n in c.present}
    assert {p.name for p in folder.iterdir()} == expected
    assert {p.name for p in tmp_path.iterdir()} == {c.case_id, "OAR_data.csv"}
    ct = sitk.ReadImage(str(folder / f"{c.case_id}_IMG_CT.nrrd"))
    assert ct.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(_arr(ct), _arr(c.ct))
    name = c.present[0]
    seg = sitk.ReadImage(str(folder / oar_file_name(c.case_id, name)))
    assert seg.GetPixelID() == sitk.sitkUInt8 and seg.GetOrigin() == c.ct.GetOrigin()
    np.testing.assert_array_equal(_arr(seg), (_arr(c.labels) == LABEL_IDS[name]).astype(np.uint8))
    rows = _read_csv(tmp_path / "OAR_data.csv")
    assert rows[0] == ["id", *OAR_NAMES]
    assert rows[1] == [c.case_id, *("1" if n in c.present else "0" for n in OAR_NAMES)]


def test_write_gc_uses_the_container_names(tmp_path):
    c = _case(1)
    phantoms.write_gc(c, tmp_path)
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert files == {
        f"input/images/ct/{c.case_id}_CT.mha",
        f"input/images/t1-mri/{c.case_id}_T1.mha",
        f"ground_truth/{c.case_id}_seg.mha",
        "ground_truth/OAR_data.csv",
    }
    seg = sitk.ReadImage(str(tmp_path / "ground_truth" / f"{c.case_id}_seg.mha"))
    np.testing.assert_array_equal(_arr(seg), _arr(c.labels))
    mr = sitk.ReadImage(str(tmp_path / "input/images/t1-mri" / f"{c.case_id}_T1.mha"))
    assert mr.GetSize() == c.mr.GetSize() and mr.GetOrigin() == c.mr.GetOrigin()


def test_cli_writes_numbered_cases_and_one_table(tmp_path):
    assert phantoms_main(["--out", str(tmp_path), "--cases", "2", "--seed", "7", "--layout", "raw"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"case_01", "case_02", "OAR_data.csv"}
    rows = _read_csv(tmp_path / "OAR_data.csv")
    assert [r[0] for r in rows] == ["id", "case_01", "case_02"]
    ct = sitk.ReadImage(str(tmp_path / "case_02" / "case_02_IMG_CT.nrrd"))
    expected = phantoms.make_case(phantoms.case_seed(7, 1), "small", "case_02")
    np.testing.assert_array_equal(_arr(ct), _arr(expected.ct))


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        phantoms_main(["--out", str(tmp_path), "--layout", "zip"])
    with pytest.raises(SystemExit):
        phantoms_main(["--out", str(tmp_path), "--cases", "0"])


@pytest.mark.parametrize("kwargs", [dict(seed=1, size="huge"), dict(seed=-1), dict(seed=1, case_id="../x")])
def test_bad_input_raises_named_error(kwargs):
    with pytest.raises(phantoms.PhantomError):
        phantoms.make_case(**kwargs)


def test_writers_refuse_a_file_as_output_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(phantoms.PhantomError):
        phantoms.write_gc(_case(0), f)


# --- full size (slow, ~20 s) ----------------------------------------------


@pytest.mark.slow  # deselected by default (pyproject addopts); run with -m slow
def test_full_size_case():
    t0 = time.perf_counter()
    c = phantoms.make_case(11, "full")
    elapsed = time.perf_counter() - t0
    nx, ny, nz = c.ct.GetSize()
    assert (nx, ny) == (1024, 1024) and 190 <= nz <= 260
    assert 0.52 <= c.ct.GetSpacing()[0] <= 0.60 and c.mr.GetSize()[:2] == (512, 512)
    lab = _arr(c.labels)
    voxel_ml = float(np.prod(c.labels.GetSpacing())) / 1000.0
    counts = np.bincount(lab.ravel(), minlength=NUM_OARS + 1)
    for name in c.present:
        lo, hi = _range_for(name)
        assert lo <= counts[LABEL_IDS[name]] * voxel_ml <= hi, name
    assert elapsed < 120
