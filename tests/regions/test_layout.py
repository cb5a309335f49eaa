"""Attention layout: [M, D1, D2, H] <-> [M, H, D1, D2] and triplet h <-> slices 3h..3h+2."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext.regions.layout import (
    ToAttentionLayoutd,
    attention_to_image_grid,
    crop_to_triplets,
    from_attention_layout,
    to_attention_layout,
    triplet_slices,
)


def test_layout_round_trip():
    x = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # [M, D1, D2, H]
    y = to_attention_layout(x)
    assert y.shape == (2, 5, 3, 4) and y[1, 4, 2, 3] == x[1, 2, 3, 4]
    assert torch.equal(from_attention_layout(y), x)
    t = ToAttentionLayoutd()
    assert torch.equal(t.inverse(t({"regions": x}))["regions"], x)


def test_triplet_h_covers_slices_3h_to_3h_plus_2():
    assert list(triplet_slices(0)) == [0, 1, 2] and list(triplet_slices(134)) == [402, 403, 404]


def test_one_or_two_trailing_slices_are_dropped_as_axialnet_drops_them():
    x = torch.arange(50).reshape(1, 50)
    assert crop_to_triplets(x, 16).shape == (1, 48) and crop_to_triplets(x[:, :48], 16).shape == (1, 48)


def test_a_volume_with_a_whole_triplet_beyond_the_grid_is_refused_as_not_on_the_network_grid():
    """An organ map at a scan's own resolution (96 slices) put on a 16-triplet grid would use its first 48 slices."""
    with pytest.raises(ValueError, match="organ map has 96 slices, 32 triplets, but the grid has 16"):
        crop_to_triplets(torch.zeros(3, 128, 128, 96), 16, "organ map")
    with pytest.raises(ValueError, match="fewer than 16 triplets"):
        crop_to_triplets(torch.zeros(3, 8, 8, 47), 16, "organ map")


def test_attention_cell_spreads_to_its_three_slices():
    att = torch.zeros(2, 4, 3, 3)  # [M, H, D1, D2]
    att[1, 2, 0, 2] = 1.0
    vol = attention_to_image_grid(att, (6, 6, 13))
    hit = torch.nonzero(vol[1])
    assert set(hit[:, 2].tolist()) == {6, 7, 8}
    assert set(hit[:, 0].tolist()) == {0, 1} and set(hit[:, 1].tolist()) == {4, 5}
    assert vol[0].sum() == 0 and vol[1, ..., 12].sum() == 0
