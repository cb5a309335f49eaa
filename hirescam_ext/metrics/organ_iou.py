"""OrganIoU: how much of an explanation map lies inside the organ where the abnormality may appear.

For every (scan, truly present abnormality) pair, the normalized explanation map (values in ``[0, 1]``) is binarized
at a threshold ``t``; ``allowed`` counts binarized cells inside the allowed region G_true and ``forbidden`` those
outside; ``OrganIoU = allowed / (allowed + forbidden)``: 1 when all attention is allowed, 0 when none is. The paper
tries 53 thresholds, picks per abnormality the best one on the validation set and reuses it on the test set; it
reports the mean over all (scan, positive abnormality) pairs, per abnormality and per concept group.

Conventions of this implementation:

- A cell is "attended" at threshold ``t`` when its value is **strictly greater** than ``t`` (``map > t``), compared
  in the map's floating-point precision (float32 for half inputs). An all-zero map therefore attends nothing.
- Nothing attended (``allowed + forbidden == 0``): OrganIoU 0, the map points at nothing, in particular not at the
  abnormality's organ (this agrees with the original code, which returned 0 whenever a count was 0).
- Empty G_true for a present abnormality (no organ region available): ``allowed`` is always 0, so OrganIoU is 0 as
  soon as anything is attended (and 0 when nothing is).
- ``original_quirk=True`` reproduces the original implementation exactly: 0 whenever ``allowed`` or ``forbidden`` is
  0, so even a map entirely inside G_true scores 0. The default follows the paper's text (1 in that case).

Reference: R. L. Draelos and L. Carin, "HiResCAM: Explainable Multi-Organ Multi-Abnormality Prediction in 3D Medical
Images", arXiv:2011.08891, section "OrganIoU".

Example:
    >>> import torch
    >>> metric = OrganIoU(label_names=["a", "b"])
    >>> maps = torch.tensor([[[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # [B=1, M=2, 4 cells]
    >>> regions = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]]])
    >>> _ = metric(maps, regions, labels=torch.tensor([[1, 0]]))
    >>> metric.aggregate(thresholds=0.5).mean
    1.0
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.metric import IterationMetric
from monai.utils import evenly_divisible_all_gather

from hirescam_ext.labels import CONCEPT_GROUPS, LABEL_NAMES, label_table
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import write_json_atomic

__all__ = [
    "THRESHOLDS",
    "FALLBACK_THRESHOLD",
    "OrganIoU",
    "OrganIoUResult",
    "compute_organ_iou",
    "select_best_thresholds",
    "save_thresholds",
    "load_thresholds",
]

#: the paper's 53 binarization thresholds: 0.004, 0.008, 0.012, 0.016, then 0.02 to 0.98 in steps of 0.02.
THRESHOLDS: tuple[float, ...] = (0.004, 0.008, 0.012, 0.016) + tuple(round(0.02 * k, 2) for k in range(1, 50))

#: threshold given to labels without pairs when the accumulated data have no pairs at all.
FALLBACK_THRESHOLD: float = 0.5

_THRESHOLDS_FORMAT = "hirescam_ext.organ_iou_thresholds/1"


def _check_inputs(maps: torch.Tensor, regions: torch.Tensor, labels: torch.Tensor) -> None:
    if maps.ndim < 3:
        raise ValueError(f"OrganIoU: maps must be [B, M, *spatial], got shape {tuple(maps.shape)}")
    if maps.shape != regions.shape:
        raise ValueError(
            f"OrganIoU: maps shape {tuple(maps.shape)} and regions (G_true) shape {tuple(regions.shape)} differ; "
            "resample the maps to the regions grid first"
        )
    if tuple(labels.shape) != tuple(maps.shape[:2]):
        raise ValueError(f"OrganIoU: labels shape {tuple(labels.shape)} must be [B, M] = {tuple(maps.shape[:2])}")
    if not torch.is_floating_point(maps):
        raise ValueError(f"OrganIoU: maps must be floating point in [0, 1], got dtype {maps.dtype}")


def compute_organ_iou(
    maps: torch.Tensor,
    regions: torch.Tensor,
    labels: torch.Tensor,
    thresholds: Sequence[float] = THRESHOLDS,
    original_quirk: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """OrganIoU of every (sample, present abnormality) pair at every threshold.

    Args:
        maps: normalized explanation maps ``[B, M, *spatial]`` with values in ``[0, 1]``.
        regions: allowed regions G_true ``[B, M, *spatial]`` (non-zero = allowed).
        labels: ``[B, M]`` ground truth; pairs with ``label > 0.5`` count.
        thresholds: binarization thresholds (a cell counts when ``map > t``).
        original_quirk: 0 whenever the allowed or the forbidden count is 0 (the original code's behaviour).

    Returns:
        ``(iou, label_index, sample_index)``: ``[P, T]`` float32 OrganIoU values, ``[P]`` abnormality index and
        ``[P]`` sample index within the batch, for the ``P`` present pairs in row-major (sample, label) order.

    Raises:
        ValueError: on mismatched shapes, non-finite maps or maps outside ``[0, 1]``.
    """
    _check_inputs(maps, regions, labels)
    n_t = len(thresholds)
    b_idx, m_idx = torch.nonzero(labels.detach() > 0.5, as_tuple=True)
    n_pairs = int(b_idx.numel())
    if n_pairs == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return torch.zeros(0, n_t, dtype=torch.float32), empty, empty.clone()
    work_dtype = maps.dtype if maps.dtype in (torch.float32, torch.float64) else torch.float32
    device = maps.device
    b_idx, m_idx = b_idx.to(device), m_idx.to(device)
    values = maps.detach()[b_idx, m_idx].reshape(n_pairs, -1).to(work_dtype)
    if not torch.isfinite(values).all():
        raise ValueError("OrganIoU: maps contain NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(
            f"OrganIoU: maps must be normalized to [0, 1] (ReLU, minus the minimum, divided by the maximum), "
            f"got values in [{lo:.4g}, {hi:.4g}]"
        )
    inside = regions.detach().to(device)[b_idx, m_idx].reshape(n_pairs, -1) != 0
    n_cells = values.shape[1]
    t = torch.as_tensor(list(thresholds), dtype=work_dtype, device=values.device).expand(n_pairs, n_t).contiguous()
    neg_inf = torch.full_like(values, -math.inf)
    # cells outside a set become -inf, so they never exceed a threshold; count of values > t = N - #(values <= t)
    allowed_sorted = torch.where(inside, values, neg_inf).sort(dim=1).values
    forbidden_sorted = torch.where(inside, neg_inf, values).sort(dim=1).values
    allowed = n_cells - torch.searchsorted(allowed_sorted, t, right=True)
    forbidden = n_cells - torch.searchsorted(forbidden_sorted, t, right=True)
    iou = allowed.double() / (allowed + forbidden).clamp_min(1).double()
    if original_quirk:
        iou = torch.where((allowed == 0) | (forbidden == 0), torch.zeros_like(iou), iou)
    return iou.float().cpu(), m_idx.cpu(), b_idx.cpu()


def _grid_index(value: float, grid: Sequence[float], what: str) -> int:
    for i, g in enumerate(grid):
        if math.isclose(float(value), g, rel_tol=0.0, abs_tol=1e-6):
            return i
    raise ValueError(f"OrganIoU: {what} threshold {value!r} is not one of the metric's thresholds {list(grid)}")


def _first_best(means: np.ndarray) -> int:
    """Index of the largest mean; ties go to the first (smallest threshold)."""
    return int(np.flatnonzero(means >= means.max() - 1e-12)[0])


def select_best_thresholds(
    iou: torch.Tensor | np.ndarray,
    label_index: torch.Tensor | np.ndarray,
    num_labels: int,
    thresholds: Sequence[float] = THRESHOLDS,
    default: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per abnormality, the threshold with the best mean OrganIoU over its pairs (ties: the smallest threshold).

    Args:
        iou: ``[P, T]`` OrganIoU of each pair at each threshold (as from :func:`compute_organ_iou`).
        label_index: ``[P]`` abnormality index of each pair.
        num_labels: ``M``.
        thresholds: the ``T`` thresholds.
        default: threshold for abnormalities without pairs; ``None`` gives them the threshold with the best mean
            over all pairs (ties: the smallest), or :data:`FALLBACK_THRESHOLD` when there are no pairs at all.

    Returns:
        ``(best, n_pairs)``: ``[M]`` thresholds and ``[M]`` pair counts.
    """
    iou_np = np.asarray(iou, dtype=np.float64).reshape(-1, len(thresholds))
    lab_np = np.asarray(label_index, dtype=np.int64).reshape(-1)
    grid = np.asarray(thresholds, dtype=np.float64)
    if default is None:
        default = float(grid[_first_best(iou_np.mean(axis=0))]) if len(iou_np) else FALLBACK_THRESHOLD
    best = np.full(num_labels, float(default), dtype=np.float64)
    counts = np.bincount(lab_np, minlength=num_labels)[:num_labels]
    for m in np.flatnonzero(counts):
        best[m] = grid[_first_best(iou_np[lab_np == m].mean(axis=0))]
    return best, counts


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


@dataclass
class OrganIoUResult:
    """Aggregated OrganIoU.

    Attributes:
        mean: micro-average over all (scan, present abnormality) pairs (NaN when there are none).
        n_pairs: number of pairs.
        per_label: mean per abnormality (NaN without pairs); per_label_count: pairs per abnormality.
        per_group: micro-average over the pairs of each concept group (``focal``, ``diffuse``, ``biological``,
            ``intervention``; labels outside the package label table belong to no group); per_group_count likewise.
        thresholds: threshold used per abnormality; threshold_source: ``fixed``, ``given`` or
            ``selected_on_this_data`` (optimistic: thresholds chosen on the very pairs they score).
        original_quirk: whether the original code's zero rule was used.
    """

    mean: float
    n_pairs: int
    per_label: dict[str, float] = field(default_factory=dict)
    per_label_count: dict[str, int] = field(default_factory=dict)
    per_group: dict[str, float] = field(default_factory=dict)
    per_group_count: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    threshold_source: str = "fixed"
    original_quirk: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (NaN becomes ``None``)."""
        return {k: _nan_to_none(v) for k, v in asdict(self).items()}


class OrganIoU(CumulativeIterationMetric):
    """Cumulative OrganIoU metric (Draelos & Carin, HiResCAM, arXiv:2011.08891).

    Each call accumulates, for every (scan, truly present abnormality) pair of the batch, the OrganIoU at all
    thresholds of the grid (see the module docstring for the binarization and zero conventions). ``aggregate``
    applies one threshold per abnormality and averages.

    Args:
        label_names: the ``M`` abnormality names in channel order (default: the package's 80 ``LABEL_NAMES``); the
            maps' ``M`` must match.
        thresholds: the threshold grid (default :data:`THRESHOLDS`, the paper's 53 values).
        original_quirk: reproduce the original code (0 whenever a count is 0).
        label_thresholds: per-abnormality thresholds used by ``aggregate()`` without arguments (a mapping
            name -> threshold, a length-``M`` sequence, one float, or the path of a JSON written by
            :func:`save_thresholds`). ``None``: ``aggregate()`` selects them on the accumulated data.

    Example:
        >>> metric = OrganIoU(label_names=["x"])
        >>> _ = metric(torch.tensor([[[0.6, 0.6]]]), torch.tensor([[[1, 0]]]), labels=torch.tensor([[1]]))
        >>> metric.aggregate(thresholds=0.5).mean
        0.5
    """

    def __init__(
        self,
        label_names: Sequence[str] | None = None,
        thresholds: Sequence[float] = THRESHOLDS,
        original_quirk: bool = False,
        label_thresholds: Mapping[str, float] | Sequence[float] | float | str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.label_names = list(LABEL_NAMES if label_names is None else label_names)
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError("OrganIoU: label_names contain duplicates")
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds or list(self.thresholds) != sorted(set(self.thresholds)):
            raise ValueError(f"OrganIoU: thresholds must be a non-empty increasing sequence, got {thresholds!r}")
        self.original_quirk = bool(original_quirk)
        if isinstance(label_thresholds, (str, os.PathLike)):
            label_thresholds = load_thresholds(label_thresholds, self.label_names)
        self.label_thresholds = label_thresholds
        self._samples_seen = 0

    def reset(self) -> None:
        super().reset()
        self._samples_seen = 0

    def __call__(  # type: ignore[override]
        self, y_pred: Any, y: Any = None, labels: Any = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Accumulate a batch.

        Args:
            y_pred: normalized maps ``[B, M, *spatial]`` (or a list of ``[M, *spatial]``).
            y: allowed regions G_true, same shape.
            labels: ``[B, M]`` ground truth (or a list of ``[M]``).

        Returns:
            ``(iou [P, T], label_index [P], sample_index [P])`` of this batch (sample index counted since reset).
        """
        if y is None or labels is None:
            raise ValueError("OrganIoU needs y_pred (maps), y (regions G_true) and labels")
        y_pred, y, labels = (torch.stack(list(v)) if isinstance(v, (list, tuple)) else v for v in (y_pred, y, labels))
        ret = IterationMetric.__call__(self, y_pred=y_pred, y=y, labels=torch.as_tensor(labels))
        if self._buffers is None:
            self._buffers = [[] for _ in ret]
        if len(ret[1]):  # Cumulative.extend cannot take a zero-length batch
            self.extend(*ret)
        return ret  # type: ignore[return-value]

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if y_pred.ndim >= 2 and y_pred.shape[1] != len(self.label_names):
            raise ValueError(
                f"OrganIoU: maps have M={y_pred.shape[1]} abnormality channels but {len(self.label_names)} label "
                "names are configured; pass label_names matching the network's outputs"
            )
        iou, label_idx, sample_idx = compute_organ_iou(y_pred, y, labels, self.thresholds, self.original_quirk)
        sample_idx = sample_idx + self._samples_seen
        self._samples_seen += int(y_pred.shape[0])
        return iou, label_idx, sample_idx

    def _sync(self) -> None:
        # like Cumulative._sync, but a buffer that received only empty batches becomes a zero-length tensor
        if self._synced or self._buffers is None:
            return
        templates = (torch.zeros(0, len(self.thresholds)), torch.zeros(0, dtype=torch.long))
        stacked = [
            torch.stack(b, dim=0) if b else templates[min(i, 1)].clone() for i, b in enumerate(self._buffers)
        ]
        self._synced_tensors = [evenly_divisible_all_gather(s, concat=True) for s in stacked]
        self._synced = True

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All accumulated pairs: ``(iou [P, T], label_index [P], sample_index [P])``."""
        buffers = self.get_buffer()
        if buffers is None:
            empty = torch.zeros(0, dtype=torch.long)
            return torch.zeros(0, len(self.thresholds)), empty, empty.clone()
        iou, label_idx, sample_idx = buffers
        return iou.reshape(-1, len(self.thresholds)).float(), label_idx.long(), sample_idx.long()

    def select_thresholds(self, default: float | None = None) -> dict[str, float]:
        """Per abnormality, the threshold with the best mean OrganIoU on the accumulated (validation) pairs.

        Ties go to the smallest threshold. Abnormalities without pairs get ``default``; ``None`` gives them the
        single threshold with the best mean over all pairs, or :data:`FALLBACK_THRESHOLD` when there are no pairs.
        """
        iou, label_idx, _ = self.pairs()
        best, _ = select_best_thresholds(iou, label_idx, len(self.label_names), self.thresholds, default)
        return {name: float(t) for name, t in zip(self.label_names, best)}

    def save_thresholds(self, path: str | os.PathLike, default: float | None = None) -> dict[str, float]:
        """Select thresholds (see :meth:`select_thresholds`) and write them to ``path`` as JSON; return them."""
        selected = self.select_thresholds(default)
        _, label_idx, _ = self.pairs()
        counts = np.bincount(label_idx.numpy(), minlength=len(self.label_names))
        save_thresholds(path, selected, n_pairs=dict(zip(self.label_names, counts.tolist())), grid=self.thresholds)
        return selected

    def _resolve_thresholds(self, thresholds: Any) -> tuple[np.ndarray, str]:
        source = "given"
        if thresholds is None:
            thresholds = self.label_thresholds
            if thresholds is None:
                return np.asarray(list(self.select_thresholds().values())), "selected_on_this_data"
        if isinstance(thresholds, (str, os.PathLike)):
            thresholds = load_thresholds(thresholds, self.label_names)
        n = len(self.label_names)
        if isinstance(thresholds, (int, float)):
            values = [float(thresholds)] * n
            source = "fixed"
        elif isinstance(thresholds, Mapping):
            unknown = sorted(set(thresholds) - set(self.label_names))
            missing = [name for name in self.label_names if name not in thresholds]
            if unknown or missing:
                raise ValueError(
                    f"OrganIoU: per-label thresholds do not match the label names (unknown: {unknown[:5]}, "
                    f"missing: {missing[:5]})"
                )
            values = [float(thresholds[name]) for name in self.label_names]
        else:
            values = [float(v) for v in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
            if len(values) != n:
                raise ValueError(f"OrganIoU: got {len(values)} per-label thresholds for {n} labels")
        for name, v in zip(self.label_names, values):
            _grid_index(v, self.thresholds, f"label {name!r}")
        return np.asarray(values, dtype=np.float64), source

    def aggregate(  # type: ignore[override]
        self, thresholds: Mapping[str, float] | Sequence[float] | float | str | os.PathLike | None = None
    ) -> OrganIoUResult:
        """Average the accumulated OrganIoU values.

        Args:
            thresholds: one float for every abnormality, per-abnormality thresholds (mapping name -> threshold or a
                length-``M`` sequence, or the path of a thresholds JSON). ``None``: the ``label_thresholds`` given
                at construction, else thresholds selected on the accumulated data themselves
                (``threshold_source="selected_on_this_data"``: optimistic, meant for validation). Every value must
                be on the threshold grid.

        Returns:
            an :class:`OrganIoUResult`.
        """
        per_label_t, source = self._resolve_thresholds(thresholds)
        iou, label_idx, _ = self.pairs()
        col = torch.as_tensor([_grid_index(t, self.thresholds, "") for t in per_label_t], dtype=torch.long)
        chosen = (
            iou.double()[torch.arange(len(label_idx)), col[label_idx]].numpy() if len(label_idx) else np.zeros(0)
        )
        labels_np = label_idx.numpy()

        def mean_of(mask: np.ndarray) -> float:
            return float(chosen[mask].mean()) if mask.any() else float("nan")

        per_label, per_label_count = {}, {}
        for m, name in enumerate(self.label_names):
            mask = labels_np == m
            per_label[name], per_label_count[name] = mean_of(mask), int(mask.sum())
        per_group, per_group_count = {}, {}
        table = label_table()
        for column, values in CONCEPT_GROUPS.items():
            for value in values:
                members = [m for m, name in enumerate(self.label_names) if table.get(name, {}).get(column) == value]
                mask = np.isin(labels_np, members)
                per_group[value], per_group_count[value] = mean_of(mask), int(mask.sum())
        return OrganIoUResult(
            mean=mean_of(np.ones(len(chosen), dtype=bool)),
            n_pairs=len(chosen),
            per_label=per_label,
            per_label_count=per_label_count,
            per_group=per_group,
            per_group_count=per_group_count,
            thresholds={name: float(t) for name, t in zip(self.label_names, per_label_t)},
            threshold_source=source,
            original_quirk=self.original_quirk,
        )


def save_thresholds(
    path: str | os.PathLike,
    thresholds: Mapping[str, float],
    n_pairs: Mapping[str, int] | None = None,
    grid: Sequence[float] = THRESHOLDS,
) -> None:
    """Write per-abnormality OrganIoU thresholds to ``path`` as JSON (atomically), keyed by label name."""
    doc = {
        "format": _THRESHOLDS_FORMAT,
        "binarization": "map > threshold",
        "grid": [float(t) for t in grid],
        "thresholds": {str(k): float(v) for k, v in thresholds.items()},
    }
    if n_pairs is not None:
        doc["n_pairs"] = {str(k): int(v) for k, v in n_pairs.items()}
    write_json_atomic(path, doc)


def load_thresholds(path: str | os.PathLike, label_names: Sequence[str] | None = None) -> dict[str, float]:
    """Read thresholds written by :func:`save_thresholds`.

    Args:
        path: the JSON file.
        label_names: when given, the file must hold exactly these names.

    Raises:
        InputError: missing or unreadable file, wrong structure, values outside ``[0, 1]`` or label names that
            do not match.
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise InputError(path, "OrganIoU thresholds file not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read OrganIoU thresholds JSON ({exc})") from exc
    raw = doc.get("thresholds") if isinstance(doc, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise InputError(path, "expected a JSON object with a non-empty 'thresholds' object {label: threshold}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise InputError(path, f"threshold of {name!r} must be a number in [0, 1], got {value!r}")
        out[name] = float(value)
    if label_names is not None:
        unknown = sorted(set(out) - set(label_names))
        missing = [n for n in label_names if n not in out]
        if unknown or missing:
            raise InputError(
                path, f"label names do not match the expected labels (unknown: {unknown[:5]}, missing: {missing[:5]})"
            )
        out = {n: out[n] for n in label_names}
    return out
