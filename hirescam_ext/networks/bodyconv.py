"""BodyConv: ResNet-18 features of all slice triplets stacked into a 3D body, reduced by 3D convolutions.

An alternative model of Draelos & Carin, HiResCAM, arXiv:2011.08891, Table 1 (AUROC 50.2, OrganIoU Grad-CAM 0.0 /
HiResCAM 14.6 in the small-data setting). The trunk's features for the ``H`` triplets are transposed to
``[512, H, d1, d2]`` (features as channels, the slice axis as depth), three 3D convolutions ``512 -> 64 -> 32 -> 16``
reduce them (paper size: ``[16, 5, 5, 5]`` = 2,000 features) and a fully connected head ``-> 128 -> 96 -> M``
classifies. The last 3D conv block keeps a spatial layout, so it is the CAM target layer.
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

__all__ = ["BodyConv"]


class BodyConv(nn.Module):
    """BodyConv for a volume batch ``[B, 1, X, Y, Z]`` of fixed size ``volume_size``; returns logits ``[B, M]``.

    Layers: trunk over all ``B * H`` triplets -> ``[B, C, H, d1, d2]`` -> 3D convs ``C -> 64 -> 32 -> 16`` (kernels
    3x3x3, 3x3x3, 3x2x2; strides (3,1,1), (3,1,1), (3,2,2); ReLU) -> flatten -> ``128 -> 96 -> M``. At
    420 x 420 x 405: ``[B, 512, 135, 14, 14]`` -> ``[B, 16, 5, 5, 5]`` -> 2,000 features.

    Args:
        n_classes: number of abnormalities M.
        volume_size: ``(X, Y, Z)`` of the input; Z divisible by 3.
        trunk: ``"resnet18"`` or ``"small"`` (tests).
        pretrained: path of torchvision ResNet-18 weights or ``None``.
        conv_channels: output channels of the three 3D convs.
        conv_padding: zero padding of the 3D convs (0 as in the paper; 1 lets small inputs through).
        dropout: dropout probability in the head (the reference notes give none for BodyConv; default 0).

    Attributes:
        cam_target_layer: ``"reducing_convs.relu3"``, the last 3D conv block. Its activations are
            ``[B, F, H', D1', D2']`` (:attr:`cam_layout`): a true 5D map whose depth runs along the triplets
            (``H' = 5`` for ``H = 135``), ``D1'`` along X, ``D2'`` along Y; resample to the ``[H, D1, D2]`` grid of
            AxialNet to compare (the paper resampled trilinearly to 135 x 6 x 6).
        cam_layout: axis names of the target layer's activations.

    Example:
        >>> net = BodyConv(n_classes=4, volume_size=(64, 64, 12), trunk="small", conv_padding=1)
        >>> net(torch.rand(2, 1, 64, 64, 12)).shape
        torch.Size([2, 4])
    """

    cam_target_layer = "reducing_convs.relu3"
    cam_layout = ("B", "F", "H", "D1", "D2")

    def __init__(
        self,
        n_classes: int = 80,
        volume_size: Sequence[int] = (420, 420, 405),
        trunk: str = "resnet18",
        pretrained: str | os.PathLike | None = None,
        conv_channels: Sequence[int] = (64, 32, 16),
        conv_padding: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.volume_size = check_volume_size(volume_size, "BodyConv")
        self.n_classes = int(n_classes)
        self.trunk = build_trunk(trunk, pretrained)
        nx, ny, nz = self.volume_size
        body = (nz // SLICES_PER_TRIPLET, self.trunk.output_size(nx), self.trunk.output_size(ny))
        self.reducing_convs = reducing_conv3d(self.trunk.out_channels, conv_channels, conv_padding)
        self.cam_grid = reducing_conv3d_out(body, conv_padding, where="BodyConv 3D conv")
        self.n_features = int(conv_channels[-1]) * self.cam_grid[0] * self.cam_grid[1] * self.cam_grid[2]
        self.classifier = mlp_head(self.n_features, self.n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, X, Y, Z]`` -> logits ``[B, M]``."""
        check_volume(x, self.volume_size, "BodyConv")
        b = x.shape[0]
        feats = self.trunk(volume_to_triplets(x))  # [B*H, C, d1, d2]
        body = feats.reshape(b, -1, *feats.shape[1:]).transpose(1, 2)  # [B, C, H, d1, d2]
        return self.classifier(self.reducing_convs(body).flatten(1))
