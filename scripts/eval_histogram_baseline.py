"""A whole-volume HU-histogram baseline on the synthetic benchmark (prints and writes JSON).

What a model with no notion of shape or place can read from the same scans the reference AxialNet trains on:
each scan becomes a histogram of its voxels' HU over the whole volume (no organ mask; 25 HU bins in the lung
range, 100 HU through soft tissue, wider bins above 800 HU), and one L2-regularized logistic regression per label
is fitted on the training split and scored on the test split. A finding this baseline ranks well but AxialNet
leaves at chance is a global intensity signal the CNN fails to pick up (docs/TRAINING.md). ``--window`` clips the
HU to the bundle's window first, as the networks see it (so metal reads as bone).

Usage (from the repository root)::

    OMP_NUM_THREADS=2 python scripts/eval_histogram_baseline.py --profile tiny --scans 2000 --seed 1 --out /tmp/hist
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.metrics.auroc import compute_multilabel_auroc
from hirescam_ext.synthetic.generator import GENERATOR_VERSION, PROFILES
from hirescam_ext.synthetic.visibility import mean_over_visible, visible_findings
from train_reference import HU_RANGE, generate

#: histogram bin edges in HU: 25 HU steps through the lung range, 100 HU through soft tissue and bone, then dense bone
#: and metal (the bundle's window puts everything from 800 HU up into the bin that starts at 800)
BIN_EDGES = np.concatenate([np.arange(-1000, -500, 25), np.arange(-500, 800, 100), [800, 1200, 2000, 4000]])


def histogram_features(images: np.ndarray, window: bool = False) -> np.ndarray:
    """``log(1 + count)`` of each scan's voxels per HU bin (``[N, bins]``); ``window`` clips to the bundle's window."""
    hi = HU_RANGE[1] if window else BIN_EDGES[-1] - 1
    flat = images.reshape(len(images), -1)
    counts = [np.histogram(np.clip(v, BIN_EDGES[0], hi), BIN_EDGES)[0] for v in flat]
    return np.log1p(np.asarray(counts, dtype=np.float64))


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularized logistic regression, one output per column of ``y`` (full-batch L-BFGS); returns ``(W, b)``."""
    w = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="tiny", choices=sorted(PROFILES))
    p.add_argument("--scans", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1, help="dataset seed (the reference models train on seed 1)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--window", action="store_true", help="clip to the bundle's HU window first")
    p.add_argument("--out", default="outputs/histogram_baseline")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    data = generate(args.scans, args.profile, args.seed, args.workers, None)
    split = np.asarray(data["splits"])
    feats = histogram_features(data["images"], window=args.window)
    train, test = split == "training", split == "test"
    mean, std = feats[train].mean(0), feats[train].std(0) + 1e-6
    x = torch.tensor((feats - mean) / std, dtype=torch.float32)
    y = torch.from_numpy(data["labels"])
    present = [j for j in range(len(LABEL_NAMES)) if 0 < float(y[train, j].sum()) < int(train.sum())]
    w, b = fit_logistic(x[train], y[train][:, present])
    result = compute_multilabel_auroc(x[test] @ w + b, y[test][:, present], [LABEL_NAMES[j] for j in present])
    per_label = {k: float(v) for k, v in result.per_label.items() if v is not None and np.isfinite(v)}
    visible = visible_findings(args.profile, shape=data["config"].shape)
    report = {
        "command": "python scripts/eval_histogram_baseline.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "generator_version": GENERATOR_VERSION,
        "profile": args.profile,
        "seed": args.seed,
        "window": list(HU_RANGE) if args.window else None,
        "scans": {s: int((split == s).sum()) for s in ("training", "test")},
        "bins_hu": BIN_EDGES.tolist(),
        "test_auroc": {
            "mean": float(np.mean(list(per_label.values()))),
            "mean_visible": mean_over_visible(per_label, visible),
            "per_label": per_label,
        },
        "seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "histogram_baseline.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report["test_auroc"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
