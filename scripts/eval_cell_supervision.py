"""Can a trunk see a finding at all? Train it on the truth lesion cells instead of the scan labels (prints JSON).

The learnability audit (``scripts/eval_learnability.py``) asks whether a finding is visible in the voxels; this asks
whether a given 2D trunk can learn to see it at AxialNet's attention grid when it is told exactly where it is. Each
scan's slice triplets go through the trunk, a 1 x 1 convolution gives one logit per finding and attention cell
(``[B, H, D1, D2]``, AxialNet's layout), and the target is the synthetic generator's own lesion mask pooled to those
cells (a cell is positive when any voxel of the finding lies in it). No scan label is used.

Reported on the validation split after every epoch, per finding: the cell-level AUROC (every cell of every scan; the
lung-or-not prior alone gives about 0.8-0.9 because lesions only lie in lung cells) and the scan-level AUROC of the
maximum cell logit (does the trunk find the lesion in the scan?). A trunk that learns a finding here but not from the
scan labels (``scripts/train_reference.py``) is held back by the weak supervision, not by what its features can
express. The converse does not hold when several findings share the head: with eight or twelve findings the
pacemaker stayed near chance for 8 epochs (weighted or not), while alone it reached 0.86 (docs/TRAINING.md). Test a
finding that stays at chance alone (``--labels NAME``) before calling it invisible to the trunk.
``--pos-weight-max`` weighs each finding's positive cells by their odds.

Trunks: ``small16`` (the shipped reference models' trunk: a ResNet stem, a 7 x 7 convolution of stride 2 then max
pooling, and one basic block per stage; ``hirescam_ext.networks.build_trunk``) and ``plain`` (a diagnostic
comparator defined here, not a model of the bundle: 3 x 3 convolutions with BatchNorm, ``width`` channels at half
resolution for two layers before the first pooling, overall stride 16, 64 output channels).

Usage (from the repository root; docs/TRAINING.md has the measured run)::

    OMP_NUM_THREADS=2 python scripts/eval_cell_supervision.py --profile tiny --scans 6000 --seed 1 --epochs 8 \
        --out /tmp/cells
    python scripts/eval_cell_supervision.py --dry-run                    # seconds: tiny sizes, the same code path
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from torch import nn

from hirescam_ext.metrics.auroc import compute_multilabel_auroc
from hirescam_ext.networks import build_trunk
from hirescam_ext.networks._layers import volume_to_triplets
from hirescam_ext.regions.coverage import lesion_cells as coverage_lesion_cells
from hirescam_ext.regions.layout import to_attention_layout
from hirescam_ext.synthetic.generator import GENERATOR_VERSION, PROFILES, generate_case, make_config
from train_reference import augment, warmup_cosine_lr, windowed_on

#: findings at a random place in the lungs that the reference models leave near chance (docs/TRAINING.md)
DEFAULT_LABELS = ("lung_groundglass", "lung_consolidation", "lung_mass", "lung_nodulegr1cm")
TRUNKS = ("small16", "plain")
STRIDE = 16  # both trunks: a 64 x 64 slice gives a 4 x 4 grid
_CONFIG: Any = None
_LABELS: tuple[str, ...] = ()


def lesion_cells(lesions: np.ndarray, findings: list[str], labels: tuple[str, ...], stride: int = STRIDE) -> np.ndarray:
    """Truth cells ``[L, H, D1, D2]`` (bool) of ``labels`` from a case's lesion masks ``[X, Y, Z, K]`` (one channel per
    finding, named by ``findings``): a cell is true when any voxel of that label's lesions lies in its ``stride`` x
    ``stride`` pixels of one slice triplet."""
    nx, ny, nz = lesions.shape[:3]
    if nx % stride or ny % stride or nz % 3:
        raise ValueError(
            f"lesion masks of shape {lesions.shape[:3]} do not split into {stride}-pixel cells and triplets"
        )
    grid = (nx // stride, ny // stride, nz // 3)
    out = np.zeros((len(labels), grid[2], grid[0], grid[1]), bool)
    for k, name in enumerate(findings):
        if name in labels:
            out[labels.index(name)] |= to_attention_layout(coverage_lesion_cells(lesions[..., k], grid)).numpy()
    return out


def _init_worker(config: Any, labels: tuple[str, ...]) -> None:
    global _CONFIG, _LABELS
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    _CONFIG, _LABELS = config, labels


def _case(args: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray, str]:
    index, seed = args
    case = generate_case(index, seed, config=_CONFIG)
    cells = lesion_cells(case.lesions, [f.label for f in case.findings], _LABELS)
    return index, case.image, cells, case.split


def plain_trunk(width: int = 8, out_channels: int = 64) -> nn.Sequential:
    """The diagnostic comparator: 3 x 3 conv-BN-ReLU layers, stride 2 then three 2 x 2 max poolings (stride 16)."""

    def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    layers = [*block(3, width, 2), *block(width, width), nn.MaxPool2d(2, ceil_mode=True), *block(width, 2 * width),
              nn.MaxPool2d(2, ceil_mode=True), *block(2 * width, out_channels), nn.MaxPool2d(2, ceil_mode=True),
              *block(out_channels, out_channels)]
    net = nn.Sequential(OrderedDict((f"l{i}", m) for i, m in enumerate(layers)))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


class CellModel(nn.Module):
    """A trunk over the slice triplets and a 1 x 1 convolution: ``[B, 1, X, Y, Z]`` -> logits ``[B, L, H, D1, D2]``."""

    def __init__(self, trunk: str, n_labels: int, width: int = 8) -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"unknown trunk {trunk!r}; choose one of {TRUNKS}")
        self.trunk = build_trunk("small16") if trunk == "small16" else plain_trunk(width)
        self.head = nn.Conv2d(64, n_labels, 1)
        nn.init.constant_(self.head.bias, -5.0)  # lesion cells are rare

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.trunk(volume_to_triplets(x.float())))  # [B * H, L, D1, D2]
        return out.reshape(x.shape[0], -1, *out.shape[1:]).transpose(1, 2)


def _aurocs(scores: torch.Tensor, target: torch.Tensor, labels: tuple[str, ...]) -> dict[str, float | None]:
    res = compute_multilabel_auroc(scores, target).per_label
    return {name: (round(float(v), 3) if v is not None and math.isfinite(v) else None)
            for name, v in zip(labels, res.values())}


def cell_pos_weight(cells: torch.Tensor, max_weight: float) -> torch.Tensor:
    """Per label, the ratio of negative to positive cells in ``cells`` ``[N, L, ...]``, clipped to ``[1, max_weight]``
    (``max_weight <= 1``: all ones), shaped ``[L, 1, 1, 1]`` for the cell logits ``[B, L, H, D1, D2]``."""
    n_labels = cells.shape[1]
    pos = cells.transpose(0, 1).reshape(n_labels, -1).sum(1)
    ratio = (cells[:, 0].numel() - pos) / pos.clamp_min(1.0)
    return ratio.clamp(1.0, max(1.0, max_weight)).view(n_labels, 1, 1, 1)


def train_and_score(trunk: str, data: dict, labels: tuple[str, ...], epochs: int, lr: float, batch: int,
                    seed: int, width: int, log: Any, pos_weight_max: float = 0.0) -> dict[str, Any]:
    """Train one trunk on the truth cells (Adam, one linear warm-up epoch then cosine) and score it every epoch.
    ``pos_weight_max`` > 1 weighs each label's positive cells by its cell odds, clipped (:func:`cell_pos_weight`)."""
    torch.manual_seed(seed)
    net = CellModel(trunk, len(labels), width)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-7)
    gen = torch.Generator().manual_seed(seed)
    x_tr, c_tr = data["x"]["training"], data["cells"]["training"]  # cells [N, L, D1, D2, H] (augment's layout)
    n = len(x_tr)
    steps = max(1, n // batch)
    weight = cell_pos_weight(c_tr, pos_weight_max)
    history, step, t0 = [], 0, time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        for b in range(steps):
            for group in opt.param_groups:
                group["lr"] = warmup_cosine_lr(lr, epoch, b, step, steps, epochs)
            idx = order[b * batch : (b + 1) * batch]
            xb, cb = augment(x_tr[idx], gen, c_tr[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(net(xb), cb.permute(0, 1, 4, 2, 3), pos_weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        net.eval()
        with torch.no_grad():
            out = torch.cat([net(v) for v in data["x"]["validation"].split(2 * batch)])  # [N, L, H, D1, D2]
        truth = data["cells"]["validation"].permute(0, 1, 4, 2, 3)
        n_l = len(labels)
        cell = _aurocs(out.transpose(1, 4).reshape(-1, n_l), truth.transpose(1, 4).reshape(-1, n_l), labels)
        scan = _aurocs(out.flatten(2).amax(-1), truth.flatten(2).amax(-1), labels)
        history.append({"epoch": epoch + 1, "loss": float(loss.detach()), "cell_auroc": cell,
                        "max_cell_scan_auroc": scan, "seconds": time.perf_counter() - t0})
        log(f"{trunk} epoch {epoch + 1}/{epochs}: max-cell scan AUROC {scan}, cell AUROC {cell}")
    last = history[-1]
    return {"parameters": sum(p.numel() for p in net.trunk.parameters()), "history": history,
            "final": {"cell_auroc": last["cell_auroc"], "max_cell_scan_auroc": last["max_cell_scan_auroc"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="tiny", choices=sorted(PROFILES))
    p.add_argument("--scans", type=int, default=6000, help="benchmark size (its training and validation splits)")
    p.add_argument("--seed", type=int, default=1, help="dataset seed")
    p.add_argument("--labels", default=",".join(DEFAULT_LABELS))
    p.add_argument("--trunks", default=",".join(TRUNKS))
    p.add_argument("--width", type=int, default=8, help="channels of the plain trunk's first layers")
    p.add_argument("--pos-weight-max", type=float, default=0.0, metavar="MAX",
                   help="weigh each label's positive cells by its cell odds, clipped to MAX (0: unweighted); "
                        "findings that touch one or two cells of a scan need it")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=0, help="generation processes (0: one per core)")
    p.add_argument("--out", default=os.environ.get("OUT", "outputs/cell_supervision"))
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, the same code path")
    args = p.parse_args(argv)
    labels = tuple(n for n in args.labels.split(",") if n)
    trunks = tuple(n for n in args.trunks.split(",") if n)
    bad = [t for t in trunks if t not in TRUNKS]
    if bad:
        p.error(f"--trunks: unknown {bad}; choose from {TRUNKS}")
    if args.dry_run:
        args.scans, args.epochs = min(args.scans, 40), 1
    config = make_config(args.profile, n_scans=args.scans, shape=(64, 64, 48) if args.dry_run else None)
    unknown = [n for n in labels if n not in config.prevalence]
    if unknown:
        p.error(f"--labels: {unknown} are not rendered by the generator")
    if any(s % STRIDE for s in config.shape[:2]):
        p.error(f"profile {args.profile}: in-plane size {config.shape[:2]} is not a multiple of {STRIDE}")
    t0 = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)  # noqa: E731
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    keep = [i for i in range(args.scans) if config.split_of(i) in ("training", "validation")]
    images, cells, splits = None, None, {}
    with mp.get_context("fork").Pool(args.workers or os.cpu_count() or 1, initializer=_init_worker,
                                     initargs=(config, labels)) as pool:
        for k, (i, image, cell, split) in enumerate(pool.imap(_case, [(i, args.seed) for i in keep], chunksize=4)):
            if images is None:
                images = np.empty((len(keep), *image.shape), image.dtype)
                cells = np.empty((len(keep), *cell.shape), bool)
            images[k], cells[k], splits[k] = image, cell, split
    log(f"generated {len(keep)} training and validation scans of {tuple(config.shape)}")
    part = {s: np.asarray([k for k in range(len(keep)) if splits[k] == s]) for s in ("training", "validation")}
    data = {"x": {s: windowed_on(images, i, torch.device("cpu")) for s, i in part.items()},
            "cells": {s: torch.from_numpy(cells[i]).permute(0, 1, 3, 4, 2).float() for s, i in part.items()}}
    report: dict[str, Any] = {
        "command": "python scripts/eval_cell_supervision.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "generator_version": GENERATOR_VERSION, "profile": args.profile, "seed": args.seed,
        "shape": list(config.shape), "scans": {s: len(i) for s, i in part.items()}, "labels": list(labels),
        "positives_validation": {n: int(cells[part["validation"], j].any(axis=(1, 2, 3)).sum())
                                 for j, n in enumerate(labels)},
        "epochs": args.epochs, "lr": args.lr, "batch": args.batch, "pos_weight_max": args.pos_weight_max or None,
        "torch": torch.__version__, "trunks": {},
    }
    for trunk in trunks:
        report["trunks"][trunk] = train_and_score(trunk, data, labels, args.epochs, args.lr, args.batch, 0,
                                                  args.width, log, args.pos_weight_max)
    report["seconds"] = time.perf_counter() - t0
    (out_dir / "cell_supervision.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({t: r["final"] for t, r in report["trunks"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
