"""Multi-process training as a user starts it: torchrun, 2 CPU processes, gloo backend."""

import subprocess
import sys

import torch

from hanseg.labels import NUM_CLASSES
from hanseg.networks import build_network
from hanseg.plans import load_plans
from helpers import ROOT
from training.distributed import DistContext, param_digest, shard


def test_shard_splits_cases_like_a_distributed_sampler():
    cases = ["a", "b", "c", "d", "e"]
    assert shard(cases, DistContext(0, 2)) == ["a", "c", "e"]
    assert shard(cases, DistContext(1, 2)) == ["b", "d"]
    assert shard(cases, DistContext()) == cases
    assert shard(["a"], DistContext(1, 2)) == ["a"]  # fewer cases than ranks: every rank takes all


def test_torchrun_two_ranks_hold_identical_weights(raw_phantoms, plan_work, tmp_path):
    work = plan_work(tmp_path / "work", "--spacing", "4", "4", "5", "--folds", "1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "training.train",
            "--data",
            str(raw_phantoms),
            "--work",
            str(work),
            "--fold",
            "all",
            "--epochs",
            "1",
            "--iters",
            "2",
            "--batch",
            "1",
            "--lr",
            "1e-2",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2 (gloo backend)" in done.stderr
    state = torch.load(work / "fold_all" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    ranks = state["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    # each rank hashed its own parameters after the steps: identical, so gradients were synchronised
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"]
    # ... although the ranks trained on different cases (one each) and so had different losses
    assert ranks[0]["loss"] != ranks[1]["loss"]
    plans = load_plans(work / "plans.json")
    net = build_network(plans.network, len(plans.channels), NUM_CLASSES)
    torch.manual_seed(0)
    initial = param_digest(build_network(plans.network, len(plans.channels), NUM_CLASSES))
    net.load_state_dict(state["model"])
    assert param_digest(net) == ranks[0]["param_sha256"] != initial  # the saved weights, and they moved
    assert len(state["rank_rng"]) == 2 and state["rank_rng"][0] != state["rank_rng"][1]
