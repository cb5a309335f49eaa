"""Specification of AxialNet (Draelos & Carin, HiResCAM, arXiv:2011.08891) and its ablations."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext.networks.axialnet import AxialNet, AxialNetOutput
from hirescam_ext.utils.errors import InputError

M = 5
XY = (64, 64)


def _small(**kwargs) -> AxialNet:
    torch.manual_seed(0)
    args = dict(n_classes=M, spatial_size=XY, trunk="small", custom_conv_padding=1)
    args.update(kwargs)
    return AxialNet(**args).eval()


def _record(store: dict, key: str, which: str = "output"):
    """A forward hook that stores the module's first input or its output (and returns None: no replacement)."""

    def hook(module, inputs, output):
        store[key] = (inputs[0] if which == "input" else output).detach()

    return hook


def _volume(b: int = 2, z: int = 12, xy=XY) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(b, 1, *xy, z)


def test_paper_geometry_gives_135_triplets_on_a_6x6_grid_without_running_it():
    assert AxialNet.attention_grid((420, 420), z=405) == (135, 6, 6)
    net = AxialNet()  # resnet18 trunk, 420 x 420, 80 classes, paper defaults
    assert net.grid == (6, 6) and net.n_features == 16
    assert net.fc.in_features == 16 * 6 * 6 and net.fc.out_features == 80
    assert net.cam_target_layer == "custom_convs.relu4"


@pytest.mark.parametrize(
    "size, padding, grid",
    [(420, 0, (6, 6)), (420, 1, (14, 14)), (384, 0, (4, 4)), (224, 1, (7, 7)), (128, 1, (4, 4))],
)
def test_attention_grid_table_of_the_docstring(size, padding, grid):
    assert AxialNet.attention_grid((size, size), z=96, custom_conv_padding=padding)[1:] == grid


def test_forward_all_shapes():
    out = _small().forward_all(_volume(b=2, z=12))
    assert isinstance(out, AxialNetOutput)
    assert out.logits.shape == (2, M)
    assert out.slice_scores.shape == (2, M, 4)
    assert out.features.shape == (2, 4, 16, 2, 2)
    assert out.attention.shape == (2, M, 4, 2, 2)


def test_forward_returns_a_plain_tensor_like_monai_verify_net_in_out_expects():
    net = _small()
    out = net(torch.rand(1, 1, *XY, 9))
    assert isinstance(out, torch.Tensor) and out.shape == (1, M) and out.dtype == torch.float32


def test_z_not_divisible_by_3_is_refused():
    with pytest.raises(ValueError, match="not divisible by 3"):
        _small()(torch.rand(1, 1, *XY, 10))


def test_wrong_in_plane_size_is_refused():
    with pytest.raises(ValueError, match="spatial size"):
        _small()(torch.rand(1, 1, 96, 64, 12))


def test_non_volume_input_is_refused():
    with pytest.raises(ValueError, match=r"\[B, 1, X, Y, Z\]"):
        _small()(torch.rand(1, 3, *XY, 12))


def test_batch_of_two_equals_each_sample_alone_in_eval_mode():
    net, x = _small(), _volume(b=2)
    with torch.no_grad():
        both = net(x)
        alone = torch.cat([net(x[:1]), net(x[1:])])
    torch.testing.assert_close(both, alone, rtol=1e-5, atol=1e-6)


def test_triplet_h_holds_slices_3h_to_3h_plus_2():
    net = _small()
    seen = {}
    net.trunk.register_forward_hook(_record(seen, "x", which="input"))
    b, z = 2, 12
    x = torch.zeros(b, 1, *XY, z)
    for s in range(b):
        for k in range(z):
            x[s, 0, :, :, k] = 100 * s + k  # marker: sample and slice index
    net(x)
    images = seen["x"]
    assert images.shape == (b * z // 3, 3, *XY)
    for s in range(b):
        for h in range(z // 3):
            for c in range(3):
                assert torch.all(images[s * (z // 3) + h, c] == 100 * s + 3 * h + c), (s, h, c)


def test_attention_is_fc_weight_maps_times_features_summed_over_features():
    net = _small()
    with torch.no_grad():
        out = net.forward_all(_volume())
        w = net.fc_weight_maps()
    assert w.shape == (M, 16, 2, 2)
    for b in range(2):
        for m in range(M):
            for h in range(4):
                expected = (w[m] * out.features[b, h]).sum(dim=0)
                torch.testing.assert_close(out.attention[b, m, h], expected)


def test_slice_scores_are_the_shared_fc_applied_to_each_slice():
    net = _small()
    with torch.no_grad():
        out = net.forward_all(_volume())
        for h in range(4):
            torch.testing.assert_close(out.slice_scores[:, :, h], net.fc(out.features[:, h].flatten(1)))


def test_mean_pooled_logit_is_mean_over_slices_of_summed_attention_plus_bias():
    net = _small()
    with torch.no_grad():
        out = net.forward_all(_volume())
    h = out.attention.shape[2]
    expected = out.attention.sum(dim=(2, 3, 4)) / h + net.fc.bias
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits, out.slice_scores.mean(dim=2))


def test_max_pooled_logit_is_max_over_slice_scores():
    net = _small(slice_pooling="max")
    with torch.no_grad():
        out = net.forward_all(_volume())
        plain = net(_volume())
    torch.testing.assert_close(out.logits, out.slice_scores.max(dim=2).values)
    torch.testing.assert_close(plain, out.logits)
    assert not torch.allclose(out.logits, out.slice_scores.mean(dim=2))


def test_unknown_slice_pooling_is_refused():
    with pytest.raises(ValueError, match="slice_pooling"):
        _small(slice_pooling="median")


def test_too_small_input_for_unpadded_custom_convs_suggests_padding():
    with pytest.raises(ValueError, match="custom_conv_padding=1"):
        AxialNet(spatial_size=(128, 128))


def test_padding_one_makes_128_slices_work_with_the_resnet18_trunk():
    assert AxialNet.attention_grid((128, 128), z=96, custom_conv_padding=1) == (32, 4, 4)
    net = AxialNet(n_classes=3, spatial_size=(128, 128), custom_conv_padding=1)
    assert net.grid == (4, 4) and net.fc.in_features == 16 * 4 * 4


def test_one_by_one_custom_convs_without_padding_keep_the_trunk_grid():
    net = _small(custom_conv_kernel=1, custom_conv_padding=0)
    assert net.grid == (2, 2) and AxialNet.attention_grid(XY, z=12, trunk="small", custom_conv_kernel=1) == (4, 2, 2)
    assert all(m.kernel_size == (1, 1) for m in net.custom_convs.modules() if isinstance(m, torch.nn.Conv2d))


def _cell_reach(net: AxialNet) -> torch.Tensor:
    """Which attention cells change when the trunk features of cell (0, 0) alone change: ``[D1, D2]`` booleans."""
    torch.manual_seed(2)
    feats = torch.rand(1, net.trunk.out_channels, *net.grid)
    moved = feats.clone()
    moved[..., 0, 0] += 1.0
    with torch.no_grad():
        a, b = net.custom_convs(feats), net.custom_convs(moved)
    return (a - b).abs().sum(dim=1)[0] > 0


def test_one_by_one_custom_convs_make_each_cell_depend_on_its_own_trunk_features_alone():
    reach = _cell_reach(_small(custom_conv_kernel=1, custom_conv_padding=0))
    assert reach[0, 0] and int(reach.sum()) == 1


def test_three_by_three_custom_convs_spread_one_cell_to_its_neighbours():
    assert int(_cell_reach(_small()).sum()) == 4  # the 2 x 2 grid: every cell


def test_attention_with_one_by_one_custom_convs_still_sums_to_the_logit():
    net = _small(custom_conv_kernel=1, custom_conv_padding=0)
    with torch.no_grad():
        out = net.forward_all(_volume())
    expected = out.attention.sum(dim=(2, 3, 4)) / out.attention.shape[2] + net.fc.bias
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [0, -1, 2.5])
def test_non_positive_or_fractional_custom_conv_kernel_is_refused(kernel):
    with pytest.raises(ValueError, match="custom_conv_kernel"):
        _small(custom_conv_kernel=kernel)


def test_padding_wider_than_the_kernel_reaches_is_refused():
    with pytest.raises(ValueError, match="custom_conv_padding <= 0"):
        _small(custom_conv_kernel=1)  # the small-input padding 1 of _small with 1 x 1 convs


def test_kernel_wider_than_the_grid_suggests_the_padding_that_keeps_it():
    with pytest.raises(ValueError, match="custom_conv_padding=2"):
        AxialNet.attention_grid((128, 128), z=96, custom_conv_kernel=5)


def test_cam_target_layer_activations_are_merged_batch_and_slices_and_split_to_features():
    net = _small()
    seen = {}
    layer = dict(net.named_modules())[net.cam_target_layer]
    layer.register_forward_hook(_record(seen, "a"))
    with torch.no_grad():
        out = net.forward_all(_volume(b=2, z=12))
    act = seen["a"]
    assert act.shape == (2 * 4, 16, 2, 2)
    split = net.split_slices(act, batch_size=2)
    assert split.shape == (2, 16, 4, 2, 2)
    torch.testing.assert_close(split, out.features.permute(0, 2, 1, 3, 4))
    assert net.slice_axis_layout.activation_axes == ("B*H", "F", "D1", "D2")


def test_split_slices_rejects_a_leading_axis_not_divisible_by_batch():
    with pytest.raises(ValueError, match="B\\*H"):
        _small().split_slices(torch.zeros(7, 16, 2, 2), batch_size=2)


def test_no_custom_conv_ablation_puts_fc_on_trunk_output_and_targets_layer4():
    net = _small(custom_convs=False)
    assert net.cam_target_layer == "trunk.layer4"
    assert net.cam_target_layer in dict(net.named_modules())
    with torch.no_grad():
        out = net.forward_all(_volume())
    assert out.features.shape == (2, 4, 64, 2, 2)
    assert out.attention.shape == (2, M, 4, 2, 2)
    assert net.fc.in_features == 64 * 2 * 2


def test_paper_no_custom_conv_grid_is_the_14x14_trunk_output():
    assert AxialNet.attention_grid((420, 420), z=405, custom_convs=False) == (135, 14, 14)


def test_custom_conv_channels_set_the_feature_count():
    net = _small(custom_conv_channels=(8, 4))
    assert net.cam_target_layer == "custom_convs.relu2" and net.n_features == 4
    assert net.forward_all(_volume()).features.shape == (2, 4, 4, 2, 2)


def test_attention_is_differentiable_for_the_mask_loss():
    net = _small().train()
    out = net.forward_all(_volume())
    out.attention.sum().backward()
    assert net.fc.weight.grad is not None and net.trunk.conv1.weight.grad is not None


def test_pretrained_true_without_a_file_is_refused():
    with pytest.raises(InputError, match="never downloaded"):
        AxialNet(pretrained=True)  # type: ignore[arg-type]


def test_spatial_size_may_be_given_as_x_y_z_with_z_left_free():
    net = AxialNet(n_classes=M, spatial_size=(*XY, 12), trunk="small", custom_conv_padding=1).eval()
    assert net.spatial_size == XY
    assert net(torch.rand(1, 1, *XY, 6)).shape == (1, M)


def test_string_false_from_the_command_line_builds_the_no_custom_conv_ablation():
    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small", custom_conv_padding=1, custom_convs="false")
    assert net.cam_target_layer == "trunk.layer4"


def test_unparseable_custom_convs_value_is_refused():
    with pytest.raises(ValueError, match="custom_convs must be true or false"):
        AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small", custom_conv_padding=1, custom_convs="nope")


@pytest.mark.parametrize("norm, layer", [("group", torch.nn.GroupNorm), ("instance", torch.nn.InstanceNorm2d)])
def test_batch_independent_norm_replaces_every_batchnorm(norm, layer):
    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small", custom_conv_padding=1, norm=norm)
    kinds = {type(m) for m in net.modules()}
    assert layer in kinds and torch.nn.BatchNorm2d not in kinds


def test_group_norm_gives_the_same_scan_scores_in_train_and_eval_mode():
    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small", custom_conv_padding=1, norm="group")
    x = torch.rand(2, 1, 64, 64, 12)
    with torch.no_grad():
        train_logits = net.train()(x)
        eval_logits = net.eval()(x)
    assert torch.allclose(train_logits, eval_logits, atol=1e-5)


def test_channels_last_gives_the_same_outputs_as_the_default_layout():
    torch.manual_seed(0)
    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small", custom_conv_padding=1).eval()
    x = torch.rand(2, 1, 64, 64, 12)
    with torch.no_grad():
        before = net.forward_all(x)
        after = net.to_channels_last().forward_all(x)
    assert net.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(before.logits, after.logits, atol=1e-5)
    assert torch.allclose(before.attention, after.attention, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"slice_pooling": "max"}, {"custom_convs": False}, {"norm": "group"}],
    ids=["mean", "max", "no_custom_conv", "group_norm"],
)
def test_torchscript_scripted_forward_equals_the_eager_logits(kwargs):
    # the Model Zoo's CI exports with torch.jit.script (ckpt_export without --use_trace)
    net = _small(**kwargs)
    scripted = torch.jit.script(net)
    x = _volume()
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-6)


def test_torchscript_scripted_channels_last_network_equals_the_eager_logits():
    net = _small().to_channels_last()
    x = _volume()
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-5)


@pytest.mark.parametrize(
    "shape, message",
    [((1, 1, 96, 64, 12), "spatial size"), ((1, 1, *XY, 10), "not divisible by 3"), ((1, 3, *XY, 12), "B, 1, X")],
    ids=["in_plane_size", "z", "channels"],
)
def test_torchscript_scripted_forward_keeps_the_input_checks(shape, message):
    scripted = torch.jit.script(_small())
    with pytest.raises(Exception, match=message):  # torch.jit.Error carrying the ValueError's message
        scripted(torch.rand(*shape))
