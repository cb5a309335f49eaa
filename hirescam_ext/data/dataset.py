"""Dataset factory: no cache, in-memory cache, on-disk cache or memory-mapped quantized cache of the deterministic
preprocessing prefix.

Decoding and resampling a full-size CT costs far more than the random augmentation of the HiResCAM paper
(Draelos & Carin, arXiv:2011.08891), so epochs after the first should skip it. MONAI's ``CacheDataset`` (memory)
and ``PersistentDataset`` (disk) run the transforms up to the first random one once and cache the result; the
paper's :class:`~hirescam_ext.transforms.augmentation.RandFlipRot90d` therefore has to come after the
deterministic preprocessing in the ``Compose``. ``PersistentDataset`` in MONAI 1.6.1 reloads with
``weights_only=True``: cached items may only hold tensors (``MetaTensor`` included) and plain Python values.

The ``"memmap"`` cache (:class:`MemmapPersistentDataset`) stores the windowed image in the training's storage dtype
(int16, or uint8 for a quarter of float32's bytes) as a ``.npy`` file read through a memory map, and the rest of the
item (label, allowed regions, metadata) in a small ``.pt`` file: at the paper's 420 x 420 x 405 a float32 item is
286 MB, an int16 one 143 MB (issue 15: the data side must deliver tens of volumes per second).

Example:
    >>> ds = make_dataset(items, transform, cache="disk", cache_dir="cache/")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import warnings
from copy import deepcopy
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
from hirescam_ext.utils.io import atomic_write

__all__ = [
    "CACHE_MODES",
    "CACHED_META_KEYS",
    "slim_cached_meta",
    "make_cache_safe",
    "SafePersistentDataset",
    "MemmapPersistentDataset",
    "quantize",
    "dequantize",
    "SkipFailuresCacheDataset",
    "SkipFailuresDataset",
    "SkipFailuresPersistentDataset",
    "SkipFailuresMemmapDataset",
    "make_dataset",
]

CACHE_MODES = ("none", "memory", "disk", "memmap")

#: the metadata a disk-cached ``MetaTensor`` keeps: its geometry and source file. A reader's header fields (a NIfTI
#: header is 38 small tensors) and the record of applied operations made most of a cache hit's time (a DataLoader
#: epoch of 64 x 64 x 48 items 2.4x slower with them: scripts/benchmark_cache_meta.py, docs/PERFORMANCE.md), and
#: nothing after the cache reads them: the disk caches serve training and its per-epoch validation (evaluation and
#: inference read the scans themselves). Without the record, a cached item cannot be inverted to its scan's grid.
CACHED_META_KEYS = ("affine", "original_affine", "spatial_shape", "space", "original_channel_dim", "filename_or_obj")

#: cache-file name suffix of the slim format: files cached with the full metadata (before it) are not mixed with these
#: in one batch, whose metadata could not be collated
CACHE_FORMAT = "-meta2"

#: storage dtypes of the ``"memmap"`` cache and their integer ranges
CACHE_DTYPES = {"int16": (-32768, 32767), "uint8": (0, 255)}


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


def slim_cached_meta(obj: Any) -> Any:
    """Return ``obj`` with every ``MetaTensor`` (at the top level or in a dictionary, list or tuple) keeping only the
    metadata in :data:`CACHED_META_KEYS` and no record of applied operations; tensors are not copied."""
    if isinstance(obj, MetaTensor):
        obj.meta = {k: v for k, v in obj.meta.items() if k in CACHED_META_KEYS}
        obj.applied_operations = []
        return obj
    if isinstance(obj, dict):
        return {k: slim_cached_meta(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(slim_cached_meta(v) for v in obj)
    return obj


#: the name of a cache file of the format before :data:`CACHE_FORMAT`: a hexadecimal item hash, then ``.pt`` (the disk
#: cache, the memmap cache's rest) or the memmap cache's voxels
_OLDER_CACHE_FILE = re.compile(r"[0-9a-f]{32,64}(\.pt|\.int16\.npy|\.uint8\.npy)")


def _warn_of_older_cache_files(cache_dir: str | os.PathLike | None) -> None:
    """Warn when ``cache_dir`` holds cache files of the format before :data:`CACHE_FORMAT` (never read again)."""
    if cache_dir is None or not os.path.isdir(cache_dir):
        return
    size, count = 0, 0
    for entry in os.scandir(cache_dir):
        if _OLDER_CACHE_FILE.fullmatch(entry.name):
            try:
                size, count = size + entry.stat().st_size, count + 1
            except OSError:  # removed meanwhile (another run cleaning up)
                continue
    if count:
        warnings.warn(f"{cache_dir}: {count} cache files ({size / 1e6:.0f} MB) of an older format are no longer read "
                      "(cached items now keep slim metadata; docs/PERFORMANCE.md); delete them to free the space")


class SafePersistentDataset(PersistentDataset):
    """``PersistentDataset`` that stores ``MetaTensor`` metadata and cleans it so ``weights_only`` loading works.

    Cached items keep only the metadata in :data:`CACHED_META_KEYS` (:func:`slim_cached_meta`); their files' names end
    in :data:`CACHE_FORMAT`.
    """

    def __init__(self, data: Sequence, transform: Callable | None, cache_dir: str | os.PathLike, **kwargs: Any):
        kwargs.setdefault("track_meta", True)
        super().__init__(data, transform, cache_dir=cache_dir, **kwargs)
        self.transform_hash = f"{self.transform_hash}{CACHE_FORMAT}"  # part of every cache file's name
        _warn_of_older_cache_files(self.cache_dir)

    def _pre_transform(self, item_transformed: Any) -> Any:
        # a freshly computed item takes the form a cache hit reloads (MONAI saves it through ``convert_to_tensor``,
        # which turns plain tensors into MetaTensors): otherwise a batch that mixes hits and misses, as in an epoch
        # over a cache another run is filling or one an interrupted epoch left half full, cannot be collated
        item = make_cache_safe(slim_cached_meta(super()._pre_transform(item_transformed)))
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


def quantize(x: torch.Tensor | np.ndarray, value_range: Sequence[float], dtype: str = "int16") -> np.ndarray:
    """Map ``x`` (values in ``value_range``, the HU window's output) linearly onto the whole range of ``dtype``.

    int16 keeps a step of ``(hi - lo) / 65535`` (0.03 HU for the paper's 1800 HU window), uint8 ``(hi - lo) / 255``
    (7 HU). :func:`dequantize` inverts it.

    Raises:
        ValueError: ``x`` has values outside ``value_range`` (more than one step) or non-finite values, or an
            unknown ``dtype``.

    Example:
        >>> q = quantize(np.array([-0.449, 0.051, 0.551]), (-0.449, 0.551), "uint8")
        >>> q.tolist(), [round(v, 3) for v in dequantize(q, (-0.449, 0.551)).tolist()]
        ([0, 127, 255], [-0.449, 0.049, 0.551])
    """
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"cache dtype must be one of {sorted(CACHE_DTYPES)}, got {dtype!r}")
    lo, hi = (float(v) for v in value_range)
    qmin, qmax = CACHE_DTYPES[dtype]
    values = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    values = values.astype(np.float32, copy=False)
    step = (hi - lo) / (qmax - qmin)
    if not np.isfinite(values).all() or values.min() < lo - step or values.max() > hi + step:
        found = (float(np.nanmin(values)), float(np.nanmax(values))) if np.isfinite(values).any() else "non-finite"
        raise ValueError(
            f"the memmap cache stores values in {[lo, hi]} (the HU window's output); the image has {found}: "
            "set cache_value_range to the preprocessing's output range or use cache='disk'"
        )
    q = np.rint((values - lo) / step) + qmin
    return np.clip(q, qmin, qmax).astype(dtype)


def dequantize(q: np.ndarray | torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """Float32 values of a :func:`quantize` result (the dtype says which integer range was used).

    A NumPy array (a memory map included) is converted in two passes into one new float32 array: at the paper's
    420 x 420 x 405 that takes about 60 ms on one CPU thread (``docs/PERFORMANCE.md``). A tensor stays on its device,
    so a batch can also be moved as int16 and converted on the GPU.
    """
    lo, hi = (float(v) for v in value_range)
    name = str(q.dtype).replace("torch.", "")
    if name not in CACHE_DTYPES:
        raise ValueError(f"not a quantized cache array: dtype {name}")
    qmin, qmax = CACHE_DTYPES[name]
    scale = (hi - lo) / (qmax - qmin)
    offset = lo - qmin * scale
    if isinstance(q, torch.Tensor):
        return q.to(torch.float32).mul_(scale).add_(offset)
    out = np.empty(q.shape, np.float32)
    np.multiply(q, np.float32(scale), out=out, casting="unsafe")
    out += np.float32(offset)
    return torch.from_numpy(out)


class MemmapPersistentDataset(SafePersistentDataset):
    """Disk cache whose image is stored quantized (int16 or uint8) in a memory-mappable ``.npy`` file.

    Per item, ``<hash>.pt`` holds everything but the image's voxels (label, allowed regions, the image's slim
    metadata: :data:`CACHED_META_KEYS`, no applied operations) and ``<hash>.<dtype>.npy`` the voxels, each written
    under a temporary name and renamed, the ``.pt`` last; the names end in ``-memmap`` (a disk cache in the same folder
    keeps its own files): an item is cached when both exist. A hit and a miss return the same values (a miss returns the
    dequantized image too), so a half-filled cache never changes what training sees. An unreadable pair is deleted
    and recomputed.

    Args:
        data: items (dictionaries).
        transform: a ``Compose``; its deterministic prefix is cached.
        cache_dir: folder of the cache.
        image_key: the key of the image to quantize.
        dtype: ``"int16"`` (default) or ``"uint8"``.
        value_range: ``(lo, hi)`` of the preprocessed image: the HU window's output, ``(center, center + 1)``.
        output: ``"float32"`` (the image is converted back in the DataLoader worker) or ``"stored"`` (it stays
            ``dtype``, so the batch is collated, pinned and copied at 2 or 1 bytes per voxel; the trainer's
            :class:`~hirescam_ext.engines.PrepareBatchWithRegions` with the same ``value_range`` converts it on the
            device).
        kwargs: everything ``PersistentDataset`` takes.

    Example:
        >>> ds = MemmapPersistentDataset(items, transform, "cache/", value_range=(-0.449, 0.551))  # doctest: +SKIP
    """

    def __init__(
        self,
        data: Sequence,
        transform: Callable | None,
        cache_dir: str | os.PathLike,
        image_key: str = "image",
        dtype: str = "int16",
        value_range: Sequence[float] = (-0.449, 0.551),
        output: str = "float32",
        **kwargs: Any,
    ) -> None:
        if output not in ("float32", "stored"):
            raise ValueError(f"output must be 'float32' or 'stored', got {output!r}")
        if dtype not in CACHE_DTYPES:
            raise ValueError(f"cache dtype must be one of {sorted(CACHE_DTYPES)}, got {dtype!r}")
        if len(value_range) != 2 or not float(value_range[0]) < float(value_range[1]):
            raise ValueError(f"value_range must be (lo, hi) with lo < hi, got {value_range!r}")
        super().__init__(data, transform, cache_dir=cache_dir, **kwargs)
        self.transform_hash += "-memmap"  # its .pt holds no image: never read as a "disk" item, nor one as its own
        self.image_key, self.cache_dtype, self.output = image_key, dtype, output
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def _files(self, item_transformed: Any) -> tuple[Path, Path] | None:
        pt = self._cache_file(item_transformed)
        return None if pt is None else (pt, pt.with_suffix(f".{self.cache_dtype}.npy"))

    def _restore(self, rest: dict, voxels: np.ndarray) -> dict:
        item = dict(rest)
        meta = item.pop("__image_meta__", {})
        ops = item.pop("__image_applied_operations__", [])
        if self.output == "stored":
            image = torch.from_numpy(np.array(voxels))  # reads the memory map once
        else:
            image = dequantize(voxels, self.value_range)  # reads the memory map once
        item[self.image_key] = MetaTensor(image, meta=meta, applied_operations=ops) if self.track_meta else image
        return item

    def _cachecheck(self, item_transformed: Any) -> Any:
        files = self._files(item_transformed)
        if files is not None and all(f.is_file() for f in files):
            pt, npy = files
            try:
                return self._restore(torch.load(pt, weights_only=True), np.load(npy, mmap_mode="r"))
            except Exception as exc:  # noqa: BLE001 - any unreadable cache entry is rebuilt
                warnings.warn(f"unreadable cache entry {pt} ({type(exc).__name__}: {exc}); deleting and recomputing")
                for f in files:
                    f.unlink(missing_ok=True)
        item = self._pre_transform(deepcopy(item_transformed))
        if not isinstance(item, dict) or self.image_key not in item:
            raise ValueError(f"the memmap cache needs dictionary items with {self.image_key!r}")
        image = item[self.image_key]
        voxels = quantize(image, self.value_range, self.cache_dtype)
        rest = {k: v for k, v in item.items() if k != self.image_key}
        if isinstance(image, MetaTensor):
            rest["__image_meta__"] = make_cache_safe(dict(image.meta))
            rest["__image_applied_operations__"] = make_cache_safe(list(image.applied_operations))
        rest = make_cache_safe(rest)
        if files is not None:
            pt, npy = files
            try:
                with atomic_write(npy) as tmp:
                    np.save(tmp, voxels)
                with atomic_write(pt) as tmp:
                    torch.save(rest, tmp)
            except PermissionError:  # a read-only cache folder: train without caching, as MONAI does
                pass
        return self._restore(rest, voxels)


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


class SkipFailuresMemmapDataset(_FailuresAsReports, MemmapPersistentDataset):
    """:class:`MemmapPersistentDataset` whose failing items become reports (not cached)."""

    def __init__(self, data: Sequence, transform: Callable | None, cache_dir: str | os.PathLike,
                 source_key: str = "image", **kwargs: Any) -> None:  # fmt: skip
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
    cache_dtype: str = "int16",
    cache_value_range: Sequence[float] = (-0.449, 0.551),
    cache_output: str = "float32",
) -> Dataset:
    """Return a ``Dataset`` (``"none"``), ``CacheDataset`` (``"memory"``), :class:`SafePersistentDataset`
    (``"disk"``) or :class:`MemmapPersistentDataset` (``"memmap"``).

    Args:
        data: items of a data list (see :func:`hirescam_ext.data.datalist.load_datalist`).
        transform: deterministic preprocessing followed by random augmentation.
        cache: ``"none"``, ``"memory"``, ``"disk"`` or ``"memmap"``. Items of the two disk caches keep only
            :data:`CACHED_META_KEYS` of their metadata and no record of applied operations (so they cannot be
            inverted to the scan's grid); ``"none"`` and ``"memory"`` keep everything.
        cache_dir: folder of the disk cache (required for ``"disk"`` and ``"memmap"``; created if missing).
        num_workers: threads filling the memory cache (``None``/0/1: one thread).
        cache_rate: fraction of items kept in the memory cache.
        progress: show a progress bar while filling the memory cache.
        skip_failures: an item whose transforms raise (missing or truncated file, a volume our checks refuse)
            becomes ``{"error": message, "source": path}`` instead of an exception, with every cache mode (the
            memory cache holds the report); collate with
            :func:`hirescam_ext.data.failures.collate_skipping_failures` and report with
            :class:`hirescam_ext.engines.FailedItemsHandler`.
        source_key: item key that names the scan in a report.
        cache_dtype: ``"memmap"``: the image's storage dtype, ``"int16"`` or ``"uint8"``.
        cache_value_range: ``"memmap"``: the preprocessed image's value range (the HU window's output,
            ``(center, center + 1)``).
        cache_output: ``"memmap"``: ``"float32"`` or ``"stored"`` (see :class:`MemmapPersistentDataset`).
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
        raise ValueError(f"cache={cache!r} needs a cache_dir")
    os.makedirs(cache_dir, exist_ok=True)
    if cache == "memmap":
        memmap = {"dtype": cache_dtype, "value_range": cache_value_range, "output": cache_output}
        if skip_failures:
            return SkipFailuresMemmapDataset(data, transform, cache_dir=cache_dir, **skip, **memmap)
        return MemmapPersistentDataset(data, transform, cache_dir=cache_dir, **memmap)
    return (SkipFailuresPersistentDataset if skip_failures else SafePersistentDataset)(
        data, transform, cache_dir=cache_dir, **skip
    )
