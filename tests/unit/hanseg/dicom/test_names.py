"""Structure names and colours: the default palette and the configurable map file."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from hanseg.dicom.names import (
    Provenance,
    StructureStyle,
    check_styles,
    default_colours,
    default_styles,
    load_name_map,
)
from hanseg.errors import NameMapError
from hanseg.labels import LABEL_IDS, LR_PAIRS, OAR_NAMES


def write_map(tmp_path: Path, content: object, name: str = "names.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def hue(colour: tuple[int, int, int]) -> tuple[float, float]:
    """Colour direction independent of brightness."""
    top = max(colour)
    return round(colour[0] / top, 2), round(colour[1] / top, 2)


def test_default_styles_are_the_30_labels_in_order_with_distinct_colours():
    styles = default_styles()
    assert [(s.label, s.name) for s in styles] == [(LABEL_IDS[n], n) for n in OAR_NAMES]
    colours = [s.colour for s in styles]
    assert len(set(colours)) == 30
    assert all(0 <= c <= 255 and isinstance(c, int) for col in colours for c in col)
    check_styles(styles)


def test_left_right_pairs_share_a_hue_and_right_is_darker():
    colours = default_colours()
    for left, right in LR_PAIRS:
        assert hue(colours[left]) == pytest.approx(hue(colours[right]), abs=0.02)
        assert max(colours[right]) < max(colours[left])


def test_rename_recolour_and_drop(tmp_path, caplog):
    path = write_map(
        tmp_path,
        {
            "Parotid_L": {"name": "Parotid_Lt", "colour": [255, 0, 0]},
            "Arytenoid": None,
            "Lips": {"drop": True},
            "Brainstem": {"color": [1, 2, 3]},
        },
    )
    with caplog.at_level(logging.INFO, logger="hanseg.dicom.names"):
        styles = load_name_map(path)
    by_label = {s.label: s for s in styles}
    assert len(styles) == 28
    assert LABEL_IDS["Arytenoid"] not in by_label and LABEL_IDS["Lips"] not in by_label
    assert by_label[LABEL_IDS["Parotid_L"]] == StructureStyle(LABEL_IDS["Parotid_L"], "Parotid_Lt", (255, 0, 0))
    assert by_label[LABEL_IDS["Brainstem"]].colour == (1, 2, 3)
    assert by_label[LABEL_IDS["Parotid_R"]] == default_styles()[LABEL_IDS["Parotid_R"] - 1]
    assert "Parotid_L -> Parotid_Lt" in caplog.text and "Arytenoid, Lips" in caplog.text
    assert "recoloured: Brainstem, Parotid_L" in caplog.text


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib needs Python 3.11")
def test_toml_map(tmp_path):
    path = write_map(tmp_path, '[Parotid_L]\nname = "Parotid_Lt"\n\n[Arytenoid]\ndrop = true\n', "names.toml")
    names = [s.name for s in load_name_map(path)]
    assert "Parotid_Lt" in names and "Arytenoid" not in names and len(names) == 29


@pytest.mark.parametrize(
    "content, message",
    [
        ({"Parotid_Left": {"name": "X"}}, "did you mean Parotid_L"),
        ({"Parotid_L": {"name": "Parotid_R"}}, "Parotid_L and Parotid_R would both be written"),
        ({"Parotid_L": {"name": "x"}, "Parotid_R": {"name": "X"}}, "would both be written"),
        ({"Parotid_L": {"name": ""}}, "non-empty"),
        ({"Parotid_L": {"name": "   "}}, "non-empty"),
        ({"Parotid_L": {"name": " Parotid"}}, "leading or trailing spaces"),
        ({"Parotid_L": {"name": "P" * 65}}, "65 characters"),
        ({"Parotid_L": {"name": "a\\b"}}, "backslash"),
        ({"Parotid_L": {"name": 5}}, "non-empty text"),
        ({"Parotid_L": {"colour": [256, 0, 0]}}, "0..255"),
        ({"Parotid_L": {"colour": [-1, 0, 0]}}, "0..255"),
        ({"Parotid_L": {"colour": [1, 2]}}, "0..255"),
        ({"Parotid_L": {"colour": [1.5, 2, 3]}}, "0..255"),
        ({"Parotid_L": {"colour": [1, 2, 3], "color": [1, 2, 3]}}, "not both"),
        ({"Parotid_L": {"nmae": "x"}}, "unknown key"),
        ({"Parotid_L": {"drop": "yes"}}, "true or false"),
        ({"Parotid_L": {"drop": True, "name": "x"}}, "cannot also be renamed"),
        ({"Parotid_L": "Parotid_Lt"}, "expected null or an object"),
        ([1, 2], "expected an object keyed by OAR name"),
        ({n: None for n in OAR_NAMES}, "every structure is dropped"),
        ("{not json", "not a valid json file"),
    ],
)
def test_bad_maps_are_refused_with_a_clear_message(tmp_path, content, message):
    with pytest.raises(NameMapError, match=message):
        load_name_map(write_map(tmp_path, content))


def test_a_name_of_exactly_64_characters_is_allowed(tmp_path):
    styles = load_name_map(write_map(tmp_path, {"Lips": {"name": "L" * 64}}))
    assert styles[LABEL_IDS["Lips"] - 1].name == "L" * 64


def test_missing_file(tmp_path):
    with pytest.raises(NameMapError, match="cannot read"):
        load_name_map(tmp_path / "absent.json")


def test_check_styles_refuses_repeated_or_unknown_labels():
    first = default_styles()[0]
    with pytest.raises(NameMapError, match="given twice"):
        check_styles((first, StructureStyle(first.label, "Other", (0, 0, 0))))
    with pytest.raises(NameMapError, match="unknown"):
        check_styles((StructureStyle(31, "X", (0, 0, 0)),))


def test_provenance_values_must_fit_dicom_lo():
    assert Provenance("0.5.0", "0.1.0").manufacturer == "hanseg"
    with pytest.raises(ValueError, match="model_version"):
        Provenance("", "0.1.0")
    with pytest.raises(ValueError, match="software_version"):
        Provenance("1", "v" * 65)
