"""Speed and memory benchmarks of AxialNet training (``hirescam bench``): prints one JSON document.

The training step is the one of Draelos & Carin (HiResCAM, arXiv:2011.08891, section "Mask loss"): AxialNet's
``forward_all``, :class:`~hirescam_ext.losses.ClassificationMaskLoss` (BCE + 1/3 mask loss on the raw attention
``[B, M, H, D1, D2]``), backward, and an SGD step (lr 1e-3, momentum 0.99). It is timed side by side in one process,
interleaved step by step, against the classification-only step (plain ``forward`` logits + BCE), so the cost of the
mask term is measured under the same conditions.

Sizes (``--size``):

=======  ======================  ========  ===================  ==============================
name     input ``[B,C,X,Y,Z]``   trunk     custom_conv_padding  attention grid ``[H, D1, D2]``
=======  ======================  ========  ===================  ==============================
tiny     [1, 1, 64, 64, 12]      small     1                    [4, 2, 2]
demo     [1, 1, 128, 128, 96]    resnet18  1                    [32, 4, 4]
paper    [1, 1, 420, 420, 405]   resnet18  0                    [135, 6, 6]
=======  ======================  ========  ===================  ==============================

Throughput is ``batch / median step time`` over ``--steps`` timed steps after ``--warmup`` untimed ones. Peak memory:
on CUDA ``torch.cuda.max_memory_allocated`` (reset before every step, maximum over the timed steps); on CPU the
process resident set size sampled every few milliseconds by a background thread during the timed steps (psutil when
installed, else ``/proc/self/statm``, else the ``ru_maxrss`` high-water mark). Both are reported as the peak
(``peak_memory_*``, which includes every variant's resident model, gradients and momentum: about 0.15 GB per
ResNet-18 AxialNet) and as the increase over the memory in use just before the step
(``peak_memory_step_increase_mib``: activations and temporaries of that variant alone).

``--suite all`` also runs the other benchmark scripts of ``scripts/`` (CAM overhead, preprocessing, segmentation,
labeler) through their ``main(argv)`` and embeds their JSON output; a script that is absent or fails is recorded as
``"not available"`` (with the reason) instead of failing the run.

Module-level imports are the standard library and torch only: ``scripts/gpu_benchmark.py`` reuses this module on a
machine that has torch but few other packages (the networks and losses, which need MONAI, are imported lazily).

Example:
    >>> from hirescam_ext.benchmark import main
    >>> main(["--size", "tiny", "--steps", "1", "--warmup", "0"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import io
import json
import math
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SIZES",
    "BenchSize",
    "PeakRSSSampler",
    "TrainConfig",
    "build_axialnet",
    "synthetic_batch",
    "compare_train_steps",
    "mask_loss_time_ratios",
    "median_times",
    "environment_info",
    "run_script_benchmark",
    "main",
]

#: the paper's optimizer settings (SGD, lr 1e-3, momentum 0.99)
LEARNING_RATE = 1e-3
MOMENTUM = 0.99
#: benchmark scripts that ``--suite all`` runs when present: name -> arguments (full run, ``--quick`` run)
SCRIPT_BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "benchmark_cam": ([], ["--quick"]),
    "benchmark_preprocessing": ([], ["--skip-full", "--repeats", "1", "--epochs", "1"]),
    "benchmark_segmentation": ([], ["--repeats", "1"]),
    "benchmark_labeler": ([], ["--repeats", "1"]),
}


@dataclass(frozen=True)
class BenchSize:
    """One benchmark input size: the volume shape and the AxialNet configuration it needs.

    Attributes:
        shape: input ``[B, C, X, Y, Z]``.
        trunk: AxialNet trunk name.
        custom_conv_padding: padding of the custom convs (1 keeps a grid for inputs below 288 x 288).
    """

    shape: tuple[int, int, int, int, int]
    trunk: str
    custom_conv_padding: int


SIZES: dict[str, BenchSize] = {
    "tiny": BenchSize((1, 1, 64, 64, 12), "small", 1),
    "demo": BenchSize((1, 1, 128, 128, 96), "resnet18", 1),
    "paper": BenchSize((1, 1, 420, 420, 405), "resnet18", 0),
}


@dataclass(frozen=True)
class TrainConfig:
    """One training-step variant to time.

    Attributes:
        name: key of the result in the JSON.
        mask_loss: ``True``: ``forward_all`` + BCE + mask loss; ``False``: ``forward`` + BCE only.
        amp: ``None`` (float32) or ``"bf16"`` (``torch.autocast`` with bfloat16; no gradient scaler needed).
    """

    name: str
    mask_loss: bool
    amp: str | None = None


_AMP_DTYPES = {"bf16": torch.bfloat16}


def _rss_reader() -> tuple[Callable[[], int], str]:
    """A function returning the current resident set size in bytes, and the name of the method used."""
    try:
        import psutil  # optional

        proc = psutil.Process()
        return (lambda: int(proc.memory_info().rss)), "psutil"
    except ImportError:
        pass
    statm = Path("/proc/self/statm")
    if statm.exists():
        page = os.sysconf("SC_PAGE_SIZE")

        def read_statm() -> int:
            return int(statm.read_text().split()[1]) * page

        return read_statm, "/proc/self/statm"
    import resource  # POSIX only

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return (lambda: int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale), "ru_maxrss (high-water mark)"


class PeakRSSSampler:
    """Peak resident set size of this process while the ``with`` block runs, sampled by a background thread.

    Attributes:
        method: how the resident size is read (``psutil``, ``/proc/self/statm`` or ``ru_maxrss``).
        start_bytes: resident size on entry.
        peak_bytes: highest resident size seen (entry and exit included).

    Example:
        >>> with PeakRSSSampler() as rss:
        ...     _ = bytearray(10_000_000)
        >>> rss.peak_bytes >= rss.start_bytes
        True
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        self.read, self.method = _rss_reader()
        self.interval_s = interval_s
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_bytes = max(self.peak_bytes, self.read())

    def __enter__(self) -> PeakRSSSampler:
        self.start_bytes = self.peak_bytes = self.read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.read())


def build_axialnet(size: BenchSize, n_classes: int = 80, seed: int = 0) -> torch.nn.Module:
    """AxialNet (random init, no weight download) configured for ``size``."""
    from hirescam_ext.networks.axialnet import AxialNet

    torch.manual_seed(seed)
    return AxialNet(
        n_classes=n_classes,
        spatial_size=size.shape[2:],
        trunk=size.trunk,
        custom_conv_padding=size.custom_conv_padding,
    )


def synthetic_batch(
    net: torch.nn.Module, size: BenchSize, device: torch.device | str, seed: int = 0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A random volume, labels (about 10 % positive) and allowed regions (half of the grid for a positive label).

    Returns:
        ``(x, target)`` with ``target = {"label": [B, M], "regions": [B, M, H, D1, D2]}`` as
        :class:`~hirescam_ext.losses.ClassificationMaskLoss` expects; absent labels have all-zero regions.
    """
    g = torch.Generator().manual_seed(seed)
    b, z = size.shape[0], size.shape[-1]
    h, d1, d2 = net.attention_grid(
        size.shape[2:4], z=z, trunk=size.trunk, custom_conv_padding=size.custom_conv_padding
    )
    m = net.n_classes
    x = torch.rand(size.shape, generator=g)
    label = (torch.rand(b, m, generator=g) < 0.1).float()
    regions = (torch.rand(b, m, h, d1, d2, generator=g) < 0.5).float() * label[:, :, None, None, None]
    return x.to(device), {"label": label.to(device), "regions": regions.to(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    if amp is None:
        return contextlib.nullcontext()
    if amp not in _AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(_AMP_DTYPES)} or None, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=_AMP_DTYPES[amp])


class _Trainer:
    """One model + optimizer + loss for one :class:`TrainConfig`; :meth:`step` runs one training step."""

    def __init__(self, config: TrainConfig, size: BenchSize, device: torch.device, n_classes: int) -> None:
        from hirescam_ext.losses import ClassificationMaskLoss

        self.config = config
        self.device = device
        self.net = build_axialnet(size, n_classes).to(device).train()
        self.x, self.target = synthetic_batch(self.net, size, device)
        self.loss_fn = ClassificationMaskLoss(use_mask_loss=config.mask_loss)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
        self.last_loss = float("nan")

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with _autocast(self.device, self.config.amp):
            if self.config.mask_loss:
                out = self.net.forward_all(self.x)
                pred: Any = {"logits": out.logits, "attention": out.attention}
                loss = self.loss_fn(pred, self.target)
            else:
                loss = self.loss_fn(self.net(self.x), self.target["label"])
        loss.backward()
        self.opt.step()
        self.last_loss = float(loss.detach())


def compare_train_steps(
    configs: Sequence[TrainConfig],
    size: BenchSize,
    device: torch.device | str = "cpu",
    steps: int = 5,
    warmup: int = 1,
    n_classes: int = 80,
) -> dict[str, dict[str, Any]]:
    """Time AxialNet training-step variants side by side (interleaved step by step) in this process.

    Args:
        configs: the variants (distinct names); each gets its own identically initialized model and optimizer.
        size: input size and network configuration.
        device: where to run.
        steps: timed steps per variant (>= 1).
        warmup: untimed steps per variant first (cudnn autotuning, allocator warm-up).
        n_classes: M.

    Returns:
        ``{name: {"volumes_per_s", "step_s_median", "step_s_min", "step_s_all", "process_cpu_s_median",
        "peak_memory_bytes", ...}}`` (``process_cpu_s_median``: CPU time of the whole process per step, all threads;
        on a shared machine ``step_s_min`` is the least disturbed step). On CUDA a variant that runs out of memory
        is reported as ``{"error": "out of memory", ...}`` and the others go on.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    if len({c.name for c in configs}) != len(configs):
        raise ValueError(f"config names must be distinct, got {[c.name for c in configs]}")
    device = torch.device(device)
    batch = size.shape[0]
    trainers: dict[str, _Trainer] = {}
    results: dict[str, dict[str, Any]] = {}
    for c in configs:
        try:
            trainers[c.name] = _Trainer(c, size, device, n_classes)
        except torch.cuda.OutOfMemoryError:
            results[c.name] = {"error": "out of memory while building the model"}
    times: dict[str, list[float]] = {n: [] for n in trainers}
    cpu_times: dict[str, list[float]] = {n: [] for n in trainers}
    peaks: dict[str, int] = {n: 0 for n in trainers}
    deltas: dict[str, int] = {n: 0 for n in trainers}
    method = "torch.cuda.max_memory_allocated" if device.type == "cuda" else ""
    for i in range(warmup + steps):
        for name in list(trainers):
            trainer = trainers[name]
            timed = i >= warmup
            try:
                cpu_start = time.process_time()
                if device.type == "cuda":
                    _sync(device)
                    torch.cuda.reset_peak_memory_stats(device)
                    before = torch.cuda.memory_allocated(device)
                    start = time.perf_counter()
                    trainer.step()
                    _sync(device)
                    elapsed = time.perf_counter() - start
                    peak = torch.cuda.max_memory_allocated(device)
                    delta = peak - before
                else:
                    with PeakRSSSampler() as rss:
                        start = time.perf_counter()
                        trainer.step()
                        elapsed = time.perf_counter() - start
                    method = rss.method
                    peak, delta = rss.peak_bytes, rss.peak_bytes - rss.start_bytes
            except torch.cuda.OutOfMemoryError:
                results[name] = {"error": "out of memory", "amp": trainer.config.amp}
                del trainers[name]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            cpu_elapsed = time.process_time() - cpu_start
            if timed:
                times[name].append(elapsed)
                cpu_times[name].append(cpu_elapsed)
                peaks[name] = max(peaks[name], peak)
                deltas[name] = max(deltas[name], delta)
    for name, trainer in trainers.items():
        med = statistics.median(times[name])
        results[name] = {
            "mask_loss": trainer.config.mask_loss,
            "step": (
                "forward_all + BCE + 1/3 mask loss + backward + SGD step"
                if trainer.config.mask_loss
                else "forward + BCE + backward + SGD step"
            ),
            "amp": trainer.config.amp or "fp32",
            "volumes_per_s": batch / med,
            "step_s_median": med,
            "step_s_min": min(times[name]),
            "step_s_all": times[name],
            "process_cpu_s_median": statistics.median(cpu_times[name]),
            "peak_memory_bytes": peaks[name],
            "peak_memory_mib": peaks[name] / 2**20,
            "peak_memory_step_increase_mib": deltas[name] / 2**20,
            "memory_method": method,
            "final_loss": trainer.last_loss,
            "loss_finite": math.isfinite(trainer.last_loss),
        }
    return {c.name: results[c.name] for c in configs}


def mask_loss_time_ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Step time with the mask loss over step time without it (median and fastest step), when both ran."""
    on, off = results.get("mask_loss_on", {}), results.get("mask_loss_off", {})
    if "step_s_median" not in on or "step_s_median" not in off:
        return {}
    return {
        "mask_loss_time_ratio_median": on["step_s_median"] / off["step_s_median"],
        "mask_loss_time_ratio_min": on["step_s_min"] / off["step_s_min"],
    }


def median_times(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Median wall time (s) of each callable, interleaved so drift affects all alike; synchronizes CUDA."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            runs[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in runs.items()}


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load_average() -> float | None:
    """1-minute system load average (other processes competing for the CPUs), where the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def environment_info(device: torch.device | str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Device name, torch / Python versions, thread count, UTC date and command line, for a benchmark report.

    ``command`` is the process command line; ``argv`` the arguments the benchmark itself parsed.
    """
    device = torch.device(device)
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1m": _load_average(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


def default_scripts_dir() -> Path:
    """``scripts/`` of the source checkout this package lives in (absent in an installed wheel)."""
    return Path(__file__).resolve().parents[1] / "scripts"


def run_script_benchmark(name: str, argv: Sequence[str], scripts_dir: Path | None = None) -> dict[str, Any]:
    """Import ``scripts/<name>.py`` by path, run its ``main(argv)`` and return the JSON it prints.

    Anything that goes wrong (missing file, no ``main``, an exception, a non-zero exit, output that is not JSON) is
    returned as ``{"status": "not available", "reason": ...}`` instead of raised.
    """
    path = (scripts_dir or default_scripts_dir()) / f"{name}.py"
    if not path.is_file():
        return {"status": "not available", "reason": f"{path} does not exist"}
    buffer = io.StringIO()
    try:
        spec = importlib.util.spec_from_file_location(f"_hirescam_bench_{name}", path)
        if spec is None or spec.loader is None:
            return {"status": "not available", "reason": f"{path} cannot be imported"}
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn = getattr(module, "main", None)
        if not callable(fn):
            return {"status": "not available", "reason": f"{path} has no main(argv) function"}
        start = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            rc = fn(list(argv))
        elapsed = time.perf_counter() - start
    except SystemExit as e:  # argparse errors
        return {"status": "not available", "reason": f"{path}: main({list(argv)}) exited with {e.code}"}
    except Exception as e:  # noqa: BLE001 - any failure of another script is recorded, not raised
        return {"status": "not available", "reason": f"{path}: {type(e).__name__}: {e}"}
    if rc not in (0, None):
        return {"status": "not available", "reason": f"{path}: main({list(argv)}) returned {rc}"}
    text = buffer.getvalue()
    try:  # the first JSON object printed; log lines before or after it are ignored
        result, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    except ValueError:
        return {"status": "not available", "reason": f"{path}: output is not one JSON document: {text[:200]!r}"}
    return {"status": "ok", "argv": list(argv), "wall_s": elapsed, "result": result}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hirescam bench",
        description="AxialNet training-step speed and peak memory, with and without the mask loss (prints JSON).",
    )
    p.add_argument("--suite", choices=("train", "all"), default="train", help="train (default) or all benchmarks")
    p.add_argument("--size", choices=sorted(SIZES), default="demo", help="input size (default demo, 128x128x96)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="torch.autocast bf16 (default none)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="--suite all: short runs of the other benchmark scripts")
    p.add_argument("--scripts-dir", type=Path, default=None, help="folder of the other benchmark scripts")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--pipeline", action="store_true",
                   help="time the bundle's train workflow end to end (data loading included) instead of bare steps")
    p.add_argument("--pipeline-scans", type=int, default=24, help="--pipeline: scans generated (55%% train)")
    p.add_argument("--pipeline-epochs", type=int, default=2, help="--pipeline: epochs (the first builds the cache)")
    p.add_argument("--batch-size", type=int, default=1, help="--pipeline: training batch size")
    p.add_argument("--num-workers", type=int, default=0, help="--pipeline: DataLoader workers")
    p.add_argument("--cache", choices=("none", "memory", "disk", "memmap"), default="disk", help="--pipeline: cache")
    p.add_argument("--cache-dtype", choices=("int16", "uint8"), default="int16", help="--pipeline: memmap cache dtype")
    p.add_argument("--cache-output", choices=("float32", "stored"), default="float32",
                   help="--pipeline, memmap cache: convert in the workers (float32) or on the device (stored)")
    p.add_argument("--augment-on-device", action="store_true",
                   help="--pipeline: the paper's flip/rot90 after the device copy instead of in the workers")
    p.add_argument("--cache-reads", action="store_true",
                   help="time a cache hit of every cache format (disk .pt, memmap int16/uint8) at --size instead")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``hirescam bench``: run the benchmarks and print one JSON document; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available")
        torch.backends.cudnn.benchmark = True
    amp = None if args.amp == "none" else args.amp
    size = SIZES[args.size]
    start = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "hirescam bench", "suite": args.suite, **environment_info(device, argv)}
    if args.cache_reads:
        from hirescam_ext.pipeline_benchmark import measure_cache_reads

        report["suite"] = "cache_reads"
        report["cache_reads"] = measure_cache_reads(args.size)
        return _emit(report, start, args.output)
    if args.pipeline:
        from hirescam_ext.pipeline_benchmark import measure_train_pipeline

        report["suite"] = "pipeline"
        with contextlib.redirect_stdout(sys.stderr):  # the workflow's logs: stdout carries the JSON only
            report["pipeline"] = measure_train_pipeline(
                args.size, device, scans=args.pipeline_scans, batch_size=args.batch_size,
                num_workers=args.num_workers, epochs=args.pipeline_epochs, cache=args.cache,
                cache_dtype=args.cache_dtype, cache_output=args.cache_output,
                augment_on_device=args.augment_on_device,
            )  # fmt: skip
        return _emit(report, start, args.output)
    report["train"] = {
        "size": args.size,
        "input": list(size.shape),
        "trunk": size.trunk,
        "custom_conv_padding": size.custom_conv_padding,
        "n_classes": 80,
        "optimizer": f"SGD(lr={LEARNING_RATE}, momentum={MOMENTUM})",
        "amp": amp or "fp32",
        "steps": args.steps,
        "warmup": args.warmup,
        "interleaved": True,
        "results": compare_train_steps(
            [TrainConfig("mask_loss_on", True, amp), TrainConfig("mask_loss_off", False, amp)],
            size,
            device,
            steps=args.steps,
            warmup=args.warmup,
        ),
    }
    report["train"].update(mask_loss_time_ratios(report["train"]["results"]))
    if args.suite == "all":
        report["scripts"] = {
            name: run_script_benchmark(name, quick if args.quick else full, args.scripts_dir)
            for name, (full, quick) in SCRIPT_BENCHMARKS.items()
        }
    return _emit(report, start, args.output)


def _emit(report: dict[str, Any], start: float, output: Path | None) -> int:
    report["load_average_1m_end"] = _load_average()
    report["total_s"] = time.perf_counter() - start
    text = json.dumps(report, indent=2, allow_nan=True)
    if output is not None:
        from hirescam_ext.utils.io import write_text_atomic  # standard library only

        output.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(output, text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
