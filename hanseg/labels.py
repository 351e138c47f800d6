"""The 30 HaN-Seg organs at risk: label ids, names and left/right pairs.

This is the single source of truth for the label map. It imports nothing heavy so that
any tool (training, evaluation, the container) can read it cheaply.

Ids are the challenge's: 1..30 in alphabetical order of the OAR file names
(``case_XX_OAR_<name>.seg.nrrd``), 0 is background. A public submission once wrote
nnU-Net's internal order instead and silently scored zero on half the OARs: the tests
pin every id.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

BACKGROUND = 0

#: OAR names in challenge order; the label id of ``OAR_NAMES[i]`` is ``i + 1``.
OAR_NAMES: tuple[str, ...] = (
    "A_Carotid_L",
    "A_Carotid_R",
    "Arytenoid",
    "Bone_Mandible",
    "Brainstem",
    "BuccalMucosa",
    "Cavity_Oral",
    "Cochlea_L",
    "Cochlea_R",
    "Cricopharyngeus",
    "Esophagus_S",
    "Eye_AL",
    "Eye_AR",
    "Eye_PL",
    "Eye_PR",
    "Glnd_Lacrimal_L",
    "Glnd_Lacrimal_R",
    "Glnd_Submand_L",
    "Glnd_Submand_R",
    "Glnd_Thyroid",
    "Glottis",
    "Larynx_SG",
    "Lips",
    "OpticChiasm",
    "OpticNrv_L",
    "OpticNrv_R",
    "Parotid_L",
    "Parotid_R",
    "Pituitary",
    "SpinalCord",
)

NUM_OARS = len(OAR_NAMES)
#: Number of network output channels: background + 30 OARs.
NUM_CLASSES = NUM_OARS + 1

#: name -> label id (1..30).
LABEL_IDS: Mapping[str, int] = MappingProxyType({n: i + 1 for i, n in enumerate(OAR_NAMES)})
#: label id (0..30) -> name.
LABEL_NAMES: Mapping[int, str] = MappingProxyType(
    {BACKGROUND: "background", **{i + 1: n for i, n in enumerate(OAR_NAMES)}}
)


def _lr_pairs() -> tuple[tuple[str, str], ...]:
    """Pairs (left, right) found by the ``_L`` / ``_R`` suffix convention of HaN-Seg.

    Eye_AL/Eye_AR and Eye_PL/Eye_PR use a bare ``L``/``R`` suffix after the part letter.
    """
    pairs = []
    for name in OAR_NAMES:
        if name.endswith("_L"):
            pairs.append((name, name[:-2] + "_R"))
        elif name.startswith("Eye_") and name.endswith("L"):
            pairs.append((name, name[:-1] + "R"))
    for left, right in pairs:
        assert right in LABEL_IDS, f"{left} has no right partner {right}"
    return tuple(pairs)


#: Left/right OAR pairs by name, left first. Needed for mirroring augmentation and checks.
LR_PAIRS: tuple[tuple[str, str], ...] = _lr_pairs()


def lr_swap_table() -> tuple[int, ...]:
    """Lookup table ``t`` with ``t[label]`` = the label after a left-right mirror.

    Unpaired labels (and background) map to themselves; use as ``np.asarray(t)[labels]``.
    """
    table = list(range(NUM_CLASSES))
    for left, right in LR_PAIRS:
        table[LABEL_IDS[left]], table[LABEL_IDS[right]] = LABEL_IDS[right], LABEL_IDS[left]
    return tuple(table)


#: The names ``OAR_data.csv`` of the HaN-Seg download uses where they differ from the mask file
#: names: the eyes' posterior segments (the globes) are ``Eye_L``/``Eye_R`` there and their
#: anterior segments (lens and anterior chamber) ``Lens_L``/``Lens_R``.
OAR_DATA_CSV_NAMES: Mapping[str, str] = MappingProxyType(
    {"Eye_PL": "Eye_L", "Eye_PR": "Eye_R", "Eye_AL": "Lens_L", "Eye_AR": "Lens_R"}
)
#: The column order of the real ``OAR_data.csv`` (its own, not the label order).
OAR_DATA_CSV_ORDER: tuple[str, ...] = (
    "Arytenoid",
    "Brainstem",
    "BuccalMucosa",
    "A_Carotid_L",
    "A_Carotid_R",
    "Esophagus_S",
    "Cochlea_L",
    "Cochlea_R",
    "Cricopharyngeus",
    "Eye_PL",
    "Eye_PR",
    "Eye_AL",
    "Eye_AR",
    "Glnd_Lacrimal_L",
    "Glnd_Lacrimal_R",
    "Glottis",
    "Larynx_SG",
    "Lips",
    "Bone_Mandible",
    "OpticChiasm",
    "OpticNrv_L",
    "OpticNrv_R",
    "Cavity_Oral",
    "Parotid_L",
    "Parotid_R",
    "Pituitary",
    "SpinalCord",
    "Glnd_Submand_L",
    "Glnd_Submand_R",
    "Glnd_Thyroid",
)
assert sorted(OAR_DATA_CSV_ORDER) == sorted(OAR_NAMES)


def oar_file_name(case_id: str, oar: str) -> str:
    """File name of one binary OAR mask in the HaN-Seg raw layout."""
    if oar not in LABEL_IDS:
        raise KeyError(f"unknown OAR {oar!r}; expected one of {', '.join(OAR_NAMES)}")
    return f"{case_id}_OAR_{oar}.seg.nrrd"
