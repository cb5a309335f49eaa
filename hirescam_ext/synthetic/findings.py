"""Abnormalities of the synthetic benchmark: sampling with a prevalence table, rendering into a phantom, truth masks.

Every finding carries one primary label from ``hirescam_ext.labels.LABEL_NAMES`` (``label``), every label it
makes positive (``labels``: a nodule over 1 cm is also a nodule, a calcified granuloma is also a calcification,
as a report labeler reading the sentence would conclude), its side and lobe for lung findings, a size in mm, and
the truth locations (names of ``LOCATION_NAMES``). Rendering writes HU into the phantom and returns an exact
boolean lesion mask per finding.

Mask rules (the allowed region of a label must contain its lesion, Draelos & Carin, HiResCAM,
arXiv:2011.08891, "allowed regions"):

* Lung findings are clipped to the organ-map lung of their side(s). Pleural effusion and pneumothorax occupy the
  pleural space, which the organ map labels as lung (filled lung masks), so their masks lie in the lung label.
* Heart-group findings are clipped to organ label 2 (heart/mediastinum).
* Lung finding masks are disjoint (a later lesion never overwrites an earlier one's voxels). Heart-group masks may
  overlap: cardiomegaly's mask is the whole heart with its pericardium, which contains any pericardial effusion,
  coronary calcification or pacemaker lead tip.
* ``heart_pacemaker_or_defib``: the generator sits in the subcutaneous chest wall (rendered as metal, NOT part of
  the mask); the mask is the lead where it runs inside label 2 (great veins and right heart). Its truth
  locations are ``heart`` and ``chest_wall``.

Visibility on coarse grids (generator 1.4.0, from the learnability audit :mod:`hirescam_ext.synthetic.audit`,
docs/learnability/): a soft-tissue nodule has the attenuation of a pulmonary vessel, so below ~3 voxels across it is a
single voxel that no classifier tells from a vessel (oracle AUROC 0.59 at the 5.8 mm ``tiny`` grid). Nodules are
therefore drawn at least 1.05 voxels (of the coarsest axis) in radius, nodules over 1 cm at least 1.5 voxels (the
reported ``size_mm`` is kept; ``detail["rendered_diameter_mm"]`` records the drawn size), and focal lung lesions are
placed off the vessels and airway walls of the healthy lung and off earlier lesions, with a one-voxel margin, so they
stay solitary blobs instead of fusing with a vessel. On the 0.8 mm paper grid neither rule changes anything.

Example:
    >>> import numpy as np
    >>> from hirescam_ext.synthetic.findings import DEFAULT_PREVALENCE, sample_findings
    >>> fs = sample_findings(np.random.default_rng(1), DEFAULT_PREVALENCE, normal_fraction=0.0)
    >>> all(f.label in DEFAULT_PREVALENCE for f in fs)
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hirescam_ext.synthetic.phantom import HU, Phantom, ellipsoid_box, segment_box
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES

__all__ = [
    "Finding",
    "DEFAULT_PREVALENCE",
    "SUPPORTED_LABELS",
    "CONFOUNDED_LABEL",
    "LOBE_NAMES",
    "sample_findings",
    "anatomy_modifiers",
    "render_findings",
    "location_table",
    "label_vector",
]

#: the label whose presence the confounder knob ties to subcutaneous fat thickness.
CONFOUNDED_LABEL = "h_great_vessel_atherosclerosis"

#: per-scan probability of each supported abnormality (before the normal-scan draw); configurable.
DEFAULT_PREVALENCE: dict[str, float] = {
    "lung_nodule": 0.40,
    "lung_nodulegr1cm": 0.15,
    "lung_mass": 0.08,
    "lung_pleural_effusion": 0.18,
    "lung_emphysema": 0.20,
    "lung_consolidation": 0.12,
    "lung_groundglass": 0.15,
    "lung_cyst": 0.10,
    "lung_atelectasis": 0.25,
    "lung_granuloma": 0.15,
    "lung_pneumothorax": 0.06,
    "heart_cardiomegaly": 0.14,
    "heart_pericardial_effusion": 0.10,
    "h_great_vessel_atherosclerosis": 0.35,
    "heart_coronary_artery_disease": 0.28,
    "heart_pacemaker_or_defib": 0.08,
    "h_mediastinum_lymphadenopathy": 0.15,
    "h_great_vessel_aneurysm": 0.06,
}

#: abnormalities this generator can render.
SUPPORTED_LABELS: tuple[str, ...] = tuple(DEFAULT_PREVALENCE)

#: implied labels (a finding of the key label also makes these positive).
_IMPLIED = {"lung_nodulegr1cm": ["lung_nodule"], "lung_granuloma": ["lung_calcification"]}

#: lobe names by side and zone (left "mid" is the lingula).
LOBE_NAMES = {
    ("right", "upper"): "right upper lobe",
    ("right", "mid"): "right middle lobe",
    ("right", "lower"): "right lower lobe",
    ("left", "upper"): "left upper lobe",
    ("left", "mid"): "lingula",
    ("left", "lower"): "left lower lobe",
}

_LUNG_LOBE_WEIGHTS = {"upper": 0.4, "mid": 0.2, "lower": 0.4}
# mediastinal node stations (names used in reports; no side words so the label stays in the mediastinum)
_NODE_STATIONS = ("paratracheal", "subcarinal", "prevascular")


@dataclass
class Finding:
    """One abnormality of one scan.

    Attributes:
        label: primary label (one of ``LABEL_NAMES``).
        labels: every label this finding makes positive (``label`` first).
        side: ``"right"``, ``"left"``, ``"both"`` for lung findings, else ``None``.
        lobe: ``"upper"``, ``"mid"``, ``"lower"``: the zone (by height) the lung finding lies in, else ``None``.
        size_mm: characteristic size (diameter, thickness) in mm, or ``None``.
        locations: truth locations (names of ``LOCATION_NAMES``): what the report states (the lobe and the lung
            of each side; ``centrilobular`` for centrilobular emphysema; pleural findings name the side only).
        certainty: ``"definite"`` or ``"possible"`` (how the report words it).
        detail: extra descriptors (severity, node station, count...; ``rendered_diameter_mm`` when a nodule is drawn
            larger than ``size_mm`` because the grid is too coarse for it, see "Visibility" in the module docstring).
        center_mm: world position (RAS, mm) of the finding's centre once rendered.
        mask_voxels: voxel count of the rendered lesion mask.
    """

    label: str
    labels: list[str]
    side: str | None = None
    lobe: str | None = None
    size_mm: float | None = None
    locations: list[str] = field(default_factory=list)
    certainty: str = "definite"
    detail: dict[str, Any] = field(default_factory=dict)
    center_mm: list[float] | None = None
    mask_voxels: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lung_locations(side: str, lobes: list[str] | None) -> list[str]:
    sides = ["right", "left"] if side == "both" else [side]
    out = []
    for s in sides:
        for lobe in lobes or []:
            out.append(f"{s}_{lobe}")
        out.append(f"{s}_lung")
    return out


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    w = np.asarray([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _make(label: str, rng: np.random.Generator) -> Finding:
    """Draw side, lobe, size and descriptors of one finding."""
    labels = [label, *_IMPLIED.get(label, [])]
    side = str(rng.choice(["right", "left"]))
    lobe = _pick(rng, _LUNG_LOBE_WEIGHTS)
    f = Finding(label=label, labels=labels)
    if label in ("lung_nodule", "lung_nodulegr1cm", "lung_mass", "lung_cyst", "lung_granuloma"):
        lo, hi = {
            "lung_nodule": (4, 9),
            "lung_nodulegr1cm": (11, 28),
            "lung_mass": (32, 60),
            "lung_cyst": (10, 35),
            "lung_granuloma": (3, 7),
        }[label]
        f.side, f.lobe, f.size_mm = side, lobe, float(int(rng.integers(lo, hi + 1)))
        f.locations = _lung_locations(side, [lobe])
        if label == "lung_cyst" and rng.random() < 0.35:
            f.certainty = "possible"
    elif label in ("lung_consolidation", "lung_groundglass"):
        f.side, f.lobe = side, lobe
        f.size_mm = float(int(rng.integers(30, 80)))
        f.locations = _lung_locations(side, [lobe])
        if rng.random() < 0.2:
            f.certainty = "possible"
    elif label == "lung_atelectasis":
        f.side = str(rng.choice(["right", "left", "both"], p=[0.35, 0.35, 0.3]))
        f.lobe = "lower"
        f.locations = _lung_locations(f.side, ["lower"])
        if rng.random() < 0.25:
            f.certainty = "possible"
    elif label == "lung_pleural_effusion":
        f.side = str(rng.choice(["right", "left", "both"], p=[0.35, 0.25, 0.4]))
        f.lobe = "lower"  # dependent fluid at the base; the report names the side only
        sev = _pick(rng, {"small": 0.5, "moderate": 0.35, "large": 0.15})
        f.detail["severity"] = sev
        depth = {"small": (18, 32), "moderate": (36, 55), "large": (60, 85)}[sev]  # fluid depth above the back (mm)
        f.size_mm = float(rng.uniform(*depth))
        f.locations = _lung_locations(f.side, None)
        if sev == "small" and rng.random() < 0.25:
            f.certainty = "possible"
    elif label == "lung_emphysema":
        f.side = "both" if rng.random() < 0.75 else side
        f.lobe = "upper"
        f.detail["severity"] = _pick(rng, {"mild": 0.5, "moderate": 0.35, "severe": 0.15})
        f.detail["pattern"] = _pick(rng, {"centrilobular": 0.6, "": 0.4})
        f.locations = _lung_locations(f.side, ["upper"]) + (["centrilobular"] if f.detail["pattern"] else [])
    elif label == "lung_pneumothorax":
        f.side, f.lobe = side, "upper"  # non-dependent air, anterior and apical; the report names the side only
        sev = _pick(rng, {"small": 0.7, "moderate": 0.3})
        f.detail["severity"] = sev
        f.size_mm = float(rng.uniform(8, 16) if sev == "small" else rng.uniform(18, 30))
        f.locations = _lung_locations(side, None)
    elif label == "heart_cardiomegaly":
        f.detail["severity"] = _pick(rng, {"mild": 0.6, "moderate": 0.4})
        f.locations = ["heart"]
    elif label == "heart_pericardial_effusion":
        f.detail["severity"] = _pick(rng, {"small": 0.7, "moderate": 0.3})
        f.size_mm = float(rng.uniform(5, 10) if f.detail["severity"] == "small" else rng.uniform(11, 18))
        f.locations = ["heart"]
        if f.detail["severity"] == "small" and rng.random() < 0.25:
            f.certainty = "possible"
    elif label == "h_great_vessel_atherosclerosis":
        f.detail["severity"] = _pick(rng, {"mild": 0.5, "moderate": 0.35, "severe": 0.15})
        f.locations = ["aorta"]
    elif label == "heart_coronary_artery_disease":
        f.detail["severity"] = _pick(rng, {"mild": 0.5, "moderate": 0.3, "severe": 0.2})
        f.locations = ["heart"]
    elif label == "heart_pacemaker_or_defib":
        f.detail["device"] = _pick(rng, {"pacemaker": 0.7, "defibrillator": 0.3})
        f.locations = ["heart", "chest_wall"]
    elif label == "h_mediastinum_lymphadenopathy":
        f.detail["station"] = str(rng.choice(list(_NODE_STATIONS)))
        f.size_mm = float(int(rng.integers(11, 26)))
        f.locations = ["mediastinum"]
    elif label == "h_great_vessel_aneurysm":
        f.size_mm = float(int(rng.integers(45, 58)))
        f.locations = ["aorta"]
    else:  # pragma: no cover - guarded by SUPPORTED_LABELS
        raise ValueError(f"unsupported synthetic abnormality {label!r}")
    return f


def sample_findings(
    rng: np.random.Generator,
    prevalence: dict[str, float],
    normal_fraction: float = 0.15,
    atherosclerosis: bool | None = None,
) -> list[Finding]:
    """Draw the findings of one scan.

    Args:
        rng: the case's random generator.
        prevalence: label -> probability (labels must be in :data:`SUPPORTED_LABELS`).
        normal_fraction: probability that the scan has no finding other than the confounded label.
        atherosclerosis: when not ``None``, forces presence of :data:`CONFOUNDED_LABEL` (the confounder knob).
    """
    unknown = sorted(set(prevalence) - set(SUPPORTED_LABELS))
    if unknown:
        raise ValueError(f"prevalence table names labels the generator cannot render: {unknown}")
    normal = rng.random() < normal_fraction
    present = []
    for label in SUPPORTED_LABELS:
        draw = rng.random()  # always drawn, so the table's other entries do not shift the stream
        if label == CONFOUNDED_LABEL and atherosclerosis is not None:
            if atherosclerosis:
                present.append(label)
            continue
        if not normal and draw < prevalence.get(label, 0.0):
            present.append(label)
    findings = []
    for label in present:
        sub = np.random.default_rng(rng.integers(0, 2**63 - 1))
        findings.append(_make(label, sub))
    # an effusion and a pneumothorax on the same side would fight over the pleural space: drop the pneumothorax
    eff = [f for f in findings if f.label == "lung_pleural_effusion"]
    if eff:
        eff_sides = {"right", "left"} if eff[0].side == "both" else {eff[0].side}
        findings = [f for f in findings if not (f.label == "lung_pneumothorax" and f.side in eff_sides)]
    return findings


def anatomy_modifiers(findings: list[Finding], rng: np.random.Generator) -> dict[str, Any]:
    """Keyword arguments for :func:`hirescam_ext.synthetic.phantom.sample_anatomy` that findings change."""
    kw: dict[str, Any] = {}
    for f in findings:
        if f.label == "heart_cardiomegaly":
            lo, hi = (1.18, 1.26) if f.detail["severity"] == "mild" else (1.27, 1.36)
            kw["heart_scale"] = float(rng.uniform(lo, hi))
        elif f.label == "heart_pericardial_effusion":
            kw["pericardial_effusion_mm"] = float(f.size_mm)
        elif f.label == "h_great_vessel_aneurysm":
            kw["ascending_aorta_radius_mm"] = 0.5 * float(f.size_mm)
    return kw


# ------------------------------------------------------------------------------------------------ rendering
def _sphere_mask(ph: Phantom, center, radius: float, lobulation: float = 0.0, rng=None):
    radii = np.array([radius, radius, radius]) * (1.0 + lobulation)
    sl, q = ellipsoid_box(ph.grid, center, radii)
    if sl is None:
        return None, None
    if lobulation:
        x, y, z = ph.grid.sub(sl)
        ph_a, ph_b, ph_c = rng.uniform(0, 2 * np.pi, 3)
        wav = 1.0 + lobulation * (np.sin(0.25 * x + ph_a) * np.sin(0.23 * y + ph_b) + np.sin(0.27 * z + ph_c)) / 2
        q = q * (1.0 + lobulation) / wav
    return sl, q <= 1.0


def _ensure_center(mask: np.ndarray, ph: Phantom, center, allowed: np.ndarray) -> None:
    """Tiny lesions below the voxel size: keep at least the voxel at the centre (inside ``allowed``)."""
    if not mask.any():
        idx = ph.grid.index_of(np.asarray(center))
        if allowed[idx]:
            mask[idx] = True


def _zone_mask(ph: Phantom, side: str, zone: str | None) -> np.ndarray:
    lung = ph.lung(side)
    if zone is None:
        return lung
    lo, hi = ph.lobe_bounds(side)[zone]
    z = ph.grid.z
    keep = (z >= lo) & (z <= hi)
    return lung & keep[None, None, :]


def _choose_center(
    ph: Phantom,
    side: str,
    zone: str | None,
    radius: float,
    occupied: np.ndarray,
    rng,
    structures: np.ndarray | None = None,
) -> np.ndarray:
    """A lesion centre in the zone whose sphere lies mostly inside the lung and off earlier lesions.

    With ``structures`` (a mask of vessels and airway walls), the sphere grown by one voxel should also stay off
    them and off earlier lesions: a solitary nodule in aerated lung, not one fused with a vessel into a single blob
    on a coarse grid.
    """
    cand = _zone_mask(ph, side, zone)
    if not cand.any():
        cand = ph.lung(side)
    idx = np.flatnonzero(cand)
    lung = ph.lung(side)
    margin = float(max(ph.grid.spacing))
    best, best_score = None, -np.inf
    for _ in range(24 if structures is None else 48):
        flat = idx[int(rng.integers(len(idx)))]
        ijk = np.unravel_index(flat, ph.grid.shape)
        c = np.array([ph.grid.x[ijk[0]], ph.grid.y[ijk[1]], ph.grid.z[ijk[2]]], float)
        sl, q = ellipsoid_box(ph.grid, c, np.array([radius] * 3))
        inside = q <= 1.0
        n = max(int(inside.sum()), 1)
        frac = float((inside & lung[sl]).sum()) / n - 2.0 * float((inside & occupied[sl]).sum()) / n
        touching = 0
        if structures is not None:
            sl2, q2 = ellipsoid_box(ph.grid, c, np.array([radius + margin] * 3))
            near = q2 <= 1.0
            touching = int((near & (structures[sl2] | occupied[sl2])).sum())
            frac -= 2.0 * touching / max(int(near.sum()), 1)
        if frac > best_score:
            best, best_score = c, frac
        if frac > 0.92 and touching == 0:
            break
    return best


#: smallest rendered radius of soft-tissue nodules, in voxels of the coarsest axis. 1.05 voxels gives a ball of at
#: least 7 voxels (3 across on every axis), which a 6-neighbour opening keeps, unlike a 1-voxel spot or a thin
#: vessel; nodules over 1 cm get at least 1.5 voxels (19 voxels), so they stay larger than the small ones.
_MIN_RADIUS_VOXELS = {"lung_nodule": 1.05, "lung_nodulegr1cm": 1.5}


def render_findings(
    ph: Phantom, findings: list[Finding], rng: np.random.Generator, plaque_scale: float = 1.0
) -> list[np.ndarray]:
    """Render ``findings`` into ``ph.hu`` (in place) and return one boolean mask per finding.

    Masks are clipped to the organ region of the finding (module docstring); ``Finding.center_mm`` and
    ``Finding.mask_voxels`` are filled in. ``plaque_scale`` multiplies the number and the radius of the aortic
    calcified plaques of atherosclerosis (1 = the default rendering, the same random stream).
    """
    grid, hu = ph.grid, ph.hu
    X, Y, Z = grid.X, grid.Y, grid.Z
    an = ph.anatomy.params
    occupied = np.zeros(grid.shape, bool)
    med = ph.organs == 2
    # vessels and airway walls of the healthy lungs, which solitary nodules keep off (see _choose_center)
    structures = (ph.organs == 1) | (ph.organs == 3)
    structures &= hu > -500.0
    masks: list[np.ndarray] = []
    # pleural space findings first, focal lung lesions after, heart group last
    order = sorted(range(len(findings)), key=lambda i: _RENDER_ORDER.get(findings[i].label, 5))
    out: dict[int, np.ndarray] = {}
    for i in order:
        f = findings[i]
        m = np.zeros(grid.shape, bool)
        lab = f.label
        if lab in ("lung_nodule", "lung_nodulegr1cm", "lung_mass", "lung_granuloma", "lung_cyst"):
            r = 0.5 * f.size_mm
            if lab in _MIN_RADIUS_VOXELS:
                # a soft-tissue nodule below ~3 voxels across is one voxel, as dense as a vessel: not visible
                r_min = _MIN_RADIUS_VOXELS[lab] * float(max(grid.spacing))
                if r < r_min:
                    r = r_min
                    f.detail["rendered_diameter_mm"] = round(2.0 * r, 1)
            c = _choose_center(ph, f.side, f.lobe, r, occupied, rng, structures)
            lob = {"lung_nodulegr1cm": 0.12, "lung_mass": 0.2}.get(lab, 0.0)
            sl, sph = _sphere_mask(ph, c, r, lob, rng)
            allowed = ph.lung(f.side) & ~occupied
            if sl is not None:
                m[sl] = sph & allowed[sl]
            _ensure_center(m, ph, c, allowed)
            if lab == "lung_cyst":
                sl2, q2 = ellipsoid_box(grid, c, np.array([r, r, r]))
                wall = (q2 > 1.0 - 1.2 / r) & (q2 <= 1.0)
                hu[m] = HU["air"] + 15.0
                hu[sl2][wall & m[sl2]] = -150.0
            else:
                val = {"lung_granuloma": 650.0, "lung_mass": 35.0}.get(lab, 30.0)
                hu[m] = val
            f.center_mm = c.tolist()
        elif lab in ("lung_consolidation", "lung_groundglass"):
            r = 0.5 * f.size_mm
            c = _choose_center(ph, f.side, f.lobe, 0.6 * r, occupied, rng)
            radii = r * rng.uniform(0.7, 1.1, 3)
            sl, q = ellipsoid_box(grid, c, radii, float(rng.uniform(0, np.pi)))
            x, y, z = grid.sub(sl)
            a1, a2 = rng.uniform(0, 2 * np.pi, 2)
            q = q * (1.0 + 0.15 * np.sin(0.2 * x + a1) * np.cos(0.18 * z + a2))
            m[sl] = (q <= 1.0) & ph.lung(f.side)[sl] & ~occupied[sl]
            _ensure_center(m, ph, c, ph.lung(f.side) & ~occupied)
            if lab == "lung_consolidation":
                hu[m & ~ph.airway_lumen] = 35.0
            else:
                sel = m & (hu < -450.0)
                hu[sel] = np.minimum(hu[sel] + 250.0, -450.0)
            f.center_mm = c.tolist()
        elif lab == "lung_pleural_effusion":
            sides = ["right", "left"] if f.side == "both" else [f.side]
            for s in sides:
                lo = ph.lobe_bounds(s)["lower"][0]
                h_eff = 1.6 * f.size_mm + 40.0
                y_back = an["y_back"]
                level = y_back + f.size_mm * np.clip(1.0 - (Z - lo) / h_eff, 0.0, 1.0) + 3.0 * (Z < lo + h_eff)
                m |= ph.lung(s) & (Y < level) & (Z < lo + h_eff)
            m &= ~occupied
            hu[m] = 10.0
        elif lab == "lung_atelectasis":
            sides = ["right", "left"] if f.side == "both" else [f.side]
            eff = next((g for g in findings if g.label == "lung_pleural_effusion"), None)
            eff_mask = out.get(findings.index(eff)) if eff is not None and findings.index(eff) in out else None
            thick = float(rng.uniform(7.0, 14.0))
            f.size_mm = round(thick, 1)
            for s in sides:
                lung = ph.lung(s)
                lo, hi = ph.lobe_bounds(s)["lower"]
                if eff_mask is not None and (eff_mask & lung).any():
                    # compressive atelectasis: the lung just above the fluid surface
                    fluid = eff_mask & lung
                    ys = np.where(fluid, np.arange(grid.shape[1])[None, :, None], -1).max(axis=1, keepdims=True)
                    top = np.where(ys >= 0, grid.y[np.clip(ys, 0, None)], -1e9)
                    band = lung & ~fluid & (Y > top) & (Y <= top + thick)
                else:
                    xs = float(rng.uniform(0.2, 0.7)) * an["cavity"]["a"] * (1 if s == "right" else -1) + an["mx"]
                    band = lung & (Y < an["y_back"] + thick + 8.0) & (Z < lo + 0.8 * (hi - lo))
                    band &= np.abs(X - xs) < 45.0
                m |= band & ~occupied
            hu[m] = float(rng.uniform(15.0, 45.0))
        elif lab == "lung_emphysema":
            sides = ["right", "left"] if f.side == "both" else [f.side]
            n = {"mild": 14, "moderate": 28, "severe": 50}[f.detail["severity"]]
            for s in sides:
                zone = _zone_mask(ph, s, "upper") & (hu < -500.0)
                idx = np.flatnonzero(zone)
                if idx.size == 0:
                    continue
                for flat in idx[rng.integers(0, idx.size, n)]:
                    ijk = np.unravel_index(flat, grid.shape)
                    c = np.array([grid.x[ijk[0]], grid.y[ijk[1]], grid.z[ijk[2]]])
                    sl, q = ellipsoid_box(grid, c, rng.uniform(3.0, 10.0, 3))
                    m[sl] |= (q <= 1.0) & zone[sl]
                m &= ~occupied
            hu[m] = rng.uniform(-985.0, -955.0)
        elif lab == "lung_pneumothorax":
            lung = ph.lung(f.side)
            mid_lo = ph.lobe_bounds(f.side)["mid"][0]
            y_front = an["y_front"]
            m = lung & (Y > y_front - 2.0 - f.size_mm) & (Z > mid_lo) & ~occupied
            hu[m] = HU["air"] + 5.0
        elif lab == "heart_cardiomegaly":
            sl, q = ellipsoid_box(grid, an["heart_center"], an["heart_radii"], an["heart_angle"], pad=30.0)
            m[sl] = (q <= an["heart_q"]["peri"]) & med[sl]
        elif lab == "heart_pericardial_effusion":
            sl, q = ellipsoid_box(grid, an["heart_center"], an["heart_radii"], an["heart_angle"], pad=30.0)
            hq = an["heart_q"]
            m[sl] = (q > 1.0 + 1.0 / np.mean(an["heart_radii"])) & (q <= hq["eff"]) & med[sl]
            hu[m] = HU["water"] + 4.0
        elif lab == "h_great_vessel_atherosclerosis":
            n = {"mild": 5, "moderate": 10, "severe": 18}[f.detail["severity"]]
            m = _aortic_plaques(ph, n, rng, plaque_scale) & med
            hu[m] = rng.uniform(550.0, 900.0)
        elif lab == "heart_coronary_artery_disease":
            n = {"mild": 3, "moderate": 6, "severe": 10}[f.detail["severity"]]
            hc, hr, ang = np.asarray(an["heart_center"]), np.asarray(an["heart_radii"]), an["heart_angle"]
            q_s = 1.0 + 1.5 / float(np.mean(hr))
            for _ in range(n):
                th = rng.uniform(-0.2 * np.pi, 0.9 * np.pi)  # anterior and left surface (the grooves)
                el = rng.uniform(-0.1, 0.8)
                u = np.array([np.cos(th) * np.cos(el), np.sin(th) * np.cos(el), np.sin(el)]) * hr * q_s
                ca, sa = np.cos(ang), np.sin(ang)
                c = hc + np.array([ca * u[0] - sa * u[1], sa * u[0] + ca * u[1], u[2]])
                sl, q = ellipsoid_box(grid, c, np.full(3, rng.uniform(1.5, 3.0)))
                if sl is not None:
                    m[sl] |= (q <= 1.0) & med[sl]
                    if not (q <= 1.0).any():
                        _ensure_center(m, ph, c, med)
            hu[m] = rng.uniform(500.0, 950.0)
        elif lab == "heart_pacemaker_or_defib":
            m = _pacemaker(ph, rng) & med
        elif lab == "h_mediastinum_lymphadenopathy":
            c = _node_center(ph, f.detail["station"], f.size_mm)
            rr = 0.5 * f.size_mm * np.array([1.0, 1.1, 1.35])
            sl, q = ellipsoid_box(grid, c, rr)
            if sl is not None:
                m[sl] = (q <= 1.0) & med[sl]
            _ensure_center(m, ph, c, med)
            hu[m] = 42.0
            f.center_mm = c.tolist()
        elif lab == "h_great_vessel_aneurysm":
            ao = an["aorta"]
            p0 = np.r_[ao["asc_xy"], an["heart_center"][2]]
            p1 = np.r_[ao["asc_xy"], an["z_arch"]]
            sl, dist = segment_box(grid, p0, p1, ao["r_asc"])
            if sl is not None:
                m[sl] = (dist <= ao["r_asc"]) & med[sl]
        if not m.any():
            m = _fallback_mask(ph, f, occupied, med)
        if f.center_mm is None and m.any():
            ijk = np.argwhere(m).mean(axis=0)
            axes = (grid.x, grid.y, grid.z)
            f.center_mm = [float(np.interp(ijk[k], np.arange(grid.shape[k]), axes[k])) for k in range(3)]
        f.mask_voxels = int(m.sum())
        occupied |= m
        out[i] = m
    masks = [out[i] for i in range(len(findings))]
    return masks


#: representative attenuation of a finding, used when a fallback mask must be painted.
_FALLBACK_HU = {
    "lung_nodule": 30.0,
    "lung_nodulegr1cm": 30.0,
    "lung_mass": 35.0,
    "lung_granuloma": 650.0,
    "lung_cyst": -990.0,
    "lung_consolidation": 35.0,
    "lung_groundglass": -600.0,
    "lung_atelectasis": 30.0,
    "lung_pleural_effusion": 10.0,
    "lung_emphysema": -970.0,
    "lung_pneumothorax": -1000.0,
    "heart_pericardial_effusion": 12.0,
    "h_great_vessel_atherosclerosis": 700.0,
    "heart_coronary_artery_disease": 700.0,
    "heart_pacemaker_or_defib": HU["metal"],
    "h_mediastinum_lymphadenopathy": 42.0,
}


def _fallback_mask(ph: Phantom, f: Finding, occupied: np.ndarray, med: np.ndarray) -> np.ndarray:
    """A small lesion at the allowed voxel nearest to the intended place, for the rare case where the shape
    rendered at this resolution left no voxel inside the allowed region (coarse grids, crowded lungs)."""
    grid = ph.grid
    allowed = med if f.side is None else ph.lung(f.side)
    free = allowed & ~occupied
    region = free if free.any() else allowed
    pts = np.argwhere(region)
    world = np.stack([grid.x[pts[:, 0]], grid.y[pts[:, 1]], grid.z[pts[:, 2]]], axis=1)
    target = np.asarray(f.center_mm) if f.center_mm is not None else world.mean(axis=0)
    best = world[int(np.argmin(((world - target) ** 2).sum(axis=1)))]
    r = max(0.5 * (f.size_mm or 0.0), max(grid.spacing))
    sl, q = ellipsoid_box(grid, best, np.full(3, r))
    m = np.zeros(grid.shape, bool)
    m[sl] = (q <= 1.0) & region[sl]
    m[grid.index_of(best)] = True
    if f.label in _FALLBACK_HU:
        ph.hu[m] = _FALLBACK_HU[f.label]
    f.center_mm = [float(v) for v in best]
    return m


_RENDER_ORDER = {
    "lung_pleural_effusion": 0,
    "lung_pneumothorax": 0,
    "lung_atelectasis": 1,
    "lung_emphysema": 2,
    "lung_consolidation": 3,
    "lung_groundglass": 3,
    "heart_cardiomegaly": 6,
    "heart_pericardial_effusion": 7,
    "h_great_vessel_aneurysm": 7,
    "h_great_vessel_atherosclerosis": 8,
    "heart_coronary_artery_disease": 8,
    "h_mediastinum_lymphadenopathy": 8,
    "heart_pacemaker_or_defib": 9,
}


def _aortic_plaques(ph: Phantom, n: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """``n`` calcified plaques on the aortic wall (spots where small spheres of radius 2-4 mm meet the wall shell),
    their number and radius multiplied by ``scale``."""
    n = max(1, int(round(n * scale)))
    grid, an = ph.grid, ph.anatomy.params
    ao = an["aorta"]
    z_lo, z_hi = an["lung_z_range"]
    segs = [
        (np.r_[ao["asc_xy"], an["heart_center"][2]], np.r_[ao["asc_xy"], an["z_arch"]], ao["r_asc"]),
        (np.r_[ao["desc_xy"], z_lo], np.r_[ao["desc_xy"], an["z_arch"]], ao["r"]),
    ]
    pts = [np.asarray(q) for q in ao["arch_pts"]]
    segs += [(pts[k], pts[k + 1], ao["r"]) for k in range(len(pts) - 1)]
    mask = np.zeros(grid.shape, bool)
    for _ in range(n):
        p0, p1, r = segs[int(rng.integers(len(segs)))]
        t = rng.uniform(0.1, 0.9)
        axis_pt = p0 + t * (p1 - p0)
        d = p1 - p0
        d = d / (np.linalg.norm(d) or 1.0)
        v = rng.normal(size=3)
        v -= v.dot(d) * d
        v /= np.linalg.norm(v) or 1.0
        c = axis_pt + v * (r - 0.5)
        if not (z_lo <= c[2] <= z_hi):
            continue
        sl, q = ellipsoid_box(grid, c, np.full(3, rng.uniform(2.0, 4.0) * scale))
        sl2, dist = segment_box(grid, p0, p1, r + 1.5)
        if sl is None or sl2 is None:
            continue
        spot = np.zeros(grid.shape, bool)
        spot[sl] = q <= 1.0
        shell = np.zeros(grid.shape, bool)
        shell[sl2] = (dist > r - 2.5) & (dist <= r + 1.0)
        hit = spot & shell
        if not hit.any():
            idx = grid.index_of(c)
            hit[idx] = True
        mask |= hit
    if not mask.any():  # every plaque fell outside the lungs' extent: put one on the arch
        mask[grid.index_of(pts[len(pts) // 2] + np.array([0.0, 0.0, ao["r"] - 0.5]))] = True
    return mask


def _node_center(ph: Phantom, station: str, size: float) -> np.ndarray:
    an = ph.anatomy.params
    tx, ty = an["trachea"]["xy"]
    rt = an["trachea"]["r"]
    zc, za = an["z_carina"], an["z_arch"]
    ao = an["aorta"]
    r = 0.5 * size
    if station == "paratracheal":
        return np.array([tx + rt + r + 2.0, ty + 2.0, zc + 12.0 + r])
    if station == "subcarinal":
        return np.array([tx, ty - 2.0, zc - r - 6.0])
    return np.array([an["mx"] + 4.0, ao["asc_xy"][1] + ao["r_asc"] + r + 3.0, za - 4.0])


def _pacemaker(ph: Phantom, rng: np.random.Generator) -> np.ndarray:
    """Render a generator in the left anterior chest wall and a transvenous lead; return the lead mask."""
    grid, an, hu = ph.grid, ph.anatomy.params, ph.hu
    cav = an["cavity"]
    gx = cav["cx"] - 0.55 * cav["a"]
    gz = an["z_top"] - rng.uniform(10.0, 30.0)
    ix, _, iz = grid.index_of(np.array([gx, 0.0, gz]))
    col = hu[ix, :, iz] > -400.0
    ys = np.nonzero(col)[0]
    y_skin = float(grid.y[ys[-1]]) if ys.size else an["y_front"] + 20.0
    gy = y_skin - 7.0
    sl, q = ellipsoid_box(grid, np.array([gx, gy, gz]), np.array([22.0, 4.0, 18.0]))
    if sl is not None:
        hu[sl][q <= 1.0] = HU["metal"]
    hc, hr = np.asarray(an["heart_center"]), np.asarray(an["heart_radii"])
    svc = an["svc"]
    pts = [
        np.array([gx + 15.0, gy - 6.0, gz + 4.0]),
        np.array([an["mx"] - 25.0, an["y_front"] - 30.0, an["z_arch"] + 30.0]),
        np.array([svc["xy"][0], svc["xy"][1], an["z_arch"] + 25.0]),
        np.array([svc["xy"][0], svc["xy"][1], svc["z0"]]),
        hc + np.array([0.1 * hr[0], 0.2 * hr[1], -0.1 * hr[2]]),
        hc + np.array([-0.45 * hr[0], 0.45 * hr[1], -0.55 * hr[2]]),
    ]
    r = max(1.2, 0.55 * min(grid.spacing))
    lead = np.zeros(grid.shape, bool)
    for a_, b_ in zip(pts[:-1], pts[1:]):
        sl, dist = segment_box(grid, a_, b_, r)
        if sl is not None:
            lead[sl] |= dist <= r
    hu[lead] = HU["metal"]
    return lead


def location_table(findings: list[Finding]) -> np.ndarray:
    """Truth location table ``[80, 51]`` (uint8) of a scan: rows ``LABEL_NAMES``, columns ``LOCATION_NAMES``."""
    table = np.zeros((len(LABEL_NAMES), len(LOCATION_NAMES)), np.uint8)
    row = {n: i for i, n in enumerate(LABEL_NAMES)}
    col = {n: j for j, n in enumerate(LOCATION_NAMES)}
    for f in findings:
        for lab in f.labels:
            for loc in f.locations:
                table[row[lab], col[loc]] = 1
    return table


def label_vector(findings: list[Finding]) -> list[int]:
    """80 ints (0/1) in ``LABEL_NAMES`` order."""
    present = {lab for f in findings for lab in f.labels}
    return [int(n in present) for n in LABEL_NAMES]
