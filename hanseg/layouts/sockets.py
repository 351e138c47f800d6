"""The Grand-Challenge socket layout (newer phases): ``<input>/inputs.json`` names the sockets.

``inputs.json`` is a list of socket values. Each names its socket under ``"socket"`` (older
platform versions: ``"interface"``) with ``slug``, ``kind`` and ``relative_path``; an image
socket's file lies in ``<input>/<relative_path>/`` (one ``.mha`` or ``.tif``). The output is
one image at ``<output>/<output relative_path>/output.mha``. One case per job, so there is no
``results.json``; the exit code and the log say what happened.

Slugs differ between phases, so the CT and MR sockets are chosen by name: the slugs given on
the command line, or else the one socket whose slug/path has a ``ct`` token and the one with
an ``mri``/``mr``/``t1`` token (``head-neck-ct``, ``images/t1-mri``...). Anything ambiguous
is refused with the slugs listed, never guessed.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from ..errors import HansegError, InputLayoutError
from ..folders import INPUTS_JSON, OUTPUT_SOCKET_PATH, check_writable
from ..io import image_files, image_suffix
from .common import CaseFiles, Predictor, case_message, duplicates, qa_name, segment

log = logging.getLogger(__name__)

CT_TOKENS = frozenset({"ct"})
MR_TOKENS = frozenset({"mr", "mri", "t1", "t1w", "t1mri"})


@dataclass(frozen=True)
class SocketConfig:
    ct_slug: str | None = None  # None: choose by the "ct" token
    mr_slug: str | None = None  # None: choose by an "mr"/"mri"/"t1" token
    output_path: str = OUTPUT_SOCKET_PATH  # the output socket's relative_path
    output_name: str = "output.mha"


@dataclass(frozen=True)
class SocketValue:
    slug: str
    kind: str
    relative_path: str


def _parse_value(item: object, index: int) -> SocketValue:
    socket = item.get("socket", item.get("interface")) if isinstance(item, dict) else None
    if not isinstance(socket, dict) or not {"slug", "relative_path"} <= socket.keys():
        raise InputLayoutError(f"{INPUTS_JSON} entry {index} has no socket with a slug and a relative_path")
    rel = str(socket["relative_path"])
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise InputLayoutError(f"{INPUTS_JSON}: socket {socket['slug']!r} has an unsafe relative_path {rel!r}")
    return SocketValue(str(socket["slug"]), str(socket.get("kind", "")), rel)


def read_inputs_json(input_dir: Path) -> list[SocketValue]:
    path = input_dir / INPUTS_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputLayoutError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, list):
        raise InputLayoutError(f"{path} must hold a list of socket values, not {type(data).__name__}")
    return [_parse_value(item, i) for i, item in enumerate(data)]


def _tokens(value: SocketValue) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", f"{value.slug} {value.relative_path}".lower())) - {""}


@overload
def _pick(
    values: list[SocketValue],
    slug: str | None,
    tokens: frozenset[str],
    what: str,
    exclude: frozenset[str],
    required: Literal[True],
) -> SocketValue: ...
@overload
def _pick(
    values: list[SocketValue],
    slug: str | None,
    tokens: frozenset[str],
    what: str,
    exclude: frozenset[str],
    required: bool,
) -> SocketValue | None: ...
def _pick(
    values: list[SocketValue],
    slug: str | None,
    tokens: frozenset[str],
    what: str,
    exclude: frozenset[str],
    required: bool,
) -> SocketValue | None:
    if slug is not None:
        hits = [v for v in values if v.slug == slug]
        if not hits:
            raise InputLayoutError(f"no socket {slug!r} in {INPUTS_JSON} (sockets: {[v.slug for v in values]})")
        return hits[0]
    hits = [v for v in values if _tokens(v) & tokens and not _tokens(v) & exclude]
    if len(hits) > 1 or (required and not hits):
        flag = "--ct-socket" if what == "CT" else "--mr-socket"
        raise InputLayoutError(
            f"cannot tell which socket holds the {what} among {[v.slug for v in values]}: pass {flag} SLUG"
        )
    return hits[0] if hits else None


def image_file(input_dir: Path, value: SocketValue) -> Path:
    """The one image file of an image socket (``<input>/<relative_path>/<file>``)."""
    folder = input_dir / value.relative_path
    if folder.is_file() and image_suffix(folder) is not None:
        return folder
    files = image_files(folder)
    if len(files) != 1:
        raise InputLayoutError(
            f"socket {value.slug!r}: expected one image in {folder}, found {[p.name for p in files] or 'none'}"
        )
    return files[0]


def find_socket_images(input_dir: Path, config: SocketConfig) -> tuple[Path, Path | None]:
    """(CT file, MR file or None) named by ``inputs.json``."""
    values = read_inputs_json(input_dir)
    ct = _pick(values, config.ct_slug, CT_TOKENS, "CT", MR_TOKENS, required=True)
    rest = [v for v in values if v is not ct]
    mr = _pick(rest, config.mr_slug, MR_TOKENS, "MR", frozenset(), required=False)
    others = [v.slug for v in rest if v is not mr]
    if others:
        log.info("ignoring sockets %s", others)
    if mr is None:
        log.warning("no MR socket in %s: the case is segmented from the CT alone", INPUTS_JSON)
    log.info("CT socket %r, MR socket %r", ct.slug, mr.slug if mr else None)
    return image_file(input_dir, ct), (image_file(input_dir, mr) if mr else None)


def output_file(output_dir: Path, config: SocketConfig) -> Path:
    return output_dir / config.output_path / config.output_name


def run_socket_case(
    input_dir: Path, output_dir: Path, predictor: Predictor, config: SocketConfig, qa_dir: Path | None = None
) -> int:
    """The one case an ``inputs.json`` job holds → ``<output>/<output socket path>/output.mha``;
    with ``qa_dir``, its QA picture → ``<qa_dir>/<CT name>.png`` (as in the 2023 layout)."""
    ct, mr = find_socket_images(input_dir, config)
    case, out_path = CaseFiles(ct, mr), output_file(output_dir, config)
    check_writable(out_path.parent)
    repeats = duplicates([case])
    if repeats:
        log.error("FAILED: %s", "; ".join(f"{p.name} is identical to {q.name}" for p, q in repeats.items()))
        return 1
    try:
        segment(case, out_path, predictor, None if qa_dir is None else qa_dir / qa_name(case.ct))
    except (HansegError, OSError, MemoryError) as exc:
        log.error("FAILED %s", case_message(case.ct.name, exc))
        return 1
    return 0
