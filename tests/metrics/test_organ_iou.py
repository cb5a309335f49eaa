"""Specification of OrganIoU (HiResCAM, arXiv:2011.08891) and of the per-abnormality threshold selection."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hirescam_ext.labels import LABEL_NAMES, labels_in_group
from hirescam_ext.metrics import (
    THRESHOLDS,
    OrganIoU,
    compute_organ_iou,
    load_thresholds,
    save_thresholds,
    select_best_thresholds,
)
from hirescam_ext.utils.errors import InputError

T = {t: i for i, t in enumerate(THRESHOLDS)}


def _grid_case():
    """One present abnormality on a 2x2x2 grid: first slice allowed, second slice forbidden."""
    maps = torch.tensor([[[[[0.9, 0.6], [0.3, 0.0]], [[0.8, 0.1], [0.0, 0.0]]]]])  # [1, 1, 2, 2, 2]
    regions = torch.tensor([[[[[1, 1], [1, 1]], [[0, 0], [0, 0]]]]])
    labels = torch.tensor([[1]])
    return maps, regions, labels


def test_thresholds_are_the_papers_53_values():
    assert len(THRESHOLDS) == 53
    assert THRESHOLDS[:5] == (0.004, 0.008, 0.012, 0.016, 0.02)
    assert THRESHOLDS[-1] == 0.98
    assert all(math.isclose(b - a, 0.02) for a, b in zip(THRESHOLDS[4:], THRESHOLDS[5:]))


def test_organ_iou_hand_computed_counts_on_a_2x2x2_grid():
    iou, label_idx, sample_idx = compute_organ_iou(*_grid_case())
    assert iou.shape == (1, 53) and label_idx.tolist() == [0] and sample_idx.tolist() == [0]
    assert float(iou[0, T[0.5]]) == pytest.approx(2 / 3)  # allowed 0.9, 0.6; forbidden 0.8
    assert float(iou[0, T[0.2]]) == pytest.approx(3 / 4)  # allowed 0.9, 0.6, 0.3; forbidden 0.8
    assert float(iou[0, T[0.04]]) == pytest.approx(3 / 5)  # forbidden 0.8, 0.1 too
    assert float(iou[0, T[0.86]]) == 1.0  # only 0.9 survives: all attention allowed
    assert float(iou[0, T[0.98]]) == 0.0  # nothing survives


def test_binarization_is_strictly_greater_than_threshold():
    maps = torch.tensor([[[0.5, 0.5]]])
    regions = torch.tensor([[[1, 0]]])
    iou, _, _ = compute_organ_iou(maps, regions, torch.tensor([[1]]))
    assert float(iou[0, T[0.48]]) == pytest.approx(0.5)
    assert float(iou[0, T[0.5]]) == 0.0  # 0.5 is not > 0.5: nothing attended


def test_original_quirk_zeroes_a_map_entirely_inside_the_region():
    maps, regions, labels = _grid_case()
    faithful, _, _ = compute_organ_iou(maps, regions, labels)
    quirk, _, _ = compute_organ_iou(maps, regions, labels, original_quirk=True)
    assert float(faithful[0, T[0.86]]) == 1.0 and float(quirk[0, T[0.86]]) == 0.0
    assert float(quirk[0, T[0.5]]) == pytest.approx(2 / 3)  # both counts non-zero: unchanged


def test_empty_region_for_present_label_scores_zero_and_all_zero_map_scores_zero():
    maps = torch.tensor([[[0.7, 0.2, 0.0], [0.0, 0.0, 0.0]]])
    regions = torch.tensor([[[0, 0, 0], [1, 1, 0]]])
    for quirk in (False, True):
        iou, _, _ = compute_organ_iou(maps, regions, torch.tensor([[1, 1]]), original_quirk=quirk)
        assert torch.equal(iou, torch.zeros(2, 53))


def test_only_truly_present_abnormalities_count():
    maps = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # abnormality 0 fully allowed, 1 fully forbidden
    regions = torch.tensor([[[1, 0], [1, 0]]])
    metric = OrganIoU(label_names=["a", "b"])
    metric(maps, regions, labels=torch.tensor([[1, 0]]))
    result = metric.aggregate(thresholds=0.5)
    assert result.n_pairs == 1 and result.mean == 1.0
    assert result.per_label_count == {"a": 1, "b": 0} and math.isnan(result.per_label["b"])


def test_aggregate_is_micro_average_over_pairs():
    maps = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    regions = torch.tensor([[[1, 0], [1, 0]], [[1, 0], [1, 0]]])
    metric = OrganIoU(label_names=["a", "b"])
    metric(maps, regions, labels=torch.tensor([[1, 1], [1, 0]]))
    result = metric.aggregate(thresholds=0.5)
    assert result.mean == pytest.approx(2 / 3)  # pairs: a=1, b=0, a=1 (mean of label means would be 0.5)
    assert result.per_label == {"a": 1.0, "b": 0.0}


def test_accumulates_over_batches_and_survives_batches_without_pairs():
    maps, regions, labels = _grid_case()
    metric = OrganIoU(label_names=["x"])
    metric(maps, regions, labels=torch.zeros(1, 1))  # no present abnormality
    assert metric.aggregate(thresholds=0.5).n_pairs == 0 and math.isnan(metric.aggregate(thresholds=0.5).mean)
    metric(maps, regions, labels=labels)
    metric(maps, regions, labels=labels)
    result = metric.aggregate(thresholds=0.5)
    assert result.n_pairs == 2 and result.mean == pytest.approx(2 / 3)
    assert metric.pairs()[2].tolist() == [1, 2]  # sample index counted since reset
    metric.reset()
    assert metric.aggregate(thresholds=0.5).n_pairs == 0


def test_threshold_selection_picks_known_best_with_ties_to_smallest():
    # label a: allowed cells 0.5, forbidden 0.3 -> IoU 1 for 0.3 <= t < 0.5 (0.3 is the smallest best)
    # label b: allowed 0.9, forbidden 0.7 and 0.05 -> IoU 1 for 0.7 <= t < 0.9
    maps = torch.tensor([[[0.5, 0.3, 0.0], [0.9, 0.7, 0.05]]])
    regions = torch.tensor([[[1, 0, 0], [1, 0, 0]]])
    metric = OrganIoU(label_names=["a", "b", "c"])
    metric(
        torch.cat([maps, torch.zeros(1, 1, 3)], dim=1),
        torch.cat([regions, torch.zeros(1, 1, 3, dtype=torch.long)], dim=1),
        labels=torch.tensor([[1, 1, 0]]),
    )
    chosen = metric.select_thresholds(default=0.1)
    assert chosen == {"a": 0.3, "b": 0.7, "c": 0.1}
    result = metric.aggregate(thresholds=chosen)
    assert result.mean == 1.0 and result.thresholds == chosen


def test_labels_without_pairs_default_to_the_global_best_threshold():
    best, counts = select_best_thresholds(
        torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]), torch.tensor([0, 0]), 2, thresholds=(0.1, 0.2, 0.3)
    )
    assert counts.tolist() == [2, 0]
    assert best.tolist() == [0.3, 0.3]  # label 0 means: 0, .5, .75; label 1 gets the global best


def test_aggregate_without_thresholds_selects_on_this_data_and_reports_it():
    maps, regions, labels = _grid_case()
    metric = OrganIoU(label_names=["x"])
    metric(maps, regions, labels=labels)
    result = metric.aggregate()
    assert result.threshold_source == "selected_on_this_data"
    assert result.thresholds == {"x": 0.8} and result.mean == 1.0  # smallest t with only 0.9 attended (0.8 !> 0.8)


def test_per_group_aggregation_uses_the_label_table():
    focal = labels_in_group("focal_or_diffuse", "focal")[0]
    diffuse = labels_in_group("focal_or_diffuse", "diffuse")[0]
    maps = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    regions = torch.tensor([[[1, 0], [1, 0]]])
    metric = OrganIoU(label_names=[focal, diffuse])
    metric(maps, regions, labels=torch.tensor([[1, 1]]))
    result = metric.aggregate(thresholds=0.5)
    assert result.per_group["focal"] == 1.0 and result.per_group["diffuse"] == 0.0
    assert result.per_group_count["focal"] == 1 and result.per_group_count["diffuse"] == 1
    groups = result.per_group_count["biological"] + result.per_group_count["intervention"]
    assert groups == 2


def test_default_label_names_are_the_80_labels_and_mismatch_raises():
    metric = OrganIoU()
    assert metric.label_names == LABEL_NAMES
    with pytest.raises(ValueError, match="label names"):
        metric(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), labels=torch.ones(1, 2))


def test_bad_inputs_raise_clear_errors():
    metric = OrganIoU(label_names=["x"])
    with pytest.raises(ValueError, match="differ"):
        metric(torch.zeros(1, 1, 3), torch.zeros(1, 1, 4), labels=torch.ones(1, 1))
    with pytest.raises(ValueError, match="normalized"):
        metric(torch.full((1, 1, 3), 2.0), torch.zeros(1, 1, 3), labels=torch.ones(1, 1))
    with pytest.raises(ValueError, match="not one of"):
        metric.aggregate(thresholds=0.5123)


def test_threshold_json_round_trip(tmp_path):
    maps = torch.tensor([[[0.5, 0.3, 0.0], [0.9, 0.7, 0.05]]])
    regions = torch.tensor([[[1, 0, 0], [1, 0, 0]]])
    metric = OrganIoU(label_names=["a", "b"])
    metric(maps, regions, labels=torch.tensor([[1, 1]]))
    path = tmp_path / "thresholds.json"
    saved = metric.save_thresholds(path)
    doc = json.loads(path.read_text())
    assert doc["thresholds"] == {"a": 0.3, "b": 0.7} and doc["n_pairs"] == {"a": 1, "b": 1}
    assert load_thresholds(path, ["a", "b"]) == saved
    assert metric.aggregate(thresholds=path).mean == 1.0
    assert OrganIoU(label_names=["a", "b"], label_thresholds=path).label_thresholds == saved


def test_threshold_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_thresholds(bad)
    other = tmp_path / "other.json"
    save_thresholds(other, {"a": 0.3})
    with pytest.raises(InputError, match="missing"):
        load_thresholds(other, ["a", "b"])
    with pytest.raises(InputError, match="not found"):
        load_thresholds(tmp_path / "absent.json")
