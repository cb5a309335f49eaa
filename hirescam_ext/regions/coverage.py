"""How much of a lesion its allowed region G_true holds, on the attention grid (a check of the mask loss' targets).

The mask loss of Draelos & Carin (HiResCAM, arXiv:2011.08891) penalises attention in every grid cell where
G_true = 0. A cell that holds part of a lesion but is not allowed therefore punishes the model for looking at the
abnormality itself. With the paper's nearest-neighbour downsampling, a cell is allowed when the organ lies at the
cell's centre, so lesions at the lung border (effusions, subpleural nodules, atelectasis) can fall in cells whose
centre is chest wall or abdomen. :func:`lesion_coverage` measures this for one lesion: the fraction of the cells
holding any lesion voxel (same triplet grouping as :func:`~hirescam_ext.regions.allowed.organ_masks_on_grid`)
that G_true allows.

Example:
    >>> import numpy as np, torch
    >>> lesion = np.zeros((12, 12, 6), bool); lesion[0:2, 0:2, 0:3] = True; lesion[8, 8, 3] = True
    >>> region = torch.zeros(2, 2, 2, dtype=torch.bool); region[1, 1, 1] = True
    >>> lesion_coverage(region, lesion)
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hirescam_ext.regions.layout import crop_to_triplets

__all__ = ["lesion_cells", "lesion_coverage", "allowed_fraction"]


def lesion_cells(lesion: np.ndarray | torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Boolean ``[D1, D2, H]``: the attention-grid cells holding at least one voxel of ``lesion`` ``[X, Y, Z]``.

    Triplet ``h`` covers slices ``3h..3h+2``; slices beyond ``3H`` are ignored, as for the organ masks. In-plane
    bins are those of adaptive max pooling: when ``X`` is not a multiple of ``D1`` (or ``Y`` of ``D2``) neighbouring
    bins share one voxel row, so a lesion voxel on that row counts in both cells.
    """
    d1, d2, h = (int(g) for g in grid)
    mask = _as_bool_tensor(lesion)
    if mask.ndim != 3:
        raise ValueError(f"lesion must be [X, Y, Z], got shape {tuple(mask.shape)}")
    mask = crop_to_triplets(mask, h, "lesion mask")
    return F.adaptive_max_pool3d(mask.float()[None, None], (d1, d2, h))[0, 0] > 0


def lesion_coverage(region: torch.Tensor | np.ndarray, lesion: np.ndarray | torch.Tensor) -> float:
    """Fraction of the lesion's grid cells that ``region`` (G_true of its abnormality, ``[D1, D2, H]``) allows.

    Returns ``nan`` for a lesion with no voxel on the grid (nothing to cover).
    """
    allowed = _as_bool_tensor(region)
    if allowed.ndim != 3:
        raise ValueError(f"region must be [D1, D2, H], got shape {tuple(allowed.shape)}")
    cells = lesion_cells(lesion, tuple(allowed.shape))
    n = int(cells.sum())
    return float("nan") if n == 0 else float((cells & allowed).sum()) / n


def allowed_fraction(region: torch.Tensor | np.ndarray) -> float:
    """Fraction of the grid's cells that ``region`` allows (how loose the constraint is; 1.0 constrains nothing)."""
    allowed = _as_bool_tensor(region)
    return float(allowed.float().mean()) if allowed.numel() else float("nan")


def _as_bool_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A boolean CPU tensor of an array or a tensor on any device (MetaTensor metadata dropped)."""
    if isinstance(x, torch.Tensor):
        t = x.as_tensor() if hasattr(x, "as_tensor") else x
        return t.detach().cpu().bool()
    return torch.as_tensor(np.asarray(x)).bool()
