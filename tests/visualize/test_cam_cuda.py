"""On a GPU, CAM maps equal the CPU ones (skipped without CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets import ResNet

from hirescam_ext.networks.axialnet import AxialNet
from hirescam_ext.visualize import GradCAM, HiResCAM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("cam_type", [HiResCAM, GradCAM])
def test_generic_path_on_cuda_matches_cpu(cam_type):
    torch.manual_seed(0)
    net = ResNet("basic", [1, 1, 1, 1], [4, 4, 8, 8], spatial_dims=3, n_input_channels=1, num_classes=6).double()
    x = torch.rand(2, 1, 16, 16, 16, dtype=torch.float64)
    idx = torch.tensor([[5, 0], [2, 2]])
    cpu = cam_type(net, target_layers="layer3")(x, class_idx=idx)
    gpu_net = copy.deepcopy(net).cuda()
    gpu = cam_type(gpu_net, target_layers="layer3")(x.cuda(), class_idx=idx)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu)


@pytest.mark.parametrize("cam_type", [HiResCAM, GradCAM])
def test_axialnet_closed_form_on_cuda_matches_cpu(cam_type):
    torch.manual_seed(0)
    net = AxialNet(n_classes=5, spatial_size=(64, 64), trunk="small", custom_conv_padding=1).double().eval()
    x = torch.rand(1, 1, 64, 64, 12, dtype=torch.float64)
    cpu = cam_type(net).compute_raw(x)
    gpu = cam_type(copy.deepcopy(net).cuda()).compute_raw(x.cuda(), class_idx=torch.tensor([[4, 1]]))
    torch.testing.assert_close(gpu.cpu(), cpu[:, [4, 1]])
