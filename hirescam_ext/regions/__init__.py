"""Allowed regions G_true of the HiResCAM paper's mask loss (Draelos & Carin, arXiv:2011.08891).

:class:`AllowedRegionsd` builds per-abnormality masks on the attention grid from an organ map, the labels and the
location table; :class:`ToAttentionLayoutd` permutes them to AxialNet's ``[M, H, D1, D2]``. The ``hirescam
regions`` command (:mod:`hirescam_ext.regions.cli`) precomputes organ maps and location tables for a dataset.
:func:`lesion_coverage` measures how much of a lesion its G_true allows (``scripts/eval_allowed_regions.py``,
docs/ALLOWED_REGIONS.md).
"""

from __future__ import annotations

from hirescam_ext.regions.allowed import (
    LEFT_LUNG_LOCATIONS,
    REGION_MODES,
    RIGHT_LUNG_LOCATIONS,
    AllowedRegionsd,
    AllowedRegionsD,
    AllowedRegionsDict,
    allowed_regions,
    attention_grid_size,
    label_organs,
    location_rows_from_matrix,
    lung_sides,
    organ_masks_on_grid,
)
from hirescam_ext.regions.coverage import allowed_fraction, lesion_cells, lesion_coverage
from hirescam_ext.regions.layout import (
    SLICES_PER_TRIPLET,
    ToAttentionLayoutd,
    ToAttentionLayoutD,
    ToAttentionLayoutDict,
    attention_to_image_grid,
    from_attention_layout,
    to_attention_layout,
    triplet_slices,
)

__all__ = [
    "LEFT_LUNG_LOCATIONS",
    "REGION_MODES",
    "RIGHT_LUNG_LOCATIONS",
    "SLICES_PER_TRIPLET",
    "AllowedRegionsd",
    "AllowedRegionsD",
    "AllowedRegionsDict",
    "allowed_fraction",
    "allowed_regions",
    "attention_grid_size",
    "label_organs",
    "lesion_cells",
    "lesion_coverage",
    "location_rows_from_matrix",
    "lung_sides",
    "organ_masks_on_grid",
    "ToAttentionLayoutd",
    "ToAttentionLayoutD",
    "ToAttentionLayoutDict",
    "attention_to_image_grid",
    "from_attention_layout",
    "to_attention_layout",
    "triplet_slices",
]
