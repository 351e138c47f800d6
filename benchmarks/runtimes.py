"""Other runtimes for the shipped network, measured: adopted only if they win.

    python -m benchmarks.runtimes --model model --case test --out bench/runtimes \
        [--windows 1 2] [--repeats 7] [--runtimes torch_fp32 openvino_bf16 ...] [--skip-agreement]

The network is the one :class:`hanseg.inference.Segmenter` holds (``networks[0]``, fp32, after
whatever the Segmenter did to it at load), run on the plan's patch by:

* ``torch_fp32`` / ``torch_bf16``: eager torch, float32 or ``torch.autocast("cpu", bfloat16)``,
  timed in the contiguous and the channels-last-3d layout; the faster layout is reported;
* ``torch_compile_fp32`` / ``torch_compile_bf16``: ``torch.compile`` (inductor; it needs a C++
  compiler), under a time limit; its compile seconds are reported apart;
* ``openvino_fp32`` / ``openvino_bf16``: ``openvino.convert_model`` of the network, compiled
  for the CPU with ``INFERENCE_PRECISION_HINT`` f32 or bf16 (AMX where the CPU has it);
* ``onnxruntime_fp32``: ``torch.onnx.export`` (TorchScript exporter first, then dynamo) run by
  ONNX Runtime's CPUExecutionProvider.

Each runtime gets the same number of threads (the cores this process may use). Per runtime:
seconds per window (warm-up calls, then the median of ``--repeats`` timed calls, with 1 and 2
windows per call), the largest |logit difference| against eager torch fp32 on a seeded random
window and on a real window cut from the middle of ``--case``'s grid, and (unless
``--skip-agreement``) per-OAR Dice of the labels of the whole case (``Segmenter.probabilities``
with the runtime in place of the network: 1 fold, no mirroring, the plan's overlap) against
those of torch fp32. Also what each runtime adds to the Docker image: the installed size of
the distributions it needs beyond ``requirements.txt`` (their RECORD files). A runtime that
fails is recorded with its error's last line. Writes ``results.json`` and ``results.md`` in
``--out`` and prints the table.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict, TypeVar

if __name__ == "__main__":
    # --help and usage errors answer before torch, SimpleITK and the Segmenter are imported (~3 s):
    # the command line is built by benchmarks.cli_parsers, which imports none of them
    from benchmarks.cli_parsers import runtimes_args

    runtimes_args()

import numpy as np
import SimpleITK as sitk
import torch
from packaging.requirements import Requirement

from benchmarks.cli_parsers import RUNTIME_NAMES, runtimes_args, same_names
from hanseg.budget import RunSettings
from hanseg.compare import per_oar_dice
from hanseg.inference import Segmenter
from hanseg.preprocess import preprocess_case

log = logging.getLogger("benchmarks.runtimes")
T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent

#: A network call as every runtime is driven: windows (N, C, Z, Y, X) float32 in, logits out.
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class Built:
    """A runtime ready to run: its runner, the seconds its setup took (export, convert,
    compile: not in the per-window time), and what it is."""

    run: Runner
    setup_seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""


#: Builds a runtime for ``network`` (fp32, eval) on windows shaped like ``example``, with
#: ``threads`` threads, writing any exported file under the folder given.
Builder = Callable[[torch.nn.Module, np.ndarray, int, Path], Built]


@dataclass(frozen=True)
class Runtime:
    """A runtime by name: its variants (label, builder); the fastest variant is reported.
    ``timeout_s``: a limit on building and timing each variant (``torch.compile``)."""

    name: str
    variants: tuple[tuple[str, Builder], ...]
    packages: tuple[str, ...] = ()  # the distributions it needs at inference, beyond requirements.txt
    export_packages: tuple[str, ...] = ()  # needed only to make its model file (a build stage)
    timeout_s: float | None = None


class Timing(TypedDict):
    """One variant's speed: seconds per window by windows per call (keys "1", "2")."""

    seconds_per_window: dict[str, float]
    setup_seconds: dict[str, float]


class Agreement(TypedDict):
    """Per-OAR Dice of a runtime's labels of the whole case against torch fp32's."""

    mean_dice: float | None
    min_dice: float | None
    per_oar: dict[str, float]
    seconds: float  # the whole Segmenter.probabilities call with this runtime


class _Base(TypedDict):
    runtime: str


class RuntimeResult(_Base, total=False):
    """One runtime's row of results.json."""

    variant: str  # the reported (fastest) variant
    variants: dict[str, Timing]  # every variant measured
    seconds_per_window: dict[str, float]  # the reported variant's, by windows per call
    best_seconds_per_window: float
    speedup_vs_torch_fp32: float
    setup_seconds: dict[str, float]
    max_abs_logit_diff_random: float
    max_abs_logit_diff_real: float
    window_argmax_agreement_real: float  # fraction of the real window's voxels with torch fp32's argmax
    agreement: Agreement
    agreement_error: str
    mb_added: float
    packages_added: list[str]
    mb_export_only: float
    export_packages_added: list[str]
    note: str
    error: str


class Results(TypedDict):
    """results.json: the settings and machine, then one row per runtime."""

    settings: dict[str, Any]
    runtimes: list[RuntimeResult]


# ---------------------------------------------------------------------------------------------
# The runtimes


def _torch_runner(network: Callable[[torch.Tensor], torch.Tensor], channels_last: bool, bf16: bool) -> Runner:
    """Eager (or already compiled) torch: numpy in, float32 numpy out."""
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format

    @torch.inference_mode()
    def run(windows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(windows).contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            out = network(x)
        return out.float().contiguous().numpy()

    return run


def _layout(network: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """A copy of ``network`` in the layout asked for (the Segmenter's own stays as it is)."""
    import copy

    clone = copy.deepcopy(network).eval()
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    return clone.to(memory_format=fmt)  # type: ignore[call-overload]


def torch_eager(channels_last: bool, bf16: bool) -> Builder:
    def build(network: torch.nn.Module, example: np.ndarray, threads: int, workdir: Path) -> Built:
        torch.set_num_threads(threads)
        return Built(_torch_runner(_layout(network, channels_last), channels_last, bf16))

    return build


def torch_compiled(bf16: bool) -> Builder:
    """``torch.compile`` (inductor, default mode); compiling happens in the first calls, so the
    setup seconds are those of the first call on ``example``."""

    def build(network: torch.nn.Module, example: np.ndarray, threads: int, workdir: Path) -> Built:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        compiled = torch.compile(_layout(network, False))
        run = _torch_runner(compiled, False, bf16)
        run(example)
        return Built(run, {"compile_first_call": time.perf_counter() - start}, "inductor, contiguous layout")

    return build


def openvino_builder(hint: str) -> Builder:
    """``openvino.convert_model`` of the network (batch left dynamic), compiled per batch size
    on first use with that batch fixed (static shapes are what the CPU plugin runs fastest)."""

    def build(network: torch.nn.Module, example: np.ndarray, threads: int, workdir: Path) -> Built:
        import openvino as ov  # type: ignore[import-untyped]

        start = time.perf_counter()
        with torch.no_grad():
            model = ov.convert_model(network, example_input=torch.from_numpy(example))
        converted = time.perf_counter() - start
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        compiled: dict[int, Any] = {}

        def compile_for(batch: int) -> Any:
            if batch not in compiled:
                shaped = model.clone()
                shaped.reshape([batch, *example.shape[1:]])
                compiled[batch] = core.compile_model(shaped, "CPU", config)
            return compiled[batch]

        start = time.perf_counter()
        compile_for(example.shape[0])
        setup = {"convert": converted, "compile": time.perf_counter() - start}

        def run(windows: np.ndarray) -> np.ndarray:
            out = compile_for(windows.shape[0])(np.ascontiguousarray(windows, np.float32))[0]
            return np.asarray(out, np.float32)

        precision = compile_for(example.shape[0]).get_property("INFERENCE_PRECISION_HINT")
        return Built(run, setup, f"openvino {ov.__version__}, inference precision {precision}")

    return build


def export_onnx(network: torch.nn.Module, example: np.ndarray, path: Path) -> str:
    """The network as ONNX with a dynamic batch axis: the TorchScript exporter, then dynamo if
    that one fails. Returns which exporter wrote it."""
    x = torch.from_numpy(example)
    errors = []
    for dynamo in (False, True):
        try:
            with torch.no_grad():
                torch.onnx.export(
                    network,
                    (x,),
                    str(path),
                    input_names=["windows"],
                    output_names=["logits"],
                    dynamic_axes={"windows": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=17,
                    dynamo=dynamo,
                )
            return "dynamo" if dynamo else "torchscript"
        except Exception as exc:  # each exporter has its own failures; the next one may work
            errors.append(f"dynamo={dynamo}: {_last_line(exc)}")
            log.warning("torch.onnx.export %s", errors[-1])
    raise RuntimeError("; ".join(errors))


def onnxruntime_builder(network: torch.nn.Module, example: np.ndarray, threads: int, workdir: Path) -> Built:
    import onnxruntime as ort  # type: ignore[import-untyped]

    path = workdir / "network.onnx"
    start = time.perf_counter()
    exporter = export_onnx(network, example, path)
    exported = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    setup = {"export": exported, "session": time.perf_counter() - start}

    def run(windows: np.ndarray) -> np.ndarray:
        out = session.run(None, {"windows": np.ascontiguousarray(windows, np.float32)})[0]
        return np.asarray(out, np.float32)

    return Built(run, setup, f"onnxruntime {ort.__version__}, {exporter} export, CPUExecutionProvider")


EAGER_LAYOUTS = (("contiguous", False), ("channels_last", True))
RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("torch_fp32", tuple((name, torch_eager(cl, False)) for name, cl in EAGER_LAYOUTS)),
        Runtime("torch_bf16", tuple((name, torch_eager(cl, True)) for name, cl in EAGER_LAYOUTS)),
        Runtime("torch_compile_fp32", (("inductor", torch_compiled(False)),), timeout_s=600),
        Runtime("torch_compile_bf16", (("inductor", torch_compiled(True)),), timeout_s=600),
        Runtime("openvino_fp32", (("f32", openvino_builder("f32")),), packages=("openvino",)),
        Runtime("openvino_bf16", (("bf16", openvino_builder("bf16")),), packages=("openvino",)),
        Runtime(
            "onnxruntime_fp32",
            (("cpu_ep", onnxruntime_builder),),
            packages=("onnxruntime",),
            export_packages=("onnx",),
        ),
    )
}
same_names("RUNTIMES", RUNTIMES, RUNTIME_NAMES)
#: The reference every other runtime is compared with.
REFERENCE = "torch_fp32"


# ---------------------------------------------------------------------------------------------
# Measuring


def _last_line(exc: BaseException) -> str:
    lines = [line for line in (str(exc) or type(exc).__name__).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:500]


def call_with_limit(fn: Callable[[], T], seconds: float | None) -> T:
    """``fn()``, given at most ``seconds`` (None: no limit). It runs in a worker thread that is
    left behind when it overruns, so TimeoutError comes back on time whatever ``fn`` is doing
    (a SIGALRM handler instead crashed the process once OpenVINO and ONNX Runtime had run)."""
    if seconds is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=target, name="runtimes-limited", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"gave up after {seconds:.0f} s (left running: later timings may be disturbed)")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def seconds_per_call(run: Runner, windows: np.ndarray, warmup: int, repeats: int) -> float:
    """Median seconds of ``repeats`` calls on ``windows``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run(windows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(windows)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_windows(batch: int, channels: int, patch: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Seeded standard-normal windows (N, C, Z, Y, X) float32: the scale of normalised input."""
    return np.random.default_rng(seed).standard_normal((batch, channels, *patch), dtype=np.float32)


def real_window(image: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """The window (1, C, *patch) at the middle of a preprocessed grid (C, Z, Y, X), edge-padded
    where the grid is smaller than the patch."""
    pad = [(0, 0)] + [(0, max(0, p - n)) for n, p in zip(image.shape[1:], patch)]
    image = np.pad(image, pad, mode="edge") if any(after for _, after in pad) else image
    lo = [(n - p) // 2 for n, p in zip(image.shape[1:], patch)]
    box = tuple(slice(s, s + p) for s, p in zip(lo, patch))
    return np.ascontiguousarray(image[(slice(None), *box)][None], np.float32)


def measure_variant(
    builder: Builder,
    network: torch.nn.Module,
    example: np.ndarray,
    threads: int,
    windows_per_call: list[int],
    warmup: int,
    repeats: int,
    workdir: Path,
) -> tuple[Built, Timing]:
    """Build one variant and time it for each number of windows per call."""
    built = builder(network, example, threads, workdir)
    per_window = {}
    for batch in windows_per_call:
        windows = random_windows(batch, example.shape[1], example.shape[2:], seed=1)
        per_window[str(batch)] = seconds_per_call(built.run, windows, warmup, repeats) / batch
        log.info("  %d window(s) per call: %.4f s per window", batch, per_window[str(batch)])
    return built, {"seconds_per_window": per_window, "setup_seconds": built.setup_seconds}


def measure_runtime(
    runtime: Runtime,
    network: torch.nn.Module,
    probes: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    threads: int,
    windows_per_call: list[int],
    warmup: int = 2,
    repeats: int = 5,
    workdir: Path | None = None,
) -> tuple[RuntimeResult, Runner | None]:
    """Time every variant of ``runtime``, keep the fastest, and compare its logits on each probe
    window (1, C, *patch) with ``reference`` (torch fp32's logits of the same windows; empty
    when this is the reference). Never raises: a failure is the result's ``error``. Returns
    the result and the fastest variant's runner (None if every variant failed)."""
    result: RuntimeResult = {"runtime": runtime.name, "variants": {}}
    best: tuple[float, str, Built] | None = None
    errors = []
    with contextlib.ExitStack() as stack:
        folder = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runtimes-")))
        example = probes["random"]
        for label, builder in runtime.variants:
            log.info("%s / %s ...", runtime.name, label)
            try:
                measure = functools.partial(
                    measure_variant, builder, network, example, threads, windows_per_call, warmup, repeats, folder
                )
                built, timing = call_with_limit(measure, runtime.timeout_s)
            except Exception as exc:  # a runtime that fails is a result, not a crash
                errors.append(f"{label}: {_last_line(exc)}")
                log.warning("%s / %s failed: %s", runtime.name, label, errors[-1])
                log.debug("%s", traceback.format_exc())
                continue
            result["variants"][label] = timing
            fastest = min(timing["seconds_per_window"].values())
            if best is None or fastest < best[0]:
                best = (fastest, label, built)
    if best is None:
        result["error"] = "; ".join(errors) or "no variant"
        return result, None
    fastest, label, built = best
    result["variant"] = label
    result["seconds_per_window"] = result["variants"][label]["seconds_per_window"]
    result["best_seconds_per_window"] = fastest
    result["setup_seconds"] = built.setup_seconds
    result["note"] = built.note
    if errors:
        result["error"] = "; ".join(errors)
    try:
        for name, window in probes.items():
            logits = built.run(window)
            if name in reference:
                result[f"max_abs_logit_diff_{name}"] = float(np.abs(logits - reference[name]).max())  # type: ignore[literal-required]
                if name == "real":
                    same = logits.argmax(1) == reference[name].argmax(1)
                    result["window_argmax_agreement_real"] = float(same.mean())
    except Exception as exc:
        result["error"] = f"logits: {_last_line(exc)}"
        return result, None
    return result, built.run


# ---------------------------------------------------------------------------------------------
# Labels of a whole case


class RunnerModule(torch.nn.Module):
    """A runtime in the place of the Segmenter's network: tensors in and out, numpy between."""

    def __init__(self, run: Runner) -> None:
        super().__init__()
        self.run = run

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(windows.detach().cpu().numpy(), np.float32)
        return torch.from_numpy(np.ascontiguousarray(self.run(x), np.float32))


@dataclass(frozen=True)
class Case:
    """The preprocessed benchmark case: the grid (C, Z, Y, X) and its body mask."""

    image: np.ndarray
    body: np.ndarray | None


def load_case(folder: Path, seg: Segmenter) -> Case:
    """``folder``'s CT and T1 MR (the Grand-Challenge layout), preprocessed for inference."""
    ct_path = next((folder / "images/ct").glob("*.mha"))
    mr_paths = sorted((folder / "images/t1-mri").glob("*.mha"))
    ct = sitk.ReadImage(str(ct_path))
    mr = sitk.ReadImage(str(mr_paths[0])) if mr_paths else None
    case = preprocess_case(ct, mr, seg.plans, windows=True)
    log.info("case %s: grid %s (c,z,y,x)", ct_path.name, case.image.shape)
    return Case(np.ascontiguousarray(case.image, np.float32), case.body)


def case_labels(seg: Segmenter, run: Runner, case: Case) -> tuple[np.ndarray, float]:
    """Labels (argmax on the grid) of the case with ``run`` as fold 0; 1 fold, no mirroring."""
    original = seg.networks[0]
    seg.networks[0] = RunnerModule(run)
    try:
        start = time.perf_counter()
        probs = seg.probabilities(case.image, RunSettings(1, (), seg.plans.overlap), case.body)
        seconds = time.perf_counter() - start
    finally:
        seg.networks[0] = original
    return probs.argmax(0).astype(np.uint8), seconds


def agreement(labels: np.ndarray, reference: np.ndarray, seconds: float) -> Agreement:
    scores = per_oar_dice(labels, reference)
    return {
        "mean_dice": round(float(np.mean(list(scores.values()))), 4) if scores else None,
        "min_dice": round(min(scores.values()), 4) if scores else None,
        "per_oar": {k: round(v, 4) for k, v in scores.items()},
        "seconds": round(seconds, 2),
    }


# ---------------------------------------------------------------------------------------------
# What a runtime adds to the image


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_closure(names: list[str]) -> set[str]:
    """The installed distributions ``names`` need, themselves included (no extras; the ones
    not installed are left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _key(todo.pop())
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def base_requirements(path: Path = ROOT / "requirements.txt") -> list[str]:
    """The distributions ``requirements.txt`` names (the image's own)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.append(Requirement(line).name)
    return names


def installed_mb(dists: set[str]) -> float:
    """Installed size of ``dists``: the files their RECORD lists, in MB (10^6 bytes)."""
    total = 0
    for name in dists:
        for f in metadata.distribution(name).files or []:
            path = Path(str(f.locate()))
            if path.is_file():
                total += path.stat().st_size
    return round(total / 1e6, 1)


def image_cost(packages: tuple[str, ...], base: set[str]) -> tuple[list[str], float]:
    """The distributions ``packages`` add to an image that has ``base``, and their MB."""
    added = dist_closure(list(packages)) - base
    return sorted(added), installed_mb(added)


# ---------------------------------------------------------------------------------------------
# The run


def wait_for_quiet(limit: float, max_wait_s: float) -> list[float]:
    """Wait (30 s at a time, up to ``max_wait_s``) until the 1-minute load average is below
    ``limit``; returns the load averages when it stopped waiting."""
    deadline = time.monotonic() + max_wait_s
    while True:
        load = list(os.getloadavg())
        if load[0] < limit or time.monotonic() >= deadline:
            if load[0] >= limit:
                log.warning("load average %.2f still above %.2f: measuring anyway", load[0], limit)
            return load
        log.info("load average %.2f ≥ %.2f: waiting", load[0], limit)
        time.sleep(30)


def fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table(results: Results) -> str:
    batches = results["settings"]["windows_per_call"]
    head = " | ".join(f"s/window ({b}/call)" for b in batches)
    rows = [
        f"| runtime | variant | {head} | × torch fp32 | setup s | max abs Δlogit random | max abs Δlogit real "
        "| window argmax agree | case Dice mean (min) | MB added | error |",
        "| --- | --- | " + " | ".join("---" for _ in batches) + " | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["runtimes"]:
        per = r.get("seconds_per_window", {})
        agree = r.get("agreement")
        agree_txt = (
            f"{agree['mean_dice']:.4f} ({agree['min_dice']:.4f})"
            if agree and agree["mean_dice"] is not None and agree["min_dice"] is not None
            else r.get("agreement_error", "")[:60]
        )
        setup = ", ".join(f"{k} {v:.1f}" for k, v in r.get("setup_seconds", {}).items())
        mb = f"{r.get('mb_added', 0.0):.0f}"
        if r.get("export_packages_added"):
            mb += f" (+{r.get('mb_export_only', 0.0):.0f} to export)"
        rows.append(
            f"| {r['runtime']} | {r.get('variant', '')} | "
            + " | ".join(fmt(per.get(str(b)), 4) for b in batches)
            + f" | {fmt(r.get('speedup_vs_torch_fp32'), 2)} | {setup} | {fmt(r.get('max_abs_logit_diff_random'), 5)}"
            f" | {fmt(r.get('max_abs_logit_diff_real'), 5)} | {fmt(r.get('window_argmax_agreement_real'), 5)}"
            f" | {agree_txt} | {mb} | {r.get('error', '')[:120]} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = runtimes_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    runtimes = [REFERENCE, *(r for r in args.runtimes if r != REFERENCE)]  # the reference first

    torch.set_num_threads(args.threads)
    seg = Segmenter(args.model, device="cpu", tune=False, precision="fp32")
    network = seg.networks[0]
    patch = tuple(seg.plans.patch_size_zyx)
    case = load_case(args.case, seg)
    probes = {
        "random": random_windows(1, len(seg.plans.channels), patch),
        "real": real_window(case.image, patch),
    }
    base = dist_closure(base_requirements())
    load_before = wait_for_quiet(args.max_load, args.max_wait_s)
    results: Results = {
        "settings": {
            **{k: str(v) for k, v in vars(args).items()},
            "windows_per_call": args.windows,
            "network": type(network).__name__,
            "patch_zyx": list(patch),
            "channels": len(seg.plans.channels),
            "threads": args.threads,
            "thread_settings": {
                "torch": "torch.set_num_threads",
                "openvino": "INFERENCE_NUM_THREADS, PERFORMANCE_HINT LATENCY",
                "onnxruntime": "intra_op_num_threads (inter_op 1)",
            },
            "cpus": os.cpu_count(),
            "cpu": _cpu_name(),
            "torch": torch.__version__,
            "loadavg_before": load_before,
        },
        "runtimes": [],
    }
    reference: dict[str, np.ndarray] = {}
    reference_labels: np.ndarray | None = None
    for name in runtimes:
        runtime = RUNTIMES[name]
        result, run = measure_runtime(
            runtime, network, probes, reference, args.threads, args.windows, args.warmup, args.repeats
        )
        if name == REFERENCE and run is not None:
            reference = {k: run(w) for k, w in probes.items()}
        ref_row = results["runtimes"][0] if results["runtimes"] else result
        if "best_seconds_per_window" in result and "best_seconds_per_window" in ref_row:
            result["speedup_vs_torch_fp32"] = ref_row["best_seconds_per_window"] / result["best_seconds_per_window"]
        result["packages_added"], result["mb_added"] = image_cost(runtime.packages, base)
        if runtime.export_packages:
            added = dist_closure(list(runtime.export_packages)) - base - dist_closure(list(runtime.packages))
            result["export_packages_added"], result["mb_export_only"] = sorted(added), installed_mb(added)
        if run is not None and not args.skip_agreement:
            try:
                labels, seconds = case_labels(seg, run, case)
                if reference_labels is None:
                    reference_labels = labels
                result["agreement"] = agreement(labels, reference_labels, seconds)
                log.info("%s: case labels in %.1f s, %s", name, seconds, result["agreement"]["mean_dice"])
            except Exception as exc:
                result["agreement_error"] = _last_line(exc)
                log.warning("%s: case labels failed: %s", name, result["agreement_error"])
        log.info("%s: %s", name, {k: v for k, v in result.items() if k not in ("agreement", "variants")})
        results["runtimes"].append(result)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    results["settings"]["loadavg_after"] = list(os.getloadavg())
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(table(results))
    print(table(results))
    return 0


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
