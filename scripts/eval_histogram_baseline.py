"""A whole-volume HU-histogram baseline, and linear probes of a trained AxialNet's layers (prints and writes JSON).

What a model with no notion of shape or place can read from the same scans the reference AxialNet trains on:
each scan becomes a histogram of its voxels' HU over the whole volume (no organ mask; 25 HU bins in the lung
range, 100 HU through soft tissue, wider bins above 800 HU), and one L2-regularized logistic regression per label
is fitted on the training split and scored on the test split. A finding this baseline ranks well but AxialNet
leaves at chance is a global intensity signal the CNN fails to pick up (docs/TRAINING.md). ``--window`` clips the
HU to the bundle's window first, as the networks see it (so metal reads as bone).

``--probe CHECKPOINT`` (a reference AxialNet, e.g. ``bundle/models/reference.pt``) adds linear probes: the same
logistic regression on each probed layer's activations pooled over the whole scan (mean and maximum over slices and
positions, per channel). A finding no probe ranks above chance has no feature in the network at any depth, not only
in the classifier's read-out. ``--probe-random`` probes the same network with its initial (random) weights.

Usage (from the repository root)::

    OMP_NUM_THREADS=2 python scripts/eval_histogram_baseline.py --profile tiny --scans 2000 --seed 1 --out /tmp/hist
    OMP_NUM_THREADS=2 python scripts/eval_histogram_baseline.py ... --probe bundle/models/reference.pt
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
from hirescam_ext.synthetic.generator import GENERATOR_VERSION, PROFILES, make_config
from hirescam_ext.synthetic.visibility import mean_over_visible, visible_findings
from train_reference import HU_RANGE, generate, windowed_on

#: layers probed by ``--probe`` (``named_modules`` names of AxialNet)
PROBE_LAYERS = ("trunk.layer1", "trunk.layer2", "trunk.layer3", "trunk.layer4", "custom_convs.relu4")

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


def pooled_activations(
    net: torch.nn.Module, images: np.ndarray, layers: tuple[str, ...] = PROBE_LAYERS, batch: int = 32
) -> dict[str, torch.Tensor]:
    """Per scan, each layer's channels pooled over slices and positions: ``{layer: [N, 2 * C]}`` (mean, then max)."""
    modules = dict(net.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"{type(net).__name__} has no layer {missing}; probe-able layers: {PROBE_LAYERS}")
    current: dict[str, torch.Tensor] = {}
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: current.__setitem__(name, o.detach()))
             for name in layers]
    pooled: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    net.eval()
    try:
        with torch.no_grad():
            for k in range(0, len(images), batch):
                index = np.arange(k, min(k + batch, len(images)))
                net(windowed_on(images, index, torch.device("cpu")).float())
                for name in layers:
                    a = current[name]  # [B * H, C, h, w]
                    a = a.reshape(len(index), -1, *a.shape[1:])
                    pooled[name].append(torch.cat([a.mean(dim=(1, 3, 4)), a.amax(dim=(1, 3, 4))], dim=1))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(parts) for name, parts in pooled.items()}


def load_axialnet(path: str, random: bool = False) -> torch.nn.Module:
    """The AxialNet a ``train_reference.py`` checkpoint defines, with its weights (or its random initial ones).

    Raises:
        ValueError: the file is not such a checkpoint (no AxialNet ``network_def`` in its settings).
        InputError (a ValueError): naming the file when it cannot be read or its weights do not fit the network.
    """
    from hirescam_ext.engines.checkpoint import load_network_weights
    from hirescam_ext.engines.model_settings import network_from_settings, read_model_settings

    settings = read_model_settings(path) or {}
    if (settings.get("network_def") or {}).get("_target_") != "hirescam_ext.AxialNet":
        raise ValueError(f"{path}: not a reference AxialNet checkpoint (needs 'model' weights and "
                         "model_settings.network_def of hirescam_ext.AxialNet, as scripts/train_reference.py writes)")
    net = network_from_settings(settings)
    if not random:
        load_network_weights(net, path)
    return net.eval()


def probe_auroc(feats: torch.Tensor, y: torch.Tensor, train: np.ndarray, test: np.ndarray,
               names: list[str]) -> dict[str, float]:
    """Test AUROC per label of the logistic regression fitted on ``feats[train]`` (standardized on the training
    split)."""
    mean, std = feats[train].mean(0), feats[train].std(0) + 1e-6
    x = (feats - mean) / std
    w, b = fit_logistic(x[train], y[train])
    result = compute_multilabel_auroc(x[test] @ w + b, y[test], names)
    return {k: float(v) for k, v in result.per_label.items() if v is not None and np.isfinite(v)}


def _summary(per_label: dict[str, float], visible: tuple[str, ...] | None) -> dict:
    return {"mean": float(np.mean(list(per_label.values()))), "mean_visible": mean_over_visible(per_label, visible),
            "per_label": per_label}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="tiny", choices=sorted(PROFILES))
    p.add_argument("--scans", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1, help="dataset seed (the reference models train on seed 1)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--window", action="store_true", help="clip to the bundle's HU window first")
    p.add_argument("--probe", default=None, help="a reference AxialNet checkpoint whose layers to probe")
    p.add_argument("--probe-random", action="store_true", help="with --probe: probe its random initial weights")
    p.add_argument("--out", default="outputs/histogram_baseline")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    net = None
    if args.probe:  # checked before the scans are generated
        if not Path(args.probe).is_file():
            p.error(f"--probe {args.probe}: no such file")
        try:
            net = load_axialnet(args.probe, random=args.probe_random)
        except ValueError as err:  # InputError too
            p.error(str(err))
        shape = make_config(args.profile, n_scans=1).shape
        if tuple(net.spatial_size[:2]) != tuple(shape[:2]):
            p.error(f"--probe {args.probe}: the network takes {tuple(net.spatial_size[:2])} slices, the "
                    f"{args.profile!r} profile gives {tuple(shape[:2])}")
    data = generate(args.scans, args.profile, args.seed, args.workers, None)
    split = np.asarray(data["splits"])
    train, test = split == "training", split == "test"
    y = torch.from_numpy(data["labels"])
    present = [j for j in range(len(LABEL_NAMES)) if 0 < float(y[train, j].sum()) < int(train.sum())]
    y, names = y[:, present], [LABEL_NAMES[j] for j in present]
    feats = torch.tensor(histogram_features(data["images"], window=args.window), dtype=torch.float32)
    per_label = probe_auroc(feats, y, train, test, names)
    visible = visible_findings(args.profile, shape=data["config"].shape)
    report = {
        "command": "python scripts/eval_histogram_baseline.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "generator_version": GENERATOR_VERSION,
        "profile": args.profile,
        "seed": args.seed,
        "window": list(HU_RANGE) if args.window else None,
        "scans": {s: int((split == s).sum()) for s in ("training", "test")},
        "bins_hu": BIN_EDGES.tolist(),
        "test_auroc": _summary(per_label, visible),
    }
    if net is not None:

        def model_auroc(split_mask: np.ndarray) -> dict:
            index = np.flatnonzero(split_mask)
            with torch.no_grad():
                logits = [net(windowed_on(data["images"], index[k : k + 32], torch.device("cpu")).float())
                          for k in range(0, len(index), 32)]
            result = compute_multilabel_auroc(torch.cat(logits)[:, present], y[split_mask], names)
            return _summary({k: float(v) for k, v in result.per_label.items() if v is not None}, visible)

        report["probe"] = {
            "checkpoint": args.probe,
            "weights": "random (initial)" if args.probe_random else "trained",
            # on the training split too: a finding ranked at chance there is not fitted, not forgotten
            "model_training_auroc": model_auroc(train),
            "model_test_auroc": model_auroc(test),
            "layers": {name: _summary(probe_auroc(f, y, train, test, names), visible)
                       for name, f in pooled_activations(net, data["images"]).items()},
        }
    report["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "histogram_baseline.json").write_text(json.dumps(report, indent=1))
    prefixes = ("h_great_vessel_", "h_mediastinum_", "heart_", "lung_")
    label = lambda k: next((k[len(q) :] for q in prefixes if k.startswith(q)), k)[:12]  # noqa: E731
    short = lambda r: " ".join(f"{label(k)} {v:.2f}" for k, v in r["per_label"].items())  # noqa: E731
    print(f"histogram: mean {report['test_auroc']['mean']:.3f}: {short(report['test_auroc'])}")
    if "probe" in report:
        for split_name in ("training", "test"):
            model = report["probe"][f"model_{split_name}_auroc"]
            print(f"model on {split_name}: mean {model['mean']:.3f}: {short(model)}")
        for name, r in report["probe"]["layers"].items():
            print(f"probe {name}: mean {r['mean']:.3f}: {short(r)}")
    print(f"wrote {out / 'histogram_baseline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
