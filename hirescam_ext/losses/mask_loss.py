"""The HiResCAM mask loss (eq. 11 of Draelos & Carin) and the combined classification + mask loss.

The mask loss penalizes attention that falls outside the allowed regions G_true. For AxialNet the training
attention of abnormality ``m`` is the raw sum over features of ``w_m * Z`` (no bias, no ``1/H``), shape
``[B, M, H, D1, D2]``; an absent abnormality has an all-zero region, so its whole map is penalized.

Reference: R. L. Draelos and L. Carin, "HiResCAM: Explainable Multi-Organ Multi-Abnormality Prediction in 3D Medical
Images", arXiv:2011.08891, section "Mask loss" (eq. 11).

Example:
    >>> import torch
    >>> from hirescam_ext.losses.mask_loss import ClassificationMaskLoss
    >>> loss = ClassificationMaskLoss()
    >>> pred = {"logits": torch.zeros(1, 2), "attention": torch.zeros(1, 2, 3, 2, 2)}
    >>> target = {"label": torch.tensor([[1.0, 0.0]]), "regions": torch.zeros(1, 2, 3, 2, 2)}
    >>> round(float(loss(pred, target)), 4)  # log(2) * (1 + 1/3)
    0.9242
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, look_up_option
from torch.nn.modules.loss import _Loss

from hirescam_ext.utils.args import as_bool

__all__ = ["MASK_PENALTIES", "MASK_POOLS", "MaskLoss", "ClassificationMaskLoss", "split_prediction", "split_target"]

#: what the mask loss penalizes outside G_true: ``"positive"`` attention (the paper's eq. 11) or ``"both"`` signs
MASK_PENALTIES = ("positive", "both")
#: what the penalty is applied to: each forbidden ``"element"`` (the paper's) or each map's forbidden ``"logit"`` part
MASK_POOLS = ("element", "logit")


class MaskLoss(_Loss):
    """Mean of ``-log(1 - sigmoid(a))`` over the forbidden elements (``G_true == 0``) of the raw attention ``a``.

    This is eq. 11 of Draelos & Carin (HiResCAM, arXiv:2011.08891) as the original implementation computed it: one
    mean pooled over every forbidden element of every abnormality, slice and grid cell (not a mean of per-abnormality
    means). ``-log(1 - sigmoid(a))`` equals ``softplus(a)``, i.e. binary cross-entropy with logits against a zero
    target, which is evaluated stably in float32 whatever the input dtype (finite for ``|a|`` up to 1e4 and more,
    and for bf16/fp16 attention).

    ``penalize="both"`` (an extension, not in the paper) uses ``softplus(a) + softplus(-a) - log 2``: symmetric in
    the sign of ``a``, ``log 2`` at ``a = 0`` like the paper's term, within ``log 2`` of it for large ``a``, and smooth
    at 0 (gradient ``tanh(a / 2)``; ``softplus(|a|)`` has a kink there that, like an L1 penalty, pinned every
    attention value to 0 and stopped a CPU reference run from learning: validation AUROC 0.50 for 13 epochs). The
    paper's term is zero for ``a << 0``, so a model may read a shortcut outside G_true as
    *negative* evidence (a thin body wall lowering the score of a mediastinal finding) without any penalty; the
    confounder ledger of ``hirescam reproduce`` measures how much of a shortcut travels that way. ``"both"`` penalizes
    forbidden evidence of either sign; whether that keeps a shortcut out depends on how thinly it is spread, since
    the penalty is a per-element mean and the logit a sum (docs/REPRODUCE.md: on the reference data it did not).

    ``pool="logit"`` (an extension, for AxialNet's ``[B, M, H, D1, D2]`` attention) applies the penalty once per map
    to ``f = (1 / H) * sum of the forbidden elements``: the part of the logit computed outside G_true (the sum over
    slices, divided by ``H`` as the mean slice pooling does). The per-element mean of the paper hardly notices a
    shortcut spread thinly over many forbidden cells (each element small, their sum a whole logit); ``f`` is that
    sum. The mean then runs over the maps that have a forbidden element.

    Args:
        penalize: ``"positive"`` (default, the paper's) or ``"both"`` (:data:`MASK_PENALTIES`).
        pool: ``"element"`` (default, the paper's) or ``"logit"`` (:data:`MASK_POOLS`).
        reduction: ``"mean"`` (default): one mean pooled over all forbidden elements of the batch (equal to the
            original per-scan value for batch size 1); ``"none"``: the per-sample value ``[B]`` (mean over that
            sample's forbidden elements); ``"sum"``: the sum over the batch of the per-sample values.

    Shapes:
        ``attention`` and ``regions`` are ``[B, M, *spatial]`` (any number of spatial dimensions, AxialNet:
        ``[B, M, H, D1, D2]``); ``regions`` is 0/1 (any dtype; exactly 0 means forbidden). A sample with no forbidden
        element contributes 0, with a finite (zero) gradient.

    Raises:
        ValueError: when the shapes differ or have fewer than two dimensions.

    Example:
        >>> a = torch.tensor([[[0.0, 2.0]]])
        >>> g = torch.tensor([[[0.0, 1.0]]])
        >>> round(float(MaskLoss()(a, g)), 4)  # only the first element is forbidden: softplus(0) = log 2
        0.6931
    """

    def __init__(
        self, reduction: LossReduction | str = LossReduction.MEAN, penalize: str = "positive", pool: str = "element"
    ) -> None:
        super().__init__(reduction=look_up_option(reduction, LossReduction).value)
        if penalize not in MASK_PENALTIES:
            raise ValueError(f"mask loss: penalize must be one of {MASK_PENALTIES}, got {penalize!r}")
        if pool not in MASK_POOLS:
            raise ValueError(f"mask loss: pool must be one of {MASK_POOLS}, got {pool!r}")
        self.penalize = penalize
        self.pool = pool

    def _penalty(self, a: torch.Tensor) -> torch.Tensor:
        # softplus(a) = -log(1 - sigmoid(a)), evaluated without overflow for large |a|
        out = F.binary_cross_entropy_with_logits(a, torch.zeros_like(a), reduction="none")
        if self.penalize == "both":  # + softplus(-a) - log 2
            out = out + F.binary_cross_entropy_with_logits(a, torch.ones_like(a), reduction="none") - math.log(2.0)
        return out

    def forward(self, attention: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            attention: raw (pre-sigmoid) attention ``[B, M, *spatial]``.
            regions: allowed regions G_true ``[B, M, *spatial]``, 1 allowed, 0 forbidden.
        """
        if attention.shape != regions.shape:
            raise ValueError(
                f"mask loss: attention shape {tuple(attention.shape)} and regions (G_true) shape "
                f"{tuple(regions.shape)} differ; both must be [B, M, *spatial]"
            )
        if attention.ndim < 2:
            raise ValueError(f"mask loss: expected [B, M, *spatial] tensors, got shape {tuple(attention.shape)}")
        a = attention.float()
        forbidden = regions == 0
        if self.pool == "logit":
            if a.ndim < 3:
                raise ValueError(f"mask loss (pool='logit'): expected [B, M, H, ...] attention, got {tuple(a.shape)}")
            b, m = a.shape[:2]
            part = torch.where(forbidden, a, torch.zeros_like(a)).reshape(b, m, -1).sum(dim=2) / a.shape[2]
            has = forbidden.reshape(b, m, -1).any(dim=2)
            per_map = torch.where(has, self._penalty(part), torch.zeros_like(part))
            sums, counts = per_map.sum(dim=1), has.sum(dim=1).to(per_map.dtype)
        else:
            per_element = torch.where(forbidden, self._penalty(a), torch.zeros_like(a))
            sums = per_element.reshape(a.shape[0], -1).sum(dim=1)
            counts = forbidden.reshape(a.shape[0], -1).sum(dim=1).to(sums.dtype)
        if self.reduction == LossReduction.MEAN.value:
            return sums.sum() / counts.sum().clamp_min(1.0)
        per_sample = sums / counts.clamp_min(1.0)
        if self.reduction == LossReduction.SUM.value:
            return per_sample.sum()
        return per_sample


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for a mapping, ``obj.key`` for an object, else ``None``."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def split_prediction(pred: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``(logits, attention)`` from a tensor of logits, a dict or an object with ``logits``/``attention``.

    A plain tensor gives ``attention=None``.

    Raises:
        TypeError: when ``pred`` is none of these.
    """
    if isinstance(pred, torch.Tensor):
        return pred, None
    logits = _get(pred, "logits")
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"prediction must be a tensor of logits or carry a 'logits' tensor (dict key or attribute), "
            f"got {type(pred).__name__}"
        )
    attention = _get(pred, "attention")
    return logits, attention if isinstance(attention, torch.Tensor) else None


def split_target(target: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``(labels, regions)`` from a label tensor, a dict with ``label`` (and ``regions``) or a pair.

    Raises:
        TypeError: when ``target`` is none of these.
    """
    if isinstance(target, torch.Tensor):
        return target, None
    if isinstance(target, Mapping):
        labels = target.get("label", target.get("labels"))
        regions = target.get("regions")
    elif isinstance(target, Sequence) and len(target) == 2:
        labels, regions = target
    else:
        labels, regions = _get(target, "label"), _get(target, "regions")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"target must be a label tensor or carry a 'label' tensor (dict key), got {type(target).__name__}"
        )
    return labels, regions if isinstance(regions, torch.Tensor) else None


class ClassificationMaskLoss(_Loss):
    """Classification loss plus the HiResCAM mask loss: ``BCEWithLogits(logits, labels) + lambda * MaskLoss``.

    Draelos & Carin (HiResCAM, arXiv:2011.08891) train AxialNet with the mean binary cross-entropy over the ``M``
    labels plus ``lambda = 1/3`` times the mask loss (eq. 11). ``use_mask_loss=False`` gives the classification-only
    baseline of the paper's Table 2.

    The loss fits MONAI's ``SupervisedTrainer``, which calls ``loss_function(pred, target)`` only:

    - ``pred``: logits ``[B, M]`` (a tensor: no mask term), or a dict / object (for example AxialNet's
      ``forward_all`` output) with ``logits`` ``[B, M]`` and ``attention`` ``[B, M, *spatial]`` (raw attention).
    - ``target``: labels ``[B, M]`` (0/1), or a dict with ``label`` and ``regions`` (G_true, ``[B, M, *spatial]``),
      as :class:`hirescam_ext.engines.prepare_batch.PrepareBatchWithRegions` builds it.

    With ``use_mask_loss=True`` the mask term is added when both attention and regions are available; a plain
    tensor prediction falls back to the classification term with a warning; attention without regions is an error
    (training would silently drop the mask term otherwise).

    The last computed parts are kept (detached) in :attr:`last_components` (``loss``, ``class_loss``,
    ``mask_loss``) for logging; :meth:`components` computes them without reducing to one tensor.

    Args:
        mask_weight: lambda, the weight of the mask term (1/3 in the paper's final runs).
        use_mask_loss: add the mask term (``False``: classification loss only).
        reduction: ``"mean"`` (default; BCE mean over ``B x M`` labels + lambda * pooled mask mean), ``"none"``
            (per sample ``[B]``: BCE mean over that sample's labels + lambda * its mask value) or ``"sum"`` (sum over
            the batch of the per-sample values).
        pos_weight: optional ``[M]`` positive-class weight passed to ``binary_cross_entropy_with_logits``.
        mask_penalize: what the mask term penalizes outside G_true: ``"positive"`` attention (the paper's) or
            ``"both"`` signs (see :class:`MaskLoss`).
        mask_pool: ``"element"`` (the paper's per-element mean) or ``"logit"`` (each map's forbidden logit part; see
            :class:`MaskLoss`).

    Example:
        >>> loss = ClassificationMaskLoss(use_mask_loss=False)
        >>> round(float(loss(torch.zeros(2, 3), torch.ones(2, 3))), 4)
        0.6931
    """

    def __init__(
        self,
        mask_weight: float = 1.0 / 3.0,
        use_mask_loss: bool = True,
        reduction: LossReduction | str = LossReduction.MEAN,
        pos_weight: torch.Tensor | None = None,
        mask_penalize: str = "positive",
        mask_pool: str = "element",
    ) -> None:
        super().__init__(reduction=look_up_option(reduction, LossReduction).value)
        if mask_weight < 0:
            raise ValueError(f"mask_weight must be >= 0, got {mask_weight}")
        self.mask_weight = float(mask_weight)
        self.use_mask_loss = as_bool(use_mask_loss, "use_mask_loss")
        self.mask_loss = MaskLoss(reduction=self.reduction, penalize=mask_penalize, pool=mask_pool)
        self.pos_weight = pos_weight
        self.last_components: dict[str, torch.Tensor] = {}

    def _class_loss_per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape != labels.shape:
            raise ValueError(
                f"classification loss: logits shape {tuple(logits.shape)} and labels shape {tuple(labels.shape)} "
                "differ; both must be [B, M]"
            )
        if logits.ndim < 2:
            raise ValueError(f"classification loss: expected [B, M] logits, got shape {tuple(logits.shape)}")
        pos_weight = None if self.pos_weight is None else torch.as_tensor(self.pos_weight).to(logits.device).float()
        bce = F.binary_cross_entropy_with_logits(
            logits.float(), labels.float(), reduction="none", pos_weight=pos_weight
        )
        return bce.reshape(bce.shape[0], -1).mean(dim=1)

    def _reduce(self, per_sample: torch.Tensor) -> torch.Tensor:
        if self.reduction == LossReduction.NONE.value:
            return per_sample
        if self.reduction == LossReduction.SUM.value:
            return per_sample.sum()
        return per_sample.mean()

    def components(self, pred: Any, target: Any) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "class_loss", "mask_loss"}`` reduced with :attr:`reduction`.

        ``mask_loss`` is the unweighted mask term (zero when it is off or not computable); ``loss`` is
        ``class_loss + mask_weight * mask_loss``.
        """
        logits, attention = split_prediction(pred)
        labels, regions = split_target(target)
        class_per_sample = self._class_loss_per_sample(logits, labels)
        class_loss = self._reduce(class_per_sample)
        mask_loss = torch.zeros_like(class_loss)
        if self.use_mask_loss:
            if attention is None:
                warnings.warn(
                    "ClassificationMaskLoss: the prediction has no attention (plain logits); mask term skipped",
                    stacklevel=3,
                )
            elif regions is None:
                raise ValueError(
                    "ClassificationMaskLoss: use_mask_loss=True but the target has no 'regions' (G_true); pass "
                    "target={'label': ..., 'regions': ...} (PrepareBatchWithRegions) or set use_mask_loss=False"
                )
            else:
                if attention.shape[:2] != logits.shape[:2]:
                    raise ValueError(
                        f"attention shape {tuple(attention.shape)} does not start with the logits' [B, M] "
                        f"{tuple(logits.shape)}"
                    )
                mask_loss = self.mask_loss(attention, regions)  # same reduction: pooled mean, per sample or sum
        total = class_loss + self.mask_weight * mask_loss
        parts = {"loss": total, "class_loss": class_loss, "mask_loss": mask_loss}
        self.last_components = {k: v.detach() for k, v in parts.items()}
        return parts

    def forward(self, pred: Any, target: Any) -> torch.Tensor:
        """Return the combined loss (see the class docstring for the accepted ``pred`` and ``target``)."""
        return self.components(pred, target)["loss"]
