"""Analyses of hirescam_ext.reproduce.analysis: lesion grids, Spearman, cascading randomization."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from hirescam_ext import AxialNet
from hirescam_ext.reproduce.analysis import (
    LEDGER_REGIONS,
    _effects,
    cascading_randomization,
    confounder_ledger,
    lesion_on_grid,
    lesion_to_fat_ratio_needed,
    load_volume,
    make_explainers,
    maps_on_grid,
    randomization_blocks,
    region_fractions_on_grid,
    shortcut_score_auroc,
    spearman,
)


@pytest.fixture()
def net() -> AxialNet:
    torch.manual_seed(0)
    return AxialNet(n_classes=80, spatial_size=(64, 64), trunk="small", custom_conv_padding=1).eval()


def test_lesion_on_grid_maps_z_to_triplet_axis_first() -> None:
    mask = torch.zeros(64, 64, 48, dtype=torch.bool)
    mask[50, 5, 40] = True
    cells = lesion_on_grid(mask, (16, 2, 2))
    assert cells.shape == (16, 2, 2)
    assert cells.nonzero().tolist() == [[13, 1, 0]]


def test_spearman_is_one_for_monotone_maps_and_zero_for_a_flat_map() -> None:
    a = torch.arange(10.0)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, torch.zeros(10)) == 0.0


def test_randomization_blocks_start_at_the_output_layer(net: AxialNet) -> None:
    names = [name for name, _ in randomization_blocks(net)]
    assert names[0] == "fc"
    assert names[1] == "custom_convs.conv4"
    assert names.index("trunk.layer4") < names.index("trunk.layer1")


def test_maps_on_grid_are_normalized_and_on_the_requested_grid(net: AxialNet) -> None:
    maps = maps_on_grid(make_explainers(net)["hirescam"], torch.rand(1, 64, 64, 48), [3, 7], (16, 2, 2))
    assert maps.shape == (2, 16, 2, 2)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0 + 1e-6


def test_cascading_randomization_reports_every_block_and_leaves_the_model_unchanged(net: AxialNet) -> None:
    before = {k: v.clone() for k, v in net.state_dict().items()}
    label = torch.zeros(80)
    label[[2, 11]] = 1
    items = [{"image": torch.rand(1, 64, 64, 12), "label": label}]
    out = cascading_randomization(net, items, seed=1)
    assert out["blocks"][0] == "fc" and out["n_maps"] == 2
    for method in ("hirescam", "gradcam"):
        assert len(out[method]["spearman"]) == len(out["blocks"])
        assert all(v is None or -1.0 <= v <= 1.0 for v in out[method]["spearman"])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_training_fit_reports_auroc_over_the_given_scans(net: AxialNet) -> None:
    from hirescam_ext.reproduce.analysis import training_fit

    items = []
    for i in range(4):
        label = torch.zeros(80)
        label[i % 2] = 1
        items.append({"image": torch.rand(1, 64, 64, 12), "label": label})
    fit = training_fit(net, items)
    assert fit["n_scans"] == 4
    assert set(fit["per_label"]) == {"h_great_vessel_aneurysm", "h_great_vessel_atherosclerosis"}
    assert 0.0 <= fit["auroc_mean"] <= 1.0


def test_region_fractions_partition_every_cell_and_follow_the_organ_truth() -> None:
    hu = np.full((64, 64, 12), -1000.0, np.float32)
    organs = np.zeros((64, 64, 12), np.uint8)
    organs[:32, :32] = 2  # heart/mediastinum fills the cell (D1 0, D2 0)
    organs[32:, :32] = 1  # right lung fills (1, 0)
    hu[:32, 32:] = 0.0  # body tissue outside the organs: body wall in (0, 1); (1, 1) stays outside the body
    frac = region_fractions_on_grid(hu, organs, (4, 2, 2))
    assert frac.shape == (len(LEDGER_REGIONS), 4, 2, 2)
    assert torch.allclose(frac.sum(0), torch.ones(4, 2, 2))
    expected = {"heart_mediastinum": (0, 0), "lungs": (1, 0), "body_wall": (0, 1), "outside_body": (1, 1)}
    for k, name in enumerate(LEDGER_REGIONS):
        assert frac[k, :, expected[name][0], expected[name][1]].tolist() == [1.0] * 4


def test_effects_recover_a_planted_fat_and_label_effect() -> None:
    rng = np.random.default_rng(0)
    fat_z = rng.standard_normal(50)
    label = (rng.random(50) < 0.5).astype(float)
    fx = _effects(1.0 + 2.0 * fat_z - 0.5 * label, fat_z, label)
    assert fx["fat_effect"] == pytest.approx(2.0) and fx["label_effect"] == pytest.approx(-0.5)
    assert _effects(fat_z[:3], fat_z[:3], label[:3])["fat_effect"] is None  # too few scans for three coefficients


def _confounded_split(n: int, corr_sign: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fat thickness in mm and a label that follows it (``corr_sign`` +1) or runs against it (-1)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    return 20.0 + 10.0 * (corr_sign * 1.5 * y + rng.standard_normal(n)), y


def test_shortcut_score_auroc_is_the_fat_alone_at_ratio_zero_and_rises_with_the_lesion() -> None:
    from hirescam_ext.metrics.auroc import binary_auroc

    fat, y = _confounded_split(300, -1.0, seed=0)
    assert shortcut_score_auroc(fat, y, 0.0) == pytest.approx(binary_auroc(fat, y))
    curve = [shortcut_score_auroc(fat, y, r) for r in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert curve[0] < 0.2 and curve[-1] == 1.0
    assert all(a <= b for a, b in zip(curve, curve[1:]))


def test_lesion_to_fat_ratio_needed_is_the_first_grid_ratio_within_the_drop() -> None:
    test, shifted = _confounded_split(300, 1.0, seed=1), _confounded_split(300, -1.0, seed=2)
    fat_drop = shortcut_score_auroc(*test, 0.0) - shortcut_score_auroc(*shifted, 0.0)
    assert lesion_to_fat_ratio_needed(test, shifted, max_drop=fat_drop) == 0.0
    ratio = lesion_to_fat_ratio_needed(test, shifted, max_drop=fat_drop / 2, step=0.05)
    assert ratio is not None and ratio > 0.0
    assert shortcut_score_auroc(*test, ratio) - shortcut_score_auroc(*shifted, ratio) <= fat_drop / 2
    before = ratio - 0.05
    assert shortcut_score_auroc(*test, before) - shortcut_score_auroc(*shifted, before) > fat_drop / 2
    assert lesion_to_fat_ratio_needed(test, shifted, max_drop=fat_drop / 2, limit=ratio - 0.1) is None


def test_lesion_to_fat_ratio_needed_refuses_a_split_with_one_class() -> None:
    fat, y = _confounded_split(50, 1.0, seed=3)
    with pytest.raises(ValueError, match="shifted split holds only one class"):
        lesion_to_fat_ratio_needed((fat, y), (fat, np.zeros_like(y)), max_drop=0.1)


def _ledger_dataset(folder: Path, n: int) -> list[dict]:
    (folder / "images").mkdir(parents=True)
    (folder / "organs").mkdir()
    rng = np.random.default_rng(1)
    findings, items = {}, []
    for i in range(n):
        acc = f"s{i}"
        hu = rng.uniform(-1000, 400, (64, 64, 12)).astype(np.float32)
        organs = np.zeros((64, 64, 12), np.uint8)
        organs[16:48, 16:48] = 2
        organs[4:16, 16:48] = 1
        for sub, vol in (("images", hu), ("organs", organs)):
            nib.save(nib.Nifti1Image(vol, np.eye(4)), str(folder / sub / f"{acc}.nii.gz"))
        findings[acc] = {"fat_thickness_mm": float(5 + 3 * i), "findings": []}
        label = torch.zeros(80)
        label[1] = float(i % 2)
        items.append({"accession": acc, "image": torch.as_tensor(hu[None] / 1800.0), "label": label})
    (folder / "findings.json").write_text(json.dumps(findings))
    return items


def test_confounder_ledger_splits_each_logit_exactly_into_regions(net: AxialNet, tmp_path: Path) -> None:
    items = _ledger_dataset(tmp_path, 6)
    out = confounder_ledger(items, net, make_explainers(net)["hirescam"], tmp_path, (64, 64, 12))
    assert out["n_scans"] == 6 and out["label"] == "h_great_vessel_atherosclerosis"
    # the regions' parts add up to the logit minus the output bias for every scan: nothing is unexplained
    assert out["unexplained_std"] < 1e-4
    mean_parts = sum(out["regions"][r]["mean"] for r in LEDGER_REGIONS)
    assert mean_parts + float(net.fc.bias[1].detach()) == pytest.approx(out["logit"]["mean"], abs=1e-4)
    assert all(out["regions"][r]["fat_effect"] is not None for r in LEDGER_REGIONS)
    # the mask loss's view (allowed cells, forbidden positive and negative parts) splits the same sum
    view = out["mask_view"]
    assert view["forbidden_positive"]["mean"] >= 0.0 >= view["forbidden_negative"]["mean"]
    assert sum(v["mean"] for v in view.values()) == pytest.approx(mean_parts, abs=1e-4)


def test_confounder_ledger_names_the_findings_file_when_fat_is_missing(net: AxialNet, tmp_path: Path) -> None:
    from hirescam_ext.utils.errors import InputError

    items = _ledger_dataset(tmp_path, 2)
    (tmp_path / "findings.json").write_text(json.dumps({"s0": {"findings": []}}))
    with pytest.raises(InputError, match="findings.json"):
        confounder_ledger(items, net, make_explainers(net)["hirescam"], tmp_path, (64, 64, 12))


def _nifti(path: Path, data: np.ndarray, spacing: float) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([spacing, spacing, spacing, 1.0])), str(path))
    return path


def test_load_volume_resamples_a_finer_label_map_to_the_network_spacing_and_keeps_its_labels(tmp_path: Path) -> None:
    organs = np.zeros((16, 16, 12), np.uint8)
    organs[:8] = 1
    organs[8:, :, 6:] = 3
    out = load_volume(_nifti(tmp_path / "organs.nii.gz", organs, 2.0), (8, 8, 6), spacing=(4.0, 4.0, 4.0))
    assert out.shape == (8, 8, 6) and out.dtype == np.uint8 and set(np.unique(out)) == {0, 1, 3}
    assert (out[:4] == 1).all() and (out[4:, :, 3:] == 3).all() and (out[4:, :, :3] == 0).all()


def test_load_volume_resamples_every_channel_of_a_lesion_stack_alike(tmp_path: Path) -> None:
    lesions = np.zeros((16, 16, 12, 2), np.uint8)
    lesions[2:6, 2:6, 2:6, 0] = 1
    lesions[10:14, 10:14, 6:10, 1] = 1
    out = load_volume(_nifti(tmp_path / "lesions.nii.gz", lesions, 2.0), (8, 8, 6), spacing=(4.0, 4.0, 4.0))
    assert out.shape == (8, 8, 6, 2)
    assert out[..., 0].sum() == 8 and out[1:3, 1:3, 1:3, 0].all()
    assert out[..., 1].sum() == 8 and out[5:7, 5:7, 3:5, 1].all()


def test_load_volume_averages_a_ct_linearly_and_leaves_a_volume_at_the_spacing_unchanged(tmp_path: Path) -> None:
    hu = np.tile(np.array([-1000, 0], np.int16), 8)[:, None, None] * np.ones((1, 16, 12), np.int16)
    path = _nifti(tmp_path / "ct.nii.gz", hu, 2.0)
    out = load_volume(path, (8, 8, 6), spacing=(4.0, 4.0, 4.0), mode="bilinear")
    assert out.dtype == np.float32 and np.allclose(out, -500.0)  # each coarse voxel covers one air, one water voxel
    assert np.array_equal(load_volume(path, (16, 16, 12), spacing=(2.0, 2.0, 2.0)), hu)
    assert np.array_equal(load_volume(path, (16, 16, 12)), hu)
