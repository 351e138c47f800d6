"""The UIDs of the objects written for one CT series, derived from what made them.

A PACS or a planning system keys what it stores on the SOP Instance UID. Random UIDs make
a second, different structure set every time a study is sent again (a PACS re-route, a
manual re-send). The series and instance UIDs of the RTSTRUCT and the SEG are therefore
derived (``pydicom.uid.generate_uid(entropy_srcs=...)``, a hash into pydicom's UID root)
from everything that decides their content:

* the CT series UID and the set of SOP Instance UIDs of the CT slices used;
* the SOP Instance UIDs of the MR used, if any;
* the model: its version and the sha256 of its weights (:func:`hanseg.model_dir.model_fingerprint`);
* the structure names, colours and label ids written (the site's name map).

The same input gives the same UIDs, and the receiver stores it once; any change (one more
slice, another model, another name map) gives new ones. What the result replaces, when a
study was completed by instances that came after an earlier result, is named by
:class:`Predecessor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.uid import generate_uid

from .names import StructureStyle

#: what each derived UID is for: one input set gives four different UIDs
ROLES = ("rtstruct-series", "rtstruct-instance", "seg-series", "seg-instance")


@dataclass(frozen=True)
class Predecessor:
    """The RTSTRUCT and SEG that an earlier job delivered for the same CT series."""

    rtstruct_series_uid: str
    rtstruct_sop_uid: str
    seg_series_uid: str
    seg_sop_uid: str


@dataclass(frozen=True)
class OutputIdentity:
    """Series and instance UIDs of one CT series' RTSTRUCT and SEG, and what they replace."""

    rtstruct_series_uid: str
    rtstruct_sop_uid: str
    seg_series_uid: str
    seg_sop_uid: str
    replaces: Predecessor | None = None


def _style_key(style: StructureStyle) -> str:
    return f"{style.label}={style.name}#{style.colour[0]},{style.colour[1]},{style.colour[2]}"


def input_key(
    ct_series_uid: str,
    ct_sop_uids: Iterable[str],
    mr_sop_uids: Iterable[str],
    model_fingerprint: str,
    styles: Sequence[StructureStyle],
) -> list[str]:
    """The entropy sources: order-free sets of instances, so that the order in which a sender
    delivered the slices does not matter."""
    return [
        f"ct-series={ct_series_uid}",
        "ct=" + ",".join(sorted(str(u) for u in ct_sop_uids)),
        "mr=" + ",".join(sorted(str(u) for u in mr_sop_uids)),
        f"model={model_fingerprint}",
        "styles=" + ";".join(_style_key(s) for s in styles),
    ]


def output_identity(
    ct_series_uid: str,
    ct_sop_uids: Iterable[str],
    mr_sop_uids: Iterable[str],
    model_fingerprint: str,
    styles: Sequence[StructureStyle],
    replaces: Predecessor | None = None,
) -> OutputIdentity:
    """The four UIDs for this input (see the module docstring)."""
    key = input_key(ct_series_uid, ct_sop_uids, mr_sop_uids, model_fingerprint, styles)
    rt_series, rt_sop, seg_series, seg_sop = (str(generate_uid(entropy_srcs=[*key, f"role={r}"])) for r in ROLES)
    return OutputIdentity(rt_series, rt_sop, seg_series, seg_sop, replaces)


def random_identity() -> OutputIdentity:
    """New random UIDs: for objects built outside the layouts (tests, tools)."""
    rt_series, rt_sop, seg_series, seg_sop = (str(generate_uid()) for _ in ROLES)
    return OutputIdentity(rt_series, rt_sop, seg_series, seg_sop)
