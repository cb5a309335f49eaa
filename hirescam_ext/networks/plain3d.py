"""A plain 3D CNN with global average pooling: the sanity baseline for what the synthetic benchmark lets a CNN learn.

Not a model of Draelos & Carin (HiResCAM, arXiv:2011.08891): it answers "is this finding learnable at all, at this
resolution and this many scans?" before AxialNet's numbers are read. Four stages of two 3x3x3 convolutions (the first
of stride 2), each followed by a normalization that does not depend on the batch (GroupNorm) and ReLU, then global
average pooling over the whole volume and one linear layer. Every convolution sees depth, unlike AxialNet's 2D trunk,
and global pooling lets any voxel count. Because the score is linear in the pooled features, HiResCAM, Grad-CAM and
CAM coincide for this network; :attr:`Plain3DCNN.cam_target_layer` is the last ReLU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from hirescam_ext.networks._layers import check_volume, check_volume_size, conv_out_size

__all__ = ["Plain3DCNN"]


class Plain3DCNN(nn.Module):
    """Plain 3D CNN for a volume batch ``[B, 1, X, Y, Z]``; returns logits ``[B, M]``.

    Args:
        n_classes: number of abnormalities M.
        volume_size: ``(X, Y, Z)`` of the input; ``None`` accepts any size (global pooling needs no fixed size).
        channels: output channels of the four stages (the first conv of each has stride 2).
        groups: GroupNorm groups (must divide every entry of ``channels``).
        conv_padding: accepted for the reproduction driver's common arguments; the convs always pad by 1.

    Attributes:
        cam_target_layer: ``"features.relu{2 * len(channels)}"``; activations ``[B, F, X', Y', Z']`` in the input's
            axis order (:attr:`cam_layout`).

    Example:
        >>> net = Plain3DCNN(n_classes=3, volume_size=(32, 32, 24), channels=(4, 8))
        >>> net(torch.rand(2, 1, 32, 32, 24)).shape
        torch.Size([2, 3])
    """

    cam_layout = ("B", "F", "X", "Y", "Z")

    def __init__(
        self,
        n_classes: int = 80,
        volume_size: Sequence[int] | None = None,
        channels: Sequence[int] = (16, 32, 64, 128),
        groups: int = 4,
        conv_padding: int = 1,
    ) -> None:
        super().__init__()
        if len(channels) == 0:
            raise ValueError("channels must list at least one stage")
        if any(int(c) % groups for c in channels):
            raise ValueError(f"groups={groups} must divide every channel count {tuple(channels)}")
        self.volume_size = None if volume_size is None else check_volume_size(volume_size, "Plain3DCNN", False)
        self.n_classes = int(n_classes)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width, i = 1, 0
        for out in channels:
            for stride in (2, 1):
                i += 1
                layers[f"conv{i}"] = nn.Conv3d(width, int(out), kernel_size=3, stride=stride, padding=1, bias=False)
                layers[f"norm{i}"] = nn.GroupNorm(groups, int(out))
                layers[f"relu{i}"] = nn.ReLU()
                width = int(out)
        self.features = nn.Sequential(layers)
        self.cam_target_layer = f"features.relu{i}"
        if self.volume_size is not None:
            self.cam_grid = tuple(self._grid(n, len(channels)) for n in self.volume_size)
        self.n_features = width
        self.fc = nn.Linear(width, self.n_classes)
        for module in self.features.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    @staticmethod
    def _grid(n: int, stages: int) -> int:
        for s in range(stages):
            n = conv_out_size(n, 3, 2, 1, where=f"Plain3DCNN stage {s + 1}")
        return n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, X, Y, Z]`` -> logits ``[B, M]``."""
        check_volume(x, self.volume_size or (None, None, None), "Plain3DCNN")
        return self.fc(self.features(x).mean(dim=(2, 3, 4)))
