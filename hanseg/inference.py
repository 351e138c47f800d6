"""The :class:`Segmenter`: built once from a model folder, then one call per case.

``predict(ct, mr)`` = preprocess (shared with training) → one sliding-window pass on the
canonical grid (MONAI, gaussian blending, the plan's patch and overlap) whose windows' logits
are averaged over the plan's folds and the left-right mirror → softmax → probabilities back
onto the CT grid as labels (:mod:`hanseg.postprocess`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeGuard

import numpy as np
import SimpleITK as sitk
import torch

from . import DEFAULT_TIME_BUDGET_S, feed_cache
from .budget import RunSettings, body_windows, choose, n_windows, remade_estimate
from .coverage import coverage_warnings
from .errors import ModelError
from .labels import NUM_CLASSES, lr_swap_table
from .model_dir import load_model_dir, load_state_dict, model_fingerprint
from .networks import build_network, fold_batch_norm
from .postprocess import probabilities_to_ct
from .precision import Precision, resolve_precision
from .preprocess import preprocess_case
from .tiling import Corner, add_by_slice, blend
from .timing import CLOCK, step

log = logging.getLogger(__name__)

#: Default seconds per case for :class:`Segmenter` (``process.py --time-budget``): well inside
#: Grand-Challenge's default job limit (3600 s) even on a CPU, and enough for full settings
#: on a GPU. Post-processing and I/O get :data:`RESERVE` of it.
RESERVE = 0.2
#: Background logit of a window that is not run (all other classes 0): softmax 0.996.
AIR_LOGIT = 9.0
#: Windows, after the first call's, over which a case's seconds per window are measured for
#: its re-made estimate (:meth:`Segmenter._measure`); a case with few windows is measured by
#: half-way through them.
MEASURE_WINDOWS = 4


@dataclass
class WindowClock:
    """One sliding window's progress, for the estimate re-made after its first windows: the
    first call's end starts the clock, so the measured span holds whole cycles of cutting,
    network and blending (the first call's blend included, the one-off pass over all the
    corners before it not)."""

    total: int  # windows the pass runs (those holding the body, when air is skipped)
    passes: int  # network passes per window (folds × mirrors)
    calls: int = 0
    done: int = 0  # windows run so far
    started: float = 0.0  # end of the first call
    at_start: int = 0  # windows run by then
    measured: bool = False


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # uint8 z,y,x on the CT grid, 0..30
    warnings: tuple[str, ...]  # things the user must know (e.g. CT-only fallback)
    seconds: float
    #: the registration of the MR to the CT (CT point → MR point) when the MR was used, else None:
    #: what the QA picture resamples the MR with (``process.py --qa``)
    mr_transform: sitk.Transform | None = None


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


@dataclass(frozen=True)
class Feed:
    """How sliding windows go through the network: ``batch`` at a time, in channels-last or the
    default memory layout (the logits are the same; only the speed differs)."""

    batch: int
    channels_last: bool
    seconds_per_window: float

    def describe(self) -> str:
        return f"{self.batch} window(s) per call, {'channels-last' if self.channels_last else 'contiguous'}"


#: Feeds (batch, channels_last) tried at start-up besides the plan's (its sw_batch_size,
#: contiguous), per device type. 4 windows per call is left to GPUs: on CPU cores it was no
#: faster than 2 (0.097 against 0.098 s) and its trial alone costs a second.
FEEDS = {"cpu": ((1, True), (2, True)), "cuda": ((1, True), (2, True), (4, True))}


def _can_skip(body: np.ndarray | None, patch_zyx: tuple[int, ...]) -> TypeGuard[np.ndarray]:
    """Windows can be matched to ``body`` unless MONAI pads the grid (an axis shorter than the
    patch shifts its window coordinates)."""
    return body is not None and all(n >= p for n, p in zip(body.shape, patch_zyx))


class Segmenter:
    """Loads and checks the model once; :meth:`predict` segments one case."""

    def __init__(
        self,
        model_dir: Path,
        device: str = "auto",
        time_budget_s: float | None = DEFAULT_TIME_BUDGET_S,
        mirroring: bool = True,
        tune: bool = True,
        precision: str = "auto",
    ) -> None:
        """``time_budget_s`` None: the richest settings, whatever they cost. ``tune`` False:
        windows go to the network as the plan says, untimed (tests that compare runs).
        ``precision``: ``auto``, ``fp32`` or ``bf16`` (:mod:`hanseg.precision`)."""
        files = load_model_dir(Path(model_dir))
        self.time_budget_s, self.mirroring = time_budget_s, mirroring
        self.windows_skipped = 0  # by the last probabilities() call (pure-air windows)
        self.network_seconds = 0.0  # inside the network's forward calls, since the last sliding window began
        self._buffer: torch.Tensor | None = None  # a window's passes summed (:meth:`_window_buffer`)
        self._planned: tuple[tuple[int, ...], float, int] | None = None  # grid, overlap, windows (settings_for)
        self._clock: WindowClock | None = None  # the running pass's (:meth:`_measure`)
        self.plans = files.plans
        #: what DICOM outputs name as the model that made them
        self.model_version = str(files.metadata.get("version", "unversioned"))
        #: version and weight hashes in one sha256: DICOM outputs derive their UIDs from it
        self.model_fingerprint = model_fingerprint(files)
        self.device, self.device_warning = resolve_device(device)
        if self.device_warning:
            log.warning(self.device_warning)
        self.requested_precision = precision
        self.precision: Precision = resolve_precision(precision, self.device.type)
        log.info("network precision %s: %s", self.precision.name, self.precision.reason)
        self.networks = [self._load(path) for path in files.weight_paths]
        self.feed = self._cached_feed() if tune else Feed(self.plans.sw_batch_size, False, 0.0)
        self.seconds_per_window = self.feed.seconds_per_window
        log.info(
            "model %s: %s, %d fold(s), device %s, %s, %.2f s per window (%s)",
            files.root,
            self.plans.network.name,
            len(self.networks),
            self.device,
            self.precision.name,
            self.seconds_per_window,
            self.feed.describe(),
        )

    def _load(self, path: Path) -> torch.nn.Module:
        """One fold's network. Each fold keeps its own instance (20 MB for the default UNet)
        so that every window can be averaged over folds at once: one 31-channel volume per
        case instead of one per fold (1.5 GB each on a full-size grid)."""
        network = build_network(self.plans.network, len(self.plans.channels), NUM_CLASSES)
        try:  # fail at start-up, not after the first case has been read
            network.load_state_dict(load_state_dict(path))
        except RuntimeError as exc:
            raise ModelError(f"{path.name} does not fit the network in plans.json: {exc}") from exc
        network.eval()
        fold_batch_norm(network)  # the same outputs with a pass less over every activation
        return network.to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        """The network's convolutions in :attr:`precision`; only the network call is wrapped,
        so blending and the softmax stay float32."""
        if not self.precision.autocast:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision.name == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _layout(self, channels_last: bool) -> None:
        fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        for network in self.networks:
            # converts the 5-D weights only; torch's stubs of Module.to lack the memory_format
            # keyword that it accepts (and documents) at run time
            network.to(memory_format=fmt)  # type: ignore[call-overload]

    @torch.inference_mode()
    def _seconds_per_window(self, batch: int, channels_last: bool) -> float:
        """Seconds per window when ``batch`` windows go through the network at once (timed
        after a warm-up call, which builds the kernels for that shape)."""
        self._layout(channels_last)
        patch = torch.zeros((batch, len(self.plans.channels), *self.plans.patch_size_zyx), device=self.device)
        if channels_last:
            patch = patch.contiguous(memory_format=torch.channels_last_3d)
        self._run(self.networks[0], patch)  # waits for a GPU's kernels itself
        start = time.perf_counter()
        self._run(self.networks[0], patch)
        return (time.perf_counter() - start) / batch

    def _feed_key(self) -> str:
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else feed_cache.cpu_model()
        threads = torch.get_num_threads()
        return feed_cache.feed_key(self.model_fingerprint, device, threads, torch.__version__, self.precision.name)

    def _cached_feed(self) -> Feed:
        """The feed chosen on an earlier start on this machine with this model and settings
        (:mod:`hanseg.feed_cache`), timed again alone (two calls: a machine busier or quieter
        than then must not carry an old estimate into the time budget); else :meth:`_tune` now,
        and the choice remembered."""
        key = self._feed_key()
        entry = feed_cache.load(key)
        if entry is not None:
            try:
                batch, channels_last = int(entry["batch"]), bool(entry["channels_last"])
            except (KeyError, TypeError, ValueError):
                log.debug("ignoring a malformed cached window feed: %s", entry)
            else:
                feed = Feed(batch, channels_last, self._seconds_per_window(batch, channels_last))
                log.info("window feed as chosen on an earlier start on this machine (%s)", feed_cache.cache_file())
                return feed
        feed = self._tune()
        feed_cache.store(key, {"batch": feed.batch, "channels_last": feed.channels_last})
        return feed

    def _tune(self) -> Feed:
        """The fastest of :data:`FEEDS` on this device. Measured, not assumed: on 2 EPYC cores
        channels-last 3-D convolutions on 2 windows at once ran 2.3× faster per window than one
        contiguous window (0.098 against 0.226 s), with the same logits to 1e-4."""
        plain = (self.plans.sw_batch_size, False)
        timed = [Feed(*plain, self._seconds_per_window(*plain))]  # must work: no fallback below it
        for batch, channels_last in FEEDS.get(self.device.type, FEEDS["cpu"]):
            if (batch, channels_last) == plain:
                continue
            try:
                timed.append(Feed(batch, channels_last, self._seconds_per_window(batch, channels_last)))
            except RuntimeError as exc:  # an out-of-memory error or a layout a backend lacks
                log.debug("window feed %d/%s not usable here: %s", batch, channels_last, exc)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        fastest = min(f.seconds_per_window for f in timed)
        # Within 10% of the fastest, the fewest windows per call: each one more costs memory
        # (4 instead of 2 put 0.5 GiB on a 512² case's peak for no measurable speed).
        best = min((f for f in timed if f.seconds_per_window <= 1.1 * fastest), key=lambda f: f.batch)
        self._layout(best.channels_last)
        log.debug("window feeds tried: %s", "; ".join(f"{f.describe()} {f.seconds_per_window:.3f} s" for f in timed))
        return best

    def settings_for(
        self, shape_zyx: tuple[int, ...], seconds_used: float, body: np.ndarray | None = None
    ) -> RunSettings:
        """Folds, mirroring and overlap for a grid of ``shape_zyx`` within the time budget
        (counting only the windows that hold ``body`` voxels, when given)."""
        left = None if self.time_budget_s is None else self.time_budget_s * (1 - RESERVE) - seconds_used
        patch = self.plans.patch_size_zyx
        windows_at = None
        if _can_skip(body, patch):
            windows_at = functools.cache(lambda overlap: body_windows(body, patch, overlap))
        settings, estimate = choose(
            shape_zyx,
            patch,
            len(self.networks),
            self.plans.overlap,
            self.seconds_per_window,
            left,
            self.mirroring,
            windows_at,
        )
        budget = "no time budget" if left is None else f"{left:.0f} s left of the {self.time_budget_s:.0f} s budget"
        log.info("inference: %s (about %.0f s; %s)", settings.describe(), estimate, budget)
        count = windows_at(settings.overlap) if windows_at else n_windows(shape_zyx, patch, settings.overlap)
        self._planned = (tuple(shape_zyx), settings.overlap, count)  # counted already: not again per pass
        return settings

    def _logits(self, windows: torch.Tensor, settings: RunSettings) -> torch.Tensor:
        """Logits of a batch of windows averaged over the settings' folds and mirrors, as
        nnU-Net v2 averages them. A mirrored input's logits are flipped back and, for the x
        axis (patient left-right), their L/R channels swapped: the network calls a mirrored
        left parotid a right one. Blending is linear, so this equals averaging whole-volume
        passes over folds, while only one 31-channel volume is ever held.

        A single pass comes back as the network gave it (bfloat16 or float16 under autocast,
        channels-last or not): :func:`hanseg.tiling.blend` turns it into float32 slice by
        slice, which is exact and costs a third of a whole-window conversion. Several passes
        are summed the same way, slice by slice (:func:`hanseg.tiling.add_by_slice`), into one
        float32 window."""
        if self.feed.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        networks = self.networks[: settings.n_folds]
        if settings.passes == 1:
            return self._run(networks[0], windows)
        # the swap is its own inverse: mirrored channel swap[c] is channel c's
        swap = torch.as_tensor(lr_swap_table(), device=windows.device)
        total = self._window_buffer((windows.shape[0], NUM_CLASSES, *windows.shape[2:]), windows.device)
        first = True
        for network in networks:
            for b, out in enumerate(self._run(network, windows)):
                add_by_slice(total[b], out, assign=first)
            first = False
            for axis in settings.mirror_axes:
                mirrored = self._run(network, windows.flip(axis + 2)).flip(axis + 2)
                for b, out in enumerate(mirrored):
                    add_by_slice(total[b], out, channels=swap if axis == 2 else None)
        return total.div_(settings.passes)

    def _window_buffer(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """One float32 buffer for the sum of a window's passes, kept between calls: a fresh
        38 MB tensor per window cost as much as adding a pass into it. The blend has read it
        before the next call."""
        buffer = self._buffer
        if buffer is None or tuple(buffer.shape) != shape or buffer.device != device:
            buffer = torch.empty(shape, device=device)
            self._buffer = buffer
        return buffer

    def _run(self, network: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
        """One network call in :attr:`precision`, its logits as the network gives them (on
        a GPU the clock waits for the kernels, so the seconds are the network's alone)."""
        start = time.perf_counter()
        with self._autocast():
            out: torch.Tensor = network(windows)
        if out.device.type == "cuda":
            torch.cuda.synchronize()
        self.network_seconds += time.perf_counter() - start
        return out

    def _air_test(self, body: np.ndarray | None) -> Callable[[Corner], bool] | None:
        """Given the grid's body mask, a test that answers True for a window without a single
        body voxel: such a window is not run but counted as background (:data:`AIR_LOGIT`).
        Exact on every body voxel: each window holding one is still run, and a window writes
        only its own voxels. Only air (below the body threshold) can change. None when the grid
        is smaller than the patch (it is padded; every window runs)."""
        if not _can_skip(body, self.plans.patch_size_zyx):
            return None
        pz, py, px = self.plans.patch_size_zyx

        def is_air(corner: Corner) -> bool:
            z, y, x = corner
            air = not body[z : z + pz, y : y + py, x : x + px].any()
            self.windows_skipped += air
            return air

        return is_air

    @torch.inference_mode()
    def probabilities(
        self, image: np.ndarray, settings: RunSettings | None = None, body: np.ndarray | None = None
    ) -> np.ndarray:
        """Softmax (C,Z,Y,X) float32 on the input's grid of the logits averaged over the
        settings' folds and mirrors (:meth:`_logits`), in one sliding-window pass.

        With ``body`` (Z,Y,X bool), windows that hold none of it are not run
        (:meth:`_air_test`); a grid smaller than the patch, which is padded, runs every window.
        The softmax is computed in place: a 31-channel volume is ~1.5 GB on a full-size case,
        and ``torch.softmax`` would hold a second one.
        """
        settings = settings or RunSettings(len(self.networks), (), self.plans.overlap)
        if settings.n_folds > len(self.networks):
            raise ValueError(f"{settings.n_folds} folds asked for, the model has {len(self.networks)}")
        start = time.perf_counter()
        while True:
            try:
                logits = self._sliding_window(image, settings, body)
                break
            except torch.cuda.OutOfMemoryError:
                self._after_out_of_memory()
        CLOCK.add("network", self.network_seconds)
        CLOCK.add("sliding-window", time.perf_counter() - start - self.network_seconds)
        if self.windows_skipped:
            log.info("skipped %d window(s) of pure air", self.windows_skipped)
        with step("softmax"):
            probs = logits  # float32 already: blended in place, no second 31-channel volume
            probs -= probs.amax(dim=0, keepdim=True)
            probs.exp_()
            probs /= probs.sum(dim=0, keepdim=True)
        return probs.numpy()

    def _sliding_window(self, image: np.ndarray, settings: RunSettings, body: np.ndarray | None) -> torch.Tensor:
        """Blended logits (C,Z,Y,X) (:func:`hanseg.tiling.blend`), accumulated in CPU memory
        whatever the device: a full-size grid's 31 channels (1.5 GB) stay off a GPU that has
        the network to run."""
        self.windows_skipped = 0
        self.network_seconds = 0.0
        self._clock = WindowClock(self._window_count(image.shape[1:], settings.overlap, body), settings.passes)

        def predict(windows: torch.Tensor, _corners: Sequence[Corner]) -> torch.Tensor:
            logits = self._logits(windows, settings)
            self._measure(windows.shape[0])
            return logits

        return blend(
            image,
            self.plans.patch_size_zyx,
            settings.overlap,
            NUM_CLASSES,
            predict,
            batch=self.feed.batch,
            skip=self._air_test(body),
            air_logit=AIR_LOGIT,
            device=self.device,
        )

    def _window_count(self, shape_zyx: tuple[int, ...], overlap: float, body: np.ndarray | None) -> int:
        """The windows a pass over ``shape_zyx`` runs: as counted by :meth:`settings_for` for
        this grid and overlap, else counted now."""
        patch = self.plans.patch_size_zyx
        if self._planned is not None and self._planned[:2] == (tuple(shape_zyx), overlap):
            return self._planned[2]
        return body_windows(body, patch, overlap) if _can_skip(body, patch) else n_windows(shape_zyx, patch, overlap)

    def _measure(self, n: int) -> None:
        """After each network call of ``n`` windows: once :data:`MEASURE_WINDOWS` windows after
        the first call have run (or half of the pass, if sooner), the case's seconds per window
        as measured, its re-made network estimate, and a warning when the machine is slower
        than at start-up (:func:`hanseg.budget.remade_estimate`). A clock read per call, no
        more: on a GPU :meth:`_run` has already waited for the kernels."""
        clock = self._clock
        if clock is None or clock.measured:
            return
        now = time.perf_counter()
        clock.calls += 1
        clock.done += n
        if clock.calls == 1:
            clock.started, clock.at_start = now, clock.done
            return
        span = clock.done - clock.at_start
        left = max(0, clock.total - clock.done)
        if span < MEASURE_WINDOWS and left > span:
            return
        clock.measured = True
        measured = (now - clock.started) / (span * clock.passes)
        info, warning = remade_estimate(self.seconds_per_window, measured, left * clock.passes)
        log.info("%s", info)
        if warning:
            log.warning("%s", warning)

    def _after_out_of_memory(self) -> None:
        """A GPU ran out of memory (another process on it, a large network): retry with one
        window per call, then on the CPU, rather than fail the case. Re-raises on the CPU."""
        if self.device.type == "cpu":
            raise torch.cuda.OutOfMemoryError("out of memory on the CPU fallback too")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.feed.batch > 1:
            log.warning("GPU out of memory with %d windows per call: retrying with 1", self.feed.batch)
            self.feed = replace(self.feed, batch=1)
            return
        log.warning("GPU out of memory with 1 window per call: continuing on the CPU (slower)")
        self.device = torch.device("cpu")
        self.precision = resolve_precision(self.requested_precision, "cpu")  # float16 is for GPUs
        for network in self.networks:
            network.to(self.device)

    def predict(self, ct: sitk.Image, mr: sitk.Image | None) -> Prediction:
        start = time.perf_counter()
        case = preprocess_case(ct, mr, self.plans, windows=True)
        with step("settings"):
            settings = self.settings_for(case.image.shape[1:], time.perf_counter() - start, case.body)
        probs = self.probabilities(case.image, settings, case.body)
        with step("to-ct-grid"):
            labels = probabilities_to_ct(probs, case.grid, ct, case.box, self.plans.max_components)
            del probs  # 31 channels on the grid: not held while the coverage check reads the CT
        with step("coverage"):
            # a CT cut short or cut at the top is segmented all the same: say what it lacks
            coverage = coverage_warnings(ct, labels, self.plans, case.ct_body)
        seconds = time.perf_counter() - start
        log.info("segmented in %.1f s", seconds)
        warnings = case.warnings + coverage + ((self.device_warning,) if self.device_warning else ())
        registered = case.registration.transform if case.registration is not None and case.registration.ok else None
        return Prediction(labels, warnings, seconds, registered)
