"""hanseg: the runtime of the head-and-neck OAR segmentation image (what ``process.py`` runs).

It imports with ``requirements.txt`` alone; training, phantoms, evaluation and benchmarks
stand beside it and import it, never the other way round. Modules, from the bottom up:

* data and errors (import nothing heavy): ``labels`` (the OAR table), ``errors`` (named
  exceptions), ``network_kinds`` (one record per network kind);
* input: ``io`` (reading and writing images, the axis contract), ``checks`` (repairs of
  faulty values), ``resources`` (memory pre-check);
* the model folder contract: ``plans`` (``plans.json``), ``networks`` (building the plan's
  network), ``fcn2p5d`` (the 2.5D network), ``model_dir`` (weights, hashes, ``/opt/ml/model``);
* one case, forward and back: ``geometry`` (crop/uncrop, resample/back), ``registration``
  (MR → CT), ``preprocess`` (shared with training), ``budget`` (test-time settings within a
  time budget), ``inference`` (the :class:`~hanseg.inference.Segmenter`), ``precision``
  (``--precision``: which number format the network runs in, and why), ``tiling`` (the sliding
  windows and their gaussian blend), ``feed_cache`` (the timed window feed, remembered per
  machine and model), ``timing`` (the seconds of each step, in the log), ``prefetch`` (the
  first case's images read while the model loads), ``postprocess``
  (probabilities back onto the CT grid, largest components), ``coverage`` (does the CT cover
  the head and neck: a CT cut short or at the top, structures at its edge);
* ``dicom`` (DICOM in and out: ``scan``, ``select``, ``volume``; ``contours``, ``names``,
  ``rtstruct``, ``seg``, ``common``: what those two share, ``identity``: their UIDs);
* ``layouts`` (the input folder layouts of ``process.py``: ``gc2023``, ``sockets``, ``dicom``,
  ``common``);
* ``node`` (``python -m hanseg.node``, the DICOM node of a hospital: ``config``, ``store``,
  ``jobs``, ``storage``, ``audit``, ``scp``, ``send``, ``worker``, ``service``, ``disk`` (the free-space floor),
  ``actions`` (force-complete, retry, resend, the job list), ``errors``, ``__main__``; its operation:
  ``web`` (dashboard, API, actions), ``pages`` (their HTML and script), ``webserver`` (uvicorn in a
  thread), ``metrics`` (Prometheus), ``health`` (``/healthz``), ``notify`` (webhook alerts) and
  ``telemetry`` (where the parts report to them));
* ``qa_picture`` (the QA picture of a result: three CT slices with each organ's outline and a
  legend, for ``process.py --qa``, the node's dashboard and ``python -m evaluation.qa``;
  ``qa_planes``: its planes in physical space and the outlines drawn on them);
* ``folders`` (the input layout and a writable output, checked before the model loads);
* ``compare`` (what ``test.sh`` runs inside the image).
"""

__version__ = "0.1.0"
#: seconds per case that the test-time settings are chosen to fit (``--time-budget``); here, not in
#: ``inference``, so that ``process.py --help`` shows it without importing torch
DEFAULT_TIME_BUDGET_S = 300.0
