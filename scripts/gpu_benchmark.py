"""GPU benchmark of AxialNet at the paper's size (prints JSON; writes ``$OUT/gpu_benchmark.json`` when ``$OUT`` is set).

Measured side by side in one process on one GPU (Draelos & Carin, HiResCAM, arXiv:2011.08891; input
``[1, 1, 420, 420, 405]``, ResNet-18 trunk, custom_conv_padding=0, attention grid ``[135, 6, 6]``, 80 abnormalities):

(a) training step (``forward_all`` + BCE + 1/3 mask loss + backward + SGD lr 1e-3 momentum 0.99) under
    ``torch.autocast`` bf16, interleaved with the classification-only step; then the same two in float32 (an
    out-of-memory error is recorded, not raised): volumes/s and peak ``torch.cuda.max_memory_allocated``;
(b) HiResCAM of all 80 abnormalities by the closed form (paper eq. 9, one forward pass, no backward) vs a plain
    inference forward: overhead ratio, target <= 1.10; fp32 and bf16 autocast;
(c) Grad-CAM of all 80 abnormalities by the closed form, likewise.

Issue 15 sections (run first, in this order, by default):

``bare_steps``: the training step (``forward_all`` + BCE + 1/3 mask loss + backward + SGD step) under bf16 autocast
    at ``[B, 1, 420, 420, 405]``, one variant after the other: batch 1 default layout, batch 1
    ``AxialNet.to_channels_last()``, batch 2 and 4 channels_last: volumes/s and peak GiB each.
``cam_upsampled``: all-80 HiResCAM upsampled to the scan and normalized, vs a plain forward, fp32 and bf16 autocast:
    ``iter_maps`` consuming one chunk at a time (the way that fits), ``__call__(dtype=float16)`` (all 80 on the GPU,
    11 GB) and, last, all maps at once as before issue 15 (46 GB); time ratio and peak GiB each (target: the first
    <= 2x a forward and <= 8 GiB).
``generic_layers``: generic HiResCAM (all 80 classes, ``compute_raw``) of MONAI's 3D ResNet-18 at ``layer2``,
    ``layer3``, ``layer4`` (input ``[1, 1, 128, 128, 128]``), vmap vs replayed class gradients, vs a forward.
``compiled_step``: batch 1 channels_last with ``torch.compile(net.forward_all)``: compile time (first step) and
    volumes/s after it; last of the issue 15 sections because compiling can take a minute.

``torch.backends.cudnn.benchmark`` is on; every measurement has warm-up runs first. Imports: torch and this package's
networks / losses / visualize (which need MONAI) only. Each section is written out as soon as it finishes, so a
failure late in the run keeps the earlier numbers. ``--budget-s`` bounds the whole run: each section runs under an
alarm set to the time left, and sections that would start after the budget are skipped with a note.

Usage (from the repository root; ``scripts/gpu_benchmark.sh`` installs the carried wheels first)::

    python3 scripts/gpu_benchmark.py --budget-s 150    # on a CUDA machine: issue 15 sections, then train and cam
    python3 scripts/gpu_benchmark.py --dry-run          # seconds on CPU: tiny sizes, same code path
    python3 scripts/gpu_benchmark.py --sections train cam   # only the sections of the first GPU run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from hirescam_ext.benchmark import (  # noqa: E402
    LEARNING_RATE,
    MOMENTUM,
    SIZES,
    BenchSize,
    TrainConfig,
    build_axialnet,
    compare_train_steps,
    environment_info,
    mask_loss_time_ratios,
    median_times,
    synthetic_batch,
)

__all__ = [
    "main",
    "bench_train",
    "bench_cam",
    "bench_bare_steps",
    "bench_compiled_step",
    "bench_cam_upsampled",
    "bench_generic_layers",
]

TARGET_RATIO = 1.10
UPSAMPLED_TARGET_RATIO = 2.0
UPSAMPLED_TARGET_GIB = 8.0
GENERIC_TARGET_RATIO = 2.0


class BudgetExceeded(Exception):
    """Raised by the alarm when a section runs past the time left of ``--budget-s``."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise :class:`BudgetExceeded` in this (main) thread after ``seconds`` (SIGALRM; no-op where unavailable)."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0 or math.isinf(seconds):
        yield
        return

    def _alarm(_signum: int, _frame: Any) -> None:
        raise BudgetExceeded(f"section stopped: the --budget-s time ran out after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``"bf16"``, nothing for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _call(device: torch.device, precision: str, fn: Callable[..., Any], *args: Any, no_grad: bool = False,
          **kwargs: Any) -> Callable[[], Any]:
    """``fn(*args, **kwargs)`` under :func:`_precision` (and ``torch.no_grad`` when asked), as a callable to time."""

    def call() -> Any:
        with _precision(device, precision), (torch.no_grad() if no_grad else contextlib.nullcontext()):
            return fn(*args, **kwargs)

    return call


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _BareStep:
    """One bf16 training step of AxialNet with BCE + mask loss + SGD (the ``bare_steps`` variants)."""

    def __init__(
        self, size: BenchSize, device: torch.device, channels_last: bool, compile_backend: str | None,
        fused: bool = False,
    ) -> None:
        from hirescam_ext.engines.optim import build_optimizer
        from hirescam_ext.losses import ClassificationMaskLoss

        self.device = device
        self.net = build_axialnet(size).to(device).train()
        if channels_last:
            self.net.to_channels_last()
        self.forward_all = self.net.forward_all
        if compile_backend is not None:
            self.forward_all = torch.compile(self.net.forward_all, backend=compile_backend)
        self.x, self.target = synthetic_batch(self.net, size, device)
        self.loss_fn = ClassificationMaskLoss(use_mask_loss=True)
        # the bundle's optimizer factory: fused=None would pick the fused step on CUDA; the variants say which
        self.opt = build_optimizer(self.net.parameters(), "sgd", lr=LEARNING_RATE, momentum=MOMENTUM, fused=fused)
        self.loss = float("nan")

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            out = self.forward_all(self.x)
            loss = self.loss_fn({"logits": out.logits, "attention": out.attention}, self.target)
        loss.backward()
        self.opt.step()
        self.loss = float(loss.detach())


def _time_steps(
    trainer: _BareStep, device: torch.device, steps: int, warmup: int, batch: int
) -> dict[str, Any]:
    """First step (compile / cudnn autotuning), warm-up, then ``steps`` timed steps with the peak memory."""
    _sync(device)
    t0 = time.perf_counter()
    trainer.step()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        trainer.step()
    _reset_peak(device)
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        trainer.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "batch": batch,
        "volumes_per_s": batch / med,
        "step_s_median": med,
        "step_s_min": min(times),
        "step_s_all": times,
        "first_step_s": first,
        "peak_memory_gib": _peak_gib(device),
        "final_loss": trainer.loss,
        "loss_finite": math.isfinite(trainer.loss),
    }


def _paper_like(size_name: str, batch: int) -> BenchSize:
    base = SIZES[size_name]
    return BenchSize((batch, *base.shape[1:]), base.trunk, base.custom_conv_padding)


def bench_bare_steps(
    size_name: str,
    device: torch.device,
    steps: int,
    warmup: int,
    batches: tuple[int, ...] = (2, 4),
    out: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """bf16 training steps: batch 1 default layout, batch 1 / ``batches`` channels_last (one after the other).

    ``out`` (filled in place, variant by variant, and returned) keeps the finished variants if the run is stopped.
    """
    variants = [("b1_default", 1, False, False)] + [(f"b{b}_channels_last", b, True, False) for b in (1, *batches)]
    variants.append(("b1_channels_last_fused_sgd", 1, True, True))  # the configs' CUDA default
    out = {} if out is None else out
    out.update(
        {
            "step": "bf16 autocast: forward_all + BCE + 1/3 mask loss + backward + SGD (lr 1e-3, momentum 0.99)",
            "input": list(_paper_like(size_name, 1).shape),
            "steps": steps,
            "warmup": warmup,
        }
    )
    for name, batch, channels_last, fused in variants:
        try:
            trainer = _BareStep(_paper_like(size_name, batch), device, channels_last, None, fused)
            out[name] = {"channels_last": channels_last, "fused_optimizer": fused,
                         **_time_steps(trainer, device, steps, warmup, batch)}
        except torch.cuda.OutOfMemoryError as e:
            out[name] = {"error": f"out of memory: {str(e).splitlines()[0][:200]}"}
        trainer = None
        _free(device)
    base = out.get("b1_default", {}).get("volumes_per_s")
    for name, *_ in variants:
        if base and "volumes_per_s" in out[name]:
            out[name]["speedup_vs_b1_default"] = out[name]["volumes_per_s"] / base
    return out


def bench_compiled_step(
    size_name: str, device: torch.device, steps: int, warmup: int, backend: str
) -> dict[str, Any]:
    """Batch 1 channels_last with ``torch.compile(net.forward_all)``: compile time and volumes/s."""
    trainer = _BareStep(_paper_like(size_name, 1), device, True, backend)
    res = _time_steps(trainer, device, steps, max(warmup, 2), 1)
    res["compile_backend"] = backend
    res["compile_s_approx"] = res["first_step_s"] - res["step_s_median"]
    del trainer
    _free(device)
    return {"input": list(_paper_like(size_name, 1).shape), "b1_channels_last_compiled": res}


def bench_cam_upsampled(
    size_name: str, device: torch.device, repeats: int, warmup: int, out: dict[str, Any] | None = None
) -> dict[str, Any]:
    """All-80 HiResCAM upsampled to the input and normalized, vs a plain forward: time ratio and peak GiB.

    ``out`` is filled in place (variant by variant) and returned.
    """
    from hirescam_ext.visualize import HiResCAM, normalize_cam, upsample_axial_maps

    size = SIZES[size_name]
    net = build_axialnet(size).to(device).eval()
    x = torch.rand(size.shape, generator=torch.Generator().manual_seed(0)).to(device)
    cam = HiResCAM(net)
    voxels = math.prod(size.shape[2:])
    out = {} if out is None else out
    out.update(
        {
            "input": list(size.shape),
            "classes": net.n_classes,
            "repeats": repeats,
            "output_gib_fp32_all_classes": net.n_classes * voxels * 4 / 2**30,
            "upsample_chunk_classes": cam._upsample_chunk(size.shape[0], size.shape[2:]),
            "target_ratio": UPSAMPLED_TARGET_RATIO,
            "target_peak_gib": UPSAMPLED_TARGET_GIB,
        }
    )
    def iter_all() -> torch.Tensor:
        peak = torch.zeros((), device=device)
        for part in cam.iter_maps(x):  # one chunk at a time; stand-in consumer: the maps' maximum
            peak = torch.maximum(peak, part.maps.amax().float())
        return peak

    def all_at_once() -> torch.Tensor:  # __call__ before issue 15: upsample all, normalize out of place
        return normalize_cam(upsample_axial_maps(cam.compute_raw(x), x.shape[2:]))

    for precision in ("fp32", "bf16"):
        forward = _call(device, precision, net, x, no_grad=True)
        variants = (("iter_maps", _call(device, precision, iter_all)),
                    ("call_fp16", _call(device, precision, cam, x, dtype=torch.float16)),
                    ("all_at_once_before", _call(device, precision, all_at_once)))  # fmt: skip

        res: dict[str, Any] = {}
        out[precision] = res
        for name, fn in variants:
            try:
                t = median_times({"forward": forward, name: fn}, repeats=repeats, warmup=warmup, device=device)
                _reset_peak(device)
                before = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
                result = fn()
                _sync(device)
                peak = _peak_gib(device)
                del result
                res[name] = {
                    "forward_s": t["forward"],
                    "s": t[name],
                    "over_forward": t[name] / t["forward"],
                    "peak_memory_gib": peak,
                    "memory_before_gib": before,
                }
            except torch.cuda.OutOfMemoryError as e:
                res[name] = {"error": f"out of memory: {str(e).splitlines()[0][:200]}"}
            _free(device)
        it = res.get("iter_maps", {})
        if "over_forward" in it:
            res["iter_maps_meets_ratio_target"] = it["over_forward"] <= UPSAMPLED_TARGET_RATIO
            if it["peak_memory_gib"] is not None:
                res["iter_maps_meets_memory_target"] = it["peak_memory_gib"] <= UPSAMPLED_TARGET_GIB
    del net, cam, x
    _free(device)
    return out


def bench_generic_layers(
    device: torch.device,
    repeats: int,
    warmup: int,
    size: int,
    layers: tuple[str, ...] = ("layer2", "layer3", "layer4"),
    out: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generic HiResCAM of MONAI's 3D ResNet-18 per layer: vmap vs replayed class gradients, vs a forward.

    ``out`` is filled in place (layer by layer, replay before vmap) and returned.
    """
    from monai.networks.nets import resnet18

    from hirescam_ext.visualize import HiResCAM

    torch.manual_seed(0)
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=80).eval().to(device)
    x = torch.rand(1, 1, size, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    out = {} if out is None else out
    out.update(
        {
            "model": "monai.networks.nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=80)",
            "input": [1, 1, size, size, size],
            "method": "HiResCAM(net, target_layers=layer, gradient_mode=...).compute_raw(x), all 80 classes, fp32",
            "target_ratio": GENERIC_TARGET_RATIO,
        }
    )
    for layer in layers:
        res: dict[str, Any] = {}
        out[layer] = res
        for mode in ("replay", "vmap"):
            cam = HiResCAM(net, target_layers=layer, gradient_mode=mode)
            try:
                t = median_times(
                    {"forward": forward, mode: lambda: cam.compute_raw(x)}, repeats=repeats, warmup=warmup,
                    device=device,
                )
                _reset_peak(device)
                cam.compute_raw(x)
                _sync(device)
                res[mode] = {
                    "forward_s": t["forward"],
                    "s": t[mode],
                    "over_forward": t[mode] / t["forward"],
                    "peak_memory_gib": _peak_gib(device),
                }
            except torch.cuda.OutOfMemoryError as e:
                res[mode] = {"error": f"out of memory: {str(e).splitlines()[0][:200]}"}
            _free(device)
        if "s" in res.get("replay", {}) and "s" in res.get("vmap", {}):
            res["speedup_replay_vs_vmap"] = res["vmap"]["s"] / res["replay"]["s"]
    del net, x
    _free(device)
    return out


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
        fns = {
            "forward": _call(device, precision, net, x, no_grad=True),
            "hirescam_raw": _call(device, precision, hires.compute_raw, x),
            "hirescam_normalized": _call(device, precision, hires, x, upsample=False),
            "gradcam_raw": _call(device, precision, grad.compute_raw, x),
            "gradcam_normalized": _call(device, precision, grad, x, upsample=False),
        }
        t = median_times(fns, repeats=repeats, warmup=warmup, device=device)
        maps = fns["hirescam_raw"]()
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


SECTIONS = ("bare_steps", "cam_upsampled", "generic_layers", "compiled_step", "train", "cam")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, trunk 'small', tiny volumes, one step: the code path only"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per variant (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3)")
    parser.add_argument("--repeats", type=int, default=None, help="timed CAM / forward runs (default 20)")
    parser.add_argument("--no-fp32", action="store_true", help="skip the float32 training step")
    parser.add_argument(
        "--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, help="sections to run, in this order"
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="end the run within this many seconds (default: no limit)"
    )
    parser.add_argument("--generic-size", type=int, default=None, help="generic_layers input edge (default 128)")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, size_name = torch.device("cpu"), "tiny"
        steps, warmup, repeats = args.steps or 1, args.warmup if args.warmup is not None else 0, args.repeats or 1
        cam_repeats, generic_size, compile_backend, batches = 1, args.generic_size or 16, "eager", (2,)
        cam_warmup, generic_repeats = 0, 1
    else:
        if not torch.cuda.is_available():
            print(json.dumps({"error": "no CUDA device available; use --dry-run for a CPU check"}))
            return 2
        device, size_name = torch.device("cuda"), "paper"
        steps, warmup, repeats = args.steps or 10, args.warmup if args.warmup is not None else 3, args.repeats or 20
        cam_repeats, generic_size, compile_backend, batches = 5, args.generic_size or 128, "inductor", (2, 4)
        cam_warmup, generic_repeats = 1, 3
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    budget = args.budget_s if args.budget_s is not None else math.inf
    report: dict[str, Any] = {
        "benchmark": "scripts/gpu_benchmark.py",
        "dry_run": args.dry_run,
        "budget_s": args.budget_s,
        **environment_info(device, sys.argv[1:] if argv is None else argv),
        "note_gpu_numbers": "fill docs/PERFORMANCE.md section 'GPU, issue 15' from this file",
    }
    # each section fills the dict it is given where it can, so a section stopped by the budget keeps what it has
    sections = {
        "bare_steps": lambda o: bench_bare_steps(size_name, device, steps, warmup, batches, out=o),
        "cam_upsampled": lambda o: bench_cam_upsampled(size_name, device, cam_repeats, cam_warmup, out=o),
        "generic_layers": lambda o: bench_generic_layers(device, generic_repeats, cam_warmup, generic_size, out=o),
        "compiled_step": lambda o: bench_compiled_step(size_name, device, steps, warmup, compile_backend),
        "train": lambda o: bench_train(size_name, device, steps, warmup, fp32=not args.no_fp32),
        "cam": lambda o: bench_cam(size_name, device, repeats, max(warmup, 1)),
    }
    status = 0
    for name in args.sections:
        left = budget - (time.perf_counter() - start)
        if left < 5:
            report[name] = {"skipped": f"--budget-s {args.budget_s:g} spent ({budget - left:.0f} s elapsed)"}
            _write(report)
            continue
        t0 = time.perf_counter()
        partial: dict[str, Any] = {}
        try:
            with _deadline(left - 2):
                report[name] = sections[name](partial)
        except BudgetExceeded as e:
            report[name] = {**partial, "error": str(e)}
            _free(device)
        except Exception as e:  # noqa: BLE001 - keep the other sections' numbers
            report[name] = {**partial, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            status = 1
            _free(device)
        report[name + "_wall_s"] = time.perf_counter() - t0
        report["total_s"] = time.perf_counter() - start
        _write(report)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
