"""``--precision``: what ``auto`` picks on each machine, from the CPU's flags, and the step clock
that reports where a run's seconds went."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hanseg.networks import fold_batch_norm
from hanseg.precision import cpu_flags, resolve_precision
from hanseg.timing import StepClock, parse_summary, process_age_s

SAPPHIRE_RAPIDS = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
ZEN4 = frozenset({"avx512f", "avx512_bf16"})
SKYLAKE = frozenset({"avx512f", "avx2"})


@pytest.mark.parametrize(
    "requested,device,flags,name",
    [
        ("auto", "cpu", SAPPHIRE_RAPIDS, "bf16"),
        ("auto", "cpu", ZEN4, "bf16"),
        ("auto", "cpu", SKYLAKE, "fp32"),
        ("auto", "cpu", frozenset(), "fp32"),
        ("auto", "cuda", SKYLAKE, "fp16"),
        ("fp32", "cpu", SAPPHIRE_RAPIDS, "fp32"),
        ("fp32", "cuda", SAPPHIRE_RAPIDS, "fp32"),
        ("bf16", "cpu", SKYLAKE, "bf16"),
        ("bf16", "cuda", SKYLAKE, "bf16"),
    ],
)
def test_auto_takes_bf16_only_where_the_cpu_has_bf16_units(requested, device, flags, name):
    precision = resolve_precision(requested, device, flags)
    assert precision.name == name and precision.autocast == (name != "fp32")


def test_the_reason_says_why():
    assert "amx_bf16" in resolve_precision("auto", "cpu", SAPPHIRE_RAPIDS).reason
    assert "no bfloat16 units" in resolve_precision("auto", "cpu", SKYLAKE).reason
    assert "emulated" in resolve_precision("bf16", "cpu", SKYLAKE).reason
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cpu", SKYLAKE)


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx512f", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_batch_norm_folds_into_the_convolutions_with_the_same_output():
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(3, 2, 4, channels=(4, 8, 16), strides=(2, 2), num_res_units=2, norm="batch")
    for module in net.modules():  # running statistics a trained network would have
        if isinstance(module, torch.nn.BatchNorm3d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(1, 2, 16, 16, 16)
    norms = sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    with torch.no_grad():
        before = net(x)
        assert fold_batch_norm(net) == norms > 0  # in MONAI's UNet every norm follows a convolution
        after = net(x)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="eval"):
        fold_batch_norm(net.train())


def test_steps_add_up_and_the_summary_reads_back():
    clock = StepClock()
    clock.add("read", 1.25)
    clock.add("network", 3.0)
    clock.add("read", 0.5)
    line = clock.summary()
    assert parse_summary(f"2026-01-01 INFO process: {line}\nlater line") == {"read": 1.75, "network": 3.0}
    assert line.endswith("total 4.8")
    assert parse_summary("no summary here") is None
    age = process_age_s()
    assert age is not None and 0 < age < 24 * 3600


def test_a_timed_feed_is_reused_on_the_next_start_and_keyed_on_what_timing_depends_on(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from hanseg import feed_cache
    from hanseg.inference import Segmenter

    monkeypatch.setenv("HANSEG_CACHE_DIR", str(tmp_path / "cache"))
    timings: list[tuple[int, bool]] = []
    real = Segmenter._seconds_per_window

    def counted(self, batch: int, channels_last: bool) -> float:
        timings.append((batch, channels_last))
        return real(self, batch, channels_last)

    monkeypatch.setattr(Segmenter, "_seconds_per_window", counted)
    first = Segmenter(tiny_model, "cpu", precision="fp32")
    assert timings and (tmp_path / "cache" / feed_cache.FILE_NAME).is_file()
    assert len(timings) > 1  # every feed was tried
    timings.clear()
    second = Segmenter(tiny_model, "cpu", precision="fp32")
    chosen = (first.feed.batch, first.feed.channels_last)
    assert timings == [chosen]  # only the remembered choice, timed again now
    assert (second.feed.batch, second.feed.channels_last) == chosen
    Segmenter(tiny_model, "cpu", precision="bf16")
    assert timings, "another precision is another key: timed"
    keys = {feed_cache.feed_key("m", "cpu X", 2, "2.13", p) for p in ("fp32", "bf16")}
    keys |= {feed_cache.feed_key("m", "cpu X", 4, "2.13", "fp32"), feed_cache.feed_key("n", "cpu X", 2, "2.13", "fp32")}
    assert len(keys) == 4


def test_the_feed_cache_can_be_switched_off_and_survives_a_broken_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from hanseg import feed_cache

    monkeypatch.setenv("HANSEG_CACHE_DIR", "off")
    feed_cache.store("k", {"batch": 1})
    assert feed_cache.cache_file() is None and feed_cache.load("k") is None
    monkeypatch.setenv("HANSEG_CACHE_DIR", str(tmp_path))
    (tmp_path / feed_cache.FILE_NAME).write_text("{not json")
    assert feed_cache.load("k") is None
    feed_cache.store("k", {"batch": 2})
    assert feed_cache.load("k") == {"batch": 2}
