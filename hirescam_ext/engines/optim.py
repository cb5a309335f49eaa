"""Optimizer and learning-rate schedule selection for the bundle configs (the paper's SGD, constant lr, by default)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "LR_SCHEDULES", "build_optimizer", "build_lr_scheduler"]

OPTIMIZERS = ("sgd", "adam", "adamw")

#: accepted ``name`` values of :func:`build_lr_scheduler`
LR_SCHEDULES = ("constant", "warmup_cosine")


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "sgd",
    lr: float = 1e-3,
    momentum: float = 0.99,
    weight_decay: float = 1e-7,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """The paper's SGD (lr 1e-3, momentum 0.99, weight decay 1e-7; Draelos & Carin), or Adam / AdamW.

    The paper's SGD trains an ImageNet-initialized trunk for up to 100 epochs; from random initialization and a few
    epochs on a CPU (the demo), Adam learns much faster.

    Args:
        fused: PyTorch's fused implementation (one kernel for all parameters; same update within float rounding).
            ``None`` (default): fused when the parameters are on a CUDA device, PyTorch's default otherwise, so CPU
            behaviour is unchanged.

    Example:
        >>> opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), "adam", lr=1e-4)
        >>> type(opt).__name__
        'Adam'
    """
    params = list(params)
    if fused is None:
        fused = bool(params) and all(p.is_cuda for p in params if isinstance(p, torch.Tensor))
    extra = {"fused": True} if fused else {}
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **extra)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "constant",
    total_steps: int = 1,
    warmup_steps: int = 0,
    final_fraction: float = 0.05,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration learning-rate schedule (step it every iteration: ``LrScheduleHandler(epoch_level=False)``).

    - ``"constant"``: the optimizer's lr throughout (the paper's), after an optional linear warm-up;
    - ``"warmup_cosine"``: linear warm-up from ``lr / warmup_steps`` to ``lr`` over ``warmup_steps``, then a cosine
      decay to ``final_fraction * lr`` at ``total_steps``.

    A warm-up keeps the first large gradients of a randomly initialized network (and of Adam's uncalibrated first
    moments) from knocking ReLU units dead; the decay lets the last epochs settle.

    Args:
        optimizer: the optimizer whose ``lr`` is scaled.
        name: one of :data:`LR_SCHEDULES`.
        total_steps: iterations of the whole training (epochs x iterations per epoch).
        warmup_steps: iterations of linear warm-up (0: none).
        final_fraction: lr at the end of the cosine, as a fraction of the peak.

    Raises:
        ValueError: unknown name, or negative / inconsistent step counts.

    Example:
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
        >>> sched = build_lr_scheduler(opt, "warmup_cosine", total_steps=10, warmup_steps=2)
        >>> [round(sched.get_last_lr()[0], 2)] + [round((opt.step(), sched.step(), sched.get_last_lr()[0])[2], 2)
        ...                                         for _ in range(3)]
        [0.5, 1.0, 1.0, 0.96]
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; choose one of {LR_SCHEDULES}")
    total_steps, warmup_steps = int(total_steps), int(warmup_steps)
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps} and {warmup_steps}")
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"final_fraction must lie in [0, 1], got {final_fraction}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
