"""Paper Figure 3 in miniature: Grad-CAM highlights a location the model uses NEGATIVELY, HiResCAM does not.

Toy model: features A = ReLU(conv1x1(x)) on a 4x4 grid (one feature), score s = sum_ij W_ij A_ij + b with
W = +1 at (0, 0), -0.5 at (3, 3), 0 elsewhere. With a bright (3, 3), Grad-CAM's averaged gradient
alpha = mean(W) > 0 scales A, so its map peaks at (3, 3), which lowers the score. HiResCAM = W (.) A is exactly each
location's contribution to the score.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hirescam_ext.visualize import GradCAM, HiResCAM


def _toy() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    conv = nn.Conv2d(1, 1, 1)
    fc = nn.Linear(16, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        weight = torch.zeros(4, 4)
        weight[0, 0], weight[3, 3] = 1.0, -0.5
        fc.weight.copy_(weight.reshape(1, 16))
        fc.bias.fill_(0.2)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), fc).double()
    x = torch.full((1, 1, 4, 4), 0.1, dtype=torch.float64)
    x[0, 0, 0, 0], x[0, 0, 3, 3] = 2.0, 3.0
    return model, x, weight.double()


def _argmax2d(m: torch.Tensor) -> tuple[int, int]:
    i = int(m.argmax())
    return i // m.shape[-1], i % m.shape[-1]


def test_gradcam_peaks_where_the_model_uses_the_feature_negatively():
    model, x, _ = _toy()
    maps = GradCAM(model, target_layers="1")(x, class_idx=0)
    assert _argmax2d(maps[0, 0]) == (3, 3)
    assert maps[0, 0, 0, 0] < 1.0


def test_hirescam_peaks_where_the_model_uses_the_feature_positively():
    model, x, _ = _toy()
    maps = HiResCAM(model, target_layers="1")(x, class_idx=0)
    assert _argmax2d(maps[0, 0]) == (0, 0)
    assert maps[0, 0, 3, 3] == 0.0


def test_raw_hirescam_equals_each_locations_contribution_to_the_score():
    model, x, weight = _toy()
    raw = HiResCAM(model, target_layers="1").compute_raw(x, class_idx=0)
    torch.testing.assert_close(raw[0, 0], weight * x[0, 0])
    torch.testing.assert_close(raw.sum(), model(x)[0, 0] - 0.2)
