"""Stop training on a non-finite loss before it reaches the weights."""

from __future__ import annotations

import logging
from typing import Any

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

__all__ = ["NonFiniteLossError", "NonFiniteLossGuard", "describe_batch"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the batch."""


def describe_batch(batch: Any) -> str:
    """Names of the scans in a batch: accessions when present, else the image file names."""
    if not isinstance(batch, dict):
        return "<unnamed batch>"
    names = batch.get("accession")
    if names is None:
        image = batch.get(CommonKeys.IMAGE)
        meta = getattr(image, "meta", None) or {}
        names = meta.get("filename_or_obj")
    if names is None:
        return "<unnamed batch>"
    if isinstance(names, (list, tuple)):
        return ", ".join(str(n) for n in names)
    return str(names)


class NonFiniteLossGuard:
    """Raise :class:`NonFiniteLossError` as soon as the loss is NaN/inf, before backward and the optimizer step.

    MONAI trainers fire ``IterationEvents.LOSS_COMPLETED`` between the loss and the backward pass, so the weights
    (and the last checkpoint on disk) are never touched by the bad batch.

    Example:
        >>> NonFiniteLossGuard().attach(trainer)  # doctest: +SKIP
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = engine.state.output.get(CommonKeys.LOSS) if isinstance(engine.state.output, dict) else None
        if loss is None:
            return
        if not bool(torch.isfinite(torch.as_tensor(loss).detach()).all()):
            where = describe_batch(engine.state.batch)
            msg = (
                f"non-finite training loss ({float(torch.as_tensor(loss).detach().float().mean())}) at epoch "
                f"{engine.state.epoch}, iteration {engine.state.iteration}, batch [{where}]; training stopped before "
                "the optimizer step: the parameters and the last checkpoint on disk are unchanged. Check this scan's "
                "intensities, lower the learning rate, or turn off AMP."
            )
            logger.error(msg)
            raise NonFiniteLossError(msg)
