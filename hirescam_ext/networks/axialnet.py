"""AxialNet: multi-abnormality classification of a chest CT volume with a built-in, exact attention map.

Draelos & Carin, "HiResCAM: Explainable Multi-Organ Multi-Abnormality Prediction in 3D Medical Images",
arXiv:2011.08891, section "AxialNet". The volume's axial slices are regrouped into triplets (3-channel 2D images), a
2D ResNet-18 trunk and four small convolutions turn each triplet ``h`` into a feature map ``z_h`` of shape
``[F, D1, D2]``, a fully connected layer shared by all slices gives per-slice scores ``c_mh = w_m . z_h + b_m`` and
the whole-volume score is their mean over slices, ``s_m = (1 / H) sum_h c_mh``. Because the score is linear in the
last feature maps, HiResCAM equals ``(1 / H) sum_f w_m (.) Z`` (paper eq. 9): it is returned by the forward pass for
all M abnormalities at once, with no backward pass (:meth:`AxialNet.forward_all`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import List, NamedTuple, Optional

import torch
from torch import nn

from hirescam_ext.networks._layers import SLICES_PER_TRIPLET, check_volume, conv_out_size, volume_to_triplets
from hirescam_ext.networks.density_bands import DENSITY_BAND_CENTERS_HU, DENSITY_CONTEXT_CENTERS_HU, DensityBands
from hirescam_ext.networks.input_windows import InputWindows, widen_conv_input
from hirescam_ext.networks.resnet_trunk import build_trunk, trunk_output_size
from hirescam_ext.utils.args import as_bool

__all__ = ["AxialNet", "AxialNetOutput", "SliceAxisLayout", "SLICE_POOLINGS", "CUSTOM_CONV_INITS"]

#: accepted values of ``slice_pooling``
SLICE_POOLINGS = ("mean", "max")

#: accepted values of ``custom_conv_init``
CUSTOM_CONV_INITS = ("kaiming", "pytorch")


class AxialNetOutput(NamedTuple):
    """Everything :meth:`AxialNet.forward_all` computes in one forward pass.

    Attributes:
        logits: ``[B, M]`` whole-volume scores ``s_m`` (pre-sigmoid).
        slice_scores: ``[B, M, H]`` per-slice scores ``c_mh`` (the paper's matrix C).
        features: ``[B, H, F, D1, D2]`` the last custom-conv feature maps ``Z`` (after ReLU).
        attention: ``[B, M, H, D1, D2]`` raw training attention ``sum_f w_m (.) Z_h`` (no bias, no ``1 / H``),
            the input of the paper's mask loss; HiResCAM for mean pooling is ``attention / H``.
    """

    logits: torch.Tensor
    slice_scores: torch.Tensor
    features: torch.Tensor
    attention: torch.Tensor


@dataclass(frozen=True)
class SliceAxisLayout:
    """How the activations of :attr:`AxialNet.cam_target_layer` are laid out, for generic CAM code.

    Attributes:
        activation_axes: axis names of the hooked activation; batch and slice axes are merged in ``"B*H"``.
        batch_major: index ``i`` of the merged axis is sample ``i // H``, triplet ``i % H``.
        slices_per_triplet: consecutive axial slices per triplet (``H = Z / slices_per_triplet``).
        split_axes: axis names after :meth:`AxialNet.split_slices`.
    """

    activation_axes: tuple[str, ...] = ("B*H", "F", "D1", "D2")
    batch_major: bool = True
    slices_per_triplet: int = SLICES_PER_TRIPLET
    split_axes: tuple[str, ...] = ("B", "F", "H", "D1", "D2")


class AxialNet(nn.Module):
    """AxialNet and its ablations (paper Table 1: MaxPool, RandInitResNet, NoCustomConv).

    Input: a MONAI batch ``[B, 1, X, Y, Z]`` (RAS, axial slices along the last axis, ``Z`` divisible by 3) whose
    in-plane size ``(X, Y)`` equals ``spatial_size``. Slices ``3h, 3h+1, 3h+2`` become the 3 channels of triplet
    ``h`` (``H = Z / 3`` triplets); all ``B * H`` triplets go through the 2D trunk at once, then the custom convs
    (3x3, stride 1, ReLU after each), then one fully connected layer over the ``F * D1 * D2`` features of each
    slice, shared by all slices, then mean (or max) pooling over slices: logits ``[B, M]``.

    Attention grid ``D1 x D2`` (``D1`` along X, ``D2`` along Y) for the ResNet-18 trunk (output ``ceil(n / 32)``),
    four custom convs:

    ==============  =============  =========================  =======================
    in-plane size   trunk output   custom_conv_padding=0      custom_conv_padding=1
    ==============  =============  =========================  =======================
    420 x 420       14 x 14        6 x 6 (the paper)          14 x 14
    384 x 384       12 x 12        4 x 4                      12 x 12
    320 x 320       10 x 10        2 x 2                      10 x 10
    288 x 288       9 x 9          1 x 1                      9 x 9
    256 x 256       8 x 8          error (too small)          8 x 8
    224 x 224       7 x 7          error (too small)          7 x 7
    128 x 128       4 x 4          error (too small)          4 x 4
    ==============  =============  =========================  =======================

    With ``custom_convs=False`` (NoCustomConv) the grid is the trunk output (14 x 14 at 420, 512 features).
    :meth:`attention_grid` computes ``(H, D1, D2)`` for any configuration without running the network.

    Slice pooling ``"max"`` (the MaxPool ablation): the logits are ``max_h c_mh``. ``forward_all`` still returns
    the closed-form ``attention = sum_f w_m (.) Z_h`` for every slice, which is exactly what the mean-pooled model
    with the same weights would explain (``attention / H`` is its HiResCAM); the paper evaluated the MaxPool weights
    that way, with mean pooling, for OrganIoU. The HiResCAM of the max-pooled score itself is ``attention`` on the
    arg-max slice of each abnormality and zero on the other slices.

    Args:
        n_classes: number of abnormalities M (80 in the paper, ``hirescam_ext.labels.LABEL_NAMES``).
        spatial_size: in-plane size ``(X, Y)`` of the input; sizes the fully connected layer. A MONAI-style
            ``(X, Y, Z)`` is accepted too: Z only has to be a multiple of 3 and does not fix the input's Z.
        trunk: ``"resnet18"`` (the paper), ``"small"`` (tiny; 64 channels, stride 32), ``"small16"`` (the same with
            stride 16: twice the grid), ``"wide16"`` (``"small16"`` with twice the channels, 128 out) or ``"fine16"``
            (``"small"`` with a stride-1 stem: the grid of ``"small16"`` with four times the pixels in layers 1-3).
        pretrained: path of torchvision ResNet-18 ImageNet weights, or ``None`` (RandInitResNet); never downloaded.
        custom_convs: ``False`` for the NoCustomConv ablation (fully connected layer on the trunk output).
        custom_conv_channels: output channels of the custom convs (the paper: 64, 32, 16, 16); the last is F.
        custom_conv_padding: zero padding of the 3x3 custom convs (the paper: 0; use 1 for small inputs).
        custom_conv_kernel: kernel size of the custom convs (the paper: 3). ``1`` makes them per-cell: each cell's
            features, and so its HiResCAM value, come from its own trunk (and densitometry) features alone instead
            of a window that four 3 x 3 convs widen to 9 x 9 cells (the whole slice on a 4 x 4 grid). Use it with
            ``custom_conv_padding=0``, which keeps the trunk's grid (a padding above ``custom_conv_kernel // 2`` is
            refused: it would add cells that see only padding). A deviation from the paper (docs/TRAINING.md).
        slice_pooling: ``"mean"`` (the paper) or ``"max"`` (the MaxPool ablation).
        norm: normalization of the trunk: ``"batch"`` (the paper; the ``B * H`` triplets are BatchNorm's batch),
            ``"group"`` or ``"instance"`` (per triplet: the same in training and evaluation, whatever the batch).
        custom_conv_init: ``"kaiming"`` (default): He-normal weights for the ReLU custom convs and zero biases, so
            the signal keeps its scale through the four un-normalized convs; ``"pytorch"``: PyTorch's default
            (the original code's), which shrinks the signal about tenfold per conv and starves training. The
            fully connected layer keeps PyTorch's default; set its bias to the labels' log prior odds with
            :func:`hirescam_ext.networks.init_output_bias`. HiResCAM stays exact either way.
        extra_windows: ``None`` (the paper: the input's one window) or ``[(low, high), ...]`` in HU: narrower
            windows of the input (e.g. ``[(-1000, -300)]``, a lung window) computed inside the network
            (:class:`hirescam_ext.networks.input_windows.InputWindows`) and stacked after each triplet's three slices,
            so the trunk's first convolution takes ``3 * (1 + len(extra_windows))`` channels. A deviation from the
            paper (docs/TRAINING.md). ``input_hu_range`` and ``input_center`` say how the input was windowed (the
            bundle's ``HUWindowd``); HiResCAM is unchanged (it starts after the trunk).
        input_hu_range: HU window of the input (the bundle's: ``(-1000, 800)``); used with ``extra_windows`` and
            ``density_bands`` only.
        input_center: centre added by the input's window (the bundle's: ``-0.449``); used with ``extra_windows`` and
            ``density_bands`` only.
        density_bands: ``False`` (the paper) or a densitometry branch
            (:class:`hirescam_ext.networks.density_bands.DensityBands`): ``True`` for its default HU band centres, or
            the centres in HU. Each attention cell's soft HU-band fractions, from the triplet before any extra window,
            go through two 1 x 1 convolutions and are concatenated with the trunk's features before the custom convs,
            so the CAM target layer and HiResCAM's exactness are unchanged. Needs ``custom_convs``. The branch
            standardizes the fractions with its own BatchNorm, whatever ``norm``. A deviation from the paper
            (docs/TRAINING.md); ``input_hu_range`` and ``input_center`` apply to it too.
        density_channels: features per cell of the densitometry branch.
        density_smoothing: width in pixels of the in-plane Gaussian the densitometry branch applies before its band
            split (``DensityBands``' ``smoothing``; ``0``: none). About one pixel makes its shares nearly the same
            for a scan made on the model's grid and one made finer and resampled to it, at the cost of ground glass
            and metal (docs/TRAINING.md).
        density_context: ``False`` (default) or context bands of the densitometry branch (``DensityBands``'
            ``context_centers_hu``): ``True`` for its default centres, or the centres in HU. Each band share is then
            split by the mean HU of the pixel's 26 neighbours, so a density is counted apart in lung and in soft
            tissue (a nodule or mass in lung, a calcification in lung). Needs ``density_bands``.

    ``forward`` can be compiled with ``torch.jit.script`` (the Model Zoo's ``ckpt_export``), input checks included;
    ``forward_all`` and the other methods are not part of the scripted module.

    Attributes:
        cam_target_layer: ``named_modules()`` name of the CAM target layer: the last custom-conv ReLU
            (``"custom_convs.relu4"`` by default) or ``"trunk.layer4"`` with ``custom_convs=False``.
        slice_axis_layout: :class:`SliceAxisLayout`: activations there are ``[B * H, F, D1, D2]``; see
            :meth:`split_slices`.

    Example:
        >>> net = AxialNet(n_classes=5, spatial_size=(64, 64), trunk="small", custom_conv_padding=1).eval()
        >>> out = net.forward_all(torch.rand(2, 1, 64, 64, 12))
        >>> out.logits.shape, out.attention.shape
        (torch.Size([2, 5]), torch.Size([2, 5, 4, 2, 2]))
    """

    slice_axis_layout = SliceAxisLayout()
    # a TorchScript constant, so that the densitometry branch is compiled only where there is one
    __constants__ = ["use_density"]

    def __init__(
        self,
        n_classes: int = 80,
        spatial_size: Sequence[int] = (420, 420),
        trunk: str = "resnet18",
        pretrained: str | os.PathLike | None = None,
        custom_convs: bool = True,
        custom_conv_channels: Sequence[int] = (64, 32, 16, 16),
        custom_conv_padding: int = 0,
        custom_conv_kernel: int = 3,
        slice_pooling: str = "mean",
        norm: str = "batch",
        custom_conv_init: str = "kaiming",
        extra_windows: Sequence[Sequence[float]] | None = None,
        input_hu_range: Sequence[float] = (-1000.0, 800.0),
        input_center: float = -0.449,
        density_bands: bool | str | Sequence[float] = False,
        density_channels: int = 32,
        density_smoothing: float = 0.0,
        density_context: bool | str | Sequence[float] = False,
    ) -> None:
        super().__init__()
        custom_convs = as_bool(custom_convs, "custom_convs")
        if isinstance(density_context, (bool, str)):
            context = DENSITY_CONTEXT_CENTERS_HU if as_bool(density_context, "density_context") else None
        else:
            context = tuple(float(c) for c in density_context)
        if isinstance(density_bands, (bool, str)):
            centers = DENSITY_BAND_CENTERS_HU if as_bool(density_bands, "density_bands") else None
        else:
            centers = tuple(float(c) for c in density_bands)
        if centers is not None and not custom_convs:
            raise ValueError(
                "density_bands concatenates its features with the trunk's before the custom convs; it needs "
                "custom_convs=True (the CAM target layer must come after the concatenation)"
            )
        if context is not None and centers is None:
            raise ValueError("density_context splits the densitometry branch's band shares; it needs density_bands")
        if custom_conv_init not in CUSTOM_CONV_INITS:
            raise ValueError(f"custom_conv_init must be one of {CUSTOM_CONV_INITS}, got {custom_conv_init!r}")
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if slice_pooling not in SLICE_POOLINGS:
            raise ValueError(f"slice_pooling must be one of {SLICE_POOLINGS}, got {slice_pooling!r}")
        spatial_size = tuple(int(s) for s in spatial_size)
        if len(spatial_size) == 3:  # a MONAI-style (X, Y, Z): Z is free (any multiple of 3), only checked here
            if spatial_size[2] % SLICES_PER_TRIPLET != 0:
                raise ValueError(f"spatial_size {spatial_size}: Z = {spatial_size[2]} is not divisible by 3")
            spatial_size = spatial_size[:2]
        if len(spatial_size) != 2 or min(spatial_size) < 1:
            raise ValueError(f"spatial_size is the in-plane size (X, Y), got {spatial_size}")
        if custom_convs and len(custom_conv_channels) == 0:
            raise ValueError("custom_conv_channels is empty; pass custom_convs=False for the NoCustomConv ablation")
        if custom_conv_padding < 0:
            raise ValueError(f"custom_conv_padding must be >= 0, got {custom_conv_padding}")
        if int(custom_conv_kernel) != custom_conv_kernel or custom_conv_kernel < 1:
            raise ValueError(f"custom_conv_kernel must be a positive integer, got {custom_conv_kernel!r}")
        self.n_classes = int(n_classes)
        self.spatial_size = spatial_size
        self.slice_pooling = slice_pooling
        self.custom_conv_padding = int(custom_conv_padding)
        self.custom_conv_kernel = int(custom_conv_kernel)
        self.norm = norm
        self.trunk = build_trunk(trunk, pretrained, norm=norm)
        self.input_windows: nn.Module = nn.Identity()  # InputWindows (its ``windows`` in HU) with extra_windows
        if extra_windows:
            windows = InputWindows(extra_windows, input_hu_range=input_hu_range, center=input_center)
            self.input_windows = windows
            self.trunk.conv1 = widen_conv_input(self.trunk.conv1, windows.factor, copy_weights=bool(pretrained))
        self.use_density = centers is not None
        self.density: nn.Module = nn.Identity()  # DensityBands with density_bands
        if centers is not None:
            self.density = DensityBands(
                centers,
                out_channels=density_channels,
                input_hu_range=input_hu_range,
                center=input_center,
                smoothing=density_smoothing,
                context_centers_hu=context,
            )

        _, d1, d2 = self.attention_grid(
            spatial_size,
            z=SLICES_PER_TRIPLET,
            trunk=self.trunk,
            custom_convs=custom_convs,
            custom_conv_channels=custom_conv_channels,
            custom_conv_padding=custom_conv_padding,
            custom_conv_kernel=custom_conv_kernel,
        )
        self.grid = (d1, d2)
        if custom_convs:
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            width = self.trunk.out_channels + (self.density.out_channels if self.use_density else 0)
            for i, out in enumerate(custom_conv_channels, start=1):
                layers[f"conv{i}"] = nn.Conv2d(
                    width, int(out), kernel_size=self.custom_conv_kernel, stride=1, padding=custom_conv_padding
                )
                layers[f"relu{i}"] = nn.ReLU()
                width = int(out)
            self.custom_convs: nn.Module = nn.Sequential(layers)
            if custom_conv_init == "kaiming":
                for module in self.custom_convs.modules():
                    if isinstance(module, nn.Conv2d):
                        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                        nn.init.zeros_(module.bias)
            self.n_features = width
            self.cam_target_layer = f"custom_convs.relu{len(custom_conv_channels)}"
        else:
            self.custom_convs = nn.Identity()
            self.n_features = self.trunk.out_channels
            self.cam_target_layer = "trunk.layer4"
        self.fc = nn.Linear(self.n_features * d1 * d2, self.n_classes)

    @staticmethod
    def attention_grid(
        spatial_size: Sequence[int],
        z: int,
        trunk: str | nn.Module = "resnet18",
        custom_convs: bool = True,
        custom_conv_channels: Sequence[int] = (64, 32, 16, 16),
        custom_conv_padding: int = 0,
        custom_conv_kernel: int = 3,
    ) -> tuple[int, int, int]:
        """Attention grid ``(H, D1, D2)`` for an input of in-plane size ``spatial_size`` and ``z`` slices.

        Computed from layer geometry, without building the full network or running it.

        Args:
            spatial_size: in-plane size ``(X, Y)``.
            z: number of axial slices (divisible by 3).
            trunk: a trunk name (one of ``resnet_trunk.TRUNK_NAMES``) or a built trunk with ``output_size``.
            custom_convs, custom_conv_channels, custom_conv_padding, custom_conv_kernel: as in :class:`AxialNet`.

        Raises:
            ValueError: ``z`` not divisible by 3, an input too small for the trunk / custom convs (the message
                suggests ``custom_conv_padding=1`` or fewer convs), or a padding above ``custom_conv_kernel // 2``.

        Example:
            >>> AxialNet.attention_grid((420, 420), z=405)
            (135, 6, 6)
        """
        if z % SLICES_PER_TRIPLET != 0 or z <= 0:
            raise ValueError(f"the number of axial slices Z = {z} must be a positive multiple of {SLICES_PER_TRIPLET}")
        k = int(custom_conv_kernel)
        custom_convs = as_bool(custom_convs, "custom_convs")  # "false" from a command line is a string
        if custom_convs and custom_conv_padding > k // 2:
            raise ValueError(
                f"custom_conv_padding={custom_conv_padding} with custom_conv_kernel={k} grows the grid by "
                f"{2 * custom_conv_padding - k + 1} cells per conv, cells that see only padding; use "
                f"custom_conv_padding <= {k // 2} (0 keeps the trunk's grid with 1 x 1 convs, 1 with 3 x 3)"
            )
        grid = []
        for axis_size in spatial_size:
            if isinstance(trunk, str):
                n = trunk_output_size(int(axis_size), trunk)
            else:
                n = trunk.output_size(int(axis_size))
            trunk_n = n
            if custom_convs:
                for i in range(len(custom_conv_channels)):
                    if n + 2 * custom_conv_padding < k:
                        raise ValueError(
                            f"input in-plane size {tuple(spatial_size)} is too small for AxialNet's custom convs: the "
                            f"trunk gives {trunk_n} cells along an axis and {k}x{k} conv {i + 1} of "
                            f"{len(custom_conv_channels)} with padding {custom_conv_padding} runs out of grid; use "
                            f"custom_conv_padding={k // 2} (keeps the trunk's {trunk_n} cells), fewer "
                            "custom_conv_channels, or a larger input (420 x 420 gives the paper's 6 x 6)"
                        )
                    n = conv_out_size(n, k, 1, custom_conv_padding)
            grid.append(n)
        return z // SLICES_PER_TRIPLET, grid[0], grid[1]

    def fc_weight_maps(self) -> torch.Tensor:
        """The fully connected weights as maps ``[M, F, D1, D2]`` (``w_m`` laid out like ``z_h``)."""
        return self.fc.weight.view(self.n_classes, self.n_features, *self.grid)

    def split_slices(self, t: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Unmerge the batch and slice axes: ``[B * H, F, D1, D2]`` -> ``[B, F, H, D1, D2]``.

        Use on activations or gradients hooked at :attr:`cam_target_layer`.

        Raises:
            ValueError: when the first axis is not a multiple of ``batch_size``.
        """
        if t.ndim != 4 or t.shape[0] % batch_size != 0:
            raise ValueError(f"expected [B*H, F, D1, D2] with B = {batch_size}, got shape {tuple(t.shape)}")
        h = t.shape[0] // batch_size
        return t.reshape(batch_size, h, *t.shape[1:]).transpose(1, 2)

    def _check_input(self, x: torch.Tensor) -> None:
        expected: List[Optional[int]] = [self.spatial_size[0], self.spatial_size[1], None]
        check_volume(x, expected, "AxialNet")
        # Z divisible by 3: checked by volume_to_triplets, the first step after this check

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, X, Y, Z]`` -> features ``Z`` of shape ``[B, H, F, D1, D2]``."""
        self._check_input(x)
        b = x.shape[0]
        weight = self.trunk.conv1.weight
        channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        raw = volume_to_triplets(x, channels_last=channels_last)
        triplets = self.input_windows(raw)
        if channels_last:  # the extra windows are concatenated in the default format
            triplets = triplets.contiguous(memory_format=torch.channels_last)
        feats = self.trunk(triplets)
        if self.use_density:
            feats = torch.cat([feats, self.density(raw, [feats.shape[2], feats.shape[3]])], dim=1)
        feats = self.custom_convs(feats)
        return feats.reshape([b, -1] + list(feats.shape[1:]))

    def to_channels_last(self, enabled: bool | str = True) -> AxialNet:
        """Put the 2D convolution weights in ``torch.channels_last`` memory format (returns ``self``).

        The slice triplets are then built in that format too (:func:`volume_to_triplets`), which roughly doubles
        training speed on recent NVIDIA GPUs under bf16 autocast (docs/PERFORMANCE.md); the outputs are the same
        up to floating-point summation order. ``enabled=False`` returns the network unchanged.
        """
        if as_bool(enabled, "channels_last"):
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        return self

    def _scores(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, h = feats.shape[:2]
        slice_scores = self.fc(feats.reshape(b, h, -1)).transpose(1, 2)  # [B, M, H]
        if self.slice_pooling == "mean":
            logits = slice_scores.mean(dim=2)
        else:
            logits = slice_scores.amax(dim=2)
        return logits, slice_scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, X, Y, Z]`` -> logits ``[B, M]`` (a plain tensor, as MONAI engines and bundle checks expect)."""
        return self._scores(self.forward_features(x))[0]

    def forward_all(self, x: torch.Tensor) -> AxialNetOutput:
        """Logits, slice scores, features and the raw attention, all from one forward pass (no backward).

        ``attention[b, m, h] = sum_f fc_weight_maps()[m, f] * features[b, h, f]``; for mean pooling
        ``logits[b, m] = (1 / H) sum_h attention[b, m, h].sum() + fc.bias[m]``.
        """
        feats = self.forward_features(x)
        logits, slice_scores = self._scores(feats)
        attention = torch.einsum("mfij,bhfij->bmhij", self.fc_weight_maps(), feats)
        return AxialNetOutput(logits=logits, slice_scores=slice_scores, features=feats, attention=attention)
