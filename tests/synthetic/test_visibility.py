"""``hirescam_ext.synthetic.visibility``: the findings visible at a profile's grid, from the learnability audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hirescam_ext.synthetic.audit import RENDERED_LABELS
from hirescam_ext.synthetic.generator import GENERATOR_VERSION
from hirescam_ext.synthetic.visibility import (
    MIN_ROSE,
    MIN_SHAPE_VOXELS,
    SEPARABLE_AUROC,
    is_visible,
    load_visibility,
    update_visibility,
    visibility_entry,
    visible_findings,
    visibility_key,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "learnability"


def _audit(oracle: dict[str, tuple[float, float]], version: str = GENERATOR_VERSION) -> dict:
    return {
        "generator_version": version, "shape": [64, 64, 48], "spacing": [5.8, 5.8, 6.4], "scans": 10, "seed": 0,
        "labels": {lab: {"oracle_auroc": a, "oracle_auroc_se": se} for lab, (a, se) in oracle.items()},
    }


def test_a_finding_within_one_standard_error_of_the_bar_counts_as_visible() -> None:
    assert is_visible(SEPARABLE_AUROC, 0.0)
    assert is_visible(SEPARABLE_AUROC - 0.03, 0.04)
    assert not is_visible(SEPARABLE_AUROC - 0.05, 0.04)
    assert not is_visible(None, None)


def test_a_lesion_of_several_voxels_that_stands_out_of_the_noise_is_visible_without_the_oracle() -> None:
    assert is_visible(0.5, 0.05, voxels_median=MIN_SHAPE_VOXELS + 1, rose_median=MIN_ROSE)
    assert not is_visible(0.5, 0.05, voxels_median=MIN_SHAPE_VOXELS, rose_median=100.0)  # no shape: HU alone
    assert not is_visible(0.5, 0.05, voxels_median=50, rose_median=MIN_ROSE - 1)  # lost in the noise


def test_visible_findings_come_from_the_recorded_audit_of_that_profile(tmp_path: Path) -> None:
    path = tmp_path / "learnability.json"
    update_visibility("tiny", _audit({"a": (0.95, 0.01), "b": (0.88, 0.03), "c": (0.6, 0.05)}), path)
    assert visible_findings("tiny", path=path) == ("a", "b")
    assert visible_findings("tiny", shape=(64, 64, 48), path=path) == ("a", "b")


def test_no_visible_set_without_an_audit_of_that_profile_grid_or_generator_version(tmp_path: Path) -> None:
    path = tmp_path / "learnability.json"
    update_visibility("tiny", _audit({"a": (0.95, 0.01)}, version="0.0.1"), path)
    assert visible_findings("tiny", generator_version="0.0.1", path=path) == ("a",)
    assert visible_findings("tiny", path=path) is None  # another generator version
    assert visible_findings("tiny", shape=(96, 96, 72), generator_version="0.0.1", path=path) is None
    assert visible_findings("small", generator_version="0.0.1", path=path) is None
    assert visible_findings("tiny", path=tmp_path / "missing.json") is None


def test_an_audit_of_resampled_scans_has_its_own_key_and_visible_set(tmp_path: Path) -> None:
    """Scans rendered at 2.9 mm and resampled to tiny's grid are another benchmark than scans made on it."""
    assert visibility_key("tiny") == "tiny" and visibility_key("tiny", "tiny") == "tiny"
    assert visibility_key("tiny", "demo") == "tiny_from_demo"
    path = tmp_path / "learnability.json"
    update_visibility("tiny", _audit({"a": (0.95, 0.01), "b": (0.95, 0.01)}), path)
    update_visibility("tiny_from_demo", _audit({"a": (0.95, 0.01), "b": (0.6, 0.05)}), path)
    assert visible_findings("tiny", path=path) == ("a", "b")
    assert visible_findings("tiny", render_profile="demo", path=path) == ("a",)
    assert visible_findings("tiny", render_profile="small", path=path) is None  # no audit of that rendering


def test_updating_one_profile_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "learnability.json"
    update_visibility("tiny", _audit({"a": (0.95, 0.01)}), path)
    update_visibility("small", _audit({"b": (0.95, 0.01)}), path)
    assert set(load_visibility(path)) == {"tiny", "small"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_audit_result_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="learnability audit"):
        visibility_entry({"labels": {"a": {"auroc": 0.9}}})


@pytest.mark.parametrize("profile", ["tiny", "small", "demo", "tiny_from_demo"])
def test_the_packaged_resource_matches_the_committed_audit(profile: str) -> None:
    """The resource is what `eval_learnability.py --resource-from` makes of docs/learnability/ for this version."""
    audit = json.loads((DOCS / f"learnability_{profile}_v{GENERATOR_VERSION}.json").read_text())
    assert load_visibility()[profile]["oracle"] == visibility_entry(audit)["oracle"]
    visible = visible_findings(profile, shape=audit["shape"])
    assert visible is not None and set(visible) <= set(RENDERED_LABELS)
    # lymph nodes: no global oracle separates them, but they are several voxels that stand out locally
    assert "h_mediastinum_lymphadenopathy" in visible and "heart_pericardial_effusion" in visible


def test_coronary_calcium_of_two_voxels_is_not_visible_at_the_tiny_grid() -> None:
    visible = visible_findings("tiny", shape=(64, 64, 48))
    assert visible is not None and "heart_coronary_artery_disease" not in visible


def test_one_voxel_calcifications_and_small_nodules_do_not_survive_resampling_from_2_9_to_5_8_mm() -> None:
    """Visible on scans made on tiny's grid, not on the same patients rendered at 2.9 mm and resampled to it."""
    on_grid = visible_findings("tiny", shape=(64, 64, 48))
    resampled = visible_findings("tiny", shape=(64, 64, 48), render_profile="demo")
    assert resampled is not None and set(resampled) < set(on_grid)
    for label in ("lung_granuloma", "lung_calcification", "lung_nodule"):
        assert label in on_grid and label not in resampled
