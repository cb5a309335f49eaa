"""Learnability audit of the synthetic benchmark: can each rendered finding be seen at the resolution it is used at?

A label that no classifier can learn from the images says nothing about a network or an explanation method, so the
benchmark of Draelos & Carin (HiResCAM, arXiv:2011.08891) is only useful for labels whose abnormality is visible
in the volume the network receives. For every rendered label of :mod:`hirescam_ext.synthetic.findings`, at a
generator profile's grid and after the bundle's intensity preprocessing (HU window ``[-1000, 800]`` scaled to
``[0, 1]`` and shifted by ``-0.449``; the reproduction trains at the generated grid, so no resampling happens), the
audit measures:

* **voxels**: how many voxels the lesion mask keeps (and how many findings keep only 0 or 1), and the lesion's
  size against the voxel size;
* **contrast**: mean HU inside the lesion minus mean HU of a 2-voxel shell around it in the same organ (other
  lesions excluded), against the image noise of that organ (``cnr``), the Rose detectability
  ``|contrast| / noise * sqrt(voxels)``, and the shift the lesion makes in its organ's mean HU against the
  patient-to-patient spread of that mean in scans without the label (``cvr``, contrast-to-variation ratio);
* **oracle**: an L2 logistic regression on a few global intensity features of the organ that holds the finding
  (HU quantiles, fractions of voxels in HU bands, organ volume, counts and sizes of bright and dark connected
  spots, and their voxels that survive a morphological opening, i.e. blobs at least 3 voxels across)
  inside the generator's *truth* organ mask, with stratified k-fold cross-validation; its out-of-fold AUROC says
  whether the label is separable from simple image statistics.

A label is ``separable`` when the oracle AUROC is at least :data:`SEPARABLE_AUROC`; otherwise the report gives the
likely reasons (too few voxels, contrast below noise, organ-level shift below patient variation, no intensity
change).

Example:
    >>> from hirescam_ext.synthetic.audit import run_audit
    >>> from hirescam_ext.synthetic.generator import make_config
    >>> result = run_audit(make_config("tiny", n_scans=40), seed=0, labels=["lung_pleural_effusion"])
    >>> result["labels"]["lung_pleural_effusion"]["verdict"] in ("separable", "not separable")
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from hirescam_ext.labels import LABEL_NAMES, label_table
from hirescam_ext.metrics.auroc import binary_auroc
from hirescam_ext.synthetic.findings import SUPPORTED_LABELS, _IMPLIED
from hirescam_ext.synthetic.generator import GENERATOR_VERSION, SynthConfig, generate_case
from hirescam_ext.synthetic.visibility import MIN_ROSE, MIN_SHAPE_VOXELS, SEPARABLE_AUROC
from hirescam_ext.transforms.preprocessing import PAPER_CENTER, PAPER_HU_RANGE

__all__ = [
    "SEPARABLE_AUROC",
    "RENDERED_LABELS",
    "FEATURE_NAMES",
    "organ_group",
    "window",
    "organ_features",
    "fit_logistic",
    "cross_validated_auroc",
    "collect_scans",
    "summarize",
    "run_audit",
    "to_markdown",
    "comparison_markdown",
]

#: every label the generator can make positive (primary and implied labels), in ``LABEL_NAMES`` order.
RENDERED_LABELS: tuple[str, ...] = tuple(
    n for n in LABEL_NAMES if n in set(SUPPORTED_LABELS) | {x for v in _IMPLIED.values() for x in v}
)

_QUANTILES = (0.1, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.9)
_BANDS = (-1000.0, -950.0, -900.0, -800.0, -700.0, -500.0, -300.0, -100.0, 0.0, 20.0, 60.0, 200.0, 500.0, 800.1)
#: organ group -> (truth organ labels, thresholds of bright, dark and dense spots) in HU.
_GROUPS: dict[str, tuple[tuple[int, ...], float, float, float]] = {
    "lungs": ((1, 3), -400.0, -950.0, -100.0),
    "mediastinum": ((2,), 350.0, -500.0, 500.0),
}
_SPOT_BINS = ((1, 1), (2, 4), (5, 27), (28, 10**9))
_TINY_VOXEL_ML = 5.8 * 5.8 * 6.4 / 1000.0
#: volume limits (mL) of the two size classes of compact isolated blobs (diameters ~17 and ~37 mm).
_COMPACT_ML = (2.7, 27.5)

#: names of the features :func:`organ_features` returns, in order.
FEATURE_NAMES: tuple[str, ...] = (
    *(f"q{q:g}" for q in _QUANTILES),
    *(f"frac[{a:g},{b:g})" for a, b in zip(_BANDS[:-1], _BANDS[1:])),
    "log_volume",
    *(f"log1p_bright_spots_{a}-{b}" for a, b in _SPOT_BINS),
    "log1p_bright_voxels",
    "log1p_bright_largest_spot",
    "log1p_bright_opened_voxels",
    *(f"log1p_dark_spots_{a}-{b}" for a, b in _SPOT_BINS),
    "log1p_dark_voxels",
    "log1p_dark_largest_spot",
    "log1p_dark_opened_voxels",
    "log1p_isolated_dense_spots_1-3",
    "log1p_isolated_compact_blobs_le2.7mL",
    "log1p_isolated_compact_blobs_2.7-27.5mL",
)

_CONN26 = np.ones((3, 3, 3), bool)
_BALL = ndimage.generate_binary_structure(3, 1)


def organ_group(label: str) -> str:
    """``"lungs"`` or ``"mediastinum"``: the truth organ group that holds ``label``'s lesions."""
    return "mediastinum" if label_table()[label]["allowed_region"] == "heart_mediastinum" else "lungs"


def window(
    image: np.ndarray, hu_range: Sequence[float] = PAPER_HU_RANGE, center: float | None = PAPER_CENTER
) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's intensity preprocessing (clip to ``hu_range``, scale to [0, 1], add ``center``).

    Returns ``(network_input, hu_equivalent)``: the values the network sees and the same values mapped back to HU
    (the clipped HU), in which the audit reports contrasts.
    """
    lo, hi = float(hu_range[0]), float(hu_range[1])
    x = (np.clip(image.astype(np.float32), lo, hi) - lo) / (hi - lo) + np.float32(center or 0.0)
    return x, (x - np.float32(center or 0.0)) * (hi - lo) + lo


def _spot_features(sel: np.ndarray) -> list[float]:
    """Counts of connected spots by size, voxels, largest spot, and voxels that survive an opening with the
    6-neighbour ball (blobs at least 3 voxels across survive; 1-2 voxel thick vessels and noise do not)."""
    lab, n = ndimage.label(sel, structure=_CONN26)
    sizes = np.bincount(lab.ravel())[1:] if n else np.zeros(0, int)
    out = [math.log1p(int(((sizes >= a) & (sizes <= b)).sum())) for a, b in _SPOT_BINS]
    opened = ndimage.binary_opening(sel, structure=_BALL)
    return out + [math.log1p(int(sel.sum())), math.log1p(int(sizes.max()) if n else 0), math.log1p(int(opened.sum()))]


def _isolated_features(
    hu: np.ndarray, organ_mask: np.ndarray, bright: float, dense: float, voxel_ml: float = _TINY_VOXEL_ML
) -> list[float]:
    """Local-maximum style counts of spots that stand alone in the organ (nodule-like, not vessel-like).

    Connected components (26-neighbour) of voxels above ``bright``: small ones (1-3 voxels) holding a voxel above
    ``dense`` (full-contrast, not a partial-volume vessel edge), and compact ones (at least 4 voxels, keeping voxels
    after an opening with the 6-neighbour ball, bounding box at most twice as long as wide: not a tube) of up to
    2.7 mL and of 2.7-27.5 mL (12.5 and 128 voxels of the ``tiny`` grid; ``voxel_ml`` converts).
    """
    sel = (hu > bright) & organ_mask
    lab, n = ndimage.label(sel, structure=_CONN26)
    if n == 0:
        return [0.0, 0.0, 0.0]
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    dense_hit = np.bincount(lab[(hu > dense) & sel], minlength=n + 1) > 0
    opened = np.bincount(lab[ndimage.binary_opening(sel, structure=_BALL)], minlength=n + 1)
    k = np.arange(n + 1) > 0
    small = k & (sizes <= 3) & dense_hit
    ext = np.ones((n + 1, 3))
    for j, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is not None:
            ext[j] = [b.stop - b.start for b in box]
    round_ = ext.max(axis=1) <= 2.0 * ext.min(axis=1)
    ml = sizes * voxel_ml
    compact = k & (sizes >= 4) & (ml <= _COMPACT_ML[1]) & (opened > 0) & round_
    return [
        math.log1p(int(small.sum())),
        math.log1p(int((compact & (ml <= _COMPACT_ML[0])).sum())),
        math.log1p(int((compact & (ml > _COMPACT_ML[0])).sum())),
    ]


def organ_features(
    hu: np.ndarray, organ_mask: np.ndarray, group: str, spacing: Sequence[float] = (5.8, 5.8, 6.4)
) -> np.ndarray:
    """Global intensity features (:data:`FEATURE_NAMES`) of one organ group of one scan.

    Args:
        hu: windowed image in HU (see :func:`window`).
        organ_mask: boolean truth mask of the organ group.
        group: ``"lungs"`` or ``"mediastinum"`` (sets the bright/dark spot thresholds).
        spacing: voxel size (mm), for the volume limits of compact blobs.
    """
    _, bright, dark, dense = _GROUPS[group]
    v = hu[organ_mask]
    if v.size == 0:
        return np.zeros(len(FEATURE_NAMES))
    q = np.percentile(v, _QUANTILES)
    frac = np.histogram(v, bins=np.asarray(_BANDS))[0] / v.size
    feats = [*q, *frac, math.log(v.size)]
    feats += _spot_features((hu > bright) & organ_mask) + _spot_features((hu < dark) & organ_mask)
    feats += _isolated_features(hu, organ_mask, bright, dense, float(np.prod(spacing)) / 1000.0)
    return np.asarray(feats, float)


def _noise_sd(hu: np.ndarray, mask: np.ndarray) -> float:
    """Robust image-noise estimate: MAD of neighbour differences along x inside ``mask`` over sqrt(2)."""
    both = mask[1:] & mask[:-1]
    d = (hu[1:] - hu[:-1])[both]
    if d.size < 10:
        return float("nan")
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _lesion_stats(hu: np.ndarray, lesion: np.ndarray, organ: np.ndarray, all_lesions: np.ndarray) -> dict[str, Any]:
    n = int(lesion.sum())
    if n == 0:
        return {"voxels": 0, "mean_in": float("nan"), "mean_shell": float("nan")}
    idx = np.argwhere(lesion)
    lo = np.maximum(idx.min(0) - 3, 0)
    hi = np.minimum(idx.max(0) + 4, lesion.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    grown = ndimage.binary_dilation(lesion[sl], structure=_CONN26, iterations=2)
    shell = grown & organ[sl] & ~all_lesions[sl]
    mean_shell = float(hu[sl][shell].mean()) if shell.any() else float("nan")
    return {"voxels": n, "mean_in": float(hu[lesion].mean()), "mean_shell": mean_shell}


def collect_scans(
    config: SynthConfig,
    seed: int = 0,
    n_scans: int | None = None,
    labels: Sequence[str] | None = None,
    hu_range: Sequence[float] = PAPER_HU_RANGE,
    center: float | None = PAPER_CENTER,
    progress: Callable[[int, int], None] | None = None,
    render: SynthConfig | None = None,
) -> dict[str, Any]:
    """Generate scans in memory and measure labels, organ features and per-finding statistics.

    Args:
        config: generator config (profile grid, prevalence...).
        seed: dataset seed; scan ``i`` is ``generate_case(i, seed, config=config)``.
        n_scans: scans to generate (default ``config.n_scans``).
        labels: labels to audit (default :data:`RENDERED_LABELS`).
        hu_range: preprocessing window.
        center: preprocessing shift.
        progress: called as ``progress(done, total)`` after each scan.
        render: ``None`` (default: each scan is rendered on ``config``'s grid) or the config of a finer profile:
            each scan is rendered on its grid and brought to ``config``'s spacing and size by the bundle's spatial
            preprocessing (:func:`~hirescam_ext.transforms.preprocessing.prepare_volumes`: the CT bilinear, the
            organ map and lesion masks nearest), as a user's scan is prepared. The audit then measures what the
            model sees of a finding after partial volume and resampling.

    Returns:
        ``{"labels", "y" [N, L], "features" {group: [N, F]}, "organ_mean" {group: [N]}, "noise" {group: [N]},
        "findings" [per finding: scan, labels, voxels, size_mm, mean_in, mean_shell]}``.
    """
    labels = list(labels or RENDERED_LABELS)
    n = int(n_scans if n_scans is not None else config.n_scans)
    col = [LABEL_NAMES.index(lab) for lab in labels]
    ys: list[list[int]] = []
    finds: list[dict[str, Any]] = []
    feats: dict[str, list] = {g: [] for g in _GROUPS}
    means: dict[str, list] = {g: [] for g in _GROUPS}
    noise: dict[str, list] = {g: [] for g in _GROUPS}
    for i in range(n):
        case = generate_case(i, seed, config=render or config)
        image, organs, lesions = case.image, case.organs, case.lesions
        if render is not None:
            from hirescam_ext.transforms.preprocessing import prepare_volumes

            maps = {"organs": organs}
            if lesions.shape[-1]:
                maps["lesions"] = np.moveaxis(lesions, -1, 0).astype(np.uint8)
            hu_t, moved = prepare_volumes(image, case.affine, config.spacing, config.shape, maps)
            image, organs = hu_t.numpy(), moved["organs"].numpy()
            if "lesions" in moved:
                lesions = np.moveaxis(moved["lesions"].numpy(), 0, -1)
            else:
                lesions = np.zeros((*config.shape, 0), np.uint8)
        _, hu = window(image, hu_range, center)
        ys.append([case.label[c] for c in col])
        masks = {g: np.isin(organs, ids) for g, (ids, *_) in _GROUPS.items()}
        for g, m in masks.items():
            feats[g].append(organ_features(hu, m, g, config.spacing))
            means[g].append(float(hu[m].mean()) if m.any() else float("nan"))
            noise[g].append(_noise_sd(hu, m))
        all_lesions = lesions.any(axis=-1) if lesions.shape[-1] else np.zeros(hu.shape, bool)
        for k, f in enumerate(case.findings):
            if not set(f.labels) & set(labels):
                continue
            stats = _lesion_stats(hu, lesions[..., k] > 0, masks[organ_group(f.label)], all_lesions)
            finds.append({"scan": i, "labels": list(f.labels), "size_mm": f.size_mm, **stats})
        if progress is not None:
            progress(i + 1, n)
    return {
        "labels": labels,
        "y": np.asarray(ys, int).reshape(n, len(labels)),
        "features": {g: np.asarray(v) for g, v in feats.items()},
        "organ_mean": {g: np.asarray(v) for g, v in means.items()},
        "noise": {g: np.asarray(v) for g, v in noise.items()},
        "findings": finds,
    }


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> np.ndarray:
    """L2-penalised logistic regression by Newton's method; returns ``[bias, *weights]`` (bias not penalised).

    Args:
        x: features ``[N, F]`` (standardise them first).
        y: 0/1 targets ``[N]``.
        l2: penalty on the squared weights (times 1/2).
        iterations: maximum Newton steps.
    """
    a = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(a.shape[1])
    pen = np.full(a.shape[1], float(l2))
    pen[0] = 1e-8
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -30, 30)))
        grad = a.T @ (p - y) + pen * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def cross_validated_auroc(
    x: np.ndarray, y: np.ndarray, folds: int = 5, l2: float = 1.0, seed: int = 0
) -> tuple[float, np.ndarray]:
    """Out-of-fold AUROC of :func:`fit_logistic` with stratified ``folds``-fold cross-validation.

    Features are standardised with the training folds' mean and SD. Returns ``(auroc, out_of_fold_scores)``;
    NaN when ``y`` has fewer than 2 samples of a class.
    """
    y = np.asarray(y, int)
    scores = np.zeros(len(y))
    if min(int(y.sum()), int((1 - y).sum())) < 2:
        return float("nan"), scores
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % folds
    for k in range(folds):
        tr, te = fold != k, fold == k
        if not te.any():
            continue
        mu, sd = x[tr].mean(0), x[tr].std(0)
        sd[sd < 1e-9] = 1.0
        w = fit_logistic((x[tr] - mu) / sd, y[tr], l2=l2)
        scores[te] = w[0] + ((x[te] - mu) / sd) @ w[1:]
    return binary_auroc(scores, y), scores


def _hanley_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUROC."""
    if not np.isfinite(auc) or n_pos == 0 or n_neg == 0:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return float(math.sqrt(max(var, 0.0)))


def _f(v: Any, nd: int = 3) -> Any:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return round(float(v), nd)


def summarize(data: dict[str, Any], spacing: Sequence[float], folds: int = 5, l2: float = 1.0) -> dict[str, Any]:
    """Per-label audit from :func:`collect_scans`: prevalence, voxels, contrast, oracle AUROC, verdict, reasons."""
    voxel_mm = float(np.prod(spacing))
    out: dict[str, Any] = {}
    for j, lab in enumerate(data["labels"]):
        g = organ_group(lab)
        y = data["y"][:, j]
        n_pos = int(y.sum())
        rows = [f for f in data["findings"] if lab in f["labels"]]
        vox = np.asarray([f["voxels"] for f in rows], float)
        contrast = np.asarray([f["mean_in"] - f["mean_shell"] for f in rows], float)
        noise = float(np.nanmedian(data["noise"][g]))
        organ_vox = np.exp(data["features"][g][:, FEATURE_NAMES.index("log_volume")])
        shift = [(f["voxels"] * (f["mean_in"] - f["mean_shell"])) / organ_vox[f["scan"]] for f in rows]
        neg_mean = data["organ_mean"][g][y == 0]
        variation = float(np.nanstd(neg_mean)) if neg_mean.size > 1 else float("nan")
        auc, _ = cross_validated_auroc(data["features"][g], y, folds=folds, l2=l2)
        sizes = [f["size_mm"] for f in rows if f["size_mm"]]
        med_vox = float(np.median(vox)) if vox.size else float("nan")
        med_contrast = float(np.nanmedian(contrast)) if np.isfinite(contrast).any() else float("nan")
        cnr = abs(med_contrast) / noise if noise > 0 else float("nan")
        rose = (
            float(np.nanmedian(np.abs(contrast) / noise * np.sqrt(np.maximum(vox, 0))))
            if np.isfinite(contrast).any()
            else float("nan")
        )
        cvr = float(np.nanmedian(np.abs(shift))) / variation if shift and variation > 0 else float("nan")
        entry = {
            "organ": g,
            "scans": int(len(y)),
            "positives": n_pos,
            "prevalence": _f(n_pos / max(len(y), 1)),
            "findings": len(rows),
            "voxels_median": _f(med_vox, 1),
            "voxels_p10": _f(np.percentile(vox, 10) if vox.size else None, 1),
            "findings_0_voxels": int((vox == 0).sum()),
            "findings_1_voxel": int((vox == 1).sum()),
            "size_mm_median": _f(np.median(sizes) if sizes else None, 1),
            "equiv_diameter_mm_median": _f((6 * med_vox * voxel_mm / math.pi) ** (1 / 3) if vox.size else None, 1),
            "voxel_mm": [float(s) for s in spacing],
            "contrast_hu_median": _f(med_contrast, 1),
            "noise_hu": _f(noise, 1),
            "cnr": _f(cnr, 2),
            "rose_median": _f(rose, 2),
            "organ_shift_hu_median": _f(np.nanmedian(np.abs(shift)) if shift else None, 2),
            "organ_variation_hu": _f(variation, 2),
            "cvr": _f(cvr, 2),
            "oracle_auroc": _f(auc),
            "oracle_auroc_se": _f(_hanley_se(auc, n_pos, len(y) - n_pos)),
        }
        entry["verdict"] = "separable" if np.isfinite(auc) and auc >= SEPARABLE_AUROC else "not separable"
        entry["reasons"] = [] if entry["verdict"] == "separable" else _reasons(entry, n_pos)
        out[lab] = entry
    return out


def _reasons(e: dict[str, Any], n_pos: int) -> list[str]:
    """Why a label is not separable: generator-side causes first, then the oracle's own limit."""
    r = []
    auc, se = e["oracle_auroc"], e["oracle_auroc_se"]
    if auc is not None and se is not None and auc >= SEPARABLE_AUROC - se:
        r.append(f"borderline: within one SE ({se:g}) of {SEPARABLE_AUROC:g}")
    if n_pos < 10:
        r.append(f"too few positive scans ({n_pos})")
    few = e["voxels_median"] is not None and e["voxels_median"] <= MIN_SHAPE_VOXELS
    if few:
        r.append(
            f"too few voxels to have a shape (median {e['voxels_median']:g}; {e['findings_1_voxel']} of"
            f" {e['findings']} findings keep 1 voxel): told apart by HU only, which normal structures or other"
            " findings share"
        )
    faint = False
    if e["cnr"] is not None and e["cnr"] < 1.0:
        faint = True
        r.append(f"no intensity change (contrast {e['contrast_hu_median']} HU vs noise {e['noise_hu']} HU)")
    elif e["rose_median"] is not None and e["rose_median"] < MIN_ROSE:
        faint = True
        r.append(f"contrast below noise (Rose {e['rose_median']:g} < {MIN_ROSE:g})")
    if e["cvr"] is not None and e["cvr"] < 1.0:
        r.append(f"organ-level shift below patient variation (CVR {e['cvr']:g} < 1)")
    if not few and not faint:
        r.append(
            "visible locally (Rose >= 5) but not by global organ statistics: normal structures of the same HU"
            " (vessels, heart, contrast blood) or other findings mimic it; needs a location-aware model"
        )
    return r


def run_audit(
    config: SynthConfig,
    seed: int = 0,
    n_scans: int | None = None,
    labels: Sequence[str] | None = None,
    folds: int = 5,
    l2: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    render: SynthConfig | None = None,
) -> dict[str, Any]:
    """Generate ``n_scans`` scans of ``config`` and audit every label (see the module docstring); with ``render``, the
    scans are rendered on that finer config's grid and resampled to ``config``'s (see :func:`collect_scans`).

    Returns a JSON-able dict: ``generator_version``, ``seed``, ``shape``, ``spacing``, ``scans``, ``oracle``
    (model description) and ``labels`` (label -> :func:`summarize` entry).
    """
    data = collect_scans(config, seed=seed, n_scans=n_scans, labels=labels, progress=progress, render=render)
    return {
        "generator_version": GENERATOR_VERSION,
        "rendered_at": None if render is None else {"shape": [int(v) for v in render.shape],
                                                    "spacing": [float(v) for v in render.spacing]},
        "seed": int(seed),
        "shape": [int(v) for v in config.shape],
        "spacing": [float(v) for v in config.spacing],
        "scans": int(len(data["y"])),
        "preprocessing": {"hu_range": [float(v) for v in PAPER_HU_RANGE], "center": PAPER_CENTER},
        "oracle": {
            "model": "L2 logistic regression (Newton), standardised features",
            "l2": float(l2),
            "folds": int(folds),
            "features": list(FEATURE_NAMES),
            "separable_auroc": SEPARABLE_AUROC,
        },
        "labels": summarize(data, config.spacing, folds=folds, l2=l2),
    }


def to_markdown(result: dict[str, Any], command: str | None = None, title: str | None = None) -> str:
    """A Markdown report: one row per label (prevalence, voxels, contrast ratio, oracle AUROC, verdict, reasons)."""
    sp = " x ".join(f"{v:g}" for v in result["spacing"])
    lines = [
        f"# {title or 'Learnability audit of the synthetic generator'}",
        "",
        f"Generator {result['generator_version']}, grid {' x '.join(map(str, result['shape']))} voxels of {sp} mm,"
        f" {result['scans']} scans (seed {result['seed']}), after the bundle's HU window"
        f" {result['preprocessing']['hu_range']}.",
    ]
    if command:
        lines += ["", "Command:", "", "```", command, "```"]
    lines += [
        "",
        f"Oracle: {result['oracle']['model']} (L2 {result['oracle']['l2']:g}, {result['oracle']['folds']}-fold"
        " out-of-fold AUROC, +- Hanley-McNeil SE) on global features of the truth organ that holds the finding"
        " (HU quantiles, HU-band fractions, volume, bright / dark spot counts, sizes and opened voxels, isolated"
        f" dense spots and compact blobs). Separable: AUROC >= {result['oracle']['separable_auroc']}.",
        "",
        "Voxels: lesion-mask voxels per finding (median, and findings with 1 voxel). Contrast: lesion mean minus a"
        " 2-voxel shell in the same organ (HU, median). CNR: |contrast| / noise per voxel. Rose: CNR x sqrt(voxels)"
        " (median; < 5 is hard to see). CVR: shift of the organ's mean HU caused by the lesion / SD of that mean"
        " across scans without the label.",
        "",
        "| label | organ | prev. | voxels (1-vox) | size mm | contrast HU | noise | CNR | Rose | CVR | oracle AUROC"
        " | verdict | why not |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def s(v: Any, fmt: str = "{:g}") -> str:
        return "-" if v is None else fmt.format(v)

    for lab, e in result["labels"].items():
        size = e["size_mm_median"] if e["size_mm_median"] is not None else e["equiv_diameter_mm_median"]
        size_s = s(size) + ("" if e["size_mm_median"] is not None else " (eq.)")
        auc = "-" if e["oracle_auroc"] is None else f"{e['oracle_auroc']:.3f} +- {s(e['oracle_auroc_se'], '{:.2f}')}"
        lines.append(
            f"| {lab} | {e['organ']} | {s(e['prevalence'], '{:.2f}')} | {s(e['voxels_median'])}"
            f" ({e['findings_1_voxel']}/{e['findings']}) | {size_s} | {s(e['contrast_hu_median'])} | {s(e['noise_hu'])}"
            f" | {s(e['cnr'])} | {s(e['rose_median'])} | {s(e['cvr'])} | {auc} | {e['verdict']}"
            f" | {'; '.join(e['reasons'])} |"
        )
    n_sep = sum(e["verdict"] == "separable" for e in result["labels"].values())
    lines += ["", f"Separable: {n_sep} of {len(result['labels'])} labels.", ""]
    return "\n".join(lines)


def comparison_markdown(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Markdown table of two audits of the same profile (e.g. two generator versions): voxels and oracle AUROC."""
    vb, va = before["generator_version"], after["generator_version"]
    lines = [
        f"| label | voxels {vb} | voxels {va} | oracle AUROC {vb} | oracle AUROC {va} | verdict {va} |",
        "|---|---|---|---|---|---|",
    ]

    def auc(e: dict[str, Any]) -> str:
        return "-" if e["oracle_auroc"] is None else f"{e['oracle_auroc']:.3f} +- {e['oracle_auroc_se']:.2f}"

    for lab, ea in after["labels"].items():
        eb = before["labels"].get(lab)
        if eb is None:
            continue
        lines.append(
            f"| {lab} | {eb['voxels_median']:g} | {ea['voxels_median']:g} | {auc(eb)} | {auc(ea)} | {ea['verdict']} |"
        )
    nb = sum(e["verdict"] == "separable" for e in before["labels"].values())
    na = sum(e["verdict"] == "separable" for e in after["labels"].values())
    lines += ["", f"Separable: {nb} -> {na} of {len(after['labels'])} labels."]
    return "\n".join(lines)
