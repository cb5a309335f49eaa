"""Specification of the ResNet-18 trunk and torchvision-format weight loading (hirescam_ext.networks.resnet_trunk)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.nets import resnet18

from hirescam_ext.networks.resnet_trunk import (
    build_trunk,
    load_torchvision_resnet18_weights,
    resnet18_trunk,
    small_trunk,
    trunk_output_size,
)
from hirescam_ext.utils.errors import InputError


def _torchvision_resnet18_trunk_keys() -> set[str]:
    """torchvision's resnet18 state-dict keys without fc.*, written out from its documented layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight"} | {f"bn1.{p}" for p in bn}
    for layer in range(1, 5):
        for block in range(2):
            pre = f"layer{layer}.{block}"
            keys |= {f"{pre}.conv1.weight", f"{pre}.conv2.weight"}
            keys |= {f"{pre}.bn1.{p}" for p in bn} | {f"{pre}.bn2.{p}" for p in bn}
        if layer > 1:
            keys |= {f"layer{layer}.0.downsample.0.weight"} | {f"layer{layer}.0.downsample.1.{p}" for p in bn}
    return keys


@pytest.fixture(scope="module")
def torchvision_style_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision-named ResNet-18 checkpoint (with fc.*) built from a differently seeded MONAI resnet18."""
    torch.manual_seed(123)
    net = resnet18(spatial_dims=2, n_input_channels=3, conv1_t_stride=2, bias_downsample=False, num_classes=1000)
    for m in net.modules():  # make BatchNorm statistics distinguishable from a fresh trunk's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    # MONAI's key names already are torchvision's; this mapping documents that (identity except fc kept as is)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "resnet18_tv.pth"
    torch.save(state, path)
    return path, state


def _save(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_resnet18_trunk_keys_equal_torchvision_keys_without_fc():
    assert set(resnet18_trunk().state_dict()) == _torchvision_resnet18_trunk_keys()


def test_resnet18_trunk_gives_512x14x14_at_420_like_torchvision():
    trunk = resnet18_trunk()
    assert trunk.out_channels == 512 and trunk.stride == 32
    assert trunk.output_size(420) == 14 and trunk_output_size(420) == 14


@pytest.mark.parametrize("size", [31, 64, 65, 100])
def test_small_trunk_output_matches_its_computed_geometry(size):
    trunk = small_trunk().eval()
    out = trunk(torch.zeros(1, 3, size, size))
    assert out.shape == (1, trunk.out_channels, trunk.output_size(size), trunk.output_size(size))
    assert trunk.output_size(size) == trunk_output_size(size, "small") == -(-size // 32)


def test_loads_torchvision_state_dict_and_ignores_fc(torchvision_style_file):
    path, state = torchvision_style_file
    trunk = load_torchvision_resnet18_weights(resnet18_trunk(), path)
    loaded = trunk.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


def test_loads_checkpoint_wrapped_in_state_dict_key_without_batch_counters(tmp_path, torchvision_style_file):
    _, state = torchvision_style_file
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = _save(tmp_path, "wrapped.pth", {"state_dict": old_style, "epoch": 3})
    trunk = build_trunk("resnet18", pretrained=path)
    assert torch.equal(trunk.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_missing_key_raises_input_error_naming_file_and_key(tmp_path, torchvision_style_file):
    _, state = torchvision_style_file
    broken = {k: v for k, v in state.items() if k != "layer3.1.conv2.weight"}
    path = _save(tmp_path, "missing.pth", broken)
    with pytest.raises(InputError, match="missing.*layer3.1.conv2.weight") as info:
        load_torchvision_resnet18_weights(resnet18_trunk(), path)
    assert str(path) in str(info.value)


def test_unexpected_key_raises_input_error(tmp_path, torchvision_style_file):
    _, state = torchvision_style_file
    path = _save(tmp_path, "extra.pth", {**state, "layer2.0.downsample.0.bias": torch.zeros(128)})
    with pytest.raises(InputError, match="unexpected.*layer2.0.downsample.0.bias") as info:
        load_torchvision_resnet18_weights(resnet18_trunk(), path)
    assert str(path) in str(info.value)


def test_shape_mismatch_raises_input_error(tmp_path, torchvision_style_file):
    _, state = torchvision_style_file
    path = _save(tmp_path, "shape.pth", {**state, "conv1.weight": torch.zeros(64, 1, 7, 7)})
    with pytest.raises(InputError, match="shape mismatch.*conv1.weight") as info:
        load_torchvision_resnet18_weights(resnet18_trunk(), path)
    assert str(path) in str(info.value)


def test_file_that_is_not_a_state_dict_raises_input_error(tmp_path):
    path = _save(tmp_path, "list.pth", [torch.zeros(1)])
    with pytest.raises(InputError, match="state dict"):
        load_torchvision_resnet18_weights(resnet18_trunk(), path)


def test_garbage_file_raises_input_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="garbage.pth"):
        load_torchvision_resnet18_weights(resnet18_trunk(), path)


def test_missing_file_explains_how_to_supply_weights_offline(tmp_path):
    with pytest.raises(InputError, match="never downloaded") as info:
        resnet18_trunk(pretrained=tmp_path / "absent.pth")
    assert "absent.pth" in str(info.value)


def test_pretrained_true_without_a_file_is_refused_with_offline_help():
    with pytest.raises(InputError, match="pretrained=PATH"):
        build_trunk("resnet18", pretrained=True)  # type: ignore[arg-type]


def test_small_trunk_refuses_pretrained_weights(tmp_path):
    with pytest.raises(ValueError, match="small"):
        build_trunk("small", pretrained=tmp_path / "w.pth")


def test_unknown_trunk_name_is_refused():
    with pytest.raises(ValueError, match="unknown trunk"):
        build_trunk("resnet50")


def test_pretrained_false_or_none_means_random_initialisation():
    assert resnet18_trunk(pretrained=False).out_channels == 512  # type: ignore[arg-type]
    assert build_trunk("small", pretrained=None).out_channels == 64


@pytest.mark.parametrize("size", [48, 64, 96, 100])
def test_small16_trunk_halves_the_stride_with_the_small_trunk_parameters(size):
    small, small16 = build_trunk("small"), build_trunk("small16")
    out = small16(torch.zeros(1, 3, size, size))
    assert out.shape[-2:] == (-(-size // 16),) * 2 == (small16.output_size(size), trunk_output_size(size, "small16"))
    assert small16.stride == 16 and small.stride == 32
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in small16.state_dict().items()}


def test_small16_gives_axialnet_a_4x4_grid_at_64x64():
    from hirescam_ext.networks import AxialNet

    assert AxialNet.attention_grid((64, 64), z=48, trunk="small16", custom_conv_padding=1) == (16, 4, 4)
    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1).eval()
    assert net.forward_all(torch.rand(1, 1, 64, 64, 12)).attention.shape[-2:] == (4, 4)


def test_wide16_trunk_has_small16_geometry_with_twice_the_channels():
    small16, wide16 = build_trunk("small16"), build_trunk("wide16")
    assert wide16.name == "wide16" and wide16.stride == 16 and wide16.out_channels == 2 * small16.out_channels == 128
    out = wide16(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 128, 4, 4) and trunk_output_size(64, "wide16") == 4
    assert wide16.conv1.out_channels == 2 * small16.conv1.out_channels == 16


def test_wide16_gives_axialnet_the_4x4_grid_with_custom_convs_on_128_channels():
    from hirescam_ext.networks import AxialNet

    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="wide16", custom_conv_padding=1).eval()
    assert AxialNet.attention_grid((64, 64), z=48, trunk="wide16", custom_conv_padding=1) == (16, 4, 4)
    assert net.custom_convs.conv1.in_channels == 128
    assert net.forward_all(torch.rand(1, 1, 64, 64, 12)).attention.shape[-2:] == (4, 4)


@pytest.mark.parametrize("size", [48, 64, 96, 100])
def test_fine16_trunk_keeps_the_stem_at_full_size_and_reaches_stride_16(size):
    small16, fine16 = build_trunk("small16"), build_trunk("fine16")
    assert fine16.name == "fine16" and fine16.stride == 16 and fine16.conv1.stride == (1, 1)
    out = fine16(torch.zeros(1, 3, size, size))
    assert out.shape[-2:] == (-(-size // 16),) * 2 == (fine16.output_size(size), trunk_output_size(size, "fine16"))
    assert {k: v.shape for k, v in small16.state_dict().items()} == {k: v.shape for k, v in fine16.state_dict().items()}


def test_fine16_stem_and_layer1_see_four_times_the_pixels_of_small16():
    sizes = {}
    for name in ("small16", "fine16"):
        trunk = build_trunk(name).eval()
        hook = trunk.layer1.register_forward_hook(lambda m, i, o, n=name: sizes.__setitem__(n, o.shape[-2:]))
        trunk(torch.zeros(1, 3, 64, 64))
        hook.remove()
    assert sizes == {"small16": (16, 16), "fine16": (32, 32)}


def test_small_trunk_refuses_a_stride_its_stem_cannot_reach():
    with pytest.raises(ValueError, match=r"stride must be one of \(8, 16\) with stem_stride=1"):
        small_trunk(stem_stride=1, stride=32)
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        small_trunk(stem_stride=4)
