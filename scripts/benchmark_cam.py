"""Benchmark: all-class HiResCAM / Grad-CAM cost relative to a plain forward pass (prints JSON).

Measured side by side in one process, interleaved, median of several runs after a warm-up:

(a) AxialNet (ResNet-18 trunk, custom_conv_padding=1, 128 x 128 in-plane, input [1, 1, 128, 128, 144], eval mode,
    no_grad): HiResCAM for all 80 abnormalities with the closed form (paper eq. 9, no backward) vs ``forward``.
(b) A generic 3D MONAI classifier (ResNet-10, 80 outputs, input [1, 1, 64, 64, 64]): the generic fast path (hook at
    ``layer4``, one vectorized backward over the head) for all 80 classes vs a plain forward, and vs the usual way,
    one forward + full backward through the whole network per class (``monai.visualize.GradCAM`` called per class).

(c) ``--model monai_resnet18 --layers layer2 layer3 layer4``: instead of (b), MONAI's 3D ResNet-18 (80 outputs,
    input [1, 1, 64, 64, 64]): per target layer, all-80 generic HiResCAM ``compute_raw`` with the class gradients
    from vmap (``gradient_mode="vmap"``, the path before issue 15) and from the replayed copies
    (``gradient_mode="replay"``, the default), interleaved with a plain forward; ratios and the peak resident-size
    increase of each call.
(d) ``--upsampled``: AxialNet (ResNet-18, [1, 1, 128, 128, 96]) all-80 HiResCAM upsampled to the input and
    normalized: all maps at once as before issue 15 (upsample + normalize the whole ``[1, 80, X, Y, Z]``), the
    chunked ``__call__`` (float32 and float16 output), and :meth:`iter_maps` consuming one chunk at a time; time
    relative to a forward and peak resident-size increase of each (sampled every 2 ms, one variant at a time).

Usage::

    OMP_NUM_THREADS=2 python scripts/benchmark_cam.py            # full run (about 1-2 minutes on 2 cores)
    python scripts/benchmark_cam.py --quick                      # seconds, for tests
    OMP_NUM_THREADS=1 python scripts/benchmark_cam.py --threads 1 --model monai_resnet18 \
        --layers layer2 layer3 layer4 --upsampled --repeats 2     # issue 15 (several minutes at 1 thread)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch

__all__ = ["main", "median_times", "bench_generic_layers", "bench_upsampled"]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    """Wall time (s) of one call, waiting for queued GPU work before and after."""
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def median_times(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time (s) of each callable; runs are interleaved (order reversed every other round) so drift
    hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            runs[name].append(timed(fns[name]))
    return {k: statistics.median(v) for k, v in runs.items()}


def bench_axialnet(quick: bool, repeats: int, device: str) -> dict:
    from hirescam_ext.networks.axialnet import AxialNet
    from hirescam_ext.visualize import GradCAM, HiResCAM

    if quick:
        trunk, spatial, z = "small", (64, 64), 12
    else:
        trunk, spatial, z = "resnet18", (128, 128), 144
    torch.manual_seed(0)
    net = AxialNet(n_classes=80, spatial_size=spatial, trunk=trunk, custom_conv_padding=1).eval().to(device)
    x = torch.rand(1, 1, *spatial, z, device=device)
    hires, grad = HiResCAM(net), GradCAM(net)

    def forward():
        with torch.no_grad():
            return net(x)

    def hirescam_all():
        with torch.no_grad():
            return hires.compute_raw(x)

    def gradcam_all():
        with torch.no_grad():
            return grad.compute_raw(x)

    t = median_times({"forward": forward, "hirescam": hirescam_all, "gradcam": gradcam_all}, repeats)
    maps = hirescam_all()
    return {
        "model": f"AxialNet(trunk={trunk}, custom_conv_padding=1, spatial_size={spatial})",
        "input": [1, 1, *spatial, z],
        "classes": 80,
        "map_shape": list(maps.shape),
        "forward_s": t["forward"],
        "hirescam_all_classes_s": t["hirescam"],
        "gradcam_all_classes_s": t["gradcam"],
        "hirescam_overhead_ratio": t["hirescam"] / t["forward"],
        "gradcam_overhead_ratio": t["gradcam"] / t["forward"],
        "target_ratio": 1.10,
    }


def bench_generic(quick: bool, repeats: int, naive_classes: int, device: str) -> dict:
    from monai.networks.nets import resnet10
    from monai.visualize import GradCAM as MonaiGradCAM

    from hirescam_ext.visualize import GradCAM, HiResCAM

    size = 24 if quick else 64
    torch.manual_seed(0)
    net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=80).eval().to(device)
    x = torch.rand(1, 1, size, size, size, device=device)
    layer = "layer4"
    hires, grad = HiResCAM(net, target_layers=layer), GradCAM(net, target_layers=layer)

    def forward():
        with torch.no_grad():
            return net(x)

    t = median_times(
        {
            "forward": forward,
            "hirescam_raw": lambda: hires.compute_raw(x),
            "hirescam_full": lambda: hires(x),
            "gradcam_raw": lambda: grad.compute_raw(x),
        },
        repeats,
    )
    # the usual way: one call of monai.visualize.GradCAM (forward + full backward) per class
    monai_cam = MonaiGradCAM(net, target_layers=layer)
    monai_cam(x, class_idx=0)  # warm-up
    per_class = []
    for c in range(naive_classes):
        per_class.append(timed(lambda: monai_cam(x, class_idx=c)))
    naive_80 = statistics.median(per_class) * 80
    return {
        "model": "monai.networks.nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=80)",
        "target_layer": layer,
        "input": [1, 1, size, size, size],
        "classes": 80,
        "forward_s": t["forward"],
        "hirescam_all_classes_raw_s": t["hirescam_raw"],
        "hirescam_all_classes_upsampled_normalized_s": t["hirescam_full"],
        "gradcam_all_classes_raw_s": t["gradcam_raw"],
        "hirescam_raw_overhead_ratio": t["hirescam_raw"] / t["forward"],
        "hirescam_full_overhead_ratio": t["hirescam_full"] / t["forward"],
        "target_ratio": 2.0,
        "naive_monai_gradcam_per_class_median_s": statistics.median(per_class),
        "naive_classes_measured": naive_classes,
        "naive_all_classes_s": sum(per_class) if naive_classes == 80 else naive_80,
        "naive_all_classes_extrapolated": naive_classes != 80,
        "naive_over_forward_ratio": naive_80 / t["forward"],
        "naive_over_hirescam_full_ratio": naive_80 / t["hirescam_full"],
    }


def _peak_increase_mib(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, peak resident-size increase MiB) of one call, the result dropped inside the sampled window."""
    from hirescam_ext.benchmark import PeakRSSSampler

    with PeakRSSSampler() as rss:
        start = time.perf_counter()
        result = fn()
        _sync()
        elapsed = time.perf_counter() - start
        del result
    return elapsed, (rss.peak_bytes - rss.start_bytes) / 2**20


def bench_generic_layers(
    quick: bool, repeats: int, layers: list[str], device: str, class_counts: tuple[int, ...] = (80,)
) -> dict:
    """(c): vmap vs replayed class gradients per target layer of MONAI's 3D ResNet-18, vs a plain forward.

    ``class_counts``: numbers of classes ``K`` to time (the first ``K`` classes); 80 is recorded under the layer's
    own name, other counts under ``"<layer>_k<K>"``.
    """
    from monai.networks.nets import resnet18

    from hirescam_ext.visualize import HiResCAM

    size = 24 if quick else 64
    torch.manual_seed(0)
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=80).eval().to(device)
    x = torch.rand(1, 1, size, size, size, device=device)

    def forward():
        with torch.no_grad():
            return net(x)

    out: dict = {
        "model": "monai.networks.nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=80)",
        "input": [1, 1, size, size, size],
        "classes": 80,
        "method": "HiResCAM(net, target_layers=layer, gradient_mode=...).compute_raw(x), all 80 classes",
        "target_ratio": 2.0,
        "layers": {},
    }
    for layer, k in [(layer, k) for layer in layers for k in class_counts]:
        vmap = HiResCAM(net, target_layers=layer, gradient_mode="vmap")
        replay = HiResCAM(net, target_layers=layer, gradient_mode="replay")
        classes = None if k == 80 else list(range(k))
        fns = {
            "forward": forward,
            "vmap": lambda: vmap.compute_raw(x, classes),
            "replay": lambda: replay.compute_raw(x, classes),
        }
        t = median_times(fns, repeats)
        diff = (replay.compute_raw(x, classes) - vmap.compute_raw(x, classes)).abs().max().item()
        mem = {name: _peak_increase_mib(fn)[1] for name, fn in fns.items()} if device == "cpu" else {}
        out["layers"][layer if k == 80 else f"{layer}_k{k}"] = {
            "classes": k,
            "map_shape": list(replay.compute_raw(x, class_idx=0).shape),
            "median_s": t,
            "vmap_over_forward": t["vmap"] / t["forward"],
            "replay_over_forward": t["replay"] / t["forward"],
            "speedup_replay_vs_vmap": t["vmap"] / t["replay"],
            "max_abs_difference_replay_vs_vmap": diff,
            "peak_rss_increase_mib": mem,
        }
    return out


def bench_upsampled(quick: bool, repeats: int, device: str) -> dict:
    """(d): all-80 upsampled AxialNet HiResCAM: all at once (before) vs chunked call / fp16 / iter_maps."""
    from hirescam_ext.networks.axialnet import AxialNet
    from hirescam_ext.visualize import HiResCAM, normalize_cam, upsample_axial_maps

    if quick:
        trunk, spatial, z, chunk = "small", (64, 64), 12, 8
    else:
        trunk, spatial, z, chunk = "resnet18", (128, 128), 96, 8
    torch.manual_seed(0)
    net = AxialNet(n_classes=80, spatial_size=spatial, trunk=trunk, custom_conv_padding=1).eval().to(device)
    x = torch.rand(1, 1, *spatial, z, device=device)
    cam = HiResCAM(net, upsample_chunk_size=chunk)

    def forward():
        with torch.no_grad():
            return net(x)

    def all_at_once():  # the pre-issue-15 __call__: upsample all 80, then normalize out of place
        return normalize_cam(upsample_axial_maps(cam.compute_raw(x), x.shape[2:]))

    def consume():
        total = 0.0
        for part in cam.iter_maps(x):
            total += float(part.maps[:, :, ::8, ::8, ::8].sum())  # stand-in for writing the chunk somewhere
        return total

    fns = {
        "forward": forward,
        "all_at_once_fp32": all_at_once,
        "chunked_call_fp32": lambda: cam(x),
        "chunked_call_fp16": lambda: cam(x, dtype=torch.float16),
        "iter_maps": consume,
    }
    t = median_times(fns, repeats)
    exact = bool(torch.equal(all_at_once(), cam(x)))
    mem = {name: _peak_increase_mib(fn)[1] for name, fn in fns.items()} if device == "cpu" else {}
    voxels = spatial[0] * spatial[1] * z
    return {
        "model": f"AxialNet(trunk={trunk}, custom_conv_padding=1, spatial_size={spatial})",
        "input": [1, 1, *spatial, z],
        "classes": 80,
        "upsample_chunk_size": chunk,
        "output_mib_fp32": 80 * voxels * 4 / 2**20,
        "median_s": t,
        "over_forward": {k: v / t["forward"] for k, v in t.items() if k != "forward"},
        "chunked_equals_all_at_once": exact,
        "peak_rss_increase_mib": mem,
        "memory_method": "resident set size sampled every 2 ms, one call per variant (increase over the start)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs, few repeats (seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 5, quick 2)")
    parser.add_argument(
        "--naive-classes", type=int, default=None, help="classes timed for the per-class loop (default 80, quick 2)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu (default) or cuda")
    parser.add_argument(
        "--model",
        default="resnet10",
        choices=["resnet10", "monai_resnet18"],
        help="generic section: resnet10 (b, with the per-class MONAI loop) or monai_resnet18 (c, per layer)",
    )
    parser.add_argument("--layers", nargs="+", default=["layer2", "layer3", "layer4"], help="layers for (c)")
    parser.add_argument(
        "--class-counts", nargs="+", type=int, default=[80], help="classes K per layer for (c) (default 80)"
    )
    parser.add_argument("--upsampled", action="store_true", help="add (d): all-80 upsampled maps, time and memory")
    parser.add_argument("--no-axialnet", action="store_true", help="skip (a), the closed-form overhead")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    naive_classes = args.naive_classes or (2 if args.quick else 80)
    if not 1 <= naive_classes <= 80:
        parser.error("--naive-classes must be in 1..80")
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "quick": args.quick,
        "repeats": repeats,
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    from hirescam_ext.benchmark import environment_info

    report["environment"] = environment_info(args.device, report["argv"])
    if not args.no_axialnet:
        report["axialnet_closed_form"] = bench_axialnet(args.quick, repeats, args.device)
    if args.model == "monai_resnet18":
        report["generic_layers"] = bench_generic_layers(
            args.quick, repeats, args.layers, args.device, tuple(args.class_counts)
        )
    else:
        report["generic_3d"] = bench_generic(args.quick, repeats, naive_classes, args.device)
    if args.upsampled:
        report["upsampled"] = bench_upsampled(args.quick, repeats, args.device)
    report["total_s"] = time.perf_counter() - start
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
