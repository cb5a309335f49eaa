"""Benchmark: all-class HiResCAM / Grad-CAM cost relative to a plain forward pass (prints JSON).

Measured side by side in one process, interleaved, median of several runs after a warm-up:

(a) AxialNet (ResNet-18 trunk, custom_conv_padding=1, 128 x 128 in-plane, input [1, 1, 128, 128, 144], eval mode,
    no_grad): HiResCAM for all 80 abnormalities with the closed form (paper eq. 9, no backward) vs ``forward``.
(b) A generic 3D MONAI classifier (ResNet-10, 80 outputs, input [1, 1, 64, 64, 64]): the generic fast path (hook at
    ``layer4``, one vectorized backward over the head) for all 80 classes vs a plain forward, and vs the usual way,
    one forward + full backward through the whole network per class (``monai.visualize.GradCAM`` called per class).

Usage::

    OMP_NUM_THREADS=2 python scripts/benchmark_cam.py            # full run (about 1-2 minutes on 2 cores)
    python scripts/benchmark_cam.py --quick                      # seconds, for tests
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

__all__ = ["main", "median_times"]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs, few repeats (seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 5, quick 2)")
    parser.add_argument(
        "--naive-classes", type=int, default=None, help="classes timed for the per-class loop (default 80, quick 2)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu (default) or cuda")
    args = parser.parse_args(argv)
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
        "axialnet_closed_form": bench_axialnet(args.quick, repeats, args.device),
        "generic_3d": bench_generic(args.quick, repeats, naive_classes, args.device),
    }
    report["total_s"] = time.perf_counter() - start
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
