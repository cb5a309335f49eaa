"""3DConv: a plain 3D convolutional network on the single-channel CT volume, trained from scratch.

An alternative model of Draelos & Carin, HiResCAM, arXiv:2011.08891, Table 1 (AUROC 53.8, OrganIoU Grad-CAM 3.3 /
HiResCAM 4.5 in the small-data setting): four 3x3x3 convolutions of stride 3, ``1 -> 64 -> 128 -> 256 -> 512``,
then two 1x1x1 convolutions ``512 -> 128 -> 64`` (paper size: ``[64, 5, 5, 5]`` = 8,000 features from
405 x 420 x 420), ReLU after each, and a fully connected head ``-> 128 -> 96 -> M``. No pretraining.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from hirescam_ext.networks._layers import check_volume, check_volume_size, conv_out_size, mlp_head

__all__ = ["ThreeDConv"]


class ThreeDConv(nn.Module):
    """3DConv for a volume batch ``[B, 1, X, Y, Z]`` of fixed size ``volume_size``; returns logits ``[B, M]``.

    With ``conv_padding=0`` (the paper) each stride-3 conv maps ``n -> (n - 3) // 3 + 1`` (420 -> 140 -> 46 -> 15
    -> 5, 405 -> 135 -> 45 -> 15 -> 5), so every axis needs at least 81 voxels; ``conv_padding=1`` maps
    ``n -> ceil(n / 3)`` and accepts any size.

    Args:
        n_classes: number of abnormalities M.
        volume_size: ``(X, Y, Z)`` of the input (Z need not be divisible by 3).
        channels: output channels of the stride-3 convs.
        reduce_channels: output channels of the 1x1x1 convs; the last is the CAM feature count.
        conv_padding: zero padding of the stride-3 convs.
        dropout: dropout probability in the head (the reference notes give none for 3DConv; default 0).

    Attributes:
        cam_target_layer: ``"convs.relu6"`` (with the default six convs), the last 3D conv block. Its activations
            are ``[B, F, X', Y', Z']`` in the input's axis order (:attr:`cam_layout`); note the depth axis is last
            here, unlike BodyConv's. The paper resampled such maps trilinearly to AxialNet's 135 x 6 x 6 grid.
        cam_layout: axis names of the target layer's activations.

    Example:
        >>> net = ThreeDConv(n_classes=4, volume_size=(32, 32, 30), channels=(4, 4, 4, 4), reduce_channels=(4, 4),
        ...                  conv_padding=1)
        >>> net(torch.rand(2, 1, 32, 32, 30)).shape
        torch.Size([2, 4])
    """

    cam_layout = ("B", "F", "X", "Y", "Z")

    def __init__(
        self,
        n_classes: int = 80,
        volume_size: Sequence[int] = (420, 420, 405),
        channels: Sequence[int] = (64, 128, 256, 512),
        reduce_channels: Sequence[int] = (128, 64),
        conv_padding: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) == 0:
            raise ValueError("channels must list at least one stride-3 conv")
        if conv_padding < 0:
            raise ValueError(f"conv_padding must be >= 0, got {conv_padding}")
        self.volume_size = check_volume_size(volume_size, "ThreeDConv", triplets=False)
        self.n_classes = int(n_classes)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width, grid, i = 1, list(self.volume_size), 0
        for out in channels:
            i += 1
            layers[f"conv{i}"] = nn.Conv3d(width, int(out), kernel_size=3, stride=3, padding=conv_padding)
            layers[f"relu{i}"] = nn.ReLU()
            width = int(out)
            where = f"ThreeDConv conv{i} (input {self.volume_size}; use conv_padding=1 for small volumes)"
            grid = [conv_out_size(n, 3, 3, conv_padding, where=where) for n in grid]
        for out in reduce_channels:
            i += 1
            layers[f"conv{i}"] = nn.Conv3d(width, int(out), kernel_size=1)
            layers[f"relu{i}"] = nn.ReLU()
            width = int(out)
        self.convs = nn.Sequential(layers)
        self.cam_target_layer = f"convs.relu{i}"
        self.cam_grid = (grid[0], grid[1], grid[2])
        self.n_features = width * grid[0] * grid[1] * grid[2]
        self.classifier = mlp_head(self.n_features, self.n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, X, Y, Z]`` -> logits ``[B, M]``."""
        check_volume(x, self.volume_size, "ThreeDConv")
        return self.classifier(self.convs(x).flatten(1))
