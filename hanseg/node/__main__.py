"""``python -m hanseg.node``: the DICOM node (see :mod:`hanseg.node`). Exit 0 after SIGTERM
or SIGINT; 2 for bad settings or a bad model folder, before anything is received.

``python -m hanseg.node force-complete|retry|jobs ... --storage DIR`` acts on a node's queue
(:mod:`hanseg.node.actions`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..errors import HansegError
from .actions import COMMANDS
from .actions import main as actions_main
from .config import config_from_args

log = logging.getLogger("hanseg.node")
#: the model baked into the image, next to the package (as process.py's default)
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "model"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return actions_main(argv)
    try:
        config = config_from_args(argv)  # --help and bad settings answer before torch is imported
        from ..inference import Segmenter
        from ..model_dir import resolve_model_root
        from .service import NodeService, model_info, serve_until_signalled

        root = resolve_model_root(config.model, DEFAULT_MODEL)
        segmenter = Segmenter(
            root, config.device, precision=config.precision
        )  # once: the model stays loaded between studies
        service = NodeService(config, segmenter, model_info(root, segmenter.model_version))
    except HansegError as exc:
        log.error("%s", exc)
        return 2
    serve_until_signalled(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
