"""Training: HaN-Seg raw dataset → plans + checkpoints → a model folder for the container.

Entry points (docs/training.md): ``python -m training.plan``, ``python -m training.train``,
``python -m training.export``. Preprocessing is ``hanseg.preprocess.preprocess_case``, the
function inference uses. Modules: ``plan``, ``data`` (cache,
patch sampling, augmentation), ``losses``, ``config`` (the training settings), ``train``,
``validate``, ``transfer``, ``distributed``, ``export``, ``model_card``.
"""

from pathlib import Path


def no_plan(work: Path, data: Path | None = None) -> str:
    """What a training command says (one line, exit 2) of a work folder that ``training.plan``
    has not planned yet."""
    return (
        f"{work} holds no plan (plans.json): run `python -m training.plan --data {data or 'DATA'} --work {work}` first"
    )
