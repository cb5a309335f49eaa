"""cache="memmap": the preprocessed image is stored quantized (int16/uint8) in a memory-mappable .npy file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose, MapTransform

from hirescam_ext.data.dataset import MemmapPersistentDataset, dequantize, make_dataset, quantize
from hirescam_ext.data.failures import is_failed_item
from hirescam_ext.transforms import RandFlipRot90d

RANGE = (-0.449, 0.551)  # the bundle's HU window output: [0, 1] - 0.449


class WindowedLoad(MapTransform):
    """Deterministic stand-in for loading + windowing: a ramp in the window's range, counting its calls."""

    calls = 0

    def __call__(self, data):
        WindowedLoad.calls += 1
        d = dict(data)
        if d["value"] < 0:
            raise ValueError(f"scan{d['value']}.nii.gz: truncated file")
        ramp = torch.linspace(RANGE[0], RANGE[1], 4 * 4 * 6).reshape(1, 4, 4, 6)
        d["image"] = MetaTensor(ramp.roll(int(d["value"])), affine=torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0])))
        d["label"] = torch.tensor([float(d["value"])])
        d["regions"] = torch.zeros(2, 2, 2, 2, dtype=torch.bool)
        return d


def _memmap(tmp_path, data, dtype="int16", random=False, **kwargs):
    steps = [WindowedLoad(keys="value")] + ([RandFlipRot90d("image", flip_prob=0.5, rot_prob=0.5)] if random else [])
    return make_dataset(data, Compose(steps), cache="memmap", cache_dir=tmp_path / "c", cache_dtype=dtype,
                        cache_value_range=RANGE, **kwargs)  # fmt: skip


@pytest.mark.parametrize("dtype,step", [("int16", 1 / 65535), ("uint8", 1 / 255)])
def test_quantize_round_trip_is_within_half_a_step(dtype, step):
    x = torch.rand(1000) * (RANGE[1] - RANGE[0]) + RANGE[0]
    q = quantize(x, RANGE, dtype)
    assert q.dtype == np.dtype(dtype)
    assert float((dequantize(q, RANGE) - x).abs().max()) <= step / 2 + 1e-6


def test_quantize_refuses_values_outside_the_window():
    with pytest.raises(ValueError, match=r"stores values in \[-0.449, 0.551\].*cache='disk'"):
        quantize(np.array([0.0, 2.0]), RANGE)
    with pytest.raises(ValueError, match="non-finite"):
        quantize(np.array([np.nan]), RANGE)


def test_make_dataset_builds_the_memmap_dataset(tmp_path):
    assert isinstance(_memmap(tmp_path, [{"value": 0}]), MemmapPersistentDataset)


def test_the_deterministic_prefix_runs_once_per_item_over_epochs(tmp_path):
    ds = _memmap(tmp_path, [{"value": i} for i in range(3)])
    WindowedLoad.calls = 0
    for _ in range(3):
        [ds[i] for i in range(3)]
    assert WindowedLoad.calls == 3


@pytest.mark.parametrize("dtype,bytes_per_voxel", [("int16", 2), ("uint8", 1)])
def test_the_image_is_stored_in_the_cache_dtype_and_memory_maps(tmp_path, dtype, bytes_per_voxel):
    _memmap(tmp_path, [{"value": 0}], dtype=dtype)[0]
    (npy,) = (tmp_path / "c").glob(f"*.{dtype}.npy")
    mapped = np.load(npy, mmap_mode="r")
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.dtype(dtype) and mapped.shape == (1, 4, 4, 6)
    assert mapped.nbytes == 96 * bytes_per_voxel


def test_a_hit_and_a_miss_give_the_same_item_close_to_the_uncached_one(tmp_path):
    plain = WindowedLoad(keys="value")({"value": 2})
    ds = _memmap(tmp_path, [{"value": 2}])
    miss, hit = ds[0], ds[0]
    assert torch.equal(miss["image"], hit["image"])
    assert float((hit["image"] - plain["image"]).abs().max()) <= 0.5 / 65535 + 1e-6
    assert torch.equal(hit["label"], plain["label"]) and torch.equal(hit["regions"], plain["regions"])
    assert isinstance(hit["image"], MetaTensor) and torch.allclose(hit["image"].affine, plain["image"].affine)


def test_random_augmentation_still_varies_after_the_cache(tmp_path):
    ds = _memmap(tmp_path, [{"value": 0}], random=True)
    ds.set_random_state(seed=0) if hasattr(ds, "set_random_state") else None
    assert len({tuple(ds[0]["image"].flatten()[:5].tolist()) for _ in range(20)}) > 1


def test_an_unreadable_cache_entry_is_rebuilt_with_a_warning(tmp_path):
    ds = _memmap(tmp_path, [{"value": 1}])
    expected = ds[0]["image"].clone()
    (npy,) = (tmp_path / "c").glob("*.npy")
    npy.write_bytes(b"\x93NUMPY truncated")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        again = ds[0]["image"]
    assert torch.equal(again, expected)
    assert np.load(npy, mmap_mode="r").shape == (1, 4, 4, 6)


def test_a_failing_scan_becomes_a_report_and_is_not_cached(tmp_path):
    ds = _memmap(tmp_path, [{"value": 0, "image": "scan0.nii.gz"}, {"value": -1, "image": "bad.nii.gz"}],
                 skip_failures=True)  # fmt: skip
    good, bad = ds[0], ds[1]
    assert not is_failed_item(good) and is_failed_item(bad) and "truncated file" in bad["error"]
    assert len(list((tmp_path / "c").glob("*.pt"))) == 1


def test_hits_and_misses_collate_in_one_batch(tmp_path):
    data = [{"value": i} for i in range(4)]
    _memmap(tmp_path, data[:2])[0]
    ds = _memmap(tmp_path, data)
    batch = list_data_collate([ds[i] for i in range(4)])
    assert batch["image"].shape == (4, 1, 4, 4, 6) and batch["label"].shape == (4, 1)
    assert batch["image"].dtype == torch.float32


def test_stored_output_keeps_the_cache_dtype_for_the_device_to_convert(tmp_path):
    ds = _memmap(tmp_path, [{"value": 3}], dtype="uint8", cache_output="stored")
    image = ds[0]["image"]
    assert image.dtype == torch.uint8
    plain = WindowedLoad(keys="value")({"value": 3})["image"]
    assert float((dequantize(image.as_tensor(), RANGE) - plain).abs().max()) <= 0.5 / 255 + 1e-6


def test_an_unknown_output_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'float32' or 'stored'"):
        _memmap(tmp_path, [{"value": 0}], cache_output="float16")


def test_the_memmap_cache_keeps_only_the_slim_metadata(tmp_path):
    from hirescam_ext.data.dataset import CACHED_META_KEYS

    class HeaderField(MapTransform):
        def __call__(self, data):
            d = dict(data)
            d["image"].meta["qform_code"] = torch.tensor(1)  # a reader's header field
            return d

    ds = make_dataset([{"value": 0}], Compose([WindowedLoad(keys="value"), HeaderField(keys="image")]),
                      cache="memmap", cache_dir=tmp_path / "c", cache_value_range=RANGE)
    for image in (ds[0]["image"], ds[0]["image"]):  # miss, then hit
        assert set(image.meta) <= set(CACHED_META_KEYS) and "affine" in image.meta
        assert image.applied_operations == []


def test_a_disk_cache_and_a_memmap_cache_in_one_folder_keep_their_own_files(tmp_path):
    """The memmap cache's ``.pt`` holds no image: a disk cache must never read it as an item, nor the reverse."""
    transform = Compose([WindowedLoad(keys="value")])
    memmap = make_dataset([{"value": 1}], transform, cache="memmap", cache_dir=tmp_path / "c", cache_value_range=RANGE)
    disk = make_dataset([{"value": 1}], transform, cache="disk", cache_dir=tmp_path / "c")
    for ds in (memmap, disk, memmap, disk):  # each fills, then hits, its own entry
        assert ds[0]["image"].shape == (1, 4, 4, 6)
    names = sorted(f.name for f in (tmp_path / "c").iterdir())
    assert len(names) == 3 and sum(n.endswith("-memmap.pt") for n in names) == 1
