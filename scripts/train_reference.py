"""Train the bundle's reference AxialNet with the benchmark kept in memory, on a GPU or a CPU (prints and writes JSON).

The bundle's own training (``configs/train.json``) reads NIfTI files through a DataLoader; that path is bound by
the data side (issue 15: about 50 scans/s per job measured on an H200 with four jobs sharing 16 cores; on this
project's 2-core CPU the quick profile spends most of its time loading). This script trains the same network with
the same recipe, without the file round trip:

1. generate the synthetic benchmark in memory (``hirescam_ext.synthetic``, one process per core), window it with the
   bundle's HU window and centre, and keep every scan on the training device (bf16);
2. train AxialNet (Kaiming custom convs, output bias at the log prior odds, Adam, linear warm-up for one epoch then
   cosine decay; on CUDA also bf16 autocast and ``channels_last``), classification loss of
   :class:`~hirescam_ext.losses.ClassificationMaskLoss` without the mask term, the paper's flip / rot90
   augmentation on the device, for a time budget; the cosine is sized after the first epoch so it ends with the budget;
3. keep the weights of the best validation AUROC, saved as soon as they improve (a run stopped from outside keeps
   its best model) as a checkpoint the bundle loads (``{"model": fp16 state dict, "model_settings": ...}``, the same
   settings a ``configs/train.json`` run records) in ``$OUT/reference_<trunk>[_max][_mask...].pt`` (or ``--out``),
   and report validation / test / test_shifted AUROC per label.

Usage (from the repository root; on a GPU machine the pure-Python wheels travel in ``.whl/``, see
docs/PERFORMANCE.md)::

    python3 scripts/train_reference.py --seconds 150                                  # CUDA: ResNet-18, demo size
    python scripts/train_reference.py --profile tiny --trunk small16 --scans 6000 --seed 1 --lr 2e-3 --epochs 30
                                                         # CPU: the shipped model (docs/TRAINING.md has each run)
    python scripts/train_reference.py --profile tiny --trunk small16 --slice-pooling max ...   # the MaxPool ablation
    python scripts/train_reference.py --profile tiny --model plain3d ...    # the plain 3D CNN baseline (global pooling)
    python scripts/train_reference.py --profile tiny --render-profile demo ...   # scans rendered at 2.9 mm, resampled
    python scripts/train_reference.py --profile tiny --evaluate CKPT ...     # score a saved model on another dataset
    python scripts/train_reference.py --dry-run                                       # a minute: tiny sizes
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from hirescam_ext.labels import LABEL_NAMES, label_prevalence
from hirescam_ext.losses import MASK_PENALTIES, MASK_POOLS, ClassificationMaskLoss
from hirescam_ext.metrics.auroc import compute_multilabel_auroc
from hirescam_ext.networks import (
    SLICE_POOLINGS,
    TRUNK_NAMES,
    AxialNet,
    Plain3DCNN,
    init_output_bias,
    share_fc_cells,
    tie_fc_cells,
)
from hirescam_ext.regions.allowed import allowed_regions
from hirescam_ext.regions.layout import to_attention_layout
from hirescam_ext.synthetic.generator import GENERATOR_VERSION, PROFILES, generate_case, make_config
from hirescam_ext.synthetic.visibility import mean_over_visible, visible_findings

HU_RANGE, CENTER = (-1000.0, 800.0), -0.449
#: allowed regions of the mask loss: the bundle's ``AllowedRegionsd`` in the mode the demo and quick profile use
REGION_MODE, REGION_AREA_THRESHOLD = "area", 0.1
#: version of the scan cache's content (2: allowed regions of scans rendered finer come from the organ map resampled
#: to the network grid; before, from the fine map's first slices, so caches of version 1 are not read)
CACHE_FORMAT = 2
_CONFIG: Any = None
_RENDER: Any = None
_GRID: tuple[int, int, int] | None = None


def _init_worker(config: Any, render: Any, grid: tuple[int, int, int] | None) -> None:
    global _CONFIG, _RENDER, _GRID
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    _CONFIG, _RENDER, _GRID = config, render, grid


def _case(args: tuple[int, int]) -> tuple[int, np.ndarray, list[int], str, np.ndarray | None]:
    index, seed = args
    case = generate_case(index, seed, config=_RENDER or _CONFIG)
    image, organs = case.image, case.organs
    if _RENDER is not None:  # rendered finer, resampled (bilinear) and padded / cropped as a user's scan is, and the
        # organ map (nearest) through the same chain, as the bundle prepares both before AllowedRegionsd
        from hirescam_ext.transforms.preprocessing import prepare_volumes

        hu, maps = prepare_volumes(image, case.affine, _CONFIG.spacing, _CONFIG.shape,
                                   {"organs": organs} if _GRID is not None else {})
        image = np.rint(hu.numpy()).astype(np.int16)
        organs = maps["organs"].numpy() if _GRID is not None else None
    regions = None
    if _GRID is not None:  # G_true [80, D1, D2, H] from the organ truth and the report's locations
        regions = allowed_regions(organs, case.label, case.locations, grid=_GRID, mode=REGION_MODE,
                                  area_threshold=REGION_AREA_THRESHOLD, dtype=torch.bool).numpy()
    return index, image, [int(v) for v in case.label], case.split, regions


def generate(n_scans: int, profile: str, seed: int, workers: int, shape: tuple[int, int, int] | None,
             grid: tuple[int, int, int] | None = None, render_profile: str | None = None) -> dict:
    """Scans (int16 ``[N, X, Y, Z]``), labels ``[N, 80]``, splits and, with ``grid`` ``(D1, D2, H)``, the allowed
    regions (bool ``[N, 80, D1, D2, H]``) of the benchmark, generated in parallel. With ``render_profile`` each scan
    is rendered on that profile's grid (the same patients: the plan of a scan does not depend on the grid) and
    brought to ``profile``'s grid by the bundle's own resampling, padding and cropping
    (:func:`~hirescam_ext.transforms.preprocessing.prepare_hu_volume`), rounded to whole HU."""
    config = make_config(profile, n_scans=n_scans, shape=shape)
    render = make_config(render_profile, n_scans=n_scans) if render_profile else None
    jobs = [(i, seed) for i in range(n_scans)]
    # filled in place (a list of scans and np.stack would hold every scan twice at the end)
    images: np.ndarray | None = None
    regions: np.ndarray | None = None
    labels: list[list[int]] = [[]] * n_scans
    splits = [""] * n_scans
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(config, render, grid)) as pool:
        for i, image, label, split, region in pool.imap_unordered(_case, jobs, chunksize=4):
            if images is None:
                images = np.empty((n_scans, *image.shape), image.dtype)
            if region is not None and regions is None:
                regions = np.empty((n_scans, *region.shape), region.dtype)
            images[i], labels[i], splits[i] = image, label, split
            if regions is not None:
                regions[i] = region
    return {"images": images, "labels": np.asarray(labels, np.float32), "splits": splits, "config": config,
            "regions": regions}


def cached_generate(cache: str | None, n_scans: int, profile: str, seed: int, workers: int,
                    shape: tuple[int, int, int] | None, grid: tuple[int, int, int] | None = None,
                    render_profile: str | None = None, log: Any = print) -> dict:
    """:func:`generate`, kept in (and read back from) ``cache``, a folder, when given: one ``.npz`` per profile,
    render profile, seed, scan count, size and generator version, with the allowed regions of ``grid`` when a run
    asked for them (a run that needs regions the file lacks generates again and rewrites it)."""
    if not cache:
        return generate(n_scans, profile, seed, workers, shape, grid, render_profile)
    size = "x".join(str(v) for v in make_config(profile, n_scans=n_scans, shape=shape).shape)
    path = Path(cache) / (f"scans_{profile}{size}_from_{render_profile or profile}_seed{seed}_n{n_scans}"
                          f"_v{GENERATOR_VERSION}_c{CACHE_FORMAT}.npz")
    if path.is_file():
        with np.load(path) as f:
            has = f["grid"].tolist() == list(grid) if grid is not None else True
            if has:
                log(f"scans read from {path}")
                regions = f["regions"] if grid is not None else None
                config = make_config(profile, n_scans=n_scans, shape=shape)
                return {"images": f["images"], "labels": f["labels"], "splits": f["splits"].tolist(),
                        "config": config, "regions": regions}
    data = generate(n_scans, profile, seed, workers, shape, grid, render_profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, images=data["images"], labels=data["labels"], splits=np.asarray(data["splits"]),
             regions=data["regions"] if data["regions"] is not None else np.zeros(0, bool),
             grid=np.asarray(list(grid) if grid is not None else [], np.int64))
    os.replace(tmp, path)
    log(f"scans kept in {path}")
    return data


def window(x: torch.Tensor) -> torch.Tensor:
    """The bundle's HU window and centre (``hirescam_ext.transforms.intensity.hu_window``), on any device."""
    lo, hi = HU_RANGE
    return (x.float().clamp(lo, hi) - lo) / (hi - lo) + CENTER


def windowed_on(images: np.ndarray, index: np.ndarray, device: torch.device, chunk: int = 128) -> torch.Tensor:
    """``images[index]`` (int16 ``[N, X, Y, Z]``) windowed as bf16 ``[N, 1, X, Y, Z]`` on ``device``, ``chunk`` scans
    at a time (windowing a whole split at once in float32 needs about six times its int16 size in memory)."""
    out = torch.empty((len(index), 1, *images.shape[1:]), dtype=torch.bfloat16, device=device)
    for k in range(0, len(index), chunk):
        sel = index[k : k + chunk]
        out[k : k + len(sel), 0] = window(torch.from_numpy(images[sel]).to(device)).to(torch.bfloat16)
    return out


def augment(
    x: torch.Tensor, gen: torch.Generator, regions: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The paper's augmentation per scan: p=0.5 flip along one random axis, then p=0.5 rot90 k in {1,2,3} in-plane.

    ``regions`` (``[B, 80, D1, D2, H]``, the grid of ``x``'s ``[B, 1, X, Y, Z]``) get the same flips and rotations,
    as ``RandFlipRot90d`` does in the bundle (exact: the volume is a whole number of grid cells on every axis).
    """
    out, out_regions = [], []
    for b, v in enumerate(x):  # [1, X, Y, Z]
        r = torch.rand(4, generator=gen).tolist()
        g = regions[b] if regions is not None else None
        if r[0] < 0.5:
            axis = 1 + int(r[1] * 3)
            v = v.flip(axis)
            g = g.flip(axis) if g is not None else None
        if r[2] < 0.5:
            k = 1 + int(r[3] * 3)
            v = torch.rot90(v, k, dims=(1, 2))
            g = torch.rot90(g, k, dims=(1, 2)) if g is not None else None
        out.append(v)
        out_regions.append(g)
    return torch.stack(out).contiguous(), (torch.stack(out_regions) if regions is not None else None)


def blur(x: torch.Tensor, gen: torch.Generator, sigma_max: float) -> torch.Tensor:
    """Resolution augmentation: each scan of ``x`` (``[B, 1, X, Y, Z]``) smoothed by a Gaussian of its own width,
    drawn uniformly from ``[0, sigma_max]`` voxels on every axis (radius ``ceil(2 sigma)``, edges replicated).

    Smoothing lowers the noise and mixes neighbouring tissues the way resampling a finer scan to the model's grid
    does (the bundle resamples every scan), so that intensity-based features meet that spread in training.
    """
    out = x.float().clone()
    for b in range(x.shape[0]):
        sigma = float(torch.rand(1, generator=gen)) * sigma_max
        if sigma < 0.05:
            continue
        radius = int(math.ceil(2 * sigma))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
        v = out[b : b + 1]  # [1, 1, X, Y, Z]
        for dim in (2, 3, 4):
            shape = [1, 1, 1, 1, 1]
            shape[dim] = k.numel()
            pad = [0, 0, 0, 0, 0, 0]
            pad[2 * (4 - dim)] = pad[2 * (4 - dim) + 1] = radius
            v = torch.nn.functional.conv3d(torch.nn.functional.pad(v, pad, mode="replicate"), k.view(shape))
        out[b : b + 1] = v
    return out.to(x.dtype)


@torch.no_grad()
def scores(net: torch.nn.Module, x: torch.Tensor, batch: int, amp: bool) -> torch.Tensor:
    net.eval()
    out = []
    for i in range(0, len(x), batch):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(net(x[i : i + batch].float()).float())
    return torch.cat(out)


def auroc(logits: torch.Tensor, labels: torch.Tensor, visible: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Mean and per-label AUROC; ``mean_visible`` over the findings visible at the grid (``None``: unknown)."""
    res = compute_multilabel_auroc(logits.cpu(), labels.cpu())
    finite = {k: float(v) for k, v in res.per_label.items() if v is not None and math.isfinite(v)}
    return {"mean": float(np.mean(list(finite.values()))) if finite else None,
            "mean_visible": mean_over_visible(finite, visible), "per_label": finite}


#: channels of the plain 3D CNN baseline's four stages (``--model plain3d``; half the channels of Plain3DCNN's default)
PLAIN3D_CHANNELS = (8, 16, 32, 64)
MODELS = ("axialnet", "plain3d")


def warmup_cosine_lr(base_lr: float, epoch: int, batch_index: int, step: int, steps_per_epoch: int,
                     planned_epochs: int) -> float:
    """The reference recipe's learning rate: linear warm-up over the first epoch, then cosine decay to 5 % of
    ``base_lr`` at the end of ``planned_epochs`` (``step`` counts the optimizer steps taken before this one)."""
    if epoch == 0:
        return base_lr * (batch_index + 1) / steps_per_epoch
    progress = min(1.0, (step - steps_per_epoch) / max(1, (planned_epochs - 1) * steps_per_epoch))
    return base_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def mask_weight_at(epoch: int, start_epoch: int, weight: float) -> float:
    """The mask loss's weight in ``epoch`` (0-based): 0 before ``start_epoch`` (a classification-only warm-up), then
    ``weight``."""
    return 0.0 if epoch < start_epoch else weight


def selectable_epoch(epoch: int, start_epoch: int) -> bool:
    """Whether finished ``epoch`` (1-based, as logged) may be kept as the best one: with a mask-loss warm-up, only
    epochs trained with the mask loss, so the checkpoint is a mask-loss model."""
    return epoch > start_epoch


def positive_weights(prevalence: list[float], max_weight: float) -> torch.Tensor:
    """Per-label weights of the positives in the classification loss: the training odds ``(1 - p) / p``, so a label's
    positives weigh as much as its negatives, clipped to ``[1, max_weight]``; labels never positive get 1."""
    p = torch.tensor(prevalence, dtype=torch.float32)
    odds = (1 - p) / p.clamp_min(1e-6)
    return torch.where(p > 0, odds, torch.ones_like(p)).clamp(1.0, max_weight)


def network_definition(
    shape: tuple[int, int, int],
    trunk: str,
    slice_pooling: str = "mean",
    model: str = "axialnet",
    extra_windows: list[tuple[float, float]] | None = None,
    density_bands: bool = False,
    density_smoothing: float = 0.0,
    density_context: bool = False,
    custom_conv_kernel: int = 3,
) -> dict[str, Any]:
    """The ``network_def`` of a reference AxialNet (or, with ``model="plain3d"``, of the plain 3D CNN baseline with
    global average pooling) for scans of ``shape`` (recorded in the checkpoint's settings). ``extra_windows``:
    AxialNet's extra input windows in HU (``[(-1000, -300)]``: a lung window); none, the paper's input.
    ``density_bands``: AxialNet's densitometry branch with its default band centres (off: the paper's network),
    ``density_smoothing`` the width in pixels of its in-plane Gaussian, ``density_context`` its context bands (each
    band share split by the mean HU of the pixel's neighbours). ``custom_conv_kernel``: 3 (the paper's) or 1
    (per-cell custom convs, padding 0: the same grid, each cell's features from that cell alone)."""
    if model == "plain3d":
        return {"_target_": "hirescam_ext.Plain3DCNN", "n_classes": len(LABEL_NAMES), "volume_size": list(shape),
                "channels": list(PLAIN3D_CHANNELS), "groups": 4}
    if model != "axialnet":
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    definition = {
        "_target_": "hirescam_ext.AxialNet",
        "n_classes": len(LABEL_NAMES),
        "spatial_size": list(shape),
        "trunk": trunk,
        "pretrained": None,
        "custom_convs": True,
        "custom_conv_padding": custom_conv_kernel // 2,
        "slice_pooling": slice_pooling,
        "norm": "batch",
        "custom_conv_init": "kaiming",
    }
    if custom_conv_kernel != 3:
        definition["custom_conv_kernel"] = int(custom_conv_kernel)
    if extra_windows:
        definition["extra_windows"] = [[float(lo), float(hi)] for lo, hi in extra_windows]
    if density_bands:
        definition["density_bands"] = True
        if density_smoothing:
            definition["density_smoothing"] = float(density_smoothing)
        if density_context:
            definition["density_context"] = True
    return definition


def checkpoint_name(
    trunk: str,
    slice_pooling: str,
    mask_loss: bool,
    mask_penalize: str,
    mask_pool: str,
    model: str = "axialnet",
    extra_windows: list[tuple[float, float]] | None = None,
    density_bands: bool = False,
    density_smoothing: float = 0.0,
    density_context: bool = False,
    custom_conv_kernel: int = 3,
) -> str:
    """``reference_<trunk>[_win<lo>_<hi>...][_bands[_smooth<sigma>][_context]][_k<kernel>][_max][_mask...].pt``
    (``reference_plain3d.pt`` for the 3D CNN baseline): the paper's settings add no suffix."""
    if model == "plain3d":
        return "reference_plain3d.pt"
    trunk += "".join(f"_win{lo:g}_{hi:g}" for lo, hi in extra_windows or []) + ("_bands" if density_bands else "")
    trunk += f"_smooth{density_smoothing:g}" if density_bands and density_smoothing else ""
    trunk += "_context" if density_bands and density_context else ""
    trunk += f"_k{custom_conv_kernel}" if custom_conv_kernel != 3 else ""
    pooling = "_max" if slice_pooling == "max" else ""
    variant = ("_both" if mask_penalize == "both" else "") + ("_logit" if mask_pool == "logit" else "")
    return f"reference_{trunk}{pooling}{('_mask' + variant) if mask_loss else ''}.pt"


def seen_patients(trained: dict | None, seed: int, config: Any) -> int:
    """How many of this dataset's test scans (test, test_shifted) are patients a checkpoint trained on ``trained``
    (its settings' ``data``) learned from or was selected on. A patient is its (generator version,
    seed, index), whatever grid it is rendered on, and its split follows from its index and the dataset's size: the
    first 1500 patients of seed 1 lie in the training split of a 6000-patient dataset of seed 1."""
    if not trained or not trained.get("n_scans") or trained.get("seed") != seed \
            or trained.get("generator_version") != GENERATOR_VERSION:
        return 0
    theirs = make_config(trained.get("profile") or "tiny", n_scans=int(trained["n_scans"]))
    ours = range(min(config.n_scans, theirs.n_scans))
    held_out = ("test", "test_shifted")
    return sum(1 for i in ours if config.split_of(i) in held_out and theirs.split_of(i) not in held_out)


def auroc_means(results: dict[str, dict[str, Any]]) -> str:
    """``validation 0.712, test 0.698, ...`` for a log line; a split whose mean could not be computed is ``n/a``."""
    return ", ".join(f"{s} {r['mean']:.3f}" if r["mean"] is not None else f"{s} n/a" for s, r in results.items())


def evaluate_checkpoint(ckpt: str, x: dict, y: dict, shape: tuple[int, int, int], args: Any, out: Path, log: Any,
                        argv: list[str] | None) -> int:
    """Score the checkpoint ``ckpt`` (as the bundle builds and loads it) on the validation, test and test_shifted
    scans ``x`` / labels ``y``; writes ``out/evaluation.json``."""
    from hirescam_ext.engines.checkpoint import load_network_weights
    from hirescam_ext.engines.model_settings import network_from_settings, read_model_settings

    settings = read_model_settings(ckpt)
    if settings is None:
        raise SystemExit(f"{ckpt}: no model settings in this checkpoint (not one this script or the bundle wrote)")
    trained_on = list(settings.get("preprocessing", {}).get("spatial_size") or [])
    if trained_on and trained_on != list(shape):
        raise SystemExit(f"{ckpt}: the model takes {trained_on} scans, this dataset has {list(shape)}")
    net = network_from_settings(settings)
    load_network_weights(net, ckpt)  # the fp16 weights are cast to the network's float32 as they are copied
    device = next(iter(x.values())).device
    net = net.to(device).eval()
    visible = visible_findings(args.profile, shape=shape, render_profile=args.render_profile)
    results = {s: auroc(scores(net, x[s], 2 * args.batch, device.type == "cuda"), y[s], visible)
               for s in ("validation", "test", "test_shifted")}
    report = {
        "command": "python scripts/train_reference.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "checkpoint": str(ckpt), "trained_on": settings.get("data"), "generator_version": GENERATOR_VERSION,
        "profile": args.profile, "render_profile": args.render_profile, "seed": args.seed,
        "scans": {s: int(v.shape[0]) for s, v in x.items()}, "visible_findings": list(visible) if visible else None,
        "auroc": results,
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=1))
    log(f"AUROC {auroc_means(results)}; wrote {out / 'evaluation.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scans", type=int, default=2400)
    p.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="synthetic profile (size, spacing)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--render-profile", default=None, metavar="PROFILE[,PROFILE...]",
                   help="render each scan on this profile's grid and resample it to --profile's grid with the "
                   "bundle's preprocessing, as a user's scan is prepared (default: render on --profile's grid). "
                   "Several, comma-separated: validation and test use the first; each training scan is drawn from "
                   "one of them at random at every step (the same patient made at several resolutions)")
    p.add_argument("--data-cache", default=None, metavar="DIR",
                   help="keep the generated scans in DIR (an .npz per dataset) and read them from there next time")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=150.0, help="training time budget")
    p.add_argument("--epochs", type=int, default=None, help="train this many epochs instead of a time budget")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--model", default="axialnet", choices=MODELS,
                   help="axialnet, or plain3d: the plain 3D CNN with global average pooling (the sanity baseline, "
                   "channels %s; --trunk and --slice-pooling do not apply)" % (PLAIN3D_CHANNELS,))
    p.add_argument("--trunk", default="resnet18", choices=TRUNK_NAMES)
    p.add_argument("--mask-loss", action="store_true",
                   help="train with the HiResCAM mask loss (weight 1/3; allowed regions from the organ truth and the "
                   "report locations, area mode at 10 %%, as the demo)")
    p.add_argument("--mask-penalize", default="positive", choices=MASK_PENALTIES,
                   help="with --mask-loss: penalize positive attention outside G_true (the paper's) or both signs")
    p.add_argument("--mask-start-epoch", type=int, default=0, metavar="K",
                   help="with --mask-loss: train the first K epochs with the classification loss alone, then add the "
                   "mask loss; the best epoch is chosen among the mask-loss epochs")
    p.add_argument("--mask-pool", default="element", choices=MASK_POOLS,
                   help="with --mask-loss: penalize each forbidden element (the paper's) or each map's forbidden logit")
    p.add_argument("--slice-pooling", default="mean", choices=SLICE_POOLINGS,
                   help="pooling of the slice scores: mean (the paper's AxialNet) or max (its MaxPool ablation)")
    p.add_argument("--fc-init", default="default", choices=("default", "tied", "shared"),
                   help="AxialNet's per-cell fully connected weights: PyTorch's default, tied (equal in every cell "
                   "at the start: global average pooling that training lets part) or shared (kept equal: global "
                   "average pooling throughout)")
    p.add_argument("--extra-window", nargs=2, type=float, action="append", metavar=("LOW", "HIGH"), default=None,
                   help="AxialNet: add a narrower HU window of the input as extra channels of each triplet (repeat "
                   "for several; --extra-window -1000 -300 is a lung window); a deviation from the paper's input")
    p.add_argument("--density-bands", action="store_true",
                   help="AxialNet: add the densitometry branch (each attention cell's soft HU-band fractions, two "
                   "1 x 1 convolutions, concatenated with the trunk's features before the custom convs; "
                   "hirescam_ext.networks.density_bands); a deviation from the paper's network")
    p.add_argument("--density-smoothing", type=float, default=0.0, metavar="SIGMA",
                   help="with --density-bands: smooth each slice in-plane by a Gaussian of this width (pixels) "
                   "before the band split (0: off); it brings the shares of on-grid and resampled scans together "
                   "but erases ground glass and metal (docs/TRAINING.md)")
    p.add_argument("--custom-conv-kernel", type=int, default=3, choices=(1, 3),
                   help="AxialNet: kernel of the four custom convs: 3 (the paper's; on a 4 x 4 grid every cell then "
                   "sees the whole slice) or 1 (per-cell, padding 0: each cell's features and HiResCAM value come "
                   "from that cell alone); a deviation from the paper's network")
    p.add_argument("--density-context", action="store_true",
                   help="with --density-bands: split each band share by the mean HU of the pixel's 26 neighbours "
                   "(five context bands: a density in lung apart from the same density in soft tissue)")
    p.add_argument("--pos-weight-max", type=float, default=0.0, metavar="MAX",
                   help="weigh each label's positives by its training odds (1 - p) / p, clipped to [1, MAX], in the "
                   "classification loss (0: off, the paper's unweighted loss)")
    p.add_argument("--blur-augment", type=float, default=0.0, metavar="SIGMA_MAX",
                   help="also smooth each training scan by a Gaussian of width drawn from [0, SIGMA_MAX] voxels, as "
                   "resampling a finer scan does (0: off)")
    p.add_argument("--no-augment", action="store_true", help="train without the paper's flip / rot90 augmentation")
    p.add_argument("--only-labels", default=None,
                   help="comma-separated label names: train on these alone (every other label is 0 in the training "
                   "targets; the best epoch is chosen on their validation mean); the report scores every label")
    p.add_argument("--workers", type=int, default=0, help="generation processes (0: one per core)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"), help="auto: CUDA when available")
    p.add_argument("--out", default=os.environ.get("OUT", "outputs/reference"))
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on any device, same code path")
    p.add_argument("--evaluate", default=None, metavar="CKPT",
                   help="train nothing: score this saved checkpoint on the dataset (--profile, --render-profile, "
                   "--seed, --scans) and write $OUT/evaluation.json, e.g. a model trained on scans made one way, "
                   "tested on scans made another")
    args = p.parse_args(argv)
    if args.model == "plain3d" and args.mask_loss:
        p.error("--mask-loss needs AxialNet's attention maps; the plain3d baseline trains with the classification loss")
    if args.mask_start_epoch and not args.mask_loss:
        p.error("--mask-start-epoch delays the mask loss; it needs --mask-loss")
    if args.mask_start_epoch and args.epochs is None:
        p.error("--mask-start-epoch needs --epochs (a time budget could end before the mask loss starts)")
    if args.mask_start_epoch < 0 or (args.epochs is not None and args.mask_start_epoch >= args.epochs):
        p.error(f"--mask-start-epoch must be 0 or more and below --epochs, got {args.mask_start_epoch}")
    if args.blur_augment < 0:
        p.error(f"--blur-augment must be 0 (off) or positive, got {args.blur_augment}")
    if args.density_context and not args.density_bands:
        p.error("--density-context splits the densitometry branch's band shares; it needs --density-bands")
    if args.density_smoothing and not args.density_bands:
        p.error("--density-smoothing smooths the densitometry branch's input; it needs --density-bands")
    if not 0 <= args.density_smoothing < float("inf"):
        p.error(f"--density-smoothing must be 0 (off) or a positive width in pixels, got {args.density_smoothing}")
    if args.pos_weight_max < 0:
        p.error(f"--pos-weight-max must be 0 (off) or positive, got {args.pos_weight_max}")
    renders = [r.strip() for r in (args.render_profile or "").split(",") if r.strip()]
    unknown = [r for r in renders if r not in PROFILES]
    if unknown:
        p.error(f"--render-profile: unknown profiles {unknown}; choose from {sorted(PROFILES)}")
    if len(renders) != len(set(renders)):
        p.error(f"--render-profile lists a profile twice: {args.render_profile}")
    # rendering on --profile's own grid is no resampling
    renders = [None if r == args.profile else r for r in renders] or [None]
    args.render_profile = renders[0]
    only_labels = tuple(n for n in (args.only_labels or "").split(",") if n)
    unknown = [n for n in only_labels if n not in LABEL_NAMES]
    if unknown:
        p.error(f"--only-labels: unknown label names {unknown}")
    if args.model == "plain3d" and args.extra_window:
        p.error("--extra-window adds input channels to AxialNet's triplets; the plain3d baseline takes one channel")
    if args.model == "plain3d" and args.custom_conv_kernel != 3:
        p.error("--custom-conv-kernel sets AxialNet's custom convs; the plain3d baseline has none")
    if args.model == "plain3d" and args.density_bands:
        p.error("--density-bands is a branch of AxialNet; the plain3d baseline has no attention cells to fill")
    if args.model == "plain3d" and args.fc_init != "default":
        p.error(f"--fc-init {args.fc_init} ties AxialNet's per-cell weights; the plain3d baseline has one weight per "
                "feature")
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    auto = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    amp = device.type == "cuda"
    shape = (64, 64, 48) if args.dry_run else None
    if args.dry_run:
        args.scans, args.seconds, args.batch, args.trunk = min(args.scans, 40), min(args.seconds, 20.0), 4, "small"
    torch.backends.cudnn.benchmark = True
    log = lambda msg: print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)  # noqa: E731

    config = make_config(args.profile, n_scans=args.scans, shape=shape)
    if args.evaluate and Path(args.evaluate).is_file():  # before minutes of generation
        from hirescam_ext.engines.model_settings import read_model_settings

        trained = (read_model_settings(args.evaluate) or {}).get("data")
        seen = seen_patients(trained, args.seed, config)
        if seen:
            p.error(f"--evaluate {args.evaluate}: {seen} of the test scans of {args.scans} patients of seed "
                    f"{args.seed} are patients it was trained or selected on ({trained['n_scans']} patients of the "
                    f"same seed); evaluate on another --seed, or with --scans {trained['n_scans']}")
    definition = network_definition(config.shape, args.trunk, args.slice_pooling, args.model, args.extra_window,
                                    args.density_bands, args.density_smoothing, args.density_context,
                                    args.custom_conv_kernel)
    grid_hdd = None
    if args.model == "axialnet":
        grid_hdd = AxialNet.attention_grid(config.shape[:2], z=config.shape[2], trunk=args.trunk,
                                           custom_conv_padding=definition["custom_conv_padding"],
                                           custom_conv_kernel=definition.get("custom_conv_kernel", 3))
    grid = (grid_hdd[1], grid_hdd[2], grid_hdd[0]) if args.mask_loss else None  # (D1, D2, H) for allowed_regions
    workers = args.workers or os.cpu_count() or 1
    data = cached_generate(args.data_cache, args.scans, args.profile, args.seed, workers, shape, grid, renders[0], log)
    rendered = f", rendered at {args.render_profile}'s grid and resampled" if args.render_profile else ""
    log(f"{args.scans} scans of {tuple(config.shape)} at {tuple(config.spacing)} mm{rendered}")
    split = np.asarray(data["splits"])
    y_all = torch.from_numpy(data["labels"])
    parts = {s: torch.from_numpy(np.flatnonzero(split == s)) for s in ("training", "validation", "test", "test_shifted")}
    # int16 to the device, windowed there: the whole benchmark stays in GPU memory as bf16
    x = {s: windowed_on(data["images"], i.numpy(), device) for s, i in parts.items()}
    for render in renders[1:] if not args.evaluate else []:  # training scans made the other ways: [R * n_train, ...]
        other = cached_generate(args.data_cache, args.scans, args.profile, args.seed, workers, shape, None, render, log)
        x["training"] = torch.cat([x["training"], windowed_on(other["images"], parts["training"].numpy(), device)])
        del other
    y = {s: y_all[i].to(device) for s, i in parts.items()}
    if only_labels:
        keep = torch.zeros(len(LABEL_NAMES), dtype=torch.bool, device=device)
        for label in only_labels:
            keep[LABEL_NAMES.index(label)] = True
        y["training"] = y["training"] * keep
    regions = torch.from_numpy(data["regions"][parts["training"].numpy()]).to(device) if args.mask_loss else None
    del data["images"]
    log("on " + str(device) + ": " + ", ".join(f"{s} {len(i)}" for s, i in parts.items()))
    if args.evaluate:
        return evaluate_checkpoint(args.evaluate, x, y, config.shape, args, out, log, argv)

    torch.manual_seed(args.train_seed)
    net = {"axialnet": AxialNet, "plain3d": Plain3DCNN}[args.model](**{k: v for k, v in definition.items()
                                                                     if k != "_target_"})
    prior = label_prevalence([{"label": row} for row in y["training"].cpu().tolist()])
    init_output_bias(net, prior)
    if args.fc_init == "tied":
        tie_fc_cells(net)
    elif args.fc_init == "shared":
        share_fc_cells(net)
    net = net.to(device)
    if device.type == "cuda" and args.model == "axialnet":
        net.to_channels_last()
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=1e-7)
    pos_weight = positive_weights(prior, args.pos_weight_max) if args.pos_weight_max > 0 else None
    loss_fn = ClassificationMaskLoss(use_mask_loss=args.mask_loss, mask_penalize=args.mask_penalize,
                                     mask_pool=args.mask_pool, pos_weight=pos_weight)
    mask_weight = loss_fn.mask_weight
    gen = torch.Generator().manual_seed(args.train_seed)
    n_train = len(parts["training"])
    steps_per_epoch = n_train // args.batch
    history, best, best_state, best_epoch, epoch, step = [], -1.0, None, 0, 0, 0
    total_epochs = args.epochs
    from hirescam_ext.engines.model_settings import make_model_settings
    from hirescam_ext.version import __version__

    settings = make_model_settings(
        definition,
        spacing=list(config.spacing),
        spatial_size=list(config.shape),
        hu_range=list(HU_RANGE),
        center=CENTER,
        attention_grid=list(grid_hdd) if grid_hdd is not None else None,
        dataset={"generator_version": GENERATOR_VERSION, "profile": args.profile, "n_scans": args.scans,
                 "seed": args.seed, "shape": list(config.shape), "spacing": list(config.spacing),
                 "render_profile": args.render_profile, "training_renders": [r or args.profile for r in renders]},
        training={  # how it was trained (not read by the bundle; for the model card)
            "script": "scripts/train_reference.py", "argv": list(sys.argv[1:] if argv is None else argv),
            "mask_loss": args.mask_loss,
            "mask_weight": mask_weight if args.mask_loss else None,
            "mask_start_epoch": args.mask_start_epoch if args.mask_loss else None,
            "pos_weight_max": args.pos_weight_max or None,
            "mask_penalize": args.mask_penalize if args.mask_loss else None,
            "mask_pool": args.mask_pool if args.mask_loss else None,
            "region_mode": REGION_MODE if args.mask_loss else None,
            "region_area_threshold": REGION_AREA_THRESHOLD if args.mask_loss else None,
            "fc_init": args.fc_init, "augment": not args.no_augment, "blur_augment": args.blur_augment or None,
            "only_labels": args.only_labels,
            "optimizer": "adam", "lr": args.lr, "batch": args.batch, "schedule": "warmup_cosine",
            "seed": args.train_seed, "epochs": args.epochs,
        },
    )
    name = checkpoint_name(args.trunk, args.slice_pooling, args.mask_loss, args.mask_penalize, args.mask_pool,
                           args.model, args.extra_window, args.density_bands, args.density_smoothing,
                           args.density_context, args.custom_conv_kernel)

    def save(state: dict[str, torch.Tensor], epoch: int) -> None:
        fp16 = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        tmp = out / f".{name}.tmp"
        torch.save({"model": fp16, "model_settings": settings, "trainer": {"epoch": epoch}}, tmp)
        os.replace(tmp, out / name)

    train_start = time.perf_counter()
    while total_epochs is None or epoch < total_epochs:
        e0 = time.perf_counter()
        net.train()
        loss_fn.mask_weight = mask_weight_at(epoch, args.mask_start_epoch, mask_weight)
        order = torch.randperm(n_train, generator=gen)
        for b in range(steps_per_epoch):
            lr = warmup_cosine_lr(args.lr, epoch, b, step, steps_per_epoch,
                                  total_epochs if total_epochs is not None else 2)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[b * args.batch : (b + 1) * args.batch].to(device)
            made = idx
            if len(renders) > 1:  # which rendering of each patient this step sees
                made = idx + torch.randint(len(renders), (len(idx),), generator=gen).to(device) * n_train
            batch, g_true = x["training"][made], regions[idx] if regions is not None else None
            if not args.no_augment:
                batch, g_true = augment(batch, gen, g_true)
            if args.blur_augment > 0:
                batch = blur(batch, gen, args.blur_augment)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                if args.mask_loss:
                    pred = net.forward_all(batch.float())
                    pred = {"logits": pred.logits.float(), "attention": pred.attention.float()}
                else:
                    pred = net(batch.float()).float()
            if args.mask_loss:
                target = {"label": y["training"][idx], "regions": to_attention_layout(g_true).float()}
            else:
                target = y["training"][idx]
            loss = loss_fn(pred, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        epoch += 1
        val = auroc(scores(net, x["validation"], 2 * args.batch, amp), y["validation"])
        if only_labels:  # select the epoch on the labels it trains on
            val["mean"] = mean_over_visible(val["per_label"], only_labels)
        seconds = time.perf_counter() - e0
        if total_epochs is None and epoch == 2:  # epoch 1 includes cuDNN autotuning: size the run from epoch 2
            total_epochs = max(2, 1 + int((args.seconds - (time.perf_counter() - train_start) + seconds) // seconds))
            log(f"epoch 2 took {seconds:.1f} s ({n_train / seconds:.0f} scans/s with validation): {total_epochs} epochs")
        history.append({"epoch": epoch, "loss": float(loss.detach()), "val_auroc": val["mean"], "seconds": seconds,
                        "lr": lr})
        log(f"epoch {epoch}/{total_epochs or '?'} loss {float(loss.detach()):.4f} val AUROC {val['mean']:.3f}")
        if val["mean"] is not None and val["mean"] > best and selectable_epoch(epoch, args.mask_start_epoch):
            best, best_epoch = val["mean"], epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
            save(best_state, epoch)
    train_seconds = time.perf_counter() - train_start
    net.load_state_dict(best_state)
    visible = visible_findings(args.profile, shape=config.shape, render_profile=args.render_profile)
    results = {s: auroc(scores(net, x[s], 2 * args.batch, amp), y[s], visible)
               for s in ("validation", "test", "test_shifted")}
    report = {
        "command": "python scripts/train_reference.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "hirescam_ext": __version__, "generator_version": GENERATOR_VERSION,
        "profile": args.profile, "render_profile": args.render_profile,
        "training_renders": [r or args.profile for r in renders],
        "scans": {s: len(i) for s, i in parts.items()}, "batch": args.batch, "lr": args.lr, "model": args.model,
        "trunk": args.trunk if args.model == "axialnet" else None,
        "slice_pooling": args.slice_pooling if args.model == "axialnet" else None,
        "extra_windows": definition.get("extra_windows"), "density_bands": bool(definition.get("density_bands")),
        "density_smoothing": definition.get("density_smoothing"),
        "density_context": bool(definition.get("density_context")),
        "custom_conv_kernel": definition.get("custom_conv_kernel", 3) if args.model == "axialnet" else None,
        "fc_init": args.fc_init, "pos_weight_max": args.pos_weight_max or None, "augment": not args.no_augment,
        "blur_augment": args.blur_augment or None,
        "mask_loss": args.mask_loss,
        "mask_start_epoch": args.mask_start_epoch if args.mask_loss else None,
        "epochs": epoch, "best_epoch": best_epoch, "train_seconds": train_seconds,
        "scans_per_second_train": epoch * n_train / train_seconds, "history": history,
        "visible_findings": list(visible) if visible is not None else None,
        "auroc": results, "checkpoint": name, "checkpoint_bytes": (out / name).stat().st_size,
        "total_seconds": time.perf_counter() - t0,
    }
    (out / "reference_training.json").write_text(json.dumps(report, indent=1))
    log(f"AUROC {auroc_means(results)}; saved {out / name}")
    if visible is not None:
        log("AUROC over the findings visible at this grid: "
            + ", ".join(f"{s} {r['mean_visible']:.3f}" for s, r in results.items() if r["mean_visible"] is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
