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

__all__ = ["CACHE_MODES", "make_cache_safe", "SafePersistentDataset", "make_dataset"]

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
        return make_cache_safe(super()._pre_transform(item_transformed))

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


def make_dataset(
    data: Sequence[dict],
    transform: Callable | None,
    cache: str = "none",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = 0,
    cache_rate: float = 1.0,
    progress: bool = False,
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
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
    data = list(data)
    if isinstance(transform, Compose):
        # MONAI caches up to the first Randomizable transform and a nested Compose counts as one: flatten it so
        # the cache reaches the end of the deterministic prefix (for example ct_preprocessing inside a Compose).
        transform = transform.flatten()
    if cache == "none":
        return Dataset(data, transform)
    if cache == "memory":
        return CacheDataset(
            data,
            transform,
            cache_rate=cache_rate,
            num_workers=max(1, int(num_workers or 1)),
            progress=progress,
            copy_cache=True,
        )
    if cache_dir is None:
        raise ValueError("cache='disk' needs a cache_dir")
    os.makedirs(cache_dir, exist_ok=True)
    return SafePersistentDataset(data, transform, cache_dir=cache_dir)
