"""Training: HaN-Seg raw dataset → plans + checkpoints → a model folder for the container.

Entry points (docs/training.md): ``python -m training.plan``, ``python -m training.train``,
``python -m training.export``. Preprocessing is ``hanseg.preprocess.preprocess_case``, the
function inference uses. Modules: ``plan``, ``data`` (cache,
patch sampling, augmentation), ``losses``, ``config`` (the training settings), ``train``,
``validate``, ``transfer``, ``distributed``, ``export``, ``model_card``.
"""
