"""A dataset that reports a scan that fails to load instead of stopping the whole run."""

from __future__ import annotations

import logging
from typing import Any

from hirescam_ext.data.dataset import SkipFailuresDataset
from hirescam_ext.data.failures import ERROR_KEY, SOURCE_KEY, is_failed_item
from hirescam_ext.utils.errors import error_message

__all__ = ["SkipBadItems", "error_message"]

logger = logging.getLogger(__name__)


class SkipBadItems(SkipFailuresDataset):
    """:class:`~hirescam_ext.data.dataset.SkipFailuresDataset` that also logs a warning for each skipped scan.

    Batch jobs (inference over a folder of scans) then skip the bad scan, report it and finish the rest. Use it
    with ``batch_size=1`` so one bad scan never takes good ones down with it.

    Args:
        data: items (dictionaries); ``source_key`` names the scan in the report.
        transform: the loading/preprocessing transform.
        source_key: item key that identifies the scan (default ``"image"``, the input path).

    Example:
        >>> ds = SkipBadItems([{"image": "missing.nii.gz"}], transform=lambda d: open(d["image"]))
        >>> sorted(ds[0])
        ['error', 'source']
    """

    def _transform(self, index: int) -> Any:
        out = super()._transform(index)
        if is_failed_item(out):
            logger.warning("skipping %s: %s", out[SOURCE_KEY], out[ERROR_KEY])
        return out
