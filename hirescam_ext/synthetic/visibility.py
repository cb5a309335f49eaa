"""Which rendered findings are visible at a synthetic profile's grid, as the committed learnability audit found.

A model's mean AUROC over all rendered findings mixes what it failed to learn with what cannot be seen at the grid
it was trained on (a 4-9 mm nodule is about one 5.8 mm voxel). Issue 13 asks for the mean over the findings
*visible at the profile's resolution* beside the mean over all. Visibility is decided by the learnability audit
(:mod:`hirescam_ext.synthetic.audit`, ``scripts/eval_learnability.py``), with its own criteria. A finding counts as
visible at a profile when either

* the audit's oracle (a logistic regression on global intensity features of the truth organ) separates it at AUROC
  :data:`SEPARABLE_AUROC`, or falls short by less than one standard error (the audit's "borderline"); or
* it is *locally* visible: its lesions keep a median of more than :data:`MIN_SHAPE_VOXELS` voxels (fewer have no
  shape, and are told from vessels or plaques by HU alone) and stand out of the noise (median Rose detectability
  ``|contrast| / noise * sqrt(voxels)`` of at least :data:`MIN_ROSE`). Lymph nodes are the example: several voxels
  and plainly brighter than the fat around them, but only location tells them from heart and vessels, which global
  statistics cannot see.

The audit takes minutes, so its numbers are kept, per profile and generator version, in the package resource
``hirescam_ext/resources/learnability.json`` (written by ``scripts/eval_learnability.py --update-resource`` or
``--resource-from``). A profile or generator version without an audit has no visible set (``None``): the mean over
visible findings is then reported as unknown, never guessed.

Example:
    >>> from hirescam_ext.synthetic.visibility import visible_findings
    >>> visible = visible_findings("tiny")
    >>> "heart_pericardial_effusion" in visible, "heart_coronary_artery_disease" in visible
    (True, False)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hirescam_ext.synthetic.generator import GENERATOR_VERSION

__all__ = [
    "SEPARABLE_AUROC",
    "MIN_SHAPE_VOXELS",
    "MIN_ROSE",
    "VISIBILITY_RESOURCE",
    "is_visible",
    "visibility_entry",
    "load_visibility",
    "update_visibility",
    "visible_in_entry",
    "visible_findings",
    "visibility_key",
    "mean_over_visible",
]

#: oracle AUROC from which a label counts as separable (the audit's bar, issue 13).
SEPARABLE_AUROC = 0.9
#: a lesion of at most this many voxels (median) has no shape: it is told from normal structures by HU alone.
MIN_SHAPE_VOXELS = 2
#: Rose detectability below which a lesion is hard to see in the noise.
MIN_ROSE = 5.0

#: resource file (inside the package) with the audit's oracle AUROCs per synthetic profile.
VISIBILITY_RESOURCE = "learnability.json"


def is_visible(
    auroc: float | None, se: float | None, voxels_median: float | None = None, rose_median: float | None = None
) -> bool:
    """Visible when the oracle separates the finding (within one SE) or its lesions are locally visible."""
    separable = auroc is not None and auroc + (se or 0.0) >= SEPARABLE_AUROC
    local = voxels_median is not None and rose_median is not None
    local = local and voxels_median > MIN_SHAPE_VOXELS and rose_median >= MIN_ROSE
    return separable or local


def visibility_entry(result: Mapping[str, Any]) -> dict[str, Any]:
    """The compact record of one audit result (:func:`~hirescam_ext.synthetic.audit.run_audit`) kept in the resource.

    Raises:
        ValueError: when ``result`` is not an audit result (no ``labels`` with ``oracle_auroc``).
    """
    labels = result.get("labels")
    if not isinstance(labels, Mapping) or not all("oracle_auroc" in e for e in labels.values()):
        raise ValueError("not a learnability audit result: expected 'labels' with 'oracle_auroc' per label")
    return {
        "generator_version": result["generator_version"],
        "shape": [int(v) for v in result["shape"]],
        "spacing": [float(v) for v in result["spacing"]],
        "rendered_at": result.get("rendered_at"),
        "scans": int(result["scans"]),
        "seed": int(result.get("seed", 0)),
        "command": result.get("command"),
        "separable_auroc": SEPARABLE_AUROC,
        "oracle": {
            lab: {"auroc": e["oracle_auroc"], "se": e.get("oracle_auroc_se"), "voxels_median": e.get("voxels_median"),
                  "rose_median": e.get("rose_median")}
            for lab, e in labels.items()
        },
    }


def visibility_key(profile: str, render_profile: str | None = None) -> str:
    """The resource's key of an audit of ``profile``'s grid: the profile's name, or ``"<profile>_from_<render>"`` for
    scans rendered on ``render_profile``'s finer grid and resampled to it (what the model sees differs: partial
    volume, averaged noise)."""
    return profile if render_profile in (None, profile) else f"{profile}_from_{render_profile}"


def load_visibility(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The resource as a dict ``{profile: entry}`` (``path`` overrides the packaged file; a missing file is empty)."""
    if path is not None:
        p = Path(path)
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
    res = resources.files("hirescam_ext").joinpath("resources", VISIBILITY_RESOURCE)
    return json.loads(res.read_text(encoding="utf-8")) if res.is_file() else {}


def update_visibility(profile: str, result: Mapping[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """Put the audit ``result`` of ``profile`` into the resource file at ``path`` (atomically); returns the table."""
    table = load_visibility(path)
    table[profile] = visibility_entry(result)
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return table


def visible_in_entry(
    entry: Mapping[str, Any] | None, shape: Sequence[int] | None = None, generator_version: str = GENERATOR_VERSION
) -> tuple[str, ...] | None:
    """The visible findings of one resource entry (see :func:`visible_findings`); ``None`` when the entry is missing,
    of another generator version, or of another grid than ``shape``."""
    if entry is None or entry.get("generator_version") != generator_version:
        return None
    if shape is not None and [int(v) for v in shape] != list(entry["shape"]):
        return None
    return tuple(
        lab
        for lab, o in entry["oracle"].items()
        if is_visible(o["auroc"], o.get("se"), o.get("voxels_median"), o.get("rose_median"))
    )


def visible_findings(
    profile: str,
    shape: Sequence[int] | None = None,
    generator_version: str = GENERATOR_VERSION,
    path: str | os.PathLike | None = None,
    render_profile: str | None = None,
) -> tuple[str, ...] | None:
    """The rendered findings visible at synthetic ``profile`` (see the module docstring), in the audit's order.

    Args:
        profile: synthetic profile name (``"tiny"``, ``"small"``, ...).
        shape: the grid the model saw; when given and different from the audited grid, there is no answer.
        generator_version: the data's generator version; an audit of another version does not count.
        path: resource file to read instead of the packaged one.
        render_profile: the profile the scans were rendered at before being resampled to ``profile``'s grid
            (``None``: rendered on it); its own audit decides (:func:`visibility_key`).

    Returns:
        the label names, or ``None`` when no audit of this profile, rendering, grid and generator version exists.
    """
    entry = load_visibility(path).get(visibility_key(profile, render_profile))
    return visible_in_entry(entry, shape, generator_version)


def mean_over_visible(per_label: Mapping[str, Any], visible: Sequence[str] | None) -> float | None:
    """Mean of the finite ``per_label`` values of the ``visible`` labels; ``None`` without a set or a scored label."""
    if visible is None:
        return None
    scored = [float(per_label[lab]) for lab in visible if per_label.get(lab) is not None]
    scored = [v for v in scored if math.isfinite(v)]
    return sum(scored) / len(scored) if scored else None
