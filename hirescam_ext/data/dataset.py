"""Dataset factory: no cache, in-memory cache or on-disk cache of the deterministic preprocessing prefix.

Decoding and resampling a full-size CT costs far more than the random augmentation of the HiResCAM paper
(Draelos & Carin, arXiv:2011.08891), so epochs after the first should skip it. MONAI's ``CacheDataset`` (memory)
and ``PersistentDataset`` (disk) run the transforms up to the first random one once and cache the result; the
paper's :class:`~hirescam_ext.transforms.augmentation.RandFlipRot90d` therefore has to come after the
deterministic preprocessing in the ``Compose``. ``PersistentDataset`` in MONAI 1.6.1 reloads with
``weights_only=True``: cached items may only hold tensors (``MetaTensor`` included) and plain Python values.

Example:
    >>> ds = make_dataset(items, transform, cache="disk", cache_dir="cache/")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.transforms import Compose
from monai.utils import convert_to_tensor

from hirescam_ext.data.failures import failed_item, is_failed_item

__all__ = [
    "CACHE_MODES",
    "make_cache_safe",
    "SafePersistentDataset",
    "SkipFailuresCacheDataset",
    "SkipFailuresDataset",
    "SkipFailuresPersistentDataset",
    "make_dataset",
]

CACHE_MODES = ("none", "memory", "disk")


def make_cache_safe(obj: Any) -> Any:
    """Return ``obj`` with every value ``torch.load(weights_only=True)`` rejects turned into an accepted one.

    NumPy arrays become tensors, NumPy scalars Python numbers, enums their value, paths and sets strings and lists;
    ``MetaTensor`` metadata and applied-operation records are cleaned the same way (MONAI's readers put NumPy
    arrays there, which would make every disk-cache file unloadable and silently recomputed).
    """
    if isinstance(obj, MetaTensor):
        obj.meta = make_cache_safe(dict(obj.meta))
        obj.applied_operations = make_cache_safe(list(obj.applied_operations))
        return obj
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.as_tensor(obj.copy() if not obj.flags.writeable else obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Enum):
        return make_cache_safe(obj.value)
    if isinstance(obj, str):
        return str.__str__(obj) if type(obj) is not str else obj
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dict):
        return {make_cache_safe(k): make_cache_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(make_cache_safe(v) for v in obj)
    if isinstance(obj, (list, set, frozenset)):
        return [make_cache_safe(v) for v in obj]
    return obj


class SafePersistentDataset(PersistentDataset):
    """``PersistentDataset`` that stores ``MetaTensor`` metadata and cleans it so ``weights_only`` loading works."""

    def __init__(self, data: Sequence, transform: Callable | None, cache_dir: str | os.PathLike, **kwargs: Any):
        kwargs.setdefault("track_meta", True)
        super().__init__(data, transform, cache_dir=cache_dir, **kwargs)

    def _pre_transform(self, item_transformed: Any) -> Any:
        # a freshly computed item takes the form a cache hit reloads (MONAI saves it through ``convert_to_tensor``,
        # which turns plain tensors into MetaTensors): otherwise a batch that mixes hits and misses, as in an epoch
        # over a cache another run is filling or one an interrupted epoch left half full, cannot be collated
        item = make_cache_safe(super()._pre_transform(item_transformed))
        return convert_to_tensor(item, convert_numeric=False, track_meta=self.track_meta)

    def _cache_file(self, item_transformed: Any) -> Path | None:
        if self.cache_dir is None:
            return None
        return Path(self.cache_dir) / f"{self.hash_func(item_transformed).decode('utf-8')}{self.transform_hash}.pt"

    def _cachecheck(self, item_transformed: Any) -> Any:
        """MONAI's cache lookup, plus: a cache file that does not load (truncated by a crash while it was copied
        into place) is deleted and recomputed instead of failing the epoch; other errors propagate unchanged."""
        try:
            return super()._cachecheck(item_transformed)
        except Exception:
            hashfile = self._cache_file(item_transformed)
            if hashfile is None or not hashfile.is_file():
                raise
            try:
                torch.load(hashfile, weights_only=self.weights_only)
            except Exception as exc:  # noqa: BLE001 - any unreadable cache file is rebuilt
                warnings.warn(f"unreadable cache file {hashfile} ({type(exc).__name__}); deleting and recomputing")
                hashfile.unlink(missing_ok=True)
                return super()._cachecheck(item_transformed)
            raise


class _FailuresAsReports:
    """Mixin for MONAI datasets: an item whose transforms raise becomes ``{"error": message, "source": path}``."""

    data: Sequence
    source_key: str = "image"

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - the failure becomes a report; the run continues
            return failed_item(self.data[index], exc, self.source_key)


class SkipFailuresDataset(_FailuresAsReports, Dataset):
    """``Dataset`` that returns ``{"error": message, "source": path}`` for an item whose transforms raise.

    Args:
        data: items (dictionaries); ``source_key`` names the scan in the report.
        transform: the loading/preprocessing transform.
        source_key: item key that identifies the scan (default ``"image"``, the input path).
    """

    def __init__(self, data: Sequence, transform: Callable | None = None, source_key: str = "image") -> None:
        super().__init__(data, transform)
        self.source_key = source_key


class SkipFailuresCacheDataset(_FailuresAsReports, CacheDataset):
    """``CacheDataset`` whose failing items become reports, both while the cache is filled (at construction) and
    in the random transforms after it. The report of a failed item is what the cache holds for it, so the item is
    loaded (and reported) once.

    Args:
        data: items (dictionaries).
        transform: a ``Compose`` (deterministic prefix cached, the rest run per access).
        source_key: item key that identifies the scan.
        kwargs: everything ``CacheDataset`` takes.
    """

    def __init__(self, data: Sequence, transform: Callable, source_key: str = "image", **kwargs: Any) -> None:
        self.source_key = source_key
        super().__init__(data, transform, **kwargs)

    def _load_cache_item(self, idx: int) -> Any:
        try:
            return super()._load_cache_item(idx)
        except Exception as exc:  # noqa: BLE001 - a scan that does not load is cached as its report
            return failed_item(self.data[idx], exc, self.source_key)

    def _cached(self, index: int) -> Any:
        """The cache entry of ``index`` (``None`` when it is not cached or not computed yet)."""
        if self._cache is None or not len(self):
            return None
        if self.hash_as_key:
            key = self.hash_func(self.data[index])
            return self._cache[self._hash_keys.index(key)] if key in self._hash_keys else None
        return self._cache[index % len(self)] if index % len(self) < self.cache_num else None

    def _transform(self, index: int) -> Any:
        cached = self._cached(index)
        if is_failed_item(cached):
            return dict(cached)
        return super()._transform(index)  # a failing random transform also becomes a report (the mixin)


class SkipFailuresPersistentDataset(_FailuresAsReports, SafePersistentDataset):
    """:class:`SafePersistentDataset` whose failing items become reports; a failure is not cached, so a scan that
    was fixed is loaded again on the next access.

    Args:
        data: items (dictionaries).
        transform: a ``Compose``.
        cache_dir: folder of the disk cache.
        source_key: item key that identifies the scan.
        kwargs: everything ``PersistentDataset`` takes.
    """

    def __init__(
        self,
        data: Sequence,
        transform: Callable | None,
        cache_dir: str | os.PathLike,
        source_key: str = "image",
        **kwargs: Any,
    ) -> None:
        super().__init__(data, transform, cache_dir=cache_dir, **kwargs)
        self.source_key = source_key


def make_dataset(
    data: Sequence[dict],
    transform: Callable | None,
    cache: str = "none",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = 0,
    cache_rate: float = 1.0,
    progress: bool = False,
    skip_failures: bool = False,
    source_key: str = "image",
) -> Dataset:
    """Return a ``Dataset`` (``"none"``), ``CacheDataset`` (``"memory"``) or :class:`SafePersistentDataset`
    (``"disk"``).

    Args:
        data: items of a data list (see :func:`hirescam_ext.data.datalist.load_datalist`).
        transform: deterministic preprocessing followed by random augmentation.
        cache: ``"none"``, ``"memory"`` or ``"disk"``.
        cache_dir: folder of the disk cache (required for ``"disk"``; created if missing).
        num_workers: threads filling the memory cache (``None``/0/1: one thread).
        cache_rate: fraction of items kept in the memory cache.
        progress: show a progress bar while filling the memory cache.
        skip_failures: an item whose transforms raise (missing or truncated file, a volume our checks refuse)
            becomes ``{"error": message, "source": path}`` instead of an exception, with every cache mode (the
            memory cache holds the report); collate with
            :func:`hirescam_ext.data.failures.collate_skipping_failures` and report with
            :class:`hirescam_ext.engines.FailedItemsHandler`.
        source_key: item key that names the scan in a report.
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
    data = list(data)
    if isinstance(transform, Compose):
        # MONAI caches up to the first Randomizable transform and a nested Compose counts as one: flatten it so
        # the cache reaches the end of the deterministic prefix (for example ct_preprocessing inside a Compose).
        transform = transform.flatten()
    skip = {"source_key": source_key} if skip_failures else {}
    if cache == "none":
        return SkipFailuresDataset(data, transform, **skip) if skip_failures else Dataset(data, transform)
    if cache == "memory":
        return (SkipFailuresCacheDataset if skip_failures else CacheDataset)(
            data,
            transform,
            cache_rate=cache_rate,
            num_workers=max(1, int(num_workers or 1)),
            progress=progress,
            copy_cache=True,
            **skip,
        )
    if cache_dir is None:
        raise ValueError("cache='disk' needs a cache_dir")
    os.makedirs(cache_dir, exist_ok=True)
    return (SkipFailuresPersistentDataset if skip_failures else SafePersistentDataset)(
        data, transform, cache_dir=cache_dir, **skip
    )
