"""Networks of the HiResCAM paper (Draelos & Carin, arXiv:2011.08891): AxialNet and its ablations, the alternative
models CTNet, BodyConv and 3DConv of Table 1, and the ResNet-18 trunk with offline torchvision-weight loading."""

from __future__ import annotations

from hirescam_ext.networks.axialnet import SLICE_POOLINGS, AxialNet, AxialNetOutput, SliceAxisLayout
from hirescam_ext.networks.bodyconv import BodyConv
from hirescam_ext.networks.conv3d import ThreeDConv
from hirescam_ext.networks.ctnet import CTNet
from hirescam_ext.networks.resnet_trunk import (
    TRUNK_NAMES,
    ResNetTrunk,
    build_trunk,
    load_torchvision_resnet18_weights,
    resnet18_trunk,
    small_trunk,
    trunk_output_size,
)

__all__ = [
    "AxialNet",
    "AxialNetOutput",
    "SliceAxisLayout",
    "SLICE_POOLINGS",
    "CTNet",
    "BodyConv",
    "ThreeDConv",
    "ResNetTrunk",
    "TRUNK_NAMES",
    "build_trunk",
    "resnet18_trunk",
    "small_trunk",
    "trunk_output_size",
    "load_torchvision_resnet18_weights",
]
