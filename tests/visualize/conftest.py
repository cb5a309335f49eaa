"""Reference (definition-level) CAM computation used by the visualize tests: one backward pass per class."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn


def reference_cam(
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    classes: list[list[int]],
    kind: str,
    split: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Maps [B, K, *S] straight from the definitions (paper eqs. 2 and 4), sample by sample, class by class.

    HiResCAM: sum_f dS/dA_f * A_f. Grad-CAM: sum_f mean(dS/dA_f) * A_f (mean over every spatial axis).
    """
    model.eval()
    module = dict(model.named_modules())[layer]
    out = []
    for b in range(x.shape[0]):
        store = {}
        handle = module.register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
        try:
            with torch.enable_grad():
                logits = model(x[b : b + 1])
        finally:
            handle.remove()
        act = store["a"]
        per_class = []
        for c in classes[b]:
            (g,) = torch.autograd.grad(logits[0, c], act, retain_graph=True)
            a = act.detach()
            if split is not None:
                g, a = split(g, 1), split(a, 1)
            if kind == "hirescam":
                m = (g * a).sum(1)
            else:
                alpha = g.flatten(2).mean(-1)
                m = (alpha.reshape(*alpha.shape, *([1] * (a.ndim - 2))) * a).sum(1)
            per_class.append(m[0])
        out.append(torch.stack(per_class))
    return torch.stack(out)


@pytest.fixture
def reference():
    """The :func:`reference_cam` function."""
    return reference_cam
