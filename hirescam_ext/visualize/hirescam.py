"""HiResCAM: gradient times activation, summed over features (Draelos & Carin, arXiv:2011.08891, eq. 4).

For class ``m`` with pre-sigmoid score ``S_m`` and target-layer activations ``A`` (features ``f``)::

    HiResCAM_m = sum_f (dS_m / dA_f) * A_f

Unlike Grad-CAM it keeps the gradient's spatial detail, so the map shows the locations the model actually used: for
models ending in a fully connected layer after the target layer the map summed over positions equals the score
minus the bias (completeness). For AxialNet (mean over slices of per-slice scores ``c_mh = w_m . z_h + b_m``) the
map is ``(1/H) sum_f w_m * Z_h`` (eq. 9), obtained in the forward pass for all classes at once.
"""

from __future__ import annotations

from typing import Any

import torch

from hirescam_ext.visualize.cam_base import CAMBase

__all__ = ["HiResCAM", "slice_pooling_of"]


def slice_pooling_of(model: Any) -> str:
    """AxialNet's slice pooling (``"mean"`` or ``"max"``), read from its ``slice_pooling`` attribute."""
    pooling = str(getattr(model, "slice_pooling", "mean")).lower()
    if pooling not in ("mean", "max"):
        raise ValueError(f"unsupported slice pooling {pooling!r} on {type(model).__name__}; expected 'mean' or 'max'")
    return pooling


class HiResCAM(CAMBase):
    """High-resolution class activation maps for many classes at once.

    See :class:`~hirescam_ext.visualize.cam_base.CAMBase` for the arguments. Calling the object returns
    ``[B, K, *spatial]`` maps upsampled to the input and normalized over the whole volume (ReLU, min-max);
    :meth:`compute_raw` returns the raw maps on the target layer's grid (AxialNet: ``[B, K, H, D1, D2]``).

    With AxialNet and its ``cam_target_layer`` (the default), the closed form is used: mean pooling gives
    ``attention / H``; max pooling sends the gradient of ``S_m`` to the slice with the highest score only, so the
    map is the attention of that slice and zero elsewhere. Other models and layers use one forward pass and one
    backward from the scores to the target layer, over ``K`` stacked copies of its activations (see ``gradient_mode``).

    Upsampled maps of many classes are large (80 x 420 x 420 x 405 float32 values are 23 GB): ``__call__`` builds
    them chunk by chunk of classes into one output (``dtype=torch.float16`` halves it, ``out=`` puts it anywhere),
    and :meth:`iter_maps` yields them one chunk at a time without keeping them.

    Example:
        >>> from monai.networks.nets import DenseNet121
        >>> net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=80)
        >>> cam = HiResCAM(net, target_layers="class_layers.relu")
        >>> maps = cam(torch.rand(1, 1, 64, 64, 64))  # [1, 80, 64, 64, 64], all classes
        >>> raw = cam.compute_raw(torch.rand(1, 1, 64, 64, 64), class_idx=[3, 7])  # [1, 2, 2, 2, 2]
        >>> for chunk in cam.iter_maps(torch.rand(1, 1, 64, 64, 64), chunk_size=8):  # 10 chunks of 8 classes
        ...     keep = chunk.maps.half()
    """

    def _combine(self, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kbf...,bf...->bk...", grads, acts)

    def _axial_closed_form(self, out: Any) -> torch.Tensor:
        attention = out.attention  # [B, M, H, D1, D2] = sum_f w_m * Z_h
        n_slices = attention.shape[2]
        if slice_pooling_of(self.nn_module) == "mean":
            return attention / n_slices
        # max pooling (amax): dS_m/dZ_h = w_m on the arg-max slice of c_m. and zero elsewhere; tied maxima share
        # the gradient equally, as in the backward of torch.amax.
        scores = out.slice_scores  # [B, M, H]
        is_top = (scores == scores.amax(dim=-1, keepdim=True)).to(attention.dtype)
        share = is_top / is_top.sum(dim=-1, keepdim=True)
        return attention * share[..., None, None]
