"""Extra intensity windows of an already windowed CT input, computed inside the network.

The paper (Draelos & Carin, HiResCAM, arXiv:2011.08891) feeds one wide window, [-1000, 800] HU, to AxialNet. Lung
parenchyma then spans a small part of the input range: ground glass (a few hundred HU above aerated lung) or
emphysema (darker lung) differ from normal lung by a tenth of that range, while the body outline and bone differ by
half of it. Radiologists read the lungs in a narrow lung window for that reason. :class:`InputWindows` adds such
windows as extra channels: the input is the bundle's windowed volume (``clip(hu, -1000, 800)`` scaled to [0, 1]
plus a centre), which is linear in HU inside its range, so any narrower window inside that range is recovered
exactly, with no change to the preprocessing.

This is a documented deviation from the paper (docs/TRAINING.md); AxialNet uses it only when ``extra_windows`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["InputWindows", "widen_conv_input", "checked_hu_range"]


def checked_hu_range(input_hu_range: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` of the HU window an input was made with, as floats; ``ValueError`` unless ``high > low``."""
    lo, hi = (float(v) for v in input_hu_range)
    if not hi > lo:
        raise ValueError(f"input_hu_range must be (low, high) with high > low, got {tuple(input_hu_range)}")
    return lo, hi


class InputWindows(nn.Module):
    """Append narrower HU windows of a windowed input as extra channels (no parameters).

    Each window ``(low, high)`` in HU gives ``clip(hu, low, high)`` scaled to [0, 1] plus ``center``, the same
    encoding as the input's own window, computed from the input as ``clip(x, a, b)`` rescaled (``a``, ``b`` the
    input values of ``low`` and ``high``).

    Args:
        windows: ``[(low, high), ...]`` in HU, each inside ``input_hu_range`` with ``high > low``.
        input_hu_range: the HU window the input was made with (the bundle's ``HUWindowd``: ``(-1000, 800)``).
        center: the value the input's window adds after scaling (the bundle's: ``-0.449``); the extra channels get
            the same.

    Example:
        >>> lung = InputWindows([(-1000.0, -300.0)])
        >>> x = torch.tensor([[[-0.449, 0.0, 0.551]]])  # -1000, about -192 and 800 HU in the bundle's encoding
        >>> lung(x)[:, 1]
        tensor([[-0.4490,  0.5510,  0.5510]])
    """

    def __init__(
        self,
        windows: Sequence[Sequence[float]],
        input_hu_range: Sequence[float] = (-1000.0, 800.0),
        center: float = -0.449,
    ) -> None:
        super().__init__()
        lo, hi = checked_hu_range(input_hu_range)
        bounds = []
        for w in windows:
            if len(w) != 2:
                raise ValueError(f"each extra window is (low, high) in HU, got {w!r}")
            a, b = float(w[0]), float(w[1])
            if not (lo <= a < b <= hi):
                raise ValueError(
                    f"extra window ({a:g}, {b:g}) HU must have low < high and lie inside the input's window "
                    f"({lo:g}, {hi:g}) HU: values outside it were clipped before the network"
                )
            bounds.append(((a - lo) / (hi - lo) + center, (b - lo) / (hi - lo) + center))
        if not bounds:
            raise ValueError("windows is empty")
        self.windows = [tuple(float(v) for v in w) for w in windows]
        self.center = float(center)
        self.register_buffer("bounds", torch.tensor(bounds, dtype=torch.float32), persistent=False)

    @property
    def factor(self) -> int:
        """Channels out per channel in: 1 (the input) + the number of windows."""
        return 1 + len(self.windows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, ...]`` -> ``[N, C * factor, ...]``: the input's channels, then each window's."""
        out = [x]
        for k in range(self.bounds.shape[0]):
            a, b = self.bounds[k, 0], self.bounds[k, 1]
            out.append((torch.minimum(torch.maximum(x, a.to(x.dtype)), b.to(x.dtype)) - a) / (b - a) + self.center)
        return torch.cat(out, dim=1)


def widen_conv_input(conv: nn.Conv2d, factor: int, copy_weights: bool) -> nn.Conv2d:
    """A copy of ``conv`` taking ``factor`` times its input channels (the original ones first); ``conv`` itself when
    ``factor`` is 1.

    ``copy_weights=True`` (pretrained weights) repeats the weights for each group of channels and divides them by
    ``factor``, so identical groups give the original output; otherwise the new groups get the He-normal (fan-out)
    draw the ResNet trunk uses for its convolutions.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if factor == 1:
        return conv
    new = nn.Conv2d(
        conv.in_channels * factor,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        w = conv.weight.detach()
        if copy_weights:
            new.weight.copy_(torch.cat([w] * factor, dim=1) / factor)
        else:
            extra = torch.empty(w.shape[0], w.shape[1] * (factor - 1), *w.shape[2:], dtype=w.dtype)
            nn.init.kaiming_normal_(extra, mode="fan_out", nonlinearity="relu")
            new.weight.copy_(torch.cat([w, extra], dim=1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    return new
