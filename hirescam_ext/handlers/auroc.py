"""Ignite metric handler for the multi-label AUROC (mean over abnormalities, Draelos & Carin, arXiv:2011.08891).

``monai.handlers.ROCAUC`` is not used: with ``average="macro"`` it returns NaN as soon as one of the 80 labels
holds a single class in the evaluated set (frequent on small validation sets), and its per-label loop is in pure
Python. :class:`MultiLabelAUROCHandler` skips, counts and reports such labels instead
(:func:`hirescam_ext.metrics.auroc.compute_multilabel_auroc`).

Example:
    >>> from hirescam_ext.handlers import MultiLabelAUROCHandler
    >>> handler = MultiLabelAUROCHandler()  # reads output["pred"] (logits) and output["label"]
    >>> # evaluator = SupervisedEvaluator(..., additional_metrics={"auroc": handler})
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.metrics.metric import reinit__is_reduced

from hirescam_ext.handlers._extract import lookup_nested
from hirescam_ext.handlers.base import DetailedMetricHandler
from hirescam_ext.metrics.auroc import AUROCResult, MultiLabelAUROC

__all__ = ["MultiLabelAUROCHandler", "default_auroc_transform"]


def default_auroc_transform(
    output: Any, batch: Any = None, pred_key: str = "pred", label_key: str = "label"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Find ``(scores, labels)``: ``output[pred_key]`` (or its ``logits`` entry when the prediction is a dict or an
    object) and ``output[label_key]`` (or its ``"label"`` entry for a dict target), else ``batch[label_key]``.

    Raises:
        KeyError: naming what is missing.
    """
    scores = lookup_nested(output, pred_key, "logits")
    labels = lookup_nested(output, label_key, "label")
    if labels is None:
        labels = lookup_nested(batch, label_key, "label")
    if scores is None or labels is None:
        raise KeyError(
            f"MultiLabelAUROCHandler: cannot find scores ({pred_key!r}) or labels ({label_key!r}) in "
            "engine.state.output / batch; pass output_transform returning (scores, labels)"
        )
    return scores, labels


class MultiLabelAUROCHandler(DetailedMetricHandler):
    """Mean (or median) per-label AUROC over the labels where both classes occur.

    Args:
        pred_key: output key of the scores ``[B, M]`` (logits or probabilities; AUROC only depends on the ranking).
        label_key: key of the ``[B, M]`` 0/1 labels.
        label_names: ``M`` names (default: the package's 80 ``LABEL_NAMES`` when ``M == 80``).
        statistic: ``"mean"`` (default, the paper's number) or ``"median"``: the metric value.
        output_transform: ``None`` uses :func:`default_auroc_transform` (``engine.state.output`` with
            ``engine.state.batch`` as fallback for labels); a callable receives ``engine.state.output`` and returns
            ``(scores, labels)``.
        save_details: store the result dict (per label, skipped labels, mean, median) in
            ``engine.state.metric_details[name]``.
        details_path: also write it there as JSON.
        device: Ignite metric device.
    """

    def __init__(
        self,
        pred_key: str = "pred",
        label_key: str = "label",
        label_names: Sequence[str] | None = None,
        statistic: str = "mean",
        output_transform: Callable[[Any], tuple[Any, Any]] | None = None,
        save_details: bool = True,
        details_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if statistic not in ("mean", "median"):
            raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
        self.pred_key, self.label_key, self.statistic = pred_key, label_key, statistic
        self.metric = MultiLabelAUROC(label_names=label_names)
        super().__init__(output_transform, save_details, details_path, device)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        """Accumulate ``(scores, labels)``."""
        scores, labels = output
        self.metric(torch.as_tensor(scores).detach().float(), torch.as_tensor(labels).detach().float())
        self._updated = True

    def extract(self, engine: Engine) -> tuple[Any, Any]:
        return default_auroc_transform(
            engine.state.output, getattr(engine.state, "batch", None), self.pred_key, self.label_key
        )

    def value(self, result: AUROCResult) -> float:
        return float(result.mean if self.statistic == "mean" else result.median)
