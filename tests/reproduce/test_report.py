"""The reproduction report's learning-curve table, figure and section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hirescam_ext.reproduce.report import build_tables, write_figures, write_report_md, write_tables
from hirescam_ext.reproduce.summary import aggregate

RUNS = {"axialnet": {0: {"evaluation": {"test": {"auroc": {"mean": 0.7, "per_label": {"a": 0.9}}}}}}}


def _history(aurocs: list[float | None]) -> list[dict[str, Any]]:
    """One entry per epoch; ``None``: an epoch that was not validated."""
    history = []
    for epoch, auroc in enumerate(aurocs, start=1):
        entry: dict[str, Any] = {"epoch": epoch, "seconds": 10.0 + epoch, "class_loss": 0.1 - 0.01 * epoch}
        if auroc is not None:
            entry.update(val_loss=0.09, val_mean_auroc=auroc)
        history.append(entry)
    return history


def test_learning_table_reads_the_curve_at_its_first_half_three_quarter_and_last_validated_epochs() -> None:
    curve = _history([0.5, 0.6, 0.7, 0.65, 0.8, 0.75, 0.9, 0.85])  # 8 epochs: half = 4, three quarters = 6
    header, rows = build_tables(aggregate(RUNS), [], [], {}, histories={"axialnet": {0: curve}})["learning"]
    row = dict(zip(header, rows[0]))
    assert (row["seed"], row["epochs"]) == (0, 8)
    assert [row[k] for k in ("val AUROC epoch 1", "at 1/2", "at 3/4", "last")] == ["50.0", "65.0", "75.0", "85.0"]
    assert row["best (epoch)"] == "90.0 (7)" and row["last quarter"] == "+10.0"
    assert row["class loss first -> last"] == "0.0900 -> 0.0200" and row["s / epoch"] == "14"


def test_learning_table_takes_the_last_validated_epoch_before_each_point_when_some_were_not_validated() -> None:
    curve = _history([None, 0.6, None, 0.7, None, 0.8, None, 0.9])
    header, rows = build_tables(aggregate(RUNS), [], [], {}, histories={"axialnet": {0: curve}})["learning"]
    row = dict(zip(header, rows[0]))
    assert [row[k] for k in ("val AUROC epoch 1", "at 1/2", "at 3/4", "last")] == ["60.0", "70.0", "80.0", "90.0"]


def test_no_learning_table_without_a_validated_curve() -> None:
    assert "learning" not in build_tables(aggregate(RUNS), [], [], {})
    assert "learning" not in build_tables(aggregate(RUNS), [], [], {}, histories={"axialnet": {0: _history([None])}})


def _report(out: Path, histories: dict[str, Any]) -> tuple[str, list[str]]:
    agg = aggregate(RUNS)
    tables = build_tables(agg, [], [], {}, histories=histories)
    tables["claims"] = (["claim", "status", "evidence"], [])
    md = write_tables(tables, out)
    for name in ("table2", "confounder", "localization", "sanity"):
        md.setdefault(name, "")
    figures = write_figures(agg, [], {}, out, histories)
    header = {"profile": "p", "command": "c", "seeds": [0], "dataset_seed": 0, "started": "s", "finished": "f",
              "elapsed_min": 1.0, "runs": 1, "runs_reused": 0, "run_minutes_total": 1.0, "versions": {},
              "machine": {}, "profile_text": ""}
    text = Path(write_report_md(out, md, header, [], [])).read_text(encoding="utf-8")
    return text, [Path(f).name for f in figures]


def test_report_shows_the_learning_curves_after_the_per_finding_table(tmp_path: Path) -> None:
    text, figures = _report(tmp_path, {"axialnet": {0: _history([0.5, 0.7])}})
    assert "learning.png" in figures and (tmp_path / "figures" / "learning.png").stat().st_size > 1000
    assert text.index("## AUROC per finding") < text.index("## Learning curves") < text.index("## Table 2")
    assert "![learning](figures/learning.png)" in text


def test_report_has_no_learning_section_when_no_run_was_trained_here(tmp_path: Path) -> None:
    text, figures = _report(tmp_path, {})
    assert "learning.png" not in figures and "## Learning curves" not in text
