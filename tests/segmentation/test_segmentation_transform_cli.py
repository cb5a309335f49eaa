"""``SegmentOrgansd`` inside a MONAI Compose, and the ``hirescam segment`` command line."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, ScaleIntensityRanged

from hirescam_ext.segmentation import SegmentOrgansd
from hirescam_ext.segmentation.cli import main, scan_name


def _image(hu, spacing=5.0):
    return MetaTensor(torch.from_numpy(hu[None].copy()), affine=np.diag([spacing, spacing, spacing, 1.0]))


def test_segment_organsd_in_compose_before_scaling_keeps_hu_segmentation(chest):
    hu, truth = chest()
    pipeline = Compose(
        [
            SegmentOrgansd(keys="image", output_key="organs", quality_key="organs_quality"),
            ScaleIntensityRanged(keys="image", a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True),
        ]
    )
    out = pipeline({"image": _image(hu)})
    organs = out["organs"]
    assert isinstance(organs, MetaTensor) and tuple(organs.shape) == (1, *hu.shape)
    assert torch.equal(organs.affine, out["image"].affine)
    assert out["organs_quality"]["ok"], out["organs_quality"]
    seg = organs[0].numpy()
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}
    assert float(out["image"].max()) <= 1.0  # the image itself was scaled afterwards


def test_segment_organsd_after_intensity_scaling_is_flagged():
    hu = np.random.default_rng(0).uniform(0.0, 1.0, (32, 32, 16)).astype(np.float32)
    out = SegmentOrgansd(keys="image", output_key="organs", quality_key="q")({"image": _image(hu)})
    assert not out["q"]["ok"]
    assert "scal" in out["q"]["reasons"][0]


def test_segment_organsd_reads_spacing_from_the_affine(chest):
    hu, _ = chest()
    # the same voxels read as 1 mm voxels: about 25 mL of lung in total is implausible -> flagged
    tiny = SegmentOrgansd(keys="image", quality_key="q")({"image": _image(hu, spacing=1.0)})
    normal = SegmentOrgansd(keys="image", quality_key="q")({"image": _image(hu, spacing=5.0)})
    assert normal["q"]["ok"] and not tiny["q"]["ok"]


def test_cli_writes_organs_in_scan_geometry_and_skips_a_corrupt_file(chest, tmp_path, capsys):
    hu, truth = chest()
    affine = np.diag([-5.0, -5.0, 5.0, 1.0])  # LPS voxel order, as DICOM-derived NIfTI often are
    affine[:3, 3] = [100.0, 80.0, -50.0]
    good = tmp_path / "scan_a.nii.gz"
    nib.save(nib.Nifti1Image(hu[::-1, ::-1].astype(np.int16), affine), str(good))
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    rc = main([str(good), str(bad), "--out", str(out), "--no-progress"])
    assert rc == 1
    written = nib.load(str(out / "scan_a_organs.nii.gz"))
    np.testing.assert_allclose(written.affine, affine)
    organs = np.asarray(written.dataobj)
    assert organs.shape == hu.shape and organs.dtype == np.uint8
    # back in RAS order, the right lung (label 1) is the phantom's right lung
    ras = organs[::-1, ::-1]
    assert (ras[truth == 1] == 1).mean() > 0.9 and (ras[truth == 3] == 3).mean() > 0.9
    quality = json.loads((out / "scan_a_organs.json").read_text())
    assert quality["ok"] is True and quality["reasons"] == []
    summary = json.loads((out / "segment_summary.json").read_text())
    assert [f["input"] for f in summary["failed"]] == [str(bad)]
    assert not (out / "broken_organs.nii.gz").exists()
    assert "broken.nii.gz" in capsys.readouterr().err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_all_good_inputs_exit_zero(chest, tmp_path):
    hu, _ = chest()
    path = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(hu.astype(np.int16), np.diag([5.0, 5.0, 5.0, 1.0])), str(path))
    assert main([str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert (tmp_path / "o" / "one_organs.nii.gz").exists()


def test_scan_name_strips_image_suffixes_and_keeps_folder_names():
    assert scan_name("/a/b/ct.nii.gz") == "ct"
    assert scan_name("/a/b/ct-64.nrrd") == "ct-64"
    assert scan_name("/a/dicom_series/") == "dicom_series"
