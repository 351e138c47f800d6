"""The training settings: one TrainConfig, the command line made from it, the weight decay each
optimiser gets, and checkpoints written before the newer settings existed."""

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
import torch

import training.train as train
from training.config import DEFAULT_WEIGHT_DECAY, TrainConfig, config_from_args
from training.data import augment

FIELDS = dataclasses.fields(TrainConfig)
REQUIRED = ["--data", "raw", "--work", "work"]  # the parser's own (not recorded) options

#: A value other than the default for every field: the round trip must carry each one.
OTHER: dict[str, Any] = {
    "epochs": 7,
    "iters": 3,
    "batch": 4,
    "lr": 0.02,
    "weight_decay": 0.125,
    "fg_fraction": 0.5,
    "val_every": 2,
    "val_overlap": 0.5,
    "seed": 11,
    "loss": "tvmf",
    "optimizer": "sgd",
    "init_from": "some/bundle",
    "input_init": "replicate",
    "freeze": "all-but-last:2",
    "elastic": 0.25,
    "lowres": 0.5,
    "reslice": 0.75,
    "mr_dropout": 0.0,
    "grad_clip": 1.5,
    "warmup": 9,
    "amp": "bf16",
    "time_budget": 60.0,
    "min_oar_reliability": 0.5,
}

#: ``config`` of a checkpoint written before mr_dropout, grad_clip and val_overlap were settings
#: (and when weight_decay was recorded as 1e-5 whatever the optimiser used).
OLD_CONFIG = {
    "amp": "auto",
    "batch": 2,
    "elastic": 0.3,
    "epochs": 3,
    "fg_fraction": 0.67,
    "freeze": "none",
    "init_from": None,
    "input_init": "zero",
    "iters": 3,
    "loss": "dice_ce",
    "lowres": 0.0,
    "lr": 0.001,
    "optimizer": "sgd",
    "reslice": 0.0,
    "seed": 0,
    "time_budget": None,
    "val_every": 1,
    "warmup": 0,
    "weight_decay": 1e-05,
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse(*argv: str) -> TrainConfig:
    return config_from_args(train.build_parser().parse_args([*REQUIRED, *argv]))


def test_every_field_is_an_option_with_its_help_and_default_in_the_usage_text(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: nothing wrapped
    text = train.build_parser().format_help()
    flat = " ".join(text.split())
    for f in FIELDS:
        shown = f.metadata.get("default_help", f.default)
        assert f"\n  {flag(f.name)} " in text, f"{flag(f.name)} is not in --help"
        assert f"{flag(f.name)} {f.metadata.get('metavar', '')}" in flat
        assert f"{f.metadata['help']} (default: {shown})" in flat, f.name
    assert "(default: the optimiser's: adamw 1e-05, adam 0, sgd 3e-05)" in flat


def test_parser_defaults_are_the_dataclass_defaults():
    parser = train.build_parser()
    for f in FIELDS:
        assert parser.get_default(f.name) == f.default, f.name
    assert parse() == TrainConfig()
    # the numbers training used before they were settings
    cfg = TrainConfig()
    assert (cfg.mr_dropout, cfg.grad_clip, cfg.val_overlap, cfg.weight_decay) == (0.2, 12.0, 0.25, 1e-5)


def test_every_field_round_trips_through_the_command_line():
    assert set(OTHER) == {f.name for f in FIELDS}, "give the new field a non-default value in OTHER"
    assert all(OTHER[f.name] != f.default for f in FIELDS)
    argv = [a for name, value in OTHER.items() for a in (flag(name), str(value))]
    cfg = parse(*argv)
    assert cfg == TrainConfig(**OTHER)
    assert json.loads(json.dumps(vars(cfg))) == OTHER  # what checkpoints and metadata.json keep


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_weight_decay_is_the_optimisers_default_unless_given_and_is_what_the_optimiser_gets(optimizer):
    default = {"adamw": 1e-5, "adam": 0.0, "sgd": 3e-5}[optimizer]
    assert DEFAULT_WEIGHT_DECAY[optimizer] == default
    cfg = parse("--optimizer", optimizer)
    assert cfg.weight_decay == default and vars(cfg)["weight_decay"] == default  # recorded as a number
    assert TrainConfig(optimizer=optimizer, weight_decay=0.0).weight_decay == 0.0  # 0 is not "unset"
    net = torch.nn.Conv3d(1, 2, 1)
    for wd in (default, 0.5):
        opt = train.make_optimizer(net, dataclasses.replace(cfg, weight_decay=wd))
        expected = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
        assert type(opt) is expected and opt.param_groups[0]["weight_decay"] == wd


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer 'lbfgs'"):
        TrainConfig(optimizer="lbfgs")


def test_augmentation_with_the_default_settings_draws_what_it_drew_before():
    gen = torch.Generator().manual_seed(0)
    image, labels, present = (
        torch.randn(2, 2, 8, 8, 8, generator=gen).numpy(),
        torch.randint(0, 31, (2, 8, 8, 8), generator=gen, dtype=torch.uint8).numpy(),
        np.ones((2, 31), bool),
    )
    cfg = TrainConfig(elastic=0.5)
    ours = train.augment_batch((image.copy(), labels.copy(), present.copy()), cfg, torch.Generator().manual_seed(1))
    before = augment(
        torch.from_numpy(image.copy()),
        torch.from_numpy(labels.copy()),
        torch.from_numpy(present.copy()),
        torch.Generator().manual_seed(1),
        elastic=0.5,
        lowres=0.0,
        reslice=0.0,
    )  # the call before mr_dropout was a setting
    assert all(torch.equal(a, b) for a, b in zip(ours, before))


def tiny_run(tmp_path, cfg: TrainConfig) -> train.FoldRun:
    net = torch.nn.Conv3d(2, 31, 1)
    tr = train.Trainer(
        net,
        train.make_optimizer(net, cfg),
        torch.amp.GradScaler("cpu", enabled=False),
        train.make_loss(cfg.loss, 31, None),
        [],
        torch.device("cpu"),
    )
    # plans=None: a stand-in, as what these tests call (resume, save_epoch) never reads the plan
    return train.FoldRun(
        tr,
        cfg,
        None,  # type: ignore[arg-type]
        [],
        np.random.default_rng(0),
        torch.Generator().manual_seed(0),
        train.Checkpoints(tmp_path / "fold_0"),
        "0",
    )


def old_checkpoint(tmp_path) -> dict:
    """A checkpoint as the code before the newer settings wrote it, trained with SGD (3e-5)."""
    old = tiny_run(tmp_path / "old", TrainConfig(optimizer="sgd"))
    rng, gen = np.random.default_rng(5), torch.Generator().manual_seed(5)
    rng.random(), torch.rand(3, generator=gen)
    return {
        "epoch": 4,
        "model": old.tr.net.state_dict(),
        "optimizer": old.tr.opt.state_dict(),
        "scaler": old.tr.scaler.state_dict(),
        "loss": {},
        "best": 0.5,
        "fold": "0",
        "config": dict(OLD_CONFIG),
        "rank_rng": [{"np": rng.bit_generator.state, "torch": gen.get_state()}],
    }


def test_a_checkpoint_without_the_newer_settings_resumes_and_then_records_them(tmp_path):
    state = old_checkpoint(tmp_path)
    cfg = TrainConfig(epochs=5, iters=3, elastic=0.3, val_every=1, optimizer="sgd")
    assert train.resume_conflicts(state, cfg) == []
    fr = tiny_run(tmp_path, cfg)
    assert train.resume(fr, state) == 5 and fr.best == 0.5
    assert fr.rng.bit_generator.state == state["rank_rng"][0]["np"]
    assert torch.equal(fr.gen.get_state(), state["rank_rng"][0]["torch"])
    assert fr.tr.opt.param_groups[0]["weight_decay"] == 3e-5
    train.save_epoch(fr, 5, None, [{"rank": 0, "rng": {}}])
    saved = torch.load(tmp_path / "fold_0" / "checkpoint_last.pt", weights_only=False)["config"]
    assert saved == vars(cfg) and saved["mr_dropout"] == 0.2 and saved["weight_decay"] == 3e-5


def test_resuming_with_changed_settings_that_a_checkpoint_fixes_is_refused(tmp_path):
    state = old_checkpoint(tmp_path)
    sgd = TrainConfig(optimizer="sgd")
    assert train.resume_conflicts(state, dataclasses.replace(sgd, loss="bce")) == ["--loss dice_ce (now bce)"]
    # the weight decay the optimiser state holds counts, not the 1e-5 old configs recorded
    assert train.resume_conflicts(state, dataclasses.replace(sgd, weight_decay=1e-5)) == [
        "--weight-decay 3e-05 (now 1e-05)"
    ]
    # settings the checkpoint does not fix may change on resume
    assert train.resume_conflicts(state, dataclasses.replace(sgd, mr_dropout=0.0, grad_clip=1.0)) == []
    with pytest.raises(SystemExit, match="--loss dice_ce"):
        train.resume(tiny_run(tmp_path, dataclasses.replace(sgd, loss="bce")), state)
