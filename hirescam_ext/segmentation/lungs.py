"""Right and left lung masks from Hounsfield units alone (no training), on an RAS-ordered volume.

This is the lung part of the organ segmentation of Draelos & Carin (HiResCAM, arXiv:2011.08891) with its known
weaknesses fixed. The original thresholded each axial slice at -300 HU, cleared objects touching the slice border,
kept the two largest regions and told left from right by the array midline. Here:

1. **Body**: the largest 3D component of tissue (> ``body_hu``); its in-plane "between" hull is the union, per
   slice, of the voxels lying between the first and last body voxel along x and along y.
2. **Outside air**: every 3D air component (< ``lung_hu``) that lies mostly (>= half) outside that hull is
   outside the body. Nothing is cleared because it touches the volume border, so a lung cut by the top or bottom
   slice, or by the in-plane border of a crop, is kept.
3. **Trachea and main bronchi**: the dark (< ``airway_hu``) internal air is split into in-plane components; those
   with a small cross-section (<= ``max_airway_area_mm2``) are joined in 3D; the medial group that reaches the
   top of the internal air (the trachea, followed down through the carina until each main bronchus merges with
   its lung) is removed, with a one-voxel margin.
4. **Gas under the lung base**: pure-gas blobs (< -950 HU, >= 5 mL) lying mostly below the lung-density air of
   their (x, y) columns (stomach or colon gas touching a lung base at coarse resolution) are removed.
5. **Two lungs**: the two largest remaining 3D components when the second is a plausible lung (on the other side
   of the body and overlapping the first in z). When pure-gas components (a quarter or more of the voxels under
   -970 HU) outsize the lung-like ones, the two largest lung-like components are taken if they make such a pair
   (the colon of an abdominal scan does not outrank its lung bases; gassy emphysematous lungs keep their place
   when no lung-like pair exists). Otherwise the largest component is eroded (Euclidean distance threshold,
   growing) until it falls apart into two side-by-side cores, and each voxel goes to the nearer core. That cut
   follows the anterior/posterior junction lines, not the array midline. If it never splits, one lung.
   **Cut-off pieces**: other internal air of uniform lung density (median -950..-700 HU, interquartile range
   <= 150 HU, >= 1 mL, without pure gas, the gas of step 4 and their one-voxel rim), at least half of it within
   the lungs' slices, joins the lung on its side of the midline between the lungs: a recess tip under an enlarged
   heart that fills the hemithorax, cut off where it meets stomach gas.
6. **Vessels and nodules**: per lung, in-plane hole filling and a 3D closing of ``close_mm``.
7. **Sides** (RAS: axis 0 grows toward the patient's right): of two lungs the one with the larger axis-0 centroid
   is the right lung; a single lung is right when its centroid lies right of the body's centroid.

Example:
    >>> import numpy as np
    >>> from hirescam_ext.segmentation.lungs import segment_lungs
    >>> hu = np.full((40, 30, 20), 40.0, np.float32)
    >>> hu[:, :, :] = -1000; hu[4:36, 4:26, :] = 40          # body
    >>> hu[22:32, 8:22, 2:18] = -850; hu[8:18, 8:22, 2:18] = -850  # lungs
    >>> res = segment_lungs(hu, (5.0, 5.0, 5.0))
    >>> bool(res.right[27, 15, 10]), bool(res.left[12, 15, 10])
    (True, True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["LungMasks", "segment_lungs", "between_hull", "largest_component"]

logger = logging.getLogger(__name__)

_INPLANE = np.zeros((3, 3, 3), dtype=bool)
_INPLANE[:, :, 1] = ndi.generate_binary_structure(2, 1)
_BALL6 = ndi.generate_binary_structure(3, 1)


@dataclass
class LungMasks:
    """Output of :func:`segment_lungs` (all masks on the input grid).

    Attributes:
        right: right lung.
        left: left lung.
        body: in-plane hull of the body (see module docstring, step 1).
        airway: removed trachea / main bronchi.
        split: how the two lungs were told apart: ``"components"``, ``"erosion"``, ``"single"`` or ``"none"``.
        gas: removed gas under the lung base (step 4; never lung, also when borders are refined).
        problems: sanity problems found here (each makes the result not ok).
        notes: informative remarks that do not make the result fail.
    """

    right: np.ndarray
    left: np.ndarray
    body: np.ndarray
    airway: np.ndarray
    split: str = "none"
    gas: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def between_hull(mask: np.ndarray, axes: Sequence[int] = (0, 1)) -> np.ndarray:
    """Union over ``axes`` of the voxels lying between the first and last ``True`` voxel of each line.

    A vectorised stand-in for a per-slice convex hull (two cumulative ORs per axis).
    """
    out = np.zeros(mask.shape, dtype=bool)
    for axis in axes:
        fwd = np.logical_or.accumulate(mask, axis=axis)
        bwd = np.flip(np.logical_or.accumulate(np.flip(mask, axis), axis=axis), axis)
        out |= fwd & bwd
    return out


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 3D (6-connected) component of ``mask`` (a copy of ``mask`` when it is empty)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _bbox(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    return tuple(slice(max(0, int(i[0]) - margin), min(n, int(i[-1]) + 1 + margin)) for i, n in zip(idx, mask.shape))


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.asarray(ndi.center_of_mass(mask), dtype=float)


def _find_airway(
    internal: np.ndarray, hu: np.ndarray, body: np.ndarray, spacing: Sequence[float], airway_hu: float, max_area: float
) -> np.ndarray:
    """Trachea and main bronchi: the medial small-cross-section dark tube reaching the top of the internal air."""
    sx, sy, sz = (float(s) for s in spacing)
    dark = internal & (hu < airway_hu)
    if not dark.any():
        return np.zeros_like(internal)
    lab2d, n2d = ndi.label(dark, structure=_INPLANE)  # in-plane components, numbered across all slices
    area = np.bincount(lab2d.ravel(), minlength=n2d + 1)[1:] * sx * sy
    small_ids = np.flatnonzero(area <= max_area) + 1
    small = np.isin(lab2d, small_ids)
    lab3d, n3d = ndi.label(small, structure=np.ones((3, 3, 3), bool))
    if n3d == 0:
        return np.zeros_like(internal)
    # body centre line per slice (x), to judge "medial"
    xs = np.arange(body.shape[0], dtype=float)
    bcount = body.sum(axis=(0, 1)).astype(float)
    bx = (body.sum(axis=1) * xs[:, None]).sum(axis=0) / np.maximum(bcount, 1)
    coords = np.nonzero(lab3d)
    ids = lab3d[coords]
    dx = np.abs(coords[0] - bx[coords[2]]) * sx
    cnt = np.bincount(ids, minlength=n3d + 1).astype(float)
    mean_dx = np.bincount(ids, weights=dx, minlength=n3d + 1) / np.maximum(cnt, 1)
    ztop = np.zeros(n3d + 1)
    zbot = np.full(n3d + 1, np.inf)
    np.maximum.at(ztop, ids, coords[2])
    np.minimum.at(zbot, ids, coords[2])
    air_top = np.flatnonzero(internal.any(axis=(0, 1)))[-1]
    span = (ztop - zbot + 1) * sz
    ok = (mean_dx <= 35.0) & (ztop >= air_top - max(1, round(15.0 / sz))) & (span >= 12.0)
    ok[0] = False
    if not ok.any():
        return np.zeros_like(internal)
    best = int(np.argmax(np.where(ok, span, -1)))
    return lab3d == best


def _subdiaphragmatic_gas(
    cand: np.ndarray, hu: np.ndarray, voxel_ml: float, gas_hu: float = -950.0, min_ml: float = 5.0
) -> np.ndarray:
    """Pure-gas blobs (< ``gas_hu``) lying under the lung base: stomach or colon gas touching a lung.

    A gas component counts when at least 70 % of its voxels have lung-density air above them in their (x, y)
    column and none below (emphysema and airways inside the lung have lung on both sides).
    """
    gas = cand & (hu < gas_hu)
    if not gas.any():
        return np.zeros_like(cand)
    # lung-density air, without the partial-volume rim round the gas (that rim would count as "lung below")
    dense = cand & ~ndi.binary_dilation(gas, _BALL6, iterations=2)
    above = np.flip(np.logical_or.accumulate(np.flip(dense, 2), axis=2), 2)
    below = np.logical_or.accumulate(dense, axis=2)
    under = above & ~below
    lab, n = ndi.label(gas)
    flat = lab.ravel()
    count = np.bincount(flat, minlength=n + 1).astype(float)
    frac = np.bincount(flat, weights=under.ravel(), minlength=n + 1) / np.maximum(count, 1)
    drop = (count * voxel_ml >= min_ml) & (frac >= 0.7)
    drop[0] = False
    if drop.any():
        logger.info("removed %.0f mL of gas under the lung base (stomach/bowel)", count[drop].sum() * voxel_ml)
    return drop[lab]


def _component_pair(
    lab: np.ndarray, sizes: np.ndarray, i: int, j: int, body_cx: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Components ``i`` (the larger) and ``j`` of ``lab`` as the two lungs, if ``j`` is a plausible second lung: at
    least 5 % of ``i``'s size, on the other side of the body centre, and overlapping ``i`` over half its slices."""
    first, second = lab == i, lab == j
    c1, c2 = _centroid(first), _centroid(second)
    z1 = np.flatnonzero(first.any(axis=(0, 1)))
    z2 = np.flatnonzero(second.any(axis=(0, 1)))
    overlap = max(0, min(z1[-1], z2[-1]) - max(z1[0], z2[0]) + 1) / len(z2)
    opposite = (c1[0] - body_cx) * (c2[0] - body_cx) < 0
    if sizes[j] >= 0.05 * sizes[i] and overlap >= 0.5 and opposite:
        return first, second
    return None


def _split_by_erosion(mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Erode ``mask`` (distance threshold) until two side-by-side cores appear; grow them back by nearest core."""
    box = _bbox(mask, margin=1)
    sub = mask[box]
    dist = ndi.distance_transform_edt(sub, sampling=spacing)
    step = 1.0 * float(min(spacing))
    r = step
    found = None
    while r < float(dist.max()):
        core = dist > r
        lab, n = ndi.label(core)
        if n >= 2:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            order = np.argsort(sizes)[::-1]
            a1, a2 = sizes[order[0]], sizes[order[1]]
            if a2 >= 0.1 * a1:
                c1 = _centroid(lab == order[0]) * np.asarray(spacing)
                c2 = _centroid(lab == order[1]) * np.asarray(spacing)
                dx, dz = abs(c1[0] - c2[0]), abs(c1[2] - c2[2])
                if dx >= 40.0 and dx >= dz:
                    found = (lab == order[0], lab == order[1])
                    break
        r += step
    if found is None:
        return None
    cores = found[0].astype(np.uint8) + 2 * found[1].astype(np.uint8)
    idx = ndi.distance_transform_edt(cores == 0, sampling=spacing, return_distances=False, return_indices=True)
    nearest = cores[tuple(idx)]
    a = np.zeros(mask.shape, bool)
    b = np.zeros(mask.shape, bool)
    a[box] = sub & (nearest == 1)
    b[box] = sub & (nearest == 2)
    logger.info("touching lungs separated by erosion at %.1f mm", r)
    return a, b


def _lung_pieces(
    cand: np.ndarray,
    hu: np.ndarray,
    right: np.ndarray,
    left: np.ndarray,
    removed_gas: np.ndarray,
    voxel_ml: float,
    min_ml: float = 1.0,
    gas_hu: float = -950.0,
    max_median_hu: float = -700.0,
    max_iqr_hu: float = 150.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lung parenchyma cut off from the two lungs (a recess tip under a heart that fills the hemithorax, a lobe
    separated by partial volume), as pieces for the right and for the left lung.

    Lung-density air of ``cand`` outside the lungs, without pure gas (< ``gas_hu``, and ``removed_gas``, the gas
    taken out before) and the one-voxel partial-volume rim round it, is split into 3D components. A component is
    lung when it holds at least ``min_ml``, its median HU lies between ``gas_hu`` and ``max_median_hu`` with an
    interquartile range of at most ``max_iqr_hu`` (parenchyma is uniform; bowel gas, airways and partial-volume
    shells are not) and at least half of it lies within the lungs' slices (the thoracic cavity). It goes to the lung
    on its side of the midline between the lungs (the mean of their medial edges in the nearest slice holding both).
    """
    none = np.zeros(cand.shape, bool)
    lungs = right | left
    gas = (cand & (hu < gas_hu)) | removed_gas
    frag = cand & ~lungs & (hu >= gas_hu)
    if gas.any():
        frag &= ~ndi.binary_dilation(gas, _BALL6)
    lab, n = ndi.label(frag)
    if n == 0:
        return none, none.copy()
    count = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    big = count * voxel_ml >= min_ml
    if not big.any():
        return none, none.copy()
    zs = np.flatnonzero(lungs.any(axis=(0, 1)))
    both = np.flatnonzero(right.any(axis=(0, 1)) & left.any(axis=(0, 1)))
    if both.size == 0:
        return none, none.copy()
    xs = np.arange(cand.shape[0])
    # per slice holding both lungs: midway between the left lung's most medial x and the right lung's
    left_edge = np.where(left[:, :, both].any(axis=1), xs[:, None], -1).max(axis=0)
    right_edge = np.where(right[:, :, both].any(axis=1), xs[:, None], cand.shape[0]).min(axis=0)
    mid = 0.5 * (left_edge + right_edge)
    ok = np.zeros(n, bool)
    to_right = np.zeros(n, bool)
    for i, box in enumerate(ndi.find_objects(lab)):
        if not big[i] or box is None:
            continue
        inside = lab[box] == i + 1
        q25, q50, q75 = np.percentile(hu[box][inside], (25, 50, 75))
        px, _, pz = np.nonzero(inside)
        pz = pz + box[2].start
        in_chest = np.mean((pz >= zs[0]) & (pz <= zs[-1])) >= 0.5
        if gas_hu < q50 < max_median_hu and q75 - q25 <= max_iqr_hu and in_chest:
            ok[i] = True
            zc = float(np.mean(pz))
            to_right[i] = float(np.mean(px)) + box[0].start > mid[int(np.argmin(np.abs(both - zc)))]
    if not ok.any():
        return none, none.copy()
    to_r, to_l = ok & to_right, ok & ~to_right
    logger.info("joined %d lung pieces cut off from the lungs (%.1f mL)", int(ok.sum()), count[ok].sum() * voxel_ml)
    return np.concatenate([[False], to_r])[lab], np.concatenate([[False], to_l])[lab]


def _fill_lung(mask: np.ndarray, spacing: Sequence[float], close_mm: float) -> np.ndarray:
    """In-plane hole filling, 3D closing (``close_mm``), in-plane hole filling again."""
    if not mask.any():
        return mask
    it = max(1, int(round(close_mm / float(min(spacing))))) if close_mm > 0 else 0
    box = _bbox(mask, margin=it + 1)
    sub = ndi.binary_fill_holes(mask[box], structure=_INPLANE)
    if it:
        sub = ndi.binary_dilation(sub, _BALL6, iterations=it)
        sub = ndi.binary_erosion(sub, _BALL6, iterations=it, border_value=1)
        sub = ndi.binary_fill_holes(sub, structure=_INPLANE)
    out = np.zeros_like(mask)
    out[box] = sub
    return out


def segment_lungs(
    hu: np.ndarray,
    spacing: Sequence[float],
    *,
    lung_hu: float = -300.0,
    body_hu: float = -500.0,
    airway_hu: float = -600.0,
    max_airway_area_mm2: float = 600.0,
    min_lung_ml: float = 10.0,
    close_mm: float = 4.0,
    pure_gas_hu: float = -970.0,
) -> LungMasks:
    """Right and left lung masks of a CT volume in HU, ``[X, Y, Z]`` in RAS index order.

    Args:
        hu: CT in Hounsfield units, axis 0 toward the patient's right, 1 anterior, 2 superior.
        spacing: voxel size in mm along the three axes.
        lung_hu: air/lung threshold (the paper's -300 HU).
        body_hu: tissue threshold that defines the body.
        airway_hu: stricter threshold for the airway lumen.
        max_airway_area_mm2: largest in-plane cross-section still counted as airway.
        min_lung_ml: internal air components smaller than this are ignored (at most 1 % of the body volume, so
            that thin slabs of a few slices keep their lungs).
        close_mm: radius of the 3D closing that fills vessels at the lung border.
        pure_gas_hu: a component with a quarter or more of its voxels under this is gas rather than parenchyma
            (bowel or stomach gas); such components are chosen as lungs only after the lung-like ones.

    Returns:
        :class:`LungMasks`.
    """
    spacing = tuple(float(s) for s in spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    empty = np.zeros(hu.shape, dtype=bool)
    tissue = hu > body_hu
    if not tissue.any():
        return LungMasks(empty, empty.copy(), empty.copy(), empty.copy(), problems=["no body: no voxel above -500 HU"])
    body = between_hull(largest_component(tissue))
    min_lung_ml = min(min_lung_ml, 0.01 * float(np.count_nonzero(body)) * voxel_ml)
    air = hu < lung_hu
    lab, n = ndi.label(air)
    if n:
        flat = lab.ravel()
        count = np.bincount(flat, minlength=n + 1).astype(float)
        inside = np.bincount(flat, weights=body.ravel(), minlength=n + 1)
        keep = (inside >= 0.5 * np.maximum(count, 1)) & (count * voxel_ml >= min_lung_ml)
        keep[0] = False
        internal = keep[lab]
    else:
        internal = empty.copy()
    if not internal.any():
        return LungMasks(empty, empty.copy(), body, empty.copy(), problems=["no lung: no air inside the body"])
    airway = _find_airway(internal, hu, body, spacing, airway_hu, max_airway_area_mm2)
    notes: list[str] = []
    if airway.any():
        cand = internal & ~ndi.binary_dilation(airway, _BALL6)
    else:
        cand = internal.copy()
        notes.append("no trachea found at the top of the internal air (partial field of view?)")
        logger.info(notes[-1])
    gas = _subdiaphragmatic_gas(cand, hu, voxel_ml)
    cand &= ~gas
    lab, n = ndi.label(cand)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    order = [int(i) for i in np.argsort(sizes)[::-1] if sizes[i] * voxel_ml >= min_lung_ml]
    if not order:
        problems = ["no lung: no internal air component large enough"]
        return LungMasks(empty, empty.copy(), body, airway, problems=problems)
    problems: list[str] = []
    body_cx = _centroid(body)[0]
    # lung parenchyma before pure gas: the colon of an abdominal scan (a quarter or more of its voxels under -970 HU)
    # may outsize the lung bases; the two largest lung-like components are taken when they make a plausible pair,
    # otherwise the size order stands (severe emphysema is gassy too and must not lose to a small abdominal blob)
    boxes = ndi.find_objects(lab)
    gassy = {i: float(np.percentile(hu[boxes[i - 1]][lab[boxes[i - 1]] == i], 25)) < pure_gas_hu for i in order}
    lunglike = [i for i in order if not gassy[i]]
    pair: tuple[np.ndarray, np.ndarray] | None = None
    if lunglike[:2] != order[:2] and len(lunglike) >= 2:
        pair = _component_pair(lab, sizes, lunglike[0], lunglike[1], body_cx)
        if pair is not None:
            order = lunglike + [i for i in order if gassy[i]]
            notes.append("pure-gas air components larger than the lungs were passed over (bowel or stomach gas)")
            logger.info(notes[-1])
    if gassy[order[0]]:
        notes.append(
            f"the largest lung candidate is mostly pure gas (25th percentile < {pure_gas_hu:.0f} HU): "
            "severe emphysema or a large pneumothorax, or bowel gas taken for a lung"
        )
        logger.info(notes[-1])
    first = lab == order[0]
    if pair is None and len(order) > 1:
        pair = _component_pair(lab, sizes, order[0], order[1], body_cx)
    split = "components" if pair is not None else "single"
    if pair is None:
        halves = _split_by_erosion(first, spacing)
        if halves is not None:
            pair, split = halves, "erosion"
    if pair is None:
        lung = _fill_lung(first, spacing, close_mm)
        is_right = _centroid(lung)[0] > body_cx
        side = "right" if is_right else "left"
        problems.append(f"only one lung found (the {side} lung, {lung.sum() * voxel_ml:.0f} mL); the other is missing")
        right, left = (lung, empty.copy()) if is_right else (empty.copy(), lung)
        return LungMasks(right, left, body, airway, split="single", gas=gas, problems=problems, notes=notes)
    a, b = pair
    if _centroid(a)[0] < _centroid(b)[0]:
        a, b = b, a
    pieces_r, pieces_l = _lung_pieces(cand, hu, a, b, gas, voxel_ml)
    if pieces_r.any() or pieces_l.any():
        ml_r, ml_l = pieces_r.sum() * voxel_ml, pieces_l.sum() * voxel_ml
        notes.append(f"lung pieces cut off from their lung joined it: {ml_r:.1f} mL right, {ml_l:.1f} mL left")
        a, b = a | pieces_r, b | pieces_l
    right = _fill_lung(a, spacing, close_mm)
    left = _fill_lung(b, spacing, close_mm)
    right &= ~b
    left &= ~(a | right)
    return LungMasks(right, left, body, airway, split=split, gas=gas, problems=problems, notes=notes)
