"""Training: HaN-Seg raw dataset → plans + checkpoints → a model folder for the container.

Entry points (see README): ``python -m training.plan``, ``python -m training.train``,
``python -m training.export``. Preprocessing is ``hanseg.preprocess.preprocess_case``, the
function inference uses.
"""
