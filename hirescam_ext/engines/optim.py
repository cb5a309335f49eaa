"""Optimizer selection for the bundle configs (the paper's SGD by default)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "build_optimizer"]

OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "sgd",
    lr: float = 1e-3,
    momentum: float = 0.99,
    weight_decay: float = 1e-7,
) -> torch.optim.Optimizer:
    """The paper's SGD (lr 1e-3, momentum 0.99, weight decay 1e-7; Draelos & Carin), or Adam / AdamW.

    The paper's SGD trains an ImageNet-initialized trunk for up to 100 epochs; from random initialization and a few
    epochs on a CPU (the demo), Adam learns much faster.

    Example:
        >>> opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), "adam", lr=1e-4)
        >>> type(opt).__name__
        'Adam'
    """
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
