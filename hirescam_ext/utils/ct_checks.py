"""Checked CT loading: bad scans fail early with an :class:`~hirescam_ext.utils.errors.InputError` naming the file.

HiResCAM (Draelos & Carin, arXiv:2011.08891) is trained and explained on chest CT volumes in Hounsfield units.
Readers deep inside nibabel, ITK or NumPy fail on broken files with messages that name neither the scan nor the
problem, and several faults load without any error at all (a DICOM folder with a missing slice, two series, a NaN
or blank volume, an MR). This module checks a scan before and after reading it:

- :func:`check_ct_source`: the path exists and is not empty; a DICOM folder holds exactly one series with one
  orientation, one image size, unique and evenly spaced slice positions and no Modality other than CT.
- :func:`check_ct_array`: the loaded image is one 3D volume (not 2D, not several volumes) large enough for the
  preprocessing, finite, not constant and, for CT keys, in Hounsfield units (air below -500 HU, not 8-bit).
- :func:`check_ct_spacing`: the voxel spacing read from the header is plausible for a CT: a warning (file and
  spacing) outside :data:`PLAUSIBLE_SPACING_MM`, an ``InputError`` above :data:`MAX_SPACING_MM` (a header in the
  wrong unit, e.g. 104 mm, would be resampled into a few voxels and explained as if it were a chest).
- :class:`LoadCTd`: ``LoadImaged`` that picks one reader by suffix, runs both checks and turns every reader
  failure into an ``InputError`` such as ``scan.nii.gz: cannot read the image (file is truncated: ...)``.

Example:
    >>> from hirescam_ext.utils.ct_checks import LoadCTd
    >>> load = LoadCTd("image", ensure_channel_first=True)
    >>> load({"image": "missing.nii.gz"})  # doctest: +SKIP
    InputError: missing.nii.gz: file not found
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import LoadImaged

from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import is_dicom_file

__all__ = [
    "DicomSlice",
    "LoadCTd",
    "check_ct_array",
    "check_ct_source",
    "check_ct_spacing",
    "check_dicom_series",
    "load_ct",
    "read_error_reason",
    "voxel_spacing",
]

logger = logging.getLogger(__name__)

#: a chest CT always holds air (about -1000 HU) outside the body and in the lungs
AIR_BELOW_HU = -500.0
#: AxialNet groups axial slices in triplets: fewer than 3 voxels along an axis cannot be processed
MIN_VOXELS_PER_AXIS = 3
#: voxel spacings (mm) of real CT scans: outside this range a scan loads with a warning naming the file and spacing
PLAUSIBLE_SPACING_MM = (0.1, 20.0)
#: voxel spacing (mm) above which a scan is refused: no CT has voxels this large, the header is wrong
MAX_SPACING_MM = 50.0


class DicomSlice:
    """The header fields of one DICOM file that decide whether a folder is one clean series."""

    def __init__(self, path: Path, tags: dict[str, str | None]) -> None:
        self.path = path
        self.series = (tags.get("0020|000e") or "").strip() or None
        self.modality = (tags.get("0008|0060") or "").strip().upper() or None
        self.size = ((tags.get("0028|0010") or "").strip(), (tags.get("0028|0011") or "").strip())
        self.orientation = _floats(tags.get("0020|0037"), 6, path, "ImageOrientationPatient")
        self.position = _floats(tags.get("0020|0032"), 3, path, "ImagePositionPatient")


def _floats(text: str | None, n: int, path: Path, name: str) -> np.ndarray | None:
    if text is None or not text.strip():
        return None
    try:
        values = np.array([float(v) for v in text.strip().split("\\")], dtype=np.float64)
    except ValueError as exc:
        raise InputError(path, f"DICOM {name} is not numeric ({text.strip()!r})") from exc
    if values.size != n or not np.isfinite(values).all():
        raise InputError(path, f"DICOM {name} must hold {n} finite numbers, got {text.strip()!r}")
    return values


_TAGS = ("0020|000e", "0008|0060", "0028|0010", "0028|0011", "0020|0037", "0020|0032")


def _read_dicom_header(path: Path) -> DicomSlice:
    import itk

    io = itk.GDCMImageIO.New()
    io.SetFileName(str(path))
    try:
        io.ReadImageInformation()
    except Exception as exc:  # noqa: BLE001 - ITK raises bare RuntimeErrors
        raise InputError(path, f"not a readable DICOM file ({read_error_reason(exc)})") from exc
    meta = io.GetMetaDataDictionary()
    return DicomSlice(path, {k: (str(meta[k]) if meta.HasKey(k) else None) for k in _TAGS})


def check_dicom_series(folder: str | os.PathLike, spacing_tolerance: float = 0.1) -> list[DicomSlice]:
    """Check that ``folder`` holds one clean DICOM series; return its slices sorted along the slice normal.

    Raises ``InputError`` (naming the folder or the offending file) for: no DICOM file, several series, a Modality
    other than CT, differing image sizes or orientations, two slices at the same position (duplicated file) and
    uneven slice spacing (a missing slice, or mixed acquisitions): a gap more than ``spacing_tolerance`` (relative)
    away from the median. A missing Modality tag only logs a warning (stripped exports are common); the intensity
    check of :func:`check_ct_array` then decides.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))
    if not files:
        raise InputError(folder, "no DICOM files in this folder")
    slices = [_read_dicom_header(p) for p in files]
    series: dict[str | None, int] = {}
    for s in slices:
        series[s.series] = series.get(s.series, 0) + 1
    if len(series) > 1:
        listed = ", ".join(f"{uid or '<no SeriesInstanceUID>'} ({n} files)" for uid, n in series.items())
        raise InputError(folder, f"holds {len(series)} DICOM series ({listed}); put each series in its own folder")
    wrong = [s for s in slices if s.modality not in (None, "CT")]
    if wrong:
        raise InputError(wrong[0].path, f"DICOM Modality is {wrong[0].modality}, not CT")
    if any(s.modality is None for s in slices):
        logger.warning("%s: DICOM files without a Modality tag; assuming CT (intensities are checked)", folder)
    sizes = {s.size for s in slices}
    if len(sizes) > 1:
        odd = next(s for s in slices if s.size != slices[0].size)
        raise InputError(odd.path, f"image size {odd.size} differs from {slices[0].size} of {slices[0].path.name}")
    orient = [s for s in slices if s.orientation is not None]
    for s in orient[1:]:
        if not np.allclose(s.orientation, orient[0].orientation, atol=1e-3):
            raise InputError(
                s.path,
                f"slice orientation {s.orientation.round(4).tolist()} differs from "
                f"{orient[0].orientation.round(4).tolist()} of {orient[0].path.name} (inconsistent orientation)",
            )
    placed = [s for s in slices if s.position is not None]
    if len(placed) < len(slices):
        missing = next(s for s in slices if s.position is None)
        raise InputError(missing.path, "DICOM file has no ImagePositionPatient (cannot order the slices)")
    if len(placed) < 2 or not orient:
        return placed
    row, col = orient[0].orientation[:3], orient[0].orientation[3:]
    normal = np.cross(row, col)
    placed.sort(key=lambda s: float(np.dot(s.position, normal)))
    z = np.array([float(np.dot(s.position, normal)) for s in placed])
    gaps = np.diff(z)
    dup = np.flatnonzero(gaps < 1e-3)
    if dup.size:
        a, b = placed[dup[0]], placed[dup[0] + 1]
        raise InputError(
            folder, f"duplicated slice: {a.path.name} and {b.path.name} are both at position {z[dup[0]]:.3f} mm"
        )
    if gaps.size >= 2:
        median = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - median) > spacing_tolerance * median)
        if bad.size:
            i = int(bad[0])
            raise InputError(
                folder,
                f"uneven slice spacing: {gaps[i]:.3f} mm between {placed[i].path.name} and {placed[i + 1].path.name}"
                f" (median {median:.3f} mm); a slice is missing or the folder mixes acquisitions",
            )
    return placed


def check_ct_source(path: str | os.PathLike) -> None:
    """Check a scan path before reading it: it exists, a file is not empty, a DICOM folder is one clean series."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        check_dicom_series(p)
    elif p.stat().st_size == 0:
        raise InputError(p, "empty file (0 bytes)")


def check_ct_array(
    image: torch.Tensor | np.ndarray,
    path: str | os.PathLike | None,
    hounsfield: bool = True,
    channel_first: bool = True,
    min_voxels: int = MIN_VOXELS_PER_AXIS,
    check_values: bool = True,
) -> None:
    """Check a loaded image: one 3D volume, big enough, finite, not constant and (``hounsfield``) CT in HU.

    Args:
        image: ``[C, X, Y, Z]`` when ``channel_first`` (``C`` must be 1), else ``[X, Y, Z]``.
        path: the file, named in the error.
        hounsfield: also require CT intensities (a CT image key; ``False`` for label maps).
        channel_first: whether ``image`` has a leading channel axis.
        min_voxels: minimum size along each spatial axis (AxialNet needs 3 axial slices for one triplet).
        check_values: check the voxel values (finite, not constant, HU); ``False`` checks the shape only.

    Raises:
        InputError: naming ``path`` and the problem.
    """
    shape = tuple(int(s) for s in image.shape)
    spatial = shape[1:] if channel_first else shape
    if len(spatial) < 3:
        raise InputError(path, f"a 2D image (shape {shape}); a CT volume must be 3D")
    if len(spatial) > 3 or (channel_first and shape[0] != 1):
        raise InputError(path, f"holds several volumes (shape {shape}: 4D or multi-channel); expected one 3D CT")
    if min(spatial) < min_voxels:
        raise InputError(
            path,
            f"field of view too small for the preprocessing: {spatial} voxels, at least {min_voxels} needed along "
            "each axis",
        )
    if not check_values:
        return
    t = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image)
    if hasattr(t, "as_tensor"):
        t = t.as_tensor()
    if t.is_floating_point():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            n_bad = int((~finite).sum())
            raise InputError(path, f"{n_bad} of {t.numel()} voxels are NaN or infinite")
    low, high = (float(v) for v in torch.aminmax(t.reshape(-1).to(torch.float32) if t.dtype == torch.bool else t))
    if low == high:
        raise InputError(path, f"every voxel has the same value ({low:g}): a blank volume")
    if not hounsfield:
        return
    if t.dtype in (torch.uint8, torch.int8, torch.bool):
        raise InputError(path, f"an 8-bit image ({t.dtype}, values {low:g}..{high:g}), not a CT in Hounsfield units")
    if low > AIR_BELOW_HU:
        raise InputError(
            path,
            f"not a CT in Hounsfield units: no voxel below {AIR_BELOW_HU:g} (values {low:g}..{high:g}); an MR, an "
            "8-bit or normalized image, or stored values without the DICOM rescale?",
        )
    if low < -1100:
        logger.info("%s: padding values down to %g HU (clipped by the HU window)", path, low)


def voxel_spacing(image: Any) -> np.ndarray | None:
    """The voxel spacing (mm per spatial axis) of a loaded image: the column norms of its affine; ``None`` without
    one (a plain array)."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 4 or a.shape[1] < 4:
        return None
    return np.linalg.norm(a[:3, :3], axis=0)


def check_ct_spacing(
    image: Any,
    path: str | os.PathLike | None,
    plausible: tuple[float, float] = PLAUSIBLE_SPACING_MM,
    max_spacing: float = MAX_SPACING_MM,
) -> np.ndarray | None:
    """Check the voxel spacing of a loaded CT (from its affine); return it (``None`` when the image has no affine).

    A spacing outside ``plausible`` (mm, along any axis) logs a warning naming the file and the spacing: the scan is
    still processed (resampling makes it the training spacing), but its header is probably wrong.

    Raises:
        InputError: naming ``path`` when a spacing is not finite, zero, or above ``max_spacing`` mm.

    Example:
        >>> from monai.data import MetaTensor
        >>> check_ct_spacing(MetaTensor(torch.zeros(1, 4, 4, 4), affine=torch.diag(torch.tensor([104.0, 1, 1, 1]))),
        ...                  "ct.nii.gz")  # doctest: +SKIP
        InputError: ct.nii.gz: implausible voxel spacing (104, 1, 1) mm: above 50 mm along an axis; ...
    """
    spacing = voxel_spacing(image)
    if spacing is None:
        return None
    shown = "(" + ", ".join(f"{v:g}" for v in spacing) + ") mm"
    if not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise InputError(path, f"invalid voxel spacing {shown}: the image header has no usable geometry")
    if (spacing > max_spacing).any():
        raise InputError(
            path,
            f"implausible voxel spacing {shown}: above {max_spacing:g} mm along an axis; no CT has voxels this large "
            "(a header in the wrong unit?), fix the header's spacing",
        )
    low, high = plausible
    if (spacing < low).any() or (spacing > high).any():
        logger.warning(
            "%s: unusual voxel spacing %s (CT scans have %g to %g mm); check the image header", path, shown, low, high
        )
    return spacing


_ITK_NOISE = re.compile(r"^(/\S+\.(cxx|h|hxx):\d+:|ITK ERROR: |Description: )|\(0x[0-9a-f]+\)")


def read_error_reason(exc: BaseException) -> str:
    """One line saying why a reader failed: the innermost exception, with ITK source paths and addresses removed."""
    inner = exc
    while inner.__cause__ is not None or (inner.__context__ is not None and not inner.__suppress_context__):
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    lines = []
    for raw in str(inner).splitlines():
        line = _ITK_NOISE.sub("", raw.strip()).strip()
        if line and not line.startswith("Traceback") and line not in lines:
            lines.append(line)
    text = " ".join(lines) or type(inner).__name__
    return f"{type(inner).__name__}: {text[:300]}"


class LoadCTd(LoadImaged):
    """``LoadImaged`` whose failures and suspicious images raise :class:`InputError` naming the file.

    One reader is chosen per file (the last registered one made for its suffix, else the last catch-all such as
    ITK), so a corrupt file reports that reader's error in one line instead of MONAI's list of every reader tried,
    and never loads half through a more lenient second reader. Before reading,
    :func:`check_ct_source` runs (missing or empty files, DICOM folder faults); after it, :func:`check_ct_array`
    (``hounsfield=True`` for CT keys, ``False`` for label maps), and for CT keys :func:`check_ct_spacing`.

    Args:
        keys: keys holding paths.
        hounsfield: require CT intensities in HU (CT keys) or only a valid 3D volume (label maps).
        min_voxels: minimum spatial size along every axis.
        check_values: check the voxel values (``False``: readability, DICOM series and shape only).
        kwargs: ``LoadImaged`` arguments (``reader``, ``ensure_channel_first``, ``dtype``...); ``image_only`` is
            forced to ``True``.

    Example:
        >>> load = LoadCTd("image", ensure_channel_first=True, dtype=None)
        >>> item = load({"image": "ct.nii.gz"})  # doctest: +SKIP
    """

    def __init__(
        self,
        keys: Any,
        *args: Any,
        hounsfield: bool = True,
        min_voxels: int = MIN_VOXELS_PER_AXIS,
        check_values: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs["image_only"] = True
        super().__init__(keys, *args, **kwargs)
        self.hounsfield = hounsfield
        self.min_voxels = min_voxels
        self.check_values = check_values

    def _readers_for(self, source: Any) -> list[Any]:
        """The one registered reader for ``source``: the last registered that accepts its suffix, preferring readers
        made for that suffix over catch-all ones (ITK accepts any name). No fallback to a second reader: ITK reads
        a truncated ``.nii.gz`` without complaint, so a failure of the right reader must stay a failure."""
        if not isinstance(source, (str, os.PathLike)):
            return [None]
        name = os.fspath(source)

        def accepts(reader: Any, filename: str) -> bool:
            try:
                return bool(reader.verify_suffix(filename))
            except Exception:  # noqa: BLE001 - a reader that cannot even judge the suffix is skipped
                return False

        matching = [r for r in reversed(self._loader.readers) if accepts(r, name)]
        specific = [r for r in matching if not accepts(r, "no_such_file.__no_such_suffix__")]
        return (specific + matching)[:1] or [None]

    def _read(self, source: Any, reader: Any) -> Any:
        chosen = reader if reader is not None else self._readers_for(source)[0]
        try:
            return self._loader(source, chosen)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - every reader failure becomes a clear InputError
            named = source if isinstance(source, (str, os.PathLike)) else None
            raise InputError(named, f"cannot read the image ({read_error_reason(exc)})") from exc

    def __call__(self, data: Any, reader: Any = None) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            source = d[key]
            named = isinstance(source, (str, os.PathLike))
            if named:
                check_ct_source(source)
            image = self._read(source, reader)
            check_ct_array(
                image,
                source if named else None,
                hounsfield=self.hounsfield,
                channel_first=bool(self._loader.ensure_channel_first),
                min_voxels=self.min_voxels,
                check_values=self.check_values,
            )
            if self.hounsfield:
                check_ct_spacing(image, source if named else None)
            d[key] = image
        return d


def load_ct(
    path: str | os.PathLike,
    hounsfield: bool = True,
    check_values: bool = True,
    channel_first: bool = False,
    min_voxels: int = MIN_VOXELS_PER_AXIS,
) -> Any:
    """Load one scan (file or DICOM folder) with the project's CT readers and every check of :class:`LoadCTd`.

    ``min_voxels=1`` accepts thin slabs (organ segmentation works on any 3D volume; AxialNet needs 3 slices).

    Returns:
        a ``MetaTensor`` ``[X, Y, Z]`` (``[1, X, Y, Z]`` with ``channel_first``) carrying the affine.

    Raises:
        InputError: naming ``path`` and the problem.

    Example:
        >>> volume = load_ct("scan.nii.gz")  # doctest: +SKIP
    """
    from hirescam_ext.transforms.loading import default_ct_readers

    loader = LoadCTd(
        "image",
        ensure_channel_first=True,
        dtype=None,
        hounsfield=hounsfield,
        check_values=check_values,
        min_voxels=min_voxels,
    )
    for reader in default_ct_readers():
        loader.register(reader)
    image = loader({"image": os.fspath(path)})["image"]
    return image if channel_first else image[0]
