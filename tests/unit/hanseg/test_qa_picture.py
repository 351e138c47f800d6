"""The QA picture (hanseg.qa_picture) on tiny arrays: views in physical proportions and the
same way round for any CT direction, colours of touching structures, a legend that can be read,
the truth's dashed outline, the MR row, the atomic write, and no patient data in the picture."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

import hanseg.qa_picture as qa
from hanseg.labels import LABEL_IDS, LABEL_NAMES, LR_PAIRS
from hanseg.qa_picture import PALETTE, draw_qa, render_qa, write_qa_png
from hanseg.qa_planes import dash_on

BRAINSTEM, PAROTID_L, SPINAL_CORD = LABEL_IDS["Brainstem"], LABEL_IDS["Parotid_L"], LABEL_IDS["SpinalCord"]
#: CIE76 ΔE (CIE Lab) every pair of touching structures must differ by at least
MIN_DELTA_E = 20.0


def ct_and_labels(size=(20, 30, 10), spacing=(1.0, 1.0, 3.0)) -> tuple[sitk.Image, np.ndarray]:
    ct_arr = np.full(size[::-1], -1000, np.int16)
    ct_arr[1:-1, 2:-2, 2:-2] = 40
    ct = sitk.GetImageFromArray(ct_arr)
    ct.SetSpacing(spacing)
    return ct, np.zeros(size[::-1], np.uint8)


def on_grid(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(like)
    return img


def pixels_of(picture: qa.QaPicture, panel: str, colour) -> np.ndarray:
    """(row, col) of the pixels of ``colour`` in a panel, as fractions of its height and width."""
    x0, y0, x1, y1 = picture.panels[panel]
    rgb = np.array(picture.image)[y0:y1, x0:x1]
    rows, cols = np.nonzero((rgb == np.array(colour, np.uint8)).all(axis=2))
    assert len(rows), f"no pixel of {colour} in {panel}"
    return np.array([rows.mean() / (y1 - y0), cols.mean() / (x1 - x0)])


def test_views_are_in_physical_proportions_for_thick_slices():
    ct, arr = ct_and_labels(size=(20, 30, 10), spacing=(1.0, 1.0, 3.0))  # 20 x 30 x 30 mm
    arr[4:6, 10:20, 5:15] = BRAINSTEM
    picture = render_qa(ct, on_grid(arr, ct))
    size = {name: (x1 - x0, y1 - y0) for name, (x0, y0, x1, y1) in picture.panels.items()}
    assert set(size) == {"axial", "coronal", "sagittal"}
    mm = picture.mm_per_px
    assert size["axial"][0] * mm == pytest.approx(20) and size["axial"][1] * mm == pytest.approx(30)  # x across, y down
    assert size["coronal"][0] * mm == pytest.approx(20) and size["coronal"][1] * mm == pytest.approx(30)  # x, z
    assert size["sagittal"][0] * mm == pytest.approx(30) and size["sagittal"][1] * mm == pytest.approx(30)  # y, z


def flipped(image: sitk.Image) -> sitk.Image:
    """The same physical content on a grid whose three axes run the other way."""
    ref = sitk.Image(image.GetSize(), image.GetPixelID())
    ref.SetSpacing(image.GetSpacing())
    far = image.TransformIndexToPhysicalPoint([n - 1 for n in image.GetSize()])
    ref.SetOrigin(far)
    ref.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0))
    return sitk.Resample(image, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


@pytest.mark.parametrize("direction", ["identity", "flipped"])
def test_anterior_superior_left_shows_where_a_radiologist_expects_it(direction):
    ct, arr = ct_and_labels(size=(20, 20, 10), spacing=(1.0, 1.0, 3.0))
    # LPS: left is +x, anterior is -y, superior is +z
    arr[7:9, 2:6, 14:18] = BRAINSTEM
    labels = on_grid(arr, ct)
    if direction == "flipped":
        ct, labels = flipped(ct), flipped(labels)
        assert not np.array_equal(sitk.GetArrayFromImage(labels), arr)
    picture = render_qa(ct, labels)
    colour = PALETTE[BRAINSTEM]
    row, col = pixels_of(picture, "axial", colour)
    assert row < 0.4 and col > 0.6  # anterior up; the patient's left on the right (radiological)
    row, col = pixels_of(picture, "coronal", colour)
    assert row < 0.4 and col > 0.6  # superior up
    row, col = pixels_of(picture, "sagittal", colour)
    assert row < 0.4 and col < 0.4  # superior up, anterior left


def lab(rgb) -> np.ndarray:
    """sRGB 0..255 → CIE Lab (D65)."""
    c = np.asarray(rgb, float) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a: int, b: int) -> float:
    return float(np.linalg.norm(lab(PALETTE[a]) - lab(PALETTE[b])))


def touching_pairs(arr: np.ndarray) -> set[tuple[int, int]]:
    """Label pairs that are 6-neighbours somewhere."""
    pairs = set()
    for axis in range(3):
        a, b = np.swapaxes(arr, 0, axis)[:-1], np.swapaxes(arr, 0, axis)[1:]
        hit = (a != b) & (a > 0) & (b > 0)
        pairs |= {(min(p, q), max(p, q)) for p, q in zip(a[hit].tolist(), b[hit].tolist())}
    return pairs


#: Structures that touch in real anatomy (besides what the phantom shows), by name.
ANATOMICAL_NEIGHBOURS = [
    ("OpticChiasm", "OpticNrv_L"),
    ("OpticChiasm", "OpticNrv_R"),
    ("Parotid_L", "Glnd_Submand_L"),
    ("Parotid_R", "Glnd_Submand_R"),
    ("Glottis", "Larynx_SG"),
    ("Arytenoid", "Glottis"),
    ("Arytenoid", "Larynx_SG"),
    ("Arytenoid", "Cricopharyngeus"),
    ("Cricopharyngeus", "Esophagus_S"),
    ("Cricopharyngeus", "Glottis"),
    ("Brainstem", "SpinalCord"),
    ("Lips", "BuccalMucosa"),
    ("Lips", "Cavity_Oral"),
    ("BuccalMucosa", "Cavity_Oral"),
    ("Eye_AL", "Eye_PL"),
    ("Eye_AR", "Eye_PR"),
    ("Eye_PL", "OpticNrv_L"),
    ("Eye_PR", "OpticNrv_R"),
    ("Brainstem", "Pituitary"),
    ("OpticChiasm", "Pituitary"),
    ("Bone_Mandible", "Cavity_Oral"),
]


def test_touching_structures_differ_in_colour_on_the_phantom():
    from phantoms import make_case

    truth = sitk.GetArrayFromImage(make_case(777, "small", "case_01").labels)
    phantom = touching_pairs(truth)
    assert len(phantom) >= 15  # the phantom's anatomy: a neighbour finder that finds nothing is broken
    named = {tuple(sorted((LABEL_IDS[a], LABEL_IDS[b]))) for a, b in ANATOMICAL_NEIGHBOURS}
    pairs = phantom | named | {(LABEL_IDS[left], LABEL_IDS[right]) for left, right in LR_PAIRS}
    close = {(LABEL_NAMES[a], LABEL_NAMES[b], round(delta_e(a, b), 1)) for a, b in pairs if delta_e(a, b) < MIN_DELTA_E}
    assert close == set()
    assert len(set(PALETTE[1:])) == 30


def test_the_palette_is_the_rtstructs():
    from hanseg.dicom.names import default_styles

    assert {s.label: s.colour for s in default_styles()} == {i: PALETTE[i] for i in range(1, 31)}


def ink_rows(image: Image.Image, box) -> int:
    """Rows of the box that hold text ink (white)."""
    rgb = np.array(image)[box[1] : box[3], box[0] : box[2]]
    ink = np.all(rgb > 200, axis=2)
    return int(np.count_nonzero(ink.any(axis=1)))


@pytest.mark.parametrize("freetype", [True, False])
def test_the_legend_names_every_label_shown_in_readable_text_below_the_panels(monkeypatch, freetype):
    if not freetype:  # Pillow built without FreeType: its bitmap font, doubled
        monkeypatch.setattr("PIL.features.check", lambda name: False)
    ct, arr = ct_and_labels()
    arr[4:6, 10:20, 5:10] = BRAINSTEM
    arr[4:6, 10:20, 10:15] = PAROTID_L
    arr[9, 0, 0] = SPINAL_CORD  # in the volume, not in any view: not in the legend
    picture = render_qa(ct, on_grid(arr, ct), names={BRAINSTEM: "Hirnstamm"})
    assert [(e.label, e.name) for e in picture.legend] == [(BRAINSTEM, "Hirnstamm"), (PAROTID_L, "Parotid_L")]
    bottom = max(y1 for _, _, _, y1 in picture.panels.values())
    for entry in picture.legend:
        assert entry.colour == PALETTE[entry.label]
        swatch = np.array(picture.image)[entry.swatch[1] : entry.swatch[3], entry.swatch[0] : entry.swatch[2]]
        assert (swatch == np.array(entry.colour, np.uint8)).all()
        assert entry.swatch[1] >= bottom and entry.text[1] >= bottom  # never over a picture
        assert entry.text[3] <= picture.image.height and entry.text[2] <= picture.image.width
    assert ink_rows(picture.image, picture.legend[1].text) >= 12  # "Parotid_L": cap to underscore


def test_the_truth_is_dashed_over_the_solid_prediction():
    ct, arr = ct_and_labels()
    arr[3:7, 8:22, 4:16] = BRAINSTEM
    labels = on_grid(arr, ct)
    colour = np.array(PALETTE[BRAINSTEM], np.uint8)
    alone = render_qa(ct, labels)
    both = render_qa(ct, labels, truth=labels)
    assert alone.style_key is None and both.style_key is not None
    x0, y0, x1, y1 = alone.panels["axial"]
    outline = (np.array(alone.image)[y0:y1, x0:x1] == colour).all(axis=2)
    assert outline.sum() > 100
    drawn = np.array(both.image)[y0:y1, x0:x1][outline]
    in_colour = (drawn == colour).all(axis=1).mean()
    white = (drawn == 255).all(axis=1).mean()
    assert 0.35 < in_colour < 0.65 and 0.35 < white < 0.65 and in_colour + white == pytest.approx(1)


def test_dashes_alternate_along_lines_of_any_direction():
    for line in (np.eye(24, dtype=bool), np.fliplr(np.eye(24, dtype=bool)), np.zeros((24, 24), bool)):
        if not line.any():
            line[5, :] = True
        on = dash_on(line, 4)
        assert 0.4 <= on[line].mean() <= 0.6 and not on[~line].any()
        run = on[line]
        assert any(run[i] != run[i + 1] for i in range(len(run) - 1))


def test_the_mr_row_is_there_only_with_an_mr():
    ct, arr = ct_and_labels()
    arr[4:6, 10:20, 5:15] = BRAINSTEM
    labels = on_grid(arr, ct)
    mr = sitk.Cast(ct, sitk.sitkFloat32) + 1000.0
    mr.SetOrigin((3.0, 0.0, 0.0))  # an MR lies where it lies: the transform brings it back
    assert set(render_qa(ct, labels).panels) == {"axial", "coronal", "sagittal"}
    shifted = render_qa(ct, labels, mr=mr)
    moved = render_qa(ct, labels, mr=mr, mr_transform=sitk.TranslationTransform(3, (3.0, 0.0, 0.0)))
    assert set(moved.panels) == {"axial", "coronal", "sagittal", "MR axial", "MR coronal", "MR sagittal"}

    def mr_panel(p):
        x0, y0, x1, y1 = p.panels["MR axial"]
        return np.array(p.image)[y0:y1, x0:x1]

    assert not np.array_equal(mr_panel(shifted), mr_panel(moved))
    assert moved.panels["MR axial"][1] > moved.panels["axial"][3]  # a row below the CT's


def test_the_picture_is_written_atomically(tmp_path, monkeypatch):
    ct, arr = ct_and_labels()
    arr[4:6, 10:20, 5:15] = BRAINSTEM
    labels = on_grid(arr, ct)
    path = write_qa_png(tmp_path / "new" / "case.png", ct, labels, title="case")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size == draw_qa(ct, labels, title="case").size
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        write_qa_png(path, ct, labels, title="other")
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["case.png"]  # no temporary file left


def test_no_patient_data_from_the_ct_header_reaches_the_picture(tmp_path):
    ct, arr = ct_and_labels()
    arr[4:6, 10:20, 5:15] = BRAINSTEM
    labels = on_grid(arr, ct)
    plain = np.array(draw_qa(ct, labels, title="case_07"))
    for key, value in (("0010|0010", "DOE^JANE"), ("0010|0020", "PID12345"), ("PatientName", "DOE^JANE")):
        ct.SetMetaData(key, value)
    assert np.array_equal(np.array(draw_qa(ct, labels, title="case_07")), plain)
    data = write_qa_png(tmp_path / "qa.png", ct, labels, title="case_07").read_bytes()
    assert b"DOE" not in data and b"PID12345" not in data


def test_any_grid_size_draws(tmp_path):
    for size, spacing in itertools.product(((1, 5, 7), (40, 3, 2)), ((0.5, 0.5, 5.0), (2.0, 1.0, 1.0))):
        ct, arr = ct_and_labels(size=size, spacing=spacing)
        arr[...] = BRAINSTEM
        assert draw_qa(ct, on_grid(arr, ct)).width > 0
