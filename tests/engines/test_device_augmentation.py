"""AugmentOnDevice: the paper's flip / rot90 after the device copy equals RandFlipRot90d in the workers."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext.engines import AugmentOnDevice, PrepareBatchWithRegions
from hirescam_ext.engines.device_augmentation import apply_flip_rot90, draw_flip_rot90
from hirescam_ext.regions.layout import to_attention_layout
from hirescam_ext.transforms import RandFlipRot90d

DRAWS = [(axis, k) for axis in (None, 0, 1, 2) for k in range(4)]


@pytest.mark.parametrize("axis,k", DRAWS)
def test_every_outcome_equals_the_loader_transform_on_image_and_regions(axis, k):
    torch.manual_seed(0)
    image = torch.rand(1, 8, 8, 12)  # [1, X, Y, Z]: a 4 x 4 x 4 grid of 2 x 2 x 3 cells
    regions = torch.rand(5, 4, 4, 4) > 0.5  # [M, D1, D2, H]
    loader = RandFlipRot90d(keys=("image", "regions"))
    loader.set_draw(axis, k)
    expected = loader({"image": image, "regions": regions}, randomize=False)
    got_image, got_regions = apply_flip_rot90(image[None], to_attention_layout(regions)[None], [(axis, k)])
    assert torch.equal(got_image[0], expected["image"])
    assert torch.equal(got_regions[0], to_attention_layout(expected["regions"]))


def test_draws_cover_the_paper_distribution_and_follow_the_global_seed():
    torch.manual_seed(3)
    draws = draw_flip_rot90(4000)
    flips = [a for a, _ in draws if a is not None]
    rots = [k for _, k in draws if k]
    assert 0.45 < len(flips) / 4000 < 0.55 and 0.45 < len(rots) / 4000 < 0.55
    assert set(flips) == {0, 1, 2} and set(rots) == {1, 2, 3}
    torch.manual_seed(3)
    assert draw_flip_rot90(4000) == draws  # a resumed run (global RNG restored) draws the same


def test_the_wrapper_augments_image_and_regions_and_keeps_the_label():
    batch = {"image": torch.rand(3, 1, 8, 8, 12), "label": torch.rand(3, 80), "regions": torch.rand(3, 80, 4, 4, 4)}
    torch.manual_seed(1)
    draws = draw_flip_rot90(3)
    torch.manual_seed(1)
    image, target = AugmentOnDevice(PrepareBatchWithRegions())(batch, torch.device("cpu"))
    expected_image, expected_regions = apply_flip_rot90(batch["image"], batch["regions"], draws)
    assert any(d != (None, 0) for d in draws)
    assert torch.equal(image, expected_image) and torch.equal(target["regions"], expected_regions)
    assert torch.equal(target["label"], batch["label"])


def test_probabilities_zero_leave_the_batch_unchanged_and_labels_only_targets_work():
    batch = {"image": torch.rand(2, 1, 8, 8, 12), "label": torch.rand(2, 80)}
    image, target = AugmentOnDevice(PrepareBatchWithRegions(), flip_prob=0.0, rot_prob=0.0)(batch)
    assert torch.equal(image, batch["image"]) and torch.equal(target, batch["label"])


def test_rotating_a_non_square_plane_is_refused():
    with pytest.raises(ValueError, match="square"):
        apply_flip_rot90(torch.rand(1, 1, 8, 6, 12), None, [(None, 1)])
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentOnDevice(PrepareBatchWithRegions(), flip_prob=1.5)
