"""Grad-CAM with the HiResCAM paper's conventions (Draelos & Carin, arXiv:2011.08891, eq. 2).

For class ``m`` with pre-sigmoid score ``S_m`` and target-layer activations ``A`` (features ``f``)::

    alpha_mf = mean over ALL positions of dS_m / dA_f     (for AxialNet: the H * D1 * D2 positions)
    GradCAM_m = sum_f alpha_mf * A_f

Averaging the gradient discards where the model uses each feature, so Grad-CAM may highlight locations that lower
the score (paper, Figure 3); use :class:`~hirescam_ext.visualize.hirescam.HiResCAM` for faithful maps. For AxialNet
(mean pooling) ``dS_m/dZ_{h,f,i,j} = w_{m,f,i,j} / H`` so ``alpha_mf = mean_ij w_mfij / H``; with max pooling the
gradient sits on one slice, and averaging over ``H`` gives the same ``alpha``.
"""

from __future__ import annotations

from typing import Any

import torch

from hirescam_ext.visualize.cam_base import CAMBase

__all__ = ["GradCAM"]


class GradCAM(CAMBase):
    """Grad-CAM maps for many classes at once, with the same interface as :class:`HiResCAM`.

    See :class:`~hirescam_ext.visualize.cam_base.CAMBase` for the arguments. For split per-slice layers the
    gradient is averaged over slices too (all ``H * D1 * D2`` positions, paper eq. 2).

    Example:
        >>> from monai.networks.nets import DenseNet121
        >>> net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=5)
        >>> maps = GradCAM(net, target_layers="class_layers.relu")(torch.rand(2, 1, 64, 64), class_idx=1)
        >>> maps.shape
        torch.Size([2, 1, 64, 64])
    """

    def _combine(self, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        alpha = grads.flatten(3).mean(dim=-1)  # [K, B, F]
        return torch.einsum("kbf,bf...->bk...", alpha, acts)

    def _axial_closed_form(self, out: Any) -> torch.Tensor:
        features = out.features  # [B, H, F, D1, D2]
        n_slices = features.shape[1]
        weights = self.nn_module.fc_weight_maps()  # [M, F, D1, D2]
        alpha = weights.flatten(2).mean(dim=-1).to(features.dtype) / n_slices  # [M, F]
        return torch.einsum("mf,bhfij->bmhij", alpha, features)
