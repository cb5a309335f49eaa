#!/usr/bin/env python
"""Benchmark AxialNet's densitometry branch on the CPU: its band fractions alone, and a whole training step.

The network is the `quick` profile's and the shipped models' (small16 trunk with the branch, 64 x 64 x 48, batch 16).
Prints JSON: the median milliseconds of ``DensityBands.fractions`` on the batch's slice triplets, of a training
step (forward, backward, optimizer step), and of the same step without the branch. ``--reference FILE`` times a
``DensityBands`` from another file in the same run, alternating with this one (e.g. an earlier version:
``git show <commit>:hirescam_ext/networks/density_bands.py > /tmp/old_density_bands.py``), and reports the ratios.

Example:
    OMP_NUM_THREADS=1 python scripts/benchmark_density_bands.py --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable

import torch

from hirescam_ext.networks import AxialNet
from hirescam_ext.networks._layers import volume_to_triplets
from hirescam_ext.utils.memory import retain_freed_memory


def _load_reference(path: str) -> type:
    spec = importlib.util.spec_from_file_location("reference_density_bands", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "DensityBands"):
        raise SystemExit(f"{path}: defines no DensityBands")
    return module.DensityBands


def _network(density_bands: bool) -> AxialNet:
    return AxialNet(n_classes=80, spatial_size=(64, 64, 48), trunk="small16", custom_convs=True,
                    custom_conv_padding=1, norm="batch", custom_conv_init="kaiming", density_bands=density_bands)


def _medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each function, the functions taking turns (one warm-up call each)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000.0 * (time.perf_counter() - start))
    return {name: round(statistics.median(t), 1) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the quick profile's runs)")
    p.add_argument("--batch", type=int, default=16, help="volumes per training step (default 16)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls of each variant (default 7)")
    p.add_argument("--reference", default=None, help="a Python file defining another DensityBands to compare")
    p.add_argument("--retain-freed-memory", action="store_true",
                   help="keep freed memory for reuse first (hirescam_ext.utils.memory, as configs/train.json does)")
    args = p.parse_args()
    retained = retain_freed_memory() if args.retain_freed_memory else False
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, 64, 64, 48) - 0.449  # the bundle's encoding of [-1000, 800] HU
    y = (torch.rand(args.batch, 80) < 0.1).float()
    net, plain = _network(True), _network(False)
    ours = net.density
    variants: dict[str, torch.nn.Module] = {"this": ours}
    if args.reference:
        reference = _load_reference(args.reference)(out_channels=ours.out_channels)
        reference.load_state_dict(ours.state_dict())
        variants["reference"] = reference
    triplets = volume_to_triplets(x)
    grid = list(AxialNet.attention_grid((64, 64), 48, trunk="small16", custom_conv_padding=1)[1:])

    def step(model: torch.nn.Module, density: torch.nn.Module | None = None) -> Callable[[], float]:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every call sees the same weights

        def run() -> float:
            if density is not None:
                model.density = density
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        return run

    with torch.no_grad():
        fractions = _medians({name: (lambda d=d: d.fractions(triplets, grid)) for name, d in variants.items()},
                             args.repeats)
    steps = _medians({**{name: step(net, d) for name, d in variants.items()}, "without_branch": step(plain)},
                     args.repeats)
    result = {
        "threads": torch.get_num_threads(), "retain_freed_memory": retained, "batch": args.batch,
        "triplets": int(triplets.shape[0]), "grid": grid, "repeats": args.repeats, "fractions_ms": fractions["this"],
        "train_step_ms": steps["this"],
        "train_step_without_branch_ms": steps["without_branch"],
        "branch_share_of_step": round(1.0 - steps["without_branch"] / steps["this"], 3),
    }
    if args.reference:
        result.update({
            "reference": args.reference, "reference_fractions_ms": fractions["reference"],
            "reference_train_step_ms": steps["reference"],
            "fractions_speedup": round(fractions["reference"] / fractions["this"], 2),
            "train_step_speedup": round(steps["reference"] / steps["this"], 2),
        })
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
