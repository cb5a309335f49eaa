"""Specification of the learnability audit (hirescam_ext.synthetic.audit): voxels, contrast, oracle, verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hirescam_ext.synthetic import audit, generator
from hirescam_ext.synthetic.findings import render_findings
from hirescam_ext.synthetic.generator import make_config

LABEL = "lung_pleural_effusion"


def _config():
    """Tiny grid; only pleural effusion can occur (no other finding can leak its presence)."""
    return make_config("tiny", n_scans=40, prevalence={LABEL: 0.5}, normal_fraction=0.0)


def test_logistic_oracle_separates_a_linearly_separable_feature_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    x_signal = np.c_[y + 0.1 * rng.standard_normal(200), rng.standard_normal((200, 3))]
    x_noise = rng.standard_normal((200, 4))
    assert audit.cross_validated_auroc(x_signal, y)[0] > 0.99
    assert abs(audit.cross_validated_auroc(x_noise, y)[0] - 0.5) < 0.15


def test_window_is_the_bundle_preprocessing_and_maps_back_to_clipped_hu():
    hu = np.array([-2000, -1000, 0, 800, 3000], np.int16)
    x, back = audit.window(hu)
    assert np.allclose(x, [-0.449, -0.449, 1000 / 1800 - 0.449, 0.551, 0.551], atol=1e-6)
    assert np.allclose(back, [-1000, -1000, 0, 800, 800], atol=1e-3)


def test_rendered_labels_cover_the_generator_and_its_implied_labels():
    assert "lung_calcification" in audit.RENDERED_LABELS and "lung_nodule" in audit.RENDERED_LABELS
    assert len(audit.RENDERED_LABELS) == 19
    assert audit.organ_group("heart_cardiomegaly") == "mediastinum" and audit.organ_group("lung_cyst") == "lungs"


def test_oracle_separates_a_clearly_visible_finding_on_the_tiny_profile():
    result = audit.run_audit(_config(), seed=0, labels=[LABEL])
    e = result["labels"][LABEL]
    assert 10 <= e["positives"] <= 30
    assert e["voxels_median"] > 20 and e["findings_1_voxel"] == 0
    assert e["contrast_hu_median"] > 500  # fluid (~10 HU) in aerated lung (~-850 HU)
    assert e["oracle_auroc"] >= 0.9 and e["verdict"] == "separable" and e["reasons"] == []


def test_a_finding_rendered_with_zero_contrast_is_not_separable(monkeypatch):
    def zero_contrast(ph, findings, rng, **kwargs):
        before = ph.hu.copy()
        masks = render_findings(ph, findings, rng, **kwargs)
        for f, m in zip(findings, masks):
            if f.label == LABEL:
                ph.hu[m] = before[m]  # the mask is drawn, the image keeps the healthy lung
        return masks

    monkeypatch.setattr(generator, "render_findings", zero_contrast)
    result = audit.run_audit(_config(), seed=0, labels=[LABEL])
    e = result["labels"][LABEL]
    assert e["voxels_median"] > 20  # the masks are still there...
    assert abs(e["contrast_hu_median"]) < e["noise_hu"]  # ...but carry no contrast
    assert e["oracle_auroc"] < 0.8 and e["verdict"] == "not separable"
    assert any("no intensity change" in r for r in e["reasons"])


def test_an_audit_of_scans_rendered_finer_measures_them_on_the_coarser_grid():
    """Rendered at 3.87 mm (small) and resampled to 5.8 mm (tiny): the same patients and labels, the grid of tiny,
    and lesion masks that went through the same resampling (fewer voxels than at the finer grid)."""
    config = _config()
    render = make_config("small", n_scans=40, prevalence={LABEL: 0.5}, normal_fraction=0.0)
    on_grid = audit.collect_scans(config, seed=0, n_scans=6, labels=[LABEL])
    resampled = audit.collect_scans(config, seed=0, n_scans=6, labels=[LABEL], render=render)
    fine = audit.collect_scans(render, seed=0, n_scans=6, labels=[LABEL])
    assert np.array_equal(resampled["y"], on_grid["y"]) and resampled["y"].sum() > 0
    assert resampled["features"]["lungs"].shape == on_grid["features"]["lungs"].shape
    assert not np.allclose(resampled["features"]["lungs"], on_grid["features"]["lungs"])
    vox = [f["voxels"] for f in resampled["findings"]]
    vox_fine = [f["voxels"] for f in fine["findings"]]
    assert all(0 < v < w for v, w in zip(vox, vox_fine))  # the same effusions, on 1.5x coarser voxels
    assert audit.run_audit(config, seed=0, n_scans=4, labels=[LABEL], folds=2, render=render)["rendered_at"] == {
        "shape": list(render.shape), "spacing": list(render.spacing)}


def test_markdown_report_has_one_row_per_label_with_verdict():
    result = audit.run_audit(make_config("tiny", n_scans=12), seed=1, labels=[LABEL, "lung_nodule"])
    md = audit.to_markdown(result, command="python scripts/eval_learnability.py --scans 12")
    rows = [line for line in md.splitlines() if line.startswith(f"| {LABEL} ") or line.startswith("| lung_nodule ")]
    assert len(rows) == 2 and all("separable" in r for r in rows)
    assert "scripts/eval_learnability.py" in md
    table = audit.comparison_markdown(result, result)
    assert f"| {LABEL} |" in table and "Separable:" in table


def test_the_audit_script_refuses_a_render_profile_coarser_than_the_grid(capsys, load_script):
    with pytest.raises(SystemExit) as err:
        load_script("eval_learnability").main(["--profile", "demo", "--render-profile", "tiny", "--scans", "2"])
    assert err.value.code == 2 and "is not finer than --profile demo" in capsys.readouterr().err


def test_the_audit_script_names_an_audit_of_resampled_scans_after_both_profiles(tmp_path, load_script):
    args = ["--profile", "tiny", "--render-profile", "small", "--scans", "4", "--folds", "2", "--out", str(tmp_path)]
    load_script("eval_learnability").main(args)
    result = json.loads((tmp_path / "learnability_tiny_from_small.json").read_text())
    assert result["profile"] == "tiny" and result["render_profile"] == "small" and result["shape"] == [64, 64, 48]
    assert "rendered at small's grid and resampled" in (tmp_path / "learnability_tiny_from_small.md").read_text()
