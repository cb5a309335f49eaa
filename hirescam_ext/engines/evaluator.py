"""An evaluator that explains every prediction: logits, HiResCAM and Grad-CAM maps and allowed regions per batch.

OrganIoU (Draelos & Carin, HiResCAM, arXiv:2011.08891, section 4) needs, for every validation scan, the normalized
explanation maps of all abnormalities next to the allowed regions G_true. ``ExplanationEvaluator`` is a MONAI
``SupervisedEvaluator`` whose iteration also computes those maps, so the metric handlers
(:class:`hirescam_ext.handlers.OrganIoUHandler`, AUROC) attach as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from ignite.metrics.metric import MetricUsage
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

from hirescam_ext.data.failures import ERROR_KEY, SOURCE_KEY, is_failed_item

__all__ = ["ERROR_KEY", "ExplanationEvaluator", "SkipFailedEpochWise", "resize_maps_to", "to_region_layout"]



def resize_maps_to(maps: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Trilinearly resample ``[B, M, *grid]`` maps to ``[B, M, *shape]`` (the paper's route for other grids)."""
    if tuple(maps.shape[2:]) == tuple(shape):
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape)]
    return F.interpolate(maps.float(), size=tuple(shape), mode=mode, align_corners=False)


def to_region_layout(maps: torch.Tensor, explainer: Any) -> torch.Tensor:
    """Maps ``[B, M, *grid]`` of ``explainer`` in the allowed regions' axis order ``[B, M, H, D1, D2]``.

    AxialNet, per-slice layers and BodyConv explain a grid whose first axis runs along the slices (``H``), like
    the regions. A 3D model such as 3DConv declares ``cam_layout = ("B", "F", "X", "Y", "Z")`` (its CAM has
    ``volume_layout`` set): its maps are permuted ``[X', Y', Z'] -> [Z', X', Y']`` so that depth meets depth.
    """
    if getattr(explainer, "volume_layout", False) and maps.ndim == 5:
        return maps.permute(0, 1, 4, 2, 3)
    return maps


def _has_good_output(engine: Engine, event: int) -> bool:
    return not is_failed_item(engine.state.output)


class SkipFailedEpochWise(MetricUsage):
    """Ignite's epoch-wise metric usage, except that an iteration whose batch failed to load (output with an
    ``error`` entry) does not update the metric."""

    usage_name: str = "epoch_wise_skip_failed"

    def __init__(self) -> None:
        super().__init__(
            started=Events.EPOCH_STARTED,
            completed=Events.EPOCH_COMPLETED,
            iteration_completed=Events.ITERATION_COMPLETED(event_filter=_has_good_output),
        )


def _attach_skipping_failures(attach: Callable[..., Any]) -> Callable[..., Any]:
    def attach_with_usage(engine: Engine, name: str, *args: Any, **kwargs: Any) -> Any:
        if not args and "usage" not in kwargs:
            kwargs["usage"] = SkipFailedEpochWise()
        return attach(engine, name, *args, **kwargs)

    return attach_with_usage


class ExplanationEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` that also stores explanation maps in ``engine.state.output``.

    Output keys per iteration (batched tensors; ``decollate`` is off so handlers see whole batches):
    ``image``, ``label`` (``[B, M]``, ``None`` for unlabeled inference), ``pred`` (logits ``[B, M]``), ``prob``
    (sigmoid), ``slice_scores`` (``[B, M, H]``, AxialNet-style networks), ``regions``
    (``[B, M, H, D1, D2]`` when the batch has them), one entry per explainer name (normalized maps on the regions
    grid, or the explainer's own grid when there are no regions) and ``loss`` when a loss function is given.
    A batch carrying an ``error`` entry (no scan of it loaded, see
    :func:`hirescam_ext.data.failures.collate_skipping_failures`) yields ``{"error", "source"}`` only, and the
    key and additional metrics skip that iteration (:class:`SkipFailedEpochWise`).

    Args:
        explainers: ``{name: explainer}``; an explainer is called as ``explainer(image, upsample=False)`` and
            returns normalized maps ``[B, M, *grid]`` (``hirescam_ext.HiResCAM`` and ``hirescam_ext.GradCAM`` do).
            When the batch has regions ``[B, M, H, D1, D2]``, maps are brought to that axis order
            (:func:`to_region_layout`: a 3D model's ``[X', Y', Z']`` maps become ``[Z', X', Y']``) and other grid
            sizes are resampled trilinearly (the paper's route for models with another grid).
        loss_function: optional, called as ``loss_function(pred, target)`` where ``pred`` is
            ``{"logits", "attention"}`` for networks with ``forward_all`` (so the validation loss includes the
            mask term), else the logits.
        regions_key: batch key of the allowed regions.
        kwargs: everything ``SupervisedEvaluator`` takes (``device``, ``val_data_loader``, ``network``,
            ``prepare_batch``, ``key_val_metric``, ``val_handlers``, ``amp`` ...).

    Example:
        >>> evaluator = ExplanationEvaluator(  # doctest: +SKIP
        ...     device="cpu", val_data_loader=loader, network=net,
        ...     explainers={"hirescam": HiResCAM(net), "gradcam": GradCAM(net)},
        ...     prepare_batch=PrepareBatchWithRegions(),
        ... )
    """

    def __init__(
        self,
        *args: Any,
        explainers: Mapping[str, Callable[..., torch.Tensor]] | None = None,
        loss_function: Callable | None = None,
        regions_key: str = "regions",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.explainers = dict(explainers or {})
        self.loss_function = loss_function
        self.regions_key = regions_key

    def _register_metrics(self, k_metric: dict, add_metrics: dict | None = None) -> None:
        """MONAI's registration, with every metric attached so that skipped (failed) batches do not update it."""
        attach_plain: dict[int, Callable] = {}
        for metric in [*k_metric.values(), *(add_metrics or {}).values()]:
            if id(metric) not in attach_plain and callable(getattr(metric, "attach", None)):
                attach_plain[id(metric)] = metric.attach
                metric.attach = _attach_skipping_failures(metric.attach)  # type: ignore[method-assign]
        try:
            super()._register_metrics(k_metric, add_metrics)
        finally:
            for metric in [*k_metric.values(), *(add_metrics or {}).values()]:
                if id(metric) in attach_plain:
                    del metric.attach  # back to the class method

    def _iteration(self, engine: ExplanationEvaluator, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if is_failed_item(batchdata):
            # an item that failed to load (see hirescam_ext.inference.SkipBadItems): pass the report on, skip the rest
            engine.state.output = {ERROR_KEY: batchdata[ERROR_KEY], SOURCE_KEY: batchdata.get(SOURCE_KEY)}
            return engine.state.output
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, target = batch[0], batch[1]
        label = target.get("label") if isinstance(target, Mapping) else target
        regions = target.get("regions") if isinstance(target, Mapping) else None
        net = getattr(engine.network, "module", engine.network)  # unwrap DistributedDataParallel

        output: dict[str, Any] = {CommonKeys.IMAGE: inputs, CommonKeys.LABEL: label}
        out = None
        autocast = (
            torch.autocast("cuda", **engine.amp_kwargs)
            if engine.amp and inputs.device.type == "cuda"
            else contextlib.nullcontext()
        )
        with engine.mode(engine.network), autocast:
            with torch.no_grad():
                if callable(getattr(net, "forward_all", None)):
                    out = net.forward_all(inputs)
                    pred: Any = {"logits": out.logits, "attention": out.attention}
                    logits = out.logits
                    output["slice_scores"] = out.slice_scores
                else:
                    logits = engine.inferer(inputs, engine.network)
                    pred = logits
                if engine.loss_function is not None and label is not None:
                    output[CommonKeys.LOSS] = engine.loss_function(pred, target).mean()
            output[CommonKeys.PRED] = logits
            output["prob"] = torch.sigmoid(logits.float())
            engine.state.output = output
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            for name, explainer in engine.explainers.items():
                if out is not None and getattr(explainer, "closed_form", False) and explainer.nn_module is net:
                    maps = explainer.from_output(out).detach()  # no second forward pass
                else:
                    with torch.enable_grad():  # engine.mode is no_grad; generic CAMs need autograd
                        maps = explainer(inputs, upsample=False).detach()
                if regions is not None:
                    maps = resize_maps_to(to_region_layout(maps, explainer), regions.shape[2:])
                output[name] = maps
        if regions is not None:
            output[engine.regions_key] = regions
        engine.state.output = output
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return output
