"""Log the two parts of the HiResCAM training loss (classification and mask term, arXiv:2011.08891, eq. 11).

Example:
    >>> from hirescam_ext.losses import ClassificationMaskLoss
    >>> loss_fn = ClassificationMaskLoss()
    >>> handler = LossComponentsHandler(loss_fn)
    >>> # handler.attach(trainer); after each epoch trainer.state.metrics has "class_loss" and "mask_loss"
"""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events
from monai.utils import CommonKeys

__all__ = ["LossComponentsHandler"]


class LossComponentsHandler:
    """Copy ``loss_fn.last_components`` into ``engine.state.output`` each iteration; epoch means into metrics.

    After every iteration the components (``class_loss``, ``mask_loss``) are added as floats to
    ``engine.state.output`` when it is a dict (so ``StatsHandler(output_transform=from_engine(["mask_loss"]))``
    can print them); at the end of every epoch their means over the epoch's iterations are written to
    ``engine.state.metrics[prefix + key]`` (picked up by MONAI's ``StatsHandler`` and ``TensorBoardStatsHandler``).

    Args:
        loss_fn: a loss with a ``last_components`` dict of tensors, such as
            :class:`hirescam_ext.losses.ClassificationMaskLoss`.
        keys: components to record.
        prefix: prefix of the metric names.
    """

    def __init__(self, loss_fn: Any, keys: tuple[str, ...] = ("class_loss", "mask_loss"), prefix: str = "") -> None:
        if not hasattr(loss_fn, "last_components"):
            raise TypeError(f"{type(loss_fn).__name__} has no last_components; use ClassificationMaskLoss")
        self.loss_fn = loss_fn
        self.keys = tuple(keys)
        self.prefix = prefix
        self._sums: dict[str, float] = {}
        self._count = 0

    def attach(self, engine: Engine) -> None:
        """Register the epoch-start, iteration and epoch-end callbacks on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._publish)

    def _reset(self, engine: Engine) -> None:
        self._sums = {k: 0.0 for k in self.keys}
        self._count = 0

    def _record(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, dict) and CommonKeys.LOSS in output and output[CommonKeys.LOSS] is None:
            return  # a skipped batch (no scan of it loaded): the loss function's last components are stale
        parts = getattr(self.loss_fn, "last_components", {}) or {}
        values = {k: float(parts[k].mean()) for k in self.keys if k in parts}
        if not values:
            return
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        if isinstance(engine.state.output, dict):
            engine.state.output.update(values)

    def _publish(self, engine: Engine) -> None:
        if self._count:
            for k, total in self._sums.items():
                engine.state.metrics[self.prefix + k] = total / self._count
