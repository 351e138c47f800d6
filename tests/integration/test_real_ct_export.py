"""A real head CT as an independent writer exports it: the one CT of Debian's
``invesalius-examples`` (InVesalius' "Cranium" project, an unlabelled head CT), written as DICOM
by plastimatch, which marks its files ImageType DERIVED\\SECONDARY\\AXIAL as treatment planning
systems, anonymisers and research tools do. ``process.py`` with the shipped model must take it as
the study's CT (it is the only one), say in results.json that it is no scanner original, and
write an RTSTRUCT with structures in it.

The voxels are InVesalius' own (int16 HU, 0.957 x 0.957 x 1.5 mm); only their row order is
reversed, because InVesalius keeps rows bottom-up as VTK does (the head holder lies at row 0),
so that plastimatch gets the usual supine image with the face at the top. The DICOM files are
plastimatch's, not edited.

The package and plastimatch are Debian packages (``scripts/setup_tools.sh``): missing ones skip
these tests on a developer's machine and fail them in CI.
"""

from __future__ import annotations

import gzip
import json
import os
import plistlib
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hanseg.dicom.scan import scan_folder
from hanseg.dicom.select import rules_from_dict, select_studies
from hanseg.errors import DicomInputError
from helpers import ROOT, need_tools

#: The InVesalius project of ``invesalius-examples`` (a gzip'd tar holding main.plist and the volume).
CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
#: What plastimatch writes in every CT file of ``convert --output-dicom`` (checked below).
PLASTIMATCH_IMAGE_TYPE = ["DERIVED", "SECONDARY", "AXIAL"]
#: The structures the shipped model must find at least: the CT holds the skull, brain, orbits and
#: the upper neck down to the hard palate, so the eyes, brainstem, mandible and others are in it.
MIN_STRUCTURES = 5


def need_cranium() -> Path:
    """The InVesalius example; missing, the test is skipped here and fails in CI, as
    ``need_tools`` does for a program."""
    if CRANIUM.is_file():
        return CRANIUM
    message = f"{CRANIUM} not installed (invesalius-examples; scripts/setup_tools.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def read_invesalius_ct(project: Path) -> sitk.Image:
    """The CT volume of an InVesalius 3 project file, in HU, rows top-down."""
    with gzip.open(project) as packed, tarfile.open(fileobj=packed) as tar:
        members = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}

        def member(name: str) -> bytes:
            handle = tar.extractfile(members[name])
            assert handle is not None
            return handle.read()

        main: dict[str, Any] = plistlib.loads(member("main.plist"))
        matrix = main["matrix"]
        assert main["modality"] == "CT" and matrix["dtype"] == "int16"
        voxels = np.frombuffer(member(matrix["filename"]), dtype="<i2").reshape(matrix["shape"])
    image = sitk.GetImageFromArray(np.ascontiguousarray(voxels[:, ::-1, :]))
    image.SetSpacing(tuple(float(s) for s in main["spacing"]))
    return image


@pytest.fixture(scope="session")
def plastimatch_export(tmp_path_factory) -> Path:
    """The InVesalius CT as plastimatch writes it as a DICOM series (one folder)."""
    (plastimatch,) = need_tools("plastimatch")
    work = tmp_path_factory.mktemp("invesalius")
    sitk.WriteImage(read_invesalius_ct(need_cranium()), str(work / "ct.mha"))
    folder = work / "dicom"
    done = subprocess.run(
        [plastimatch, "convert", "--input", str(work / "ct.mha"), "--output-dicom", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def processed(plastimatch_export: Path, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("invesalius_out")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "process.py"),
            "--input",
            str(plastimatch_export),
            "--output",
            str(out),
            "--model",
            str(ROOT / "model"),
            "--device",
            "cpu",
            "--no-mirroring",  # half the inference: what is checked is the export's path, not the labels' quality
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (study,) = json.loads((out / "results.json").read_text())["studies"]
    return {"study": study, "log": done.stderr, "files": {o["type"]: Path(o["path"]) for o in study["outputs"]}}


def test_plastimatch_writes_the_real_ct_as_a_derived_secondary_series(plastimatch_export: Path) -> None:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(plastimatch_export.glob("*.dcm"))]
    assert len(headers) == 108  # InVesalius' 108 slices, one file each
    assert {h.Modality for h in headers} == {"CT"} and len({h.SeriesInstanceUID for h in headers}) == 1
    assert all(list(h.ImageType) == PLASTIMATCH_IMAGE_TYPE for h in headers)


def test_the_export_is_refused_when_the_rules_ask_for_originals(plastimatch_export: Path) -> None:
    strict = rules_from_dict({"ct_accepted_image_types": ["ORIGINAL", "PRIMARY"]})
    with pytest.raises(DicomInputError, match=r"a DERIVED\\SECONDARY image .*accept only ORIGINAL, PRIMARY"):
        select_studies(scan_folder(plastimatch_export), strict)


def test_the_export_is_segmented_with_a_warning_naming_its_image_type(plastimatch_export, processed) -> None:
    study = processed["study"]
    (series_uid,) = {
        pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in plastimatch_export.glob("*.dcm")
    }
    assert [(i["role"], i["series_uid"]) for i in study["inputs"]] == [("ct", series_uid)]
    assert study["error_messages"] == [] and study["skipped_series"] == []
    assert set(processed["files"]) == {"rtstruct", "seg"} and all(p.is_file() for p in processed["files"].values())
    assert study["warnings"][0] == (
        f"the CT series {series_uid} '' is DERIVED\\SECONDARY (ImageType DERIVED\\SECONDARY\\AXIAL): an export "
        "or reconstruction, not the scanner's original; check it is the planning CT"
    )


def test_the_rtstruct_holds_structures_on_the_exported_slices(plastimatch_export, processed) -> None:
    rtstruct = pydicom.dcmread(processed["files"]["rtstruct"])
    slices = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in plastimatch_export.glob("*.dcm")}
    contoured = {}
    for roi in rtstruct.ROIContourSequence:
        contours = list(getattr(roi, "ContourSequence", []))
        referenced = {c.ContourImageSequence[0].ReferencedSOPInstanceUID for c in contours}
        assert referenced <= slices  # every contour lies on one of plastimatch's slices
        if any(len(c.ContourData) >= 9 for c in contours):  # a polygon: three points or more
            contoured[int(roi.ReferencedROINumber)] = len(contours)
    names = {int(r.ROINumber): str(r.ROIName) for r in rtstruct.StructureSetROISequence}
    found = sorted(names[n] for n in contoured)
    assert len(found) >= MIN_STRUCTURES, f"only {found} were contoured"
    # the dosimetrist sees the warning in the TPS too, not only in results.json
    assert "WARNING: the CT series" in rtstruct.StructureSetDescription
    assert "DERIVED\\SECONDARY" in rtstruct.StructureSetDescription
