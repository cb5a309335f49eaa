"""Small building blocks shared by the networks of the HiResCAM paper (private module).

Shape arithmetic for convolutions (so fully connected layers can be sized from the input size without a dry run),
the triplet regrouping of axial slices, input-shape checks and the ``->128->96->M`` classifier head of the paper's
alternative models (Draelos & Carin, HiResCAM, arXiv:2011.08891, Table 1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import List, Optional

import torch
from torch import nn

__all__ = [
    "conv_out_size",
    "volume_to_triplets",
    "check_volume",
    "check_volume_size",
    "mlp_head",
    "reducing_conv3d",
    "reducing_conv3d_out",
    "SLICES_PER_TRIPLET",
    "REDUCING_KERNELS",
    "REDUCING_STRIDES",
]

#: consecutive axial slices stacked into the three channels of one 2D image
SLICES_PER_TRIPLET = 3


def conv_out_size(size: int, kernel: int, stride: int = 1, padding: int = 0, where: str = "convolution") -> int:
    """Output length of a convolution or pooling along one axis: ``(size + 2 * padding - kernel) // stride + 1``.

    Args:
        size: input length along the axis.
        kernel: kernel length along the axis.
        stride: stride along the axis.
        padding: zero padding on each side.
        where: name of the layer, used in the error message.

    Raises:
        ValueError: when the (padded) input is shorter than the kernel, i.e. the layer would produce nothing.

    Example:
        >>> conv_out_size(14, kernel=3)
        12
    """
    if size + 2 * padding < kernel:
        raise ValueError(
            f"{where}: input length {size} (padding {padding}) is smaller than the kernel {kernel}; "
            "the input is too small for this layer"
        )
    return (size + 2 * padding - kernel) // stride + 1


def _format_size(size: List[Optional[int]]) -> str:
    """``[64, 64, None]`` -> ``"(64, 64, None)"`` (TorchScript-compatible ``str(tuple(size))``)."""
    parts: List[str] = []
    for s in size:
        parts.append("None" if s is None else str(s))
    return "(" + ", ".join(parts) + ")"


def _format_shape(shape: List[int]) -> str:
    """``[1, 1, 64, 64, 48]`` -> ``"(1, 1, 64, 64, 48)"`` (TorchScript-compatible ``str(tuple(shape))``)."""
    return "(" + ", ".join([str(s) for s in shape]) + ")"


def check_volume(x: torch.Tensor, expected: List[Optional[int]], model: str) -> None:
    """Check that ``x`` is a MONAI batch ``[B, 1, X, Y, Z]`` whose spatial sizes match ``expected``.

    TorchScript-compatible (AxialNet's scripted ``forward`` keeps the check): ``expected`` is a list.

    Args:
        x: the input batch.
        expected: the expected ``[X, Y, Z]``; ``None`` entries are not checked.
        model: the model name for the error message.

    Raises:
        ValueError: wrong number of dimensions, channels or spatial sizes.
    """
    if x.dim() != 5 or x.shape[1] != 1:
        raise ValueError(
            f"{model} expects a single-channel volume batch [B, 1, X, Y, Z] (RAS, axial slices on the last axis), "
            f"got shape {_format_shape(x.shape)}"
        )
    for axis in range(min(3, len(expected))):
        want = expected[axis]
        got = x.shape[axis + 2]
        if want is not None and got != want:
            raise ValueError(
                f"{model} was built for spatial size {_format_size(expected)} (None = any) but the input has "
                f"{_format_shape(x.shape[2:])}: axis {axis + 2} is {got}, expected {want}; build the network with the "
                "input's size or resize the input"
            )


def check_volume_size(volume_size: Sequence[int], model: str, triplets: bool = True) -> tuple[int, int, int]:
    """Validate a constructor's ``volume_size = (X, Y, Z)``; with ``triplets`` Z must be divisible by 3.

    Raises:
        ValueError: wrong length, non-positive size or Z not divisible by 3.
    """
    size = tuple(int(s) for s in volume_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"{model}: volume_size must be (X, Y, Z) with positive sizes, got {tuple(volume_size)}")
    if triplets and size[2] % SLICES_PER_TRIPLET != 0:
        raise ValueError(
            f"{model}: the number of axial slices Z = {size[2]} is not divisible by {SLICES_PER_TRIPLET} "
            "(slices are grouped in triplets)"
        )
    return size[0], size[1], size[2]


def volume_to_triplets(
    x: torch.Tensor, channels_last: bool = False, slices: int = SLICES_PER_TRIPLET
) -> torch.Tensor:
    """Regroup a volume batch ``[B, 1, X, Y, Z]`` into ``[B * H, 3, X, Y]`` 2D images, ``H = Z / 3``.

    Slices ``3h, 3h + 1, 3h + 2`` of sample ``b`` become channels 0, 1, 2 of image ``b * H + h`` (batch major),
    the triplet regrouping of AxialNet (Draelos & Carin, arXiv:2011.08891, section "AxialNet").

    Args:
        x: the volume batch.
        channels_last: return the images in ``torch.channels_last`` memory format (what cuDNN's fastest 2D
            convolutions take on recent GPUs); the values are the same, and the one copy made is made in that layout.
        slices: slices per triplet (:data:`SLICES_PER_TRIPLET`; a parameter so that TorchScript, which cannot read
            global constants, compiles the function).

    Raises:
        ValueError: when Z is not divisible by 3.

    Example:
        >>> volume_to_triplets(torch.zeros(2, 1, 8, 8, 12)).shape
        torch.Size([8, 3, 8, 8])
    """
    if x.dim() != 5 or x.shape[1] != 1:
        raise ValueError(f"expected one channel [B, 1, X, Y, Z], got shape {_format_shape(x.shape)}")
    b, nx, ny, nz = x.shape[0], x.shape[2], x.shape[3], x.shape[4]
    if nz % slices != 0:
        raise ValueError(
            f"the number of axial slices Z = {nz} (last axis of input shape {_format_shape(x.shape)}) is not "
            f"divisible by {slices}: pad or crop the volume so Z is a multiple of 3 (the paper uses 405 slices = 135 "
            "triplets)"
        )
    h = nz // slices
    t = x.reshape(b, nx, ny, h, slices)
    if channels_last:
        # [B, X, Y, H, 3] -> [B, H, X, Y, 3] (copied) -> [B * H, 3, X, Y] whose channel axis is innermost in memory
        return t.permute(0, 3, 1, 2, 4).reshape(b * h, nx, ny, slices).permute(0, 3, 1, 2)
    # [B, X, Y, H, 3] -> [B, H, 3, X, Y]
    return t.permute(0, 3, 4, 1, 2).reshape(b * h, slices, nx, ny)


def mlp_head(
    in_features: int, n_classes: int, hidden: Sequence[int] = (128, 96), dropout: float = 0.0
) -> nn.Sequential:
    """Fully connected classifier ``in_features -> 128 -> 96 -> n_classes`` (ReLU, optional dropout between).

    The head of CTNet, BodyConv and 3DConv in the paper's Table 1; the last layer has no activation (logits).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_features
    for i, out in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, out)
        layers[f"relu{i}"] = nn.ReLU()
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        width = out
    layers["out"] = nn.Linear(width, n_classes)
    return nn.Sequential(layers)


#: kernels and strides of the three "reducing" 3D convolutions of CTNet and BodyConv: the first axis is divided by
#: about 3 per conv, the last two axes shrink 14 -> 12 -> 10 -> 5 at the paper's size
REDUCING_KERNELS = ((3, 3, 3), (3, 3, 3), (3, 2, 2))
REDUCING_STRIDES = ((3, 1, 1), (3, 1, 1), (3, 2, 2))


def reducing_conv3d(in_channels: int, channels: Sequence[int] = (64, 32, 16), padding: int = 0) -> nn.Sequential:
    """Three 3D convolutions (kernels :data:`REDUCING_KERNELS`, strides :data:`REDUCING_STRIDES`), ReLU after each.

    Modules are named ``conv1, relu1, ..., conv3, relu3``.
    """
    if len(channels) != len(REDUCING_KERNELS):
        raise ValueError(f"expected {len(REDUCING_KERNELS)} conv channel counts, got {tuple(channels)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_channels
    for i, (out, k, s) in enumerate(zip(channels, REDUCING_KERNELS, REDUCING_STRIDES), start=1):
        layers[f"conv{i}"] = nn.Conv3d(width, int(out), kernel_size=k, stride=s, padding=padding)
        layers[f"relu{i}"] = nn.ReLU()
        width = int(out)
    return nn.Sequential(layers)


def reducing_conv3d_out(shape: Sequence[int], padding: int = 0, where: str = "3D conv") -> tuple[int, int, int]:
    """Output ``(depth, d1, d2)`` of :func:`reducing_conv3d` for an input ``(depth, d1, d2)``.

    Raises:
        ValueError: when an axis runs out (the message names the conv and the axis).
    """
    out = [int(s) for s in shape]
    for i, (k, s) in enumerate(zip(REDUCING_KERNELS, REDUCING_STRIDES), start=1):
        out = [
            conv_out_size(n, kk, ss, padding, where=f"{where} {i} (axis {a} of (depth, d1, d2) = {tuple(shape)})")
            for a, (n, kk, ss) in enumerate(zip(out, k, s))
        ]
    return out[0], out[1], out[2]
