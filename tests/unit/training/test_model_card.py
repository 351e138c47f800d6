"""The model card and README's model summary say exactly what ``model/metadata.json`` says."""

from __future__ import annotations

import re

import pytest

from hanseg.plans import load_plans
from helpers import ROOT
from training.export import _next_version
from training.model_card import (
    README_BEGIN,
    README_END,
    card,
    folder_label,
    headline,
    read_metadata,
    readme_block,
    sync_readme,
)


def test_the_shipped_model_card_is_generated_from_its_metadata():
    meta = read_metadata(ROOT / "model")
    expected = card(meta, load_plans(ROOT / "model" / "plans.json"))
    assert (ROOT / "model" / "README.md").read_text() == expected, (
        "model/README.md differs from metadata.json: run python -m training.export --card model"
    )


def test_readme_quotes_the_metadata_and_restates_no_model_number_by_hand():
    meta = read_metadata(ROOT / "model")
    text = (ROOT / "README.md").read_text()
    assert readme_block(meta) in text, "README's model summary is stale: run python -m training.export --card model"
    outside = text.replace(readme_block(meta), "")
    assert re.findall(r"Dice\D{0,12}0\.\d{2,}|\d\.\d+ mm (?:mean )?HD95|HD95\D{0,12}\d\.\d+ mm", outside) == []


def test_headline_numbers_are_the_metadata_numbers():
    meta = {
        "version": "1.2.0",
        "intended_use": "Not for clinical use.",
        "stages": [{"training_minutes": 10}, {"training_minutes": 32}],
        "training_data": {"description": "ten phantoms"},
        "scores": {
            "validation": {"mean_dice": 0.8123},
            "unseen_phantoms": {
                "settings": {"cases": 3},
                "grids": {
                    "original": {"mean_dice": 0.87654, "mean_hd95_mm": 1.849, "lowest_oar": [0.6734, "OpticNrv_R"]}
                },
            },
        },
    }
    assert headline(meta) == (
        "The shipped `model/` (version 1.2.0) was trained for 42 CPU minutes in 2 stage(s), on "
        "ten phantoms. Validation mean Dice 0.812. On 3 unseen phantoms: mean Dice 0.877, mean "
        "HD95 1.85 mm, lowest OAR OpticNrv_R 0.67. Not for clinical use."
    )


def test_sync_readme_replaces_only_the_block_and_refuses_a_readme_without_one(tmp_path):
    meta = read_metadata(ROOT / "model")
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{README_BEGIN}\nold text\n{README_END}\nbottom\n")
    assert sync_readme(readme, meta) is True
    assert readme.read_text() == f"top\n{readme_block(meta)}\nbottom\n"
    assert sync_readme(readme, meta) is False
    readme.write_text("no block\n")
    with pytest.raises(ValueError, match="no generated model summary"):
        sync_readme(readme, meta)


@pytest.mark.parametrize("previous, expected", [(None, "0.1.0"), ("0.5.0", "0.6.0"), ("1.9.3", "1.10.0")])
def test_each_export_adds_a_minor_version(previous, expected):
    assert _next_version(previous) == expected


PRECISION_AGREEMENT = {
    "command": "python -m benchmarks.precision --model model --cases 2 --seed 9000 --size small",
    "settings": {"cases": 2, "seed": 9000, "size": "small", "device": "cpu"},
    "cpu": {"model": "Some Xeon", "bf16_units": ["amx_bf16", "avx512_bf16"]},
    "bf16_vs_fp32": {
        "mean_dice": 0.99712,
        "lowest_oar": ["Cochlea_L", 0.9811],
        "per_oar_dice": {"Brainstem": 0.9993, "Cochlea_L": 0.9811, "Parotid_L": 0.9987},
        "voxels_changed_fraction": 0.000123,
    },
    "truth_mean_dice": {"fp32": 0.87716, "bf16": 0.8769},
    "seconds_per_case": {"fp32": 81.44, "bf16": 40.2},
}


def test_the_card_has_a_precision_section_only_when_the_agreement_is_recorded():
    meta = read_metadata(ROOT / "model")
    meta.pop("precision_agreement", None)
    plans = load_plans(ROOT / "model" / "plans.json")
    without = card(meta, plans)
    assert "## Precision" not in without
    text = card({**meta, "precision_agreement": PRECISION_AGREEMENT}, plans)
    section = text[text.index("## Precision") : text.index("## Reproduce")]
    assert section == (
        "## Precision\n\n"
        "`process.py --precision bf16` (the default `auto` on a CPU with AMX-BF16 or AVX512-BF16) against "
        "`--precision fp32`, on 2 unseen phantoms of size `small` (seed 9000), on Some Xeon "
        "(amx_bf16 and avx512_bf16):\n\n"
        "- **bf16 labels against fp32 labels:** mean Dice 0.9971 over 3 OARs, lowest Cochlea_L 0.9811; "
        "1.23e-04 of all voxels changed label.\n"
        "- **Lowest OARs:** Cochlea_L 0.9811, Parotid_L 0.9987, Brainstem 0.9993.\n"
        "- **Mean Dice against the ground truth:** fp32 0.8772, bf16 0.8769 (-0.0003).\n"
        "- **Seconds per case** (wall time of each `process.py` run, on whatever machine ran it): "
        "fp32 81.4, bf16 40.2.\n\n"
        "From: `python -m benchmarks.precision --model model --cases 2 --seed 9000 --size small`\n\n"
    )
    assert text.replace(section, "") == without


def _model_copy(folder, **training_data):
    """A model folder at ``folder`` with the shipped plans and metadata (``training_data`` changed)."""
    import json
    import shutil

    folder.mkdir(parents=True)
    shutil.copy(ROOT / "model" / "plans.json", folder / "plans.json")
    meta = read_metadata(ROOT / "model")
    meta["training_data"] = {**meta["training_data"], **training_data}
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_the_card_names_the_folder_it_was_written_to(tmp_path):
    from training.model_card import write_card

    folder = _model_copy(tmp_path / "exports" / "run7")
    text = write_card(folder).read_text()
    assert f"`python -m training.export --card {folder}`" in text
    assert "--card model`" not in text
    assert folder_label(ROOT / "model") == "model"  # the shipped card keeps its short, runnable name


@pytest.mark.parametrize("training_data", [{"command": ""}, {"command": None}], ids=["empty", "missing"])
def test_a_model_without_a_data_command_says_so_and_shows_no_empty_command(tmp_path, training_data):
    from training.model_card import write_card

    text = write_card(_model_copy(tmp_path / "m", **training_data)).read_text()
    assert ": ``" not in text and "` `" not in text  # no empty inline command
    assert "the command that made it: not recorded" in text
    reproduce = text.split("## Reproduce", 1)[1]
    assert "```bash\n#" in reproduce  # the block starts with the first stage, not an empty line
