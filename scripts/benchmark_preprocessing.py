"""Benchmark the CT preprocessing: one full-size scan, and cached-epoch throughput. Prints JSON.

Target (HiResCAM paper geometry, Draelos & Carin arXiv:2011.08891): a 512 x 512 x 400 int16 scan at
0.7 x 0.7 x 1.0 mm -> 420 x 420 x 405 at 0.8 mm in <= 3 s on 2 CPU cores.

Usage:
    OMP_NUM_THREADS=2 python scripts/benchmark_preprocessing.py --threads 2
    python scripts/benchmark_preprocessing.py --compare-monai   # also time MONAI's Spacingd (slow)
    python scripts/benchmark_preprocessing.py --npz             # also a RAD-ChestCT .npz end to end
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from hirescam_ext.data.dataset import make_dataset
from hirescam_ext.data.radchestct import write_radchestct_npz
from hirescam_ext.transforms import RandFlipRot90d, ct_preprocessing


def synthetic_ct(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """An int16 chest-like volume [X, Y, Z]: air, a soft-tissue body ellipse, two lungs, noise."""
    rng = np.random.RandomState(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    plane = np.full(shape[:2], -1000, np.int16)
    plane[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = 40
    for cx in (-0.4, 0.4):
        plane[((x - cx) / 0.3) ** 2 + (y / 0.45) ** 2 < 1] = -850
    vol = np.repeat(plane[:, :, None], shape[2], axis=2)
    vol += rng.randint(-20, 21, size=shape, dtype=np.int16)
    return vol


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def full_size(args: argparse.Namespace, folder: str) -> dict:
    shape = tuple(args.full_shape)
    affine = np.diag([-args.spacing[0], -args.spacing[1], args.spacing[2], 1.0])  # LPS voxel order, like DICOM
    vol = synthetic_ct(shape)
    tensor = MetaTensor(torch.from_numpy(vol)[None], affine=torch.from_numpy(affine))
    pre_mem = ct_preprocessing(load=False, label_map_keys=())
    result: dict = {"input_shape": list(shape), "input_spacing_mm": list(args.spacing)}
    out = pre_mem({"image": tensor})["image"]
    result["output_shape"] = list(out.shape[1:])
    times = _time(lambda: pre_mem({"image": tensor}), args.repeats)
    result["in_memory_s"] = {"median": statistics.median(times), "all": times}
    for suffix in (".nii", ".nii.gz"):
        path = os.path.join(folder, f"full{suffix}")
        nib.save(nib.Nifti1Image(vol, affine), path)
        pre_file = ct_preprocessing(label_map_keys=())
        times = _time(lambda p=path: pre_file({"image": p}), args.repeats)
        result[f"from_file{suffix.replace('.', '_')}_s"] = {"median": statistics.median(times), "all": times}
    if args.npz:
        # RAD-ChestCT route: already 0.8 mm, stored [slices, rows, cols]; writing the compressed file takes a while
        npz_shape = (args.full_output[0], args.full_output[1], shape[2])
        path = os.path.join(folder, "full.npz")
        write_radchestct_npz(path, np.ascontiguousarray(synthetic_ct(npz_shape).transpose(2, 1, 0)))
        pre_npz = ct_preprocessing(label_map_keys=())
        times = _time(lambda: pre_npz({"image": path}), args.repeats)
        result["from_file_npz_s"] = {"median": statistics.median(times), "all": times, "input_shape": list(npz_shape)}
    if args.compare_monai:
        from monai.transforms import Spacingd

        spacing = Spacingd("image", pixdim=(0.8, 0.8, 0.8), mode="bilinear")
        times = _time(lambda: spacing({"image": tensor.float()}), 1)
        result["monai_spacingd_only_s"] = times[0]
    return result


def cached_epochs(args: argparse.Namespace, folder: str) -> dict:
    shape = tuple(args.small_shape)
    affine = np.diag([-0.7, -0.7, 1.0, 1.0])
    items = []
    for i in range(args.small_count):
        path = os.path.join(folder, f"small{i}.nii.gz")
        nib.save(nib.Nifti1Image(synthetic_ct(shape, seed=i), affine), path)
        items.append({"image": path})
    spatial = tuple(args.small_output)
    transform = Compose(
        [
            ct_preprocessing(label_map_keys=(), spacing=(1.6, 1.6, 1.6), spatial_size=spatial),
            RandFlipRot90d("image"),
        ]
    )
    out: dict = {"volumes": args.small_count, "input_shape": list(shape), "output_shape": list(spatial)}
    for cache in ("none", "memory", "disk"):
        start = time.perf_counter()
        ds = make_dataset(items, transform, cache=cache, cache_dir=os.path.join(folder, f"cache_{cache}"))
        build = time.perf_counter() - start
        rates = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            rates.append(len(ds) / (time.perf_counter() - start))
        out[cache] = {"build_s": build, "volumes_per_s_by_epoch": rates}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-shape", type=int, nargs=3, default=(512, 512, 400))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0))
    parser.add_argument("--small-count", type=int, default=4)
    parser.add_argument("--small-shape", type=int, nargs=3, default=(160, 160, 120))
    parser.add_argument("--small-output", type=int, nargs=3, default=(64, 64, 72))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--compare-monai", action="store_true", help="also time MONAI Spacingd on the full scan")
    parser.add_argument("--npz", action="store_true", help="also time a RAD-ChestCT .npz (0.8 mm) end to end")
    parser.add_argument("--full-output", type=int, nargs=2, default=(420, 420), help="in-plane size of the npz")
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict = {"threads": args.threads, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_full:
            report["full_size"] = full_size(args, folder)
        report["cached_epochs"] = cached_epochs(args, folder)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
