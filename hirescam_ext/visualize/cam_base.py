"""Shared machinery of gradient-based class activation maps (HiResCAM, Grad-CAM).

Two computation routes, both returning maps for many classes at once:

* **AxialNet closed form** (Draelos & Carin, HiResCAM, arXiv:2011.08891, eq. 9): AxialNet's whole-volume score is a
  pooling over slices of per-slice scores that are linear in the per-slice features ``Z_h``, so the gradient of each
  score with respect to the features is known from the fully connected weights. The maps of all ``M`` classes come
  out of one forward pass, no backward pass.
* **Generic fast path** for any other model and named layer: a forward hook replaces the layer's output by a detached
  leaf tensor (the part of the network before the layer runs without autograd), and the gradients of all requested
  class scores with respect to that leaf are taken in one vectorized call (``torch.autograd.grad`` with
  ``is_grads_batched=True``), with a per-class loop as a fallback. The backward never traverses the trunk.

Subclasses define how gradients and activations combine (:meth:`CAMBase._combine`) and the AxialNet closed form
(:meth:`CAMBase._axial_closed_form`).
"""

from __future__ import annotations

import logging

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
import torch.nn as nn

from hirescam_ext.visualize.postprocess import normalize_cam, upsample_axial_maps, upsample_maps

logger = logging.getLogger(__name__)

__all__ = ["CAMBase", "ClassIndex", "resolve_class_idx", "default_split_slices", "is_axialnet"]

ClassIndex = Union[None, int, Sequence[int], torch.Tensor]
SliceSplit = Union[None, bool, Callable[[torch.Tensor, int], torch.Tensor]]


def is_axialnet(model: nn.Module) -> bool:
    """Whether ``model`` exposes AxialNet's closed-form interface (``forward_all`` and ``fc_weight_maps``)."""
    return callable(getattr(model, "forward_all", None)) and callable(getattr(model, "fc_weight_maps", None))


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
            means the model's ``cam_target_layer`` attribute (AxialNet, BodyConv, ThreeDConv declare one).
        upsampler: ``upsampler(maps, spatial_size) -> maps`` used by ``__call__``; default (``None``) picks
            :func:`upsample_axial_maps` for maps laid out ``[B, K, H, D1, D2]`` (AxialNet's grid, split per-slice
            layers, a model whose ``cam_layout`` is ``("B", "F", "H", "D1", "D2")``) and :func:`upsample_maps`
            (same axis order as the input) otherwise.
        postprocessing: ``postprocessing(maps) -> maps`` used by ``__call__`` when ``normalize=True``; default
            :func:`normalize_cam` (ReLU, min-max over the whole volume).
        slice_split: for layers whose activations merge batch and slice axes (``[B*H, F, D1, D2]``, AxialNet's
            per-slice layers): ``None`` detects it (model has ``split_slices`` and the activation's leading axis is a
            multiple of the batch size other than the batch size), ``True`` forces it (``model.split_slices`` or a
            batch-major reshape), ``False`` disables it, or a callable ``split(t, batch_size) -> [B, F, H, ...]``.
            Split maps come back as ``[B, K, H, D1, D2]``.
        use_closed_form: use AxialNet's forward-only closed form when the target is its ``cam_target_layer``.
        class_chunk_size: at most this many classes per vectorized gradient call (bounds memory); ``None``: all.
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
            if default_layer is None:
                raise ValueError(
                    f"target_layers is required for {type(nn_module).__name__}: it declares no cam_target_layer "
                    "(a model without a spatial map to explain, such as CTNet, cannot have a CAM)"
                )
            target_layers = str(default_layer)
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
        self._warned_fallback = False
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
        self, x: torch.Tensor, class_idx: ClassIndex = None, upsample: bool = True, normalize: bool = True
    ) -> torch.Tensor:
        """Maps ``[B, K, *spatial]``: upsampled to the input's spatial shape and normalized unless disabled.

        Args:
            x: input batch ``[B, C, *spatial]``.
            class_idx: classes to explain (see :func:`resolve_class_idx`); ``None``: all ``M``.
            upsample: resize to ``x``'s spatial shape (trilinear; AxialNet-grid maps have their slice axis moved to
                ``Z``). Upsampled maps take ``B * K * X * Y * Z`` values: for a full-size CT (420 x 420 x 405) all
                80 classes need about 23 GB in float32, so select the classes of interest or upsample later.
            normalize: apply ``postprocessing`` (default :func:`normalize_cam`, whole-volume min-max after ReLU).
        """
        maps, axial = self._compute(x, class_idx)
        if upsample:
            size = tuple(x.shape[2:])
            if self.upsampler is not None:
                maps = self.upsampler(maps, size)
            elif axial:
                maps = upsample_axial_maps(maps, size)
            else:
                if maps.ndim - 2 != len(size):
                    raise ValueError(
                        f"maps {tuple(maps.shape)} from layer {self.target_layers!r} and input {tuple(x.shape)} have "
                        "different numbers of spatial axes; pass upsample=False, an upsampler, or slice_split"
                    )
                maps = upsample_maps(maps, size)
        if normalize and self.postprocessing is not None:
            maps = self.postprocessing(maps)
        return maps

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

    # ------------------------------------------------------------------ internals
    def _compute(self, x: torch.Tensor, class_idx: ClassIndex) -> tuple[torch.Tensor, bool]:
        if not isinstance(x, torch.Tensor) or x.ndim < 3:
            raise ValueError(f"input must be a tensor [B, C, *spatial], got {getattr(x, 'shape', type(x))}")
        with _ModeGuard(self.nn_module):
            if self.closed_form:
                return self._compute_closed_form(x, class_idx), True
            return self._compute_generic(x, class_idx)

    def _compute_closed_form(self, x: torch.Tensor, class_idx: ClassIndex) -> torch.Tensor:
        with torch.no_grad():
            out = self.nn_module.forward_all(x)
            maps = self._axial_closed_form(out)
        idx, all_classes = resolve_class_idx(class_idx, x.shape[0], maps.shape[1], maps.device)
        if all_classes:
            return maps
        return maps.gather(1, idx.reshape(*idx.shape, 1, 1, 1).expand(-1, -1, *maps.shape[2:]))

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

    def _compute_generic(self, x: torch.Tensor, class_idx: ClassIndex) -> tuple[torch.Tensor, bool]:
        store: dict[str, torch.Tensor] = {}

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"target layer {self.target_layers!r} returned {type(output).__name__}, not a tensor")
            if "leaf" in store:
                raise RuntimeError(f"target layer {self.target_layers!r} ran more than once in one forward pass")
            leaf = output.detach().requires_grad_(True)
            store["leaf"] = leaf
            # everything downstream of the layer needs autograd; the layers upstream ran without it.
            torch.set_grad_enabled(True)
            return leaf.clone()  # a non-leaf copy, so in-place ops downstream leave ``leaf`` intact

        # autograd must work even when the caller is under torch.inference_mode() or torch.no_grad()
        with torch.inference_mode(False):
            handle = self.target_module.register_forward_hook(hook)
            try:
                with torch.no_grad():
                    logits = self.nn_module(x)
            finally:
                handle.remove()
            if "leaf" not in store:
                raise RuntimeError(f"target layer {self.target_layers!r} was not used in the forward pass")
            leaf = store["leaf"]
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise ValueError(f"the model must return class scores [B, M], got {getattr(logits, 'shape', logits)}")
            if not logits.requires_grad:
                raise RuntimeError(f"the class scores do not depend on target layer {self.target_layers!r}")
            batch = x.shape[0]
            idx, all_classes = resolve_class_idx(class_idx, batch, logits.shape[1], logits.device)
            scores = logits if all_classes else logits.gather(1, idx)  # [B, K], per-sample classes
            with torch.enable_grad():
                grads = self._class_gradients(scores, leaf)  # [K, *leaf.shape]
        k = grads.shape[0]
        acts = leaf.detach()
        split = self._resolve_split(leaf, batch)
        if split is not None:
            acts = split(acts, batch)
            g = split(grads.reshape(k * leaf.shape[0], *leaf.shape[1:]), k * batch)
            grads = g.reshape(k, batch, *g.shape[1:])
        elif leaf.shape[0] != batch:
            raise ValueError(
                f"target layer {self.target_layers!r} activations {tuple(leaf.shape)} do not have the batch size "
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
