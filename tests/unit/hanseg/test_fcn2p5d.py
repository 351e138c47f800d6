"""The 2.5D network (:mod:`hanseg.fcn2p5d`): slice stacking on tiny arrays, and torchvision's
``fcn_resnet50`` names and shapes at the default preset (recorded by
``scripts/torchvision_fcn_check.py``, which also checked the logits agree exactly)."""

import json

import pytest
import torch

from hanseg.fcn2p5d import SliceFCN, stack_slices, unstack_slices
from hanseg.network_kinds import BY_KIND
from helpers import ROOT

TORCHVISION = json.loads((ROOT / "tests/data/torchvision_fcn_resnet50.json").read_text())


def test_stack_slices_puts_each_slice_with_its_neighbours_and_replicates_the_ends():
    # one batch, 2 channels, 4 slices of 1x1: channel c at slice z holds 10c + z
    x = torch.tensor([[[0.0, 1, 2, 3], [10, 11, 12, 13]]]).reshape(1, 2, 4, 1, 1)
    stacked = stack_slices(x, 3)[:, :, 0, 0]
    assert stacked.tolist() == [
        [0, 0, 1, 10, 10, 11],  # slice 0: its lower neighbour replicated
        [0, 1, 2, 10, 11, 12],
        [1, 2, 3, 11, 12, 13],
        [2, 3, 3, 12, 13, 13],
    ]  # slice 3: its upper neighbour replicated


def test_unstack_inverts_the_batching_of_stack():
    x = torch.arange(2 * 3 * 4 * 2 * 5, dtype=torch.float32).reshape(2, 3, 4, 2, 5)
    assert torch.equal(unstack_slices(stack_slices(x, 1), 2), x)


def test_a_window_gives_logits_on_its_own_grid_and_slices_are_independent_beyond_the_stack():
    net = SliceFCN(3, in_channels=2, out_channels=31, slices=3, layers=(1, 1, 1, 1), width=4).eval()
    x = torch.randn(1, 2, 6, 20, 12)
    with torch.no_grad():
        out = net(x)
        changed = x.clone()
        changed[:, :, 5] += 5  # the last slice: only slices 4 and 5 see it
        diff = (net(changed) - out).abs().amax(dim=(0, 1, 3, 4))
    assert out.shape == (1, 31, 6, 20, 12)
    assert diff[:4].max() == 0 and diff[4:].min() > 0


def test_the_default_preset_has_torchvision_fcn_resnet50_names_and_shapes():
    kwargs = dict(BY_KIND["fcn2p5d"].presets["default"])
    kwargs["slices"] = 3  # 1 channel x 3 slices = torchvision's 3 input channels
    with torch.device("meta"):
        ours = SliceFCN(3, in_channels=1, out_channels=TORCHVISION["num_classes"], **kwargs)
    assert {k: list(v.shape) for k, v in ours.state_dict().items()} == TORCHVISION["state_dict"]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"slices": 4}, "odd"), ({"layers": (1, 1)}, "4 stages"), ({"spatial_dims": 2}, "spatial_dims=3")],
)
def test_bad_settings_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SliceFCN(**{"spatial_dims": 3, "in_channels": 1, "out_channels": 2, **kwargs})
