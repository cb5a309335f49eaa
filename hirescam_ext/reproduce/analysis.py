"""Analyses beyond the bundle's evaluation: localization against true lesion masks, the confounder's attention,
and the model-randomization sanity check.

* **Localization** (the synthetic benchmark knows where every lesion is): for each test scan and each true finding,
  the *pointing game* asks whether the map's maximum cell on the attention grid touches the lesion, and the
  *mass share* is the fraction of the (trilinearly upsampled, normalized) map's mass inside the lesion voxels.
  Chance levels (a uniform map) are reported next to them.
* **Confounder** (the paper's case study of a shortcut): share of the confounded label's map that falls in the body
  wall (body tissue outside the three organs: HU above -500 and organ label 0) and outside its allowed region
  (heart/mediastinum).
* **Confounder ledger**: HiResCAM's raw map of AxialNet sums to the logit minus the bias (mean slice pooling), so
  it splits each scan's logit of the confounded label exactly into the parts computed at body-wall, heart /
  mediastinum, lung and outside-body cells. Regressing each part on the scan's fat thickness and on the label shows
  where the model reads the shortcut, and with which sign: the paper's mask loss only penalizes *positive*
  attention outside the allowed region, so a shortcut read as negative evidence, or read through a receptive field
  that reaches the fat from an allowed cell, is invisible to it.
* **Sanity check** (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018): the model's layers are
  re-initialized one block at a time from the top (cascading randomization); the Spearman rank correlation between
  the trained model's raw maps and the randomized model's must fall.

Draelos & Carin, HiResCAM, arXiv:2011.08891 (Sections 3-5) motivate all three: HiResCAM explains the computation
that produced the score, so its maps should follow the evidence and collapse when the model is destroyed.

Example:
    >>> import torch
    >>> mask = torch.zeros(8, 8, 6, dtype=torch.bool)
    >>> mask[6, 1, 5] = True  # X = 6, Y = 1, Z = 5
    >>> lesion_on_grid(mask, (2, 2, 2)).nonzero().tolist()  # [H, D1, D2]
    [[1, 1, 0]]
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from hirescam_ext.synthetic.findings import CONFOUNDED_LABEL
from hirescam_ext.engines.evaluator import resize_maps_to
from hirescam_ext.labels import LABEL_NAMES, ORGAN_LABELS
from hirescam_ext.utils.errors import InputError
from hirescam_ext.visualize import GradCAM, HiResCAM, upsample_axial_maps

__all__ = [
    "METHODS",
    "BODY_HU",
    "make_explainers",
    "device_of",
    "load_volume",
    "lesion_on_grid",
    "maps_on_grid",
    "localization",
    "confounder_attention",
    "LEDGER_REGIONS",
    "region_fractions_on_grid",
    "confounder_ledger",
    "shortcut_score_auroc",
    "lesion_to_fat_ratio_needed",
    "randomization_blocks",
    "cascading_randomization",
    "spearman",
    "training_fit",
]

#: explanation methods, in table order
METHODS = ("gradcam", "hirescam")
#: HU above which a voxel counts as body tissue (fat is about -100, lung about -850)
BODY_HU = -500.0


def make_explainers(network: nn.Module) -> dict[str, Any]:
    """``{"gradcam": GradCAM, "hirescam": HiResCAM}`` for ``network``, maps laid out ``[B, K, H, D1, D2]``."""
    from hirescam_ext.reproduce.workflows import AxialLayout

    cams: dict[str, Any] = {"gradcam": GradCAM(network), "hirescam": HiResCAM(network)}
    return {name: AxialLayout(cam) if cam.volume_layout else cam for name, cam in cams.items()}


def _fit(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Symmetric zero pad / centre crop of the first three axes to ``size`` (the preprocessing's geometry)."""
    out = array
    for axis, target in enumerate(size):
        n = out.shape[axis]
        if n > target:
            start = (n - target) // 2
            out = np.take(out, range(start, start + target), axis=axis)
        elif n < target:
            before = (target - n) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, target - n - before)
            out = np.pad(out, pad)
    return out


def load_volume(
    path: str | os.PathLike, size: Sequence[int], spacing: Sequence[float] | None = None, mode: str = "nearest"
) -> np.ndarray:
    """A NIfTI volume in RAS (``as_closest_canonical``), padded/cropped to ``size`` like the network input.

    With ``spacing`` (mm), a volume of another voxel size is first resampled to it as the bundle's preprocessing
    resamples a scan (:func:`~hirescam_ext.transforms.spacing.resample_to_spacing`, corner-aligned), every channel
    of a 4D volume alike: ``mode="nearest"`` keeps the dtype (label maps, as the bundle resamples organ maps),
    ``"bilinear"`` gives float32 (a CT, as the bundle resamples the image).

    Raises:
        InputError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "volume not found")
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types for broken files
        raise InputError(path, f"unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
    if spacing is not None:
        from hirescam_ext.transforms.spacing import resample_to_spacing

        stack = data.ndim == 4  # [X, Y, Z, K]: the channels last
        channels = torch.as_tensor(np.moveaxis(data, 3, 0) if stack else data[None])
        moved, _ = resample_to_spacing(channels, img.affine, [float(v) for v in spacing], mode=mode)
        out = moved.numpy().astype(data.dtype if mode == "nearest" else np.float32, copy=False)
        data = np.moveaxis(out, 0, 3) if stack else out[0]
    return _fit(data, size)


def lesion_on_grid(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Boolean ``[H, D1, D2]``: grid cells touched by a voxel mask ``[X, Y, Z]`` (max pooling, Z -> H triplets)."""
    m = mask.float().permute(2, 0, 1)[None, None]  # [1, 1, Z, X, Y]
    return F.adaptive_max_pool3d(m, tuple(int(g) for g in grid))[0, 0] > 0.5


def device_of(module: nn.Module | None) -> torch.device:
    """The device of ``module``'s first parameter (CPU for ``None`` or a module without parameters)."""
    param = next(module.parameters(), None) if module is not None else None
    return param.device if param is not None else torch.device("cpu")


def maps_on_grid(explainer: Any, image: torch.Tensor, class_idx: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """Normalized maps ``[K, H, D1, D2]`` of ``class_idx`` for one image ``[1, X, Y, Z]``, on the regions grid.

    The image is moved to the explained network's device; the maps come back on the CPU.
    """
    x = image[None].to(device_of(getattr(explainer, "nn_module", None)))
    with torch.enable_grad():
        maps = explainer(x, class_idx=[int(i) for i in class_idx], upsample=False).detach().float().cpu()
    return resize_maps_to(maps, tuple(grid))[0].clamp_min(0)


def _findings(dataset_dir: Path) -> dict[str, Any]:
    path = dataset_dir / "findings.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read the synthetic findings ({exc})") from exc


def localization(
    items: Sequence[dict[str, Any]],
    explainers: dict[str, Any],
    dataset_dir: str | os.PathLike,
    spatial_size: Sequence[int],
    spacing: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Pointing game and lesion mass share of each method over every (scan, true finding) pair of ``items``.

    Args:
        items: preprocessed items (``image`` ``[1, X, Y, Z]``, ``regions`` ``[M, H, D1, D2]``, ``accession``).
        explainers: ``{method: explainer}`` (:func:`make_explainers`).
        dataset_dir: the synthetic dataset folder (``findings.json``, ``lesions/<acc>.nii.gz``).
        spatial_size: network input size (lesion masks are padded/cropped to it).
        spacing: the network grid's voxel size when the dataset was made at another (:func:`load_volume`).

    Returns:
        ``{method: {"pointing_game", "mass_share", "mass_enrichment", "pointing_game_per_label"}, "chance":
        {"pointing_game", "mass_share", "pointing_game_per_label"}, "n_pairs", "n_pairs_per_label"}``; a label's
        chance is the mean share of grid cells its lesions touch.
    """
    folder = Path(dataset_dir)
    findings = _findings(folder)
    hits: dict[str, list[float]] = {m: [] for m in explainers}
    share: dict[str, list[float]] = {m: [] for m in explainers}
    chance_hit: list[float] = []
    chance_share: list[float] = []
    per_label: dict[str, dict[str, list[float]]] = {m: {} for m in explainers}
    chance_label: dict[str, list[float]] = {}
    for item in items:
        acc = str(item["accession"])
        record = findings.get(acc)
        if record is None:
            raise InputError(folder / "findings.json", f"no record for accession {acc}")
        if not record.get("findings"):
            continue
        lesions = load_volume(folder / "lesions" / f"{acc}.nii.gz", spatial_size, spacing)
        masks: dict[str, np.ndarray] = {}
        for k, finding in enumerate(record["findings"]):
            if k >= lesions.shape[3]:
                raise InputError(
                    folder / "lesions" / f"{acc}.nii.gz", f"has no channel {k} for finding {finding['label']}"
                )
            name = finding["label"]
            masks[name] = masks.get(name, np.zeros(lesions.shape[:3], bool)) | (lesions[..., k] > 0)
        names = [n for n, m in masks.items() if m.any() and n in LABEL_NAMES]
        if not names:
            continue
        idx = [LABEL_NAMES.index(n) for n in names]
        image = torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32)
        grid = tuple(item["regions"].shape[1:])
        vol = torch.stack([torch.as_tensor(masks[n]) for n in names])  # [K, X, Y, Z]
        cells = torch.stack([lesion_on_grid(v, grid) for v in vol])  # [K, H, D1, D2]
        touched = cells.flatten(1).float().mean(1).tolist()
        chance_hit += touched
        for n, c in zip(names, touched):
            chance_label.setdefault(n, []).append(c)
        chance_share += vol.flatten(1).float().mean(1).tolist()
        for method, explainer in explainers.items():
            maps = maps_on_grid(explainer, image, idx, grid)  # [K, H, D1, D2]
            flat = maps.flatten(1)
            top = flat.argmax(1)
            ok = (flat.amax(1) > 0) & cells.flatten(1).gather(1, top[:, None])[:, 0]
            up = upsample_axial_maps(maps[None], image.shape[1:])[0].clamp_min(0)  # [K, X, Y, Z]
            total = up.flatten(1).sum(1)
            inside = (up * vol).flatten(1).sum(1)
            frac = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
            hits[method] += ok.float().tolist()
            share[method] += frac.tolist()
            for n, h, s in zip(names, ok.float().tolist(), frac.tolist()):
                per_label[method].setdefault(n, []).append(h)
    out: dict[str, Any] = {"n_pairs": len(chance_hit)}
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    base_share = mean(chance_share)
    for method in explainers:
        s = mean(share[method])
        out[method] = {
            "pointing_game": mean(hits[method]),
            "mass_share": s,
            "mass_enrichment": (s / base_share) if (s is not None and base_share) else None,
            "pointing_game_per_label": {n: mean(v) for n, v in sorted(per_label[method].items())},
        }
    out["chance"] = {"pointing_game": mean(chance_hit), "mass_share": base_share,
                     "pointing_game_per_label": {n: mean(v) for n, v in sorted(chance_label.items())}}
    out["n_pairs_per_label"] = {n: len(v) for n, v in sorted(chance_label.items())}
    return out


def confounder_attention(
    items: Sequence[dict[str, Any]],
    explainers: dict[str, Any],
    dataset_dir: str | os.PathLike,
    spatial_size: Sequence[int],
    label: str = CONFOUNDED_LABEL,
    spacing: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Where the confounded label's maps look: share in the body wall and outside heart/mediastinum.

    Every scan of ``items`` counts (present or not: the shortcut is used on both). The allowed region is the
    heart/mediastinum of the organ truth at the network input's resolution (``spacing``: see :func:`load_volume`).
    """
    folder = Path(dataset_dir)
    idx = LABEL_NAMES.index(label)
    wall: dict[str, list[float]] = {m: [] for m in explainers}
    outside: dict[str, list[float]] = {m: [] for m in explainers}
    wall_frac: list[float] = []
    for item in items:
        acc = str(item["accession"])
        hu = load_volume(folder / "images" / f"{acc}.nii.gz", spatial_size, spacing, "bilinear").astype(np.float32)
        organs = load_volume(folder / "organs" / f"{acc}.nii.gz", spatial_size, spacing)
        body_wall = torch.as_tensor((hu > BODY_HU) & (organs == 0))
        heart = torch.as_tensor(organs == ORGAN_LABELS["heart_mediastinum"])
        wall_frac.append(float(body_wall.float().mean()))
        image = torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32)
        grid = tuple(item["regions"].shape[1:])
        for method, explainer in explainers.items():
            maps = maps_on_grid(explainer, image, [idx], grid)
            up = upsample_axial_maps(maps[None], image.shape[1:])[0, 0].clamp_min(0)
            total = float(up.sum())
            if total <= 0:
                continue
            wall[method].append(float((up * body_wall).sum()) / total)
            outside[method].append(1.0 - float((up * heart).sum()) / total)
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    out: dict[str, Any] = {"label": label, "n_scans": len(wall_frac), "chance_body_wall": mean(wall_frac)}
    for method in explainers:
        out[method] = {
            "body_wall_share": mean(wall[method]),
            "outside_allowed_share": mean(outside[method]),
            "n_nonzero_maps": len(wall[method]),
        }
    return out


#: regions of the confounder ledger: a partition of every voxel (organ truth + HU)
LEDGER_REGIONS = ("body_wall", "heart_mediastinum", "lungs", "outside_body")


def region_fractions_on_grid(hu: np.ndarray, organs: np.ndarray, grid: Sequence[int]) -> torch.Tensor:
    """Share of each grid cell's voxels in each :data:`LEDGER_REGIONS` region, ``[4, H, D1, D2]`` (sums to 1).

    ``hu`` and ``organs`` are ``[X, Y, Z]`` volumes of the network input's geometry; the grid axes are
    ``(Z -> H, X -> D1, Y -> D2)`` as in :func:`lesion_on_grid`.
    """
    body = hu > BODY_HU
    heart = organs == ORGAN_LABELS["heart_mediastinum"]
    lungs = (organs == ORGAN_LABELS["right_lung"]) | (organs == ORGAN_LABELS["left_lung"])
    wall = body & (organs == 0)
    outside = ~(wall | heart | lungs)
    masks = torch.as_tensor(np.stack([wall, heart, lungs, outside])).float().permute(0, 3, 1, 2)  # [4, Z, X, Y]
    return F.adaptive_avg_pool3d(masks[None], tuple(int(g) for g in grid))[0]


def _effects(y: np.ndarray, fat_z: np.ndarray, label: np.ndarray) -> dict[str, float | None]:
    """Least squares ``y = a + b * fat_z + c * label``: ``{"fat_effect": b, "label_effect": c, "mean": mean(y)}``."""
    design = np.stack([np.ones_like(fat_z), fat_z, label], axis=1)
    if len(y) < 4 or np.linalg.matrix_rank(design) < 3:
        return {"mean": float(np.mean(y)) if len(y) else None, "fat_effect": None, "label_effect": None}
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return {"mean": float(np.mean(y)), "fat_effect": float(coef[1]), "label_effect": float(coef[2])}


def confounder_ledger(
    items: Sequence[dict[str, Any]],
    network: nn.Module,
    explainer: Any,
    dataset_dir: str | os.PathLike,
    spatial_size: Sequence[int],
    label: str = CONFOUNDED_LABEL,
    area_threshold: float = 0.1,
    spacing: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Split the confounded label's logit into the parts computed in each region, and regress them on fat thickness.

    For each scan, the raw (signed) HiResCAM map ``R`` of ``label`` on the attention grid is weighted by the
    share of every cell's voxels in each region (:func:`region_fractions_on_grid`), so the regions' parts add up to
    ``R.sum()``. For AxialNet with mean slice pooling ``R.sum()`` is the logit minus the output bias (exact); the
    spread of ``logit - R.sum()`` across scans (``unexplained_std``) measures how far that holds for another model.
    Each part (and the logit) is regressed on the standardized fat thickness of the scan's findings record and on
    the label: ``fat_effect`` is the change of that part, in logit units, per standard deviation of fat.

    The same logit is also split the way the mask loss sees it: ``allowed_cells`` (cells with at least
    ``area_threshold`` heart/mediastinum: the label's G_true in ``area`` mode when it is present), and the positive
    and negative parts of the other cells (``forbidden_positive`` is what the paper's mask loss penalizes on a
    positive scan; ``forbidden_negative`` is free under it).

    Args:
        items: preprocessed items (``image``, ``regions``, ``accession``, ``label``).
        network: the explained classifier (logits ``[B, M]``).
        explainer: a HiResCAM whose ``compute_raw`` gives ``[B, K, H, D1, D2]`` (:func:`make_explainers`).
        dataset_dir: the synthetic dataset folder (``findings.json`` with ``fat_thickness_mm``, ``images/``,
            ``organs/``).
        spatial_size: network input size.
        label: the confounded label.
        area_threshold: heart/mediastinum share that makes a cell allowed.
        spacing: the network grid's voxel size when the dataset was made at another (:func:`load_volume`).

    Returns:
        ``{"label", "n_scans", "unexplained_std", "logit": effects, "regions": {region: effects}, "mask_view":
        {"allowed_cells" | "forbidden_positive" | "forbidden_negative": effects}}`` with effects
        ``{"mean", "fat_effect", "label_effect"}``; ``n_scans`` 0 (and no effects) for empty ``items``.
    """
    folder = Path(dataset_dir)
    findings = _findings(folder)
    idx = LABEL_NAMES.index(label)
    parts: list[list[float]] = []
    logits: list[float] = []
    fat: list[float] = []
    present: list[float] = []
    for item in items:
        acc = str(item["accession"])
        record = findings.get(acc)
        if record is None or record.get("fat_thickness_mm") is None:
            raise InputError(folder / "findings.json", f"no fat_thickness_mm for accession {acc}")
        hu = load_volume(folder / "images" / f"{acc}.nii.gz", spatial_size, spacing, "bilinear").astype(np.float32)
        organs = load_volume(folder / "organs" / f"{acc}.nii.gz", spatial_size, spacing)
        image = torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32)[None]
        image = image.to(device_of(network))
        with torch.enable_grad():
            raw = explainer.compute_raw(image, class_idx=[idx]).detach().float().cpu()[0, 0]  # [H, D1, D2]
        with torch.no_grad():
            logits.append(float(network(image)[0, idx]))
        frac = region_fractions_on_grid(hu, organs, raw.shape)
        allowed = frac[LEDGER_REGIONS.index("heart_mediastinum")] >= area_threshold
        forbidden = torch.where(allowed, torch.zeros_like(raw), raw)
        parts.append([float((raw * f).sum()) for f in frac]
                     + [float(raw[allowed].sum()), float(forbidden.clamp_min(0).sum()),
                        float(forbidden.clamp_max(0).sum())])
        fat.append(float(record["fat_thickness_mm"]))
        present.append(float(np.asarray(item["label"]).reshape(-1)[idx]))
    out: dict[str, Any] = {"label": label, "n_scans": len(parts), "regions_order": list(LEDGER_REGIONS)}
    if not parts:
        return out
    part = np.asarray(parts)
    logit = np.asarray(logits)
    fat_arr = np.asarray(fat)
    fat_z = (fat_arr - fat_arr.mean()) / (fat_arr.std() or 1.0)
    y = np.asarray(present)
    out["fat_sd_mm"] = float(fat_arr.std())
    n_regions = len(LEDGER_REGIONS)
    out["unexplained_std"] = float(np.std(logit - part[:, :n_regions].sum(1)))
    out["logit"] = _effects(logit, fat_z, y)
    out["regions"] = {r: _effects(part[:, k], fat_z, y) for k, r in enumerate(LEDGER_REGIONS)}
    views = ("allowed_cells", "forbidden_positive", "forbidden_negative")
    out["mask_view"] = {v: _effects(part[:, n_regions + k], fat_z, y) for k, v in enumerate(views)}
    return out


def shortcut_score_auroc(fat: Sequence[float], labels: Sequence[float], lesion_to_fat: float) -> float:
    """AUROC of a noise-free score made of the confounder and the lesion: ``lesion_to_fat * label + fat_z``.

    ``fat_z`` is the fat thickness standardized over the given scans. A model whose logit grows by ``f`` per standard
    deviation of fat and by ``l`` when the label is present (the confounder ledger's fat and lesion effects), and
    which reads nothing else, ranks the scans like this score with ``lesion_to_fat = l / f``. On a split whose fat
    runs against the label (``test_shifted``) it shows how strong the lesion reading must be, relative to the fat
    reading, before the lesion decides the ranking.

    Example:
        >>> round(shortcut_score_auroc([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0], 0.0), 2)  # fat alone, reversed
        0.0
        >>> round(shortcut_score_auroc([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0], 10.0), 2)  # the lesion outweighs it
        1.0
    """
    from hirescam_ext.metrics.auroc import binary_auroc

    fat_arr = np.asarray(fat, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    fat_z = (fat_arr - fat_arr.mean()) / (fat_arr.std() or 1.0)
    return binary_auroc(lesion_to_fat * y + fat_z, y)


def lesion_to_fat_ratio_needed(
    test: tuple[Sequence[float], Sequence[float]],
    shifted: tuple[Sequence[float], Sequence[float]],
    max_drop: float,
    step: float = 0.05,
    limit: float = 10.0,
) -> float | None:
    """The smallest ``lesion_to_fat`` (on a grid of ``step`` up to ``limit``) at which the score of
    :func:`shortcut_score_auroc` loses at most ``max_drop`` AUROC from ``test`` to ``shifted``.

    ``test`` and ``shifted`` are ``(fat, labels)`` of the two splits; ``max_drop`` is in AUROC units (0.39 for 39
    points, half of a 78-point drop). ``None`` when no ratio up to ``limit`` is enough.

    Raises:
        ValueError: when a split holds only one class of the label (its AUROC is undefined).
    """
    for name, (fat, labels) in (("test", test), ("shifted", shifted)):
        if np.isnan(shortcut_score_auroc(fat, labels, 0.0)):
            raise ValueError(f"the {name} split holds only one class of the label: its AUROC is undefined")
    for k in range(int(round(limit / step)) + 1):
        ratio = k * step
        if shortcut_score_auroc(*test, ratio) - shortcut_score_auroc(*shifted, ratio) <= max_drop:
            return ratio
    return None


def training_fit(network: nn.Module, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """AUROC of ``network`` on already-seen scans (the training split without augmentation): does the model fit?

    A model that cannot rank its own training scans is under-fitted, and its maps explain a near-constant score.
    """
    from hirescam_ext.metrics.auroc import compute_multilabel_auroc

    scores, labels = [], []
    network.eval()
    device = device_of(network)
    with torch.no_grad():
        for item in items:
            image = torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32)[None].to(device)
            scores.append(network(image).float()[0].cpu())
            labels.append(torch.as_tensor(np.asarray(item["label"]), dtype=torch.float32))
    res = compute_multilabel_auroc(torch.stack(scores), torch.stack(labels))
    finite = lambda v: None if v is None or not np.isfinite(v) else float(v)  # noqa: E731
    return {"auroc_mean": finite(res.mean), "auroc_median": finite(res.median), "n_scans": len(items),
            "per_label": {k: finite(v) for k, v in res.per_label.items() if finite(v) is not None}}


def randomization_blocks(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Parameterized layers grouped in blocks, output side first (the order of cascading randomization).

    A block is the first two components of a module name (``fc``, ``custom_convs.conv4``, ``trunk.layer4``...).
    """
    blocks: dict[str, list[nn.Module]] = {}
    order: list[str] = []
    named = [(n, m) for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    for name, module in reversed(named):
        key = ".".join(name.split(".")[:2])
        if key not in blocks:
            blocks[key] = []
            order.append(key)
        blocks[key].append(module)
    return [(k, blocks[k]) for k in order]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman rank correlation of two maps (flattened); 0 when either is constant (no ranking to agree with)."""
    x = a.detach().flatten().double().cpu().numpy()
    y = b.detach().flatten().double().cpu().numpy()
    if x.size < 2:
        return None
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


def cascading_randomization(
    model: nn.Module,
    items: Sequence[dict[str, Any]],
    explainer_factory: Callable[[nn.Module], dict[str, Any]] = make_explainers,
    seed: int = 0,
) -> dict[str, Any]:
    """Cascading randomization sanity check (Adebayo et al. 2018) on raw maps of the true labels of ``items``.

    A copy of ``model`` is re-initialized block by block from the top (:func:`randomization_blocks`); after each
    step the raw maps (``compute_raw``) of each scan's present labels are compared with the trained model's by
    Spearman rank correlation (per scan and label, then averaged).

    Returns:
        ``{"blocks": [...], method: {"spearman": [...], "constant_fraction": [...]}, "n_maps"}``, one value per
        step (step ``i`` = blocks ``0..i`` randomized).
    """
    inputs = []
    device = device_of(model)
    for item in items:
        present = [i for i, v in enumerate(np.asarray(item["label"]).tolist()) if v > 0.5]
        if present:
            inputs.append((torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32)[None].to(device), present))
    original = {m: [] for m in ("gradcam", "hirescam")}
    trained = explainer_factory(model.eval())
    for x, present in inputs:
        for method, explainer in trained.items():
            with torch.enable_grad():
                original[method].append(explainer.compute_raw(x, class_idx=present).detach()[0].float().cpu())
    work = copy.deepcopy(model).eval()
    blocks = randomization_blocks(work)
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    out: dict[str, Any] = {"blocks": [], "n_maps": sum(len(p) for _, p in inputs)}
    for method in original:
        out[method] = {"spearman": [], "abs_spearman": [], "constant_fraction": []}
    try:
        for name, modules in blocks:
            for module in modules:
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
                else:  # a layer without its own initializer: fresh Gaussian weights
                    for p in module.parameters(recurse=False):
                        nn.init.normal_(p, std=0.02)
            out["blocks"].append(name)
            randomized = explainer_factory(work)
            for method, explainer in randomized.items():
                rhos, const = [], 0
                for (x, present), ref in zip(inputs, original[method]):
                    with torch.enable_grad():
                        maps = explainer.compute_raw(x, class_idx=present).detach()[0].float().cpu()
                    for k in range(len(present)):
                        if float(ref[k].max() - ref[k].min()) == 0.0:
                            continue  # the trained model's own map is flat: nothing to compare
                        if float(maps[k].max() - maps[k].min()) == 0.0:
                            const += 1
                        r = spearman(ref[k], maps[k])
                        if r is not None and np.isfinite(r):
                            rhos.append(r)
                out[method]["spearman"].append(float(np.mean(rhos)) if rhos else None)
                out[method]["abs_spearman"].append(float(np.mean(np.abs(rhos))) if rhos else None)
                out[method]["constant_fraction"].append(const / max(1, len(rhos)))
    finally:
        torch.set_rng_state(gen_state)
    return out
