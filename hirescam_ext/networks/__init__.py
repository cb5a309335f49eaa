"""Networks of the HiResCAM paper (Draelos & Carin, arXiv:2011.08891): AxialNet and its ablations, the alternative
models CTNet, BodyConv and 3DConv of Table 1, the ResNet-18 trunk with offline torchvision-weight loading, a plain
3D CNN sanity baseline, extra input windows, a densitometry branch and initialization helpers."""

from __future__ import annotations

from hirescam_ext.networks.axialnet import CUSTOM_CONV_INITS, SLICE_POOLINGS, AxialNet, AxialNetOutput, SliceAxisLayout
from hirescam_ext.networks.bodyconv import BodyConv
from hirescam_ext.networks.conv3d import ThreeDConv
from hirescam_ext.networks.ctnet import CTNet
from hirescam_ext.networks.density_bands import DENSITY_BAND_CENTERS_HU, DENSITY_CONTEXT_CENTERS_HU, DensityBands
from hirescam_ext.networks.input_windows import InputWindows, widen_conv_input
from hirescam_ext.networks.init import (
    init_output_bias,
    log_prior_odds,
    output_layer,
    prepare_network,
    share_fc_cells,
    tie_fc_cells,
)
from hirescam_ext.networks.plain3d import Plain3DCNN
from hirescam_ext.networks.resnet_trunk import (
    TRUNK_NAMES,
    TRUNK_NORMS,
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
    "CUSTOM_CONV_INITS",
    "CTNet",
    "BodyConv",
    "ThreeDConv",
    "Plain3DCNN",
    "InputWindows",
    "DensityBands",
    "DENSITY_BAND_CENTERS_HU",
    "DENSITY_CONTEXT_CENTERS_HU",
    "widen_conv_input",
    "ResNetTrunk",
    "TRUNK_NAMES",
    "TRUNK_NORMS",
    "init_output_bias",
    "share_fc_cells",
    "tie_fc_cells",
    "log_prior_odds",
    "output_layer",
    "prepare_network",
    "build_trunk",
    "resnet18_trunk",
    "small_trunk",
    "trunk_output_size",
    "load_torchvision_resnet18_weights",
]
