"""Agreement with third-party references on real CT (skipped when ../shared/datasets is absent)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.shared_data


@pytest.mark.parametrize("variant", ["plain", "shifted", "rotated", "resampled", "cropped"])
def test_cip_lung_dice_at_least_097_for_each_lung(datasets, eval_script, variant):
    if not (datasets / "cip-copdgene-chestct").is_dir():
        pytest.skip("cip-copdgene-chestct not in the shared datasets")
    res = eval_script.eval_cip(datasets, variant)
    assert res["dice_right_lung"] >= 0.97, res
    assert res["dice_left_lung"] >= 0.97, res


def test_cip_lungs_sides_follow_anatomy_not_array_order(datasets, eval_script):
    """The reference's right lung (larger RAS axis 0) is our label 1 also after mirroring the scan left-right."""
    import numpy as np

    from hirescam_ext.segmentation import segment_organs

    if not (datasets / "cip-copdgene-chestct").is_dir():
        pytest.skip("cip-copdgene-chestct not in the shared datasets")
    ct, lab, spacing = eval_script.load_cip(datasets)
    mirrored = segment_organs(ct[::-1].copy(), spacing=spacing).organs[::-1]
    # mirroring swaps anatomy: the reference right lung now gets the left label, and vice versa
    assert eval_script.dice(mirrored == 3, lab == 1) >= 0.95
    assert eval_script.dice(mirrored == 1, lab == 3) >= 0.95


def test_totalseg_heart_at_least_90_percent_inside_heart_mediastinum(datasets, eval_script):
    if not (datasets / "totalseg-ct-examples").is_dir():
        pytest.skip("totalseg-ct-examples not in the shared datasets")
    res = eval_script.eval_totalseg(datasets)
    assert res["heart_coverage"] >= 0.90, res


def test_abdominal_scan_finds_its_lung_bases_not_the_larger_bowel_gas(datasets, eval_script):
    """TotalSegmentator example_ct: abdomen up to the lung bases; colon gas (256 and 118 mL) outsizes the bases."""
    if not (datasets / "totalseg-ct-examples").is_dir():
        pytest.skip("totalseg-ct-examples not in the shared datasets")
    res = eval_script.eval_totalseg_abdomen(datasets)
    assert res["dice_right_lung"] >= 0.9 and res["dice_left_lung"] >= 0.9, res


def test_abdominal_scan_is_flagged_lung_bases_only(datasets, eval_script):
    if not (datasets / "totalseg-ct-examples").is_dir():
        pytest.skip("totalseg-ct-examples not in the shared datasets")
    res = eval_script.eval_totalseg_abdomen(datasets)
    assert not res["ok"] and any(r.startswith("lung bases only") for r in res["reasons"]), res


def test_thin_two_file_dicom_slab_keeps_both_lungs(datasets):
    """A one-slice chest CT (LIDC slice stored as 2 stripped DICOM files, -2048 padding) still has two lungs."""
    import numpy as np
    from monai.transforms import LoadImage

    from hirescam_ext.segmentation import segment_organs

    folder = datasets / "lungmask-lidc-slices"
    if not folder.is_dir():
        pytest.skip("lungmask-lidc-slices not in the shared datasets")
    img = LoadImage(image_only=True)(str(folder))
    seg = segment_organs(np.asarray(img), affine=np.asarray(img.affine))
    assert seg.ok, seg.reasons
    assert seg.volumes_ml["right_lung"] > 5 and seg.volumes_ml["left_lung"] > 5
