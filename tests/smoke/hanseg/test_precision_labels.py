"""bfloat16 against float32 on a tiny network: the labels hold (what ``--precision auto``
relies on where the CPU has bfloat16 units), while the logits really are computed in bfloat16.
The shipped model's figures on unseen phantoms are in ``model/metadata.json``
(``precision_agreement``), measured by ``python -m benchmarks.precision``."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from hanseg.compare import per_oar_dice
from hanseg.inference import Segmenter
from helpers import ROOT

#: Floors for an untrained tiny network, whose logits are closer to ties than a trained one's
#: (measured: mean 0.991, lowest OAR 0.987, 0.5 % of voxels on the whole test/ case).
MEAN_FLOOR, OAR_FLOOR, CHANGED_CEILING = 0.98, 0.95, 0.02


def test_bf16_labels_agree_with_fp32_on_a_tiny_network(tiny_model):
    ct = sitk.ReadImage(str(ROOT / "test/images/ct/case_01_CT.mha"))[48:208, 30:200, 30:]
    runs = {}
    for name in ("fp32", "bf16"):
        segmenter = Segmenter(tiny_model, "cpu", mirroring=False, tune=False, precision=name)
        assert segmenter.precision.name == name
        runs[name] = segmenter.predict(ct, None).labels
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert len(np.unique(fp32)) >= 10  # a map worth comparing, not all background
    assert (fp32 != bf16).any(), "bf16 gave bit-identical labels: the network did not run in bfloat16"
    scores = per_oar_dice(bf16, fp32)
    assert np.mean(list(scores.values())) >= MEAN_FLOOR
    assert min(scores.values()) >= OAR_FLOOR, {k: round(v, 3) for k, v in scores.items() if v < OAR_FLOOR}
    assert (fp32 != bf16).mean() <= CHANGED_CEILING
