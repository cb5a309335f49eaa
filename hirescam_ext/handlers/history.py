"""Keep a training run's learning curve: one JSON line per epoch with the training and validation metrics.

A run's checkpoints keep its best and last weights, and TensorBoard its curves, but a run started without
TensorBoard (``hirescam reproduce`` switches it off) or read by a script needs the curve as plain data: after each
epoch this handler appends the epoch's training metrics (``class_loss``, ``mask_loss``) and, when the epoch was
validated, the validation metrics (``val_loss``, ``val_mean_auroc``) to a JSON Lines file.

Example:
    >>> history = TrainingHistory("outputs/history.jsonl", evaluator=evaluator)  # doctest: +SKIP
    >>> history.attach(trainer)  # doctest: +SKIP
    >>> read_history("outputs/history.jsonl")[-1]["val_mean_auroc"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["TrainingHistory", "read_history"]


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are finite scalars, as JSON numbers (the rest is left out)."""
    out = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[name] = number
    return out


class TrainingHistory:
    """Append ``{"epoch", "seconds", <training metrics>, <validation metrics>}`` to ``path`` after every epoch.

    Attach it to the trainer after the validation handler (handlers run in attach order at ``EPOCH_COMPLETED``), so
    an epoch's line holds the validation that ran at its end. An epoch that was not validated (``val_interval`` > 1)
    has training metrics only. A fresh run (the trainer starts at epoch 0) starts a new file; a resumed run keeps the
    lines of the epochs it resumes after and drops later ones (an epoch that was interrupted and is trained again).
    In a distributed run only rank 0 writes.

    Args:
        path: the JSON Lines file (its folder is created).
        evaluator: the validation engine (``None``: training metrics only).
    """

    def __init__(self, path: str | os.PathLike, evaluator: Engine | None = None) -> None:
        self.path = Path(path)
        self.evaluator = evaluator
        self._validated = False
        self._epoch_started = 0.0

    def attach(self, engine: Engine) -> None:
        """Register the callbacks on the trainer ``engine`` (and the evaluator's completion)."""
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_start)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_end)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._mark_validated)

    @staticmethod
    def _writer() -> bool:
        import torch.distributed as dist

        return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)

    def _start(self, engine: Engine) -> None:
        if not self._writer():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        resumed_after = int(engine.state.epoch)  # 0 for a fresh run
        kept = [e for e in read_history(self.path) if 0 < e.get("epoch", 0) <= resumed_after]
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in kept)

    def _epoch_start(self, engine: Engine) -> None:
        self._validated = False
        self._epoch_started = time.perf_counter()

    def _mark_validated(self, evaluator: Engine) -> None:
        self._validated = True

    def _epoch_end(self, engine: Engine) -> None:
        if not self._writer():
            return
        entry: dict[str, Any] = {"epoch": int(engine.state.epoch),
                                 "seconds": round(time.perf_counter() - self._epoch_started, 3)}
        entry.update(_numbers(engine.state.metrics))
        if self._validated and self.evaluator is not None:
            entry.update(_numbers(self.evaluator.state.metrics))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of a :class:`TrainingHistory` file (``[]`` when it does not exist); a line cut short by a crash
    is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
