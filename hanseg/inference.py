"""The :class:`Segmenter`: built once from a model folder, then one call per case.

``predict(ct, mr)`` = preprocess (shared with training) → sliding-window inference on the
canonical grid (MONAI, gaussian blending, the plan's patch and overlap), softmax averaged
over the plan's folds with one network instance whose weights are swapped → probabilities
back onto the CT grid as labels (:mod:`hanseg.postprocess`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference

from .budget import RunSettings, choose
from .errors import ModelError
from .labels import NUM_CLASSES, lr_swap_table
from .model_dir import load_model_dir, load_state_dict
from .networks import build_network
from .postprocess import probabilities_to_ct
from .preprocess import preprocess_case

log = logging.getLogger(__name__)

#: Default seconds per case for :class:`Segmenter` (``process.py --time-budget``): well inside
#: Grand-Challenge's default job limit (3600 s) even on a CPU, and enough for full settings
#: on a GPU. Post-processing and I/O get :data:`RESERVE` of it.
DEFAULT_TIME_BUDGET_S = 300.0
RESERVE = 0.2


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray            # uint8 z,y,x on the CT grid, 0..30
    warnings: tuple[str, ...]     # things the user must know (e.g. CT-only fallback)
    seconds: float


def resolve_device(requested: str) -> tuple[torch.device, str | None]:
    """``auto`` → CUDA if present else CPU. ``cuda`` without a GPU → CPU plus a warning."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        return torch.device("cpu"), "--device cuda was asked for but no CUDA GPU is available: running on the CPU"
    if requested == "cpu" or not has_cuda:
        return torch.device("cpu"), None
    return torch.device("cuda"), None


class Segmenter:
    """Loads and checks the model once; :meth:`predict` segments one case."""

    def __init__(self, model_dir: Path, device: str = "auto",
                 time_budget_s: float | None = DEFAULT_TIME_BUDGET_S, mirroring: bool = True) -> None:
        files = load_model_dir(Path(model_dir))
        self.time_budget_s, self.mirroring = time_budget_s, mirroring
        self.plans = files.plans
        self.device, self.device_warning = resolve_device(device)
        if self.device_warning:
            log.warning(self.device_warning)
        self.network = build_network(self.plans.network, len(self.plans.channels), NUM_CLASSES)
        self.state_dicts = [load_state_dict(p) for p in files.weight_paths]
        for path, state in zip(files.weight_paths, self.state_dicts):
            try:  # fail at start-up, not after the first case has been read
                self.network.load_state_dict(state)
            except RuntimeError as exc:
                raise ModelError(f"{path.name} does not fit the network in plans.json: {exc}") from exc
        self.network.to(self.device).eval()
        self.seconds_per_window = self._time_one_window() if time_budget_s is not None else 0.0
        log.info("model %s: %s, %d fold(s), device %s, %.2f s per window", files.root, self.plans.network.name,
                 len(self.state_dicts), self.device, self.seconds_per_window)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def _time_one_window(self) -> float:
        """Seconds for one sliding-window step on this machine (after a warm-up pass)."""
        patch = torch.zeros((self.plans.sw_batch_size, len(self.plans.channels), *self.plans.patch_size_zyx),
                            device=self.device)
        with self._autocast():
            self.network(patch)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            self.network(patch)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return (time.perf_counter() - start) / self.plans.sw_batch_size

    def settings_for(self, shape_zyx: tuple[int, ...], seconds_used: float) -> RunSettings:
        """Folds, mirroring and overlap for a grid of ``shape_zyx`` within the time budget."""
        left = None if self.time_budget_s is None else self.time_budget_s * (1 - RESERVE) - seconds_used
        settings, estimate = choose(shape_zyx, self.plans.patch_size_zyx, len(self.state_dicts), self.plans.overlap,
                                    self.seconds_per_window, left, self.mirroring)
        budget = "no time budget" if left is None else f"{left:.0f} s left of the {self.time_budget_s:.0f} s budget"
        log.info("inference: %s (about %.0f s; %s)", settings.describe(), estimate, budget)
        return settings

    def _window_pass(self, inputs: torch.Tensor, overlap: float) -> torch.Tensor:
        """Softmax (C,Z,Y,X) of one sliding-window pass, computed in place: a 31-channel volume
        is ~1 GB on a full-size case, and ``torch.softmax`` would hold a second one."""
        with self._autocast():
            logits = sliding_window_inference(
                inputs, roi_size=self.plans.patch_size_zyx, sw_batch_size=self.plans.sw_batch_size,
                predictor=self.network, overlap=overlap, mode="gaussian",
                sw_device=self.device, device=torch.device("cpu"))
        probs = logits.float()[0]  # no copy when the output is already float32 (always on CPU)
        probs -= probs.amax(dim=0, keepdim=True)
        probs.exp_()
        probs /= probs.sum(dim=0, keepdim=True)
        return probs

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray, settings: RunSettings | None = None) -> np.ndarray:
        """Softmax (C,Z,Y,X) float32 on the input's grid, averaged over folds and mirrors.

        A mirrored pass flips the input along an array axis and flips the softmax back; for
        the x axis (patient left-right) the L/R channels are swapped too, since the network
        calls a mirrored left parotid a right one.
        """
        settings = settings or RunSettings(len(self.state_dicts), (), self.plans.overlap)
        inputs = torch.from_numpy(image[None])
        swap = torch.as_tensor(lr_swap_table())
        total: torch.Tensor | None = None
        for state in self.state_dicts[: settings.n_folds]:
            if len(self.state_dicts) > 1:
                self.network.load_state_dict(state)
            probs = self._window_pass(inputs, settings.overlap)
            total = probs if total is None else total.add_(probs)
            del probs  # accumulate pass by pass: at most two 31-channel volumes at a time
            for axis in settings.mirror_axes:
                mirrored = self._window_pass(inputs.flip(axis + 2), settings.overlap)
                # Flip back one channel at a time (a whole-volume flip would be a third copy).
                for c in range(mirrored.shape[0]):
                    total[int(swap[c]) if axis == 2 else c].add_(mirrored[c].flip(axis))
                del mirrored
        assert total is not None
        return total.div_(settings.passes).numpy()

    def predict(self, ct: sitk.Image, mr: sitk.Image | None) -> Prediction:
        start = time.perf_counter()
        case = preprocess_case(ct, mr, self.plans, windows=True)
        settings = self.settings_for(case.image.shape[1:], time.perf_counter() - start)
        probs = self.probabilities(case.image, settings)
        labels = probabilities_to_ct(probs, case.grid, ct, case.box, self.plans.max_components)
        seconds = time.perf_counter() - start
        log.info("segmented in %.1f s", seconds)
        warnings = case.warnings + ((self.device_warning,) if self.device_warning else ())
        return Prediction(labels, warnings, seconds)
