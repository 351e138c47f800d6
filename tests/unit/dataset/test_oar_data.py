"""``OAR_data.csv`` in the download's format, read and written by OAR name, and the raw layout's
use of it (an OAR rated below 1 is left out like a missing mask)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dataset.oar_data import read_oar_table, write_oar_table
from dataset.raw import find_raw_cases
from hanseg.errors import InputLayoutError
from hanseg.labels import LABEL_IDS, OAR_NAMES, oar_file_name
from helpers import REAL_OAR_CSV_HEADER as REAL_HEADER


def real_row(case: str, **values: float) -> str:
    """A row in the real column order; ``values`` by CSV column name, the rest 1."""
    return ";".join([case, *(f"{values.get(n, 1):g}" for n in REAL_HEADER.split(";")[1:])])


def test_the_real_header_is_read_by_name(tmp_path):
    path = tmp_path / "OAR_data.csv"
    path.write_text(
        "\n".join(
            [REAL_HEADER, real_row("case_01"), real_row("case_19", Brainstem=0.5, OpticChiasm=0, Lens_L=0.5, Eye_R=0)]
        )
        + "\n"
    )
    table = read_oar_table(path)
    assert set(table) == {"case_01", "case_19"} and set(table["case_19"]) == set(OAR_NAMES)
    assert set(table["case_01"].values()) == {1.0}
    low = {oar: v for oar, v in table["case_19"].items() if v < 1}
    # Lens_L is the left eye's anterior segment, Eye_R the right posterior one
    assert low == {"Brainstem": 0.5, "OpticChiasm": 0.0, "Eye_AL": 0.5, "Eye_PR": 0.0}


def test_writing_gives_the_download_format_and_reads_back_equal(tmp_path):
    table = {"case_02": dict.fromkeys(OAR_NAMES, 1.0), "case_01": {**dict.fromkeys(OAR_NAMES, 1.0), "Pituitary": 0.5}}
    path = write_oar_table(table, tmp_path / "OAR_data.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == REAL_HEADER
    assert lines[1] == real_row("case_01", Pituitary=0.5) and lines[2] == real_row("case_02")
    assert read_oar_table(path) == table


def test_an_older_comma_separated_table_in_label_order_is_read_too(tmp_path):
    path = tmp_path / "OAR_data.csv"
    path.write_text(
        "id," + ",".join(OAR_NAMES) + "\ncase_01," + ",".join("0" if n == "Lips" else "1" for n in OAR_NAMES)
    )
    assert read_oar_table(path)["case_01"]["Lips"] == 0.0


@pytest.mark.parametrize(
    "text, message",
    [
        (REAL_HEADER.replace("Lips", "Lipz") + "\n", "unknown OAR column"),
        (REAL_HEADER + "\ncase_01;1;1\n", "2 values for 30 OAR columns"),
        (REAL_HEADER + "\n" + real_row("case_01", Lips=2) + "\n", "outside 0..1"),
        (REAL_HEADER + "\n" + real_row("case_01").replace(";1;", ";yes;", 1) + "\n", "is not a number"),
    ],
)
def test_a_malformed_table_names_the_problem(tmp_path, text, message):
    path = tmp_path / "OAR_data.csv"
    path.write_text(text)
    with pytest.raises(InputLayoutError, match=message):
        read_oar_table(path)


def raw_case(root, case: str, oars: list[str]) -> None:
    folder = root / case
    folder.mkdir(parents=True)
    ct = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16))
    sitk.WriteImage(ct, str(folder / f"{case}_IMG_CT.nrrd"))
    for oar in oars:
        mask = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8))
        sitk.WriteImage(mask, str(folder / oar_file_name(case, oar)))


def test_an_oar_rated_below_1_is_left_out_unless_asked_for(tmp_path):
    raw_case(tmp_path, "case_01", ["Brainstem", "Lips", "Pituitary"])
    write_oar_table({"case_01": {**dict.fromkeys(OAR_NAMES, 1.0), "Pituitary": 0.5}}, tmp_path / "OAR_data.csv")
    (case,) = find_raw_cases(tmp_path)
    assert set(case.masks) == {"Brainstem", "Lips"} and case.unreliable == ("Pituitary",)
    assert not case.present[LABEL_IDS["Pituitary"]] and case.present[LABEL_IDS["Lips"]]
    (kept,) = find_raw_cases(tmp_path, min_reliability=0.0)
    assert set(kept.masks) == {"Brainstem", "Lips", "Pituitary"} and kept.unreliable == ()
