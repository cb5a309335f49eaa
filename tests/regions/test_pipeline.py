"""The whole training data path on a real CT: preprocessing -> G_true -> augmentation -> attention layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, MapLabelValued

from hirescam_ext.data.dataset import make_dataset
from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.regions import AllowedRegionsd, ToAttentionLayoutd, allowed_regions
from hirescam_ext.transforms import RandFlipRot90d, ct_preprocessing

GRID = (6, 6, 27)
LUNG = LABEL_NAMES.index("lung_atelectasis")

pytestmark = pytest.mark.shared_data


def _pipeline(flip_prob: float, rot_prob: float, mode: str = "nearest") -> Compose:
    return Compose(
        [
            ct_preprocessing(spacing=(4.0, 4.0, 4.0), spatial_size=(72, 72, 81)),
            # derived/lm-64_lungs_RL uses 1 right, 2 left (lungmask numbering): map to 1 right, 3 left
            MapLabelValued("organs", orig_labels=[1, 2], target_labels=[1, 3]),
            AllowedRegionsd(grid=GRID, mode=mode),
            RandFlipRot90d(("image", "organs", "regions"), flip_prob=flip_prob, rot_prob=rot_prob),
            ToAttentionLayoutd("regions"),
        ]
    )


def _item(cip):
    label = np.zeros(len(LABEL_NAMES), np.float32)
    label[LUNG] = 1
    return {
        "image": str(cip / "derived" / "ct-64.nii.gz"),
        "organs": str(cip / "derived" / "lm-64_lungs_RL.nii.gz"),
        "label": label,
        "locations": {"lung_atelectasis": ["right_lower"]},
    }


def test_right_lung_label_lands_on_high_axis0_cells(cip):
    out = _pipeline(0.0, 0.0)(_item(cip))
    regions = out["regions"]  # [M, H, D1, D2]
    assert regions.shape == (len(LABEL_NAMES), GRID[2], GRID[0], GRID[1])
    cells = regions[LUNG].sum(dim=(0, 2))  # per D1 column
    assert cells[3:].sum() > 0 and cells[:2].sum() == 0  # right lung = larger X = larger D1
    assert regions.sum() == regions[LUNG].sum()


def test_disk_cached_pipeline_keeps_regions_aligned_with_the_image(cip, tmp_path):
    # area mode is exactly equivariant to flips/rot90 when the grid divides the volume (72 = 6 x 12, 81 = 27 x 3)
    item = _item(cip)
    ds = make_dataset([item], _pipeline(1.0, 1.0, mode="area"), cache="disk", cache_dir=tmp_path)
    for seed in range(4):
        ds.transform.set_random_state(seed=seed)
        out = ds[0]
        expected = allowed_regions(out["organs"], item["label"], item["locations"], grid=GRID, mode="area")
        assert torch.equal(out["regions"], expected.permute(0, 3, 1, 2))
        assert out["image"].shape[1:] == out["organs"].shape[1:]
