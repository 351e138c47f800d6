"""Transfer learning (--init-from, --freeze): adaptation rules on the spleen bundle's network,
and frozen layers verified unchanged after real training steps through the CLI."""

from pathlib import Path

import pytest
import torch
from monai.networks import nets

from helpers import train_in_process
from training.plan import SPLEEN_BUNDLE_UNET
from training.transfer import (
    TransferError,
    adapt_state,
    apply_freeze,
    channel_dims,
    frozen_parameter_names,
    init_from,
    read_source_state,
    train_mode,
)


def bundle_unet(n_in: int = 1, n_out: int = 2) -> torch.nn.Module:
    """The network_def of MONAI's spleen_ct_segmentation bundle."""
    return nets.UNet(spatial_dims=3, in_channels=n_in, out_channels=n_out, **SPLEEN_BUNDLE_UNET)


def write_bundle(folder: Path, seed: int = 7) -> dict[str, torch.Tensor]:
    """A bundle-shaped checkpoint built locally: ``models/model.pt`` holding a state dict."""
    torch.manual_seed(seed)
    net = bundle_unet()
    with torch.no_grad():  # non-trivial batch-norm statistics, so a changed buffer would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                assert m.running_mean is not None and m.running_var is not None  # track_running_stats
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    (folder / "models").mkdir(parents=True)
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    return net.state_dict()


def test_channel_dims_find_the_input_and_output_tensors():
    in_dims, out_dims = channel_dims(bundle_unet, 2, 31)
    assert in_dims == {"model.0.conv.unit0.conv.weight": (1,), "model.0.residual.weight": (1,)}
    assert "model.2.0.conv.weight" in out_dims and out_dims["model.2.0.conv.weight"] == (1,)  # transposed conv
    assert out_dims["model.2.1.conv.unit0.conv.weight"] == (0, 1)
    assert all(k.startswith("model.2.") for k in out_dims)


def test_zero_rule_keeps_the_pretrained_function_of_the_ct(tmp_path):
    source = write_bundle(tmp_path / "bundle")
    torch.manual_seed(0)
    net = bundle_unet(2, 31)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = init_from(net, bundle_unet, 2, 31, tmp_path / "bundle")
    state = net.state_dict()
    w = state["model.0.conv.unit0.conv.weight"]
    assert torch.equal(w[:, :1], source["model.0.conv.unit0.conv.weight"]) and not w[:, 1:].any()
    assert torch.equal(
        state["model.1.submodule.0.conv.unit0.conv.weight"], source["model.1.submodule.0.conv.unit0.conv.weight"]
    )
    assert all(torch.equal(state[k], fresh[k]) for k in report.new_head)  # a fresh head
    assert len(report.input_adapted) == 2 and not report.missing and not report.unexpected
    # the adapted first block on (CT, any MR) equals the pretrained block on the CT alone
    src_net = bundle_unet()
    src_net.load_state_dict(source)
    src_net.eval(), net.eval()
    ct, mr = torch.randn(1, 1, 16, 16, 16), torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(
            net.get_submodule("model.0")(torch.cat([ct, mr], 1)), src_net.get_submodule("model.0")(ct), atol=1e-5
        )


def test_replicate_rule_keeps_the_response_to_identical_channels(tmp_path):
    source = write_bundle(tmp_path / "bundle")
    net = bundle_unet(2, 31)
    init_from(net, bundle_unet, 2, 31, tmp_path / "bundle", input_init="replicate")
    src_net = bundle_unet()
    src_net.load_state_dict(source)
    src_net.eval(), net.eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(
            net.get_submodule("model.0")(torch.cat([x, x], 1)), src_net.get_submodule("model.0")(x), atol=1e-5
        )


def test_other_architectures_are_refused_with_the_tensor_named(tmp_path):
    net = bundle_unet(2, 31)
    in_dims, out_dims = channel_dims(bundle_unet, 2, 31)
    wider = nets.UNet(3, 1, 2, channels=(16, 32, 64, 128, 512), strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    with pytest.raises(TransferError, match="another architecture"):
        adapt_state(net.state_dict(), wider.state_dict(), in_dims, out_dims)
    dyn = nets.DynUNet(3, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2])
    with pytest.raises(TransferError, match="only 0 of the network"):
        adapt_state(net.state_dict(), dyn.state_dict(), in_dims, out_dims)


def test_source_formats(tmp_path):
    state = bundle_unet().state_dict()
    torch.save({"epoch": 3, "model": state}, tmp_path / "checkpoint_last.pt")  # our checkpoint
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")  # saved from DDP
    for path in (tmp_path / "checkpoint_last.pt", tmp_path / "ddp.pt"):
        assert read_source_state(path).keys() == state.keys()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TransferError, match="not a readable"):
        read_source_state(tmp_path / "junk.pt")
    with pytest.raises(TransferError, match="no weights found"):
        read_source_state(tmp_path / "empty_dir_that_does_not_exist")


def test_freeze_policies_on_the_bundle_unet():
    net = bundle_unet(2, 31)
    names = [n for n, _ in net.named_parameters()]
    encoder = frozen_parameter_names(net, "UNet", "encoder")
    assert encoder == {n for n in names if not n.removeprefix("model.").replace("1.submodule.", "").startswith("2.")}
    assert "model.1.submodule.1.submodule.1.submodule.1.submodule.conv.unit0.conv.weight" in encoder  # bottom
    assert "model.1.submodule.2.0.conv.weight" not in encoder  # decoder
    last2 = set(names) - frozen_parameter_names(net, "UNet", "all-but-last:2")
    assert last2 == {n for n in names if n.startswith("model.2.")}  # the top up-block: 2 convs + norm
    last1 = set(names) - frozen_parameter_names(net, "UNet", "all-but-last:1")
    assert last1 == {"model.2.1.conv.unit0.conv.weight", "model.2.1.conv.unit0.conv.bias"}
    assert frozen_parameter_names(net, "UNet", "none") == set()
    with pytest.raises(ValueError):
        frozen_parameter_names(net, "UNet", "all-but-last:999")
    dyn = nets.DynUNet(3, 2, 31, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2])
    enc = frozen_parameter_names(dyn, "DynUNet", "encoder")
    assert enc and all(n.startswith(("input_block", "downsamples", "bottleneck")) for n in enc)


def test_frozen_batch_norms_stay_in_eval_mode():
    net = bundle_unet(2, 31)
    norms = apply_freeze(net, frozen_parameter_names(net, "UNet", "all-but-last:2"))
    train_mode(net, norms)
    modules = dict(net.named_modules())
    assert norms and all(not modules[n].training for n in norms)
    assert modules["model.2.0.adn.N"].training  # the trainable head's norm learns


@pytest.mark.parametrize("policy", ["all-but-last:2", "encoder"])
def test_cli_fine_tune_leaves_frozen_layers_unchanged(raw_phantoms, plan_work, tmp_path, policy):
    source = write_bundle(tmp_path / "bundle")
    work = plan_work(tmp_path / "work", "--network", "resunet", "--spacing", "4", "4", "5", "--folds", "2")
    run = train_in_process(
        raw_phantoms,
        work,
        "--epochs",
        "1",
        "--iters",
        "3",
        "--batch",
        "2",
        "--lr",
        "1e-2",
        "--loss",
        "bce",
        "--optimizer",
        "adam",
        "--init-from",
        str(tmp_path / "bundle"),
        "--freeze",
        policy,
    )
    assert "initialised from" in run.stderr and "2 input-adapted" in run.stderr
    state = torch.load(work / "fold_0" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    net = bundle_unet(2, 31)
    frozen = frozen_parameter_names(net, "UNet", policy)
    norms = {n for n in apply_freeze(net, frozen)}
    same_shape = [k for k in frozen if state[k].shape == source[k].shape]
    changed = [k for k in same_shape if not torch.equal(state[k], source[k])]
    assert len(same_shape) > 10 and changed == [], changed
    for k in ("model.0.conv.unit0.conv.weight", "model.0.residual.weight"):  # frozen input layers:
        assert k in frozen  # CT kernels kept, MR at zero
        assert torch.equal(state[k][:, :1], source[k]) and not state[k][:, 1:].any()
    buffers = [f"{n}.running_mean" for n in norms] + [f"{n}.running_var" for n in norms]
    assert buffers and all(torch.equal(state[b], source[b]) for b in buffers)  # statistics frozen too
    trainable = [
        k for k, _ in net.named_parameters() if k not in frozen and k in source and state[k].shape == source[k].shape
    ]
    assert any(not torch.equal(state[k], source[k]) for k in trainable)  # and training did happen


# --- the 2.5D network from torchvision weights -------------------------------------------------


def torchvision_layouts(tmp_path: Path) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """Weight files laid out as torchvision's (built locally: torchvision does not install beside
    this torch; tests/data holds its names and shapes, which SliceFCN's default preset matches):
    ``fcn_resnet50(num_classes=21, aux_loss=True)`` and an ImageNet ``resnet50``."""
    from hanseg.fcn2p5d import SliceFCN, fcn_head
    from hanseg.network_kinds import BY_KIND

    kwargs = {**BY_KIND["fcn2p5d"].presets["default"], "slices": 3}
    fcn = SliceFCN(3, in_channels=1, out_channels=21, **kwargs).state_dict()
    fcn.update({f"aux_classifier.{k}": v for k, v in fcn_head(1024, 21).state_dict().items()})
    resnet = {k.removeprefix("backbone."): v for k, v in fcn.items() if k.startswith("backbone.")}
    resnet.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    torch.save(fcn, tmp_path / "fcn_resnet50.pth")
    torch.save(resnet, tmp_path / "resnet50.pth")
    return tmp_path / "fcn_resnet50.pth", tmp_path / "resnet50.pth", fcn


def test_the_2p5d_network_loads_torchvision_fcn_and_resnet_state_dicts(tmp_path):
    from hanseg.network_kinds import BY_KIND
    from hanseg.networks import build_network
    from hanseg.plans import NetworkSpec

    fcn_file, resnet_file, fcn = torchvision_layouts(tmp_path)
    spec = NetworkSpec("SliceFCN", dict(BY_KIND["fcn2p5d"].presets["default"]))  # 5 slices x CT+MR = 10 inputs

    def build(n_in: int, n_out: int) -> torch.nn.Module:
        return build_network(spec, n_in, n_out)

    net = build(2, 31)
    report = init_from(net, build, 2, 31, fcn_file, "zero")
    assert report.input_adapted == ["backbone.conv1.weight"] and report.new_head == [
        "classifier.4.weight",
        "classifier.4.bias",
    ]
    assert all(k.startswith("aux_classifier.") for k in report.unexpected) and not report.missing
    state = net.state_dict()
    assert torch.equal(state["backbone.layer3.5.conv2.weight"], fcn["backbone.layer3.5.conv2.weight"])
    assert torch.equal(state["backbone.conv1.weight"][:, :3], fcn["backbone.conv1.weight"])
    assert not state["backbone.conv1.weight"][:, 3:].any()  # the zero rule: extra channels start silent
    report = init_from(build(2, 31), build, 2, 31, resnet_file, "zero")
    assert len(report.copied) == len([k for k in fcn if k.startswith("backbone.")]) - 1
    assert set(report.missing) == {k for k in state if k.startswith("classifier.")}
