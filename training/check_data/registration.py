"""The MR-to-CT registration of one case, run as preprocessing runs it, and its figures."""

from __future__ import annotations

import SimpleITK as sitk

from hanseg.checks import sanitize_mr
from hanseg.errors import HansegError
from hanseg.preprocess import crop_boxes

from .rules import BODY_MARGIN_MM, Findings, Settings


def registration_findings(
    ct_hu: sitk.Image, mr: sitk.Image, mr_file: str, settings: Settings, out: Findings
) -> dict[str, object]:
    """Register the MR to the CT as preprocessing does; the figures for ``cases.csv``."""
    from hanseg.registration import (
        register_mr_to_ct,  # scipy and the optimiser: only when asked for
    )

    try:
        mr_fixed, _ = sanitize_mr(mr)
        _, head = crop_boxes(ct_hu, mr_fixed, settings.body_threshold_hu, BODY_MARGIN_MM, None)
        result = register_mr_to_ct(ct_hu, mr_fixed, head, settings.body_threshold_hu)
    except (RuntimeError, HansegError) as exc:  # ITK errors are RuntimeErrors
        out.warning(
            mr_file, "registration", f"registration could not run ({exc}): this case would train from the CT alone"
        )
        return {"reg_ok": "no", "reg_message": str(exc)}
    if result.ok:
        out.info(mr_file, "registration", result.message)
    else:
        out.warning(
            mr_file,
            "registration",
            f"MR registration failed: {result.message}. This case trains from "
            "the CT alone (MR channel zero): check that the MR is this patient's head T1",
        )
    return {
        "reg_ok": "yes" if result.ok else "no",
        "reg_outline_dice": round(result.outline_dice, 4),
        "reg_rotation_deg": round(result.rotation_deg, 2),
        "reg_translation_mm": " ".join(f"{v:.1f}" for v in result.translation_mm),
        "reg_message": result.message,
    }
