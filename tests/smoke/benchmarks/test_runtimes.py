"""The runtime benchmark (benchmarks.runtimes) on a tiny untrained network: each runtime's
logits match eager torch fp32's, its timings are positive, a runtime that fails or hangs is a
recorded error, and a runtime can stand in for the Segmenter's network over a whole grid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.runtimes import (
    RUNTIMES,
    Built,
    Case,
    Runtime,
    base_requirements,
    case_labels,
    dist_closure,
    image_cost,
    measure_runtime,
    random_windows,
    real_window,
)
from hanseg.inference import Segmenter
from helpers import write_tiny_model

#: |logit difference| allowed against torch fp32: float32 runtimes differ only in the order of
#: their sums; bfloat16 keeps 8 bits of mantissa (a relative error of 2^-8 per product).
FP32_TOLERANCE = 1e-4
BF16_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    model = write_tiny_model(tmp_path_factory.mktemp("runtimes") / "model")
    return Segmenter(model, device="cpu", tune=False, precision="fp32")


def probes(seg: Segmenter) -> dict[str, np.ndarray]:
    patch = tuple(seg.plans.patch_size_zyx)
    grid = random_windows(1, len(seg.plans.channels), (patch[0] + 4, patch[1] - 6, patch[2] + 8), seed=7)[0]
    return {"random": random_windows(1, len(seg.plans.channels), patch), "real": real_window(grid, patch)}


def test_each_runtime_matches_torch_fp32_and_is_timed(tiny: Segmenter, tmp_path: Path) -> None:
    network, windows = tiny.networks[0], probes(tiny)
    assert windows["real"].shape == windows["random"].shape  # cut (and padded where short) to the patch
    with torch.inference_mode():
        expected = {k: network(torch.from_numpy(w)).numpy() for k, w in windows.items()}
    reference, run = measure_runtime(RUNTIMES["torch_fp32"], network, windows, {}, 2, [1, 2], 1, 2, tmp_path)
    assert run is not None and "error" not in reference
    assert set(reference["variants"]) == {"contiguous", "channels_last"}
    for name, w in windows.items():
        np.testing.assert_allclose(run(w), expected[name], atol=FP32_TOLERANCE)
    for name, tolerance in [
        ("torch_bf16", BF16_TOLERANCE),
        ("openvino_fp32", FP32_TOLERANCE),
        ("openvino_bf16", BF16_TOLERANCE),
        ("onnxruntime_fp32", FP32_TOLERANCE),
    ]:
        result, run = measure_runtime(RUNTIMES[name], network, windows, expected, 2, [1, 2], 1, 2, tmp_path)
        assert run is not None and "error" not in result, result
        assert set(result["seconds_per_window"]) == {"1", "2"}
        assert all(s > 0 for s in result["seconds_per_window"].values())
        assert result["max_abs_logit_diff_random"] < tolerance, name
        assert result["max_abs_logit_diff_real"] < tolerance, name
        assert run(windows["random"]).shape == expected["random"].shape
        assert run(np.concatenate([windows["random"]] * 2)).shape[0] == 2  # any windows per call


def test_a_failing_or_hanging_runtime_is_recorded_not_raised(tiny: Segmenter, tmp_path: Path) -> None:
    def broken(network: torch.nn.Module, example: np.ndarray, threads: int, workdir: Path) -> Built:
        raise RuntimeError("no such backend\nthe last line says why")

    def hangs(network: torch.nn.Module, example: np.ndarray, threads: int, workdir: Path) -> Built:
        time.sleep(5)
        raise AssertionError("the time limit should have stopped it")

    windows = probes(tiny)
    result, run = measure_runtime(Runtime("broken", (("a", broken),)), tiny.networks[0], windows, {}, 1, [1])
    assert run is None and result["error"] == "a: RuntimeError: the last line says why"
    start = time.perf_counter()
    slow = Runtime("hangs", (("a", hangs),), timeout_s=0.5)
    result, run = measure_runtime(slow, tiny.networks[0], windows, {}, 1, [1])
    assert run is None and "TimeoutError" in result["error"] and time.perf_counter() - start < 10


def test_a_runtime_stands_in_for_the_network_over_a_grid(tiny: Segmenter, tmp_path: Path) -> None:
    network = tiny.networks[0]
    image = random_windows(1, len(tiny.plans.channels), (20, 40, 44), seed=3)[0]
    case = Case(image, None)
    _, torch_run = measure_runtime(RUNTIMES["torch_fp32"], network, probes(tiny), {}, 1, [1], 1, 1, tmp_path)
    _, ov_run = measure_runtime(RUNTIMES["openvino_fp32"], network, probes(tiny), {}, 1, [1], 1, 1, tmp_path)
    assert torch_run is not None and ov_run is not None
    labels, seconds = case_labels(tiny, torch_run, case)
    other, _ = case_labels(tiny, ov_run, case)
    assert tiny.networks[0] is network  # put back
    assert labels.shape == image.shape[1:] and seconds > 0
    assert (labels == other).mean() > 0.999


def test_image_cost_counts_only_what_the_image_lacks() -> None:
    base = dist_closure(base_requirements())
    assert {"torch", "numpy", "simpleitk"} <= base
    added, mb = image_cost(("openvino",), base)
    assert "openvino" in added and "numpy" not in added and mb > 10
    assert image_cost((), base) == ([], 0.0)
