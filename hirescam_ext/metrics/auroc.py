"""Multi-label AUROC: one exact, rank-based ROC AUC per abnormality, then their mean and median.

The classification performance reported by Draelos & Carin (HiResCAM, arXiv:2011.08891, Table 1) is the mean AUROC
over the abnormalities. An abnormality whose labels hold a single class in the evaluated set has no AUROC: it is
skipped (NaN in the per-label values), counted and named in the result, and left out of the mean and the median.

The AUROC of one label is the Mann-Whitney statistic ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` where
``R_pos`` is the sum of the ranks of the positive samples' scores, tied scores sharing their average rank (a tie
between a positive and a negative counts one half). Scores may be probabilities or logits: AUROC depends on the
ranking only, and logits avoid the ties that a saturated sigmoid creates.

Example:
    >>> import torch
    >>> scores = torch.tensor([[0.1], [0.4], [0.35], [0.8]])
    >>> result = compute_multilabel_auroc(scores, torch.tensor([[0], [0], [1], [1]]))
    >>> result.mean
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

from hirescam_ext.labels import LABEL_NAMES

__all__ = ["AUROCResult", "MultiLabelAUROC", "average_ranks", "binary_auroc", "compute_multilabel_auroc"]


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing the average of their ranks (``scipy.stats.rankdata``).

    SciPy's ``rankdata(method="average")`` when SciPy is installed (the bundle's requirements have it); the lent GPU
    machines this project trains on carry only torch and pure-Python wheels, so a NumPy path with the same result
    (:func:`_average_ranks_numpy`, tested against SciPy) serves there.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    try:
        from scipy.stats import rankdata
    except ImportError:
        return _average_ranks_numpy(values)
    return np.asarray(rankdata(values, method="average"), dtype=np.float64)


def _average_ranks_numpy(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.empty(len(values), dtype=bool)
    starts_group[:1] = True
    starts_group[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], len(values))  # exclusive
    group_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = group_rank[np.cumsum(starts_group) - 1]
    return ranks


def binary_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC of one label (ties count one half); NaN when ``labels`` hold a single class."""
    positive = np.asarray(labels).reshape(-1) > 0.5
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass
class AUROCResult:
    """Multi-label AUROC.

    Attributes:
        mean: mean AUROC over the valid labels (NaN when none is valid).
        median: median over the valid labels.
        per_label: AUROC per label name (NaN for skipped labels).
        n_valid: labels with both classes present; n_skipped: the others, named in ``skipped``.
        n_samples: number of samples.
    """

    mean: float
    median: float
    per_label: dict[str, float] = field(default_factory=dict)
    n_valid: int = 0
    n_skipped: int = 0
    skipped: list[str] = field(default_factory=list)
    n_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (NaN becomes ``None``)."""
        out = asdict(self)
        for key in ("mean", "median"):
            out[key] = None if np.isnan(out[key]) else out[key]
        out["per_label"] = {k: (None if np.isnan(v) else v) for k, v in out["per_label"].items()}
        return out


def _default_names(n: int, label_names: Sequence[str] | None) -> list[str]:
    if label_names is None:
        return list(LABEL_NAMES) if n == len(LABEL_NAMES) else [str(i) for i in range(n)]
    if len(label_names) != n:
        raise ValueError(f"AUROC: predictions have {n} labels but {len(label_names)} label names were given")
    return list(label_names)


def compute_multilabel_auroc(
    y_pred: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, label_names: Sequence[str] | None = None
) -> AUROCResult:
    """Per-label AUROC with mean and median over the labels where both classes are present.

    Args:
        y_pred: scores ``[N, M]`` (probabilities or logits; ``[N]`` is one label).
        y: 0/1 ground truth, same shape.
        label_names: ``M`` names (default: the package's ``LABEL_NAMES`` when ``M == 80``, else ``"0"``, ``"1"``...).

    Raises:
        ValueError: on mismatched shapes, non-finite scores or labels other than 0/1.
    """
    scores = torch.as_tensor(y_pred).detach().cpu().double().numpy()
    truth = torch.as_tensor(y).detach().cpu().double().numpy()
    if scores.ndim == 1:
        scores, truth = scores[:, None], truth.reshape(-1, 1) if truth.ndim == 1 else truth
    if scores.ndim != 2 or scores.shape != truth.shape:
        raise ValueError(f"AUROC: y_pred {scores.shape} and y {truth.shape} must both be [N, M]")
    if not np.isfinite(scores).all():
        raise ValueError("AUROC: scores contain NaN or infinite values")
    if not np.isin(truth, (0.0, 1.0)).all():
        raise ValueError("AUROC: labels must be 0 or 1")
    names = _default_names(scores.shape[1], label_names)
    per_label = {name: binary_auroc(scores[:, m], truth[:, m]) for m, name in enumerate(names)}
    valid = np.array([v for v in per_label.values() if not np.isnan(v)], dtype=np.float64)
    skipped = [name for name, v in per_label.items() if np.isnan(v)]
    return AUROCResult(
        mean=float(valid.mean()) if valid.size else float("nan"),
        median=float(np.median(valid)) if valid.size else float("nan"),
        per_label=per_label,
        n_valid=int(valid.size),
        n_skipped=len(skipped),
        skipped=skipped,
        n_samples=int(scores.shape[0]),
    )


class MultiLabelAUROC(CumulativeIterationMetric):
    """Cumulative multi-label AUROC for evaluators: accumulate ``(scores [B, M], labels [B, M])``, then aggregate.

    Unlike ``monai.metrics.ROCAUCMetric`` (whose macro average is NaN as soon as one label holds a single class),
    labels without both classes are skipped, counted and reported (see :func:`compute_multilabel_auroc`).

    Args:
        label_names: ``M`` names (see :func:`compute_multilabel_auroc`).

    Example:
        >>> metric = MultiLabelAUROC(label_names=["a", "b"])
        >>> _ = metric(torch.tensor([[0.2, 0.9], [0.7, 0.1]]), torch.tensor([[0, 1], [1, 1]]))
        >>> result = metric.aggregate()
        >>> result.mean, result.skipped
        (1.0, ['b'])
    """

    def __init__(self, label_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.label_names = None if label_names is None else list(label_names)

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if y is None:
            raise ValueError("MultiLabelAUROC needs labels y")
        y_pred, y = y_pred.float(), y.float()
        if y_pred.ndim == 1:
            y_pred, y = y_pred[:, None], y.reshape(-1, 1)
        if y_pred.shape != y.shape:
            raise ValueError(f"AUROC: y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} must both be [B, M]")
        return y_pred, y

    def aggregate(self) -> AUROCResult:  # type: ignore[override]
        """Compute the AUROC of everything accumulated since the last reset."""
        buffers = self.get_buffer()
        if buffers is None:
            raise ValueError("MultiLabelAUROC: no data accumulated")
        y_pred, y = buffers
        return compute_multilabel_auroc(y_pred, y, self.label_names)
