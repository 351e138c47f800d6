"""Time budget: window counts as MONAI places them, the richest setting that fits, and exact
left-right mirroring (with the L/R channel swap) at test time."""

import logging

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from hanseg.budget import RunSettings, body_windows, choose, ladder, n_windows, remade_estimate
from hanseg.inference import Feed, Segmenter
from hanseg.labels import LABEL_IDS


@pytest.mark.parametrize("shape", [(142, 148, 172), (48, 96, 96), (10, 20, 30), (200, 97, 301)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.7])
def test_window_count_matches_monai(shape, overlap):
    """Windows counted as MONAI's public sliding window places them (one predictor call each)."""
    patch, calls = (48, 96, 96), []

    def count(windows: torch.Tensor) -> torch.Tensor:
        calls.append(windows.shape[0])
        return torch.zeros((windows.shape[0], 1, *windows.shape[2:]))

    sliding_window_inference(torch.zeros((1, 1, *shape)), patch, 64, count, overlap=overlap, mode="constant")
    assert n_windows(shape, patch, overlap) == sum(calls)


def test_richest_setting_that_fits_is_chosen():
    shape, patch = (142, 148, 172), (48, 96, 96)  # 45 windows at overlap 0.5
    assert [s.passes for s in ladder(2, 0.5)] == [4, 2, 2, 1, 1, 1]
    assert choose(shape, patch, 2, 0.5, 1.0, None)[0] == RunSettings(2, (2,), 0.5)
    assert choose(shape, patch, 2, 0.5, 1.0, 200.0) == (RunSettings(2, (2,), 0.5), 180.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 100.0) == (RunSettings(2, (), 0.5), 90.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 50.0) == (RunSettings(1, (), 0.5), 45.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 100.0, mirroring=False)[0] == RunSettings(2, (), 0.5)
    lean = RunSettings(1, (), 0.0)
    assert choose(shape, patch, 2, 0.5, 1.0, 10.0)[0] == lean  # 8 windows at overlap 0: 8 s fits 10
    assert choose(shape, patch, 2, 0.5, 1.0, 1.0)[0] == lean  # nothing fits: the leanest, warned


def test_left_right_mirroring_is_exactly_equivariant(tiny_model, caplog):
    """With one window (image = patch), TTA over the x mirror gives P(flip I) = swapLR(flip P(I))."""
    seg = Segmenter(tiny_model, device="cpu")
    image = np.random.default_rng(0).normal(size=(2, *seg.plans.patch_size_zyx)).astype(np.float32)
    settings = RunSettings(1, (2,), 0.5)
    p = seg.probabilities(image, settings)
    p_flipped = seg.probabilities(image[:, :, :, ::-1].copy(), settings)
    left, right = LABEL_IDS["Parotid_L"], LABEL_IDS["Parotid_R"]
    np.testing.assert_allclose(p_flipped[left], p[right][:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(p_flipped[LABEL_IDS["Brainstem"]], p[LABEL_IDS["Brainstem"]][:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    plain = seg.probabilities(image, RunSettings(1, (), 0.5))
    assert not np.allclose(plain, p, atol=1e-3)  # the mirror pass really changed something
    assert seg.seconds_per_window > 0


def test_budget_choice_is_logged(tiny_model, caplog):
    import SimpleITK as sitk

    arr = np.full((20, 40, 40), -1000, np.int16)
    arr[4:16, 8:32, 8:32] = 40
    ct = sitk.GetImageFromArray(arr)
    with caplog.at_level(logging.INFO):
        Segmenter(tiny_model, device="cpu", time_budget_s=1e6).predict(ct, None)
    assert "inference: 1 fold(s), mirroring x, overlap 0.25" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        Segmenter(tiny_model, device="cpu", mirroring=False).predict(ct, None)
    assert "mirroring none" in caplog.text


def _image_with_body(patch: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A grid of 3×3×3 patches with a body (CT above threshold) in one corner only."""
    rng = np.random.default_rng(1)
    shape = tuple(3 * p for p in patch)
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    body = np.zeros(shape, bool)
    body[: patch[0], : patch[1] + 3, 2 : patch[2]] = True
    return image, body


def test_pure_air_windows_are_skipped_and_body_voxels_unchanged(tiny_model):
    seg = Segmenter(tiny_model, device="cpu", time_budget_s=None)
    patch = seg.plans.patch_size_zyx
    image, body = _image_with_body(patch)
    settings = RunSettings(1, (2,), 0.25)
    full = seg.probabilities(image, settings)
    assert seg.windows_skipped == 0
    fast = seg.probabilities(image, settings, body)
    windows = n_windows(body.shape, patch, 0.25)
    assert 0 < body_windows(body, patch, 0.25) == windows - seg.windows_skipped < windows
    np.testing.assert_allclose(fast[:, body], full[:, body], atol=1e-6)  # exact on the body
    far = fast[0, -patch[0] // 2 :, -patch[1] // 2 :, -patch[2] // 2 :]  # only skipped windows reach here
    assert far.min() > 0.99 and not np.allclose(fast, full, atol=1e-3)


def test_body_windows_counts_windows_holding_body():
    body = np.zeros((20, 20, 20), bool)
    assert body_windows(body, (10, 10, 10), 0.0) == 0
    body[0, 0, 0] = True
    assert body_windows(body, (10, 10, 10), 0.0) == 1
    assert body_windows(body, (10, 10, 10), 0.5) == 1  # starts 0, 5, 10 per axis: only (0,0,0)
    body[9, 9, 9] = True
    assert body_windows(body, (10, 10, 10), 0.5) == 8  # (0 or 5) on each axis


def test_window_feeds_give_the_same_probabilities(tiny_model):
    """Batched, channels-last windows (what _tune may pick) change only the speed."""
    seg = Segmenter(tiny_model, device="cpu")
    assert seg.feed.seconds_per_window > 0 and seg.feed.batch in {1, 2}
    image, _ = _image_with_body(seg.plans.patch_size_zyx)
    results = []
    for batch, channels_last in ((1, False), (2, True), (4, True)):
        seg.feed = Feed(batch, channels_last, 0.0)
        seg._layout(channels_last)
        results.append(seg.probabilities(image, RunSettings(1, (), 0.25)))
    np.testing.assert_allclose(results[1], results[0], atol=1e-5)
    np.testing.assert_allclose(results[2], results[0], atol=1e-5)


def test_budget_counts_only_the_windows_that_run():
    shape, patch = (142, 148, 172), (48, 96, 96)  # 45 windows at overlap 0.5, but 10 hold the body
    assert choose(shape, patch, 2, 0.5, 1.0, 40.0, windows_at=lambda overlap: 10) == (RunSettings(2, (2,), 0.5), 40.0)


def test_gpu_out_of_memory_retries_with_one_window_then_on_the_cpu(tiny_model, caplog, monkeypatch):
    """A GPU out-of-memory error (simulated: this machine has no GPU) is answered by one window
    per call, then by the CPU, with the same probabilities; on the CPU it is re-raised."""
    seg = Segmenter(tiny_model, device="cpu", time_budget_s=None)
    image, body = _image_with_body(seg.plans.patch_size_zyx)
    settings = RunSettings(1, (2,), 0.25)
    reference = seg.probabilities(image, settings, body)
    seg.feed, seg.device = Feed(2, False, 0.0), torch.device("meta")  # pretend: a GPU, 2 per call
    real, seen = seg._sliding_window, []

    def on_a_full_gpu(*args):
        seen.append((seg.device.type, seg.feed.batch))
        if seg.device.type != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args)

    monkeypatch.setattr(seg, "_sliding_window", on_a_full_gpu)
    with caplog.at_level(logging.WARNING):
        out = seg.probabilities(image, settings, body)
    assert seen == [("meta", 2), ("meta", 1), ("cpu", 1)]
    assert "retrying with 1" in caplog.text and "continuing on the CPU" in caplog.text
    np.testing.assert_allclose(out, reference, atol=1e-6)
    monkeypatch.setattr(seg, "_sliding_window", lambda *a: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("x")))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        seg.probabilities(image, settings, body)


def test_a_feed_the_backend_cannot_run_is_skipped(tiny_model, monkeypatch):
    real = Segmenter._seconds_per_window

    def no_channels_last(self, batch, channels_last):
        if channels_last:
            raise RuntimeError("channels-last 3-D convolution not supported (simulated)")
        return real(self, batch, channels_last)

    monkeypatch.setattr(Segmenter, "_seconds_per_window", no_channels_last)
    seg = Segmenter(tiny_model, device="cpu")
    assert seg.feed.channels_last is False and seg.feed.seconds_per_window > 0


def test_remade_estimate_warns_only_when_windows_are_over_1_5x_the_tuned_seconds():
    """The re-made estimate after a case's first windows: always the seconds left at the
    measured rate; a warning with both rates only past 1.5x the start-up timing."""
    info, warning = remade_estimate(0.097, 0.110, 400)
    assert info == "network: about 44 s left at 0.110 s per window (timed at start-up: 0.097 s)"
    assert warning is None
    assert remade_estimate(0.1, 0.15, 10)[1] is None  # 1.5x exactly: the blending's share, not a slower machine
    info, warning = remade_estimate(0.097, 0.265, 400)
    assert info.startswith("network: about 106 s left at 0.265 s per window")
    assert warning is not None and "0.265 s" in warning and "0.097 s" in warning and "2.7x" in warning
    assert "slower now than when it was tuned" in warning
    assert remade_estimate(0.0, 5.0, 3)[1] is None  # not timed (tune=False): nothing to compare with
