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

from .errors import ModelError
from .labels import NUM_CLASSES
from .model_dir import load_model_dir, load_state_dict
from .networks import build_network
from .postprocess import probabilities_to_ct
from .preprocess import preprocess_case

log = logging.getLogger(__name__)


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

    def __init__(self, model_dir: Path, device: str = "auto") -> None:
        files = load_model_dir(Path(model_dir))
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
        log.info("model %s: %s, %d fold(s), device %s", files.root, self.plans.network.name,
                 len(self.state_dicts), self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Softmax (C,Z,Y,X) float32 on the input's grid, averaged over folds."""
        inputs = torch.from_numpy(image[None])
        total: torch.Tensor | None = None
        for state in self.state_dicts:
            if len(self.state_dicts) > 1:
                self.network.load_state_dict(state)
            with self._autocast():
                logits = sliding_window_inference(
                    inputs, roi_size=self.plans.patch_size_zyx, sw_batch_size=self.plans.sw_batch_size,
                    predictor=self.network, overlap=self.plans.overlap, mode="gaussian",
                    sw_device=self.device, device=torch.device("cpu"))
            probs = torch.softmax(logits.float(), dim=1)[0]
            total = probs if total is None else total.add_(probs)
        assert total is not None
        return total.div_(len(self.state_dicts)).numpy()

    def predict(self, ct: sitk.Image, mr: sitk.Image | None) -> Prediction:
        start = time.perf_counter()
        case = preprocess_case(ct, mr, self.plans)
        probs = self.probabilities(case.image)
        labels = probabilities_to_ct(probs, case.grid, ct, case.box, self.plans.max_components)
        seconds = time.perf_counter() - start
        log.info("segmented in %.1f s", seconds)
        warnings = case.warnings + ((self.device_warning,) if self.device_warning else ())
        return Prediction(labels, warnings, seconds)
