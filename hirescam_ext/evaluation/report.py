"""Evaluation tables shaped like the paper's Tables 1 and 2 (Draelos & Carin, HiResCAM, arXiv:2011.08891).

Table 1 (per split): AUROC mean and median over labels, and OrganIoU with Grad-CAM and with HiResCAM.
Table 2 (per split and explanation method): OrganIoU overall and per concept group (focal / diffuse,
biological / intervention). Written as CSV and Markdown, with every number also in ``results.json`` and per label in
``per_label_<split>.csv``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.utils.io import write_json_atomic, write_text_atomic

__all__ = ["GROUPS", "collect_results", "write_evaluation_report", "markdown_table"]

GROUPS = ("focal", "diffuse", "biological", "intervention")


def _pct(value: Any) -> str:
    return "" if value is None else f"{100.0 * float(value):.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def collect_results(
    evaluator: Engine, auroc_name: str, organ_iou_names: Mapping[str, str], loss_name: str | None = None
) -> dict[str, Any]:
    """Gather one evaluation run's numbers from ``engine.state.metrics`` and ``metric_details``.

    Args:
        evaluator: an engine after ``run()``.
        auroc_name: metric name of the :class:`~hirescam_ext.handlers.MultiLabelAUROCHandler`.
        organ_iou_names: ``{method: metric name}`` of the OrganIoU handlers (``{"hirescam": "organ_iou_hirescam"}``).
        loss_name: optional metric name of the mean loss.
    """
    details = getattr(evaluator.state, "metric_details", {}) or {}
    metrics = evaluator.state.metrics
    auroc = details.get(auroc_name)
    # the AUROC metric counts the scans of the whole split (gathered over ranks); the engine only its own
    n_scans = (auroc or {}).get("n_samples") or int(evaluator.state.iteration)
    out: dict[str, Any] = {"n_scans": int(n_scans), "auroc": auroc}
    if out["auroc"] is None and auroc_name in metrics:
        out["auroc"] = {"mean": float(metrics[auroc_name])}
    out["organ_iou"] = {method: details.get(name) for method, name in organ_iou_names.items()}
    if loss_name is not None and loss_name in metrics:
        out["loss"] = float(metrics[loss_name])
    return out


def write_evaluation_report(
    results: Mapping[str, Mapping[str, Any]],
    output_dir: str | os.PathLike,
    methods: Sequence[str] = ("gradcam", "hirescam"),
    label_names: Sequence[str] = LABEL_NAMES,
    title: str = "Evaluation",
    notes: Sequence[str] = (),
) -> dict[str, str]:
    """Write ``results.json``, ``table1.{csv,md}``, ``table2.{csv,md}``, ``per_label_<split>.csv`` and ``REPORT.md``.

    Args:
        results: ``{split: collect_results(...)}``.
        output_dir: destination folder.
        methods: explanation methods, in column order.
        label_names: label order of the per-label tables.
        title: report heading.
        notes: extra lines for the report (command, checkpoint, thresholds source).

    Returns:
        ``{name: path}`` of the files written (nothing on a rank other than 0 of a process group).
    """
    from hirescam_ext.engines.distributed import is_main_process

    if not is_main_process():  # under torchrun every rank holds the same gathered numbers: rank 0 writes them
        return {}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}
    written: dict[str, str] = {}

    header1 = ["split", "scans", "AUROC mean", "AUROC median", *[f"OrganIoU {names.get(m, m)}" for m in methods]]
    rows1 = []
    for split, res in results.items():
        auroc = res.get("auroc") or {}
        organ = res.get("organ_iou") or {}
        rows1.append(
            [
                split,
                res.get("n_scans", ""),
                _pct(auroc.get("mean")),
                _pct(auroc.get("median")),
                *[_pct((organ.get(m) or {}).get("mean")) for m in methods],
            ]
        )
    header2 = ["split", "method", "pairs", "all", *GROUPS]
    rows2 = []
    for split, res in results.items():
        for m in methods:
            organ = (res.get("organ_iou") or {}).get(m) or {}
            groups = organ.get("per_group") or {}
            rows2.append(
                [split, names.get(m, m), organ.get("n_pairs", 0), _pct(organ.get("mean")), *[_pct(groups.get(g)) for g in GROUPS]]
            )
    for stem, header, rows in (("table1", header1, rows1), ("table2", header2, rows2)):
        write_text_atomic(out / f"{stem}.csv", _csv(header, rows))
        write_text_atomic(out / f"{stem}.md", markdown_table(header, rows))
        written[f"{stem}.csv"] = str(out / f"{stem}.csv")
        written[f"{stem}.md"] = str(out / f"{stem}.md")

    for split, res in results.items():
        auroc = (res.get("auroc") or {}).get("per_label") or {}
        organ = res.get("organ_iou") or {}
        header = ["label", "AUROC", *[f"OrganIoU {names.get(m, m)}" for m in methods], "pairs", "threshold HiResCAM"]
        rows = []
        for name in label_names:
            hires = organ.get("hirescam") or {}
            rows.append(
                [
                    name,
                    _pct(auroc.get(name)),
                    *[_pct(((organ.get(m) or {}).get("per_label") or {}).get(name)) for m in methods],
                    (hires.get("per_label_count") or {}).get(name, 0),
                    (hires.get("thresholds") or {}).get(name, ""),
                ]
            )
        path = out / f"per_label_{split}.csv"
        write_text_atomic(path, _csv(header, rows))
        written[path.name] = str(path)

    write_json_atomic(out / "results.json", {"results": results, "notes": list(notes)})
    written["results.json"] = str(out / "results.json")
    report = [f"# {title}", "", "All values in percent. OrganIoU: mean over (scan, present abnormality) pairs.", ""]
    report += ["## Table 1: classification and explanation quality", "", markdown_table(header1, rows1)]
    report += ["## Table 2: OrganIoU by concept group", "", markdown_table(header2, rows2)]
    if notes:
        report += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    write_text_atomic(out / "REPORT.md", "\n".join(report))
    written["REPORT.md"] = str(out / "REPORT.md")
    return written
