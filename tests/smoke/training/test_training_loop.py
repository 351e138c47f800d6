"""The training loop's scheduling pieces: the time budget, the patch prefetcher, mixed
precision, warm-up, low-resolution and re-slicing simulation, and the parallel data preparation (phantoms,
cache) that must give the same files as the sequential path."""

import csv
import dataclasses
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import training.train as train
from helpers import ROOT, train_in_process
from training.data import (
    _noise,
    augment,
    linear_along,
    reslice_axis,
    simulate_low_resolution,
    simulate_reslicing,
)
from training.distributed import DistContext

SINGLE = DistContext()  # one process


def test_epochs_within_counts_training_and_validation_seconds():
    # 10 s per epoch, a 5 s validation every 3rd epoch and after the last one
    assert train.epochs_within(100, 10, 5, 3) == 8  # 8*10 + (8//3 + 1)*5 = 95
    assert train.epochs_within(94, 10, 5, 3) == 7  # 7*10 + (7//3 + 1)*5 = 85; 8 would need 95
    assert train.epochs_within(14, 10, 5, 3) == 0  # 10 + 5 > 14
    assert train.epochs_within(1e6, 1, 0, 1) == 1_000_000


def test_fit_epochs_lowers_the_epoch_count_to_the_budget_and_never_raises_it():
    cfg = train.TrainConfig(epochs=1000, val_every=5, time_budget=100.0)
    clock = train.EpochClock(start=time.perf_counter() - 40)  # 40 s spent, 60 s left
    assert train.fit_epochs(cfg, 0, clock, SINGLE) is cfg  # nothing measured yet
    clock.record(30.0, None)  # a slow first epoch (cuDNN tuning, say) ...
    clock.record(10.0, None)  # ... and two normal ones: the median is 10 s
    clock.record(10.0, 4.0)
    fitted = train.fit_epochs(cfg, 3, clock, SINGLE)
    assert fitted.epochs == 3 + train.epochs_within(60, 10.0, 4.0, 5) == 8
    lowered = dataclasses.replace(cfg, epochs=5)  # an earlier, more pessimistic estimate
    assert train.fit_epochs(lowered, 3, clock, SINGLE, ceiling=1000).epochs == 8  # rises back
    small = train.fit_epochs(train.TrainConfig(epochs=4, time_budget=100.0), 3, clock, SINGLE)
    assert small.epochs == 4  # --epochs stays the ceiling
    late = train.fit_epochs(cfg, 3, train.EpochClock(start=time.perf_counter() - 500, train_s=[10.0]), SINGLE)
    assert late.epochs == 4  # over budget: the epoch about to run is the last
    assert train.fit_epochs(train.TrainConfig(epochs=1000), 3, clock, SINGLE).epochs == 1000  # no budget


def test_prefetched_batches_come_in_order_and_leave_the_generator_as_a_plain_loop_would():
    plain_rng, pre_rng = np.random.default_rng(5), np.random.default_rng(5)
    plain = [plain_rng.integers(1000, size=3) for _ in range(20)]
    pre = list(train.prefetched(lambda: pre_rng.integers(1000, size=3), 20, depth=2))
    assert all(np.array_equal(a, b) for a, b in zip(plain, pre)) and len(pre) == 20
    assert plain_rng.bit_generator.state == pre_rng.bit_generator.state


def test_prefetched_raises_the_producers_error_in_the_consumer():
    calls = iter([1, 2])

    def make():
        value = next(calls, None)
        if value is None:
            raise ValueError("no more cases")  # on the 3rd call, inside the thread
        return value

    got = []
    with pytest.raises(ValueError, match="no more cases"):
        for item in train.prefetched(make, 5):
            got.append(item)
    assert got == [1, 2]


def test_amp_modes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train.amp_dtype("auto", cpu) is None and train.amp_dtype("auto", cuda) is torch.float16
    assert train.amp_dtype("bf16", cpu) is torch.bfloat16 and train.amp_dtype("bf16", cuda) is torch.bfloat16
    assert train.amp_dtype("off", cuda) is None


def test_cpu_noise_is_drawn_from_the_run_generator_as_before():
    a = _noise(torch.Size([3, 4]), torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(a, torch.randn(3, 4, generator=torch.Generator().manual_seed(3)))


def test_low_resolution_simulation_blurs_picked_samples_only_and_keeps_the_mean():
    gen = torch.Generator().manual_seed(0)
    image = torch.zeros(8, 2, 16, 16, 16)
    image[..., ::2] = 1.0  # a one-voxel stripe pattern
    out = simulate_low_resolution(image.clone(), gen, p=0.5, min_zoom=0.5)
    changed = [(out[i] - image[i]).abs().max() > 0.1 for i in range(8)]
    assert 0 < sum(changed) < 8
    for i in range(8):
        if changed[i]:  # detail lost (contrast down), intensity kept on average
            assert out[i].std() < 0.9 * image[i].std()
            assert float(out[i].mean()) == pytest.approx(float(image[i].mean()), abs=0.05)
        else:
            assert torch.equal(out[i], image[i])
    # off by default: augment draws exactly what it drew before the option existed
    labels, present = torch.zeros(2, 16, 16, 16, dtype=torch.uint8), torch.ones(2, 31, dtype=torch.bool)
    a = augment(image[:2].clone(), labels.clone(), present.clone(), torch.Generator().manual_seed(1))
    b = augment(image[:2].clone(), labels.clone(), present.clone(), torch.Generator().manual_seed(1), lowres=0.0)
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("factor,phase", [(0.8, 0.3), (1.2, 0.0), (0.625, 0.9)])
def test_reslicing_is_simpleitks_two_linear_resamplings(factor, phase):
    # the same profile through SimpleITK as inference sees a re-gridded CT: onto slices
    # (j + phase) * factor, then back onto the unit lattice; equal away from the edges
    # (SimpleITK pads with 0 there, the augmentation with the edge value)
    n = 20
    a = np.random.RandomState(0).randn(n, 3, 3)
    m = int(np.floor((n - 1) / factor - phase)) + 1
    ref = sitk.Image([3, 3, m], sitk.sitkFloat64)
    ref.SetSpacing((1.0, 1.0, factor))
    ref.SetOrigin((0.0, 0.0, phase * factor))
    image = sitk.GetImageFromArray(a)
    between = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, 0.0)
    expected = sitk.GetArrayFromImage(sitk.Resample(between, image, sitk.Transform(), sitk.sitkLinear, 0.0))
    ours = reslice_axis(torch.from_numpy(a), 0, factor, phase).numpy()
    np.testing.assert_allclose(ours[2:-2], expected[2:-2], atol=1e-12)


def test_linear_along_is_exact_on_the_lattice_and_on_ramps():
    x = torch.randn(2, 7, 5)
    assert torch.equal(linear_along(x, torch.arange(7, dtype=torch.float64), 1), x)
    ramp = torch.arange(9, dtype=torch.float32).view(1, 9, 1).expand(2, 9, 3)
    pos = torch.tensor([0.0, 0.25, 3.5, 7.9, 8.0, 9.5, -1.0], dtype=torch.float64)
    got = linear_along(ramp, pos, 1)[0, :, 0]
    assert torch.allclose(got, torch.tensor([0.0, 0.25, 3.5, 7.9, 8.0, 8.0, 0.0]))  # edges clamp


def test_reslicing_blurs_picked_samples_only_keeps_the_mean_and_is_off_by_default():
    gen = torch.Generator().manual_seed(3)
    image = torch.randn(8, 2, 12, 16, 16, generator=gen)
    out = simulate_reslicing(image.clone(), torch.Generator().manual_seed(4), p=0.5)
    changed = [not torch.equal(out[i], image[i]) for i in range(8)]
    assert 0 < sum(changed) < 8
    for i in range(8):
        if changed[i]:  # white noise between lattices loses contrast, not its level
            assert out[i].std() < 0.95 * image[i].std()
            assert float(out[i].mean()) == pytest.approx(float(image[i].mean()), abs=0.05)
    labels = torch.randint(0, 31, (2, 12, 16, 16), generator=gen, dtype=torch.uint8)
    present = torch.ones(2, 31, dtype=torch.bool)
    a = augment(image[:2].clone(), labels.clone(), present.clone(), torch.Generator().manual_seed(1))
    b = augment(image[:2].clone(), labels.clone(), present.clone(), torch.Generator().manual_seed(1), reslice=0.0)
    assert torch.equal(a[0], b[0])
    c = augment(image[:2].clone(), labels.clone(), present.clone(), torch.Generator().manual_seed(1), reslice=1.0)
    assert not torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])  # the labels are not moved


def test_warmup_ramps_the_learning_rate_linearly_then_the_poly_decay_takes_over(tmp_path):
    net = torch.nn.Conv3d(2, 31, 1)
    cfg = train.TrainConfig(epochs=2, iters=10, batch=1, lr=1e-2, warmup=4, loss="dice_ce")
    seen = []

    class Recorder(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    from training.data import CachedCase
    from training.losses import make_loss

    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:6, 2:6, 2:6] = 5
    case = CachedCase(
        "c",
        np.zeros((2, 8, 8, 8), np.float16),
        labels,
        np.ones(31, bool),
        {0: np.argwhere(labels == 0), 5: np.argwhere(labels == 5)},
    )
    plans = type("P", (), {"patch_size_zyx": (8, 8, 8)})()
    tr = train.Trainer(
        net,
        Recorder(net.parameters(), lr=1.0),
        torch.amp.GradScaler("cpu", enabled=False),
        make_loss("dice_ce", 31, None),
        [],
        torch.device("cpu"),
    )
    fr = train.FoldRun(
        tr,
        cfg,
        plans,
        [case],
        np.random.default_rng(0),
        torch.Generator().manual_seed(0),
        train.Checkpoints(tmp_path),
        "0",
    )
    train.train_epoch(fr, 0)
    expected = [train.poly_lr(1e-2, s, 20) * min(1.0, (s + 1) / 4) for s in range(10)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(1e-2 * 0.25, rel=1e-3) and seen[4] < seen[3]


def test_parallel_phantoms_are_byte_identical_to_sequential_ones(tmp_path):
    for workers in (1, 2):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "phantoms",
                "--out",
                str(tmp_path / f"w{workers}"),
                "--cases",
                "2",
                "--seed",
                "44",
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = tmp_path / "w1", tmp_path / "w2"
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) > 20 and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


def test_parallel_cache_matches_the_sequential_cache(raw_phantoms, tmp_path):
    from hanseg.plans import load_plans

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.plan",
            "--data",
            str(raw_phantoms),
            "--work",
            str(tmp_path / "a"),
            "--preset",
            "tiny",
            "--spacing",
            "4",
            "4",
            "5",
            "--folds",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    plans = load_plans(tmp_path / "a" / "plans.json")
    ids = ["case_01", "case_02"]
    seq = train.cache_cases(raw_phantoms, tmp_path / "a", plans, ids)
    par = train.cache_cases(raw_phantoms, tmp_path / "b", plans, ids, workers=2)
    for s, p in zip(seq, par):
        a, b = np.load(s), np.load(p)
        assert str(a["key"]) == str(b["key"])
        assert np.array_equal(a["labels"], b["labels"]) and np.array_equal(a["present"], b["present"])
        assert np.array_equal(a["image"][0], b["image"][0])  # CT: the same numbers
        # MR: registered with 1 thread instead of all, which may move it by a hair
        assert np.corrcoef(a["image"][1].ravel(), b["image"][1].ravel())[0, 1] > 0.99


def test_a_time_budget_ends_the_run_early_with_a_validated_checkpoint(raw_phantoms, plan_work, tmp_path):
    work = plan_work(tmp_path / "work", "--spacing", "4", "4", "5", "--folds", "2")  # the cache is filled
    done = train_in_process(
        raw_phantoms,
        work,
        "--iters",
        "2",
        "--batch",
        "1",
        "--val-every",
        "3",
        "--epochs",
        "500",
        "--time-budget",
        "12",
        "--amp",
        "bf16",
        "--lowres",
        "0.5",
        "--warmup",
        "3",
    )
    assert "time budget" in done.stderr
    with open(work / "fold_0" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert 2 <= len(rows) < 500 and rows[-1]["val_dice"] != ""
    state = torch.load(work / "fold_0" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == len(rows) - 1 and state["config"]["epochs"] == len(rows)
    assert state["config"]["amp"] == "bf16" and state["config"]["time_budget"] == 12
    # the run's own epochs end within the budget, give or take the last epoch, which may overrun
    epoch_s = [float(r["seconds"]) for r in rows]
    assert sum(epoch_s) <= 12 + 2 * max(epoch_s)
