"""Self-supervised pretraining (``python -m training.pretrain``) as a user runs it: on the raw
layout with its masks ignored, for several network kinds, resumable, each objective switchable,
and its output loading with ``--init-from`` (and ``--freeze encoder``) into a training run."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from hanseg.labels import NUM_CLASSES
from hanseg.networks import build_network
from hanseg.plans import load_plans
from helpers import ROOT, CliRun, run_main, train_in_process
from training.plan import main as plan_main
from training.pretrain import AnyScan, DicomScan, Scan, find_scans
from training.pretrain import main as pretrain_main
from training.transfer import init_from


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def plan(raw, work, network: str, cache=None) -> None:
    """``training.plan``; with ``cache``, the raw phantoms' preprocessed scans copied in (the
    same preprocessing whatever the network), so that each test does not register them again."""
    run_main(
        plan_main,
        "--data",
        str(raw),
        "--work",
        str(work),
        "--preset",
        "tiny",
        "--network",
        network,
        "--spacing",
        "3",
        "3",
        "4",
        "--patch",
        "32",
        "64",
        "64",
        "--folds",
        "2",
    )
    if cache is not None:
        shutil.copytree(cache, work / "cache_unlabelled")


@pytest.fixture(scope="module")
def raw_cache(raw_phantoms, tmp_path_factory):
    """The raw phantoms preprocessed once for pretraining (``WORK/cache_unlabelled``)."""
    from training.pretrain import cache_scan

    work = tmp_path_factory.mktemp("cache") / "work"
    plan(raw_phantoms, work, "resunet")
    plans = load_plans(work / "plans.json")
    for scan in find_scans(raw_phantoms):
        cache_scan(scan, plans, work / "cache_unlabelled")
    return work / "cache_unlabelled"


def log_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a pretraining log.csv."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mr_series_uid(scan: AnyScan) -> str:
    """The SeriesInstanceUID of the T1 MR picked for a scan found in DICOM files."""
    assert isinstance(scan, DicomScan) and scan.selection.mr is not None
    return scan.selection.mr.series_uid


def pretrain(raw, work, *extra: str, ok: bool = True) -> CliRun:
    """``training.pretrain`` in this process (the torchrun test below runs it as a process)."""
    return run_main(
        pretrain_main,
        "--images",
        str(raw),
        "--work",
        str(work),
        "--device",
        "cpu",
        "--save-every",
        "2",
        *extra,
        check=ok,
    )


@pytest.mark.parametrize("network", ["resunet", "dynunet", "swinunetr", "segresnet", "fcn2p5d"])
def test_pretrained_weights_load_into_the_segmentation_network(raw_phantoms, raw_cache, tmp_path, network):
    work = tmp_path / "work"
    plan(raw_phantoms, work, network, raw_cache)
    pretrain(raw_phantoms, work, "--steps", "2")
    out = work / "pretrain"
    rows = log_rows(out / "log.csv")
    assert [r["step"] for r in rows] == ["2"] and {"inpaint", "rotation", "contrastive"} <= set(rows[0])
    assert (out / "curves.png").stat().st_size > 1000
    assert json.loads((out / "pretrain.json").read_text())["scans"] == ["case_01", "case_02"]
    plans = load_plans(work / "plans.json")

    def build(n_in: int, n_out: int) -> torch.nn.Module:
        return build_network(plans.network, n_in, n_out)

    net = build(2, NUM_CLASSES)
    report = init_from(net, build, 2, NUM_CLASSES, out / "pretrained.pt")
    assert report.new_head and not report.missing and not report.unexpected and not report.input_adapted
    saved = torch.load(out / "pretrained.pt", weights_only=True)
    assert all(torch.equal(net.state_dict()[k], saved[k]) for k in report.copied)


def test_an_interrupted_run_resumes_to_the_same_weights_as_one_uninterrupted_run(
    raw_phantoms, raw_cache, tmp_path, monkeypatch
):
    from training import pretrain as module

    once, twice = tmp_path / "once", tmp_path / "twice"
    for work in (once, twice):  # the same preprocessed scans (multi-threaded registration need not repeat to the bit)
        plan(raw_phantoms, work, "resunet", raw_cache)
    cfg = module.PretrainConfig(steps=4, save_every=2)
    module.pretrain(raw_phantoms, once, once / "pretrain", cfg, "cpu")
    real_step, calls = module.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # after the checkpoint of step 2
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        module.pretrain(raw_phantoms, twice, twice / "pretrain", cfg, "cpu")
    assert not (twice / "pretrain/pretrained.pt").exists()
    monkeypatch.setattr(module, "train_step", real_step)
    module.pretrain(raw_phantoms, twice, twice / "pretrain", cfg, "cpu")
    a = torch.load(once / "pretrain/pretrained.pt", weights_only=True)
    b = torch.load(twice / "pretrain/pretrained.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in log_rows(twice / "pretrain/log.csv")] == ["2", "4"]
    changed = pretrain(raw_phantoms, twice, "--steps", "6", "--lr", "1e-3", ok=False)
    assert changed.returncode == 2 and "other settings (lr)" in changed.stderr


def test_objectives_switch_and_the_encoder_fine_tunes_frozen(raw_phantoms, raw_cache, tmp_path):
    work = tmp_path / "work"
    plan(raw_phantoms, work, "resunet", raw_cache)
    pretrain(raw_phantoms, work, "--steps", "2", "--objectives", "inpaint")
    assert set(log_rows(work / "pretrain/log.csv")[0]) == {"step", "total", "inpaint", "lr", "seconds"}
    done = train_in_process(
        raw_phantoms,
        work,
        "--epochs",
        "1",
        "--iters",
        "2",
        "--val-every",
        "1",
        "--init-from",
        str(work / "pretrain/pretrained.pt"),
        "--freeze",
        "encoder",
    )
    assert "tensors copied" in done.stderr and "frozen:" in done.stderr
    assert (work / "fold_0/checkpoint_last.pt").is_file()


def test_a_folder_of_images_pairs_ct_and_mr_and_an_empty_one_is_refused(raw_phantoms, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    ct = sitk.ReadImage(str(raw_phantoms / "case_01/case_01_IMG_CT.nrrd"))
    for name in ("a_CT.mha", "a_MR_T1.mha", "b.nii.gz"):
        sitk.WriteImage(ct, str(folder / name))
    (folder / "notes.txt").write_text("not an image")
    found = find_scans(folder)
    assert all(isinstance(s, Scan) for s in found)
    scans = {s.scan_id: s for s in found if isinstance(s, Scan)}
    assert set(scans) == {"a", "b"} and scans["a"].mr == folder / "a_MR_T1.mha" and scans["b"].mr is None
    work = tmp_path / "work"
    plan(raw_phantoms, work, "resunet")
    (tmp_path / "empty").mkdir()
    refused = pretrain(tmp_path / "empty", work, "--steps", "2", ok=False)
    assert refused.returncode == 2 and "no scans under" in refused.stderr
    assert not (work / "pretrain/pretrained.pt").exists()


def test_a_pacs_export_gives_one_scan_per_study_with_its_planning_ct_and_t1(raw_phantoms, tmp_path):
    from phantoms.dicom_export import export_case

    case = raw_phantoms / "case_01"
    pacs = tmp_path / "pacs"
    record = export_case(case / "case_01_IMG_CT.nrrd", case / "case_01_IMG_MR_T1.nrrd", pacs / "one", seed=3)
    (pacs / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    assert record.mr is not None
    scans = find_scans(pacs)  # the scout, the MIP and the T2 beside them are not taken
    assert [(s.scan_id, mr_series_uid(s)) for s in scans] == [(record.ct.series_uid, record.mr.series_uid)]
    work = tmp_path / "work"
    plan(raw_phantoms, work, "resunet")
    pretrain(pacs, work, "--steps", "2")
    meta = json.loads((work / "pretrain/pretrain.json").read_text())
    assert (meta["scans"], meta["with_mr"], meta["skipped"]) == ([record.ct.series_uid], 1, [])
    assert (work / f"cache_unlabelled/{record.ct.series_uid}.npz").is_file()


def test_a_scan_that_cannot_be_read_is_left_out_by_name_and_none_at_all_is_refused(raw_phantoms, tmp_path):
    good, bad = tmp_path / "good_and_bad", tmp_path / "bad_only"
    for folder in (good, bad):
        folder.mkdir()
        (folder / "b_CT.mha").write_bytes(b"not an image at all")
    shutil.copy(raw_phantoms / "case_02/case_02_IMG_CT.nrrd", good / "a_CT.nrrd")
    work = tmp_path / "work"
    plan(raw_phantoms, work, "resunet")
    pretrain(good, work, "--steps", "2")
    meta = json.loads((work / "pretrain/pretrain.json").read_text())
    assert meta["scans"] == ["a"] and [s["scan"] for s in meta["skipped"]] == ["b"]
    assert "b_CT.mha" in meta["skipped"][0]["reason"]
    refused = pretrain(bad, work, "--steps", "2", "--out", str(tmp_path / "refused"), ok=False)
    assert refused.returncode == 2 and "none of the 1 scan(s) could be used (b: b_CT.mha" in refused.stderr
    assert not (tmp_path / "refused").exists()


def test_bf16_autocasts_the_forward_pass_with_fp32_weights_and_auto_is_fp32_on_the_cpu(
    raw_phantoms, raw_cache, tmp_path
):
    from training import pretrain as module

    work = tmp_path / "work"
    plan(raw_phantoms, work, "resunet", raw_cache)
    plans, cpu = load_plans(work / "plans.json"), torch.device("cpu")
    run = module.make_run(plans, module.PretrainConfig(amp="bf16"), cpu)
    with module.autocast(run):
        restored, _, _ = run.model(torch.zeros(1, len(plans.channels), *plans.patch_size_zyx))
    assert restored.dtype == torch.bfloat16 and {p.dtype for p in run.model.parameters()} == {torch.float32}
    assert module.make_run(plans, module.PretrainConfig(), cpu).amp_dtype is None
    pretrain(raw_phantoms, work, "--steps", "2", "--amp", "bf16")
    row = log_rows(work / "pretrain/log.csv")[0]
    assert 0 < float(row["total"]) < 100
    assert json.loads((work / "pretrain/pretrain.json").read_text())["config"]["amp"] == "bf16"
    changed = pretrain(raw_phantoms, work, "--steps", "4", ok=False)
    assert changed.returncode == 2 and "other settings (amp)" in changed.stderr


def test_torchrun_two_processes_share_the_scans_and_end_with_the_same_weights(raw_phantoms, raw_cache, tmp_path):
    from training import pretrain as module

    work = tmp_path / "work"
    plan(raw_phantoms, work, "resunet", raw_cache)
    # contrastive only: the decoder and the rotation head get no gradient, which DDP must be told
    done = cli(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training.pretrain",
        "--images",
        str(raw_phantoms),
        "--work",
        str(work),
        "--device",
        "cpu",
        "--steps",
        "2",
        "--save-every",
        "2",
        "--batch",
        "1",
        "--objectives",
        "contrastive",
    )
    assert "rank 1 of 2 (gloo backend)" in done.stderr
    state = torch.load(work / "pretrain/checkpoint_last.pt", map_location="cpu", weights_only=False)
    # each rank sampled its own scan with its own streams, and DDP kept the weights equal
    assert state["world"] == 2 and state["param_sha256"][0] == state["param_sha256"][1]
    assert not torch.equal(state["streams"][0]["gen"], state["streams"][1]["gen"])
    assert json.loads((work / "pretrain/pretrain.json").read_text())["processes"] == 2
    plans = load_plans(work / "plans.json")
    initial = module.make_run(plans, module.PretrainConfig(objectives=("contrastive",)), torch.device("cpu"))
    trained = torch.load(work / "pretrain/pretrained.pt", weights_only=True)
    assert any(not torch.equal(v, trained[k]) for k, v in initial.model.net.state_dict().items())
    alone = pretrain(raw_phantoms, work, "--steps", "4", "--batch", "1", "--objectives", "contrastive", ok=False)
    assert alone.returncode == 2 and "made by 2 process(es)" in alone.stderr


def test_the_cache_is_not_taken_for_another_folders_scan_of_the_same_name(raw_phantoms, tmp_path):
    import numpy as np

    from training import pretrain as module

    work = tmp_path / "work"
    plan(raw_phantoms, work, "resunet")
    plans, cache = load_plans(work / "plans.json"), work / "cache_unlabelled"
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, case in ((one, "case_01"), (two, "case_02")):
        folder.mkdir()
        shutil.copy(raw_phantoms / case / f"{case}_IMG_CT.nrrd", folder / "a_CT.nrrd")
    path = module.cache_scan(find_scans(one)[0], plans, cache)
    first, written = np.load(path)["image"], path.stat().st_mtime_ns
    assert module.cache_scan(find_scans(one)[0], plans, cache).stat().st_mtime_ns == written  # taken from the cache
    second = np.load(module.cache_scan(find_scans(two)[0], plans, cache))["image"]
    assert first.shape != second.shape or not np.array_equal(first, second)
