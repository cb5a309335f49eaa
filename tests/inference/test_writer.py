"""What the inference writer leaves for a person: compact maps in the scan's geometry, overlays on the original CT
at a slice numbered in the original scan."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import list_data_collate

from hirescam_ext.inference import ExplanationWriter
from hirescam_ext.inference import writer as writer_module
from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.transforms import ct_preprocessing

SHAPE = (40, 36, 30)  # the scan: 30 axial slices, padded to 48 for the network
NET = (48, 48, 48)
HOT_TRIPLET = 12  # network slices 36-38 = original slices 27-29 (9 padding slices below)


def _scan(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-1, 1, SHAPE[0]), np.linspace(-1, 1, SHAPE[1]), indexing="ij")
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 < 1
    vol = np.where(body[..., None], 40, -1000).astype(np.int16).repeat(SHAPE[2], axis=2)
    vol[body & (np.abs(x) > 0.3), :] = -850
    vol += rng.integers(-30, 30, vol.shape, dtype=np.int16)
    affine = np.diag([-1.5, -1.5, 2.5, 1.0])
    affine[:3, 3] = (30.0, 25.0, -100.0)
    nib.save(nib.Nifti1Image(vol, affine), path)
    return path


def _run_writer(tmp_path: Path, **kwargs: Any) -> tuple[Path, Path]:
    source = _scan(tmp_path / "ct.nii.gz")
    pre = ct_preprocessing(label_map_keys=[], spacing=None, spatial_size=NET, hu_range=(-1000, 800), center=-0.449)
    image = pre({"image": str(source)})["image"]
    n = len(LABEL_NAMES)
    maps = torch.zeros(1, n, NET[2] // 3, 6, 6)
    maps[0, :, HOT_TRIPLET, 1:5, 1:5] = torch.linspace(0.2, 1.0, 16).reshape(4, 4)
    scores = torch.zeros(1, n, NET[2] // 3)
    scores[0, :, HOT_TRIPLET] = 1.0
    output = {"prob": torch.linspace(0.9, 0.1, n)[None], "hirescam": maps, "slice_scores": scores}
    batch = list_data_collate([{"image": image, "scan": "ct"}])
    engine = SimpleNamespace(state=SimpleNamespace(output=output, batch=batch, iteration=1, epoch_length=1))
    out = tmp_path / kwargs.pop("folder", "out")
    writer = ExplanationWriter(out, transform=pre, top_k=1, **kwargs)
    writer(engine)
    assert not writer.failures, writer.failures
    return source, out / "ct"


def test_maps_are_8_bit_with_a_scale_slope_in_the_scan_geometry(tmp_path: Path) -> None:
    source, folder = _run_writer(tmp_path)
    _, reference = _run_writer(tmp_path, map_dtype="float32", folder="float")
    written = nib.load(folder / f"hirescam_{LABEL_NAMES[0]}.nii.gz")
    exact = nib.load(reference / f"hirescam_{LABEL_NAMES[0]}.nii.gz").get_fdata()
    assert written.get_data_dtype() == np.uint8 and written.shape == SHAPE
    np.testing.assert_array_equal(written.affine, nib.load(source).affine)
    assert np.abs(written.get_fdata() - exact).max() <= 0.5 / 255 + 1e-6 and exact.max() > 0.5


def test_overlay_slice_is_numbered_in_the_original_scan(tmp_path: Path) -> None:
    _, folder = _run_writer(tmp_path)
    record = json.loads((folder / "result.json").read_text())["reported"][0]
    assert record["n_slices"] == SHAPE[2] and record["slice"] in (27, 28, 29)


def test_overlay_draws_the_original_ct_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    record = lambda path, ct, heat, title, window: drawn.append((ct, heat))  # noqa: E731
    monkeypatch.setattr(writer_module, "save_overlay_png", record)
    source, folder = _run_writer(tmp_path)
    k = json.loads((folder / "result.json").read_text())["reported"][0]["slice"]
    (ct, heat), = drawn
    np.testing.assert_array_equal(ct, nib.load(source).get_fdata()[::-1, ::-1, k])  # HU, flipped LPS -> RAS
    assert heat.shape == SHAPE[:2] and heat.max() > 0.5
