"""Tables, figures (matplotlib, Agg backend) and ``REPORT.md`` of a reproduction run.

Tables mirror Draelos & Carin (HiResCAM, arXiv:2011.08891): Table 1 (AUROC and OrganIoU per model), Table 2
(OrganIoU by loss, method and concept group, with the relative change over the baseline's Grad-CAM), plus the
confounder, localization and sanity-check tables. Each table is written as Markdown and CSV under ``tables/``; each
figure as PNG under ``figures/``. Values are percentages, mean +- sample standard deviation over seeds.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hirescam_ext.reproduce.profiles import MODELS
from hirescam_ext.reproduce.summary import GROUPS
from hirescam_ext.utils.io import atomic_write, write_text_atomic

__all__ = ["TABLES", "FIGURES", "build_tables", "per_label_text", "write_tables", "write_figures", "write_report_md"]

TABLES = ("table1", "per_label", "learning", "table2", "organ_iou_detected", "confounder", "ledger", "localization",
          "localization_per_label", "sanity", "claims")
#: ``learning`` (table and figure) is written only when a run has a learning curve (models trained by this run)
FIGURES = ("table1", "learning", "table2", "confounder", "localization", "sanity")
METHOD_NAMES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}
#: the confounder ledger's regions (hirescam_ext.reproduce.analysis.LEDGER_REGIONS) and their column names
LEDGER_COLUMNS = {"body_wall": "body wall", "heart_mediastinum": "heart/mediastinum", "lungs": "lungs",
                  "outside_body": "outside body"}
#: the mask loss's view of the same logit (allowed cells; positive / negative parts of the forbidden ones)
MASK_VIEW_COLUMNS = {"allowed_cells": "allowed cells", "forbidden_positive": "forbidden +",
                     "forbidden_negative": "forbidden -"}


LEARNING_TEXT = (
    "Each training run's learning curve (`training_history` of its record in results.json, written by "
    "configs/train.json's TrainingHistory): the mean validation AUROC over all labels after the first epoch, at half "
    "and three quarters of the epochs trained, and after the last; the best epoch's value and number (the checkpoint "
    "that is evaluated is the one of the lowest validation loss, which can be another epoch); *last quarter* is the "
    "change from three quarters to the end (a curve still rising there has not converged); the training "
    "classification loss after the first and the last epoch; the median seconds of an epoch (validation included)."
)
LOCALIZATION_PER_LABEL_TEXT = (
    "The pointing game of the table above, one finding at a time: *pairs* is the number of (test scan, lesion) pairs, "
    "*chance* the share of grid cells its lesions touch (a uniform map's hit rate), and beside each model its test "
    "AUROC of the finding and the percentage of pairs whose map maximum touches the lesion. A map can only point at a "
    "lesion the model has learned to see: the claim's evidence pools the findings a model detects (test AUROC >= 90). "
    "The pacemaker's lesion mask is its lead inside the heart; its generator in the chest wall is not part of it."
)
ORGAN_IOU_DETECTED_TEXT = (
    "OrganIoU (the tables above) averages every (test scan, present finding) pair, also the pairs of findings a model "
    "cannot detect: their maps show where a logit that does not separate the finding is computed. Here each model's "
    "pairs are split into those of the findings it detects (test AUROC >= 90; *findings* counts them) and the rest "
    "(*pairs*: detected of all). The claims keep the paper's mean over all pairs; their evidence adds this split on "
    "the findings the baseline detects."
)
LEDGER_TEXT = (
    "HiResCAM's raw map of AxialNet adds up to the logit minus the bias, so each scan's logit splits exactly into "
    "the parts computed at body-wall, heart/mediastinum, lung and outside-body cells (`unexplained` is the spread "
    "of what the map does not account for; 0 when the split is exact). Each part is regressed on the scan's "
    "standardized fat thickness and on the label: a *fat effect* is the change of that part, in logit units, per "
    "standard deviation of fat at equal label. The same logit split the way the mask loss sees it: *allowed cells* "
    "(at least the profile's area threshold of heart/mediastinum: the label's G_true when present), and the "
    "positive (*forbidden +*) and negative (*forbidden -*) parts of the other cells. The paper's mask loss penalizes "
    "only *forbidden +*; a fat effect carried by allowed cells or by negative evidence is not something it can see."
)


def _ms(s: Mapping[str, Any] | None, scale: float = 100.0, digits: int = 1) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    if s.get("n", 0) > 1:
        return f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f}"
    return f"{scale * s['mean']:.{digits}f}"


def _title(model: str) -> str:
    return MODELS[model].title if model in MODELS else model


def _per_label_rows(agg: Mapping[str, Mapping[str, Any]], order: Sequence[str],
                    visibility: Mapping[str, Any] | None) -> list[list[Any]]:
    """One row per scored label: its visibility at the data's grid, then each model's test AUROC."""
    labels = sorted({k[len("auroc_label_"):-len("_test")] for m in order for k in agg[m]
                     if k.startswith("auroc_label_") and k.endswith("_test") and agg[m][k].get("mean") is not None})
    v = visibility or {}
    visible, oracle = set(v.get("visible") or ()), v.get("oracle") or {}
    rows = []
    for lab in labels:
        if v.get("visible") is None:
            seen = "unknown"
        else:
            o = oracle.get(lab) or {}
            seen = ("yes" if lab in visible else "no") + (f" ({o['auroc']:.2f})" if o.get("auroc") is not None else "")
        rows.append([lab, seen, *[_ms(agg[m].get(f"auroc_label_{lab}_test")) for m in order]])
    return rows


def _at_fraction(curve: Sequence[Mapping[str, Any]], fraction: float) -> Mapping[str, Any]:
    """The last validated epoch at or before ``fraction`` of the epochs trained (the first one if none is)."""
    cut = fraction * curve[-1]["epoch"]
    before = [e for e in curve if e["epoch"] <= cut + 1e-9]
    return before[-1] if before else curve[0]


def _learning_rows(histories: Mapping[str, Mapping[int, Sequence[Mapping[str, Any]]]],
                   order: Sequence[str]) -> list[list[Any]]:
    """One row per (model, seed) with a learning curve (see :data:`LEARNING_TEXT`)."""
    rows = []
    for m in order:
        for seed, history in sorted((histories.get(m) or {}).items()):
            validated = [e for e in history if e.get("val_mean_auroc") is not None]
            if not validated:
                continue
            auroc = [100 * e["val_mean_auroc"] for e in (validated[0], _at_fraction(validated, 0.5),
                                                        _at_fraction(validated, 0.75), validated[-1])]
            best = max(validated, key=lambda e: e["val_mean_auroc"])
            loss = [e["class_loss"] for e in history if e.get("class_loss") is not None]
            seconds = [e["seconds"] for e in history if e.get("seconds") is not None]
            rows.append([_title(m), seed, history[-1]["epoch"], *[f"{a:.1f}" for a in auroc],
                         f"{100 * best['val_mean_auroc']:.1f} ({best['epoch']})", f"{auroc[3] - auroc[2]:+.1f}",
                         f"{loss[0]:.4f} -> {loss[-1]:.4f}" if loss else "n/a",
                         f"{float(np.median(seconds)):.0f}" if seconds else "n/a"])
    return rows


def build_tables(agg: Mapping[str, Mapping[str, Any]], claims: Sequence[Mapping[str, Any]],
                 sanity_blocks: Sequence[str], sanity_curve: Mapping[str, Any],
                 visibility: Mapping[str, Any] | None = None,
                 histories: Mapping[str, Mapping[int, Sequence[Mapping[str, Any]]]] | None = None
                 ) -> dict[str, tuple[list, list]]:
    """``{name: (header, rows)}`` of every table (``learning`` only when a run of ``histories`` was validated).

    ``visibility``: ``{"visible": labels or None, "oracle": {label: {"auroc", "se"}}}`` of the data's grid (see
    :mod:`hirescam_ext.synthetic.visibility`), for the per-label table; ``agg`` carries the visible means.
    ``histories``: ``{model: {seed: training history}}`` (:func:`hirescam_ext.handlers.read_history` entries).
    """
    tables: dict[str, tuple[list, list]] = {}
    order = [m for m in MODELS if m in agg]

    rows = []
    for m in order:
        a = agg[m]
        rows.append([_title(m), len(a["seeds"]), _ms(a.get("auroc_test")), _ms(a.get("auroc_visible_test")),
                     _ms(a.get("auroc_training")), _ms(a.get("organ_iou_gradcam_test")),
                     _ms(a.get("organ_iou_hirescam_test"))])
    tables["table1"] = (["model", "seeds", "AUROC (test)", "AUROC (test, visible findings)", "AUROC (training scans)",
                         "OrganIoU Grad-CAM", "OrganIoU HiResCAM"], rows)
    tables["per_label"] = (["label", "visible at this grid (audit oracle AUROC)", *[_title(m) for m in order]],
                           _per_label_rows(agg, order, visibility))
    rows = _learning_rows(histories or {}, order)
    if rows:
        tables["learning"] = (["model", "seed", "epochs", "val AUROC epoch 1", "at 1/2", "at 3/4", "last",
                               "best (epoch)", "last quarter", "class loss first -> last", "s / epoch"], rows)

    rows = []
    for base_name, mask_name in (("axialnet", "axialnet_mask"), ("axialnet_imagenet", "axialnet_imagenet_mask")):
        base = (agg.get(base_name) or {}).get("organ_iou_gradcam_test") or {}
        for m in (base_name, mask_name):
            if m not in agg:
                continue
            for method in ("gradcam", "hirescam"):
                s = agg[m].get(f"organ_iou_{method}_test") or {}
                rel = "n/a"
                if s.get("mean") is not None and base.get("mean"):
                    rel = f"{100 * (s['mean'] / base['mean'] - 1):+.0f}%"
                loss = "class loss only" if m == base_name else "class + mask loss"
                trunk = "ImageNet" if "imagenet" in m else "random init"
                rows.append([loss, trunk, METHOD_NAMES[method], _ms(s),
                             *[_ms(agg[m].get(f"organ_iou_{method}_{g}_test")) for g in GROUPS], rel])
    tables["table2"] = (["loss", "trunk", "method", "all", *GROUPS, "vs baseline Grad-CAM"], rows)

    rows = []
    for m in order:
        a = agg[m]
        found, pairs, other = ((a.get(f"organ_iou_{k}_test") or {}).get("mean")
                               for k in ("detected_labels", "detected_pairs", "other_pairs"))
        if not MODELS.get(m, MODELS["axialnet"]).has_cam or pairs is None:
            continue
        rows.append([_title(m), f"{found:.0f}", f"{pairs:.0f} of {pairs + other:.0f}",
                     *[_ms(a.get(f"organ_iou_{method}_{part}_test")) for part in ("detected", "other")
                       for method in ("gradcam", "hirescam")]])
    tables["organ_iou_detected"] = (["model", "findings detected", "pairs", "detected: Grad-CAM",
                                     "detected: HiResCAM", "other: Grad-CAM", "other: HiResCAM"], rows)

    rows = []
    for m in order:
        a = agg[m]
        rows.append([_title(m), _ms(a.get("confounder_auroc_test")), _ms(a.get("confounder_auroc_test_shifted")),
                     _ms(a.get("confounder_drop")), _ms(a.get("body_wall_share_hirescam_test_shifted")),
                     _ms(a.get("body_wall_share_gradcam_test_shifted")),
                     _ms(a.get("outside_allowed_share_hirescam_test_shifted")), _ms(a.get("body_wall_chance"))])
    tables["confounder"] = (["model", "AUROC test", "AUROC test_shifted", "drop (points)",
                             "body wall HiResCAM", "body wall Grad-CAM", "outside allowed HiResCAM",
                             "body wall (chance)"], rows)

    rows = []
    for m in order:
        a = agg[m]
        if a.get("ledger_logit_fat_effect_test_shifted") is None:
            continue
        rows.append([_title(m), _ms(a.get("ledger_logit_fat_effect_test_shifted"), 1.0, 2),
                     *[_ms(a.get(f"ledger_{r}_fat_effect_test_shifted"), 1.0, 2) for r in LEDGER_COLUMNS],
                     *[_ms(a.get(f"ledger_{v}_fat_effect_test_shifted"), 1.0, 2) for v in MASK_VIEW_COLUMNS],
                     *[_ms(a.get(f"ledger_{v}_mean_test_shifted"), 1.0, 2) for v in MASK_VIEW_COLUMNS],
                     _ms(a.get("ledger_logit_label_effect_test_shifted"), 1.0, 2),
                     _ms(a.get("ledger_unexplained_std_test_shifted"), 1.0, 3)])
    tables["ledger"] = (["model", "fat effect: logit", *[f"fat effect: {LEDGER_COLUMNS[r]}" for r in LEDGER_COLUMNS],
                         *[f"fat effect: {MASK_VIEW_COLUMNS[v]}" for v in MASK_VIEW_COLUMNS],
                         *[f"mean part: {MASK_VIEW_COLUMNS[v]}" for v in MASK_VIEW_COLUMNS],
                         "lesion effect: logit", "unexplained (sd)"], rows)

    cams = [m for m in order if MODELS.get(m, MODELS["axialnet"]).has_cam]
    rows = []
    for m in cams:
        a = agg[m]
        for method in ("gradcam", "hirescam"):
            rows.append([_title(m), METHOD_NAMES[method], _ms(a.get(f"pointing_game_{method}")),
                         _ms(a.get("pointing_game_chance")), _ms(a.get(f"mass_share_{method}"), digits=2),
                         _ms(a.get("mass_share_chance"), digits=2), _ms(a.get(f"mass_enrichment_{method}"), 1.0, 2)])
    tables["localization"] = (["model", "method", "pointing game", "chance", "mass in lesion", "chance",
                               "enrichment (x)"], rows)
    labels = sorted({k[len("pointing_game_label_"):-len("_pairs")] for m in cams for k in agg[m]
                     if k.startswith("pointing_game_label_") and k.endswith("_pairs")})
    rows = []
    for lab in labels:
        pairs = (agg[cams[0]].get(f"pointing_game_label_{lab}_pairs") or {}).get("mean")
        chance = _ms(agg[cams[0]].get(f"pointing_game_label_{lab}_chance"))
        row = [lab, "n/a" if pairs is None else f"{pairs:.0f}", chance]
        for m in cams:
            row += [_ms(agg[m].get(f"auroc_label_{lab}_test")), _ms(agg[m].get(f"pointing_game_label_{lab}_hirescam")),
                    _ms(agg[m].get(f"pointing_game_label_{lab}_gradcam"))]
        rows.append(row)
    if rows:
        tables["localization_per_label"] = (
            ["label", "pairs", "chance",
             *[f"{_title(m)}: {col}" for m in cams for col in ("AUROC", "HiResCAM", "Grad-CAM")]], rows)

    rows = []
    for i, block in enumerate(sanity_blocks):
        rows.append([i + 1, block, *[_ms((sanity_curve.get(m) or [{}] * len(sanity_blocks))[i], 1.0, 3)
                                     for m in ("hirescam", "gradcam", "abs_hirescam", "abs_gradcam")]])
    tables["sanity"] = (["step", "randomized up to", "Spearman HiResCAM", "Spearman Grad-CAM", "mean abs(rho) HiResCAM",
                         "mean abs(rho) Grad-CAM"], rows)

    tables["claims"] = (["claim", "status", "evidence"], [[c["claim"], c["status"], c["evidence"]] for c in claims])
    return tables


def _md(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_tables(tables: Mapping[str, tuple[list, list]], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``tables/<name>.md`` and ``.csv``; return ``{name: markdown}``."""
    folder = Path(out_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    md: dict[str, str] = {}
    for name, (header, rows) in tables.items():
        md[name] = _md(header, rows)
        write_text_atomic(folder / f"{name}.md", md[name])
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(rows)
        write_text_atomic(folder / f"{name}.csv", buf.getvalue())
    return md


def _bars(ax: Any, labels: Sequence[str], series: Mapping[str, Sequence[tuple[float, float]]], ylabel: str) -> None:
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        means = [v[0] for v in vals]
        errs = [v[1] for v in vals]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=errs, capsize=2, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _mv(s: Mapping[str, Any] | None, scale: float = 100.0) -> tuple[float, float]:
    if not s or s.get("mean") is None:
        return (0.0, 0.0)
    return (scale * s["mean"], scale * (s.get("std") or 0.0))


def write_figures(agg: Mapping[str, Mapping[str, Any]], sanity_blocks: Sequence[str],
                  sanity_curve: Mapping[str, Any], out_dir: str | os.PathLike,
                  histories: Mapping[str, Mapping[int, Sequence[Mapping[str, Any]]]] | None = None) -> list[str]:
    """Write ``figures/<name>.png`` for every name of :data:`FIGURES` (``learning`` only when ``histories`` holds a
    curve); return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    order = [m for m in MODELS if m in agg]
    cam = [m for m in order if MODELS[m].has_cam]
    paths = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = folder / f"{name}.png"
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        paths.append(str(path))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    _bars(axes[0], [_title(m) for m in order], {"AUROC": [_mv(agg[m].get("auroc_test")) for m in order]},
          "test AUROC (%)")
    _bars(axes[1], [_title(m) for m in cam],
          {METHOD_NAMES[k]: [_mv(agg[m].get(f"organ_iou_{k}_test")) for m in cam] for k in ("gradcam", "hirescam")},
          "test OrganIoU (%)")
    fig.suptitle("Table 1 analog")
    save(fig, "table1")

    curves = [(m, seed, h) for m in order for seed, h in sorted(((histories or {}).get(m) or {}).items()) if h]
    if curves:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for m, seed, history in curves:
            style = {"color": f"C{order.index(m)}", "ls": ("-", "--", ":", "-.")[seed % 4],
                     "label": f"{_title(m)}, seed {seed}"}
            val = [e for e in history if e.get("val_mean_auroc") is not None]
            axes[0].plot([e["epoch"] for e in val], [100 * e["val_mean_auroc"] for e in val], **style)
            loss = [e for e in history if e.get("class_loss") is not None]
            axes[1].plot([e["epoch"] for e in loss], [e["class_loss"] for e in loss], **style)
        axes[0].set_ylabel("validation mean AUROC (%)")
        axes[1].set_ylabel("training classification loss")
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
        fig.suptitle("Learning curves")
        save(fig, "learning")

    fig, ax = plt.subplots(figsize=(8, 3.8))
    pair = [m for m in ("axialnet", "axialnet_mask") if m in agg]
    series = {}
    for m in pair:
        for k in ("gradcam", "hirescam"):
            label = f"{'mask' if m.endswith('mask') else 'class'} loss, {METHOD_NAMES[k]}"
            series[label] = [_mv(agg[m].get(f"organ_iou_{k}_test"))] + [
                _mv(agg[m].get(f"organ_iou_{k}_{g}_test")) for g in GROUPS]
    _bars(ax, ["all", *GROUPS], series, "test OrganIoU (%)")
    ax.set_title("Table 2 analog: OrganIoU by loss, method and concept group")
    save(fig, "table2")

    fig, ax = plt.subplots(figsize=(8, 3.8))
    _bars(ax, [_title(m) for m in order],
          {"test": [_mv(agg[m].get("confounder_auroc_test")) for m in order],
           "test_shifted": [_mv(agg[m].get("confounder_auroc_test_shifted")) for m in order]},
          "AUROC of the confounded label (%)")
    ax.axhline(50, color="gray", lw=0.8, ls="--")
    ax.set_title("Confounder: h_great_vessel_atherosclerosis")
    save(fig, "confounder")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    _bars(axes[0], [_title(m) for m in cam],
          {METHOD_NAMES[k]: [_mv(agg[m].get(f"pointing_game_{k}")) for m in cam] for k in ("gradcam", "hirescam")},
          "pointing game hits (%)")
    if cam:
        axes[0].axhline(_mv(agg[cam[0]].get("pointing_game_chance"))[0], color="gray", lw=0.8, ls="--")
    _bars(axes[1], [_title(m) for m in cam],
          {METHOD_NAMES[k]: [_mv(agg[m].get(f"mass_enrichment_{k}"), 1.0) for m in cam]
           for k in ("gradcam", "hirescam")},
          "map mass in lesion / chance")
    axes[1].axhline(1.0, color="gray", lw=0.8, ls="--")
    fig.suptitle("Localization against true lesion masks (test)")
    save(fig, "localization")

    fig, ax = plt.subplots(figsize=(8, 3.8))
    steps = np.arange(1, len(sanity_blocks) + 1)
    for k in ("hirescam", "gradcam"):
        curve = sanity_curve.get(k) or []
        means = [c.get("mean") if c.get("mean") is not None else np.nan for c in curve]
        stds = [c.get("std") or 0.0 for c in curve]
        if len(means) == len(steps) and len(steps):
            ax.errorbar(steps, means, yerr=stds, marker="o", capsize=2, label=METHOD_NAMES[k])
    ax.axhline(0.2, color="gray", lw=0.8, ls="--")
    ax.set_xticks(steps)
    ax.set_xticklabels(sanity_blocks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Spearman rho vs trained maps")
    ax.set_title("Cascading randomization (from the top)")
    if len(steps):
        ax.legend(fontsize=7)
    save(fig, "sanity")
    return paths


def per_label_text(visibility: Mapping[str, Any] | None) -> str:
    """The paragraph above the per-label table: where the visible set comes from, or why there is none."""
    v = visibility or {}
    intro = ("Test AUROC per rendered finding. A finding is *visible* at this grid when the learnability audit "
             "(docs/learnability/, `scripts/eval_learnability.py`) finds it separable by its oracle (a logistic "
             "regression on global intensity features of the truth organ reaching AUROC 0.9 within one standard "
             "error; the oracle's AUROC is in brackets) or locally visible (lesions of more than 2 voxels, median, "
             "with Rose detectability >= 5; hirescam_ext/synthetic/visibility.py). Table 1's *visible findings* "
             "column averages over them. ")
    if v.get("visible") is None:
        return intro + (f"No audit of synthetic profile `{v.get('profile')}` at this grid and generator version "
                        f"{v.get('generator_version')} is recorded (`hirescam_ext/resources/learnability.json`), "
                        "so visibility is unknown and that column is n/a.")
    return intro + (f"Audit of profile `{v.get('profile')}`, generator {v.get('generator_version')}: "
                    f"{len(v['visible'])} visible; command `{v.get('command')}`.")


#: the data parameters the report's run section names (the rest, e.g. prevalences, are in results.json)
_DATA_KEYS = ("seed", "n_scans", "shape", "spacing", "confounder_strength", "shift", "split_fractions", "plaque_scale")


def _data_line(header: Mapping[str, Any]) -> str:
    """The run section's line on the evaluated data: its folder, generator version and main parameters."""
    params = header["dataset_parameters"]
    shown = ", ".join(f"{k} {params[k]}" for k in _DATA_KEYS if k in params)
    return f"- data: `{header.get('dataset_dir')}` (generator {header.get('generator_version')}; {shown})"


def write_report_md(out_dir: str | os.PathLike, md_tables: Mapping[str, str], header: Mapping[str, Any],
                    notes: Sequence[str], findings: Sequence[str], per_label_intro: str | None = None) -> str:
    """Write ``REPORT.md``; return its path (``per_label_intro``: see :func:`per_label_text`)."""
    h = header
    data_seed = (h.get("dataset_parameters") or {}).get("seed", h["dataset_seed"])  # a --dataset folder's own
    lines = [
        f"# HiResCAM reproduction on the synthetic benchmark: profile `{h['profile']}`",
        "",
        "Paper: R. L. Draelos and L. Carin, HiResCAM, arXiv:2011.08891. Every number below comes from the command "
        "shown; all of them are in `results.json`. Percentages, mean ± sample std over training seeds.",
        "",
        "## Run",
        "",
        f"- command: `{h['command']}`",
        f"- training seeds: {h['seeds']}; dataset seed: {data_seed}",
        f"- started {h['started']}, finished {h['finished']} ({h['elapsed_min']:.1f} min for this invocation); "
        f"{h['runs']} (model, seed) runs, {h['runs_reused']} reused from an earlier invocation of the same command; "
        f"train + evaluate + analyses of all runs: {h['run_minutes_total']:.1f} min"
        + (f" ({h['parallel_runs']} runs at a time, {h['threads_per_run']} thread(s) each)"
           if h.get("parallel_runs", 1) > 1 else ""),
        f"- versions: {h['versions']}",
        f"- machine: {h['machine']}",
        f"- profile: {h['profile_text']}",
        *([_data_line(h)] if h.get("dataset_parameters") else []),
        *([f"- report rebuilt from this run's results.json on {h['report_rebuilt']['at']}: "
           f"`{h['report_rebuilt']['command']}` (versions {h['report_rebuilt']['versions']})"]
          if h.get("report_rebuilt") else []),
        "",
        "## Claims",
        "",
        md_tables["claims"],
        "",
    ]
    if findings:
        lines += ["## Findings", "", *[f"- {f}" for f in findings], ""]
    sections = [
        ("table1", "Table 1 analog: AxialNet, ablations and alternatives (test split)", "figures/table1.png"),
        ("table2", "Table 2 analog: class loss vs class + mask loss (test split)", "figures/table2.png"),
        ("confounder", "Confounder study (h_great_vessel_atherosclerosis; attention shares on test_shifted)",
         "figures/confounder.png"),
        ("localization", "Localization against the true lesion masks (test split)", "figures/localization.png"),
        ("sanity", "Sanity check: cascading randomization (Spearman of raw maps)", "figures/sanity.png"),
    ]
    for name, title, fig in sections:
        lines += [f"## {title}", "", md_tables[name], "", f"![{name}]({fig})", ""]
        if name == "table1" and "per_label" in md_tables:
            lines += ["## AUROC per finding (test split)", "", per_label_intro or per_label_text(None), "",
                      md_tables["per_label"], ""]
        if name == "table1" and "learning" in md_tables:
            lines += ["## Learning curves (validation split)", "", LEARNING_TEXT, "", md_tables["learning"], "",
                      "![learning](figures/learning.png)", ""]
        if name == "table2" and md_tables.get("organ_iou_detected"):
            lines += ["## OrganIoU over the findings each model detects (test split)", "", ORGAN_IOU_DETECTED_TEXT, "",
                      md_tables["organ_iou_detected"], ""]
        if name == "localization" and "localization_per_label" in md_tables:
            lines += ["## Pointing game per finding (test split)", "", LOCALIZATION_PER_LABEL_TEXT, "",
                      md_tables["localization_per_label"], ""]
        if name == "confounder" and "ledger" in md_tables:
            title = "Confounder ledger (h_great_vessel_atherosclerosis on test_shifted: where the logit reads fat)"
            lines += [f"## {title}", "", LEDGER_TEXT, "", md_tables["ledger"], ""]
    if notes:
        lines += ["## Method notes", "", *[f"- {n}" for n in notes], ""]
    path = Path(out_dir) / "REPORT.md"
    write_text_atomic(path, "\n".join(lines))
    return str(path)
