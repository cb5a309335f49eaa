"""HUWindowd: the paper's clip/scale/centre equals MONAI's ScaleIntensityRanged + ShiftIntensityd."""

from __future__ import annotations

import torch
from monai.transforms import Compose, ScaleIntensityRanged, ShiftIntensityd

from hirescam_ext.transforms.intensity import HUWindowd


def test_matches_monai_scale_and_shift():
    x = torch.linspace(-2000, 2000, 1000).reshape(1, 10, 10, 10)
    ours = HUWindowd("image", hu_range=(-1000, 800), center=-0.449)({"image": x})["image"]
    monai = Compose([ScaleIntensityRanged("image", -1000, 800, 0.0, 1.0, clip=True),
                     ShiftIntensityd("image", offset=-0.449)])({"image": x.clone()})["image"]
    assert torch.allclose(ours, torch.as_tensor(monai), atol=1e-6)
    assert abs(float(ours.min()) + 0.449) < 1e-6 and abs(float(ours.max()) - 0.551) < 1e-6


def test_input_is_not_modified():
    x = torch.full((1, 2, 2, 2), 500.0)
    HUWindowd("image", center=-0.449)({"image": x})
    assert torch.all(x == 500.0)
