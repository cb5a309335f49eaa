"""Bad CT volumes through the real preprocessing: every fault raises an ``InputError`` that names the file and the
problem (never a reader's traceback from deep inside nibabel, ITK or NumPy), and good edge cases still load."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.transforms.preprocessing import ct_preprocessing
from hirescam_ext.utils.errors import InputError

SHAPE = (24, 24, 12)


def _phantom() -> np.ndarray:
    """A small chest-like int16 volume in HU: air, a body ellipse, two lungs."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    vol = np.full(SHAPE, -1000, np.int16)
    vol[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = 40
    vol[((x - 0.4) / 0.3) ** 2 + (y / 0.4) ** 2 < 1] = -850
    vol[((x + 0.4) / 0.3) ** 2 + (y / 0.4) ** 2 < 1] = -850
    return vol + (z * 10).astype(np.int16)


def _save(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 2.5, 1.0])), path)
    return path


def _preprocess(path: Path | str):
    pre = ct_preprocessing(spacing=None, spatial_size=(32, 32, 24), label_map_keys=[])
    return pre({"image": str(path)})


def input_error_of(path: Path | str) -> InputError:
    """The ``InputError`` raised (possibly wrapped by MONAI's ``Compose``) when preprocessing ``path``."""
    with pytest.raises(Exception) as info:
        _preprocess(path)
    current: BaseException | None = info.value
    while current is not None:
        if isinstance(current, InputError):
            return current
        current = current.__cause__ or current.__context__
    raise AssertionError(f"no InputError in the chain of {info.value!r}")


# ---------------------------------------------------------------- broken files (name -> builder, expected words)
def _truncated_nifti(tmp: Path) -> Path:
    good = _save(tmp / "good.nii.gz", _phantom())
    data = good.read_bytes()
    (tmp / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.nii.gz"


def _garbage_nifti(tmp: Path) -> Path:
    (tmp / "garbage.nii.gz").write_bytes(b"\x1f\x8b this is not a gzip stream at all")
    return tmp / "garbage.nii.gz"


def _uncompressed_truncated_nifti(tmp: Path) -> Path:
    good = _save(tmp / "good.nii", _phantom())
    data = good.read_bytes()
    (tmp / "cut.nii").write_bytes(data[:400])
    return tmp / "cut.nii"


def _truncated_nrrd(tmp: Path) -> Path:
    import itk

    good = tmp / "good.nrrd"
    itk.imwrite(itk.image_from_array(_phantom().T.copy()), str(good))
    data = good.read_bytes()
    (tmp / "truncated.nrrd").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.nrrd"


def _bad_header_nrrd(tmp: Path) -> Path:
    (tmp / "header.nrrd").write_bytes(b"NRRD0004\ntype: nonsense\ndimension: banana\n\n" + bytes(100))
    return tmp / "header.nrrd"


def _truncated_npz(tmp: Path) -> Path:
    np.savez_compressed(tmp / "good.npz", ct=_phantom().transpose(2, 1, 0))
    data = (tmp / "good.npz").read_bytes()
    (tmp / "truncated.npz").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.npz"


def _npz_without_ct(tmp: Path) -> Path:
    np.savez(tmp / "other.npz", volume=_phantom())
    return tmp / "other.npz"


def _empty_file(tmp: Path) -> Path:
    (tmp / "empty.nii.gz").write_bytes(b"")
    return tmp / "empty.nii.gz"


def _missing_file(tmp: Path) -> Path:
    return tmp / "missing.nii.gz"


def _empty_folder(tmp: Path) -> Path:
    (tmp / "no_dicom").mkdir()
    (tmp / "no_dicom" / "notes.txt").write_text("not an image")
    return tmp / "no_dicom"


def _nan_voxels(tmp: Path) -> Path:
    vol = _phantom().astype(np.float32)
    vol[3:5, 3:5, 3:5] = np.nan
    return _save(tmp / "nan.nii.gz", vol)


def _inf_voxels(tmp: Path) -> Path:
    vol = _phantom().astype(np.float32)
    vol[0, 0, 0] = np.inf
    return _save(tmp / "inf.nii.gz", vol)


def _constant(tmp: Path) -> Path:
    return _save(tmp / "constant.nii.gz", np.full(SHAPE, -1000, np.int16))


def _mr_like(tmp: Path) -> Path:
    return _save(tmp / "mr.nii.gz", ((_phantom().astype(np.float32) + 1024) * 1.7).astype(np.float32))


def _eight_bit(tmp: Path) -> Path:
    return _save(tmp / "u8.nii.gz", ((_phantom().astype(np.float32) + 1024) / 8).clip(0, 255).astype(np.uint8))


def _normalized(tmp: Path) -> Path:
    return _save(tmp / "normalized.nii.gz", ((_phantom().astype(np.float32) + 1000) / 1040).astype(np.float32))


def _two_d(tmp: Path) -> Path:
    return _save(tmp / "slice2d.nii.gz", _phantom()[:, :, 5].copy())


def _four_d(tmp: Path) -> Path:
    return _save(tmp / "series4d.nii.gz", np.stack([_phantom(), _phantom()], -1))


def _too_small(tmp: Path) -> Path:
    return _save(tmp / "small.nii.gz", _phantom()[:, :, :2].copy())


FAULTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated .nii.gz": (_truncated_nifti, "cannot read the image"),
    "garbage .nii.gz": (_garbage_nifti, "cannot read the image"),
    "truncated .nii": (_uncompressed_truncated_nifti, "cannot read the image"),
    "truncated .nrrd": (_truncated_nrrd, "cannot read the image"),
    "bad .nrrd header": (_bad_header_nrrd, "cannot read the image"),
    "truncated .npz": (_truncated_npz, "cannot read the image"),
    ".npz without ct array": (_npz_without_ct, "no array under key 'ct'"),
    "empty file": (_empty_file, "empty file"),
    "missing file": (_missing_file, "not found"),
    "folder without DICOM": (_empty_folder, "no DICOM files"),
    "NaN voxels": (_nan_voxels, "NaN or infinite"),
    "infinite voxel": (_inf_voxels, "NaN or infinite"),
    "constant volume": (_constant, "same value"),
    "MR-like intensities": (_mr_like, "not a CT in Hounsfield units"),
    "8-bit image": (_eight_bit, "8-bit"),
    "normalized [0, 1] volume": (_normalized, "not a CT in Hounsfield units"),
    "2D image": (_two_d, "2D image"),
    "4D image": (_four_d, "several volumes"),
    "field of view too small": (_too_small, "field of view too small"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_volume_raises_input_error_naming_file_and_problem(fault: str, tmp_path: Path) -> None:
    build, expected = FAULTS[fault]
    path = build(tmp_path)
    err = input_error_of(path)
    assert err.path == str(path)
    assert str(err).startswith(str(path))
    assert expected in err.problem, err.problem
    assert "Traceback" not in str(err) and ".cxx" not in str(err)


def test_padding_below_minus_1024_is_clipped_not_rejected(tmp_path: Path) -> None:
    vol = _phantom()
    vol[:2] = -2048  # scanner padding outside the field of view
    out = _preprocess(_save(tmp_path / "padded.nii.gz", vol))["image"]
    assert float(out.min()) == pytest.approx(-0.449, abs=1e-5)  # -1000 HU and below map to the scaled minimum


def test_input_file_is_never_modified(tmp_path: Path) -> None:
    path = _save(tmp_path / "scan.nii.gz", _phantom())
    before = path.read_bytes()
    _preprocess(path)
    bad = _nan_voxels(tmp_path)
    bad_before = bad.read_bytes()
    input_error_of(bad)
    assert path.read_bytes() == before and bad.read_bytes() == bad_before


# ---------------------------------------------------------------- DICOM series faults (copies of shared data)
@pytest.fixture(scope="module")
def ct64_dicom(shared_datasets: Path) -> Path:
    folder = shared_datasets / "cip-copdgene-chestct" / "ct-64Dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="module")
def lidc_slices(shared_datasets: Path) -> Path:
    folder = shared_datasets / "lungmask-lidc-slices"
    if not (folder / "0.dcm").is_file():
        pytest.skip(f"{folder} not found")
    return folder


def _patch(path: Path, old: bytes, new: bytes) -> None:
    """Replace a DICOM value by another of the same length (keeps every element length valid)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 1, f"{old!r} not unique in {path}"
    path.write_bytes(data.replace(old, new))


def _copy_series(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.md", "LICENSE", "*.txt"))
    return dst


def test_clean_dicom_series_loads(ct64_dicom: Path, tmp_path: Path) -> None:
    out = _preprocess(_copy_series(ct64_dicom, tmp_path / "series"))["image"]
    assert tuple(out.shape) == (1, 32, 32, 24)


def test_dicom_series_with_a_missing_slice(ct64_dicom: Path, tmp_path: Path) -> None:
    folder = _copy_series(ct64_dicom, tmp_path / "series")
    (folder / "IMG0040.dcm").unlink()
    err = input_error_of(folder)
    assert err.path == str(folder)
    assert "uneven slice spacing" in err.problem and "IMG0039.dcm" in err.problem and "IMG0041.dcm" in err.problem


def test_dicom_series_with_a_duplicated_slice(ct64_dicom: Path, tmp_path: Path) -> None:
    folder = _copy_series(ct64_dicom, tmp_path / "series")
    shutil.copy(folder / "IMG0040.dcm", folder / "IMG0040_copy.dcm")
    err = input_error_of(folder)
    assert "duplicated slice" in err.problem and "IMG0040_copy.dcm" in err.problem


def test_dicom_folder_with_two_series(ct64_dicom: Path, lidc_slices: Path, tmp_path: Path) -> None:
    folder = _copy_series(ct64_dicom, tmp_path / "series")
    shutil.copy(lidc_slices / "0.dcm", folder / "other_series.dcm")
    err = input_error_of(folder)
    assert "holds 2 DICOM series" in err.problem and "(79 files)" in err.problem


def test_dicom_series_with_inconsistent_spacing(ct64_dicom: Path, tmp_path: Path) -> None:
    folder = _copy_series(ct64_dicom, tmp_path / "series")
    _patch(folder / "IMG0040.dcm", b"\\-204.75 ", b"\\-203.75 ")  # one slice moved by 1 mm
    err = input_error_of(folder)
    assert "uneven slice spacing" in err.problem


def test_dicom_series_with_inconsistent_orientation(ct64_dicom: Path, tmp_path: Path) -> None:
    folder = _copy_series(ct64_dicom, tmp_path / "series")
    _patch(folder / "IMG0040.dcm", b"1\\0\\0\\0\\1\\0 ", b"0\\1\\0\\1\\0\\0 ")
    err = input_error_of(folder)
    assert err.path == str(folder / "IMG0040.dcm")
    assert "inconsistent orientation" in err.problem


def test_dicom_series_of_an_mr(ct64_dicom: Path, tmp_path: Path) -> None:
    folder = _copy_series(ct64_dicom, tmp_path / "series")
    _patch(folder / "IMG0001.dcm", b"\x08\x00\x60\x00\x02\x00\x00\x00CT", b"\x08\x00\x60\x00\x02\x00\x00\x00MR")
    err = input_error_of(folder)
    assert err.path == str(folder / "IMG0001.dcm") and "Modality is MR, not CT" in err.problem


def test_dicom_without_modality_and_minus_2048_padding_loads(lidc_slices: Path, tmp_path: Path) -> None:
    """Stripped LIDC slices (no Modality tag, -2048 outside the field of view) are a CT: accepted, padding clipped."""
    folder = tmp_path / "lidc"
    folder.mkdir()
    shutil.copy(lidc_slices / "0.dcm", folder / "0.dcm")
    shutil.copy(lidc_slices / "1.dcm", folder / "1.dcm")
    shutil.copy(lidc_slices / "1.dcm", folder / "2.dcm")
    _patch(folder / "2.dcm", b"0.0\\0.0\\1.0 ", b"0.0\\0.0\\2.0 ")  # a third slice 1 mm further
    out = _preprocess(folder)["image"]
    assert tuple(out.shape) == (1, 32, 32, 24)
    assert float(out.min()) == pytest.approx(-0.449, abs=1e-5)


def test_two_slice_dicom_is_too_small_for_the_preprocessing(lidc_slices: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lidc"
    folder.mkdir()
    for name in ("0.dcm", "1.dcm"):
        shutil.copy(lidc_slices / name, folder / name)
    err = input_error_of(folder)
    assert "field of view too small" in err.problem


def test_shared_dicom_files_are_not_modified(lidc_slices: Path, ct64_dicom: Path) -> None:
    """Every test above works on copies: the shared files keep their published sizes."""
    assert (lidc_slices / "0.dcm").stat().st_size == 525198
    assert len(list(ct64_dicom.glob("*.dcm"))) == 79


def test_real_ct_volumes_pass_and_label_maps_fail_the_ct_checks(shared_datasets: Path) -> None:
    """No false alarm on the shared real CTs; their label maps are not taken for CTs."""
    from hirescam_ext.utils.ct_checks import load_ct

    cip, totalseg = shared_datasets / "cip-copdgene-chestct", shared_datasets / "totalseg-ct-examples"
    for ct in (cip / "ct-64.nrrd", cip / "ct-64Dicom", totalseg / "ct_cropped.nii.gz", totalseg / "example_ct.nii.gz"):
        if ct.exists():
            assert load_ct(ct).ndim == 3
    for label_map in (cip / "lm-64.nrrd", cip / "wholeLung-64.nrrd", totalseg / "heart.nii.gz"):
        if label_map.exists():
            with pytest.raises(InputError, match="Hounsfield|8-bit"):
                load_ct(label_map)
    slab = cip / "crop_ct_2slices.nrrd"
    if slab.exists():
        with pytest.raises(InputError, match="field of view too small"):
            load_ct(slab)
        assert tuple(load_ct(slab, min_voxels=1).shape) == (443, 349, 2)  # organ segmentation accepts thin slabs
