"""Pull tensors out of an Ignite engine's output or batch (batched dicts, decollated lists of dicts, objects)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["lookup", "lookup_nested"]


def lookup(container: Any, key: str) -> Any:
    """``container[key]`` for a mapping, ``getattr`` for an object, stacked values for a list of mappings.

    Returns ``None`` when the key is absent.
    """
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, (list, tuple)) and container and all(isinstance(c, Mapping) for c in container):
        values = [c.get(key) for c in container]
        if any(v is None for v in values):
            return None
        if all(isinstance(v, Mapping) for v in values):
            return list(values)  # decollated nested dicts: look inside with lookup() again
        return torch.stack([torch.as_tensor(v) for v in values])
    if isinstance(container, torch.Tensor):
        return None
    return getattr(container, key, None)


def lookup_nested(container: Any, key: str, inner: str) -> Any:
    """``container[key]`` when it is a tensor; when it is a mapping or object, its ``inner`` entry."""
    value = lookup(container, key)
    if value is None or isinstance(value, torch.Tensor):
        return value
    return lookup(value, inner)
