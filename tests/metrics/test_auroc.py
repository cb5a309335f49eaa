"""Specification of the multi-label AUROC (exact, rank based, ties count one half)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hirescam_ext.metrics import MultiLabelAUROC, average_ranks, binary_auroc, compute_multilabel_auroc


def _pairwise_auroc(scores, labels) -> float:
    """Brute force: fraction of (positive, negative) pairs ranked correctly, ties one half."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_average_ranks_share_tied_ranks():
    assert average_ranks(np.array([0.3, 0.1, 0.3, 0.7])).tolist() == [2.5, 1.0, 2.5, 4.0]


def test_binary_auroc_hand_value_with_a_tie():
    # positives 0.5, 0.9; negatives 0.5, 0.2 -> (0.5 + 1 + 1 + 1) / 4
    assert binary_auroc(np.array([0.5, 0.5, 0.2, 0.9]), np.array([1, 0, 0, 1])) == 0.875


def test_binary_auroc_matches_brute_force_on_heavily_tied_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)
    labels = rng.integers(0, 2, size=60)
    assert binary_auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores.tolist(), labels.tolist()))


def test_single_class_label_is_skipped_counted_and_named():
    y_pred = torch.tensor([[0.1, 0.3, 0.2], [0.4, 0.1, 0.9], [0.35, 0.2, 0.1], [0.8, 0.6, 0.5]])
    y = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]])
    result = compute_multilabel_auroc(y_pred, y, label_names=["a", "b", "c"])
    assert result.per_label["a"] == 0.75
    assert result.per_label["b"] == pytest.approx(_pairwise_auroc([0.3, 0.1, 0.2, 0.6], [0, 1, 0, 1]))
    assert math.isnan(result.per_label["c"])
    assert result.n_valid == 2 and result.n_skipped == 1 and result.skipped == ["c"]
    assert result.mean == pytest.approx((0.75 + 0.5) / 2)
    assert result.median == pytest.approx((0.75 + 0.5) / 2)
    assert result.to_dict()["per_label"]["c"] is None


def test_logits_and_probabilities_give_the_same_auroc():
    torch.manual_seed(0)
    logits = torch.randn(20, 4)
    y = (torch.rand(20, 4) > 0.5).long()
    assert compute_multilabel_auroc(logits, y).mean == pytest.approx(
        compute_multilabel_auroc(torch.sigmoid(logits), y).mean
    )


def test_median_over_valid_labels():
    y = torch.tensor([[0, 0, 0], [1, 1, 1]])
    y_pred = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]])  # AUROC 1, 0, 0.5
    result = compute_multilabel_auroc(y_pred, y)
    assert result.median == 0.5 and result.mean == 0.5


def test_cumulative_metric_over_batches_equals_one_call():
    torch.manual_seed(1)
    y_pred, y = torch.randn(12, 3), (torch.rand(12, 3) > 0.4).long()
    metric = MultiLabelAUROC()
    metric(y_pred[:5], y[:5])
    metric(y_pred[5:], y[5:])
    assert metric.aggregate().per_label == compute_multilabel_auroc(y_pred, y).per_label


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="0 or 1"):
        compute_multilabel_auroc(torch.zeros(2, 1), torch.tensor([[2], [0]]))
    with pytest.raises(ValueError, match="label names"):
        compute_multilabel_auroc(torch.zeros(2, 2), torch.zeros(2, 2), label_names=["a"])
    with pytest.raises(ValueError, match="NaN"):
        compute_multilabel_auroc(torch.tensor([[float("nan")], [0.0]]), torch.tensor([[1], [0]]))


def test_agrees_with_monai_compute_roc_auc_on_labels_with_both_classes():
    from monai.metrics import compute_roc_auc

    torch.manual_seed(2)
    y_pred = torch.round(torch.rand(30, 3) * 4) / 4  # many ties
    y = (torch.rand(30, 3) > 0.5).float()
    ours = compute_multilabel_auroc(y_pred, y)
    theirs = compute_roc_auc(y_pred, y, average="none")
    assert list(ours.per_label.values()) == pytest.approx(theirs)


def test_numpy_rank_fallback_equals_scipy_rankdata_with_ties():
    from scipy.stats import rankdata

    from hirescam_ext.metrics.auroc import _average_ranks_numpy

    values = np.random.default_rng(0).integers(0, 20, size=500).astype(float)
    assert np.array_equal(_average_ranks_numpy(values), rankdata(values, method="average"))
    assert np.array_equal(average_ranks(values), rankdata(values, method="average"))
