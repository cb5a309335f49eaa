"""Unsupervised organ segmentation of chest CT (right lung, left lung, heart/mediastinum) from HU alone.

The organ maps of Draelos & Carin (HiResCAM, arXiv:2011.08891) define the *allowed regions* of the mask loss and
of OrganIoU. The paper's method (threshold -300 HU per slice, clear border objects, two largest regions, left/right
by the array midline, heart = the lungs' bounding box narrowed by fixed fractions) is replaced here by the steps of
:mod:`hirescam_ext.segmentation.lungs` and :mod:`hirescam_ext.segmentation.mediastinum`, with explicit quality
flags.

Input contract: ``volume_hu`` is ``[X, Y, Z]`` in **RAS index order** (axis 0 grows toward the patient's right,
axis 1 toward anterior, axis 2 toward superior), in Hounsfield units, *before* any intensity scaling. Pass
``affine`` instead to have any axis-aligned orientation reoriented to RAS and back (nibabel conventions); without
an affine, RAS order is assumed. Output labels follow ``hirescam_ext.labels.ORGAN_LABELS``: 0 background,
1 right lung, 2 heart/mediastinum, 3 left lung.

Fine scans are processed on a working grid of about ``working_spacing`` mm (integer block mean) and the lung
borders are re-decided on the scan grid within one working voxel of the coarse border.

Every result carries ``ok``; when a sanity check fails, ``reasons`` says which, ``fallback`` names the explicit
substitute that was used, and the same text is logged (``logging``, logger ``hirescam_ext.segmentation``).

Example:
    >>> import numpy as np
    >>> from hirescam_ext.segmentation import segment_organs
    >>> seg = segment_organs(np.full((32, 32, 16), -1000.0), spacing=(5.0, 5.0, 5.0))
    >>> seg.ok, seg.reasons[0].startswith("constant image")
    (False, True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from hirescam_ext.segmentation.grid import block_factors, block_mean, repeat_back
from hirescam_ext.segmentation.lungs import segment_lungs
from hirescam_ext.segmentation.mediastinum import mediastinum_region
from hirescam_ext.utils.errors import InputError

__all__ = ["OrganSegmentation", "segment_organs", "RIGHT_LUNG", "HEART_MEDIASTINUM", "LEFT_LUNG"]

logger = logging.getLogger("hirescam_ext.segmentation")

RIGHT_LUNG, HEART_MEDIASTINUM, LEFT_LUNG = 1, 2, 3

#: sanity limits (mL) for the total lung volume of a whole-chest scan (not applied to partial fields of view)
TOTAL_LUNG_ML = (700.0, 12000.0)
#: smallest accepted smaller/larger lung volume ratio
MIN_LUNG_RATIO = 0.3
#: lungs entering at the top slice that span less than this (mm) are lung bases only (an abdominal field of view)
BASES_ONLY_MM = 80.0


@dataclass
class OrganSegmentation:
    """Result of :func:`segment_organs`.

    Attributes:
        organs: uint8 ``[X, Y, Z]`` map on the input grid (0 bg, 1 right lung, 2 heart/mediastinum, 3 left lung).
        ok: ``True`` when every sanity check passed.
        reasons: one sentence per failed sanity check (empty when ``ok``).
        fallback: the substitute used for a failed step (``"mirrored-lung hull"``, ``"empty"``) or ``None``.
        notes: informative remarks that do not fail the result (partial field of view, no trachea found...).
        volumes_ml: volume of each organ in mL.
        split: how the lungs were told apart (``"components"``, ``"erosion"``, ``"single"``, ``"none"``).
        partial_field_of_view: QC flag: a lung touches the volume border, so the scan does not hold the whole chest
            (organ volumes are then not checked against whole-chest limits, and regions of a cut organ are cut too).
    """

    organs: np.ndarray
    ok: bool
    reasons: list[str] = field(default_factory=list)
    fallback: str | None = None
    notes: list[str] = field(default_factory=list)
    volumes_ml: dict[str, float] = field(default_factory=dict)
    split: str = "none"
    partial_field_of_view: bool = False

    def quality(self) -> dict[str, Any]:
        """JSON-ready quality record (everything but the label map)."""
        return {
            "ok": self.ok,
            "reasons": list(self.reasons),
            "fallback": self.fallback,
            "notes": list(self.notes),
            "volumes_ml": dict(self.volumes_ml),
            "split": self.split,
            "partial_field_of_view": self.partial_field_of_view,
        }


def _to_ras(volume: np.ndarray, affine: np.ndarray | None) -> tuple[np.ndarray, Any, Any]:
    if affine is None:
        return volume, None, None
    import nibabel.orientations as nio

    ornt = nio.io_orientation(np.asarray(affine, dtype=float))
    ras = nio.axcodes2ornt(("R", "A", "S"))
    to_ras = nio.ornt_transform(ornt, ras)
    back = nio.ornt_transform(ras, ornt)
    return nio.apply_orientation(volume, to_ras), to_ras, back


def _apply_ornt(arr: np.ndarray, ornt: Any) -> np.ndarray:
    import nibabel.orientations as nio

    return np.ascontiguousarray(nio.apply_orientation(arr, ornt))


def _spacing_of(affine: np.ndarray, to_ras: Any) -> tuple[float, float, float]:
    sp = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    if to_ras is not None:
        sp = sp[[int(np.flatnonzero(to_ras[:, 0] == k)[0]) for k in range(3)]]
    return tuple(float(s) for s in sp)  # type: ignore[return-value]


def _validate(volume_hu: Any) -> np.ndarray:
    arr = np.asarray(volume_hu)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise InputError(None, f"expected a 3D CT volume [X, Y, Z] (or [1, X, Y, Z]), got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise InputError(None, "the CT volume is empty")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(None, f"the CT volume must be real numbers (HU), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(None, "the CT volume contains NaN or infinite values")
    return arr


def _not_ct_reasons(arr: np.ndarray) -> list[str]:
    lo, hi = float(arr.min()), float(arr.max())
    reasons = []
    if hi - lo <= 0.0:
        reasons.append(f"constant image ({lo:g}): no anatomy to segment")
    elif lo > -500.0:
        reasons.append(
            f"no air-density voxels (minimum {lo:.0f} > -500): this does not look like CT in Hounsfield units "
            "(MR, or intensities already scaled? segment before intensity scaling)"
        )
    return reasons


def _no_body_reasons(hu_w: np.ndarray) -> list[str]:
    if float(np.count_nonzero(hu_w > -500.0)) < 1e-3 * hu_w.size:
        return ["no body: almost no voxel above -500 HU (empty field of view)"]
    return []


def _mirror_x(mask: np.ndarray, centre: float) -> np.ndarray:
    """Mirror a mask about the sagittal plane x = ``centre`` (voxel units)."""
    xs = np.arange(mask.shape[0])
    src = np.rint(2.0 * centre - xs).astype(int)
    valid = (src >= 0) & (src < mask.shape[0])
    out = np.zeros_like(mask)
    out[valid] = mask[src[valid]]
    return out


def _refine_borders(
    organs_w: np.ndarray, hu: np.ndarray, factors: Sequence[int], lung_hu: float, blocked_w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Repeat the working-grid labels back to the scan grid; re-threshold a one-voxel band around the lungs.

    Only the fine voxels of band blocks are touched (their indices are built from the coarse ones), so the cost
    scales with the lung surface, not with the scan. Also returns the change of the per-label voxel counts.
    """
    shape = hu.shape
    lungs_w = (organs_w == RIGHT_LUNG) | (organs_w == LEFT_LUNG)
    band_w = ndi.binary_dilation(lungs_w) & ~ndi.binary_erosion(lungs_w, border_value=1)
    organs = np.ascontiguousarray(repeat_back(organs_w, factors, shape))
    cb = np.nonzero(band_w)
    if cb[0].size == 0:
        return organs, np.zeros(4, np.int64)
    lung_lab_w = np.where(lungs_w, organs_w, 0).astype(np.uint8)
    near_lung = ndi.grey_dilation(lung_lab_w, size=(3, 3, 3))[cb]
    if blocked_w is not None:  # e.g. removed stomach gas: never lung, whatever its HU
        near_lung[blocked_w[cb]] = 0
    near_med = ndi.binary_dilation(organs_w == HEART_MEDIASTINUM)
    other = np.where(near_med & ~lungs_w, HEART_MEDIASTINUM, np.where(lungs_w, 0, organs_w)).astype(np.uint8)[cb]
    fx, fy, fz = (int(f) for f in factors)
    ox, oy, oz = np.meshgrid(np.arange(fx), np.arange(fy), np.arange(fz), indexing="ij")
    x = (cb[0][:, None] * fx + ox.ravel()[None]).ravel()
    y = (cb[1][:, None] * fy + oy.ravel()[None]).ravel()
    z = (cb[2][:, None] * fz + oz.ravel()[None]).ravel()
    k = ox.size
    keep = (x < shape[0]) & (y < shape[1]) & (z < shape[2])
    x, y, z = x[keep], y[keep], z[keep]
    lung_val = np.repeat(near_lung, k)[keep]
    other_val = np.repeat(other, k)[keep]
    is_lung = hu[x, y, z] < lung_hu
    current = organs[x, y, z]
    # a band voxel below the threshold joins the nearby lung; above it, it takes the nearby non-lung label
    new = np.where(is_lung & (lung_val > 0), lung_val, np.where(is_lung, current, other_val)).astype(np.uint8)
    organs[x, y, z] = new
    delta = np.bincount(new, minlength=4)[:4].astype(np.int64) - np.bincount(current, minlength=4)[:4]
    return organs, delta


def segment_organs(
    volume_hu: Any,
    spacing: Sequence[float] | None = None,
    *,
    affine: np.ndarray | None = None,
    working_spacing: float = 2.4,
    lung_hu: float = -450.0,
    airway_hu: float = -800.0,
    close_mm: float = 4.0,
    bone_hu: float = 400.0,
) -> OrganSegmentation:
    """Segment right lung, left lung and heart/mediastinum of a chest CT in HU, without training.

    Args:
        volume_hu: CT in Hounsfield units, ``[X, Y, Z]`` (or ``[1, X, Y, Z]``), RAS index order unless
            ``affine`` is given.
        spacing: voxel size (mm) along the three array axes; taken from ``affine`` when omitted (default 1 mm).
        affine: optional 4x4 voxel-to-world (RAS+) matrix; the volume is reoriented to RAS for the segmentation
            and the labels are returned in the input's axis order.
        working_spacing: target voxel size (mm) of the internal working grid (integer block reduction).
        lung_hu: air/lung threshold; the paper used -300 HU (-450 fits the lung references better, see
            docs/SEGMENTATION.md).
        airway_hu: threshold of the airway lumen used to find the trachea.
        close_mm: radius of the closing that fills vessels at the lung border.
        bone_hu: threshold of the spine search.

    Returns:
        :class:`OrganSegmentation`.

    Raises:
        InputError: the array is not a real-valued 3D volume, or holds NaN/inf values.
    """
    arr = _validate(volume_hu)
    ras, to_ras, back = _to_ras(arr, affine)
    if spacing is None:
        spacing = _spacing_of(affine, to_ras) if affine is not None else (1.0, 1.0, 1.0)
    elif to_ras is not None:
        spacing = tuple(float(spacing[int(np.flatnonzero(to_ras[:, 0] == k)[0])]) for k in range(3))
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise InputError(None, f"spacing must be three positive numbers (mm), got {spacing}")

    def finish(organs: np.ndarray) -> np.ndarray:
        return _apply_ornt(organs, back) if back is not None else organs

    bad = _not_ct_reasons(ras)
    if bad:
        for r in bad:
            logger.warning("organ segmentation failed: %s; fallback: empty label map", r)
        return OrganSegmentation(finish(np.zeros(ras.shape, np.uint8)), False, bad, "empty")

    factors = block_factors(spacing, working_spacing)
    hu_w = block_mean(ras, factors)
    bad = _no_body_reasons(hu_w)
    if bad:
        logger.warning("organ segmentation failed: %s; fallback: empty label map", bad[0])
        return OrganSegmentation(finish(np.zeros(ras.shape, np.uint8)), False, bad, "empty")
    sp_w = tuple(s * f for s, f in zip(spacing, factors))
    lungs = segment_lungs(hu_w, sp_w, lung_hu=lung_hu, airway_hu=airway_hu, close_mm=close_mm)
    reasons = list(lungs.problems)
    notes = list(lungs.notes)
    fallback = None
    right, left = lungs.right, lungs.left
    if lungs.split == "single":
        lung = right | left
        body_cx = float(ndi.center_of_mass(lungs.body)[0])
        virtual = _mirror_x(lung, body_cx) & ~lung
        r_, l_ = (right, virtual) if right.any() else (virtual, left)
        region = mediastinum_region(hu_w, r_, l_, lungs.body, sp_w, bone_hu) & ~virtual
        fallback = "mirrored-lung hull: heart/mediastinum between the lung and its mirror image about the body centre"
    elif right.any() and left.any():
        region = mediastinum_region(hu_w, right, left, lungs.body, sp_w, bone_hu)
    else:
        region = np.zeros(hu_w.shape, bool)
        fallback = "empty"
    organs_w = np.zeros(hu_w.shape, np.uint8)
    organs_w[region] = HEART_MEDIASTINUM
    organs_w[right] = RIGHT_LUNG
    organs_w[left] = LEFT_LUNG
    # voxel counts on the scan grid: working-grid counts weighted by the scan voxels each block covers
    weights = [np.minimum(f, n - np.arange(m) * f) for f, n, m in zip(factors, ras.shape, hu_w.shape)]
    w3 = weights[0][:, None, None] * weights[1][None, :, None] * weights[2][None, None, :]
    counts = np.bincount(organs_w.ravel(), weights=w3.ravel().astype(float), minlength=4)[:4]
    if any(f > 1 for f in factors):
        organs, delta = _refine_borders(organs_w, ras, factors, lung_hu, lungs.gas)
        counts = counts + delta
    else:
        organs = organs_w

    voxel_ml = float(np.prod(spacing)) / 1000.0
    vols = {
        "right_lung": float(counts[RIGHT_LUNG] * voxel_ml),
        "heart_mediastinum": float(counts[HEART_MEDIASTINUM] * voxel_ml),
        "left_lung": float(counts[LEFT_LUNG] * voxel_ml),
    }
    faces = (organs[0], organs[-1], organs[:, 0], organs[:, -1], organs[:, :, 0], organs[:, :, -1])
    partial = any(bool(((f == RIGHT_LUNG) | (f == LEFT_LUNG)).any()) for f in faces)
    if partial:
        notes.append("a lung touches the volume border: partial field of view, volume limits not applied")
    lung_any = (organs == RIGHT_LUNG) | (organs == LEFT_LUNG)
    zs = np.flatnonzero(lung_any.any(axis=(0, 1)))
    if zs.size and zs[-1] == organs.shape[2] - 1 and zs[0] > 0:
        span = float(zs[-1] - zs[0] + 1) * spacing[2]
        if span < BASES_ONLY_MM:
            reasons.append(
                f"lung bases only: the lungs run into the top slice and span {span:.0f} mm (< {BASES_ONLY_MM:.0f} mm; "
                "an abdominal field of view?): the heart/mediastinum region between the bases is mostly upper abdomen"
            )
    total = vols["right_lung"] + vols["left_lung"]
    if lungs.split != "single" and total > 0:
        if not partial and not TOTAL_LUNG_ML[0] <= total <= TOTAL_LUNG_ML[1]:
            lo, hi = TOTAL_LUNG_ML
            reasons.append(f"implausible total lung volume {total:.0f} mL (expected {lo:.0f}..{hi:.0f} mL)")
        small, large = sorted((vols["right_lung"], vols["left_lung"]))
        if large > 0 and small / large < MIN_LUNG_RATIO:
            reasons.append(f"extreme left/right lung volume ratio {small / large:.2f} (< {MIN_LUNG_RATIO})")
    if total > 0 and vols["heart_mediastinum"] == 0:
        reasons.append("empty heart/mediastinum region")
    for r in reasons:
        logger.warning("organ segmentation sanity check failed: %s", r)
    if fallback:
        logger.warning("organ segmentation fallback: %s", fallback)
    for n in notes:
        logger.info("organ segmentation: %s", n)
    return OrganSegmentation(finish(organs), not reasons, reasons, fallback, notes, vols, lungs.split, partial)
