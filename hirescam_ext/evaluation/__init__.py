"""Evaluation reports: the paper's Table 1 / Table 2 layout as CSV, Markdown and JSON."""

from __future__ import annotations

from hirescam_ext.evaluation.report import GROUPS, collect_results, markdown_table, write_evaluation_report

__all__ = ["GROUPS", "collect_results", "markdown_table", "write_evaluation_report"]
