"""Anatomical chest-CT phantoms in Hounsfield units, built from analytic shapes (the synthetic benchmark's anatomy).

A phantom is a smooth, vectorised construction in millimetres on the voxel grid: air, a patient table under the
back, a body outline (superellipse, varying size and position, off-centre allowed) with skin, a subcutaneous fat
layer of variable thickness and a muscle layer, ribs, sternum and spine, two lungs (parenchyma with a posterior
density gradient, branching vessel trees, airways), the heart (myocardium, blood pools, epicardial fat,
pericardium), aorta with its arch and branches, superior vena cava, pulmonary arteries, trachea and main
bronchi, oesophagus, mediastinal fat and the upper abdomen below the diaphragm.

Coordinates: volumes are ``[X, Y, Z]`` in RAS index order (axis 0 toward the patient's right, axis 1 toward
anterior, axis 2 toward superior), so the left lung has the smaller axis-0 indices. ``Grid`` holds the world
coordinates (mm) of voxel centres; the NIfTI affine is diagonal with the grid's origin.

Organ truth map (``hirescam_ext.labels.ORGAN_LABELS``): 1 right lung, 2 heart/mediastinum, 3 left lung.

* Lungs are *filled* masks: everything inside the pleural cavity of that side (parenchyma, vessels, intrapulmonary
  airways, and any lesion or pleural fluid/air rendered later) carries the lung label.
* Heart/mediastinum is the non-lung tissue between the lungs within their extent: per axial slice of the lungs'
  cranio-caudal extent, x strictly between the left lung's and the right lung's medial borders of each row ``y``
  and y within that slice's anterior-posterior lung extent and (slices with both lungs) the convex hull of both
  lungs; a row lacking a lung takes its medial border interpolated between the rows of the slice that have it
  (held beyond the first and last), a slice lacking it the nearest slice's. Above the diaphragm surface (the
  heart keeps its whole pericardial sac), excluding bone and everything at or behind the vertebral body's anterior
  surface. It holds the heart with its pericardium, great vessels, mediastinal fat, oesophagus, and the trachea
  and main bronchi (extrapulmonary airways count as mediastinum, never as lung; above the lung apices they are
  background). The upper abdomen and tissue anterior or posterior
  to the lungs' extent are never labelled.

The shapes follow the organ layout the HiResCAM paper's allowed regions assume (Draelos & Carin, HiResCAM,
arXiv:2011.08891, Sec. "Allowed regions"): lungs by side, heart and mediastinum between them.

Example:
    >>> import numpy as np
    >>> from hirescam_ext.synthetic.phantom import make_grid, sample_anatomy, build_phantom
    >>> grid = make_grid((64, 64, 48), (5.8, 5.8, 6.4))
    >>> rng = np.random.default_rng(0)
    >>> ph = build_phantom(grid, sample_anatomy(rng, grid), rng)
    >>> ph.hu.shape, sorted(np.unique(ph.organs).tolist())
    ((64, 64, 48), [0, 1, 2, 3])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage.morphology import convex_hull_image

__all__ = [
    "Grid",
    "Anatomy",
    "Phantom",
    "make_grid",
    "sample_anatomy",
    "build_phantom",
    "segment_box",
    "ellipsoid_box",
    "HU",
]

#: nominal tissue attenuations (HU) used by the phantom and the lesion renderers.
HU: dict[str, float] = {
    "air": -1000.0,
    "lung": -855.0,
    "fat": -95.0,
    "water": 8.0,
    "soft": 38.0,
    "muscle": 45.0,
    "blood": 45.0,
    "liver": 58.0,
    "skin": 25.0,
    "cancellous": 230.0,
    "cortical": 750.0,
    "cartilage": 120.0,
    "metal": 3000.0,
}


@dataclass
class Grid:
    """Voxel-centre world coordinates (mm, RAS) of an ``[X, Y, Z]`` volume.

    Attributes:
        shape: volume shape ``(X, Y, Z)``.
        spacing: voxel size in mm along each axis.
        x, y, z: 1-D coordinates of voxel centres (mm).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def X(self) -> np.ndarray:  # noqa: N802 - coordinate names
        return self.x[:, None, None]

    @property
    def Y(self) -> np.ndarray:  # noqa: N802
        return self.y[None, :, None]

    @property
    def Z(self) -> np.ndarray:  # noqa: N802
        return self.z[None, None, :]

    @property
    def fov(self) -> np.ndarray:
        """Field of view (mm) along each axis."""
        return np.asarray(self.shape, float) * np.asarray(self.spacing, float)

    @property
    def affine(self) -> np.ndarray:
        """4x4 RAS affine: diagonal spacing, translation = world position of voxel (0, 0, 0)."""
        aff = np.diag([*map(float, self.spacing), 1.0])
        aff[:3, 3] = [self.x[0], self.y[0], self.z[0]]
        return aff

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres lie in the world box ``[lo, hi]``; ``None`` when empty."""
        out = []
        for axis, coords in enumerate((self.x, self.y, self.z)):
            i0 = int(np.searchsorted(coords, lo[axis], side="left"))
            i1 = int(np.searchsorted(coords, hi[axis], side="right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)  # type: ignore[return-value]

    def sub(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Open (broadcastable) coordinate arrays of a box."""
        return self.x[sl[0]][:, None, None], self.y[sl[1]][None, :, None], self.z[sl[2]][None, None, :]

    def index_of(self, point: np.ndarray) -> tuple[int, int, int]:
        """Nearest voxel index of a world point (clipped to the volume)."""
        idx = []
        for axis, coords in enumerate((self.x, self.y, self.z)):
            i = int(round((point[axis] - coords[0]) / self.spacing[axis]))
            idx.append(min(max(i, 0), self.shape[axis] - 1))
        return tuple(idx)  # type: ignore[return-value]


def make_grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Grid:
    """Grid centred on the world origin (mm), RAS axes."""
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 integers >= 8, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers, got {spacing}")
    coords = [((np.arange(n) - (n - 1) / 2.0) * s).astype(np.float32) for n, s in zip(shape, spacing)]
    return Grid(shape, spacing, *coords)  # type: ignore[arg-type]


def segment_box(grid: Grid, p0: np.ndarray, p1: np.ndarray, radius: float):
    """Distance (mm) to the segment ``p0-p1`` inside the segment's bounding box (grown by ``radius``).

    Returns ``(slices, distance)`` or ``(None, None)`` when the box misses the grid.
    """
    p0 = np.asarray(p0, np.float32)
    p1 = np.asarray(p1, np.float32)
    pad = radius + max(grid.spacing)
    sl = grid.box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
    if sl is None:
        return None, None
    x, y, z = grid.sub(sl)
    d = p1 - p0
    dd = float(d @ d) or 1e-6
    t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / dd, 0.0, 1.0)
    dist = np.sqrt((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2)
    return sl, dist


def ellipsoid_box(grid: Grid, center: np.ndarray, radii: np.ndarray, angle: float = 0.0, pad: float = 0.0):
    """Normalised ellipsoid radius ``q`` (``q <= 1`` inside) in the ellipsoid's bounding box.

    ``angle`` rotates the first two semi-axes in the axial plane (radians). Returns ``(slices, q)`` or
    ``(None, None)``.
    """
    c = np.asarray(center, np.float32)
    r = np.asarray(radii, np.float32)
    ext = float(r.max()) + pad + max(grid.spacing)
    sl = grid.box(c - ext, c + ext)
    if sl is None:
        return None, None
    x, y, z = grid.sub(sl)
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    if angle:
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
    q = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2)
    return sl, q


@dataclass
class Anatomy:
    """Random patient parameters (mm) of one phantom; see :func:`sample_anatomy`."""

    params: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.params[key] = value


@dataclass
class Phantom:
    """A rendered phantom: HU volume (float32), organ truth map and the anatomy needed to place lesions.

    Attributes:
        grid: the voxel grid.
        hu: float32 HU volume ``[X, Y, Z]`` without noise (noise is added when the case is finalised).
        organs: uint8 organ map (0 background, 1 right lung, 2 heart/mediastinum, 3 left lung).
        anatomy: the sampled parameters plus derived landmarks (heart, aorta, trachea, lobes...).
        airway_lumen: bool mask of intrapulmonary airway lumens (kept air inside consolidation).
        noise_sigma: per-voxel noise level (HU) used when the case is finalised.
    """

    grid: Grid
    hu: np.ndarray
    organs: np.ndarray
    anatomy: Anatomy
    airway_lumen: np.ndarray
    noise_sigma: np.ndarray

    def lung(self, side: str) -> np.ndarray:
        """Bool mask of the ``"right"`` or ``"left"`` lung (or ``"both"``)."""
        if side == "right":
            return self.organs == 1
        if side == "left":
            return self.organs == 3
        return (self.organs == 1) | (self.organs == 3)

    def lobe_bounds(self, side: str) -> dict[str, tuple[float, float]]:
        """World z ranges (mm) of the ``upper``/``mid``/``lower`` zones of one lung (by height)."""
        return self.anatomy["lobes"][side]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_anatomy(
    rng: np.random.Generator,
    grid: Grid,
    fat_mm: float | None = None,
    heart_scale: float = 1.0,
    pericardial_effusion_mm: float = 0.0,
    ascending_aorta_radius_mm: float | None = None,
    contrast: bool | None = None,
) -> Anatomy:
    """Draw patient size, position, breathing depth and organ placement for one phantom.

    Args:
        rng: the case's random generator.
        grid: voxel grid (its field of view scales the body and lungs).
        fat_mm: nominal subcutaneous fat thickness; drawn from 4-40 mm when ``None``.
        heart_scale: in-plane heart enlargement (> 1.2 for cardiomegaly).
        pericardial_effusion_mm: thickness of pericardial fluid (0 = none).
        ascending_aorta_radius_mm: ascending aortic radius (aneurysm when large); drawn when ``None``.
        contrast: intravenous contrast in the blood pool; drawn when ``None``.
    """
    fx, fy, fz = (float(v) for v in grid.fov)
    p: dict[str, Any] = {}
    p["body_a"] = a = _u(rng, 0.34, 0.44) * fx
    p["body_b"] = b = a * _u(rng, 0.62, 0.76)
    b = min(b, 0.5 * fy - 30.0)
    p["body_b"] = b
    p["body_p"] = _u(rng, 2.1, 2.6)
    p["body_cx"] = _u(rng, -0.07, 0.07) * fx
    table_room = 28.0
    lo_cy = -0.5 * fy + table_room + 0.92 * b
    hi_cy = 0.5 * fy - b - 4.0
    p["body_cy"] = float(np.clip(_u(rng, -0.05, 0.06) * fy, lo_cy, max(lo_cy, hi_cy)))
    p["body_wobble"] = [_u(rng, 0.01, 0.04), _u(rng, 0, 2 * np.pi), _u(rng, 150, 400)]
    p["fat_mm"] = float(fat_mm) if fat_mm is not None else _u(rng, 4.0, 40.0)
    p["fat_lateral_factor"] = _u(rng, 0.85, 1.3)
    p["fat_ap_factor"] = _u(rng, 0.65, 1.05)
    p["muscle_mm"] = _u(rng, 8.0, 15.0)
    p["table_gap"] = _u(rng, 2.0, 10.0)
    # lungs: height (breathing depth) and vertical placement inside the field of view
    p["lung_height"] = H = min(_u(rng, 0.62, 0.84) * fz, fz - 20.0)
    top_margin = _u(rng, 6.0, max(7.0, min(40.0, fz - H - 8.0)))
    z_top = 0.5 * fz - top_margin
    p["z_top"] = z_top
    p["z_rec"] = z_rec = z_top - H
    p["dome_right"] = z_rec + H * _u(rng, 0.2, 0.26)
    p["dome_left"] = p["dome_right"] - _u(rng, 4.0, 16.0)
    p["mediastinum_halfwidth"] = _u(rng, 17.0, 25.0)
    p["mediastinum_dx"] = _u(rng, -8.0, 4.0)
    p["anterior_junction"] = _u(rng, 0.7, 1.0)  # 1.0: the lungs meet at the midline in front of the mediastinum
    # heart (in-plane enlargement for cardiomegaly), pericardial fluid
    p["heart_scale"] = float(heart_scale)
    p["heart_radii"] = [_u(rng, 46, 56) * heart_scale, _u(rng, 38, 46) * heart_scale, H * _u(rng, 0.17, 0.2)]
    if heart_scale > 1.0:
        p["heart_radii"][2] *= 1.0 + 0.5 * (heart_scale - 1.0)
    p["heart_angle"] = _u(rng, 0.45, 0.75)  # long axis toward left-anterior
    p["heart_dx"] = -_u(rng, 10.0, 24.0)
    p["pericardial_effusion_mm"] = float(pericardial_effusion_mm)
    p["aorta_radius"] = _u(rng, 11.0, 14.5)
    p["ascending_radius"] = (
        float(ascending_aorta_radius_mm) if ascending_aorta_radius_mm is not None else p["aorta_radius"] * 1.1
    )
    p["contrast"] = bool(rng.random() < 0.4) if contrast is None else bool(contrast)
    p["blood_hu"] = _u(rng, 170.0, 260.0) if p["contrast"] else _u(rng, 40.0, 50.0)
    p["seed_vessels"] = int(rng.integers(0, 2**31 - 1))
    return Anatomy(p)


def _ellipse_rho(dx, dy, a, b, p: float = 2.0):
    if p == 2.0:
        return np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
    return (np.abs(dx / a) ** p + np.abs(dy / b) ** p) ** (1.0 / p)


def _between_lungs(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Per axial slice, the voxels between the two lungs' medial borders within their anterior-posterior extent.

    In every slice within the lungs' cranio-caudal extent and every row ``y`` from the most posterior to the most
    anterior lung row of that slice, x lies strictly between the left lung's last voxel and the right lung's first
    voxel of that row and, in a slice holding both lungs, inside the slice's convex hull of the two lungs. A row
    crossing only one lung (or none) takes the missing medial border interpolated along y between the rows of the
    same slice that have it (held constant beyond the first and last); a slice without one of the lungs (apex,
    base, a lung displaced by the heart) takes that lung from the nearest slice that has it.
    """
    out = np.zeros(right.shape, bool)
    nx, ny = right.shape[:2]
    xs = np.arange(nx)[:, None]
    rows = np.arange(ny)
    zr = np.flatnonzero(right.any(axis=(0, 1)))
    zl = np.flatnonzero(left.any(axis=(0, 1)))
    if zr.size == 0 or zl.size == 0:
        return out
    for z in range(min(zr[0], zl[0]), max(zr[-1], zl[-1]) + 1):
        r = right[:, :, zr[np.argmin(np.abs(zr - z))]]
        lf = left[:, :, zl[np.argmin(np.abs(zl - z))]]
        has_r, has_l = r.any(axis=0), lf.any(axis=0)
        x_r = np.interp(rows, rows[has_r], np.argmax(r, axis=0)[has_r])
        x_l = np.interp(rows, rows[has_l], (nx - 1 - np.argmax(lf[::-1], axis=0))[has_l])
        here = right[:, :, z].any(axis=0) | left[:, :, z].any(axis=0)
        ys = np.flatnonzero(here if here.any() else has_r | has_l)
        ap = (rows >= ys[0]) & (rows <= ys[-1])
        slab = (xs > x_l[None, :]) & (xs < x_r[None, :]) & ap[None, :]
        if right[:, :, z].any() and left[:, :, z].any():
            slab &= convex_hull_image(r | lf)
        out[:, :, z] = slab
    return out


class _Painter:
    """Accumulates a float32 HU volume by painting masks in anatomical order."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.hu = np.full(grid.shape, HU["air"], np.float32)

    def paint(self, mask: np.ndarray, value, sl=None) -> None:
        target = self.hu if sl is None else self.hu[sl]
        mask = np.broadcast_to(mask, target.shape)
        if np.ndim(value) == 0:
            target[mask] = value
        else:
            target[mask] = np.broadcast_to(value, mask.shape)[mask]


def build_phantom(grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> Phantom:
    """Render the normal anatomy of ``anatomy`` on ``grid`` (no lesions, no noise).

    Shapes are superellipses/ellipsoids with per-slice variation and tubes along line segments, evaluated with
    numpy broadcasting (no per-voxel Python loops).
    """
    p = anatomy.params
    X, Y, Z = grid.X, grid.Y, grid.Z
    fx, fy, fz = (float(v) for v in grid.fov)
    pt = _Painter(grid)
    vox = float(min(grid.spacing))

    # ---- body outline with per-slice wobble ------------------------------------------------------------
    amp, phase, period = p["body_wobble"]
    wob = 1.0 + amp * np.sin(2 * np.pi * Z / period + phase)  # (1,1,Z)
    a = p["body_a"] * wob
    b_ant = p["body_b"] * wob
    b_post = p["body_b"] * 0.93 * wob  # back flattened by the table
    cx, cy = p["body_cx"], p["body_cy"]
    dx, dy = X - cx, Y - cy
    bb = np.where(dy >= 0, b_ant, b_post)
    rho_body = _ellipse_rho(dx, dy, a, bb, p["body_p"])
    body = rho_body <= 1.0
    # table under the back (posterior = small y), slightly curved upward at the sides
    y_tab = cy - p["body_b"] * 0.93 * (1 + amp) - p["table_gap"] + 0.0009 * (X - cx) ** 2
    tab = (Y <= y_tab) & (Y >= y_tab - 14.0) & (np.abs(X - cx) < 0.45 * fx) & ~body
    tab_shell = tab & ((Y >= y_tab - 2.5) | (Y <= y_tab - 11.5))
    pt.paint(np.broadcast_to(tab, grid.shape), -350.0)
    pt.paint(np.broadcast_to(tab_shell, grid.shape), 250.0)
    pt.paint(body, HU["skin"])

    # fat: inner boundary offset by a thickness that varies with direction
    mean_r = 0.5 * (p["body_a"] + p["body_b"])
    t_fat_lat = p["fat_mm"] * p["fat_lateral_factor"]
    t_fat_ap = p["fat_mm"] * p["fat_ap_factor"]
    skin = 2.0
    af, bf_ant, bf_post = a - skin - t_fat_lat, b_ant - skin - t_fat_ap, b_post - skin - 0.7 * t_fat_ap
    rho_f = _ellipse_rho(dx, dy, af, np.where(dy >= 0, bf_ant, bf_post), p["body_p"])
    fat_in = rho_f <= 1.0
    pt.paint(body & ~fat_in & (rho_body <= 1.0 - skin / mean_r), HU["fat"])
    pt.paint(fat_in, HU["muscle"])

    # thoracic cavity
    m = p["muscle_mm"]
    ac, bc = af - m, 0.5 * (bf_ant + bf_post) - m
    ac = np.maximum(ac, 40.0)
    bc = np.maximum(bc, 35.0)
    ccy = float(cy + 0.5 * np.median(bf_ant - bf_post))
    rho_c = _ellipse_rho(dx, Y - ccy, ac, bc, 2.0)
    cavity = rho_c <= 1.0
    ac0, bc0 = float(np.median(ac)), float(np.median(bc))
    p["cavity"] = {"cx": cx, "cy": float(ccy), "a": ac0, "b": bc0}
    p["y_back"] = float(ccy - bc0)
    p["y_front"] = float(ccy + bc0)

    # ---- spine, ribs, sternum ---------------------------------------------------------------------------
    rv = _u(rng, 15.0, 19.0)
    yv = float(ccy - bc0 + 0.8 * rv)
    mx = float(cx + p["mediastinum_dx"])
    p["mx"] = mx
    p["vertebra"] = [cx, yv, rv]
    dvx, dvy = X - cx, Y - yv
    r_vert = np.sqrt((dvx / (1.1 * rv)) ** 2 + (dvy / rv) ** 2)
    vert = r_vert <= 1.0
    disc = np.mod(Z - _u(rng, 0, 28), 28.0) < 6.0
    pt.paint(vert & (r_vert > 1.0 - 2.2 / rv), HU["cortical"])
    pt.paint(vert & (r_vert <= 1.0 - 2.2 / rv) & ~disc, HU["cancellous"])
    pt.paint(vert & (r_vert <= 1.0 - 2.2 / rv) & disc, 90.0)
    yc = yv - rv - 8.0
    r_canal = np.sqrt(dvx**2 + (Y - yc) ** 2)
    pt.paint((r_canal > 7.0) & (r_canal <= 12.0) & body, 520.0)
    pt.paint((r_canal <= 7.0) & body, 25.0)
    spinous = (np.abs(dvx) <= 4.0) & (Y < yc - 10.0) & (Y > yc - 32.0) & fat_in
    pt.paint(spinous, 520.0)
    vert_zone = np.sqrt((dvx / (1.1 * rv + 6)) ** 2 + (dvy / (rv + 6)) ** 2) <= 1.0

    rib_zone = (rho_c > 1.0 + 1.0 / ac0) & (rho_c <= 1.0 + 8.0 / ac0) & fat_in
    rib_period = _u(rng, 24.0, 30.0)
    phase_r = np.mod((Z + 0.45 * (Y - ccy)) / rib_period + _u(rng, 0, 1), 1.0)
    in_z = (Z > p["z_rec"] - 25.0) & (Z < p["z_top"] + 15.0)
    near_spine = (np.abs(dvx) < rv + 10.0) & (Y < ccy)
    anterior_mid = (np.abs(X - cx) < 28.0) & (Y > ccy)
    ribs = rib_zone & (phase_r < 0.36) & in_z & ~near_spine
    pt.paint(ribs & ~anterior_mid, 480.0)
    pt.paint(ribs & anterior_mid, HU["cartilage"])
    stern = (np.abs(X - cx) <= 14.0) & (Y > ccy + bc0 - 4.0) & (Y <= ccy + bc0 + 8.0) & in_z & fat_in
    stern &= Z > p["z_rec"] + 0.15 * p["lung_height"]
    pt.paint(stern, 420.0)
    bone = vert | ((r_canal > 7.0) & (r_canal <= 12.0) & body) | spinous | (ribs & ~anterior_mid) | stern

    # inside the cavity: soft tissue default (abdomen below the diaphragm)
    pt.paint(cavity & ~vert, HU["soft"])

    # ---- landmarks (mm) -----------------------------------------------------------------------------------
    H = p["lung_height"]
    z_top, z_rec = p["z_top"], p["z_rec"]
    hr = np.asarray(p["heart_radii"], float)
    dome = min(p["dome_left"], p["dome_right"])
    heart_c = np.array([mx + p["heart_dx"], ccy + _u(rng, 0.05, 0.2) * bc0, dome + 0.5 * hr[2]])
    p["heart_center"] = heart_c.tolist()
    z_arch = z_rec + H * _u(rng, 0.68, 0.73)
    z_car = z_arch - _u(rng, 12.0, 22.0)
    p["z_arch"], p["z_carina"] = float(z_arch), float(z_car)
    r_ao = p["aorta_radius"]
    r_asc = p["ascending_radius"]
    asc = np.array([mx + _u(rng, 10.0, 18.0), heart_c[1] + _u(rng, 0.0, 10.0)])
    desc = np.array([cx - rv - 0.6 * r_ao, yv + 0.55 * rv])
    p["aorta"] = {"asc_xy": asc.tolist(), "desc_xy": desc.tolist(), "r": r_ao, "r_asc": r_asc}
    rt = _u(rng, 7.5, 9.5)
    trach = np.array([mx + 2.0, yv + rv + 8.0 + rt])
    p["trachea"] = {"xy": trach.tolist(), "r": rt}
    eso = np.array([mx - 8.0, yv + rv + 3.0])
    hil_z = z_car - _u(rng, 10.0, 20.0)
    half_w = p["mediastinum_halfwidth"]
    hila = {
        "right": np.array([mx + half_w + _u(rng, 14, 22), ccy - 0.05 * bc0, hil_z]),
        "left": np.array([mx - half_w - _u(rng, 14, 22), ccy - 0.08 * bc0, hil_z - 6.0]),
    }
    p["hila"] = {k: v.tolist() for k, v in hila.items()}

    # tubes of the mediastinum: list of (p0, p1, radius, hu, lumen_hu)
    blood = p["blood_hu"]
    tubes: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    zbot = -0.5 * fz - 10.0
    ztop_fov = 0.5 * fz + 10.0
    tubes.append((np.r_[asc, heart_c[2]], np.r_[asc, z_arch], r_asc, blood))
    tubes.append((np.r_[desc, zbot], np.r_[desc, z_arch], r_ao, blood))
    # arch: half torus sampled as short segments
    mid = 0.5 * (asc + desc)
    R = 0.5 * float(np.linalg.norm(desc - asc))
    p["aorta"]["arch_R"] = R
    angles = np.linspace(0.0, np.pi, 9)
    arch_pts = [np.r_[mid + (asc - mid) * np.cos(t), z_arch + R * 0.8 * np.sin(t)] for t in angles]
    p["aorta"]["arch_pts"] = [q.tolist() for q in arch_pts]
    for k in range(len(arch_pts) - 1):
        rr = r_asc + (r_ao - r_asc) * (k + 0.5) / (len(arch_pts) - 1)
        tubes.append((arch_pts[k], arch_pts[k + 1], rr, blood))
    for frac, dxv in ((0.3, 6.0), (0.5, -2.0), (0.68, -10.0)):
        base = arch_pts[int(round(frac * (len(arch_pts) - 1)))]
        tubes.append((base, base + np.array([dxv, -4.0, ztop_fov - base[2]]), _u(rng, 4.5, 6.5), blood))
    svc_xy = np.array([asc[0] + r_asc + 7.0, asc[1] + 3.0])
    p["svc"] = {"xy": svc_xy.tolist(), "z0": float(heart_c[2] + 0.3 * hr[2]), "z1": float(ztop_fov)}
    tubes.append((np.r_[svc_xy, heart_c[2] + 0.3 * hr[2]], np.r_[svc_xy, ztop_fov], _u(rng, 8.0, 10.0), blood))
    pa0 = np.array([heart_c[0] + 8.0, heart_c[1] + 0.5 * hr[1], heart_c[2] + 0.55 * hr[2]])
    pa_bif = np.array([mx - 8.0, trach[1] + rt + 8.0, z_car - 6.0])
    tubes.append((pa0, pa_bif, _u(rng, 12.0, 14.0), blood))
    tubes.append((pa_bif, hila["right"], 9.0, blood))
    tubes.append((pa_bif, hila["left"], 9.0, blood))
    tubes.append((np.r_[eso, z_rec + 0.2 * H], np.r_[eso, ztop_fov], 7.0, 35.0))

    # ---- mediastinum region M ---------------------------------------------------------------------------
    eff = p["pericardial_effusion_mm"]
    epi, peri = 3.0, 2.0
    r_mean = float(np.mean(hr))
    q_myo = 1.0
    q_epi = 1.0 + epi / r_mean
    q_eff = q_epi + eff / r_mean
    q_peri = q_eff + peri / r_mean
    p["heart_q"] = {"epi": q_epi, "eff": q_eff, "peri": q_peri}
    sl_h, q_h = ellipsoid_box(grid, heart_c, hr, p["heart_angle"], pad=epi + eff + peri + 2.0)
    M = np.zeros(grid.shape, bool)
    if sl_h is not None:
        M[sl_h] |= q_h <= q_peri + 2.0 / r_mean
    # central column between vertebra and sternum, narrowing anteriorly (lungs may meet at the front)
    y0c, y1c = yv + rv, ccy + bc0 + 2.0
    ymid, ydep = 0.5 * (y0c + y1c), 0.5 * (y1c - y0c)
    taper = 1.0 - p["anterior_junction"] * np.clip((Y - ymid) / (0.75 * ydep), 0.0, 1.0)
    col = (np.abs(X - mx) <= half_w * taper) & (Y >= y0c - 2.0) & (Y <= y1c)
    M |= np.broadcast_to(col, grid.shape)
    tube_masks = []
    for p0, p1, r, _hu in tubes:
        sl, dist = segment_box(grid, p0, p1, r + 4.0)
        if sl is None:
            tube_masks.append((None, None, r, _hu))
            continue
        M[sl] |= dist <= r + 4.0
        tube_masks.append((sl, dist, r, _hu))
    # trachea and main bronchi (extrapulmonary airways: mediastinum)
    airway_tubes = [(np.r_[trach, z_car], np.r_[trach, ztop_fov], rt)]
    for side in ("right", "left"):
        airway_tubes.append((np.r_[trach, z_car], hila[side] + np.array([0.0, 4.0, 4.0]), 0.75 * rt))
    for p0, p1, r in airway_tubes:
        sl, dist = segment_box(grid, p0, p1, r + 3.0)
        if sl is not None:
            M[sl] |= dist <= r + 3.0

    # ---- diaphragm and apex surfaces; lungs ---------------------------------------------------------------
    def surfaces(side: str):
        sgn = 1.0 if side == "right" else -1.0
        xs = mx + sgn * 0.5 * ac0
        dome_z = p["dome_right"] if side == "right" else p["dome_left"]
        g = 1.0 - ((X - xs) / (0.62 * ac0)) ** 2 - ((Y - (ccy + 0.2 * bc0)) / (1.05 * bc0)) ** 2
        z_d = z_rec + (dome_z - z_rec) * np.sqrt(np.clip(g, 0.0, 1.0))
        ga = ((X - (mx + sgn * 0.45 * ac0)) / (0.6 * ac0)) ** 2 + ((Y - (ccy - 0.1 * bc0)) / (0.95 * bc0)) ** 2
        z_a = z_top - 0.35 * H * ga
        return z_d, z_a

    zd_r, za_r = surfaces("right")
    zd_l, za_l = surfaces("left")
    right_half = X > mx
    z_d = np.where(right_half, zd_r, zd_l)
    z_a = np.where(right_half, za_r, za_l)
    pleura = rho_c <= 1.0 - 2.0 / ac0
    lungs = pleura & ~M & ~vert_zone & (Z > z_d) & (Z < z_a)
    organs = np.zeros(grid.shape, np.uint8)
    organs[lungs & right_half] = 1
    organs[lungs & ~right_half] = 3
    zs = np.nonzero(lungs.any(axis=(0, 1)))[0]
    if zs.size == 0:
        raise RuntimeError("phantom has no lung voxels: the field of view is too small for the anatomy")
    z_lo, z_hi = int(zs[0]), int(zs[-1])
    zrange = np.zeros(grid.shape[2], bool)
    zrange[z_lo : z_hi + 1] = True
    # mediastinum stops at the diaphragm surface (the diaphragm under the lung bases and the upper abdomen under the
    # domes are background); the heart keeps its whole pericardial sac even where it dips below that surface
    above = Z > z_d
    if sl_h is not None:
        above = np.broadcast_to(above, grid.shape).copy()
        above[sl_h] |= q_h <= q_peri
    # heart/mediastinum truth: the non-lung tissue between the two lungs (see _between_lungs), in slices with
    # both lungs, above the diaphragm, excluding bone and everything at or behind the vertebral body's front
    front = yv + rv * np.sqrt(np.clip(1.0 - (dvx / (1.1 * rv)) ** 2, 0.0, 1.0))
    behind_spine = (np.abs(dvx) <= 1.1 * rv) & (Y <= front)
    between = _between_lungs(organs == 1, organs == 3)
    med = between & cavity & ~lungs & ~bone & ~behind_spine & zrange[None, None, :] & above
    organs[med] = 2

    # abdomen below the diaphragm: liver on the right, stomach (with air) on the left
    abdomen = cavity & ~vert & (Z <= z_d) & ~M
    pt.paint(abdomen & right_half, HU["liver"])
    pt.paint(abdomen & ~right_half, 32.0)
    stomach_air = abdomen & ~right_half & (Z > z_d - 18.0) & (Y > ccy + 0.1 * bc0) & (X < mx - 0.35 * ac0)
    pt.paint(stomach_air, HU["air"])

    # mediastinum: fat above the diaphragm (soft tissue below it), then heart, vessels, airways
    pt.paint(M & cavity & ~lungs & ~vert & (Z > z_d), HU["fat"])
    pt.paint(M & cavity & (Z <= z_d) & ~vert, HU["soft"])
    if sl_h is not None:
        heart_view = pt.hu[sl_h]
        inside_c = cavity[sl_h] if cavity.shape == grid.shape else np.broadcast_to(cavity, grid.shape)[sl_h]
        inside_c = inside_c & ~np.broadcast_to(vert, grid.shape)[sl_h]  # soft tissue never over the vertebral body
        shell_peri = (q_h > q_eff) & (q_h <= q_peri) & inside_c
        heart_view[(q_h <= q_eff) & (q_h > q_myo) & inside_c] = HU["fat"]
        heart_view[shell_peri] = 30.0
        heart_view[(q_h <= q_myo) & inside_c] = 38.0
        # blood pools: two chambers (right-anterior, left-posterior)
        xh, yh, zh = grid.sub(sl_h)
        ca, sa = np.cos(p["heart_angle"]), np.sin(p["heart_angle"])
        for off, scale in ((np.array([0.25, 0.35]), 0.5), (np.array([-0.2, -0.25]), 0.55)):
            cc = heart_c[:2] + off * hr[:2]
            du = ca * (xh - cc[0]) + sa * (yh - cc[1])
            dv = -sa * (xh - cc[0]) + ca * (yh - cc[1])
            dz = (zh - heart_c[2]) / (0.7 * hr[2])
            qq = np.sqrt((du / (scale * hr[0])) ** 2 + (dv / (scale * hr[1])) ** 2 + dz**2)
            heart_view[(qq <= 1.0) & (q_h <= q_myo) & inside_c] = blood
        p["heart_mask_q"] = q_peri
    for sl, dist, r, hu_t in tube_masks:
        if sl is None:
            continue
        inside = (dist <= r) & np.broadcast_to(cavity, grid.shape)[sl] & ~lungs[sl]
        inside &= ~np.broadcast_to(vert, grid.shape)[sl]  # vessels and oesophagus beside the vertebra, not over it
        view = pt.hu[sl]
        view[inside & (dist > r - 1.5)] = 40.0
        view[inside & (dist <= r - 1.5)] = hu_t
    airway_lumen_ext = np.zeros(grid.shape, bool)
    for p0, p1, r in airway_tubes:
        sl, dist = segment_box(grid, p0, p1, r + 2.0)
        if sl is None:
            continue
        view = pt.hu[sl]
        keep = np.broadcast_to(body, grid.shape)[sl]
        view[(dist <= r + 2.0) & (dist > r) & keep] = 30.0
        view[(dist <= r) & keep] = HU["air"]
        airway_lumen_ext[sl] |= (dist <= r) & keep

    # ---- lung parenchyma, vessels and intrapulmonary airways --------------------------------------------
    post = np.clip((ccy + 0.3 * bc0 - Y) / (1.3 * bc0), 0.0, 1.0)
    lung_hu = HU["lung"] - 12.0 + 55.0 * post
    pt.paint(lungs, np.broadcast_to(lung_hu, grid.shape))
    vrng = np.random.default_rng(p["seed_vessels"])
    vessel_w = np.zeros(grid.shape, np.float32)
    airway_lumen = np.zeros(grid.shape, bool)
    airway_wall = np.zeros(grid.shape, bool)
    vessel_segments = []
    for side in ("right", "left"):
        sgn = 1.0 if side == "right" else -1.0
        base_dirs = [
            np.array([0.55 * sgn, 0.1, 0.85]),
            np.array([0.95 * sgn, 0.15, 0.1]),
            np.array([0.55 * sgn, -0.45, -0.7]),
            np.array([0.5 * sgn, 0.55, -0.55]),
            np.array([0.35 * sgn, -0.3, 0.2]),
            np.array([0.6 * sgn, 0.6, 0.35]),
        ]
        stack = [(hila[side], d / np.linalg.norm(d), vrng.uniform(3.8, 5.0), vrng.uniform(0.22, 0.3) * H, 0)
                 for d in base_dirs]
        while stack:
            start, d, r, length, level = stack.pop()
            end = start + d * length
            vessel_segments.append((start, end, r, level))
            if level < 3:
                for _ in range(3 if level == 0 else 2):
                    nd = d + vrng.normal(0.0, 0.45, 3)
                    nd /= np.linalg.norm(nd)
                    frac = vrng.uniform(0.45, 1.0)
                    child_len = length * vrng.uniform(0.55, 0.75)
                    stack.append((start + d * length * frac, nd, r * 0.68, child_len, level + 1))
    for start, end, r, level in vessel_segments:
        sl, dist = segment_box(grid, start, end, r + vox)
        if sl is None:
            continue
        w = np.clip((r - dist) / vox + 0.5, 0.0, 1.0).astype(np.float32)
        np.maximum(vessel_w[sl], w, out=vessel_w[sl])
        if level <= 1:  # companion bronchus, offset a little
            off = np.array([0.0, 0.6 * r + 2.0, 0.0])
            rb = 0.75 * r
            slb, distb = segment_box(grid, start + off, end + off, rb + 1.2)
            if slb is not None:
                airway_wall[slb] |= (distb <= rb + 1.2) & (distb > rb * 0.55)
                airway_lumen[slb] |= distb <= rb * 0.55
    vessel_w *= lungs
    pt.hu += vessel_w * (HU["blood"] - pt.hu) * lungs
    airway_wall &= lungs & ~airway_lumen
    airway_lumen &= lungs
    pt.paint(airway_wall, -120.0)
    pt.paint(airway_lumen, HU["air"])

    # anterior chest wall / sternum over anything else already in front, body clipping
    pt.hu[~np.broadcast_to(body, grid.shape) & ~np.broadcast_to(tab, grid.shape)] = HU["air"]

    noise_sigma = np.where(lungs, np.float32(28.0), np.float32(12.0)).astype(np.float32)
    lobes = {}
    for side, label in (("right", 1), ("left", 3)):
        zz = np.nonzero((organs == label).any(axis=(0, 1)))[0]
        lo, hi = float(grid.z[zz[0]]), float(grid.z[zz[-1]])
        h = hi - lo
        lobes[side] = {"lower": (lo, lo + 0.38 * h), "mid": (lo + 0.38 * h, lo + 0.6 * h), "upper": (lo + 0.6 * h, hi)}
    p["lobes"] = lobes
    p["lung_z_range"] = [float(grid.z[z_lo]), float(grid.z[z_hi])]
    return Phantom(grid, pt.hu, organs, anatomy, airway_lumen | airway_lumen_ext & lungs, noise_sigma)
