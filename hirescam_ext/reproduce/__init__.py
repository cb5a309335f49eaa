"""Reproduce the HiResCAM paper's experiments on the synthetic benchmark (``hirescam reproduce``).

Draelos & Carin, HiResCAM, arXiv:2011.08891: Table 1 (models), Table 2 (mask loss), the confounder study,
localization against true lesion masks and a randomization sanity check, trained and evaluated through the bundle's
own workflows. See docs/REPRODUCE.md.

Example:
    >>> from hirescam_ext.reproduce import get_profile
    >>> get_profile("quick").models, get_profile("quick_all").seeds
    (('axialnet', 'axialnet_mask'), (0, 1, 2))
"""

from __future__ import annotations

from hirescam_ext.reproduce.driver import main, run_reproduction
from hirescam_ext.reproduce.profiles import MODELS, PROFILES, ModelSpec, ReproProfile, get_profile

__all__ = ["main", "run_reproduction", "MODELS", "PROFILES", "ModelSpec", "ReproProfile", "get_profile"]
