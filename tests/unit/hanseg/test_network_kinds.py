"""The network-kind table (:mod:`hanseg.network_kinds`): torch-free, complete, and giving
exactly what the if-chains it replaced gave (expected values written out from the old code)."""

import json
import subprocess
import sys

import pytest

from hanseg import network_kinds as nk
from hanseg.errors import PlansError
from hanseg.plans import NetworkSpec, load_plans, plans_from_json
from helpers import ROOT
from training import plan

FINGERPRINT = {
    "median_spacing_xyz": [1.5, 1.5, 2.5],
    "hu": {"p0_5": -1000.0, "p99_5": 1500.0, "mean": 50.0, "std": 300.0},
}
BUNDLE_UNET = {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"}
FIELDS = ("kind", "class_name", "class_attr", "patch_divisor", "encoder", "kwargs_builder", "presets")


def test_the_table_and_the_plans_import_without_torch_or_monai():
    """The runtime reads plans.json before it builds anything: that must not need torch."""
    code = (
        "import sys, hanseg.network_kinds, hanseg.plans; "
        "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_names_and_order_are_the_table_s():
    assert plan.NETWORK_KINDS == ("dynunet", "resunet", "unetr", "swinunetr", "segresnet", "fcn2p5d")
    assert tuple(nk.BY_CLASS) == ("DynUNet", "UNet", "UNETR", "SwinUNETR", "SegResNet", "SliceFCN")
    assert plan.SPLEEN_BUNDLE_UNET == BUNDLE_UNET


@pytest.mark.parametrize("kind", nk.KINDS, ids=lambda k: k.kind)
def test_every_kind_has_every_field_and_preset(kind):
    import importlib

    assert all(getattr(kind, f) is not None and getattr(kind, f) != "" for f in FIELDS)
    assert hasattr(importlib.import_module(kind.module), kind.class_attr) and callable(kind.patch_divisor)
    assert kind.encoder.prefixes or kind.encoder.rule in nk.ENCODER_RULES
    assert kind.kwargs_builder in nk.KWARGS_BUILDER_NAMES and kind.kwargs_builder in plan.KWARGS_BUILDERS
    assert tuple(kind.presets) == nk.PRESET_NAMES == tuple(plan.PRESETS)
    with pytest.raises(TypeError):  # the table cannot be changed by a caller
        kind.presets["tiny"]["x"] = 1


@pytest.mark.parametrize(
    "name, kwargs, divisor",
    [
        ("DynUNet", {}, 1),
        ("UNet", BUNDLE_UNET, 16),
        ("UNet", {"strides": [2, [2, 1, 2], 2]}, 8),
        ("UNet", {}, 1),
        ("UNETR", {}, 16),
        ("SwinUNETR", {}, 32),
        ("SegResNet", {}, 8),
        ("SegResNet", {"blocks_down": [1, 2]}, 2),
        ("SliceFCN", {}, 1),
        ("NotInTheTable", {}, 1),
    ],
)
def test_patch_divisor(name, kwargs, divisor):
    assert NetworkSpec(name, kwargs).patch_divisor() == divisor


@pytest.mark.parametrize(
    "name, kwargs, patch, message",
    [
        (
            "UNETR",
            {"img_size": [32, 64, 64]},
            (32, 32, 32),
            "UNETR: network img_size [32, 64, 64] must equal patch_size_zyx (32, 32, 32)",
        ),
        ("UNETR", {}, (32, 32, 32), "UNETR: network img_size None must equal patch_size_zyx (32, 32, 32)"),
        (
            "UNETR",
            {"img_size": [30, 64, 64]},
            (30, 64, 64),
            "UNETR: every patch axis must be a multiple of 16, got (30, 64, 64)",
        ),
        ("SwinUNETR", {}, (48, 64, 64), "SwinUNETR: every patch axis must be a multiple of 32, got (48, 64, 64)"),
    ],
)
def test_a_patch_the_network_cannot_take_is_refused(name, kwargs, patch, message):
    with pytest.raises(PlansError) as err:
        NetworkSpec(name, kwargs).check_patch(patch)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "name, kwargs, patch",
    [
        ("UNETR", {"img_size": [32, 64, 64]}, (32, 64, 64)),
        ("DynUNet", {}, (13, 27, 31)),
        ("NotInTheTable", {}, (13, 27, 31)),  # refused when built, with the known names
    ],
)
def test_a_patch_the_network_takes_passes(name, kwargs, patch):
    NetworkSpec(name, kwargs).check_patch(patch)


def test_the_shipped_model_plan_loads_unchanged():
    plans = load_plans(ROOT / "model" / "plans.json")
    assert plans.network.name == "UNet" and dict(plans.network.kwargs) == BUNDLE_UNET
    assert plans.patch_size_zyx == (48, 80, 80) and plans.network.patch_divisor() == 16
    assert plans.to_json() == json.loads((ROOT / "model" / "plans.json").read_text())


UNETR_DIMS = {"tiny": (8, 96, 192, 4), "small": (16, 192, 768, 6), "default": (16, 768, 3072, 12)}


@pytest.mark.parametrize("preset", ["tiny", "small", "default"])
def test_fixed_specs_per_preset(preset):
    size = ("tiny", "small", "default").index(preset)
    f, h, m, n = UNETR_DIMS[preset]
    assert plan.network_spec("resunet", preset, [40, 90, 90], [1, 1, 1]) == {"name": "UNet", "kwargs": BUNDLE_UNET}
    assert plan.network_spec("unetr", preset, [32, 64, 64], [1, 1, 1]) == {
        "name": "UNETR",
        "kwargs": {
            "img_size": [32, 64, 64],
            "feature_size": f,
            "hidden_size": h,
            "mlp_dim": m,
            "num_heads": n,
            "norm_name": "instance",
        },
    }
    assert plan.network_spec("swinunetr", preset, [64, 64, 64], [1, 1, 1]) == {
        "name": "SwinUNETR",
        "kwargs": {"feature_size": [12, 24, 48][size], "norm_name": "instance"},
    }
    assert plan.network_spec("segresnet", preset, [64, 64, 64], [1, 1, 1]) == {
        "name": "SegResNet",
        "kwargs": {"init_filters": [8, 16, 32][size]},
    }


def test_dynunet_is_planned_from_patch_and_spacing():
    """Thick slices (3 mm against 0.5 mm): no z-stride and 1×3×3 kernels until z is no longer coarser."""
    spec = plan.make_plans(FINGERPRINT, "small", (0.5, 0.5, 3.0), None, [0], "dynunet").network
    assert spec.name == "DynUNet" and json.loads(json.dumps(dict(spec.kwargs))) == {
        "kernel_size": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "upsample_kernel_size": [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "filters": [8, 16, 32, 64, 128],
        "norm_name": "instance",
        "res_block": False,
    }
    tiny = plan.network_spec("dynunet", "tiny", [32, 64, 64], [0.5, 0.5, 3.0])["kwargs"]
    assert tiny["filters"] == [8, 16, 32] and tiny["res_block"] is False
    assert plan.network_spec("dynunet", "default", [64, 160, 160], [1, 1, 1])["kwargs"]["res_block"] is True


@pytest.mark.parametrize(
    "kind, preset, patch",
    [
        ("dynunet", "small", (48, 96, 96)),
        ("resunet", "small", (48, 96, 96)),
        ("unetr", "small", (48, 96, 96)),
        ("swinunetr", "small", (64, 96, 96)),
        ("segresnet", "small", (48, 96, 96)),
        ("unetr", "tiny", (32, 64, 64)),
        ("swinunetr", "default", (64, 160, 160)),
        ("fcn2p5d", "small", (48, 96, 96)),
    ],
)
def test_planned_patch_and_round_trip(kind, preset, patch):
    """The patch is rounded up to the table's divisor, and the plan built in memory equals the
    one read back from JSON (the kwargs hold lists, as the file does)."""
    plans = plan.make_plans(FINGERPRINT, preset, None, None, [0], kind)
    assert plans.patch_size_zyx == patch and plans_from_json(plans.to_json()) == plans
    if kind == "unetr":
        assert list(plans.network.kwargs["img_size"]) == list(patch)


def test_unknown_kind_or_network_names_it_and_the_known_ones():
    from hanseg.networks import build_network, is_encoder_parameter

    with pytest.raises(ValueError) as err:
        plan.network_spec("nope", "tiny", [32, 64, 64], [1, 1, 1])
    assert (
        str(err.value) == "unknown network kind 'nope'; known: dynunet, resunet, unetr, swinunetr, segresnet, fcn2p5d"
    )
    with pytest.raises(PlansError) as plans_err:
        build_network(NetworkSpec("Nope", {}), 2, 3)
    assert str(plans_err.value).startswith("unknown network 'Nope'; known: ")
    assert set(str(plans_err.value).split("known: ")[1].split(", ")) == {
        "DynUNet",
        "UNet",
        "UNETR",
        "SwinUNETR",
        "SegResNet",
        "SliceFCN",
    }
    with pytest.raises(PlansError, match="no encoder is defined for 'Nope'"):
        is_encoder_parameter("Nope", "x")


@pytest.mark.parametrize(
    "name, parameter, encoder",
    [
        ("DynUNet", "input_block.conv1.conv.weight", True),
        ("DynUNet", "downsamples.0.conv1.conv.weight", True),
        ("DynUNet", "bottleneck.conv2.conv.weight", True),
        ("DynUNet", "upsamples.1.transp_conv.conv.weight", False),
        ("DynUNet", "output_block.conv.conv.bias", False),
        ("UNet", "model.0.conv.unit0.conv.weight", True),
        ("UNet", "model.1.submodule.0.conv.unit0.conv.weight", True),
        ("UNet", "model.1.submodule.1.submodule.1.submodule.1.submodule.residual.weight", True),
        ("UNet", "model.1.submodule.1.submodule.1.submodule.2.0.adn.N.bias", False),
        ("UNet", "model.2.1.conv.unit0.conv.bias", False),
        ("UNETR", "vit.patch_embedding.position_embeddings", True),
        ("UNETR", "encoder4.transp_conv_init.conv.weight", True),
        ("UNETR", "decoder2.conv_block.conv1.conv.weight", False),
        ("UNETR", "out.conv.conv.bias", False),
        ("SwinUNETR", "swinViT.patch_embed.proj.weight", True),
        ("SwinUNETR", "encoder10.layer.conv1.conv.weight", True),
        ("SwinUNETR", "decoder1.conv_block.conv1.conv.weight", False),
        ("SegResNet", "convInit.conv.weight", True),
        ("SegResNet", "down_layers.3.4.norm2.bias", True),
        ("SegResNet", "up_samples.1.0.conv.weight", False),
        ("SegResNet", "conv_final.0.weight", False),
        ("SliceFCN", "backbone.layer4.2.conv3.weight", True),
        ("SliceFCN", "classifier.0.weight", False),
    ],
)
def test_encoder_membership(name, parameter, encoder):
    from hanseg.networks import is_encoder_parameter

    assert nk.BY_CLASS[name].encoder.contains(parameter) is encoder
    assert is_encoder_parameter(name, parameter) is encoder
