"""Which number format the network runs in (``--precision auto|fp32|bf16``), and why.

Only the network's convolutions change format. Its logits are turned back to float32 before
they are averaged over folds and mirrors, blended across windows and put through the softmax
(:meth:`hanseg.inference.Segmenter._logits`), so every sum of many small terms stays float32.

``auto``:

* CUDA: float16 autocast, as the GPU path always ran;
* a CPU with bfloat16 units (AMX-BF16 or AVX512-BF16, Intel Sapphire Rapids and later, AMD
  Zen 4 and later): bfloat16 autocast. The shipped model's labels then agree with float32's to
  a mean Dice of 0.999 on unseen phantoms (lowest OAR 0.995; ``model/metadata.json``,
  ``precision_agreement``, from ``python -m benchmarks.precision``), and the network runs
  about 2.5 times as fast (docs/benchmarks.md);
* any other CPU: float32. Without those units bfloat16 is emulated and slower than float32.

This module reads ``/proc/cpuinfo`` and imports no torch: the choice can be logged and tested
without a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
#: CPU flags (Linux ``/proc/cpuinfo``) that mean bfloat16 runs in hardware, not emulated.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Precision:
    """The format the network runs in: ``fp32``, ``bf16`` or ``fp16`` (autocast), and why."""

    name: str
    reason: str

    @property
    def autocast(self) -> bool:
        return self.name != "fp32"


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's feature flags; empty where the file does not exist (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_units(flags: frozenset[str]) -> tuple[str, ...]:
    """The bfloat16 units among ``flags``, in :data:`BF16_CPU_FLAGS` order."""
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def resolve_precision(requested: str, device_type: str, flags: frozenset[str] | None = None) -> Precision:
    """The precision for ``requested`` on a ``device_type`` (``cpu`` or ``cuda``) device.

    An explicit ``bf16`` is honoured everywhere (on a CPU without bfloat16 units it is slower,
    and the reason says so); ``fp32`` is honoured everywhere."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return Precision("fp32", "asked for (--precision fp32)")
    if device_type == "cuda":
        if requested == "bf16":
            return Precision("bf16", "asked for (--precision bf16)")
        return Precision("fp16", "auto on a CUDA GPU: float16 autocast")
    units = cpu_bf16_units(cpu_flags() if flags is None else flags)
    if requested == "bf16":
        if units:
            return Precision("bf16", f"asked for (--precision bf16); this CPU has {' and '.join(units)}")
        return Precision("bf16", "asked for (--precision bf16); this CPU has no bfloat16 units, so it is emulated")
    if units:
        return Precision("bf16", f"auto: this CPU has {' and '.join(units)}")
    return Precision("fp32", "auto: this CPU has no bfloat16 units (AMX-BF16 or AVX512-BF16)")
