"""A densitometry branch for AxialNet: soft HU-band fractions of every attention cell, computed inside the network.

Quantitative chest CT reads several findings as the share of lung voxels in a density band: emphysema as the low
attenuation area below about -950 HU, ground glass as the voxels a few hundred HU above aerated lung, metal and
calcium as the voxels at the top of the window. A convolutional trunk has to build such a count from two
thresholds and keep it through pooling; on the synthetic benchmark it does not (docs/TRAINING.md: linear probes of
every layer rank ground glass and emphysema at chance while a logistic regression on the scan's HU histogram ranks
them at 0.97 and 0.81). :class:`DensityBands` gives AxialNet that count directly: each pixel of a slice triplet is
split between the two nearest of a set of band centres in HU (linear interpolation, so the memberships sum to one),
the memberships are averaged over the triplet's slices and over the pixels of each attention cell, standardized per
band by batch normalization (the bands' shares differ by orders of magnitude: air and soft tissue against a few
ground-glass pixels), and two 1 x 1 convolutions with ReLU turn them into features. AxialNet concatenates these
features with the trunk's before its custom convolutions, so the CAM target layer, the fully connected layer and
HiResCAM's exactness are unchanged.

A documented deviation from the paper (Draelos & Carin, HiResCAM, arXiv:2011.08891), off unless AxialNet's
``density_bands`` is set; docs/TRAINING.md has the measurements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List

import torch
from torch import nn

from hirescam_ext.networks.input_windows import checked_hu_range

__all__ = ["DensityBands", "DENSITY_BAND_CENTERS_HU", "DENSITY_CONTEXT_CENTERS_HU"]

#: default band centres in HU: dense in the lung range (aerated lung, emphysema, ground glass), coarser through soft
#: tissue, then calcium, bone and metal at the top of the bundle's [-1000, 800] window
DENSITY_BAND_CENTERS_HU = (
    -1000.0, -950.0, -900.0, -850.0, -800.0, -750.0, -700.0, -600.0, -500.0, -400.0,
    -250.0, -100.0, 0.0, 50.0, 100.0, 200.0, 400.0, 650.0, 800.0,
)  # fmt: skip

#: default centres in HU of the context bands (the mean of a pixel's 26 neighbours): aerated lung, lung mixed with
#: soft tissue, soft tissue and fat, enhanced blood and bone
DENSITY_CONTEXT_CENTERS_HU = (-900.0, -600.0, -300.0, 0.0, 300.0)


class DensityBands(nn.Module):
    """Per-cell fractions of soft HU bands of a slice triplet, then two 1 x 1 convolutions (a densitometry branch).

    Args:
        centers_hu: increasing band centres in HU, at least two, inside ``input_hu_range``. A pixel's HU value is
            clipped to ``[centers_hu[0], centers_hu[-1]]`` and split between the two centres around it in
            proportion to its distance to each.
        out_channels: features per cell.
        input_hu_range: the HU window the input was made with (the bundle's ``HUWindowd``: ``(-1000, 800)``).
        center: the value the input's window adds after scaling (the bundle's: ``-0.449``).
        smoothing: width (standard deviation, in pixels of the input) of an in-plane Gaussian applied to each slice
            before the split (replicate padding); ``0``: none. How a scan was made moves the raw shares: the bundle
            resamples every scan to the model's grid, which averages noise down and mixes tissues at their edges, so
            a scan rendered finer and resampled has other band shares than one made on the grid (docs/TRAINING.md
            measures the shift). A fixed smoothing of about one pixel makes the shares of both nearly the same, but
            also erases the narrow bands that hold ground glass and metal; the shipped models train without it, on
            scans made finer and resampled.
        context_centers_hu: ``None`` (default: value bands only) or increasing centres in HU of context bands: each
            pixel's membership of a value band is then split again by the mean HU of its 26 neighbours (the 3 x 3 x 3
            box of the triplet around it, edges repeated), so the shares count a density *in its surroundings*: a
            soft-tissue pixel inside aerated lung (a nodule, a mass, a consolidation) apart from one inside the
            mediastinum, a bright pixel in lung (a calcification) apart from bone. ``K`` value bands and ``L`` context
            bands give ``K * L`` shares per cell (:data:`DENSITY_CONTEXT_CENTERS_HU`: five).

    Example:
        >>> bands = DensityBands([-1000.0, -500.0, 0.0], out_channels=4)
        >>> x = torch.full((2, 3, 8, 8), -0.449 + 500.0 / 1800.0)  # -500 HU everywhere in the bundle's encoding
        >>> bands.fractions(x, [2, 2])[0, :, 0, 0].round(decimals=4)
        tensor([0., 1., 0.])
        >>> bands(x, [2, 2]).shape
        torch.Size([2, 4, 2, 2])
    """

    def __init__(
        self,
        centers_hu: Sequence[float] = DENSITY_BAND_CENTERS_HU,
        out_channels: int = 32,
        input_hu_range: Sequence[float] = (-1000.0, 800.0),
        center: float = -0.449,
        smoothing: float = 0.0,
        context_centers_hu: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        lo, hi = checked_hu_range(input_hu_range)
        centers = [float(c) for c in centers_hu]
        if len(centers) < 2 or any(b <= a for a, b in zip(centers, centers[1:])):
            raise ValueError(f"centers_hu must be at least two increasing values in HU, got {centers}")
        if centers[0] < lo or centers[-1] > hi:
            raise ValueError(
                f"centers_hu {centers[0]:g} ... {centers[-1]:g} HU must lie inside the input's window ({lo:g}, {hi:g}) "
                "HU: values outside it were clipped before the network"
            )
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        context = [float(c) for c in context_centers_hu] if context_centers_hu is not None else []
        if context_centers_hu is not None and (len(context) < 2 or any(b <= a for a, b in zip(context, context[1:]))):
            raise ValueError(f"context_centers_hu must be at least two increasing values in HU, got {context}")
        smoothing = float(smoothing)
        if not smoothing >= 0.0 or smoothing == float("inf"):
            raise ValueError(f"smoothing is a Gaussian width in pixels, >= 0 and finite, got {smoothing}")
        self.centers_hu = centers
        self.out_channels = int(out_channels)
        self.hu_low, self.hu_span, self.center = lo, hi - lo, float(center)
        c = torch.tensor(centers, dtype=torch.float32)
        self.register_buffer("offsets", c - c[0], persistent=False)  # HU above the first centre
        self.register_buffer("inverse_gaps", 1.0 / (c[1:] - c[:-1]), persistent=False)
        # with whole-HU centres the band below a value, its offset and its inverse gap are table lookups of the
        # value's floor (torch.bucketize is over ten times slower on a CPU); other centres use it
        self.integer_centers = all(float(v).is_integer() for v in centers)
        steps = torch.arange(0.0, centers[-1] - centers[0] + 1.0) if self.integer_centers else torch.zeros(0)
        below = torch.bucketize(steps, self.offsets[1:-1], right=True, out_int32=True)
        self.register_buffer("band_below", below, persistent=False)
        self.register_buffer("offset_below", self.offsets[below.long()], persistent=False)
        self.register_buffer("inverse_gap_below", self.inverse_gaps[below.long()], persistent=False)
        # context bands (placeholders when off: TorchScript compiles both paths of fractions)
        self.context_centers_hu = context
        self.use_context = len(context) > 0
        cc = torch.tensor(context if context else [0.0, 1.0], dtype=torch.float32)
        self.context_low, self.context_high = float(cc[0]), float(cc[-1])  # floats: TorchScript has no empty list
        self.register_buffer("context_centers", cc, persistent=False)
        self.register_buffer("context_inverse_gaps", 1.0 / (cc[1:] - cc[:-1]), persistent=False)
        # separable Gaussian of the in-plane smoothing, truncated at three widths
        self.smoothing = smoothing
        self.smoothing_radius = int(math.ceil(3.0 * smoothing)) if smoothing > 0 else 0
        taps = torch.arange(-self.smoothing_radius, self.smoothing_radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (taps / smoothing) ** 2) if smoothing > 0 else torch.ones(1)
        self.register_buffer("smoothing_kernel", kernel / kernel.sum(), persistent=False)
        k = len(centers) * max(len(context), 1)
        self.n_bands = k
        self.norm = nn.BatchNorm2d(k)
        self.conv1 = nn.Conv2d(k, self.out_channels, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(self.out_channels, self.out_channels, 1)
        self.relu2 = nn.ReLU()
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def fractions(self, triplets: torch.Tensor, grid: List[int]) -> torch.Tensor:
        """``[N, C, X, Y]`` windowed slices -> band fractions ``[N, K, D1, D2]`` of each of the ``grid`` cells
        (mean over the ``C`` slices and the cell's pixels; they sum to 1 over the ``K`` bands).

        Cell ``(i, j)`` holds the pixels ``x`` with ``floor(x * D1 / X) == i`` and ``y`` with ``floor(y * D2 / Y) == j``
        (the trunk's cells when ``X`` and ``Y`` are multiples of the grid). Each pixel adds its memberships to its
        cell with a scatter, so the cost grows with the pixels, not with pixels times bands. With context bands,
        band ``v * L + l`` holds value band ``v`` in context band ``l`` (``L`` context bands).
        """
        n, c, nx, ny = triplets.shape
        d1, d2, k = int(grid[0]), int(grid[1]), self.n_bands
        triplets = triplets.float()
        if self.smoothing_radius > 0:
            triplets = self.smooth(triplets)
        # the work is a few passes over every pixel: each makes at most one new tensor (in-place steps after it), and
        # the lookups are index_select on flat tensors (a tensor indexed by a tensor is 3-4 times slower on a CPU)
        above = triplets * self.hu_span  # -> HU above the first centre, clipped to the last
        above = above.add_(self.hu_low - self.center * self.hu_span - self.centers_hu[0])
        context = self.context(above + self.centers_hu[0]) if self.use_context else above
        above = above.clamp_(0.0, self.centers_hu[-1] - self.centers_hu[0]).reshape(-1)
        if self.integer_centers:  # band below: offsets[lower] <= above < offsets[lower + 1]
            step = above.to(torch.int32)  # the floor: above >= 0
            lower = self.band_below.index_select(0, step)
            w = self.offset_below.index_select(0, step).neg_().add_(above)
            w = w.mul_(self.inverse_gap_below.index_select(0, step))
        else:
            lower = torch.bucketize(above, self.offsets[1:-1], right=True, out_int32=True)
            w = self.offsets.index_select(0, lower).neg_().add_(above).mul_(self.inverse_gaps.index_select(0, lower))
        lower, w = lower.view(n, c, nx, ny), w.view(n, c, nx, ny)  # w: the share of the band above
        gx = torch.div(torch.arange(nx, device=above.device) * d1, nx, rounding_mode="floor")
        gy = torch.div(torch.arange(ny, device=above.device) * d2, ny, rounding_mode="floor")
        cell = (gx.view(-1, 1) * d2 + gy.view(1, -1)).view(1, 1, nx, ny)
        n_cells = d1 * d2
        base = torch.arange(n, device=above.device).view(-1, 1, 1, 1) * (k * n_cells) + cell  # [N, 1, X, Y]
        out = torch.zeros(n * k * n_cells, dtype=above.dtype, device=above.device)
        if self.use_context:
            n_context = self.context_centers.shape[0]
            cc = self.context_centers
            context = context.clamp(self.context_low, self.context_high)
            lc = torch.bucketize(context.contiguous(), cc[1:-1], right=True)
            wc = (context - cc[lc]) * self.context_inverse_gaps[lc]
            index = (base + (lower * n_context + lc) * n_cells).reshape(-1)
            up = n_context * n_cells  # the next value band
            out = out.scatter_add(0, index, ((1.0 - w) * (1.0 - wc)).reshape(-1))
            out = out.scatter_add(0, index + n_cells, ((1.0 - w) * wc).reshape(-1))
            out = out.scatter_add(0, index + up, (w * (1.0 - wc)).reshape(-1))
            out = out.scatter_add(0, index + up + n_cells, (w * wc).reshape(-1))
        else:
            small = n * k * n_cells < 2**31  # int32 indices: half the memory traffic of int64
            index = torch.add(base.to(torch.int32) if small else base, lower, alpha=n_cells).reshape(-1)
            # the band above's shares are added at the band below's index, then moved up one band: one index tensor
            upper = torch.zeros_like(out).index_add_(0, index, w.reshape(-1))
            out = out.index_add_(0, index, (1.0 - w).reshape(-1)).view(n, k, n_cells)
            out[:, 1:] += upper.view(n, k, n_cells)[:, :-1]
            out = out.reshape(-1)
        pixels = torch.bincount(cell.reshape(-1), minlength=n_cells).to(out.dtype) * c
        return (out.view(n, k, n_cells) / pixels).view(n, k, d1, d2)

    def context(self, hu: torch.Tensor) -> torch.Tensor:
        """``[N, C, X, Y]`` slices -> the mean of each pixel's 26 neighbours in the ``C`` x ``X`` x ``Y`` stack (its
        3 x 3 x 3 box without itself; beyond the stack's edges the edge pixels repeat)."""
        x = nn.functional.pad(hu.unsqueeze(1), [1, 1, 1, 1, 1, 1], mode="replicate")
        box = nn.functional.avg_pool3d(x, 3, stride=1).squeeze(1)
        return (box * 27.0 - hu) / 26.0

    def smooth(self, triplets: torch.Tensor) -> torch.Tensor:
        """``[N, C, X, Y]`` -> the same, each slice smoothed in-plane by the Gaussian of ``smoothing`` (replicate
        padding: the border continues the edge pixels, not a constant that would be a density of its own)."""
        r, c = self.smoothing_radius, triplets.shape[1]
        kernel = self.smoothing_kernel.to(triplets.dtype)  # float32 from fractions
        x = nn.functional.pad(triplets, [r, r, r, r], mode="replicate")
        x = nn.functional.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        return nn.functional.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)

    def forward(self, triplets: torch.Tensor, grid: List[int]) -> torch.Tensor:
        """``[N, C, X, Y]`` windowed slices -> features ``[N, out_channels, D1, D2]`` on the ``grid`` cells."""
        f = self.norm(self.fractions(triplets, grid).to(self.conv1.weight.dtype))
        return self.relu2(self.conv2(self.relu1(self.conv1(f))))
