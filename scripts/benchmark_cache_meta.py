"""Time a disk-cache hit of the bundle's training preprocessing with the slim cached metadata against the full one
(prints JSON).

``configs/train.json``'s ``train#preprocessing`` (the bundle's own CT preprocessing, labels and allowed regions, then
the paper's flip / rot90) is built for a synthetic dataset; every training item is cached twice, once as the bundle
caches it (:class:`hirescam_ext.data.SafePersistentDataset`: only :data:`hirescam_ext.data.dataset.CACHED_META_KEYS`
kept) and once with the reader's whole header and the record of applied operations (as before issue 13's session
22), then read ``--repeats`` times each, alternating between the two, from the page cache, item by item and as
DataLoader epochs (batch 8, collation included, no workers). Reported per variant: the median milliseconds per item,
the median DataLoader epoch and its scans per second; and the ratios.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python scripts/benchmark_cache_meta.py --dataset-dir /tmp/demo_data --spacing 5.8 5.8 6.4
    python scripts/benchmark_cache_meta.py            # generates 40 demo-profile scans in a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, list_data_collate

from hirescam_ext.data import dataset as cache_module


class _FullMetaDataset(cache_module.SafePersistentDataset):
    """The cache as it was: every metadata key and the applied operations kept (other file names)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transform_hash += "-full"

    def _pre_transform(self, item_transformed: Any) -> Any:
        full = super(cache_module.SafePersistentDataset, self)._pre_transform(item_transformed)  # MONAI's, unslimmed
        item = cache_module.make_cache_safe(full)
        return cache_module.convert_to_tensor(item, convert_numeric=False, track_meta=self.track_meta)


def _preprocessing(dataset_dir: Path, spacing: list[float] | None, spatial_size: list[int]) -> tuple[Any, list]:
    """``configs/train.json``'s ``train#preprocessing`` (flattened) and training data list for ``dataset_dir``."""
    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[1] / "configs" / "train.json"))
    parser["dataset_dir"], parser["spatial_size"], parser["trunk"] = str(dataset_dir), spatial_size, "small16"
    parser["region_mode"] = "area"
    if spacing:
        parser["spacing"] = spacing
    # flattened as make_dataset does: MONAI caches up to the first Randomizable transform, and a Compose is one
    return parser.get_parsed_content("train#preprocessing").flatten(), parser.get_parsed_content("train#datalist")


def main(argv: list[str] | None = None) -> int:
    """Cache both variants, time their hits and DataLoader epochs, print the JSON report; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset-dir", default=None, help="a synthetic dataset (default: generate --scans demo scans)")
    ap.add_argument("--scans", type=int, default=40, help="scans to generate when no --dataset-dir is given")
    ap.add_argument("--spacing", type=float, nargs=3, default=[5.8, 5.8, 6.4], help="network grid (mm)")
    ap.add_argument("--spatial-size", type=int, nargs=3, default=[64, 64, 48])
    ap.add_argument("--items", type=int, default=30, help="training items cached (at most the split's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8, help="DataLoader batch of the epoch timing")
    args = ap.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="hirescam_cache_meta_"))
    try:
        data_dir = Path(args.dataset_dir) if args.dataset_dir else scratch / "data"
        if not args.dataset_dir:
            from hirescam_ext.synthetic.generator import generate_dataset

            generate_dataset(data_dir, profile="demo", n_scans=args.scans, seed=0, progress=False, workers=1)
        transform, datalist = _preprocessing(data_dir, args.spacing, args.spatial_size)
        items = datalist[: args.items]
        variants = {
            "slim (the bundle's cache)": cache_module.SafePersistentDataset(items, transform, scratch / "slim"),
            "full metadata (before)": _FullMetaDataset(items, transform, scratch / "full"),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        keys: dict[str, int] = {}
        for ds in variants.values():  # fill
            for i in range(len(items)):
                ds[i]
        for _ in range(args.repeats):
            for i in range(len(items)):
                for name, ds in variants.items():  # alternate: both variants see the same machine load
                    t0 = time.perf_counter()
                    item = ds[i]
                    times[name].append(time.perf_counter() - t0)
                    keys[name] = len(item["image"].meta)
        epochs: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):  # what training sees: a DataLoader epoch, collation included
            for name, ds in variants.items():
                loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, collate_fn=list_data_collate)
                t0 = time.perf_counter()
                for _batch in loader:
                    pass
                epochs[name].append(time.perf_counter() - t0)
        report: dict[str, Any] = {
            "items": len(items), "repeats": args.repeats, "spacing": args.spacing, "spatial_size": args.spatial_size,
            "threads": torch.get_num_threads(), "load_average_1m": os.getloadavg()[0], "variants": {},
        }
        for name, ts in times.items():
            median = statistics.median(ts)
            epoch = statistics.median(epochs[name])
            report["variants"][name] = {"item_ms_median": 1000 * median, "items_per_second": 1 / median,
                                        "loader_epoch_s_median": epoch, "loader_scans_per_second": len(items) / epoch,
                                        "image_meta_keys": keys[name]}
        slim, full = (report["variants"][n] for n in variants)
        report["full_over_slim_item"] = full["item_ms_median"] / slim["item_ms_median"]
        report["full_over_slim_loader_epoch"] = full["loader_epoch_s_median"] / slim["loader_epoch_s_median"]
        print(json.dumps(report, indent=2))
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
