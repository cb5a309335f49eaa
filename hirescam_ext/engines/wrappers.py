"""Network wrappers used by the workflows."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WithAttention"]


class WithAttention(nn.Module):
    """Make a network's ``forward`` return ``{"logits", "attention"}`` from one ``forward_all`` pass.

    The trainer needs the all-abnormality attention of AxialNet (eq. 9 of Draelos & Carin, computed in the forward
    pass, no backward) for the mask loss. Wrapping, rather than a keyword on ``AxialNet.forward``, keeps the plain
    network's ``forward`` a tensor-in tensor-out function (``verify_net_in_out``, export) and lets
    ``DistributedDataParallel`` wrap this module so its gradient hooks still fire.

    Args:
        net: a network with ``forward_all(x)`` returning an object with ``logits`` and ``attention``.

    Example:
        >>> from hirescam_ext import AxialNet
        >>> wrapped = WithAttention(AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small", custom_conv_padding=1))
        >>> out = wrapped(torch.rand(1, 1, 64, 64, 6))
        >>> sorted(out)
        ['attention', 'logits']
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(net, "forward_all", None)):
            raise TypeError(f"{type(net).__name__} has no forward_all(); the mask loss needs AxialNet-style attention")
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net.forward_all(x)
        return {"logits": out.logits, "attention": out.attention}
