"""Heart/mediastinum region: what lies between the two lungs, from the lung masks and HU.

The original HiResCAM code (Draelos & Carin, arXiv:2011.08891) took every non-lung voxel of the lungs' bounding
box, narrowed left-right by fixed fractions of the lung span. Here (RAS ``[X, Y, Z]``):

``heart/mediastinum = (hull & between & limits & ~lungs & body) & (~below_diaphragm | heart_below_floor)
& ~under_lowest_fat & ~behind_spine``

* ``hull``: per axial slice, the 2D convex hull of both lungs (empty in slices without lung; in slices with only
  one of the two lungs, the rows of that slice's anterior-posterior lung extent);
* ``between``: along every left-right row ``(y, z)``, x strictly between the *medial edges* of the lungs (the last
  left-lung voxel and the first right-lung voxel); a row lacking one lung takes that lung's medial edge
  interpolated along ``y`` between the rows of the same slice that have it (held beyond the first and last such
  row), and a slice lacking that lung entirely takes the nearest slice's edges. This keeps the liver and stomach
  under the diaphragm domes (which the hull of crescent-shaped lung bases covers) out of the region; in addition,
  per row ``y`` and in the slices below the top of that band, x must lie within the widest medial-edge span seen in
  the lung slices from 30 % to 85 % of the lungs' height (above the domes; the apices are not narrowed);
* ``limits``: slices within the lungs' cranio-caudal extent, rows not anterior to the most anterior lung row;
* ``body``: the body hull of :mod:`hirescam_ext.segmentation.lungs`;
* ``below_diaphragm``: more than 2 mm under the floor fitted to the lung bases (:func:`_below_diaphragm`);
  ``heart_below_floor``: what rests on the diaphragm under that floor: the heart down to the fat (-190..-40 HU;
  air is not fat) lining its inferior wall, and mediastinal fat down to the end of its fat run
  (:func:`heart_below_floor`); ``under_lowest_fat``: only when no floor can be fitted because one lung does not
  reach the diaphragm, the tissue under the lowest fat lining of a column near the region's bottom
  (:func:`under_lowest_fat`);
* ``behind_spine``: in each (x, z) column, everything at or posterior to the most anterior voxel of the spine.
  The spine is the set of cortical-bone (> ``bone_hu``, 400 HU: above most contrast-filled blood) 3D components
  near the body midline that reach behind the lungs' most posterior row (vertebral arches do; aorta and heart
  do not), grown anteriorly within their own (x, z) columns through bone > 150 HU (the vertebral bodies), made
  symmetric about the neural arch (the seeds are completed by their mirror image; the growth is kept only where
  its mirror image grew too, so a contrast-filled aorta against one side is not bone) and closed along z over
  40 mm (discs, and stretches where the front of the bodies is not seen as bone).

Air inside the region (trachea, main bronchi, oesophagus) belongs to it: extrapulmonary airways are mediastinum.

Example:
    >>> import numpy as np
    >>> from hirescam_ext.segmentation.mediastinum import mediastinum_region
    >>> right = np.zeros((30, 20, 5), bool); left = right.copy()
    >>> right[20:28, 4:16] = True; left[2:10, 4:16] = True
    >>> region = mediastinum_region(np.zeros(right.shape, np.float32), right, left, np.ones_like(right), (4, 4, 4))
    >>> bool(region[15, 10, 2]), bool(region[25, 10, 2])
    (True, False)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

from hirescam_ext.segmentation.lungs import largest_component

__all__ = ["mediastinum_region", "find_spine", "slice_convex_hull", "heart_below_floor", "under_lowest_fat"]

logger = logging.getLogger(__name__)


def slice_convex_hull(mask: np.ndarray) -> np.ndarray:
    """Per axial slice (last axis) 2D convex hull of ``mask``; slices without voxels stay empty."""
    out = np.zeros(mask.shape, dtype=bool)
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    if zs.size == 0:
        return out
    xs = np.flatnonzero(mask.any(axis=(1, 2)))
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    bx = slice(int(xs[0]), int(xs[-1]) + 1)
    by = slice(int(ys[0]), int(ys[-1]) + 1)
    for z in zs:
        sl = mask[bx, by, z]
        if sl.sum() >= 3:
            try:
                out[bx, by, z] = convex_hull_image(sl)
            except Exception:  # degenerate (collinear) slices: keep the voxels themselves
                out[bx, by, z] = sl
        else:
            out[bx, by, z] = sl
    return out


def find_spine(
    hu: np.ndarray,
    lungs: np.ndarray,
    body: np.ndarray,
    spacing: Sequence[float],
    bone_hu: float = 400.0,
    close_z_mm: float = 40.0,
) -> np.ndarray:
    """The vertebral column: midline bright components reaching behind the lungs' most posterior row (may be empty).

    Args:
        hu: CT in HU, RAS ``[X, Y, Z]``.
        lungs: both lungs.
        body: body hull.
        spacing: voxel size (mm).
        bone_hu: cortical-bone threshold of the seed components.
        close_z_mm: half-length of the closing along z that bridges discs and recesses of the column's front.

    Returns:
        Boolean mask of the column (bodies mirrored about the neural arch, closed along z).
    """
    zs = np.flatnonzero(lungs.any(axis=(0, 1)))
    if zs.size == 0:
        return np.zeros(hu.shape, bool)
    ys = np.arange(hu.shape[1], dtype=float)
    bright = (hu > bone_hu) & body
    lab, n = ndi.label(bright)
    if n == 0:
        return np.zeros(hu.shape, bool)
    coords = np.nonzero(lab)
    ids = lab[coords]
    xs = np.arange(hu.shape[0], dtype=float)
    bcount = body.sum(axis=(0, 1)).astype(float)
    bx = (body.sum(axis=1) * xs[:, None]).sum(axis=0) / np.maximum(bcount, 1)
    cnt = np.bincount(ids, minlength=n + 1).astype(float)
    mean_dx = np.bincount(ids, weights=np.abs(coords[0] - bx[coords[2]]) * spacing[0], minlength=n + 1)
    mean_dx /= np.maximum(cnt, 1)
    # lungs' most posterior row per slice; the vertebrae (with their posterior arches) reach behind it, the aorta and
    # the heart do not; discs split the column into vertebrae, so each component is judged on its own
    lung_ymin = np.where(lungs.any(axis=0), ys[:, None], np.inf).min(axis=0)  # per slice z
    lung_ymin[~np.isfinite(lung_ymin)] = -np.inf  # slices without lung: nothing is "behind" 
    behind = coords[1] < lung_ymin[coords[2]]
    reach = np.bincount(ids, weights=behind, minlength=n + 1) > 0
    ok = reach & (mean_dx <= 30.0)
    ok[0] = False
    if not ok.any():
        logger.info("no spine found between the lungs")
        return np.zeros(hu.shape, bool)
    spine = ok[lab]
    # the cortical arches found, grow anteriorly within their own columns through cancellous bone (> 150 HU) to
    # reach the front of the vertebral bodies (partial volume keeps those under ``bone_hu`` on coarse grids)
    grow = np.zeros((1, 3, 1), bool)
    grow[0, :, 0] = True
    it = max(1, int(round(50.0 / float(spacing[1]))))
    grown = ndi.binary_dilation(spine, structure=grow, iterations=it, mask=(hu > 150.0) & body) | spine
    # a vertebra is bilaterally symmetric about its neural arch (one axis, from the cortical seeds): the seeds are
    # completed by their mirror image (a partial-volume edge on one side does not move the outline), while the
    # growth through > 150 HU is kept only where its mirror image grew too, within two voxels in x (an arch one
    # voxel off the body's centre, or a slightly rotated vertebra): a contrast-filled aorta (150-400 HU) pressed
    # against one side of the body is not bone
    tolerant = ndi.binary_dilation(_mirror_about_arch(grown, axis_from=spine), structure=np.ones((5, 1, 1), bool))
    spine = (grown & tolerant) | spine | _mirror_about_arch(spine)
    # the anterior surface of the column is smooth along z: bridge the discs and any stretch where the front of
    # the bodies is not seen as bone (partial volume, osteopenia, heart or aorta abutting it) with a z closing
    zit = max(1, int(round(close_z_mm / float(spacing[2]))))
    zline = np.ones((1, 1, 3), bool)
    closed = ndi.binary_dilation(spine, zline, iterations=zit)
    closed = ndi.binary_erosion(closed, zline, iterations=zit, border_value=1)
    return closed | spine


def _mirror_about_arch(spine: np.ndarray, axis_from: np.ndarray | None = None) -> np.ndarray:
    """Mirror image of ``spine`` in each axial slice about the x-centroid of the posterior half of ``axis_from``
    (default ``spine``; the neural arch).

    The posterior elements (canal, laminae, spinous process) mark the vertebra's midline; the anterior body may
    have lost one side to the threshold. Slices without an axis stay empty.
    """
    ref = spine if axis_from is None else axis_from
    nx, ny = spine.shape[:2]
    xs, ys = np.arange(nx, dtype=float), np.arange(ny, dtype=float)
    count = ref.sum(axis=(0, 1)).astype(float)
    yc = (ref.sum(axis=0) * ys[:, None]).sum(axis=0) / np.maximum(count, 1)
    post = ref & (ys[None, :, None] < yc[None, None, :])
    npost = post.sum(axis=(0, 1)).astype(float)
    xc = (post.sum(axis=1) * xs[:, None]).sum(axis=0) / np.maximum(npost, 1)
    src = np.rint(2.0 * xc[None, :] - xs[:, None]).astype(int)  # [x, z]: source column of each mirrored column
    valid = (src >= 0) & (src < nx) & (npost[None, :] > 0)
    out = np.zeros_like(spine)
    xi, zi = np.nonzero(valid)
    out[xi, :, zi] = spine[src[xi, zi], :, zi]
    return out


def _dome_fit(base: np.ndarray, has: np.ndarray, spacing: Sequence[float]) -> np.ndarray | None:
    """Robust quadratic surface z(x, y) through the lowest lung voxels of one lung (points above it dropped)."""
    x, y = np.nonzero(has)
    if x.size < 12:
        return None
    z = base[x, y].astype(float)
    xm, ym = x * float(spacing[0]), y * float(spacing[1])
    design = np.stack([np.ones_like(xm), xm, ym, xm * xm, ym * ym, xm * ym], axis=1)
    keep = np.ones(z.size, bool)
    coef = None
    for _ in range(4):  # lung tongues over the heart lie above the domes: drop points well above the fit
        coef, *_ = np.linalg.lstsq(design[keep], z[keep], rcond=None)
        res = z - design @ coef
        sd = float(res[keep].std()) or 1.0
        keep = res <= 1.0 * sd
        if keep.sum() < 12:
            break
    gx, gy = np.meshgrid(np.arange(base.shape[0]) * float(spacing[0]), np.arange(base.shape[1]) * float(spacing[1]),
                         indexing="ij")
    full = np.stack([np.ones_like(gx), gx, gy, gx * gx, gy * gy, gx * gy], axis=-1) @ coef
    return full


def _below_diaphragm(
    right: np.ndarray, left: np.ndarray, spacing: Sequence[float], margin_mm: float = 2.0
) -> tuple[np.ndarray, str]:
    """Voxels under the diaphragm domes, estimated by a robust quadratic fit to each lung's base, and why.

    The floor lies ``margin_mm`` under the fitted lung bases. Empty when a lung touches the bottom slice (its base is
    outside the field of view: ``"partial"``), when the lowest points of the two lungs' main parts (largest 3D
    components) differ by more than 30 mm (one lung does not reach the diaphragm, even if a cut-off recess tip of
    it does: ``"uneven"``), or when a lung is missing or its base has too few
    columns for the fit (``"unfit"``); otherwise ``"fitted"``. The lower of the two surfaces is used, which is
    conservative between the domes (where the heart sits on the central tendon).
    """
    nz = right.shape[2]
    none = np.zeros(right.shape, bool)
    if nz == 0 or not right.any() or not left.any():
        return none, "unfit"
    if right[:, :, 0].any() or left[:, :, 0].any():
        return none, "partial"
    # the main part of each lung: a cut-off recess tip does not make a lung reach the diaphragm (under a heart that
    # fills the hemithorax, the lung's main part ends on the heart)
    lows = [int(np.flatnonzero(largest_component(m).any(axis=(0, 1)))[0]) for m in (right, left)]
    if abs(lows[0] - lows[1]) * float(spacing[2]) > 30.0:
        # one lung does not reach the diaphragm (displaced by the heart, collapsed...): no reliable floor
        logger.info("lung bases differ by more than 30 mm: heart region not limited by a diaphragm fit")
        return none, "uneven"
    fits = []
    for lung in (right, left):
        has = lung.any(axis=2)
        if has.any():
            f = _dome_fit(np.argmax(lung, axis=2), has, spacing)
            if f is not None:
                # no extrapolation: a column outside this lung takes the fitted height of the nearest lung column
                # (a quadratic dome continued past the lung's medial edge falls away and would keep the abdomen)
                _, (ix, iy) = ndi.distance_transform_edt(~has, sampling=spacing[:2], return_indices=True)
                fits.append(f[ix, iy])
    if len(fits) < 2:
        logger.info("a lung base has too few columns for a diaphragm fit: heart region not limited by a floor")
        return none, "unfit"
    floor = np.minimum(fits[0], fits[1]) - margin_mm / float(spacing[2])
    return np.arange(nz)[None, None, :] < floor[:, :, None], "fitted"


def under_lowest_fat(
    hu: np.ndarray,
    region: np.ndarray,
    spacing: Sequence[float],
    depth_mm: float = 25.0,
    fat_hu: float = -40.0,
    fat_min_hu: float = -190.0,
) -> np.ndarray:
    """Region voxels under the lowest fat of their (x, y) column, where that fat lies near the region's bottom.

    Used when no diaphragm can be fitted because one lung does not reach it: the region then runs down to the
    lower lung's base and keeps the abdomen under the heart. The heart's inferior wall and the mediastinal fat
    pads are lined by fat (``fat_min_hu`` < HU < ``fat_hu``); in a column whose lowest region fat voxel lies at
    most ``depth_mm`` above the region's lowest voxel, the voxels under that fat are returned (liver, stomach,
    diaphragm). Columns without fat, or whose lowest fat is higher (the heart itself may fill the column below
    it), give nothing; fat-band voxels next to air or lung (< -400 HU), partial volume at their edge, do not count.
    """
    nz = hu.shape[2]
    if nz == 0:
        return np.zeros(hu.shape, bool)
    fat = region & (hu > fat_min_hu) & (hu < fat_hu)
    fat &= ~ndi.binary_dilation(hu < -400.0)  # partial volume at an air or lung edge falls in the fat band too
    has_fat = fat.any(axis=2)
    lowest_fat = np.argmax(fat, axis=2)
    bottom = np.argmax(region, axis=2)
    near = has_fat & (lowest_fat - bottom <= depth_mm / float(spacing[2]))
    return region & near[:, :, None] & (np.arange(nz)[None, None, :] < lowest_fat[:, :, None])


def heart_below_floor(
    hu: np.ndarray,
    region: np.ndarray,
    below: np.ndarray,
    spacing: Sequence[float],
    fat_hu: float = -40.0,
    depth_mm: float = 40.0,
    fat_min_hu: float = -190.0,
) -> np.ndarray:
    """The heart and mediastinal fat that lie under the diaphragm estimate, down to where the abdomen begins.

    The lung bases give the diaphragm where lung lies on it; between the domes the diaphragm (central tendon) is
    lower, and the heart and the cardiophrenic fat pads rest on it. ``below`` is ``z < floor`` per (x, y) column;
    the column's first voxel above the floor decides:

    * soft tissue (>= ``fat_hu``) of ``region`` (heart): the voxels from the highest fat voxel within ``depth_mm``
      under the floor up to the floor (the epicardial/pericardial fat lining the heart's inferior wall); a column
      without such fat (liver or spleen directly under the floor) gets nothing;
    * fat of ``region`` (mediastinal fat): the fat run continuing down from the floor, within ``depth_mm``; it
      stops at the first voxel that is not fat (diaphragm muscle, liver, stomach wall, air).

    Fat is ``fat_min_hu`` < HU < ``fat_hu`` (-190..-40 HU by default; adipose tissue is about -190..-30 HU). Air
    under the floor (gastric fundus or bowel gas, lung: about -1000 HU) is not fat and neither lines the heart
    nor continues a fat run. Partial-volume voxels at an air/tissue edge can still fall in the fat band.
    """
    nz = hu.shape[2]
    if nz == 0:
        return np.zeros(hu.shape, bool)
    floor = below.sum(axis=2)  # index of the first slice above the floor (below is a prefix along z)
    inside = (floor > 0) & (floor < nz)
    fz = np.clip(floor, 0, nz - 1)[:, :, None]
    fat = (hu > fat_min_hu) & (hu < fat_hu)
    zz = np.arange(nz)[None, None, :]
    depth = max(1, int(round(depth_mm / float(spacing[2]))))
    within = below & (zz >= floor[:, :, None] - depth)
    # heart columns: the column starts on soft tissue (neither fat nor air); down to the highest fat voxel
    on_heart = np.take_along_axis(region & (hu >= fat_hu), fz, axis=2)[:, :, 0] & inside
    cand = fat & within
    top_fat = nz - 1 - np.argmax(cand[:, :, ::-1], axis=2)
    heart = (on_heart & cand.any(axis=2))[:, :, None] & within & (zz >= top_fat[:, :, None])
    # fat columns: the fat run under the floor, down to the first voxel that is not fat
    on_fat = np.take_along_axis(region & fat, fz, axis=2)[:, :, 0] & inside
    stop = below & ~fat
    top_stop = np.where(stop.any(axis=2), nz - 1 - np.argmax(stop[:, :, ::-1], axis=2), -1)
    fat_run = on_fat[:, :, None] & within & (zz > top_stop[:, :, None])
    return heart | fat_run


def _fill_medial_edges(edge: np.ndarray, has: np.ndarray) -> np.ndarray:
    """Medial-edge x for every row ``(y, z)``: rows lacking the lung are interpolated along y within their slice
    (held constant beyond the first and last lung row) and slices lacking it copy the nearest slice that has it."""
    out = edge.astype(float)
    rows = np.arange(edge.shape[0])
    with_lung = np.flatnonzero(has.any(axis=0))
    if with_lung.size == 0:
        return out
    for z in with_lung:
        h = has[:, z]
        out[:, z] = np.interp(rows, rows[h], edge[h, z])
    nearest = with_lung[np.abs(np.arange(edge.shape[1])[:, None] - with_lung[None, :]).argmin(axis=1)]
    return out[:, nearest]


def mediastinum_region(
    hu: np.ndarray,
    right: np.ndarray,
    left: np.ndarray,
    body: np.ndarray,
    spacing: Sequence[float],
    bone_hu: float = 400.0,
) -> np.ndarray:
    """Heart/mediastinum region between ``right`` and ``left`` lung masks (RAS ``[X, Y, Z]``); see module doc."""
    lungs = right | left
    zs = np.flatnonzero(lungs.any(axis=(0, 1)))
    if zs.size == 0 or not right.any() or not left.any():
        return np.zeros(lungs.shape, bool)
    nx = lungs.shape[0]
    xs = np.arange(nx)
    # medial edge of each lung along every left-right row (y, z): first right-lung x, last left-lung x
    has_r, has_l = right.any(axis=0), left.any(axis=0)
    x_r_raw = np.where(has_r, np.argmax(right, axis=0), nx)
    x_l_raw = np.where(has_l, nx - 1 - np.argmax(left[::-1], axis=0), -1)
    # rows without that lung take the medial edge interpolated between the rows of the same slice that have it;
    # slices without that lung take the edges of the nearest slice that has it
    x_r = _fill_medial_edges(x_r_raw, has_r)
    x_l = _fill_medial_edges(x_l_raw, has_l)
    between = (xs[:, None, None] > x_l[None]) & (xs[:, None, None] < x_r[None])
    # envelope per row y from the central slices: lung bases curving round the diaphragm domes have their inner
    # edge far lateral, so a dome slice may not widen the region beyond the widest central-slice mediastinum
    z0, z1 = int(zs[0]), int(zs[-1])
    central = slice(z0 + int(0.3 * (z1 - z0)), z1 - int(0.15 * (z1 - z0)) + 1)
    env_l = np.where(has_l[:, central], x_l_raw[:, central], nx).min(axis=1).astype(float)
    env_r = np.where(has_r[:, central], x_r_raw[:, central], -1).max(axis=1).astype(float)
    rows = np.arange(lungs.shape[1])
    ok_l, ok_r = env_l < nx, env_r >= 0
    if ok_l.any() and ok_r.any():
        env_l = np.interp(rows, rows[ok_l], env_l[ok_l])
        env_r = np.interp(rows, rows[ok_r], env_r[ok_r])
        inside_env = (xs[:, None, None] > env_l[None, :, None]) & (xs[:, None, None] < env_r[None, :, None])
        # only the slices below the top of the central band (the apices have no domes to guard against)
        below_top = np.arange(lungs.shape[2]) < central.stop
        between &= inside_env | ~below_top[None, None, :]
    # anterior limit: the most anterior lung row of the scan; cranio-caudal limit: the lungs' extent
    ys = np.flatnonzero(lungs.any(axis=(0, 2)))
    limits = np.zeros(lungs.shape, bool)
    limits[:, : int(ys[-1]) + 1, int(zs[0]) : int(zs[-1]) + 1] = True
    hull = slice_convex_hull(lungs)
    # a slice with one lung only (the other collapsed, displaced by the heart, or not yet begun) has no hull
    # between the lungs: there the medial-edge bounds alone limit the region
    # (within that slice's anterior-posterior lung extent, so nothing behind the lung or outside the body leaks in)
    one_sided = right.any(axis=(0, 1)) != left.any(axis=(0, 1))
    rows_yz = lungs.any(axis=0)
    first = np.argmax(rows_yz, axis=0)
    last = rows_yz.shape[0] - 1 - np.argmax(rows_yz[::-1], axis=0)
    yy = np.arange(rows_yz.shape[0])[:, None]
    ap_extent = (yy >= first[None, :]) & (yy <= last[None, :]) & one_sided[None, :]
    hull |= ap_extent[None, :, :]
    allowed = between & limits & hull & ~lungs & body
    below, floor_status = _below_diaphragm(right, left, spacing)
    region = allowed & ~below
    region |= heart_below_floor(hu, region, below, spacing) & allowed
    if floor_status == "uneven":
        region &= ~under_lowest_fat(hu, region, spacing)
    spine = find_spine(hu, lungs, body, spacing, bone_hu)
    if spine.any():
        behind = np.flip(np.logical_or.accumulate(np.flip(spine, 1), axis=1), 1)
        region &= ~behind
    return region
