"""Training and validation skip a scan that fails to load, report it once, and stop when too many fail.

House rule for batch jobs: skip the bad item, report it, finish the rest. For training this needs three pieces:

* the datasets turn a failing item into ``{"error": message, "source": path}``
  (``make_dataset(..., skip_failures=True)``) and the loader collates the good items of a batch only
  (:func:`hirescam_ext.data.failures.collate_skipping_failures`);
* :class:`FaultTolerantTrainer` trains on what is left of a batch and skips a batch without any good item (no
  forward pass, no optimizer step); :class:`~hirescam_ext.engines.ExplanationEvaluator` does the same for
  validation and keeps such batches out of its metrics;
* :class:`FailedItemsHandler` (one per engine, sharing a :class:`FailureLog`) logs a warning naming the scan and the
  reason the first time it fails, lists it once in ``training_failures.csv`` (``scan,split,reason``, written
  atomically) and raises :class:`TooManyFailedItemsError` when more than ``max_failed_fraction`` of a split failed:
  silently training on a small subset would be worse than stopping.

Example:
    >>> log = FailureLog("outputs/training_failures.csv")  # doctest: +SKIP
    >>> FailedItemsHandler(log, split="training", max_failed_fraction=0.1).attach(trainer)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.utils import CommonKeys

from hirescam_ext.data.failures import ERROR_KEY, FAILED_ITEMS_KEY, SOURCE_KEY, failures_in_batch, is_failed_item
from hirescam_ext.utils.io import write_text_atomic

__all__ = [
    "FAILURE_COLUMNS",
    "FailedItemsHandler",
    "FailureLog",
    "FaultTolerantTrainer",
    "TooManyFailedItemsError",
    "loss_value",
]

logger = logging.getLogger(__name__)

#: columns of ``training_failures.csv``
FAILURE_COLUMNS = ("scan", "split", "reason")


class TooManyFailedItemsError(RuntimeError):
    """More than ``max_failed_fraction`` of a split's scans failed to load; the message lists the first ones."""


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _rank() -> int:
    return torch.distributed.get_rank() if _distributed() else 0


def loss_value(output: Any) -> float | None:
    """``float(output["loss"])``, or ``None`` for a skipped iteration (MONAI's stats handlers then log nothing).

    Use it as ``output_transform`` of iteration-level loss logging.
    """
    loss = output.get(CommonKeys.LOSS) if isinstance(output, Mapping) else None
    return None if loss is None else float(torch.as_tensor(loss).detach().float().mean())


class FailureLog:
    """The scans that failed, one row per ``(scan, split)`` whatever the number of epochs, kept in a CSV file.

    Args:
        path: the CSV file (``scan,split,reason``), rewritten atomically on every new failure and at the end of
            every epoch (only by the first process of a distributed run); ``None`` keeps the list in memory.
        resume: keep the rows of an existing file (a resumed run); otherwise an old file is replaced by this run's
            list at its first write.
    """

    def __init__(self, path: str | os.PathLike | None, resume: bool = False) -> None:
        self.path = None if path is None else os.fspath(path)
        self.rows: dict[tuple[str, str], str] = {}
        self._written: dict[tuple[str, str], str] | None = None
        if resume and self.path is not None and os.path.isfile(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    if row.get("scan") and row.get("split"):
                        self.rows[(row["scan"], row["split"])] = row.get("reason") or ""

    def record(self, scan: str, split: str, reason: str) -> bool:
        """Add a failure; ``True`` when ``(scan, split)`` is new (the first reason is kept)."""
        key = (str(scan), str(split))
        if key in self.rows:
            return False
        self.rows[key] = str(reason)
        return True

    def failed(self, split: str) -> list[tuple[str, str]]:
        """``[(scan, reason), ...]`` of ``split`` in the order they were recorded."""
        return [(scan, reason) for (scan, s), reason in self.rows.items() if s == split]

    def merge(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Add ``(scan, split, reason)`` rows (those of the other processes of a distributed run)."""
        for scan, split, reason in rows:
            self.record(scan, split, reason)

    def as_rows(self) -> list[tuple[str, str, str]]:
        """``[(scan, split, reason), ...]``."""
        return [(scan, split, reason) for (scan, split), reason in self.rows.items()]

    def write(self) -> None:
        """Write the CSV atomically when there is a path, this is the first process and the rows changed."""
        if self.path is None or _rank() != 0 or self._written == self.rows:
            return
        if not self.rows and self._written is None and not os.path.exists(self.path):
            return  # nothing failed: no file
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(FAILURE_COLUMNS)
        writer.writerows(self.as_rows())
        write_text_atomic(self.path, text.getvalue())
        self._written = dict(self.rows)


class FailedItemsHandler:
    """Ignite handler: log, record and limit the scans of one split that failed to load.

    At ``ITERATION_STARTED`` it takes the reports out of the batch (see
    :func:`hirescam_ext.data.failures.failures_in_batch`), logs a warning naming the scan and the reason the first
    time a scan fails, records it in ``log`` and rewrites the CSV. At ``EPOCH_COMPLETED`` it gathers the failures
    of all processes (distributed runs) and writes the CSV again. Attach it before the validation and checkpoint
    handlers so a run that has to stop does it before saving.

    Args:
        log: the shared :class:`FailureLog` (one for training and validation).
        split: name of the split in the CSV and messages (``"training"``, ``"validation"``).
        max_failed_fraction: raise :class:`TooManyFailedItemsError` as soon as more than this fraction of the
            split's items failed (checked after each failure, and after each epoch in distributed runs);
            ``None`` disables the limit.
        total: number of items of the split; ``None`` takes ``len(engine.data_loader.dataset)``.
        max_listed: number of failures listed in the error message.
    """

    def __init__(
        self,
        log: FailureLog,
        split: str = "training",
        max_failed_fraction: float | None = 0.1,
        total: int | None = None,
        max_listed: int = 10,
    ) -> None:
        if max_failed_fraction is not None and not 0.0 <= float(max_failed_fraction) <= 1.0:
            raise ValueError(f"max_failed_fraction must be in [0, 1] or None, got {max_failed_fraction}")
        self.log = log
        self.split = split
        self.max_failed_fraction = None if max_failed_fraction is None else float(max_failed_fraction)
        self.total = total
        self.max_listed = max_listed

    def attach(self, engine: Engine) -> None:
        """Register the iteration-start and epoch-end callbacks on ``engine``."""
        engine.add_event_handler(Events.ITERATION_STARTED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def collect(self, engine: Engine) -> None:
        """Record the failures of ``engine.state.batch`` and drop their reports from a partly failed batch."""
        batch = engine.state.batch
        failures = failures_in_batch(batch)
        if isinstance(batch, dict):
            batch.pop(FAILED_ITEMS_KEY, None)
        if not failures:
            return
        new = False
        for source, reason in failures:
            if reason.startswith(f"{source}: "):
                reason = reason[len(source) + 2 :]  # the scan has its own column
            if self.log.record(source, self.split, reason):
                new = True
                where = f" (listed in {self.log.path})" if self.log.path else ""
                logger.warning("skipping %s scan %s: %s%s", self.split, source, reason, where)
        if new:
            self.log.write()
            if not _distributed():
                self.check(engine)

    def epoch_completed(self, engine: Engine) -> None:
        """Gather the failures of every process, write the CSV and apply the limit."""
        if _distributed():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, self.log.as_rows())
            for rows in gathered:
                self.log.merge(rows or [])
        self.log.write()
        self.check(engine)

    def _total(self, engine: Engine) -> int | None:
        if self.total is not None:
            return int(self.total)
        loader = getattr(engine, "data_loader", None) or getattr(engine.state, "dataloader", None)
        try:
            return len(loader.dataset)  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            return None

    def check(self, engine: Engine) -> None:
        """Raise :class:`TooManyFailedItemsError` when more than ``max_failed_fraction`` of the split failed."""
        total = self._total(engine)
        failed = self.log.failed(self.split)
        if self.max_failed_fraction is None or not total or len(failed) <= self.max_failed_fraction * total:
            return
        listed = "\n".join(f"  {scan}: {reason}" for scan, reason in failed[: self.max_listed])
        more = f"\n  ... and {len(failed) - self.max_listed} more" if len(failed) > self.max_listed else ""
        where = f" (all listed in {self.log.path})" if self.log.path else ""
        msg = (
            f"{len(failed)} of {total} {self.split} scans failed to load, more than max_failed_fraction="
            f"{self.max_failed_fraction:g}{where}; stopping rather than training on what is left. Fix or remove "
            f"them from the data list, or raise max_failed_fraction. First failures:\n{listed}{more}"
        )
        logger.error(msg)
        raise TooManyFailedItemsError(msg)


class FaultTolerantTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` that trains on the good items of a batch and skips a batch without any.

    A batch that lost some items (reports under ``failed_items``, see
    :func:`hirescam_ext.data.failures.collate_skipping_failures`) trains on the rest as usual. A batch without any
    good item (``{"error": [...], "source": [...]}``) is skipped: no forward pass, no optimizer step; the
    iteration's output is ``{"loss": None, "error": [...], "source": [...]}`` (log losses with
    :func:`loss_value`, which gives ``None`` for it). Pair it with :class:`FailedItemsHandler`, which reports them.

    In a distributed run every process has to take part in each gradient exchange, so a process whose batch has no
    good item stops with an error naming the scans instead of waiting forever (use a batch size above 1 there).

    Args:
        args, kwargs: everything ``SupervisedTrainer`` takes.
    """

    def _iteration(self, engine: SupervisedTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore
        if is_failed_item(batchdata):
            if _distributed():
                names = ", ".join(f"{s}: {e}" for s, e in failures_in_batch(batchdata))
                raise TooManyFailedItemsError(
                    f"no scan of this process's batch loaded ({names}); a distributed run cannot skip a whole batch "
                    "(the other processes wait for its gradients): fix or remove these scans, or use a batch size "
                    "above 1"
                )
            engine.state.output = {
                CommonKeys.LOSS: None,
                ERROR_KEY: batchdata[ERROR_KEY],
                SOURCE_KEY: batchdata.get(SOURCE_KEY),
            }
            return engine.state.output
        if isinstance(batchdata, Mapping) and FAILED_ITEMS_KEY in batchdata:
            batchdata = {k: v for k, v in batchdata.items() if k != FAILED_ITEMS_KEY}
        return super()._iteration(engine, batchdata)
