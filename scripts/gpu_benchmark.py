"""GPU benchmark of AxialNet at the paper's size (prints JSON; writes ``$OUT/gpu_benchmark.json`` when ``$OUT`` is set).

Measured side by side in one process on one GPU (Draelos & Carin, HiResCAM, arXiv:2011.08891; input
``[1, 1, 420, 420, 405]``, ResNet-18 trunk, custom_conv_padding=0, attention grid ``[135, 6, 6]``, 80 abnormalities):

(a) training step (``forward_all`` + BCE + 1/3 mask loss + backward + SGD lr 1e-3 momentum 0.99) under
    ``torch.autocast`` bf16, interleaved with the classification-only step; then the same two in float32 (an
    out-of-memory error is recorded, not raised): volumes/s and peak ``torch.cuda.max_memory_allocated``;
(b) HiResCAM of all 80 abnormalities by the closed form (paper eq. 9, one forward pass, no backward) vs a plain
    inference forward: overhead ratio, target <= 1.10; fp32 and bf16 autocast;
(c) Grad-CAM of all 80 abnormalities by the closed form, likewise.

``torch.backends.cudnn.benchmark`` is on; every measurement has warm-up runs first. The whole run takes about one to
three minutes on an H100. Imports: torch and this package's networks / losses / visualize (which need MONAI) only.
Each section is written out as soon as it finishes, so a failure late in the run keeps the earlier numbers.

Usage (from the repository root; ``scripts/gpu_benchmark.sh`` installs the carried wheels first)::

    python3 scripts/gpu_benchmark.py            # on a CUDA machine
    python3 scripts/gpu_benchmark.py --dry-run  # seconds on CPU: tiny sizes, same code path
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from hirescam_ext.benchmark import (  # noqa: E402
    SIZES,
    TrainConfig,
    build_axialnet,
    compare_train_steps,
    environment_info,
    mask_loss_time_ratios,
    median_times,
)

__all__ = ["main", "bench_train", "bench_cam"]

TARGET_RATIO = 1.10


def bench_train(size_name: str, device: torch.device, steps: int, warmup: int, fp32: bool) -> dict[str, Any]:
    """(a): bf16 mask on / off interleaved, then (optionally) fp32 mask on / off interleaved."""
    size = SIZES[size_name]
    out: dict[str, Any] = {
        "size": size_name,
        "input": list(size.shape),
        "trunk": size.trunk,
        "custom_conv_padding": size.custom_conv_padding,
        "steps": steps,
        "warmup": warmup,
    }
    out["bf16"] = compare_train_steps(
        [TrainConfig("mask_loss_on", True, "bf16"), TrainConfig("mask_loss_off", False, "bf16")],
        size,
        device,
        steps=steps,
        warmup=warmup,
    )
    out["mask_loss_time_ratios"] = {"bf16": mask_loss_time_ratios(out["bf16"])}
    _free(device)
    if fp32:
        out["fp32"] = compare_train_steps(
            [TrainConfig("mask_loss_on", True, None), TrainConfig("mask_loss_off", False, None)],
            size,
            device,
            steps=steps,
            warmup=warmup,
        )
        out["mask_loss_time_ratios"]["fp32"] = mask_loss_time_ratios(out["fp32"])
        _free(device)
    return out


def bench_cam(size_name: str, device: torch.device, repeats: int, warmup: int) -> dict[str, Any]:
    """(b) and (c): all-80 HiResCAM / Grad-CAM closed form vs a plain inference forward, fp32 and bf16."""
    from hirescam_ext.visualize import GradCAM, HiResCAM

    size = SIZES[size_name]
    net = build_axialnet(size).to(device).eval()
    x = torch.rand(size.shape, generator=torch.Generator().manual_seed(0)).to(device)
    hires, grad = HiResCAM(net), GradCAM(net)
    if not (hires.closed_form and grad.closed_form):
        raise RuntimeError("the AxialNet closed form was not selected; the benchmark would time the generic path")
    out: dict[str, Any] = {"size": size_name, "input": list(size.shape), "classes": net.n_classes, "repeats": repeats}
    for precision in ("fp32", "bf16"):
        def ctx(precision: str = precision) -> contextlib.AbstractContextManager:
            if precision == "bf16":
                return torch.autocast(device.type, dtype=torch.bfloat16)
            return contextlib.nullcontext()

        def forward() -> torch.Tensor:
            with torch.no_grad(), ctx():
                return net(x)

        def hirescam_raw() -> torch.Tensor:
            with ctx():
                return hires.compute_raw(x)

        def hirescam_normalized() -> torch.Tensor:
            with ctx():
                return hires(x, upsample=False)

        def gradcam_raw() -> torch.Tensor:
            with ctx():
                return grad.compute_raw(x)

        def gradcam_normalized() -> torch.Tensor:
            with ctx():
                return grad(x, upsample=False)

        fns = {
            "forward": forward,
            "hirescam_raw": hirescam_raw,
            "hirescam_normalized": hirescam_normalized,
            "gradcam_raw": gradcam_raw,
            "gradcam_normalized": gradcam_normalized,
        }
        t = median_times(fns, repeats=repeats, warmup=warmup, device=device)
        maps = hirescam_raw()
        res: dict[str, Any] = {"map_shape": list(maps.shape), "median_s": t}
        for name in fns:
            if name != "forward":
                res[f"{name}_overhead_ratio"] = t[name] / t["forward"]
        res["target_ratio"] = TARGET_RATIO
        res["hirescam_meets_target"] = res["hirescam_normalized_overhead_ratio"] <= TARGET_RATIO
        res["gradcam_meets_target"] = res["gradcam_normalized_overhead_ratio"] <= TARGET_RATIO
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            hirescam_normalized()
            torch.cuda.synchronize(device)
            res["hirescam_peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        out[precision] = res
    del net, hires, grad, x
    _free(device)
    return out


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _write(report: dict[str, Any]) -> None:
    out_dir = os.environ.get("OUT")
    if out_dir:
        path = Path(out_dir) / "gpu_benchmark.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, trunk 'small', tiny volumes, one step: the code path only"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per variant (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3)")
    parser.add_argument("--repeats", type=int, default=None, help="timed CAM / forward runs (default 20)")
    parser.add_argument("--no-fp32", action="store_true", help="skip the float32 training step")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, size_name = torch.device("cpu"), "tiny"
        steps, warmup, repeats = args.steps or 1, args.warmup if args.warmup is not None else 0, args.repeats or 1
    else:
        if not torch.cuda.is_available():
            print(json.dumps({"error": "no CUDA device available; use --dry-run for a CPU check"}))
            return 2
        device, size_name = torch.device("cuda"), "paper"
        steps, warmup, repeats = args.steps or 10, args.warmup if args.warmup is not None else 3, args.repeats or 20
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "scripts/gpu_benchmark.py",
        "dry_run": args.dry_run,
        **environment_info(device, sys.argv[1:] if argv is None else argv),
    }
    sections = {
        "train": lambda: bench_train(size_name, device, steps, warmup, fp32=not args.no_fp32),
        "cam": lambda: bench_cam(size_name, device, repeats, max(warmup, 1)),
    }
    status = 0
    for name, fn in sections.items():
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as e:  # noqa: BLE001 - keep the other sections' numbers
            report[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            status = 1
            _free(device)
        report[name + "_wall_s"] = time.perf_counter() - t0
        report["total_s"] = time.perf_counter() - start
        _write(report)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
