"""Shared machinery of gradient-based class activation maps (HiResCAM, Grad-CAM).

Two computation routes, both returning maps for many classes at once:

* **AxialNet closed form** (Draelos & Carin, HiResCAM, arXiv:2011.08891, eq. 9): AxialNet's whole-volume score is a
  pooling over slices of per-slice scores that are linear in the per-slice features ``Z_h``, so the gradient of each
  score with respect to the features is known from the fully connected weights. The maps of all ``M`` classes come
  out of one forward pass, no backward pass.
* **Generic fast path** for any other model and named layer: a forward hook replaces the layer's output by a detached
  leaf tensor (the part of the network before the layer runs without autograd, once). Two ways to get the gradients
  of ``K`` class scores with respect to that leaf (``gradient_mode``):

  - ``"replay"`` (default when the layer's output has the batch as leading axis): the hook hands the rest of the
    network ``K`` copies of the activations stacked along the batch axis, so the layers after the target run once on
    a batch of ``K * B`` and one ordinary backward gives every class its own gradient (copy ``k`` receives the
    gradient of class ``k``). Convolutions see a real batch, which their kernels handle natively.
  - ``"vmap"``: one vectorized ``torch.autograd.grad(..., is_grads_batched=True)`` call over ``K`` one-hot
    cotangents, with a per-class loop as a fallback. PyTorch has no batching rule for ``convolution_backward``, so
    vmap runs it once per class at batch 1: fine when only a linear head follows the target layer, slow when
    convolutions follow it (MONAI ResNet-18 ``layer2``: 16.8x a forward on a CPU, see docs/PERFORMANCE.md).

  Either way the backward never traverses the part of the network before the target layer.

Subclasses define how gradients and activations combine (:meth:`CAMBase._combine`) and the AxialNet closed form
(:meth:`CAMBase._axial_closed_form`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Union

import torch
import torch.nn as nn

from hirescam_ext.visualize.postprocess import normalize_cam, upsample_axial_maps, upsample_maps

logger = logging.getLogger(__name__)

__all__ = [
    "CAMBase",
    "CAMChunk",
    "ClassIndex",
    "candidate_target_layers",
    "default_split_slices",
    "default_target_layer",
    "is_axialnet",
    "resolve_class_idx",
]

ClassIndex = Union[None, int, Sequence[int], torch.Tensor]
SliceSplit = Union[None, bool, Callable[[torch.Tensor, int], torch.Tensor]]

#: gradient modes of the generic path (see the module docstring)
GRADIENT_MODES = ("auto", "replay", "vmap")

#: default number of map values (``B * classes * X * Y * Z``) upsampled at once by ``__call__`` / ``iter_maps``:
#: 2**26 float32 values are 256 MiB: one class of a 420 x 420 x 405 scan, 42 of a 128 x 128 x 96 one
UPSAMPLE_CHUNK_VALUES = 2**26


class CAMChunk(NamedTuple):
    """One chunk of classes from :meth:`CAMBase.iter_maps`.

    Attributes:
        start: position of the chunk's first class in the selection (``maps`` is ``result[:, start:stop]`` of the
            equivalent ``__call__``).
        stop: one past the position of its last class.
        class_idx: ``[B, stop - start]`` class indices of the chunk.
        maps: ``[B, stop - start, *spatial]`` maps of those classes.
    """

    start: int
    stop: int
    class_idx: torch.Tensor
    maps: torch.Tensor


def is_axialnet(model: nn.Module) -> bool:
    """Whether ``model`` exposes AxialNet's closed-form interface (``forward_all`` and ``fc_weight_maps``)."""
    return callable(getattr(model, "forward_all", None)) and callable(getattr(model, "fc_weight_maps", None))


#: default target layers of stock MONAI classifiers, by class name (any class in the model's MRO): the last layer
#: whose output still has spatial axes, before global pooling (MONAI's own CAM examples use the same layers)
MONAI_DEFAULT_TARGET_LAYERS = {
    "ResNet": "layer4",
    "SENet": "layer4",
    "DenseNet": "class_layers.relu",
}

_CANDIDATE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU)


def default_target_layer(model: nn.Module) -> str | None:
    """The model's CAM target layer when it has a known one, else ``None``.

    Order: the model's ``cam_target_layer`` attribute (AxialNet, BodyConv, ThreeDConv), then
    :data:`MONAI_DEFAULT_TARGET_LAYERS` for stock MONAI classifiers (``ResNet`` and ``SENet``: ``"layer4"``;
    ``DenseNet`` and ``DenseNet121/169/201/264``: ``"class_layers.relu"``), when the model has that layer.

    Example:
        >>> from monai.networks.nets import resnet18
        >>> default_target_layer(resnet18(spatial_dims=3, n_input_channels=1, num_classes=2))
        'layer4'
    """
    declared = getattr(model, "cam_target_layer", None)
    if declared is not None:
        return str(declared)
    names = dict(model.named_modules())
    for cls in type(model).__mro__:
        layer = MONAI_DEFAULT_TARGET_LAYERS.get(cls.__name__)
        if layer is not None and cls.__module__.startswith("monai.") and layer in names:
            return layer
    return None


def candidate_target_layers(model: nn.Module, n: int = 8) -> list[str]:
    """Names of the model's last ``n`` convolutions, activations and top-level blocks, in module order.

    Used in error messages; the last one that still has spatial axes (before global pooling) is usually the one to
    explain.
    """
    top = {name for name, m in model.named_children() if len(m._modules) > 0}
    names = [name for name, m in model.named_modules() if name and (name in top or isinstance(m, _CANDIDATE_TYPES))]
    return names[-n:]


def default_split_slices(t: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Split merged batch-and-slice activations ``[B*H, F, *S]`` (batch-major) into ``[B, F, H, *S]``.

    Example:
        >>> default_split_slices(torch.zeros(6, 16, 4, 4), 2).shape
        torch.Size([2, 16, 3, 4, 4])
    """
    if t.shape[0] % batch_size != 0:
        raise ValueError(f"cannot split leading axis {t.shape[0]} of {tuple(t.shape)} into batch {batch_size}")
    return t.reshape(batch_size, t.shape[0] // batch_size, *t.shape[1:]).transpose(1, 2)


def resolve_class_idx(
    class_idx: ClassIndex, batch_size: int, n_classes: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, bool]:
    """Turn a class selection into a ``[B, K]`` long tensor of class indices.

    Args:
        class_idx: ``None`` (all classes, ``K = n_classes``), an ``int`` (one class for every sample), a sequence of
            ints or a 1D tensor (the same ``K`` classes for every sample), or a ``[B, K]`` long tensor (per-sample
            classes).
        batch_size: ``B``.
        n_classes: ``M``, the number of model outputs.
        device: device of the returned tensor.

    Returns:
        ``(idx, all_classes)``: idx ``[B, K]``; ``all_classes`` is True when ``idx`` is ``arange(M)`` for every sample.
    """
    if class_idx is None:
        idx = torch.arange(n_classes, device=device).expand(batch_size, n_classes)
        return idx, True
    if isinstance(class_idx, bool):
        raise TypeError("class_idx must be None, an int, a sequence of ints or a LongTensor, not a bool")
    if isinstance(class_idx, int):
        idx = torch.full((batch_size, 1), class_idx, dtype=torch.long, device=device)
    elif isinstance(class_idx, torch.Tensor):
        if class_idx.dtype.is_floating_point or class_idx.dtype == torch.bool:
            raise TypeError(f"class_idx tensor must hold integers, got dtype {class_idx.dtype}")
        t = class_idx.to(device=device, dtype=torch.long)
        if t.ndim == 0:
            idx = t.reshape(1, 1).expand(batch_size, 1)
        elif t.ndim == 1:
            idx = t.reshape(1, -1).expand(batch_size, -1)
        elif t.ndim == 2:
            if t.shape[0] != batch_size:
                raise ValueError(f"class_idx of shape {tuple(t.shape)} does not match batch size {batch_size}")
            idx = t
        else:
            raise ValueError(f"class_idx tensor must be 0D, 1D or [B, K], got shape {tuple(t.shape)}")
    else:
        values = list(class_idx)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError(f"class_idx sequence must hold ints, got {values!r}")
        idx = torch.tensor(values, dtype=torch.long, device=device).reshape(1, -1).expand(batch_size, -1)
    if idx.numel() == 0:
        raise ValueError("class_idx selects no class")
    if int(idx.min()) < 0 or int(idx.max()) >= n_classes:
        raise ValueError(f"class_idx values must lie in [0, {n_classes - 1}], got {idx.unique().tolist()}")
    return idx.contiguous(), False


class _ModeGuard:
    """Put every submodule in eval mode and restore each module's own training flag on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.saved: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> _ModeGuard:
        self.saved = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        for m, flag in self.saved:
            m.training = flag


class CAMBase:
    """Base class of HiResCAM and Grad-CAM (shared hooks, class selection, upsampling, post-processing).

    Args:
        nn_module: the classifier; its ``forward(x)`` returns pre-sigmoid scores ``[B, M]``.
        target_layers: ``named_modules()`` name of the layer whose output activations ``A`` are explained. ``None``
            means :func:`default_target_layer`: the model's ``cam_target_layer`` attribute (AxialNet, BodyConv,
            ThreeDConv declare one), or ``"layer4"`` for MONAI's ResNet / SENet and ``"class_layers.relu"`` for
            MONAI's DenseNet; for other models the error lists candidate layers.
        upsampler: ``upsampler(maps, spatial_size) -> maps`` used by ``__call__``; default (``None``) picks
            :func:`upsample_axial_maps` for maps laid out ``[B, K, H, D1, D2]`` (AxialNet's grid, split per-slice
            layers, a model whose ``cam_layout`` is ``("B", "F", "H", "D1", "D2")``) and :func:`upsample_maps`
            (same axis order as the input) otherwise. Called on chunks of classes (see ``upsample_chunk_size``).
        postprocessing: ``postprocessing(maps) -> maps`` used by ``__call__`` when ``normalize=True``; default
            :func:`normalize_cam` (ReLU, min-max over the whole volume). Called on chunks of classes, so it must
            treat every (sample, class) map on its own, as :func:`normalize_cam` does. Beware when comparing with
            ``monai.visualize.GradCAM``: MONAI 1.6.1's ``default_normalizer`` maps (min, max) to **(1, 0)**, so
            its maps are inverted relative to ours (the most important voxel gets 0) and it applies no ReLU; pass
            ``postprocessing=lambda m: m`` to MONAI's classes, or compare raw maps, to line the two up.
        slice_split: for layers whose activations merge batch and slice axes (``[B*H, F, D1, D2]``, AxialNet's
            per-slice layers): ``None`` detects it (model has ``split_slices`` and the activation's leading axis is a
            multiple of the batch size other than the batch size), ``True`` forces it (``model.split_slices`` or a
            batch-major reshape), ``False`` disables it, or a callable ``split(t, batch_size) -> [B, F, H, ...]``.
            Split maps come back as ``[B, K, H, D1, D2]``.
        use_closed_form: use AxialNet's forward-only closed form when the target is its ``cam_target_layer``.
        class_chunk_size: at most this many classes per gradient computation of the generic path (bounds memory);
            ``None``: all. With ``gradient_mode="replay"`` every chunk runs the whole forward pass again.
        gradient_mode: how the generic path gets the gradients of ``K`` classes: ``"replay"`` runs the layers after
            the target on ``K`` stacked copies of its activations and backpropagates once, ``"vmap"`` uses one
            vectorized ``torch.autograd.grad`` call (per-class loop as a fallback), ``"auto"`` (default) replays
            when the activations have the batch as leading axis and the number of classes is known before the
            forward pass, and uses vmap otherwise or when the replayed forward does not return ``[K * B, M]``
            scores. Replay assumes that the layers after the target treat batch rows independently (true in eval
            mode, in which the maps are computed); the maps are the same either way.
        upsample_chunk_size: classes upsampled (and post-processed) at once by ``__call__`` and :meth:`iter_maps`;
            ``None``: as many as fit in :data:`UPSAMPLE_CHUNK_VALUES` values (at least one). Bounds the temporary
            memory of upsampling; the maps do not depend on it.
    """

    def __init__(
        self,
        nn_module: nn.Module,
        target_layers: str | Sequence[str] | None = None,
        upsampler: Callable[[torch.Tensor, Sequence[int]], torch.Tensor] | None = None,
        postprocessing: Callable[[torch.Tensor], torch.Tensor] = normalize_cam,
        slice_split: SliceSplit = None,
        use_closed_form: bool = True,
        class_chunk_size: int | None = None,
        gradient_mode: str = "auto",
        upsample_chunk_size: int | None = None,
    ) -> None:
        if not isinstance(nn_module, nn.Module):
            raise TypeError(f"nn_module must be a torch.nn.Module, got {type(nn_module).__name__}")
        if isinstance(target_layers, (list, tuple)):
            if len(target_layers) != 1:
                raise ValueError(f"exactly one target layer is supported, got {list(target_layers)}")
            target_layers = target_layers[0]
        self.nn_module = nn_module
        self.axialnet = is_axialnet(nn_module)
        default_layer = getattr(nn_module, "cam_target_layer", None)
        if target_layers is None:
            target_layers = default_target_layer(nn_module)
            if target_layers is None:
                raise ValueError(
                    f"target_layers is required for {type(nn_module).__name__}: it declares no cam_target_layer and "
                    "is not a MONAI ResNet / SENet / DenseNet (a model without a spatial map to explain, such as "
                    f"CTNet, cannot have a CAM); candidate layers: {candidate_target_layers(nn_module)}"
                )
        self.target_layers: str = target_layers
        # maps of the model's own target layer laid out [B, F, H, D1, D2] (slice axis first, e.g. BodyConv) are
        # upsampled like AxialNet's; ``cam_layout`` names the axes of that layer's activations
        layout = tuple(getattr(nn_module, "cam_layout", ()))
        self.axial_layout = target_layers == default_layer and layout[2:] == ("H", "D1", "D2")
        # maps of a 3D target layer laid out [B, F, X, Y, Z] (e.g. 3DConv): the slice axis is last, not first
        self.volume_layout = target_layers == default_layer and layout[2:] == ("X", "Y", "Z")
        modules = dict(nn_module.named_modules())
        if target_layers not in modules:
            names = [n for n in modules if n][-12:]
            raise ValueError(
                f"target layer {target_layers!r} not found in {type(nn_module).__name__}; last layer names: {names}"
            )
        self.target_module: nn.Module = modules[target_layers]
        self.upsampler = upsampler
        self.postprocessing = postprocessing
        self.slice_split = slice_split
        if class_chunk_size is not None and class_chunk_size < 1:
            raise ValueError(f"class_chunk_size must be >= 1, got {class_chunk_size}")
        self.class_chunk_size = class_chunk_size
        if gradient_mode not in GRADIENT_MODES:
            raise ValueError(f"gradient_mode must be one of {GRADIENT_MODES}, got {gradient_mode!r}")
        self.gradient_mode = gradient_mode
        if upsample_chunk_size is not None and upsample_chunk_size < 1:
            raise ValueError(f"upsample_chunk_size must be >= 1, got {upsample_chunk_size}")
        self.upsample_chunk_size = upsample_chunk_size
        self._warned_fallback = False
        self._replay_failed = False  # "auto": a replay that did not work once is not tried again
        self._n_outputs: int | None = _last_linear_outputs(nn_module)  # M, known after the first call
        self.last_gradient_mode: str | None = None  # how the last generic call got its gradients
        self.closed_form = use_closed_form and self.axialnet and target_layers == getattr(nn_module, "cam_target_layer")

    # ------------------------------------------------------------------ hooks for subclasses
    def _combine(self, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Combine gradients ``[K, B, F, *S]`` and activations ``[B, F, *S]`` into maps ``[B, K, *S]``."""
        raise NotImplementedError

    def _axial_closed_form(self, out: Any) -> torch.Tensor:
        """Maps ``[B, M, H, D1, D2]`` of all classes from an AxialNet ``forward_all`` output."""
        raise NotImplementedError

    # ------------------------------------------------------------------ context manager (hooks live per call)
    def close(self) -> None:
        """Release resources. Hooks are registered only during a call and always removed, so this is a no-op."""

    def __enter__(self) -> CAMBase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ public API
    def compute_raw(self, x: torch.Tensor, class_idx: ClassIndex = None) -> torch.Tensor:
        """Raw (not upsampled, not normalized) maps ``[B, K, *S]`` on the target layer's grid.

        ``*S`` is ``(H, D1, D2)`` for AxialNet's closed form and for split per-slice layers, otherwise the target
        activation's spatial shape.
        """
        return self._compute(x, class_idx)[0]

    def __call__(
        self,
        x: torch.Tensor,
        class_idx: ClassIndex = None,
        upsample: bool = True,
        normalize: bool = True,
        out: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Maps ``[B, K, *spatial]``: upsampled to the input's spatial shape and normalized unless disabled.

        Upsampling and normalization run on chunks of classes (``upsample_chunk_size``) written into one output
        tensor, so the peak memory is the output plus one chunk: for a full-size CT (420 x 420 x 405) all 80
        classes take about 23 GB in float32 (11 GB with ``dtype=torch.float16``). To keep fewer maps, select the
        classes (``class_idx``), pass ``out`` on another device (a preallocated CPU tensor), or consume the maps
        chunk by chunk with :meth:`iter_maps`, which never holds more than one chunk.

        Args:
            x: input batch ``[B, C, *spatial]``.
            class_idx: classes to explain (see :func:`resolve_class_idx`); ``None``: all ``M``.
            upsample: resize to ``x``'s spatial shape (trilinear; AxialNet-grid maps have their slice axis moved to
                ``Z``).
            normalize: apply ``postprocessing`` (default :func:`normalize_cam`, whole-volume min-max after ReLU).
            out: preallocated ``[B, K, *spatial]`` tensor to write the maps into (any device and floating dtype);
                it is returned.
            dtype: dtype of the returned maps when ``out`` is not given (default: that of the raw maps, float32
                for a float32 model). The maps are computed in the raw maps' dtype and cast per chunk.
        """
        return self._assemble(self._compute(x, class_idx), tuple(x.shape[2:]), upsample, normalize, out, dtype)

    def iter_maps(
        self,
        x: torch.Tensor,
        class_idx: ClassIndex = None,
        upsample: bool = True,
        normalize: bool = True,
        chunk_size: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> Iterator[CAMChunk]:
        """Yield the maps of ``__call__`` chunk by chunk of classes, never holding more than one chunk upsampled.

        The raw maps of all selected classes are computed first (one forward pass); each chunk is then upsampled
        and normalized when the iteration reaches it, and its memory can be released once the caller is done with
        it. Concatenating the chunks' ``maps`` along axis 1 gives ``__call__``'s result exactly.

        Args:
            x, class_idx, upsample, normalize: as for ``__call__``.
            chunk_size: classes per chunk; default ``upsample_chunk_size`` (or what fits in
                :data:`UPSAMPLE_CHUNK_VALUES` values).
            dtype: dtype of the yielded maps (default: that of the raw maps).

        Example:
            >>> for chunk in HiResCAM(net).iter_maps(x, chunk_size=4):  # doctest: +SKIP
            ...     np.save(f"cam_{chunk.start}.npy", chunk.maps.half().cpu().numpy())
        """
        maps, axial, idx = self._compute(x, class_idx, with_idx=True)
        size = tuple(x.shape[2:])
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        step = chunk_size or self._upsample_chunk(maps.shape[0], size if upsample else tuple(maps.shape[2:]))
        finite = _all_finite(maps)
        for start in range(0, maps.shape[1], step):
            stop = min(start + step, maps.shape[1])
            part = self._finish(maps[:, start:stop], axial, size, upsample, normalize, finite)
            if dtype is not None:
                part = part.to(dtype)
            yield CAMChunk(start, stop, idx[:, start:stop], part)

    def from_output(self, out: Any, normalize: bool = True) -> torch.Tensor:
        """All-class maps ``[B, M, H, D1, D2]`` from an AxialNet ``forward_all`` output already computed.

        Lets a caller that ran ``forward_all`` for the logits (an evaluator, the mask loss) get the closed-form maps
        without a second forward pass.

        Raises:
            ValueError: when this explainer does not use AxialNet's closed form (another model or target layer).
        """
        if not self.closed_form:
            raise ValueError("from_output needs AxialNet's closed form (its default target layer)")
        maps = self._axial_closed_form(out)
        if normalize and self.postprocessing is not None:
            maps = self.postprocessing(maps)
        return maps

    # ------------------------------------------------------------------ upsampling and post-processing
    def _upsample_chunk(self, batch: int, size: Sequence[int]) -> int:
        if self.upsample_chunk_size is not None:
            return self.upsample_chunk_size
        voxels = batch * math.prod(int(s) for s in size)
        return max(1, UPSAMPLE_CHUNK_VALUES // max(voxels, 1))

    def _finish(
        self,
        maps: torch.Tensor,
        axial: bool,
        size: tuple[int, ...],
        upsample: bool,
        normalize: bool,
        finite: bool = False,
    ) -> torch.Tensor:
        """Upsample (to ``size``) and post-process the maps of some classes ``[B, k, *S]``.

        ``finite``: the raw maps hold no infinity, so neither do their (convex) linear interpolations.
        """
        fresh = False  # whether ``maps`` is a new tensor of our own (then it may be normalized in place)
        if upsample:
            before = maps
            if self.upsampler is not None:
                maps = self.upsampler(maps, size)
            elif axial:
                maps = upsample_axial_maps(maps, size)
                fresh = maps is not before
            else:
                if maps.ndim - 2 != len(size):
                    raise ValueError(
                        f"maps {tuple(maps.shape)} from layer {self.target_layers!r} and input size {size} have "
                        "different numbers of spatial axes; pass upsample=False, an upsampler, or slice_split"
                    )
                maps = upsample_maps(maps, size)
                fresh = maps is not before
        if normalize and self.postprocessing is not None:
            if self.postprocessing is normalize_cam and fresh and maps.is_floating_point():
                maps = normalize_cam(maps, inplace=True, known_finite=finite)
            else:
                maps = self.postprocessing(maps)
        return maps

    def _assemble(
        self,
        computed: tuple[torch.Tensor, bool],
        size: tuple[int, ...],
        upsample: bool,
        normalize: bool,
        out: torch.Tensor | None,
        dtype: torch.dtype | None,
    ) -> torch.Tensor:
        maps, axial = computed
        if not upsample and out is None:  # maps on the target grid are small: no chunks needed
            maps = self._finish(maps, axial, size, upsample, normalize)
            return maps if dtype is None else maps.to(dtype)
        b, k = maps.shape[:2]
        step = self._upsample_chunk(b, size if upsample else tuple(maps.shape[2:]))
        finite = _all_finite(maps)  # one check on the small raw maps instead of one per upsampled chunk
        for start in range(0, k, step):
            stop = min(start + step, k)
            part = self._finish(maps[:, start:stop], axial, size, upsample, normalize, finite)
            if out is None:
                if not part.is_floating_point():
                    part = part.float()
                shape = (b, k, *part.shape[2:])
                out = torch.empty(shape, dtype=dtype or part.dtype, device=part.device)
            if start == 0 and (tuple(out.shape[:2]) != (b, k) or out.shape[2:] != part.shape[2:]):
                raise ValueError(f"out has shape {tuple(out.shape)}, the maps need {(b, k, *part.shape[2:])}")
            out[:, start:stop].copy_(part)
            del part
        assert out is not None
        return out

    # ------------------------------------------------------------------ internals
    def _compute(self, x: torch.Tensor, class_idx: ClassIndex, with_idx: bool = False) -> Any:
        if not isinstance(x, torch.Tensor) or x.ndim < 3:
            raise ValueError(f"input must be a tensor [B, C, *spatial], got {getattr(x, 'shape', type(x))}")
        with _ModeGuard(self.nn_module):
            if self.closed_form:
                maps, idx = self._compute_closed_form(x, class_idx)
                axial = True
            else:
                maps, axial, idx = self._compute_generic(x, class_idx)
        return (maps, axial, idx) if with_idx else (maps, axial)

    def _compute_closed_form(self, x: torch.Tensor, class_idx: ClassIndex) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = self.nn_module.forward_all(x)
            maps = self._axial_closed_form(out)
        idx, all_classes = resolve_class_idx(class_idx, x.shape[0], maps.shape[1], maps.device)
        if all_classes:
            return maps, idx
        return maps.gather(1, idx.reshape(*idx.shape, 1, 1, 1).expand(-1, -1, *maps.shape[2:])), idx

    def _resolve_split(self, leaf: torch.Tensor, batch_size: int) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
        model_split = getattr(self.nn_module, "split_slices", None)
        if callable(self.slice_split):
            return self.slice_split
        if self.slice_split is True:
            return model_split if callable(model_split) else default_split_slices
        if self.slice_split is False:
            return None
        n = leaf.shape[0]
        if callable(model_split) and n != batch_size and n % batch_size == 0:
            return model_split
        return None

    def _replay_classes(self, x: torch.Tensor, class_idx: ClassIndex) -> int | None:
        """Number of classes ``K`` to replay, when it is known before the forward pass (else ``None``: vmap)."""
        if self.gradient_mode == "vmap" or (self.gradient_mode == "auto" and self._replay_failed):
            return None
        if self.slice_split is not None and self.slice_split is not False:
            return None  # merged batch-and-slice activations: copies along the batch axis would mix volumes
        if class_idx is None:
            return self._n_outputs
        # the shape of the selection does not depend on M; the values are checked after the forward pass
        return resolve_class_idx(class_idx, x.shape[0], 2**62)[0].shape[1]

    def _forward_hooked(self, x: torch.Tensor, copies: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass with the target layer's output replaced by a leaf (``copies`` > 0: stacked copies)."""
        store: dict[str, torch.Tensor] = {}
        batch = x.shape[0]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"target layer {self.target_layers!r} returned {type(output).__name__}, not a tensor")
            if "acts" in store:
                raise RuntimeError(f"target layer {self.target_layers!r} ran more than once in one forward pass")
            acts = output.detach()
            store["acts"] = acts
            if copies and acts.shape[0] == batch:
                # copy-major stacking: row k * B + b is sample b's activation for the k-th class
                leaf = acts.unsqueeze(0).expand(copies, *acts.shape).reshape(copies * batch, *acts.shape[1:])
            else:
                leaf = acts
            store["leaf"] = leaf.requires_grad_(True)
            # everything downstream of the layer needs autograd; the layers upstream ran without it.
            torch.set_grad_enabled(True)
            return store["leaf"].clone()  # a non-leaf copy, so in-place ops downstream leave ``leaf`` intact

        handle = self.target_module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = self.nn_module(x)
        finally:
            handle.remove()
        if "acts" not in store:
            raise RuntimeError(f"target layer {self.target_layers!r} was not used in the forward pass")
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError(f"the model must return class scores [B, M], got {getattr(logits, 'shape', logits)}")
        if not logits.requires_grad:
            raise RuntimeError(f"the class scores do not depend on target layer {self.target_layers!r}")
        return logits, store

    def _compute_generic(self, x: torch.Tensor, class_idx: ClassIndex) -> tuple[torch.Tensor, bool, torch.Tensor]:
        batch = x.shape[0]
        # autograd must work even when the caller is under torch.inference_mode() or torch.no_grad()
        with torch.inference_mode(False):
            k = self._replay_classes(x, class_idx)
            if k is not None:
                replayed = self._compute_replay(x, class_idx, k)
                if replayed is not None:
                    return replayed
            logits, store = self._forward_hooked(x, 0)
            leaf = store["leaf"]
            idx, all_classes = resolve_class_idx(class_idx, batch, logits.shape[1], logits.device)
            self._n_outputs = logits.shape[1]
            scores = logits if all_classes else logits.gather(1, idx)  # [B, K], per-sample classes
            with torch.enable_grad():
                grads = self._class_gradients(scores, leaf)  # [K, *leaf.shape]
            self.last_gradient_mode = "vmap"
        return self._maps_from_gradients(grads, leaf.detach(), batch) + (idx,)

    def _compute_replay(
        self, x: torch.Tensor, class_idx: ClassIndex, k: int
    ) -> tuple[torch.Tensor, bool, torch.Tensor] | None:
        """Generic maps by replaying the layers after the target on ``k`` stacked copies; ``None``: use vmap."""
        batch = x.shape[0]
        chunk = min(self.class_chunk_size or k, k)
        parts = []
        acts = None
        idx = None
        for start in range(0, k, chunk):
            stop = min(start + chunk, k)
            try:
                logits, store = self._forward_hooked(x, stop - start)
            except Exception as exc:  # noqa: BLE001 - the model may not accept a larger batch after the layer
                if self.gradient_mode == "replay" or start > 0:
                    raise
                self._give_up_replay(f"{type(exc).__name__}: {exc}")
                return None
            n = stop - start
            if store["leaf"].shape[0] != n * batch or logits.shape[0] != n * batch:
                if self.gradient_mode == "replay":
                    raise ValueError(
                        f"gradient_mode='replay' needs activations and scores with batch {batch} as leading axis; got "
                        f"{tuple(store['acts'].shape)} and {tuple(logits.shape)}"
                    )
                self._give_up_replay(f"activations {tuple(store['acts'].shape)}, scores {tuple(logits.shape)}")
                return None
            n_out = logits.shape[1]
            if class_idx is None and n_out != k:  # the number of outputs was guessed wrong: do it again
                self._n_outputs = n_out
                return self._compute_replay(x, class_idx, n_out)
            if idx is None:
                idx = resolve_class_idx(class_idx, batch, n_out, logits.device)[0]
                self._n_outputs = n_out
            acts = store["acts"]
            # copy j of sample b carries the score of class idx[b, start + j]; the copies do not interact, so one
            # backward of the sum gives each copy the gradient of its own class
            picked = idx[:, start:stop].t().reshape(n * batch, 1)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(logits.gather(1, picked).sum(), store["leaf"])
            parts.append(g.reshape(n, batch, *g.shape[1:]))
            del logits, store, g
        assert acts is not None and idx is not None
        grads = parts[0] if len(parts) == 1 else torch.cat(parts)
        self.last_gradient_mode = "replay"
        return self._maps_from_gradients(grads, acts, batch) + (idx,)

    def _give_up_replay(self, reason: str) -> None:
        self._replay_failed = True
        logger.info("gradient replay not possible for layer %r (%s); using vmap", self.target_layers, reason[:200])

    def _maps_from_gradients(self, grads: torch.Tensor, acts: torch.Tensor, batch: int) -> tuple[torch.Tensor, bool]:
        """Maps ``[B, K, *S]`` from gradients ``[K, *acts.shape]``; whether they are laid out ``[H, D1, D2]``."""
        k = grads.shape[0]
        split = self._resolve_split(acts, batch)
        if split is not None:
            n = acts.shape[0]
            acts = split(acts, batch)
            g = split(grads.reshape(k * n, *grads.shape[2:]), k * batch)
            grads = g.reshape(k, batch, *g.shape[1:])
        elif acts.shape[0] != batch:
            raise ValueError(
                f"target layer {self.target_layers!r} activations {tuple(acts.shape)} do not have the batch size "
                f"{batch} as leading axis; pass slice_split"
            )
        with torch.no_grad():
            maps = self._combine(grads, acts)
        return maps, split is not None or self.axial_layout

    def _class_gradients(self, scores: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
        """Gradients of each score column summed over the batch w.r.t. ``leaf``: ``[K, *leaf.shape]``."""
        k_total = scores.shape[1]
        chunk = self.class_chunk_size or k_total
        eye = torch.eye(k_total, dtype=scores.dtype, device=scores.device)
        parts = []
        for start in range(0, k_total, chunk):
            stop = min(start + chunk, k_total)
            onehots = eye[start:stop, None, :].expand(stop - start, scores.shape[0], k_total)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    (g,) = torch.autograd.grad(
                        scores, leaf, grad_outputs=onehots, retain_graph=True, is_grads_batched=True
                    )
            except RuntimeError as exc:
                if "out of memory" in str(exc).lower():
                    raise  # a per-class loop would only hide it behind an 80x slowdown
                if not self._warned_fallback:
                    logger.warning(
                        "vectorized class gradients failed for layer %r (%s); falling back to one backward per class",
                        self.target_layers, str(exc).splitlines()[0][:200],
                    )
                    self._warned_fallback = True
                g = torch.stack(
                    [
                        torch.autograd.grad(scores, leaf, grad_outputs=onehots[j], retain_graph=True)[0]
                        for j in range(stop - start)
                    ]
                )
            parts.append(g)
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _all_finite(maps: torch.Tensor) -> bool:
    return bool(torch.isfinite(maps).all()) if maps.is_floating_point() else True


def _last_linear_outputs(model: nn.Module) -> int | None:
    """``out_features`` of the model's last ``nn.Linear`` (a guess of ``M`` before the first call), else ``None``."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else int(last.out_features)
