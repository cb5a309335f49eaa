"""A dataset that reports a scan that fails to load instead of stopping the whole run."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from monai.data import Dataset

from hirescam_ext.utils.errors import error_message

__all__ = ["SkipBadItems", "error_message"]

logger = logging.getLogger(__name__)


class SkipBadItems(Dataset):
    """``Dataset`` whose failing items become ``{"error": message, "source": path}`` instead of exceptions.

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

    def __init__(self, data: Sequence[dict], transform: Callable | None = None, source_key: str = "image") -> None:
        super().__init__(data=data, transform=transform)
        self.source_key = source_key

    def _transform(self, index: int) -> Any:
        item = self.data[index]
        try:
            return super()._transform(index)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a report; the run continues
            source = item.get(self.source_key) if isinstance(item, dict) else None
            source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else str(source)
            message = error_message(exc)
            logger.warning("skipping %s: %s", source, message)
            return {"error": message, "source": source}
