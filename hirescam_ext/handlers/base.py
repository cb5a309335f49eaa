"""Shared plumbing of this package's Ignite metric handlers: accumulate with a cumulative metric, publish details.

MONAI's ``IgniteMetricHandler`` forwards ``(y_pred, y)`` only; the handlers here take their inputs from the engine's
output (falling back to its batch), keep the full aggregated result, and publish it to
``engine.state.metric_details[name]`` and, when asked, to a JSON file.
"""

from __future__ import annotations

import os
from typing import Any

from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced

from hirescam_ext.utils.io import write_json_atomic

__all__ = ["DetailedMetricHandler"]


class DetailedMetricHandler(Metric):
    """Base class: subclasses set ``self.metric`` (a cumulative metric with ``reset``/``aggregate``) and implement
    :meth:`extract` (engine -> update input), :meth:`update` and :meth:`value` (aggregated result -> float).

    Args:
        output_transform: ``None`` uses :meth:`extract`; a callable receives ``engine.state.output``.
        save_details: store ``result.to_dict()`` in ``engine.state.metric_details[name]``.
        details_path: also write it there as JSON (atomically) at every computation.
        device: Ignite metric device.
    """

    def __init__(
        self,
        output_transform: Any = None,
        save_details: bool = True,
        details_path: str | os.PathLike | None = None,
        device: Any = "cpu",
    ) -> None:
        self.user_transform = output_transform
        self.save_details = save_details
        self.details_path = details_path
        self.last_result: Any = None
        self._engine: Engine | None = None
        self._name: str | None = None
        self._updated = False
        super().__init__(output_transform=lambda x: x, device=device)

    # ------------------------------------------------------------------ for subclasses
    def extract(self, engine: Engine) -> Any:
        """The input of :meth:`update` found in ``engine.state.output`` / ``engine.state.batch``."""
        raise NotImplementedError

    def value(self, result: Any) -> float:
        """The scalar metric value of an aggregated result."""
        raise NotImplementedError

    def on_result(self, result: Any) -> None:
        """Hook after each aggregation (warnings, extra files)."""

    # ------------------------------------------------------------------ Ignite Metric API
    @reinit__is_reduced
    def reset(self) -> None:
        self.metric.reset()
        self._updated = False

    def iteration_completed(self, engine: Engine) -> None:
        """Extract the inputs from the engine (see ``output_transform``) and update."""
        if self.user_transform is not None:
            self.update(self.user_transform(engine.state.output))
        else:
            self.update(self.extract(engine))

    def compute(self) -> float:
        if not self._updated:
            raise NotComputableError(f"{type(self).__name__} must have at least one update before compute")
        result = self.metric.aggregate()
        self.last_result = result
        self.on_result(result)
        details = result.to_dict()
        if self.save_details and self._engine is not None and self._name is not None:
            if not hasattr(self._engine.state, "metric_details"):
                self._engine.state.metric_details = {}  # type: ignore[attr-defined]
            self._engine.state.metric_details[self._name] = details  # type: ignore[attr-defined]
        if self.details_path is not None:
            write_json_atomic(self.details_path, details)
        return self.value(result)

    def attach(self, engine: Engine, name: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Attach to ``engine`` under ``name`` and remember both for ``metric_details``."""
        super().attach(engine, name, *args, **kwargs)
        self._engine, self._name = engine, name
        if self.save_details and not hasattr(engine.state, "metric_details"):
            engine.state.metric_details = {}  # type: ignore[attr-defined]
