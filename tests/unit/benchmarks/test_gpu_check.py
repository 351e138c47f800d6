"""benchmarks.gpu_check without a GPU: its pure helpers (parsers, the Dice verdict, the summary),
its stage and process wiring, and that it stops at once, with exit 2 and a JSON saying so,
when there is no CUDA GPU. The GPU figures themselves need a GPU machine (scripts/gpu_check.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_check.cli import default_json_path
from benchmarks.gpu_check.constants import EXIT_FAILED, EXIT_NO_GPU, NO_GPU, PROBE_TAG
from benchmarks.gpu_check.parsers import (
    error_tail,
    parse_gpu_query,
    parse_memory_used,
    parse_probe,
    parse_process_log,
    parse_smi_header,
    parse_train_log,
    read_epoch_seconds,
    read_pretrain_log,
    step_seconds,
)
from benchmarks.gpu_check.processes import (
    GpuMemoryPoller,
    Job,
    nvidia_smi_target,
    run_job,
)
from benchmarks.gpu_check.report import Report, StageFailed
from benchmarks.gpu_check.stages import check_exit
from benchmarks.gpu_check.summary import (
    agreement_verdict,
    build_summary,
    dice_agreement,
    format_summary,
    no_gpu_reason,
)
from helpers import ROOT

PROCESS_LOG = """\
2026-12-01 09:27:59,629 INFO hanseg.model_dir: using the baked model /work/main/model
2026-12-01 09:28:08,989 INFO hanseg.inference: model /work/main/model: UNet, 1 fold(s), device cuda, 0.01 s per window (4 window(s) per call, channels-last)
2026-12-01 09:28:24,691 INFO hanseg.inference: inference: 1 fold(s), mirroring x, overlap 0.5 (about 3 s; 224 s left of the 300 s budget)
2026-12-01 09:29:45,224 INFO hanseg.inference: segmented in 12.5 s
2026-12-01 09:29:45,265 INFO hanseg.layouts: peak memory 1.27 GiB (the platform's limit is often 4 GB)
"""


def no_gpu_env() -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


# --------------------------------------------------------------------------- parsers


def test_default_json_path_follows_out():
    assert default_json_path({"OUT": "/tmp/o"}) == Path("/tmp/o/gpu_check.json")
    assert default_json_path({}) == Path("gpu_check.json")
    assert default_json_path({"OUT": ""}) == Path("gpu_check.json")


def test_nvidia_smi_target_is_the_first_visible_gpu():
    assert nvidia_smi_target({}) == "0"
    assert nvidia_smi_target({"CUDA_VISIBLE_DEVICES": "3,1"}) == "3"
    assert nvidia_smi_target({"CUDA_VISIBLE_DEVICES": "GPU-ab12"}) == "GPU-ab12"
    assert nvidia_smi_target({"CUDA_VISIBLE_DEVICES": ""}) is None


def test_parse_memory_used_skips_what_is_not_a_number():
    assert parse_memory_used("1234\n[N/A]\n  567 \n\n80.0\n") == [1234, 567, 80]
    assert parse_memory_used("") == []


def test_parse_gpu_query_and_header():
    text = "0, NVIDIA H200, 555.42.06, 143771, 4\n1, Tesla T4, 555.42.06, 15360, [N/A]\nbad line\n"
    gpus = parse_gpu_query(text)
    assert gpus == [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "driver_version": "555.42.06",
            "memory_total_mib": 143771,
            "memory_used_mib": 4,
        },
        {
            "index": 1,
            "name": "Tesla T4",
            "driver_version": "555.42.06",
            "memory_total_mib": 15360,
            "memory_used_mib": None,
        },
    ]
    header = "| NVIDIA-SMI 555.42.06    Driver Version: 555.42.06    CUDA Version: 12.5     |"
    assert parse_smi_header(header) == {"driver_version": "555.42.06", "cuda_driver_version": "12.5"}
    assert parse_smi_header("") == {"driver_version": None, "cuda_driver_version": None}


def test_no_gpu_reason_names_the_cause():
    assert no_gpu_reason({"cuda_available": True}) is None
    cpu_build = no_gpu_reason({"cuda_available": False, "torch": "2.13.0+cpu", "torch_cuda": None})
    assert cpu_build is not None and cpu_build.startswith(NO_GPU) and "CPU-only build" in cpu_build
    hidden = no_gpu_reason(
        {
            "cuda_available": False,
            "torch": "2.13.0",
            "torch_cuda": "12.6",
            "cuda_visible_devices": "",
            "nvidia_smi_L": ["GPU 0: T4"],
        }
    )
    assert (
        hidden is not None
        and "CUDA 12.6" in hidden
        and "CUDA_VISIBLE_DEVICES is empty" in hidden
        and "nvidia-smi" not in hidden
    )
    broken = no_gpu_reason({"cuda_available": False, "torch_error": "ImportError: libcudart.so"})
    assert broken is not None and broken.startswith(NO_GPU) and "libcudart" in broken


def test_parse_process_log():
    parsed = parse_process_log(PROCESS_LOG)
    assert parsed["segmented_s"] == [12.5]
    assert parsed["settings"] == ["1 fold(s), mirroring x, overlap 0.5"]
    assert parsed["device"] == "cuda" and parsed["host_peak_gib"] == 1.27
    assert parsed["cpu_fallback"] is False and parsed["errors"] == []


def test_parse_process_log_sees_a_cpu_fallback_and_errors():
    text = (
        "2026 WARNING hanseg.inference: GPU out of memory with 1 window per call: continuing on the CPU (slower)\n"
        "2026 ERROR process: FAILED: no CT image found\n"
    )
    parsed = parse_process_log(text)
    assert parsed["cpu_fallback"] is True
    assert parsed["errors"] == ["2026 ERROR process: FAILED: no CT image found"]
    assert parsed["segmented_s"] == [] and parsed["device"] is None


def test_train_log_epoch_seconds_and_steps(tmp_path):
    text = (
        "x INFO training.train: epoch 1/2 loss 4.9340 (48 s)\n"
        "x INFO training.distributed: rank 0 of 2 (nccl backend)\n"
        "x INFO training.train: epoch 2/2 loss 4.7179 val mean Dice 0.0025 (27 s)\n"
    )
    assert parse_train_log(text) == {"epochs_logged": 2, "last_loss": 4.7179, "nccl_in_log": True}
    assert parse_train_log("")["nccl_in_log"] is False
    log_csv = tmp_path / "log.csv"
    log_csv.write_text("epoch,train_loss,val_dice,lr,seconds\n0,4.9340,,6.31e-04,2.5\n1,4.7179,0.0025,1.26e-04,3.1\n")
    assert read_epoch_seconds(log_csv) == [2.5, 3.1]
    assert read_epoch_seconds(tmp_path / "missing.csv") == []
    assert step_seconds([2.5, 3.1], 5) == 0.5
    assert step_seconds([2.5], 5) is None  # a single epoch validates too


def test_pretrain_log_gives_steps_last_loss_and_the_rate_after_the_first_row(tmp_path):
    log_csv = tmp_path / "log.csv"
    log_csv.write_text(
        "step,total,inpaint,lr,seconds\n10,2.5,1.0,4e-4,9.0\n20,2.0,0.9,3e-4,10.0\n30,nan,0.8,1e-4,11.5\n"
    )
    got = read_pretrain_log(log_csv)
    assert got["steps_logged"] == 30 and got["seconds_per_step"] == 0.125  # (11.5 - 9.0) / 20
    assert got["last_total"] != got["last_total"]  # NaN reaches the stage's check
    assert read_pretrain_log(tmp_path / "missing.csv") == {
        "steps_logged": 0,
        "last_total": None,
        "seconds_per_step": None,
    }


def test_parse_probe():
    line = "noise\n[default0]:" + PROBE_TAG + '{"backend": "nccl", "ok": true}\n'
    assert parse_probe(line) == {"backend": "nccl", "ok": True}
    assert parse_probe("nothing here") is None


# --------------------------------------------------------------------------- the Dice verdict


def label_map() -> np.ndarray:
    arr = np.zeros((6, 20, 20), np.uint8)
    arr[1:5, 2:12, 2:12] = 3
    arr[1:5, 14:18, 14:18] = 7
    return arr


def test_identical_maps_agree():
    verdict = dice_agreement(label_map(), label_map(), 0.99)
    assert verdict["ok"] and verdict["min_dice"] == 1.0 and verdict["n_oars"] == 2 and verdict["below"] == {}


def test_a_boundary_slip_fails_and_names_the_oar():
    other = label_map()
    other[1:5, 14:18, 14] = 0  # a quarter of OAR 7 lost
    verdict = dice_agreement(label_map(), other, 0.99)
    assert not verdict["ok"]
    assert list(verdict["below"]) == [verdict["min_oar"]] and verdict["min_dice"] == pytest.approx(6 / 7)


def test_shape_mismatch_and_empty_maps_fail():
    assert not dice_agreement(label_map(), label_map()[:3], 0.99)["ok"]
    empty = np.zeros((2, 2, 2), np.uint8)
    verdict = dice_agreement(empty, empty, 0.99)
    assert not verdict["ok"] and verdict["reason"] == "no OAR in either label map"


def test_agreement_verdict_threshold():
    assert agreement_verdict({"a": 0.995, "b": 0.991}, 0.99)["ok"]
    verdict = agreement_verdict({"a": 0.995, "b": 0.98}, 0.99)
    assert not verdict["ok"] and verdict["below"] == {"b": 0.98} and verdict["min_oar"] == "b"


# --------------------------------------------------------------------------- summary and report


def sample_report() -> dict:
    return {
        "failures": [],
        "stages": {
            "environment": {
                "ok": True,
                "device_name": "NVIDIA H200",
                "gpus": [{"memory_total_mib": 143771}],
                "driver_version": "555.42.06",
                "cuda_driver_version": "12.5",
                "torch": "2.13.0",
                "torch_cuda": "12.6",
            },
            "cuda_test": {
                "ok": True,
                "wall_s": 20.1,
                "segmented_s": [9.5],
                "torch_max_reserved_mib": 2048.0,
                "nvidia_smi_peak_mib": 2600,
            },
            "cpu_test": {"ok": True, "segmented_s": [40.2]},
            "amp_agreement": {"ok": True, "min_dice": 0.9987, "min_oar": "Bone_Mandible"},
            "cuda_test_fp32": {"ok": True, "segmented_s": [12.5]},
            "cuda_test_bf16": {"ok": True, "segmented_s": [9.9]},
            "fp32_agreement": {"ok": True, "min_dice": 0.9999, "min_oar": "Lips"},
            "bf16_agreement": {"ok": True, "min_dice": 0.9931, "min_oar": "Cochlea_L"},
            "cuda_full": {
                "ok": True,
                "ct_size": [1024, 1024, 198],
                "wall_s": 44.0,
                "segmented_s": [30.0],
                "settings": ["1 fold(s), mirroring x, overlap 0.5"],
                "torch_max_allocated_mib": 3000.0,
                "torch_max_reserved_mib": 3500.0,
                "nvidia_smi_peak_mib": 4100,
                "mean_dice_vs_truth": 0.81,
            },
            "train_amp": {"ok": True, "seconds_per_step": 0.12, "epoch_seconds": [0.6, 1.4]},
            "train_torchrun": {"ok": True, "exit_code": 0},
            "pretrain_amp": {"ok": True, "seconds_per_step": 0.08, "nvidia_smi_peak_mib": 2100},
            "nccl_probe": {"ok": True},
        },
    }


def test_build_summary_takes_the_headline_figures():
    summary = build_summary(sample_report())
    assert summary["ok"] is True and summary["gpu"] == "NVIDIA H200" and summary["gpu_memory_total_mib"] == 143771
    assert summary["test_cuda_segmented_s"] == 9.5 and summary["test_cpu_segmented_s"] == 40.2
    assert summary["amp_min_dice"] == 0.9987 and summary["full_cuda_segmented_s"] == 30.0
    assert summary["full_cuda_torch_peak_reserved_mib"] == 3500.0 and summary["full_cuda_smi_peak_mib"] == 4100
    assert summary["train_s_per_step"] == 0.12 and summary["torchrun_exit_code"] == 0 and summary["nccl_ok"] is True
    assert summary["pretrain_s_per_step"] == 0.08 and summary["pretrain_smi_peak_mib"] == 2100
    json.dumps(summary)  # plain JSON
    lines = format_summary(summary)
    assert lines[-1].startswith("PASS") and any("0.9987" in line and "Bone_Mandible" in line for line in lines)
    assert "self-supervised pretraining (AMP): 0.080 s/step, peak 2100 MiB nvidia-smi" in lines
    assert summary["test_cuda_bf16_segmented_s"] == 9.9 and summary["bf16_min_dice"] == 0.9931
    assert (
        "test/ on cuda by --precision: fp32 12.5 s (lowest OAR Dice vs CPU fp32 0.9999), "
        "bf16 9.9 s (lowest OAR Dice vs CPU fp32 0.9931)"
    ) in lines


def test_summary_of_a_failed_run_without_figures():
    report = {"failures": ["environment: no CUDA GPU: ..."], "stages": {"environment": {"ok": False}}}
    summary = build_summary(report)
    assert summary["ok"] is False and summary["amp_min_dice"] is None and summary["full_cuda_wall_s"] is None
    lines = format_summary(summary)
    assert lines == ["FAILED:", "  environment: no CUDA GPU: ..."]  # no lines of unmeasured figures


def test_a_failed_stage_is_recorded_and_the_next_still_runs(tmp_path):
    report = Report(tmp_path / "r.json", {})
    with report.stage("first") as rec:
        rec["figure"] = 1.5
        raise StageFailed("check failed")
    with report.stage("second") as rec:
        raise ValueError("boom")
    with report.stage("third") as rec:
        rec["figure"] = 2
    report.skip("fourth", "needs first")
    report.finish(EXIT_FAILED)
    data = json.loads((tmp_path / "r.json").read_text())
    stages = data["stages"]
    assert stages["first"]["ok"] is False and stages["first"]["figure"] == 1.5
    assert stages["second"] == {**stages["second"], "ok": False, "error": "ValueError: boom"}
    assert stages["third"]["ok"] is True and stages["fourth"] == {"ok": None, "skipped": "needs first"}
    assert data["failures"] == ["first: check failed", "second: ValueError: boom"]
    assert data["ok"] is False and data["exit_code"] == 1 and "seconds" in stages["third"]


def test_a_job_past_its_time_limit_is_killed(tmp_path):
    job = Job(
        "sleeper",
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
        tmp_path / "sleeper.log",
        timeout_s=1.0,
    )
    result = job.wait()
    assert result.timed_out and result.wall_s < 30 and job.proc.poll() is not None
    with pytest.raises(StageFailed, match="limit"):
        check_exit(result, "sleeper")


def test_a_failing_job_reports_its_exit_code_and_tail(tmp_path):
    result = run_job(
        "fails", [sys.executable, "-c", "import sys; print('last words'); sys.exit(3)"], tmp_path / "fails.log", 60
    )
    assert result.exit_code == 3 and not result.timed_out and "last words" in result.text
    with pytest.raises(StageFailed, match=r"exited 3: .*last words"):
        check_exit(result, "fails")


def test_error_tail_finds_the_cause_under_torchrun_noise():
    text = (
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "[rank0]: AttributeError: module 'torch._C' has no attribute '_cuda_setDevice'\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
        "  error_file: <N/A>\n  traceback : To enable traceback see: https://pytorch.org/docs\n"
        "=========================\n"
    )
    assert error_tail(text) == "[rank0]: AttributeError: module 'torch._C' has no attribute '_cuda_setDevice'"
    logged = "2026 INFO a: fine\n2026 ERROR process: FAILED: no CT image found\n"
    assert error_tail(logged) == "2026 ERROR process: FAILED: no CT image found"
    assert error_tail("one\ntwo\nthree\nfour\n") == "two | three | four"


def test_memory_poller_without_a_target_measures_nothing():
    with GpuMemoryPoller(None) as poller:
        pass
    assert poller.figures()["nvidia_smi_peak_mib"] is None


# --------------------------------------------------------------------------- the command line


def test_help_exits_0():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--stage-timeout" in done.stdout


def test_without_a_gpu_it_stops_at_once_and_writes_the_json(tmp_path):
    """CUDA_VISIBLE_DEVICES="" hides every GPU, so this holds on a GPU machine too."""
    out, work = tmp_path / "out", tmp_path / "work"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--work", str(work)],
        cwd=ROOT,
        env={**no_gpu_env(), "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == EXIT_NO_GPU, done.stdout + done.stderr
    assert "no CUDA GPU" in done.stdout
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["ok"] is False and data["exit_code"] == EXIT_NO_GPU
    assert list(data["stages"]) == ["environment"]  # nothing after it ran
    assert data["failures"] and data["failures"][0].startswith("environment: no CUDA GPU")
    assert data["summary"]["ok"] is False
    assert list(work.iterdir()) == []  # no phantom was generated


def test_the_wrapper_says_no_cuda_gpu_and_exits_2(tmp_path):
    env = {**no_gpu_env(), "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/gpu_check.sh"), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA GPU" in done.stderr and "torch.cuda.is_available() says 'False'" in done.stderr
    assert json.loads((tmp_path / "gpu_check.json").read_text())["exit_code"] == EXIT_NO_GPU
