"""``hirescam bench --pipeline``: the bundle's own training workflow timed end to end, data loading included.

Unlike the bare training steps of :mod:`hirescam_ext.benchmark` (a fixed tensor fed to the network), this runs
``configs/train.json`` as a user runs it: the synthetic benchmark is generated into a scratch folder, the trainer
reads it through the configured dataset (disk cache of the deterministic preprocessing by default), DataLoader
workers, the paper's augmentation, collation, the device copy, the step and every training handler. The first epoch
builds the cache and is reported apart; the following epochs are timed. :class:`PipelineTimer` splits each iteration
into the wait for the batch (Ignite's ``GET_BATCH_STARTED`` to ``GET_BATCH_COMPLETED``: loading, augmentation,
collation) and the rest (device copy, forward, backward, optimizer, handlers).

Example:
    $ hirescam bench --pipeline --size tiny --pipeline-scans 24 --num-workers 2
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["PipelineTimer", "measure_train_pipeline", "measure_cache_reads"]

#: benchmark size -> (synthetic profile, spatial_size); trunk and padding are the bare-step benchmark's (``SIZES``)
PIPELINE_SIZES: dict[str, tuple[str, list[int]]] = {
    "tiny": ("tiny", [64, 64, 48]),
    "demo": ("demo", [128, 128, 96]),
    "paper": ("paper", [420, 420, 405]),
}


class PipelineTimer:
    """Ignite handler timing each iteration of epochs ``>= from_epoch``: batch wait and whole step (seconds).

    ``waits[i]`` is the time the engine waited for batch ``i``; ``steps[i]`` the time from asking for it to the end
    of its iteration (so ``steps[i] - waits[i]`` is the device copy, the step and the handlers).
    """

    def __init__(self, from_epoch: int = 2, device: torch.device | None = None) -> None:
        self.from_epoch = from_epoch
        self.device = device
        self.waits: list[float] = []
        self.steps: list[float] = []
        self.batch_sizes: list[int] = []
        self.epoch_seconds: dict[int, float] = {}
        self._t_request = self._t_epoch = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._batch_requested)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_received)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def _timed(self, engine: Engine) -> bool:
        return engine.state.epoch >= self.from_epoch

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _epoch_started(self, engine: Engine) -> None:
        self._t_epoch = time.perf_counter()
        if self._timed(engine) and self.device is not None and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _epoch_completed(self, engine: Engine) -> None:
        self._sync()
        self.epoch_seconds[int(engine.state.epoch)] = time.perf_counter() - self._t_epoch

    def _batch_requested(self, engine: Engine) -> None:
        self._t_request = time.perf_counter()

    def _batch_received(self, engine: Engine) -> None:
        if self._timed(engine):
            self.waits.append(time.perf_counter() - self._t_request)
            batch = engine.state.batch
            image = batch.get("image") if isinstance(batch, dict) else None
            self.batch_sizes.append(int(image.shape[0]) if isinstance(image, torch.Tensor) else 1)

    def _iteration_completed(self, engine: Engine) -> None:
        if self._timed(engine):
            self._sync()
            self.steps.append(time.perf_counter() - self._t_request)

    def summary(self) -> dict[str, Any]:
        """Volumes/s over the timed iterations, the wait share and the per-iteration medians."""
        total = sum(self.steps)
        volumes = sum(self.batch_sizes)
        return {
            "timed_iterations": len(self.steps),
            "timed_volumes": volumes,
            "volumes_per_s": volumes / total if total > 0 else None,
            "data_wait_share": sum(self.waits) / total if total > 0 else None,
            "data_wait_s_median": statistics.median(self.waits) if self.waits else None,
            "step_s_median": statistics.median(self.steps) if self.steps else None,
            "epoch_seconds": {str(k): v for k, v in sorted(self.epoch_seconds.items())},
        }


def measure_train_pipeline(
    size: str = "tiny",
    device: torch.device | str = "cpu",
    scans: int = 24,
    batch_size: int = 1,
    num_workers: int = 0,
    epochs: int = 2,
    cache: str = "disk",
    cache_dtype: str = "int16",
    cache_output: str = "float32",
    augment_on_device: bool = False,
    work_dir: str | Path | None = None,
    extra_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``configs/train.json`` for ``epochs`` epochs on ``scans`` generated scans; time epochs 2 and later.

    Args:
        size: ``"tiny"`` (64 x 64 x 48, small trunk), ``"demo"`` (128 x 128 x 96, ResNet-18) or ``"paper"``.
        device: training device (the configs' CUDA defaults apply there: bf16, channels_last, fused optimizer).
        scans: scans generated (55 % are the training split).
        batch_size, num_workers, cache, cache_dtype, cache_output: the train config's settings of the same names
            (``cache_dtype`` and ``cache_output`` apply to ``cache="memmap"``).
        augment_on_device: the paper's flip / rot90 after the device copy instead of in the DataLoader workers.
        epochs: at least 2; the first builds the cache and is reported apart.
        work_dir: scratch folder for data, cache and checkpoints (a temporary one by default).
        extra_overrides: more config overrides.

    Returns:
        The settings, :meth:`PipelineTimer.summary` and, on CUDA, the peak memory of the timed epochs.
    """
    from monai.bundle import ConfigWorkflow

    from hirescam_ext.benchmark import SIZES
    from hirescam_ext.inference.cli import configs_dir
    from hirescam_ext.synthetic.generator import generate_dataset

    if size not in PIPELINE_SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(PIPELINE_SIZES)}")
    if epochs < 2:
        raise ValueError("epochs must be >= 2: the first epoch builds the cache and is not timed")
    profile, spatial_size = PIPELINE_SIZES[size]
    trunk, padding = SIZES[size].trunk, SIZES[size].custom_conv_padding
    device = torch.device(device)
    scratch = tempfile.TemporaryDirectory(prefix="hirescam_pipeline_") if work_dir is None else None
    root = Path(scratch.name if scratch is not None else work_dir)
    try:
        t0 = time.perf_counter()
        data = generate_dataset(root / "data", profile=profile, n_scans=scans, seed=0, workers=0, progress=False)
        generate_s = time.perf_counter() - t0
        configs = configs_dir()
        overrides = {
            "bundle_root": str(root), "dataset_dir": str(data), "synthetic_profile": None,
            "spatial_size": spatial_size, "trunk": trunk, "custom_conv_padding": padding,
            "cache": cache, "cache_dtype": cache_dtype, "cache_output": cache_output, "cache_dir": str(root / "cache"),
            "augment_on_device": augment_on_device, "batch_size": batch_size,
            "num_workers": num_workers,
            "device": f"$torch.device({str(device)!r})", "val_interval": 10_000, "train#trainer#max_epochs": epochs,
            **(extra_overrides or {}),
        }  # fmt: skip
        workflow = ConfigWorkflow(
            config_file=str(configs / "train.json"), meta_file=str(configs / "metadata.json"),
            logging_file=False, workflow_type="train", **overrides,
        )  # fmt: skip
        workflow.initialize()
        timer = PipelineTimer(from_epoch=2, device=device)
        timer.attach(workflow.parser.get_parsed_content("train#trainer"))
        workflow.run()
        workflow.finalize()
        result: dict[str, Any] = {
            "size": size, "input": [batch_size, 1, *spatial_size], "trunk": trunk, "device": str(device),
            "scans": scans, "batch_size": batch_size, "num_workers": num_workers, "cache": cache,
            "cache_dtype": cache_dtype if cache == "memmap" else None,
            "cache_output": cache_output if cache == "memmap" else None, "augment_on_device": augment_on_device,
            "epochs": epochs,
            "generate_s": generate_s, **timer.summary(),
        }  # fmt: skip
        if device.type == "cuda":
            result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        return result
    finally:
        if scratch is not None:
            scratch.cleanup()


#: cache variants of :func:`measure_cache_reads`: (cache, cache_dtype, cache_output)
CACHE_VARIANTS = (
    ("disk", None, None),
    ("memmap", "int16", "float32"),
    ("memmap", "uint8", "float32"),
    ("memmap", "int16", "stored"),
    ("memmap", "uint8", "stored"),
)


def measure_cache_reads(
    size: str = "paper", items: int = 3, repeats: int = 3, work_dir: str | Path | None = None
) -> dict[str, Any]:
    """Time a cache hit of :func:`hirescam_ext.data.make_dataset` per cache variant, side by side in one run.

    ``items`` windowed random volumes of the benchmark size (``[1, *spatial_size]``, values in the bundle's HU window
    output) are cached once per variant; then every item is read ``repeats`` times (from the page cache: the
    files were just written). Reported per variant: the median seconds per item read, the bytes per item on disk and
    the ratio of the ``"disk"`` cache's read time to the variant's (``> 1``: faster than the float32 ``.pt`` cache).
    ``"stored"`` variants return the integer volume (the device converts it; see ``PrepareBatchWithRegions``).

    Example:
        $ hirescam bench --cache-reads --size paper
    """
    import os
    import shutil

    from monai.data import MetaTensor
    from monai.transforms import Compose, MapTransform

    from hirescam_ext.data.dataset import make_dataset

    if size not in PIPELINE_SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(PIPELINE_SIZES)}")
    shape = [1, *PIPELINE_SIZES[size][1]]

    class _Volume(MapTransform):
        def __call__(self, data: dict) -> dict:
            d = dict(data)
            g = torch.Generator().manual_seed(int(d["index"]))
            d["image"] = MetaTensor(torch.rand(shape, generator=g) - 0.449)
            d["label"] = torch.zeros(80)
            return d

    scratch = tempfile.mkdtemp(prefix="hirescam_cache_reads_", dir=work_dir)
    result: dict[str, Any] = {"size": size, "input": shape, "items": items, "repeats": repeats, "variants": {}}
    try:
        for cache, dtype, output in CACHE_VARIANTS:
            name = cache if dtype is None else f"{cache}_{dtype}_{output}"
            folder = Path(scratch) / name
            kwargs = {} if dtype is None else {"cache_dtype": dtype, "cache_output": output}
            data = [{"index": i} for i in range(items)]
            ds = make_dataset(data, Compose([_Volume(keys="index")]), cache=cache, cache_dir=folder, **kwargs)
            for i in range(items):  # fill
                ds[i]
            times = []
            for _ in range(repeats):
                for i in range(items):
                    t0 = time.perf_counter()
                    ds[i]["image"]
                    times.append(time.perf_counter() - t0)
            n_bytes = sum(f.stat().st_size for f in folder.iterdir())
            result["variants"][name] = {"item_s_median": statistics.median(times), "bytes_per_item": n_bytes / items}
            shutil.rmtree(folder, ignore_errors=True)
        disk = result["variants"]["disk"]["item_s_median"]
        for v in result["variants"].values():
            v["speedup_vs_disk"] = disk / v["item_s_median"]
        result["threads"] = torch.get_num_threads()
        result["load_average_1m"] = os.getloadavg()[0]
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
