"""CTNet: ResNet-18 features of all slice triplets, reduced by 3D convolutions, then a fully connected classifier.

An alternative model of Draelos & Carin, HiResCAM, arXiv:2011.08891, Table 1 (AUROC 66.3 in the small-data setting).
The trunk's output for the ``H`` triplets, ``[H, 512, d1, d2]``, is read as a 3D image with ``H`` channels and depth
512 (the feature axis); three 3D convolutions reduce it (paper size: ``[16, 18, 5, 5]`` = 7,200 features) and a
fully connected head ``-> 128 -> 96 -> M`` with dropout 0.5 classifies. Mixing slices as channels loses the spatial
link between the features and the input, so no OrganIoU (no CAM) is possible: ``cam_target_layer`` is ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from hirescam_ext.networks._layers import (
    SLICES_PER_TRIPLET,
    check_volume,
    check_volume_size,
    mlp_head,
    reducing_conv3d,
    reducing_conv3d_out,
    volume_to_triplets,
)
from hirescam_ext.networks.resnet_trunk import build_trunk

__all__ = ["CTNet"]


class CTNet(nn.Module):
    """CTNet for a volume batch ``[B, 1, X, Y, Z]`` of fixed size ``volume_size``; returns logits ``[B, M]``.

    The number of triplets ``H = Z / 3`` is the first 3D conv's channel count, so the network is built for one
    volume size. Layers: trunk over all ``B * H`` triplets -> ``[B, H, C, d1, d2]`` -> 3D convs ``H -> 64 -> 32 ->
    16`` (kernels 3x3x3, 3x3x3, 3x2x2; strides (3,1,1), (3,1,1), (3,2,2); ReLU) -> flatten -> ``128 -> 96 -> M``.
    At 420 x 420 x 405: ``[B, 135, 512, 14, 14]`` -> ``[B, 16, 18, 5, 5]`` -> 7,200 features.

    Args:
        n_classes: number of abnormalities M.
        volume_size: ``(X, Y, Z)`` of the input; Z divisible by 3.
        trunk: ``"resnet18"`` or ``"small"`` (tests).
        pretrained: path of torchvision ResNet-18 weights or ``None``.
        conv_channels: output channels of the three 3D convs.
        conv_padding: zero padding of the 3D convs (0 as in the paper; 1 lets small inputs through).
        dropout: dropout probability in the head (0.5 in the paper).

    Attributes:
        cam_target_layer: ``None``: the slices are mixed as channels, there is no spatial map to explain.

    Example:
        >>> net = CTNet(n_classes=4, volume_size=(64, 64, 12), trunk="small", conv_padding=1)
        >>> net(torch.rand(2, 1, 64, 64, 12)).shape
        torch.Size([2, 4])
    """

    cam_target_layer = None

    def __init__(
        self,
        n_classes: int = 80,
        volume_size: Sequence[int] = (420, 420, 405),
        trunk: str = "resnet18",
        pretrained: str | os.PathLike | None = None,
        conv_channels: Sequence[int] = (64, 32, 16),
        conv_padding: int = 0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.volume_size = check_volume_size(volume_size, "CTNet")
        self.n_classes = int(n_classes)
        self.trunk = build_trunk(trunk, pretrained)
        nx, ny, nz = self.volume_size
        n_triplets = nz // SLICES_PER_TRIPLET
        grid = (self.trunk.output_size(nx), self.trunk.output_size(ny))
        self.reducing_convs = reducing_conv3d(n_triplets, conv_channels, conv_padding)
        out = reducing_conv3d_out((self.trunk.out_channels, *grid), conv_padding, where="CTNet 3D conv")
        self.n_features = int(conv_channels[-1]) * out[0] * out[1] * out[2]
        self.classifier = mlp_head(self.n_features, self.n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, X, Y, Z]`` -> logits ``[B, M]``."""
        check_volume(x, self.volume_size, "CTNet")
        b = x.shape[0]
        feats = self.trunk(volume_to_triplets(x))  # [B*H, C, d1, d2]
        feats = feats.reshape(b, -1, *feats.shape[1:])  # [B, H channels, C depth, d1, d2]
        return self.classifier(self.reducing_convs(feats).flatten(1))

