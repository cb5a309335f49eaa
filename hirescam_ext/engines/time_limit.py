"""Stop training after a time budget, at the end of an epoch (after its validation and checkpoint).

A shared cluster slot, a lent GPU or a CI job gives training a fixed number of minutes. Killing the process at the
limit loses the evaluation that should follow; :class:`TrainingTimeLimit` ends the Ignite run cleanly instead, at
the last epoch boundary that fits: after an epoch, when the time spent plus one more epoch (the slowest so far)
would pass the budget, the trainer terminates, so validation, ``best.pt`` and ``last.pt`` of the finished epochs
are all there and the bundle's evaluation can run next.

Example:
    >>> TrainingTimeLimit(seconds=600).attach(trainer)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time

from ignite.engine import Engine, Events

__all__ = ["TrainingTimeLimit"]

logger = logging.getLogger(__name__)


class TrainingTimeLimit:
    """Terminate the trainer at an epoch boundary so that the run ends within ``seconds`` (``None``: no limit).

    Attach it after the validation and checkpoint handlers (the end of ``train#handlers``): Ignite calls
    ``EPOCH_COMPLETED`` handlers in the order they were attached.

    Args:
        seconds: the training budget in seconds, counted from the start of the run; ``None`` or ``<= 0`` disables.

    Attributes:
        stopped_early: whether the limit ended the run before ``max_epochs``.
    """

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = float(seconds) if seconds is not None and float(seconds) > 0 else None
        self.stopped_early = False
        self._start = 0.0
        self._epoch_start = 0.0
        self._slowest = 0.0

    def attach(self, engine: Engine) -> None:
        if self.seconds is None:
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()

    def _epoch_started(self, engine: Engine) -> None:
        self._epoch_start = time.perf_counter()

    def _epoch_completed(self, engine: Engine) -> None:
        now = time.perf_counter()
        self._slowest = max(self._slowest, now - self._epoch_start)
        if engine.state.epoch >= engine.state.max_epochs:
            return
        if now - self._start + self._slowest > self.seconds:
            self.stopped_early = True
            logger.warning(
                "training time limit of %.0f s: stopping after epoch %d of %d (%.0f s spent, an epoch takes up to "
                "%.0f s)", self.seconds, engine.state.epoch, engine.state.max_epochs, now - self._start,
                self._slowest,
            )
            engine.terminate()
