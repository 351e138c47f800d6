"""The Segmenter (what process.py and the node call) with a tiny untrained network on a tiny
CT, in seconds: a label map on the CT's grid that labels something (an untrained network
still labels voxels; an all-background map means the prediction was lost on the way)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from hanseg.inference import Segmenter


def tiny_ct() -> sitk.Image:
    body = np.zeros((30, 36, 40), bool)
    body[4:-4, 6:-6, 5:-5] = True
    ct = sitk.GetImageFromArray(np.where(body, 40, -1000).astype(np.int16))
    ct.SetSpacing((2.0, 2.0, 2.5))
    ct.SetOrigin((-40.0, -30.0, 10.0))
    return ct


def test_the_segmenter_labels_something_on_exactly_the_cts_grid(tiny_model):
    ct = tiny_ct()
    prediction = Segmenter(tiny_model, "cpu", mirroring=False, tune=False).predict(ct, None)
    labels = prediction.labels
    assert labels.shape == sitk.GetArrayViewFromImage(ct).shape and labels.dtype == np.uint8
    assert labels.any() and labels.max() <= 30
    assert any("no T1 MR" in w for w in prediction.warnings)
