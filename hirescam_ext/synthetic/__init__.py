"""The synthetic chest-CT benchmark: phantom anatomy, findings, reports and the dataset generator.

The benchmark (``hirescam synth``) renders chest CTs with known organ masks, lesion masks, free-text reports and a
controllable confounder, so the claims of Draelos & Carin (HiResCAM, arXiv:2011.08891) can be tested where the
truth is known. Modules: :mod:`~hirescam_ext.synthetic.phantom` (anatomy), :mod:`~hirescam_ext.synthetic.findings`
(abnormalities painted into it), :mod:`~hirescam_ext.synthetic.reports` (report text),
:mod:`~hirescam_ext.synthetic.generator` (whole datasets, the ``synth`` command). Names are resolved lazily so that
``import hirescam_ext.synthetic`` stays light.

Example:
    >>> from hirescam_ext.synthetic import GENERATOR_VERSION
    >>> isinstance(GENERATOR_VERSION, str)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    name: "hirescam_ext.synthetic.generator"
    for name in ("GENERATOR_VERSION", "PROFILES", "SynthConfig", "SyntheticCase", "generate_case", "generate_dataset")
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
