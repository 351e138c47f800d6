"""The model card (``model/README.md``) and README's model summary, generated from ``metadata.json``.

``metadata.json`` is the single source of a model's numbers (MONAI bundle style: version,
changelog, training data, stages, scores with the commands that produced them). Nothing
here computes a number; it only lays out what the metadata holds, so the card and README
cannot disagree with it. ``python -m training.export --card MODEL_DIR`` rewrites both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hanseg.plans import Plans, load_plans

#: the repository: a model folder inside it is named relative to it on the card (``model``)
ROOT = Path(__file__).resolve().parents[1]
#: what the card says where the metadata holds no data command (``--data-command`` not given)
NOT_RECORDED = "not recorded"

#: README's generated block lies between these two lines.
README_BEGIN = "<!-- model summary: generated from model/metadata.json by training.export --card; do not edit -->"
README_END = "<!-- end of model summary -->"

Metadata = Mapping[str, Any]


def read_metadata(model_dir: Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / "metadata.json").read_text())


def total_minutes(meta: Metadata) -> int:
    return int(sum(s.get("training_minutes") or 0 for s in meta.get("stages", [])))


def unseen(meta: Metadata) -> Mapping[str, Any] | None:
    """The unseen-phantom scores (``benchmarks.phantom_eval --record``), if recorded."""
    return meta.get("scores", {}).get("unseen_phantoms")


def headline(meta: Metadata) -> str:
    """One paragraph: what the model is, how it was trained, what it scores (README's status)."""
    val = meta["scores"]["validation"]
    text = (
        f"The shipped `model/` (version {meta['version']}) was trained for {total_minutes(meta)} CPU minutes in "
        f"{len(meta.get('stages', []))} stage(s), on {meta['training_data']['description']}. "
        f"Validation mean Dice {val['mean_dice']:.3f}."
    )
    scores = unseen(meta)
    if scores:
        grid = scores["grids"]["original"]
        low_dice, low_oar = grid["lowest_oar"]
        text += (
            f" On {scores['settings']['cases']} unseen phantoms: mean Dice {grid['mean_dice']:.3f}, mean HD95 "
            f"{grid['mean_hd95_mm']:.2f} mm, lowest OAR {low_oar} {low_dice:.2f}."
        )
    return text + f" {meta['intended_use']}"


def readme_block(meta: Metadata) -> str:
    return f"{README_BEGIN}\n> {headline(meta)}\n>\n> Details: [model/README.md](model/README.md).\n{README_END}"


def sync_readme(readme: Path, meta: Metadata) -> bool:
    """Replace README's generated block; True when the file changed."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no generated model summary block ({README_BEGIN!r} ... {README_END!r})")
    new = pattern.sub(lambda _: readme_block(meta), text)
    if new != text:
        readme.write_text(new)
    return new != text


def _stages(meta: Metadata) -> list[str]:
    rows = ["| version | steps | CPU minutes | validation mean Dice |", "| --- | ---: | ---: | ---: |"]
    for stage in meta.get("stages", []):
        val = stage.get("validation_mean_dice")
        rows.append(
            f"| {stage['version']} | {stage.get('steps', '')} | {stage.get('training_minutes', '')} | "
            f"{'' if val is None else f'{val:.3f}'} |"
        )
    return rows


def _changelog(meta: Metadata) -> list[str]:
    return [f"- **{version}**: {text}" for version, text in meta.get("changelog", {}).items()]


def folder_label(model_dir: Path) -> str:
    """How the card names its model folder in the command that rewrites it: relative to the
    repository when inside it (``model``), else as given."""
    path = Path(model_dir)
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _training_data(meta: Metadata) -> str:
    data = meta["training_data"]
    description = data.get("description") or "not described"
    command = data.get("command")
    return f"{description}: `{command}`" if command else f"{description} (the command that made it: {NOT_RECORDED})"


def _commands(meta: Metadata) -> list[str]:
    command = meta["training_data"].get("command")
    lines = ["```bash", *([command] if command else [])]
    for stage in meta.get("stages", []):
        lines += [f"# {stage['version']}", *stage.get("commands", [])]
    return [*lines, "```"]


def _unseen_table(scores: Mapping[str, Any]) -> list[str]:
    rows = [
        "| grid | mean Dice | Δ vs original | mean HD95 (mm) | lowest OAR Dice | s/case |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    base = scores["grids"]["original"]["mean_dice"]
    for name, grid in scores["grids"].items():
        low_dice, low_oar = grid["lowest_oar"]
        rows.append(
            f"| {name} | {grid['mean_dice']:.3f} | {grid['mean_dice'] - base:+.4f} | {grid['mean_hd95_mm']:.2f} | "
            f"{low_dice:.3f} ({low_oar}) | {grid['seconds_per_case']:.1f} |"
        )
    per_oar = ", ".join(f"{oar} {d:.2f}" for oar, d in scores.get("per_oar_dice", {}).items())
    rows += [
        "",
        "s/case is the wall time of each `process.py` run on whatever machine ran the command, busy or "
        "not: a check that nothing is pathologically slow, not a benchmark (speed: docs/benchmarks.md).",
    ]
    return [*rows, "", f"Dice per OAR on the original grid: {per_oar}."] if per_oar else rows


def _scores(meta: Metadata) -> list[str]:
    val = meta["scores"]["validation"]
    lines = [
        "## Scores",
        "",
        f"- **Validation:** mean Dice {val['mean_dice']:.3f} over {val['cases']} cases ({val['what']}).",
    ]
    scores = unseen(meta)
    if not scores:
        return [*lines, "- **Unseen phantoms:** not recorded (`python -m benchmarks.phantom_eval --record MODEL`)."]
    settings = scores["settings"]
    return [
        *lines,
        f"- **Unseen phantoms** ({settings['cases']} cases of size `{settings['size']}`, seed "
        f"{settings['seed']}, never used in training, through `process.py` with its defaults), from:",
        "",
        f"  `{scores['command']}`",
        "",
        *_unseen_table(scores),
    ]


def _precision(meta: Metadata) -> list[str]:
    """The bf16-vs-fp32 agreement (``benchmarks.precision --record``); nothing when not recorded."""
    rec = meta.get("precision_agreement")
    if not rec:
        return []
    settings, cpu, agree = rec["settings"], rec["cpu"], rec["bf16_vs_fp32"]
    truth, seconds = rec["truth_mean_dice"], rec["seconds_per_case"]
    low_oar, low_dice = agree["lowest_oar"]
    units = " and ".join(cpu.get("bf16_units", [])) or "no bfloat16 units"
    lowest = sorted(agree["per_oar_dice"].items(), key=lambda item: item[1])[:5]
    return [
        "## Precision",
        "",
        f"`process.py --precision bf16` (the default `auto` on a CPU with AMX-BF16 or AVX512-BF16) against "
        f"`--precision fp32`, on {settings['cases']} unseen phantoms of size `{settings['size']}` (seed "
        f"{settings['seed']}), on {cpu.get('model') or 'an unnamed CPU'} ({units}):",
        "",
        f"- **bf16 labels against fp32 labels:** mean Dice {agree['mean_dice']:.4f} over "
        f"{len(agree['per_oar_dice'])} OARs, lowest {low_oar} {low_dice:.4f}; "
        f"{agree['voxels_changed_fraction']:.2e} of all voxels changed label.",
        f"- **Lowest OARs:** {', '.join(f'{oar} {d:.4f}' for oar, d in lowest)}.",
        f"- **Mean Dice against the ground truth:** fp32 {truth['fp32']:.4f}, bf16 {truth['bf16']:.4f} "
        f"({truth['bf16'] - truth['fp32']:+.4f}).",
        f"- **Seconds per case** (wall time of each `process.py` run, on whatever machine ran it): fp32 "
        f"{seconds['fp32']:.1f}, bf16 {seconds['bf16']:.1f}.",
        "",
        f"From: `{rec['command']}`",
        "",
    ]


def card(meta: Metadata, plans: Plans, folder: str = "model") -> str:
    """The whole model card as Markdown; ``folder`` names the model folder in the command that
    rewrites the card (:func:`folder_label`)."""
    net = plans.network
    lines = [
        f"# Model card: {meta['name']} {meta['version']}",
        "",
        f"Generated from `metadata.json` by `python -m training.export --card {folder}`; edit the metadata, not "
        "this file.",
        "",
        meta["description"],
        "",
        f"**Intended use.** {meta['intended_use']}",
        "",
        "## Files",
        "",
        "- `plans.json`: spacing, patch, normalisation, network, folds, post-processing (see docs/model-folder.md)",
        "- `fold_<k>.pt`: one state dict per fold (loaded with `weights_only=True`)",
        "- `metadata.json`: this card's source, and the sha256 of each weight file (checked at start-up)",
        "",
        "## Network and plan",
        "",
        f"- `{net.name}` {dict(net.kwargs)}; input channels {', '.join(plans.channel_names)}; 31 output classes",
        f"- spacing {plans.spacing_xyz_mm} mm (x,y,z), patch {plans.patch_size_zyx} voxels (z,y,x), "
        f"folds {list(plans.folds)}, overlap {plans.overlap}",
        "",
        "## Training data",
        "",
        _training_data(meta),
        "",
        f"## Stages ({total_minutes(meta)} CPU minutes in all)",
        "",
        *_stages(meta),
        "",
        "## Changelog",
        "",
        *_changelog(meta),
        "",
        *_scores(meta),
        "",
        *_precision(meta),
        "## Reproduce",
        "",
        *_commands(meta),
        "",
    ]
    return "\n".join(lines)


def write_card(model_dir: Path, readme: Path | None = None) -> Path:
    """Rewrite ``model_dir/README.md`` (and README's block, when given) from the metadata."""
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    path = model_dir / "README.md"
    path.write_text(card(meta, load_plans(model_dir / "plans.json"), folder_label(model_dir)))
    if readme is not None:
        sync_readme(readme, meta)
    return path
