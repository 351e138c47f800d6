"""Tissue classes of the phantoms, each with its CT HU and T1 MR intensity."""

from __future__ import annotations

#: name -> (CT HU, T1 MR intensity in arbitrary units ~0..1000)
_TISSUES: dict[str, tuple[float, float]] = {
    "AIR": (-1000.0, 0.0),
    "FAT": (-100.0, 900.0),
    "SKIN": (30.0, 380.0),
    "MUSCLE": (50.0, 300.0),
    "GREY": (40.0, 430.0),
    "WHITE": (29.0, 580.0),
    "CSF": (8.0, 60.0),
    "CORTICAL": (1500.0, 25.0),
    "TRABECULAR": (420.0, 640.0),
    "TEETH": (2400.0, 15.0),
    "DENSE": (1900.0, 20.0),  # petrous temporal bone
    "AIR_IN": (-990.0, 0.0),  # air inside the body (sinuses, airway)
    "LUNG": (-850.0, 15.0),
    "GLAND_P": (30.0, 620.0),  # parotid: fatty gland, bright on T1
    "GLAND_S": (42.0, 450.0),  # submandibular / lacrimal
    "THYROID": (95.0, 470.0),  # iodine makes the thyroid brighter on CT, as in reality
    "BLOOD": (45.0, 40.0),  # non-contrast CT; flow void on MR
    "NERVE": (32.0, 540.0),
    "VITREOUS": (8.0, 70.0),
    "LENS": (75.0, 380.0),
    "CARTILAGE": (110.0, 280.0),
    "CORD": (34.0, 470.0),
    "DISC": (85.0, 300.0),
    "FLUID": (12.0, 60.0),
    "COUCH_SHELL": (200.0, 0.0),
    "COUCH_CORE": (-200.0, 0.0),
}
TISSUE_NAMES: tuple[str, ...] = tuple(_TISSUES)
TID: dict[str, int] = {n: i for i, n in enumerate(TISSUE_NAMES)}
_BODY_FREE = (TID["AIR"], TID["COUCH_SHELL"], TID["COUCH_CORE"])
