"""Ignite metric handler computing OrganIoU (Draelos & Carin, HiResCAM, arXiv:2011.08891) during evaluation.

MONAI's ``IgniteMetricHandler`` only forwards ``(y_pred, y)``; OrganIoU needs three inputs (normalized maps, allowed
regions G_true and labels), so :class:`OrganIoUHandler` is an Ignite ``Metric`` of its own. It attaches like any
metric, for example as ``key_val_metric`` or in ``additional_metrics`` of a MONAI ``SupervisedEvaluator`` /
:class:`hirescam_ext.engines.evaluator.ExplanationEvaluator`.

Example:
    >>> from hirescam_ext.handlers import OrganIoUHandler
    >>> handler = OrganIoUHandler(map_key="hirescam", thresholds=None)  # choose per-label thresholds on this data
    >>> # evaluator = ExplanationEvaluator(..., key_val_metric={"organ_iou": handler})
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.metrics.metric import reinit__is_reduced

from hirescam_ext.handlers._extract import lookup, lookup_nested
from hirescam_ext.handlers.base import DetailedMetricHandler
from hirescam_ext.metrics.organ_iou import THRESHOLDS, OrganIoU, OrganIoUResult, save_thresholds

__all__ = ["OrganIoUHandler", "default_organ_iou_transform"]


def default_organ_iou_transform(
    output: Any,
    batch: Any = None,
    map_key: str = "hirescam",
    regions_key: str = "regions",
    label_key: str = "label",
    pred_key: str = "pred",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find ``(maps, regions, labels)`` in an engine's output, falling back to its batch.

    - maps: ``output[map_key]``, else the ``map_key`` entry of ``output[pred_key]`` (a dict or object);
    - regions: ``output[regions_key]``, else ``output[label_key]["regions"]`` (a dict target as built by
      :class:`hirescam_ext.engines.prepare_batch.PrepareBatchWithRegions`), else ``batch[regions_key]``;
    - labels: ``output[label_key]`` (or its ``"label"`` entry when it is a dict target), else ``batch[label_key]``.

    Batched dicts and decollated lists of per-sample dicts are both accepted.

    Raises:
        KeyError: naming what is missing.
    """
    maps = lookup(output, map_key)
    if maps is None:
        maps = lookup(lookup(output, pred_key), map_key)
    regions = lookup(output, regions_key)
    if regions is None:
        target = lookup(output, label_key)
        regions = None if isinstance(target, torch.Tensor) else lookup(target, "regions")
    if regions is None:
        regions = lookup(batch, regions_key)
    labels = lookup_nested(output, label_key, "label")
    if labels is None:
        labels = lookup_nested(batch, label_key, "label")
    missing = [name for name, v in (("maps", maps), ("regions", regions), ("labels", labels)) if v is None]
    if missing:
        raise KeyError(
            f"OrganIoUHandler: cannot find {missing} in engine.state.output / batch (keys: map_key={map_key!r}, "
            f"regions_key={regions_key!r}, label_key={label_key!r}); pass output_transform returning "
            "(maps, regions, labels)"
        )
    return maps, regions, labels


class OrganIoUHandler(DetailedMetricHandler):
    """Mean OrganIoU over all (scan, truly present abnormality) pairs of an evaluation run.

    The metric value (``engine.state.metrics[name]``) is :attr:`OrganIoUResult.mean`; the full result (per label,
    per concept group, the thresholds used) goes to ``engine.state.metric_details[name]`` as a dict when
    ``save_details`` is on, and to ``details_path`` as JSON when that is set.

    Thresholds: ``thresholds=None`` (default) chooses, per abnormality, the threshold with the best mean OrganIoU on
    the evaluated data themselves (the paper's choice on the validation set, optimistic as a test score); they can be
    written to ``thresholds_path`` and reused on the test set by passing that path (or a mapping, a length-``M``
    sequence, or one float) as ``thresholds``.

    Args:
        map_key: output key of the normalized maps ``[B, M, *spatial]`` in ``[0, 1]`` (the explainer name of
            :class:`hirescam_ext.engines.evaluator.ExplanationEvaluator`, for example ``"hirescam"`` or
            ``"gradcam"``).
        regions_key: key of the allowed regions G_true ``[B, M, *spatial]``.
        label_key: key of the ``[B, M]`` labels.
        label_names: the ``M`` abnormality names (default: the package's 80 ``LABEL_NAMES``).
        thresholds: see above.
        original_quirk: reproduce the original code's zero rule (see :mod:`hirescam_ext.metrics.organ_iou`).
        grid: threshold grid (default: the paper's 53 :data:`THRESHOLDS`).
        output_transform: ``None`` uses :func:`default_organ_iou_transform` on ``engine.state.output`` with
            ``engine.state.batch`` as fallback; a callable receives ``engine.state.output`` and must return
            ``(maps, regions, labels)``.
        save_details: store the result dict in ``engine.state.metric_details[name]``.
        details_path: write the result dict there as JSON (atomically) at every computation.
        thresholds_path: write the thresholds used (keyed by label name) there as JSON at every computation.
        device: Ignite metric device (accumulation happens on CPU).
    """

    def __init__(
        self,
        map_key: str = "hirescam",
        regions_key: str = "regions",
        label_key: str = "label",
        label_names: Sequence[str] | None = None,
        thresholds: Mapping[str, float] | Sequence[float] | float | str | os.PathLike | None = None,
        original_quirk: bool = False,
        grid: Sequence[float] = THRESHOLDS,
        output_transform: Callable[[Any], tuple[Any, Any, Any]] | None = None,
        save_details: bool = True,
        details_path: str | os.PathLike | None = None,
        thresholds_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.map_key, self.regions_key, self.label_key = map_key, regions_key, label_key
        self.thresholds_path = thresholds_path
        self.metric = OrganIoU(
            label_names=label_names, thresholds=grid, original_quirk=original_quirk, label_thresholds=thresholds
        )
        super().__init__(output_transform, save_details, details_path, device)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        """Accumulate ``(maps, regions, labels)``."""
        if len(output) != 3:
            raise ValueError(f"OrganIoUHandler.update expects (maps, regions, labels), got {len(output)} items")
        maps, regions, labels = output
        self.metric(maps, regions, labels=labels)
        self._updated = True

    def extract(self, engine: Engine) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(maps, regions, labels)`` by :func:`default_organ_iou_transform`."""
        return default_organ_iou_transform(
            engine.state.output,
            getattr(engine.state, "batch", None),
            map_key=self.map_key,
            regions_key=self.regions_key,
            label_key=self.label_key,
        )

    def on_result(self, result: OrganIoUResult) -> None:
        if result.n_pairs == 0:
            warnings.warn("OrganIoUHandler: no (scan, present abnormality) pair was seen; OrganIoU is NaN")
        if self.thresholds_path is not None:
            save_thresholds(
                self.thresholds_path, result.thresholds, n_pairs=result.per_label_count, grid=self.metric.thresholds
            )

    def value(self, result: OrganIoUResult) -> float:
        return float(result.mean)
