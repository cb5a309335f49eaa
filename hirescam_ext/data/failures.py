"""Failed items: a scan that cannot be loaded or preprocessed becomes a small report instead of an exception.

A dataset built with ``make_dataset(..., skip_failures=True)`` returns ``{"error": message, "source": path}`` for
an item whose transforms raise. :func:`collate_skipping_failures` keeps such reports out of the collated tensors:
the good items of a batch are collated as usual and the reports ride along under :data:`FAILED_ITEMS_KEY`; a batch
without any good item becomes ``{"error": [...], "source": [...]}``, the form
:class:`hirescam_ext.engines.ExplanationEvaluator` and the trainer skip. The reports are read in the main process
by :class:`hirescam_ext.engines.FailedItemsHandler`, which logs, records and limits them.

Example:
    >>> batch = collate_skipping_failures([{"x": 1}, {"error": "bad.nii.gz: empty file", "source": "bad.nii.gz"}])
    >>> batch["x"], batch[FAILED_ITEMS_KEY]
    (tensor([1]), [{'source': 'bad.nii.gz', 'error': 'bad.nii.gz: empty file'}])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai.data import list_data_collate

from hirescam_ext.utils.errors import error_message

__all__ = [
    "ERROR_KEY",
    "FAILED_ITEMS_KEY",
    "SOURCE_KEY",
    "collate_skipping_failures",
    "failed_item",
    "failures_in_batch",
    "is_failed_item",
]

logger = logging.getLogger(__name__)

#: key of the message of an item (or of a batch without good items) that failed to load
ERROR_KEY = "error"
#: key of the scan that failed (its input path)
SOURCE_KEY = "source"
#: batch key of the ``[{"source", "error"}, ...]`` reports of the items a collated batch lost
FAILED_ITEMS_KEY = "failed_items"


def is_failed_item(item: Any) -> bool:
    """True for the ``{"error": message, "source": path}`` report of an item that failed to load."""
    return isinstance(item, Mapping) and item.get(ERROR_KEY) is not None


def failed_item(item: Any, exc: BaseException, source_key: str = "image") -> dict[str, str]:
    """The report of ``item`` whose transforms raised ``exc``: ``{"error": message, "source": path}``.

    Args:
        item: the data-list item (its ``source_key`` entry names the scan).
        exc: the exception; the message is the first ``InputError`` of its chain (see
            :func:`hirescam_ext.utils.errors.error_message`).
        source_key: item key that identifies the scan.
    """
    source = item.get(source_key) if isinstance(item, Mapping) else None
    source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else str(source)
    message = error_message(exc)
    logger.debug("item %s failed: %s", source, message)
    return {ERROR_KEY: message, SOURCE_KEY: source}


def failures_in_batch(batch: Any) -> list[tuple[str, str]]:
    """``[(source, message), ...]`` of the failed items a batch carries (none for a batch of good items).

    Reads both the reports of a partly failed batch (:data:`FAILED_ITEMS_KEY`) and a batch without any good item
    (``{"error": [...], "source": [...]}``, also what the default collate makes of one report).
    """
    if not isinstance(batch, Mapping):
        return []
    found = [(str(f.get(SOURCE_KEY)), str(f.get(ERROR_KEY))) for f in batch.get(FAILED_ITEMS_KEY) or []]
    errors = batch.get(ERROR_KEY)
    if errors is not None:
        sources = batch.get(SOURCE_KEY)
        errors = list(errors) if isinstance(errors, (list, tuple)) else [errors]
        sources = list(sources) if isinstance(sources, (list, tuple)) else [sources] * len(errors)
        found += [(str(s), str(e)) for s, e in zip(sources, errors)]
    return found


def collate_skipping_failures(batch: Sequence[Any]) -> Any:
    """``collate_fn`` that collates the good items of ``batch`` and sets the failed ones aside.

    Returns MONAI's ``list_data_collate`` of the good items, with the reports of the failed ones as a list under
    :data:`FAILED_ITEMS_KEY` when there are any; ``{"error": [...], "source": [...]}`` when no item is good.
    """
    good = [item for item in batch if not is_failed_item(item)]
    bad = [{SOURCE_KEY: item.get(SOURCE_KEY), ERROR_KEY: item[ERROR_KEY]} for item in batch if is_failed_item(item)]
    if not good:
        return {ERROR_KEY: [b[ERROR_KEY] for b in bad], SOURCE_KEY: [b[SOURCE_KEY] for b in bad]}
    collated = list_data_collate(good)
    if bad:
        if not isinstance(collated, dict):
            raise TypeError(f"failed items can only be set aside in batches of dictionaries, got {type(collated)}")
        collated[FAILED_ITEMS_KEY] = bad
    return collated
