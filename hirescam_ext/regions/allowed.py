"""Allowed regions G_true: per-abnormality masks on AxialNet's attention grid, built from organs and locations.

Draelos & Carin (HiResCAM, arXiv:2011.08891) train with a mask loss that penalises attention outside the organ
where an abnormality may occur. Without manual lesion masks, G_true is derived from an organ segmentation
(1 right lung, 2 heart/mediastinum, 3 left lung) and the report's abnormality x location table:

* a label whose ``allowed_region`` (:func:`hirescam_ext.labels.label_table`) is ``heart_mediastinum`` -> organ 2;
* a ``lungs_by_side`` label -> the lung(s) on the positive side(s) of its location row: ``right_upper``,
  ``right_mid``, ``right_lower``, ``right_lung``, ``right`` -> right lung; the ``left_*`` counterparts -> left lung;
  ``lung`` alone, no side, or no row -> both lungs;
* an absent label -> an empty mask (its whole attention map is penalised).

The organ map (already padded/cropped like the CT) is brought to the attention grid ``(D1, D2, H)`` in the
image's axis order ``[X, Y, Z]``: ``H`` groups axial slices in triplets (triplet ``h`` = slices ``3h..3h+2``).
Modes: ``"nearest"`` (the paper's; nearest resize, the centre slice of each triplet), ``"area"`` (a cell is set
when the organ covers at least ``area_threshold`` of it), ``"full"`` (no downsampling, for figures); optional
dilation by ``dilation`` cells. :class:`AllowedRegionsd` stores ``[M, D1, D2, H]`` under ``regions`` so the same
flips/rot90 as the image apply; :class:`~hirescam_ext.regions.layout.ToAttentionLayoutd` then makes it
``[M, H, D1, D2]`` for the loss.

Example:
    >>> make = AllowedRegionsd(grid=(6, 6, 135))
    >>> item = make({"organs": organs, "label": label, "locations": "locations/trn01.csv"})  # doctest: +SKIP
    >>> item["regions"].shape  # doctest: +SKIP
    torch.Size([80, 6, 6, 135])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform

from hirescam_ext.data.radchestct import read_location_table
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES, ORGAN_LABELS, label_table
from hirescam_ext.regions.layout import SLICES_PER_TRIPLET, crop_to_triplets
from hirescam_ext.utils.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "RIGHT_LUNG_LOCATIONS",
    "LEFT_LUNG_LOCATIONS",
    "REGION_MODES",
    "lung_sides",
    "location_rows_from_matrix",
    "label_organs",
    "attention_grid_size",
    "organ_masks_on_grid",
    "allowed_regions",
    "AllowedRegionsd",
    "AllowedRegionsD",
    "AllowedRegionsDict",
]

RIGHT_LUNG_LOCATIONS = ("right_upper", "right_mid", "right_lower", "right_lung", "right")
LEFT_LUNG_LOCATIONS = ("left_upper", "left_mid", "left_lower", "left_lung", "left")
REGION_MODES = ("nearest", "area", "full")
_ORGAN_ORDER = ("right_lung", "heart_mediastinum", "left_lung")  # channel order of organ_masks_on_grid


def lung_sides(locations: Sequence[str] | None) -> tuple[bool, bool]:
    """``(right, left)`` lungs allowed for a lung label with these positive locations (no side -> both)."""
    locs = set(locations or ())
    right = any(loc in locs for loc in RIGHT_LUNG_LOCATIONS)
    left = any(loc in locs for loc in LEFT_LUNG_LOCATIONS)
    if not right and not left:
        return True, True
    return right, left


def location_rows_from_matrix(
    matrix: np.ndarray | torch.Tensor,
    label_names: Sequence[str] = LABEL_NAMES,
    location_names: Sequence[str] = LOCATION_NAMES,
) -> dict[str, list[str]]:
    """``{label: [locations]}`` from a 0/1 matrix ``[len(label_names), len(location_names)]`` (the labeler's)."""
    table = np.asarray(torch.as_tensor(matrix).detach().cpu())
    if table.shape != (len(label_names), len(location_names)):
        raise ValueError(
            f"location matrix must be [{len(label_names)}, {len(location_names)}], got shape {table.shape}"
        )
    return {
        name: [location_names[j] for j in np.flatnonzero(table[i] > 0.5)]
        for i, name in enumerate(label_names)
        if (table[i] > 0.5).any()
    }


def label_organs(
    label: Sequence[float] | np.ndarray | torch.Tensor,
    locations: Mapping[str, Sequence[str]] | None,
    label_names: Sequence[str] = LABEL_NAMES,
) -> list[tuple[str, ...]]:
    """Organ names allowed for each label (empty tuple for absent labels), by the rules of the module docstring."""
    values = np.asarray(torch.as_tensor(label).detach().cpu().reshape(-1), dtype=float)
    if values.size != len(label_names):
        raise ValueError(f"label vector has {values.size} values, expected {len(label_names)}")
    table = label_table()
    locations = locations or {}
    out: list[tuple[str, ...]] = []
    for name, value in zip(label_names, values):
        if value <= 0.5:
            out.append(())
            continue
        region = table[name]["allowed_region"] if name in table else "lungs_by_side"
        if region == "heart_mediastinum":
            out.append(("heart_mediastinum",))
        elif region == "lungs_by_side":
            right, left = lung_sides(locations.get(name))
            out.append(tuple(o for o, keep in (("right_lung", right), ("left_lung", left)) if keep))
        else:
            raise ValueError(f"label {name!r} has an unknown allowed_region {region!r}")
    return out


def attention_grid_size(
    spatial_size: Sequence[int],
    custom_convs: int = 4,
    custom_conv_padding: int = 0,
    slices_per_group: int = SLICES_PER_TRIPLET,
    trunk: str = "resnet18",
) -> tuple[int, int, int]:
    """``(D1, D2, H)`` of AxialNet for an input ``[X, Y, Z]`` in the image's axis order (``AxialNet.attention_grid``
    gives the same grid as ``(H, D1, D2)``).

    The paper's 420 x 420 x 405 gives ``(6, 6, 135)`` (14 x 14 after the trunk, minus 2 per unpadded conv).
    """
    from hirescam_ext.networks.axialnet import AxialNet

    x, y, z = (int(s) for s in spatial_size)
    h = z // slices_per_group
    if h < 1:
        raise ValueError(f"input {tuple(spatial_size)} has fewer than {slices_per_group} axial slices")
    _, d1, d2 = AxialNet.attention_grid(
        (x, y),
        z=h * SLICES_PER_TRIPLET,
        trunk=trunk,
        custom_convs=custom_convs > 0,
        custom_conv_channels=(16,) * max(custom_convs, 1),  # channel counts do not change the grid
        custom_conv_padding=custom_conv_padding,
    )
    return d1, d2, h


def _dilate(masks: torch.Tensor, iterations: int) -> torch.Tensor:
    out = masks.float()
    for _ in range(int(iterations)):
        out = F.max_pool3d(out[None], kernel_size=3, stride=1, padding=1)[0]
    return out > 0.5


def organ_masks_on_grid(
    organs: torch.Tensor | np.ndarray,
    grid: Sequence[int] | None,
    mode: str = "nearest",
    area_threshold: float = 0.5,
    dilation: int = 0,
) -> torch.Tensor:
    """Boolean ``[3, D1, D2, H]`` masks (right lung, heart/mediastinum, left lung) from an organ map.

    Args:
        organs: ``[1, X, Y, Z]`` or ``[X, Y, Z]`` organ label map (0/1/2/3).
        grid: ``(D1, D2, H)``; ``H`` triplets use slices ``3h..3h+2`` (trailing slices beyond ``3H`` ignored).
            Ignored in ``"full"`` mode.
        mode: ``"nearest"``, ``"area"`` or ``"full"``.
        area_threshold: minimum organ fraction of a cell in ``"area"`` mode.
        dilation: grid cells of binary dilation (3x3x3 neighbourhood per iteration).
    """
    if mode not in REGION_MODES:
        raise ValueError(f"mode must be one of {REGION_MODES}, got {mode!r}")
    lab = torch.as_tensor(np.asarray(organs) if isinstance(organs, np.ndarray) else organs).detach()
    if hasattr(lab, "as_tensor"):
        lab = lab.as_tensor()
    if lab.ndim == 4:
        if lab.shape[0] != 1:
            raise ValueError(f"organ map must have one channel, got shape {tuple(lab.shape)}")
        lab = lab[0]
    if lab.ndim != 3:
        raise ValueError(f"organ map must be [1, X, Y, Z] or [X, Y, Z], got shape {tuple(lab.shape)}")
    lab = lab.round().to(torch.int16) if lab.is_floating_point() else lab.to(torch.int16)
    binary = torch.stack([lab == ORGAN_LABELS[name] for name in _ORGAN_ORDER]).float()
    if mode == "full":
        masks = binary > 0.5
    else:
        if grid is None or len(grid) != 3:
            raise ValueError(f"grid must be (D1, D2, H), got {grid}")
        d1, d2, h = (int(g) for g in grid)
        binary = crop_to_triplets(binary, h, "organ map")
        if mode == "nearest":
            masks = F.interpolate(binary[None], size=(d1, d2, h), mode="nearest-exact")[0] > 0.5
        else:
            if not 0.0 < area_threshold <= 1.0:
                raise ValueError(f"area_threshold must lie in (0, 1], got {area_threshold}")
            fraction = F.adaptive_avg_pool3d(binary[None], (d1, d2, h))[0]
            masks = fraction >= area_threshold - 1e-6
    if mode != "full":
        _warn_lost_organs(binary, masks, mode, grid, area_threshold, dilation)
    if dilation:
        masks = _dilate(masks, dilation)
    return masks


_LOST_WARNED: set[tuple] = set()
_ORGAN_DISPLAY = {"right_lung": "right lung", "heart_mediastinum": "heart/mediastinum", "left_lung": "left lung"}


def _warn_lost_organs(binary: torch.Tensor, masks: torch.Tensor, mode: str, grid: Sequence[int], area_threshold: float,
                      dilation: int) -> None:
    """Log once per setting when downsampling drops an organ that the organ map has (it vanishes from G_true).

    Nearest resizing samples one point per cell: on a coarse grid (2 x 2, or a small organ on 4 x 4) every sample
    can miss the organ, and the mask loss then penalises all attention on that organ for this scan. Dilation cannot
    bring back an organ with no cell, so only the sampling is advised.
    """
    for k, name in enumerate(_ORGAN_ORDER):
        if bool(masks[k].any()) or not bool(binary[k].any()):  # the small grid first: cheap when nothing is lost
            continue
        key = (name, mode, tuple(int(g) for g in grid), float(area_threshold), int(dilation))
        if key in _LOST_WARNED:
            continue
        _LOST_WARNED.add(key)
        if mode == "area":
            how = f"mode 'area', area_threshold {area_threshold:g}"
            advice = f"an area_threshold below {area_threshold:g}"
        else:
            how, advice = "mode 'nearest'", "mode='area' with a low area_threshold (e.g. 0.1)"
        logger.warning(
            "allowed regions: the %s of the organ map has no cell on the %s grid (%s), so it is missing from G_true "
            "and the mask loss penalises attention on it for this scan; use %s or a finer grid "
            "(docs/ALLOWED_REGIONS.md). Logged once per setting.",
            _ORGAN_DISPLAY.get(name, name), "x".join(str(int(g)) for g in grid), how, advice,
        )


def allowed_regions(
    organs: torch.Tensor | np.ndarray,
    label: Sequence[float] | np.ndarray | torch.Tensor,
    locations: Mapping[str, Sequence[str]] | str | os.PathLike | None,
    grid: Sequence[int] | None = None,
    mode: str = "nearest",
    area_threshold: float = 0.5,
    dilation: int = 0,
    label_names: Sequence[str] = LABEL_NAMES,
    dtype: torch.dtype = torch.float32,
    custom_convs: int = 4,
    custom_conv_padding: int = 0,
) -> torch.Tensor:
    """G_true ``[M, D1, D2, H]`` (or ``[M, X, Y, Z]`` in ``"full"`` mode) for one scan; see the module docstring.

    ``grid=None`` uses :func:`attention_grid_size` of the organ map's spatial size with ``custom_convs`` 3x3
    convolutions of padding ``custom_conv_padding`` (paper: 4, unpadded).
    ``locations`` is a location-table CSV path, ``{abnormality: [locations]}``, a 0/1 matrix ``[80, 51]`` (the
    labeler's ``LabelResult.locations``) or ``None`` (no side known).
    """
    if isinstance(locations, (str, os.PathLike)):
        locations = read_location_table(locations, label_names=label_names)
    elif isinstance(locations, (np.ndarray, torch.Tensor)):
        locations = location_rows_from_matrix(locations, label_names)
    spatial = tuple(int(s) for s in np.shape(organs)[-3:])
    if grid is None and mode != "full":
        grid = attention_grid_size(spatial, custom_convs=custom_convs, custom_conv_padding=custom_conv_padding)
    masks = organ_masks_on_grid(organs, grid, mode, area_threshold, dilation)
    index = {name: i for i, name in enumerate(_ORGAN_ORDER)}
    out = torch.zeros((len(label_names), *masks.shape[1:]), dtype=torch.bool)
    for m, organs_allowed in enumerate(label_organs(label, locations, label_names)):
        for organ in organs_allowed:
            out[m] |= masks[index[organ]]
    return out.to(dtype)


class AllowedRegionsd(MapTransform):
    """Dictionary transform adding G_true ``[M, D1, D2, H]`` under ``output_key`` (run it before augmentation).

    Args:
        organs_key: organ map ``[1, X, Y, Z]`` on the preprocessed grid.
        label_key: the 80 0/1 labels.
        locations_key: location-table CSV path or ``{abnormality: [locations]}``; a missing key means no side
            information (lung labels get both lungs).
        output_key: where the masks go.
        grid: ``(D1, D2, H)``; ``None`` computes it from the organ map's size (:func:`attention_grid_size`).
        mode: ``"nearest"`` (paper), ``"area"`` or ``"full"`` (full resolution, for figures).
        area_threshold: organ fraction that sets a cell in ``"area"`` mode.
        dilation: dilation iterations on the grid (paper's final runs: 0).
        label_names: label order of ``label_key`` and of the output's first axis.
        dtype: output dtype (the mask loss wants float).
        custom_convs, custom_conv_padding: AxialNet's 3x3 custom convolutions, used when ``grid`` is ``None``
            (paper: 4 unpadded; a 128 x 128 demo input needs padded ones).
    """

    def __init__(
        self,
        organs_key: str = "organs",
        label_key: str = "label",
        locations_key: str = "locations",
        output_key: str = "regions",
        grid: Sequence[int] | None = None,
        mode: str = "nearest",
        area_threshold: float = 0.5,
        dilation: int = 0,
        label_names: Sequence[str] = LABEL_NAMES,
        dtype: torch.dtype = torch.float32,
        custom_convs: int = 4,
        custom_conv_padding: int = 0,
    ):
        super().__init__(keys=[organs_key, label_key], allow_missing_keys=False)
        if mode not in REGION_MODES:
            raise ValueError(f"mode must be one of {REGION_MODES}, got {mode!r}")
        self.organs_key, self.label_key, self.locations_key = organs_key, label_key, locations_key
        self.output_key = output_key
        self.grid = None if grid is None else tuple(int(g) for g in grid)
        self.mode, self.area_threshold, self.dilation = mode, float(area_threshold), int(dilation)
        self.label_names = list(label_names)
        self.dtype = dtype
        self.custom_convs, self.custom_conv_padding = int(custom_convs), int(custom_conv_padding)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in (self.organs_key, self.label_key):
            if key not in d:
                raise KeyError(f"AllowedRegionsd needs {key!r} in the data dictionary (keys: {sorted(map(str, d))})")
        try:
            d[self.output_key] = allowed_regions(
                d[self.organs_key],
                d[self.label_key],
                d.get(self.locations_key),
                grid=self.grid,
                mode=self.mode,
                area_threshold=self.area_threshold,
                dilation=self.dilation,
                label_names=self.label_names,
                dtype=self.dtype,
                custom_convs=self.custom_convs,
                custom_conv_padding=self.custom_conv_padding,
            )
        except ValueError as err:  # name the organ map's file: in a batch job the message alone does not say which
            source = getattr(d[self.organs_key], "meta", {}).get("filename_or_obj")
            if source:
                raise InputError(source, str(err)) from err
            raise
        return d


AllowedRegionsD = AllowedRegionsDict = AllowedRegionsd
