"""Seed statistics and claim checks of hirescam_ext.reproduce.summary."""

from __future__ import annotations

from typing import Any

import pytest

from hirescam_ext.synthetic.findings import CONFOUNDED_LABEL
from hirescam_ext.reproduce.summary import (
    HELD,
    NOT_EVALUABLE,
    NOT_HELD,
    check_claims,
    detected_pointing_game,
    paired,
    summarize,
)


def _run(auroc: float, grad: float, hires: float, conf_test: float, conf_shift: float, rho: float,
         pointing: float = 0.5, chance: float = 0.1) -> dict[str, Any]:
    def split(conf: float) -> dict[str, Any]:
        return {
            "auroc": {"mean": auroc, "per_label": {CONFOUNDED_LABEL: conf}},
            "organ_iou": {"gradcam": {"mean": grad, "per_group": {}}, "hirescam": {"mean": hires, "per_group": {}}},
        }

    return {
        "evaluation": {"test": split(conf_test), "test_shifted": split(conf_shift)},
        "sanity": {"blocks": ["fc"], "hirescam": {"spearman": [rho]}, "gradcam": {"spearman": [rho]}},
        "localization": {"hirescam": {"pointing_game": pointing}, "chance": {"pointing_game": chance}},
    }


def _claims(base: dict[int, Any], mask: dict[int, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in check_claims({"axialnet": base, "axialnet_mask": mask})}


def test_summarize_ignores_missing_and_non_finite_values() -> None:
    s = summarize([0.2, None, float("nan"), 0.4])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.3)


def test_paired_difference_within_noise_when_seeds_disagree() -> None:
    assert paired([0.5, 0.1, 0.6], [0.3, 0.4, 0.3])["verdict"] == "within noise"


def test_paired_difference_beyond_noise_when_consistent() -> None:
    assert paired([0.50, 0.51, 0.52], [0.30, 0.30, 0.31])["verdict"] == "beyond noise"


def test_single_seed_difference_has_unknown_noise() -> None:
    assert "noise unknown" in paired([0.5], [0.3])["verdict"]


def test_all_claims_hold_on_paper_like_numbers() -> None:
    base = {s: _run(0.70, 0.20, 0.21, 0.80, 0.50, 0.05) for s in range(3)}
    mask = {s: _run(0.70 - 0.001 * s, 0.21, 0.28, 0.75, 0.65, 0.05) for s in range(3)}
    assert set(_claims(base, mask).values()) == {HELD}


def test_mask_claim_fails_when_auroc_drops_more_than_one_point() -> None:
    base = {s: _run(0.70, 0.20, 0.21, 0.80, 0.50, 0.0) for s in range(3)}
    mask = {s: _run(0.68, 0.21, 0.40, 0.75, 0.70, 0.0) for s in range(3)}
    assert _claims(base, mask)["mask_loss_organiou"] == NOT_HELD


def test_confounder_claim_is_not_evaluable_without_a_baseline_drop() -> None:
    base = {s: _run(0.70, 0.20, 0.21, 0.60, 0.65, 0.0) for s in range(3)}
    mask = {s: _run(0.70, 0.20, 0.30, 0.60, 0.60, 0.0) for s in range(3)}
    assert _claims(base, mask)["confounder_drop_halved"] == NOT_EVALUABLE


def test_sanity_claim_fails_when_randomized_maps_stay_anticorrelated() -> None:
    base = {s: _run(0.70, 0.20, 0.21, 0.80, 0.50, -0.5) for s in range(3)}
    mask = {s: _run(0.70, 0.20, 0.30, 0.80, 0.70, -0.5) for s in range(3)}
    assert _claims(base, mask)["randomization_sanity"] == NOT_HELD


def test_hirescam_claim_fails_when_gradcam_is_better() -> None:
    base = {s: _run(0.70, 0.30, 0.20, 0.80, 0.50, 0.0) for s in range(3)}
    mask = {s: _run(0.70, 0.30, 0.40, 0.80, 0.70, 0.0) for s in range(3)}
    assert _claims(base, mask)["hirescam_ge_gradcam"] == NOT_HELD


def test_relative_change_is_not_evaluable_when_baseline_gradcam_is_zero() -> None:
    base = {s: _run(0.70, 0.0, 0.0, 0.80, 0.50, 0.0) for s in range(3)}
    mask = {s: _run(0.70, 0.0, 0.1, 0.80, 0.70, 0.0) for s in range(3)}
    assert _claims(base, mask)["mask_loss_organiou"] == NOT_EVALUABLE


def test_claims_are_not_evaluable_when_the_baseline_is_at_chance() -> None:
    base = {s: _run(0.48 + 0.02 * s, 0.01, 0.11, 0.50, 0.40, 0.0) for s in range(3)}
    mask = {s: _run(0.52, 0.02, 0.05, 0.50, 0.45, 0.0) for s in range(3)}
    claims = check_claims({"axialnet": base, "axialnet_mask": mask})
    assert {c["status"] for c in claims} == {NOT_EVALUABLE}
    assert claims[0]["rule_status"] == HELD


def test_pointing_game_claim_needs_three_times_chance() -> None:
    mask = {s: _run(0.70, 0.21, 0.28, 0.75, 0.65, 0.05) for s in range(3)}
    assert _claims({s: _run(0.70, 0.20, 0.21, 0.80, 0.50, 0.05, 0.31, 0.1) for s in range(3)},
                   mask)["pointing_game_3x_chance"] == HELD  # fmt: skip
    assert _claims({s: _run(0.70, 0.20, 0.21, 0.80, 0.50, 0.05, 0.25, 0.1) for s in range(3)},
                   mask)["pointing_game_3x_chance"] == NOT_HELD  # fmt: skip


def test_confounder_claim_fails_when_the_mask_model_no_longer_detects_the_label() -> None:
    base = {s: _run(0.70, 0.20, 0.21, 0.90, 0.10, 0.05) for s in range(3)}
    mask = {s: _run(0.70, 0.21, 0.28, 0.52, 0.50, 0.05) for s in range(3)}  # no drop, but no detection either
    assert _claims(base, mask)["confounder_drop_halved"] == NOT_HELD


def test_visible_mean_averages_only_the_visible_findings_the_split_can_score() -> None:
    from hirescam_ext.reproduce.summary import run_metrics

    per_label = {"a": 0.9, "b": 0.7, "c": 0.5}
    run = {"evaluation": {"test": {"auroc": {"mean": 0.7, "per_label": per_label}}}}
    out = run_metrics(run, visible=["a", "b", "d"])  # "d" has no AUROC on this split: left out
    assert out["auroc_visible_test"] == pytest.approx(0.8)
    assert out["auroc_test"] == 0.7 and out["auroc_label_c_test"] == 0.5


def test_visible_mean_is_unknown_without_a_visible_set() -> None:
    from hirescam_ext.reproduce.summary import run_metrics

    run = {"evaluation": {"test": {"auroc": {"mean": 0.7, "per_label": {"a": 0.9}}}}}
    assert run_metrics(run)["auroc_visible_test"] is None
    assert run_metrics(run, visible=[])["auroc_visible_test"] is None


def test_per_label_table_marks_visibility_and_says_when_it_is_unknown() -> None:
    from hirescam_ext.reproduce.report import build_tables, per_label_text
    from hirescam_ext.reproduce.summary import aggregate

    runs = {"axialnet": {0: {"evaluation": {"test": {"auroc": {"mean": 0.7, "per_label": {"a": 0.9, "b": 0.5}}}}}}}
    visibility = {"visible": ["a"], "oracle": {"a": {"auroc": 0.95, "se": 0.01}, "b": {"auroc": 0.6, "se": 0.05}}}
    header, rows = build_tables(aggregate(runs, ["a"]), [], [], {}, visibility)["per_label"]
    assert rows == [["a", "yes (0.95)", "90.0"], ["b", "no (0.60)", "50.0"]]
    table1 = build_tables(aggregate(runs, ["a"]), [], [], {}, visibility)["table1"]
    assert table1[1][0][table1[0].index("AUROC (test, visible findings)")] == "90.0"
    _, unknown = build_tables(aggregate(runs), [], [], {}, {"visible": None, "profile": "demo"})["per_label"]
    assert [r[1] for r in unknown] == ["unknown", "unknown"]
    assert "No audit of synthetic profile `demo`" in per_label_text({"visible": None, "profile": "demo"})


def _localized(per_label: dict[str, tuple[float, float, float, int]]) -> dict[str, Any]:
    """A run whose labels have (test AUROC, HiResCAM pointing game, chance, pairs)."""
    run = _run(0.7, 0.2, 0.2, 0.8, 0.5, 0.05)
    run["evaluation"]["test"]["auroc"]["per_label"] = {lab: v[0] for lab, v in per_label.items()}
    run["localization"] = {
        "hirescam": {"pointing_game": 0.1, "pointing_game_per_label": {lab: v[1] for lab, v in per_label.items()}},
        "chance": {"pointing_game": 0.1, "pointing_game_per_label": {lab: v[2] for lab, v in per_label.items()}},
        "n_pairs_per_label": {lab: v[3] for lab, v in per_label.items()},
    }
    return run


def test_detected_pointing_game_pools_the_pairs_of_the_findings_the_model_detects() -> None:
    run = _localized({"a": (0.95, 0.5, 0.1, 30), "b": (0.92, 1.0, 0.2, 10), "c": (0.60, 0.0, 0.05, 100)})
    d = detected_pointing_game(run)
    assert d["labels"] == ["a", "b"] and d["pairs"] == 40
    assert d["pointing_game"] == pytest.approx((0.5 * 30 + 1.0 * 10) / 40)
    assert d["chance"] == pytest.approx((0.1 * 30 + 0.2 * 10) / 40)


def test_detected_pointing_game_is_none_when_no_finding_is_detected() -> None:
    d = detected_pointing_game(_localized({"c": (0.60, 0.0, 0.05, 100)}))
    assert d["labels"] == [] and d["pointing_game"] is None


def test_pointing_game_evidence_reports_the_detected_findings_and_the_mask_loss_model() -> None:
    base = {0: _localized({"heart_cardiomegaly": (0.99, 0.2, 0.1, 20), "lung_nodule": (0.55, 0.0, 0.01, 50)})}
    mask = {0: _localized({"heart_cardiomegaly": (0.99, 0.9, 0.1, 20)})}
    claim = next(c for c in check_claims({"axialnet": base, "axialnet_mask": mask})
                 if c["id"] == "pointing_game_3x_chance")
    assert "over the findings AxialNet detects (test AUROC >= 0.90: heart_cardiomegaly; 20 pairs) 20.0%" in claim[
        "evidence"]
    assert "The mask-loss model's HiResCAM" in claim["evidence"]
    assert "the mask-loss model detects (test AUROC >= 0.90: heart_cardiomegaly; 20 pairs) 90.0%" in claim["evidence"]


def test_pointing_game_evidence_counts_the_pairs_of_one_seed_when_there_are_several() -> None:
    base = {s: _localized({"heart_cardiomegaly": (0.99, 0.2, 0.1, 20)}) for s in range(3)}
    claim = next(c for c in check_claims({"axialnet": base}) if c["id"] == "pointing_game_3x_chance")
    assert "heart_cardiomegaly; 20 pairs per seed) 20.0%" in claim["evidence"]


def _organ(per_label: dict[str, tuple[float, float, float, int]], mean_h: float = 0.3,
           mean_g: float = 0.3) -> dict[str, Any]:
    """A run whose labels have (test AUROC, HiResCAM OrganIoU, Grad-CAM OrganIoU, pairs)."""
    run = _run(0.8, mean_g, mean_h, 0.8, 0.5, 0.05)
    test = run["evaluation"]["test"]
    test["auroc"]["per_label"] = {lab: v[0] for lab, v in per_label.items()}
    for i, method in ((1, "hirescam"), (2, "gradcam")):
        test["organ_iou"][method]["per_label"] = {lab: v[i] for lab, v in per_label.items()}
        test["organ_iou"][method]["per_label_count"] = {lab: v[3] for lab, v in per_label.items()}
    return run


def test_detected_organ_iou_pools_the_pairs_of_detected_findings_apart_from_the_others() -> None:
    from hirescam_ext.reproduce.summary import detected_organ_iou

    run = _organ({"a": (0.95, 0.8, 0.6, 30), "b": (0.91, 0.4, 0.2, 10), "c": (0.55, 0.1, 0.5, 60),
                  "d": (0.99, None, None, 0)})
    d = detected_organ_iou(run, "hirescam")
    assert d["labels"] == ["a", "b"] and d["pairs"] == 40 and d["other_pairs"] == 60
    assert d["organ_iou"] == pytest.approx((0.8 * 30 + 0.4 * 10) / 40)
    assert d["other_organ_iou"] == pytest.approx(0.1)
    assert detected_organ_iou(run, "gradcam")["organ_iou"] == pytest.approx((0.6 * 30 + 0.2 * 10) / 40)


def test_detected_organ_iou_takes_a_given_label_set_and_is_none_without_pairs() -> None:
    from hirescam_ext.reproduce.summary import detected_organ_iou

    run = _organ({"a": (0.95, 0.8, 0.6, 30), "c": (0.55, 0.1, 0.5, 60)})
    given = detected_organ_iou(run, labels=["c"])
    assert given["labels"] == ["c"] and given["organ_iou"] == pytest.approx(0.1)
    assert given["other_organ_iou"] == pytest.approx(0.8)
    none = detected_organ_iou(_organ({"c": (0.55, 0.1, 0.5, 60)}))
    assert none["labels"] == [] and none["organ_iou"] is None and none["other_pairs"] == 60


def test_run_metrics_split_organ_iou_into_detected_and_other_findings() -> None:
    from hirescam_ext.reproduce.summary import run_metrics

    out = run_metrics(_organ({"a": (0.95, 0.8, 0.6, 30), "c": (0.55, 0.1, 0.5, 60)}))
    assert out["organ_iou_hirescam_detected_test"] == pytest.approx(0.8)
    assert out["organ_iou_gradcam_other_test"] == pytest.approx(0.5)
    assert (out["organ_iou_detected_labels_test"], out["organ_iou_detected_pairs_test"],
            out["organ_iou_other_pairs_test"]) == (1, 30, 60)
    assert run_metrics(_run(0.8, 0.2, 0.2, 0.8, 0.5, 0.05))["organ_iou_detected_pairs_test"] is None


def test_hirescam_ge_gradcam_evidence_splits_the_pairs_by_what_the_baseline_detects() -> None:
    base = {0: _organ({"a": (0.95, 0.8, 0.6, 30), "c": (0.55, 0.1, 0.5, 60)}, mean_h=0.33, mean_g=0.53)}
    claims = {c["id"]: c for c in check_claims({"axialnet": base})}
    claim = claims["hirescam_ge_gradcam"]
    assert claim["status"] == NOT_HELD  # the verdict keeps the mean over all pairs
    assert ("over the findings the baseline detects (test AUROC >= 0.90: a; 30 of 90 pairs) HiResCAM 80.0 vs "
            "Grad-CAM 60.0, over the other findings HiResCAM 10.0 vs Grad-CAM 50.0") in claim["evidence"]


def test_organ_iou_evidence_says_when_the_baseline_detects_nothing() -> None:
    base = {0: _organ({"c": (0.55, 0.1, 0.5, 60)})}
    claim = next(c for c in check_claims({"axialnet": base}) if c["id"] == "hirescam_ge_gradcam")
    assert claim["evidence"].endswith("; the baseline detects none of the findings with OrganIoU pairs (test AUROC >= "
                                      "0.90)")


def test_mask_loss_evidence_compares_both_models_on_the_findings_the_baseline_detects() -> None:
    base = {0: _organ({"a": (0.95, 0.8, 0.6, 30), "c": (0.55, 0.1, 0.5, 60)})}
    mask = {0: _organ({"a": (0.85, 0.9, 0.6, 30), "c": (0.95, 0.2, 0.5, 60)})}  # detects c, not a
    claim = next(c for c in check_claims({"axialnet": base, "axialnet_mask": mask}) if c["id"] == "mask_loss_organiou")
    assert ("(test AUROC >= 0.90: a; 30 of 90 pairs) mask-loss HiResCAM 90.0 vs baseline Grad-CAM 60.0, over the "
            "other findings mask-loss HiResCAM 20.0 vs baseline Grad-CAM 50.0") in claim["evidence"]


def test_organ_iou_detected_table_counts_findings_and_pairs_per_model() -> None:
    from hirescam_ext.reproduce.report import build_tables
    from hirescam_ext.reproduce.summary import aggregate

    runs = {"axialnet": {0: _organ({"a": (0.95, 0.8, 0.6, 30), "c": (0.55, 0.1, 0.5, 60)})},
            "ctnet": {0: _organ({"a": (0.95, 0.8, 0.6, 30)})}}  # no maps: no row
    header, rows = build_tables(aggregate(runs), [], [], {})["organ_iou_detected"]
    assert header[1:3] == ["findings detected", "pairs"]
    assert rows == [["AxialNet (random-init trunk)", "1", "30 of 90", "60.0", "80.0", "50.0", "10.0"]]
