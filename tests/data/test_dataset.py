"""make_dataset: the cached prefix is computed once; random augmentation still runs every epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.transforms import Compose, MapTransform

from hirescam_ext.data.dataset import make_dataset
from hirescam_ext.transforms import RandFlipRot90d, ResampleToSpacingd


class CountingLoad(MapTransform):
    """Deterministic stand-in for decoding: counts its calls."""

    calls = 0

    def __call__(self, data):
        CountingLoad.calls += 1
        d = dict(data)
        value = float(d["value"])
        d["image"] = MetaTensor(torch.full((1, 4, 4, 6), value), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
        d["image"][0, 0, 0, 0] = value + 100
        return d


def _transform():
    # nested like ct_preprocessing(...) inside a training Compose: the cache must still cover the inner prefix
    deterministic = Compose([CountingLoad(keys="value"), ResampleToSpacingd("image", pixdim=1.0)])
    return Compose([deterministic, RandFlipRot90d("image", flip_prob=1.0, rot_prob=0.0)])


@pytest.mark.parametrize("cache,cls", [("none", Dataset), ("memory", CacheDataset), ("disk", PersistentDataset)])
def test_make_dataset_picks_the_monai_class(tmp_path, cache, cls):
    ds = make_dataset([{"value": 1}], _transform(), cache=cache, cache_dir=tmp_path / "c")
    assert isinstance(ds, cls)


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_cached_epochs_skip_the_deterministic_prefix(tmp_path, cache):
    data = [{"value": i} for i in range(3)]
    ds = make_dataset(data, _transform(), cache=cache, cache_dir=tmp_path / "c")
    CountingLoad.calls = 0
    for _ in range(3):
        epoch = [ds[i] for i in range(len(ds))]
    assert CountingLoad.calls == (0 if cache == "memory" else 3)  # memory: filled at construction
    assert isinstance(epoch[0]["image"], MetaTensor) and epoch[0]["image"].shape == (1, 8, 8, 12)


def test_disk_cache_gives_the_uncached_result(tmp_path):
    transform = Compose([CountingLoad(keys="value"), ResampleToSpacingd("image", pixdim=1.0)])
    plain = make_dataset([{"value": 5}], transform)[0]["image"]
    disk = make_dataset([{"value": 5}], transform, cache="disk", cache_dir=tmp_path / "c")
    first, second = disk[0]["image"], disk[0]["image"]
    assert torch.equal(first, plain) and torch.equal(second, plain)
    assert torch.allclose(second.affine, plain.affine)


class HeaderLoad(MapTransform):
    """Like a NIfTI reader: the image carries its source and the file's header fields in its metadata."""

    def __call__(self, data):
        d = dict(data)
        meta = {"filename_or_obj": f"scan{d['value']}.nii.gz", "dim": torch.tensor([3, 4, 4, 6, 1, 1, 1, 1]),
                "qform_code": torch.tensor(1), "sizeof_hdr": torch.tensor(348)}
        affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
        d["image"] = MetaTensor(torch.zeros(1, 4, 4, 6), affine=affine, meta=meta)
        return d


def test_disk_cache_keeps_the_geometry_and_source_of_a_scan_but_not_its_header_or_trace(tmp_path):
    from hirescam_ext.data.dataset import CACHED_META_KEYS

    transform = Compose([HeaderLoad(keys="value"), ResampleToSpacingd("image", pixdim=1.0)])
    plain = make_dataset([{"value": 3}], transform)[0]["image"]
    disk = make_dataset([{"value": 3}], transform, cache="disk", cache_dir=tmp_path / "c")
    for image in (disk[0]["image"], disk[0]["image"]):  # the miss that fills the cache, then a hit
        assert set(image.meta) <= set(CACHED_META_KEYS) and image.applied_operations == []
        assert image.meta["filename_or_obj"] == "scan3.nii.gz" and torch.allclose(image.affine, plain.affine)
        assert torch.equal(image.as_tensor(), plain.as_tensor())
    assert "qform_code" in plain.meta and plain.applied_operations  # the uncached item keeps them


def test_an_older_cache_file_in_the_folder_is_not_read_and_is_reported(tmp_path):
    """An older cache (full metadata) in the same folder is not read: its items would not collate with these."""
    transform = Compose([HeaderLoad(keys="value")])
    make_dataset([{"value": 1}], transform, cache="disk", cache_dir=tmp_path / "c")[0]
    (new_file,) = (tmp_path / "c").iterdir()
    assert new_file.name.endswith("-meta2.pt")
    old_file = tmp_path / "c" / new_file.name.replace("-meta2.pt", ".pt")
    torch.save({"image": MetaTensor(torch.full((1, 4, 4, 6), 7.0)), "value": 1}, old_file)  # as the old format named it
    with pytest.warns(UserWarning, match="1 cache files .* older format are no longer read"):
        ds = make_dataset([{"value": 1}], transform, cache="disk", cache_dir=tmp_path / "c")
    assert float(ds[0]["image"].max()) == 0.0  # HeaderLoad's zeros, not the old file's sevens


def test_random_suffix_still_varies_with_memory_cache():
    ds = make_dataset([{"value": 0}], Compose([CountingLoad(keys="value"),
                                              RandFlipRot90d("image", flip_prob=0.5, rot_prob=0.5)]), cache="memory")
    ds.set_random_state(seed=0) if hasattr(ds, "set_random_state") else None
    marker_positions = {tuple(np.argwhere(ds[0]["image"][0].numpy() == 100)[0]) for _ in range(20)}
    assert len(marker_positions) > 1


def test_bad_cache_mode_and_missing_dir():
    with pytest.raises(ValueError, match="cache must be one of"):
        make_dataset([], None, cache="ram")
    with pytest.raises(ValueError, match="cache_dir"):
        make_dataset([], None, cache="disk")


class PlainLabel(MapTransform):
    """A plain (non-Meta) tensor, as EnsureTyped(track_meta=False) leaves the label."""

    def __call__(self, data):
        d = dict(data)
        d["label"] = torch.tensor([float(d["value"])])
        return d


def test_disk_cache_hit_and_miss_items_collate_in_one_batch(tmp_path):
    # another run (or an interrupted epoch) filled part of the cache: a batch mixes reloaded and fresh items
    from monai.data import list_data_collate

    transform = Compose([CountingLoad(keys="value"), PlainLabel(keys="value")])
    data = [{"value": i} for i in range(4)]
    make_dataset(data[:2], transform, cache="disk", cache_dir=tmp_path / "c")[0]
    ds = make_dataset(data, transform, cache="disk", cache_dir=tmp_path / "c")
    batch = list_data_collate([ds[i] for i in range(4)])
    assert batch["label"].shape == (4, 1) and batch["image"].shape == (4, 1, 4, 4, 6)


def test_other_files_in_the_cache_folder_are_not_called_an_older_cache(tmp_path):
    import warnings

    folder = tmp_path / "c"
    folder.mkdir()
    torch.save({"weights": torch.zeros(2)}, folder / "model.pt")
    np.save(folder / "notes.npy", np.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_dataset([{"value": 1}], Compose([HeaderLoad(keys="value")]), cache="disk", cache_dir=folder)[0]
