"""2D ResNet trunks (stem + layer1..4, no pooling or classifier) and torchvision-format weight loading.

AxialNet, CTNet and BodyConv run a ResNet-18 pretrained on ImageNet over every triplet of axial slices, with the
final average pooling and fully connected layer removed (Draelos & Carin, HiResCAM, arXiv:2011.08891). The trunk is
built from :func:`monai.networks.nets.resnet18` with ``conv1_t_stride=2`` (torchvision's stem geometry: a 420 x 420
slice gives a 512 x 14 x 14 output) and ``bias_downsample=False`` (then the state-dict keys and shapes equal
torchvision's exactly, ``fc.*`` aside), so a torchvision ImageNet checkpoint loads without torchvision installed.

Nothing is ever downloaded: pass the path of a torchvision ``resnet18`` checkpoint file (for example
``resnet18-f37072fd.pth``, fetched once on a machine with internet access).

Example:
    >>> trunk = build_trunk("small")
    >>> trunk(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 64, 2, 2])
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
from monai.networks.nets import ResNet, resnet18
from torch import nn

from hirescam_ext.networks._layers import conv_out_size
from hirescam_ext.utils.errors import InputError

__all__ = [
    "ResNetTrunk",
    "build_trunk",
    "resnet18_trunk",
    "small_trunk",
    "load_torchvision_resnet18_weights",
    "trunk_output_size",
    "TRUNK_NAMES",
    "TRUNK_NORMS",
    "PRETRAINED_HELP",
]

#: trunk names accepted by :func:`build_trunk`: ``"small16"`` is ``"small"`` with overall stride 16 (its layer4 keeps
#: the size), so a 64 x 64 slice gives a 4 x 4 grid of 9 cm cells at 5.8 mm instead of 2 x 2 (the paper's 6 x 6 grid
#: at 420 x 420 and 0.8 mm has 5.6 cm cells); ``"wide16"`` is ``"small16"`` with twice the channels (128 out);
#: ``"fine16"`` is ``"small"`` with a stride-1 stem convolution: overall stride 16 too (the same 4 x 4 grid at
#: 64 x 64), but the stem and layers 1-3 see four times the pixels, so a 3-voxel nodule is not under one feature
#: pixel after the stem
TRUNK_NAMES = ("resnet18", "small", "small16", "wide16", "fine16")

#: normalization layers accepted by :func:`build_trunk`: ``"batch"`` (the paper's, ImageNet-compatible), or
#: ``"group"`` (GroupNorm, 8 groups) and ``"instance"`` (InstanceNorm with affine parameters), which normalize each
#: slice triplet on its own and so behave the same in training and evaluation, whatever the batch size
TRUNK_NORMS = ("batch", "group", "instance")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "group":
        return nn.GroupNorm(8, channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.BatchNorm2d(channels)


def _set_norm(module: nn.Module, norm: str) -> nn.Module:
    """Replace every ``BatchNorm2d`` below ``module`` by ``norm`` (in place; returns ``module``).

    MONAI 1.6.1's ``ResNet(norm=...)`` applies ``norm`` to the stem only: ``_make_layer`` is called without it, so
    layer1-4 keep BatchNorm. The trunk therefore swaps the layers itself, keeping their names.
    """
    if norm not in TRUNK_NORMS:
        raise ValueError(f"unknown trunk norm {norm!r}; choose one of {TRUNK_NORMS}")
    if norm == "batch":
        return module
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _norm_layer(norm, child.num_features))
        else:
            _set_norm(child, norm)
    return module

#: how to supply ImageNet weights offline (used in error messages)
PRETRAINED_HELP = (
    "ImageNet weights are never downloaded: on a machine with internet access save torchvision's ResNet-18 "
    "checkpoint (e.g. `torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), "
    "'resnet18.pth')`, or copy resnet18-f37072fd.pth from ~/.cache/torch/hub/checkpoints/), copy the file here and "
    "pass its path as `pretrained=PATH` (or pretrained=None for random initialisation, the paper's RandInitResNet)"
)

#: ``(layer, kernel, stride, padding)`` of the size-changing layers of the stride-32 built-in trunks (torchvision
#: geometry); :func:`_builtin_geometry` gives any trunk's
_BUILTIN_GEOMETRY = (
    ("conv1", 7, 2, 3),
    ("maxpool", 3, 2, 1),
    ("layer1", 3, 1, 1),
    ("layer2", 3, 2, 1),
    ("layer3", 3, 2, 1),
    ("layer4", 3, 2, 1),
)

#: overall stride of each built-in trunk (the geometry above with the stem's stride from ``_STEM_STRIDES`` and
#: layer4 at stride 1 where the other layers already reach it)
_TRUNK_STRIDES = {"resnet18": 32, "small": 32, "small16": 16, "wide16": 16, "fine16": 16}

#: stride of the stem convolution (conv1) of the built-in trunks: 2 (torchvision's) unless listed
_STEM_STRIDES = {"fine16": 1}

#: channels of layer1-4 of the small built-in trunks
_SMALL_TRUNK_CHANNELS = {
    "small": (8, 16, 32, 64),
    "small16": (8, 16, 32, 64),
    "wide16": (16, 32, 64, 128),
    "fine16": (8, 16, 32, 64),
}


def _builtin_geometry(name: str) -> tuple[tuple[str, int, int, int], ...]:
    """The size-changing layers of the built-in trunk ``name``: its stem convolution's stride, and layer4 at stride 1
    where that is how the trunk reaches its overall stride."""
    stem = _STEM_STRIDES.get(name, 2)
    layer4 = _TRUNK_STRIDES[name] // (stem * 8)
    strides = {"conv1": stem, "layer4": layer4}
    return tuple((layer, k, strides.get(layer, s), p) for layer, k, s, p in _BUILTIN_GEOMETRY)


_TRUNK_CHILDREN = ("conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNetTrunk(nn.Module):
    """The convolutional part of a 2D ResNet: stem (conv1, bn1, act, maxpool) and layer1..layer4.

    Child names equal torchvision's, so ``state_dict()`` keys are torchvision's ResNet keys without ``fc.*``, and
    the last block's output is the module ``layer4`` (the CAM target layer of the paper's NoCustomConv ablation).

    Args:
        resnet: a MONAI 2D :class:`~monai.networks.nets.ResNet`; its avgpool and fc are dropped.
        name: a short name ("resnet18", "small") kept for messages.

    Attributes:
        out_channels: channels of the output feature map (512 for ResNet-18).
        stride: overall downsampling factor (32 for "resnet18" and "small", 16 for "small16"); the exact output size is
            :meth:`output_size` (``ceil(n / stride)`` for the built-in trunks).
    """

    def __init__(self, resnet: ResNet, name: str = "resnet") -> None:
        super().__init__()
        for child in _TRUNK_CHILDREN:
            self.add_module(child, getattr(resnet, child))
        self.name = name
        self.out_channels = self._last_channels()
        self.stride = self._overall_stride()

    def _last_channels(self) -> int:
        last_block = self.layer4[-1]
        convs = [m for m in last_block.modules() if isinstance(m, nn.Conv2d)]
        return int(convs[-1].out_channels)

    def _downsampling_layers(self) -> list[tuple[str, int, int, int]]:
        """``(name, kernel, stride, padding)`` of every layer that changes the spatial size, in order."""
        out = []
        for name in ("conv1", "maxpool"):
            mod = getattr(self, name)
            k, s, p = (v if isinstance(v, int) else v[0] for v in (mod.kernel_size, mod.stride, mod.padding))
            out.append((name, int(k), int(s), int(p)))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            conv = getattr(self, name)[0].conv1  # the first block's first conv sets the size of the whole layer
            out.append((name, int(conv.kernel_size[0]), int(conv.stride[0]), int(conv.padding[0])))
        return out

    def _overall_stride(self) -> int:
        stride = 1
        for _, _, s, _ in self._downsampling_layers():
            stride *= s
        return stride

    def output_size(self, size: int) -> int:
        """Output length along one in-plane axis for an input of length ``size`` (420 -> 14, 224 -> 7, 128 -> 4).

        Example:
            >>> resnet18_trunk().output_size(420)
            14
        """
        for name, k, s, p in self._downsampling_layers():
            size = conv_out_size(size, k, s, p, where=f"{self.name} trunk {name}")
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, X, Y]`` -> ``[N, out_channels, d1, d2]``."""
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def trunk_output_size(size: int, name: str = "resnet18") -> int:
    """Output length of a built-in trunk along one in-plane axis, without building it (``ceil(size / stride)``).

    Example:
        >>> trunk_output_size(420), trunk_output_size(224), trunk_output_size(128)
        (14, 7, 4)
    """
    if name not in TRUNK_NAMES:
        raise ValueError(f"unknown trunk {name!r}; choose one of {TRUNK_NAMES}")
    for layer, k, s, p in _builtin_geometry(name):
        size = conv_out_size(size, k, s, p, where=f"{name} trunk {layer}")
    return size


def resnet18_trunk(pretrained: str | os.PathLike | None = None, norm: str = "batch") -> ResNetTrunk:
    """ResNet-18 trunk with torchvision's geometry (stride-2 stem, 512 output channels, overall stride 32).

    Args:
        pretrained: path of a torchvision-format ResNet-18 checkpoint to load
            (:func:`load_torchvision_resnet18_weights`), or ``None`` (or ``False``) for random initialisation.
        norm: one of :data:`TRUNK_NORMS`; ImageNet weights need ``"batch"``.

    Raises:
        InputError: bad checkpoint file, or ``pretrained=True`` (a path is required, nothing is downloaded).
        ValueError: unknown ``norm``, or ImageNet weights with a norm other than ``"batch"``.
    """
    pretrained = _normalise_pretrained(pretrained)
    if pretrained is not None and norm != "batch":
        raise ValueError(f"ImageNet weights come with BatchNorm layers; use norm='batch' with pretrained (got {norm!r})")
    net = _set_norm(resnet18(spatial_dims=2, n_input_channels=3, conv1_t_stride=2, bias_downsample=False), norm)
    trunk = ResNetTrunk(net, name="resnet18")
    if pretrained is not None:
        load_torchvision_resnet18_weights(trunk, pretrained)
    return trunk


def small_trunk(
    channels: tuple[int, int, int, int] = (8, 16, 32, 64),
    norm: str = "batch",
    stride: int = 32,
    name: str | None = None,
    stem_stride: int = 2,
) -> ResNetTrunk:
    """A tiny ResNet trunk for fast tests and CPU models: one basic block per layer, ``channels`` wide.

    Same layout and geometry as ResNet-18 (stride-2 7x7 stem, max pooling, layers 2-4 of stride 2: overall stride
    32, output size ``ceil(n / 32)``) with ``channels[-1]`` (default 64) output channels. Never pretrained.
    ``norm``: one of :data:`TRUNK_NORMS`. ``stride=16`` keeps layer4 at layer3's size (first block's convolution and
    shortcut of stride 1; the same parameters): output size ``ceil(n / 16)``, a finer attention grid. ``name``: the
    trunk's name (default ``"small"`` or ``"small16"`` by stride). ``stem_stride=1``: the 7x7 stem convolution keeps
    the input's size (``"fine16"``: with ``stride=16`` the grid of ``"small16"``, with layer4 at stride 2 and four
    times the pixels in the stem and layers 1-3).
    """
    if stem_stride not in (1, 2):
        raise ValueError(f"small trunk stem_stride must be 1 or 2, got {stem_stride!r}")
    allowed = (16, 32) if stem_stride == 2 else (8, 16)
    if stride not in allowed:
        raise ValueError(f"small trunk stride must be one of {allowed} with stem_stride={stem_stride}, got {stride!r}")
    net = ResNet(
        block="basic",
        layers=[1, 1, 1, 1],
        block_inplanes=list(channels),
        spatial_dims=2,
        n_input_channels=3,
        conv1_t_stride=stem_stride,
        bias_downsample=False,
        feed_forward=False,
    )
    if stride == 8 * stem_stride:  # layer4 keeps layer3's size
        block = net.layer4[0]
        block.conv1.stride = (1, 1)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
    default = {(2, 32): "small", (2, 16): "small16", (1, 16): "fine16"}.get((stem_stride, stride), f"small{stride}s1")
    return ResNetTrunk(_set_norm(net, norm), name=name or default)


def build_trunk(name: str = "resnet18", pretrained: str | os.PathLike | None = None, norm: str = "batch") -> ResNetTrunk:
    """Build a trunk by name: ``"resnet18"`` (the paper's), ``"small"`` (64 channels, stride 32), ``"small16"``
    (the same with stride 16), ``"wide16"`` (``"small16"`` with channels 16-128) or ``"fine16"`` (``"small"`` with a
    stride-1 stem: stride 16, four times the pixels in the stem and layers 1-3).

    Args:
        name: one of :data:`TRUNK_NAMES`.
        pretrained: path of torchvision ResNet-18 weights (``"resnet18"`` only) or ``None``.
        norm: one of :data:`TRUNK_NORMS` (``"batch"``, the paper's; ``"group"`` or ``"instance"`` do not depend on
            the batch).

    Raises:
        ValueError: unknown name or norm, or weights requested for the small trunk or with a non-batch norm.
        InputError: bad checkpoint file or ``pretrained=True`` without a path.
    """
    if name == "resnet18":
        return resnet18_trunk(pretrained, norm=norm)
    if name in _SMALL_TRUNK_CHANNELS:
        if _normalise_pretrained(pretrained) is not None:
            raise ValueError(f"trunk={name!r} has no pretrained weights; use trunk='resnet18' with pretrained=PATH")
        return small_trunk(_SMALL_TRUNK_CHANNELS[name], norm=norm, stride=_TRUNK_STRIDES[name], name=name,
                           stem_stride=_STEM_STRIDES.get(name, 2))
    raise ValueError(f"unknown trunk {name!r}; choose one of {TRUNK_NAMES}")


def _normalise_pretrained(pretrained: object) -> str | os.PathLike | None:
    """``None``, ``False`` or ``""`` -> ``None`` (random init); a path stays; ``True`` is refused (no download)."""
    if pretrained is None or pretrained is False or pretrained == "":
        return None
    if pretrained is True:
        raise InputError(None, f"pretrained=True needs a weights file. {PRETRAINED_HELP}")
    if not isinstance(pretrained, (str, os.PathLike)):
        raise InputError(None, f"pretrained must be a file path or None, got {type(pretrained).__name__}")
    return pretrained


def _summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_torchvision_resnet18_weights(trunk: ResNetTrunk, path: str | os.PathLike) -> ResNetTrunk:
    """Load a torchvision-format ResNet-18 state-dict file into ``trunk`` (in place), strictly.

    The file holds a plain state dict or ``{"state_dict": ...}`` (a ``module.`` prefix left by DataParallel is
    removed). ``fc.*`` keys are ignored (the trunk has no classifier). Every other key must match the trunk's keys
    and shapes exactly; the only tolerated gap is BatchNorm's ``num_batches_tracked`` counters, which older
    torchvision checkpoints do not store (the counters are not weights; they keep their current value). The file is
    read with ``torch.load(weights_only=True)``: nothing in it is executed.

    Args:
        trunk: the trunk to fill (``resnet18_trunk()``).
        path: the checkpoint file.

    Returns:
        ``trunk``, for chaining.

    Raises:
        InputError: (naming the file) when it is missing, unreadable, not a state dict, or has a missing,
            unexpected or shape-mismatched key.

    Example:
        >>> trunk = load_torchvision_resnet18_weights(resnet18_trunk(), "resnet18-f37072fd.pth")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, f"ResNet-18 weights file not found. {PRETRAINED_HELP}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError) as exc:
        raise InputError(
            path, f"cannot read it as a weights-only PyTorch state dict ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InputError(path, "expected a state dict (name -> tensor) or {'state_dict': state dict}")

    source: dict[str, torch.Tensor] = {}
    for key, value in loaded.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name.startswith("fc."):
            continue
        source[name] = value

    target = trunk.state_dict()
    missing = sorted(k for k in target if k not in source and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in source if k not in target)
    if missing:
        raise InputError(path, f"not a torchvision ResNet-18 checkpoint: missing key(s) {_summarise(missing)}")
    if unexpected:
        raise InputError(path, f"not a torchvision ResNet-18 checkpoint: unexpected key(s) {_summarise(unexpected)}")
    mismatched = [
        f"{k} {tuple(source[k].shape)} vs {tuple(target[k].shape)} expected"
        for k in sorted(source)
        if source[k].shape != target[k].shape
    ]
    if mismatched:
        raise InputError(path, f"shape mismatch for key(s) {_summarise(mismatched, limit=3)}")
    merged = {k: source.get(k, v) for k, v in target.items()}
    trunk.load_state_dict(merged, strict=True)
    return trunk
