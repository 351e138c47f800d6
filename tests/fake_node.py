"""The DICOM node as a process, with a stand-in predictor instead of the network: the real
settings (:func:`hanseg.node.config.config_from_args`), queue, receiver, worker and sender
(:class:`hanseg.node.service.NodeService`), so that a test can SIGKILL it and start it again
on the same storage. Run from the repository root with ``PYTHONPATH=tests``::

    python tests/fake_node.py [--fake-seconds S] [--poll-seconds S] [--max-backoff-seconds S] \\
        NODE OPTIONS (as ``python -m hanseg.node``)

``--fake-seconds``: each prediction sleeps this long first, so that a kill can land while a
study is being segmented. ``--max-backoff-seconds``: the longest wait between two sending
attempts (the node's own cap is an hour), so that a destination that comes back is used
within seconds. Stops cleanly on SIGTERM or SIGINT (exit 0), as ``python -m hanseg.node``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import Any

from hanseg.errors import HansegError
from hanseg.node.audit import ModelInfo
from hanseg.node.config import config_from_args
from hanseg.node.service import NodeService, serve_until_signalled
from helpers import FakePredictor

log = logging.getLogger("fake_node")
#: what the audit and the output UIDs name as the model (as tests/node_helpers.py's node)
FAKE_MODEL = ModelInfo("fake", {"fold_0.pt": "ab" * 32}, "fake-fingerprint")


class SlowPredictor:
    """:class:`helpers.FakePredictor` (every voxel above 0 HU is Brainstem), ``seconds`` late."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.inner = seconds, FakePredictor()

    def predict(self, ct: Any, mr: Any) -> Any:
        time.sleep(self.seconds)
        return self.inner.predict(ct, mr)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This script's own options, and the rest for the node's parser."""
    p = argparse.ArgumentParser(prog="fake_node.py", description=__doc__)
    p.add_argument("--fake-seconds", type=float, default=0.0, help="sleep before each prediction")
    p.add_argument("--poll-seconds", type=float, default=0.1, help="how often the worker looks for work")
    p.add_argument("--max-backoff-seconds", type=float, default=None, help="cap on the wait between attempts")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    own, rest = parse(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(rest)
    except HansegError as exc:
        log.error("%s", exc)
        return 2
    config = dataclasses.replace(
        config,
        poll_seconds=own.poll_seconds,
        max_backoff_s=config.max_backoff_s if own.max_backoff_seconds is None else own.max_backoff_seconds,
    )
    service = NodeService(config, SlowPredictor(own.fake_seconds), FAKE_MODEL)
    serve_until_signalled(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
