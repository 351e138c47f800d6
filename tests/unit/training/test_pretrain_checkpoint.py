"""training.pretrain's checkpoint checks, on hand-made checkpoint dicts (no network)."""

from dataclasses import asdict

import pytest

from training.pretrain import PretrainConfig, PretrainError, resume


def test_a_checkpoint_of_the_earlier_format_is_refused_by_name():
    with pytest.raises(PretrainError, match=r"earlier training\.pretrain.*--restart"):
        # run=None: the format is refused before the run is read
        resume(None, {"step": 2, "config": asdict(PretrainConfig()), "rng": {}}, PretrainConfig())  # type: ignore[arg-type]


def test_other_settings_are_named_and_a_longer_run_is_not_one_of_them():
    saved = {"step": 2, "config": asdict(PretrainConfig(lr=1e-3, steps=10)), "streams": [{}], "world": 1}
    with pytest.raises(PretrainError, match=r"other settings \(lr\)"):
        resume(None, saved, PretrainConfig(steps=20))  # type: ignore[arg-type]  # refused before the run is read


class _Ctx:
    world, rank = 1, 0


class _Run:
    """A stand-in for training.pretrain.Run: the process-count check reads only ``ctx``."""

    ctx = _Ctx()


def test_another_process_count_is_refused_with_the_torchrun_to_use():
    saved = {"step": 2, "config": asdict(PretrainConfig()), "streams": [{}, {}], "world": 2}
    with pytest.raises(PretrainError, match=r"made by 2 process.*--nproc_per_node 2"):
        resume(_Run(), saved, PretrainConfig())  # type: ignore[arg-type]  # the stand-in above
