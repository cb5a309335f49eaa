"""An index of finished reproductions: every ``results/<name>/results.json`` in one table, claims side by side.

Each folder that ``hirescam reproduce`` wrote holds one run's report. The index reads their ``results.json`` files
(nothing is trained or evaluated) and writes one Markdown table: the folder, what was run (profile, epochs,
custom-conv kernel, network input size, scans, seeds), the classification model's and its mask-loss twin's test
AUROC, and the status of each of the five claims of Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful
explanations of convolutional neural networks" (arXiv:2011.08891) with its headline number, followed by the command
of each run.

Example:
    hirescam reproduce --index results          # writes results/README.md
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hirescam_ext.reproduce.profiles import PAPER_CUSTOM_CONV_KERNEL
from hirescam_ext.reproduce.report import _ms
from hirescam_ext.reproduce.summary import _pct
from hirescam_ext.synthetic.generator import SynthConfig
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import write_text_atomic

__all__ = ["CLAIM_ORDER", "index_row", "collect_results", "render_index", "write_index"]

#: the confounder strength of the data every profile generates and evaluates on; a run whose checkpoints were
#: trained at another strength says so in its row
DEFAULT_CONFOUNDER_STRENGTH = SynthConfig().confounder_strength

#: the claims in the order of the report's claims table, with the column title the index gives each
CLAIM_ORDER: tuple[tuple[str, str], ...] = (
    ("hirescam_ge_gradcam", "1. HiResCAM >= Grad-CAM (OrganIoU)"),
    ("mask_loss_organiou", "2. mask loss >= +30 % OrganIoU, <= 1 AUROC point lost"),
    ("confounder_drop_halved", "3. confounder drop halved"),
    ("randomization_sanity", "4. randomization, abs(Spearman) < 0.2"),
    ("pointing_game_3x_chance", "5. pointing game >= 3x chance"),
)

_STATUS = {"held": "**held**", "did not hold": "not held", "not evaluable": "not evaluable"}


def _mean(stats: Mapping[str, Any] | None) -> str:
    """The mean of a summary in percent (the report's number, without its spread)."""
    return _pct((stats or {}).get("mean"))


def _headline(claim: Mapping[str, Any]) -> str:
    """The number a reader needs to judge a claim at a glance (the report's evidence has the rest)."""
    cid = claim.get("id")
    if cid == "hirescam_ge_gradcam":
        return f"{_mean(claim.get('hirescam'))} vs {_mean(claim.get('gradcam'))}"
    if cid == "mask_loss_organiou":
        rel, diff = claim.get("relative_change"), (claim.get("auroc_difference") or {}).get("mean")
        parts = [f"{100 * rel:+.0f} %" if rel is not None else "-"]
        if diff is not None:
            parts.append(f"AUROC {round(100 * diff, 1) + 0.0:+.1f}")  # + 0.0: no "-0.0"
        return ", ".join(parts)
    if cid == "confounder_drop_halved":
        return f"drop {_mean(claim.get('baseline_drop'))} -> {_mean(claim.get('mask_drop'))}"
    if cid == "randomization_sanity":
        rho = (claim.get("final_spearman") or {}).get("hirescam") or {}
        return f"rho {rho['mean']:+.3f}" if rho.get("mean") is not None else "-"
    if cid == "pointing_game_3x_chance":
        ratio = claim.get("ratio")
        return f"{ratio:.2f}x" if ratio is not None else "-"
    return "-"


def _auroc(summary: Mapping[str, Any], model: str) -> str:
    """A model's test AUROC over the visible findings (over all when the run has no visibility list)."""
    block = summary.get(model) or {}
    return _ms(block.get("auroc_visible_test") or block.get("auroc_test"))


def index_row(path: str | os.PathLike) -> dict[str, Any]:
    """One reproduction's entry of the index, read from its ``results.json``.

    Args:
        path: a ``results.json`` written by ``hirescam reproduce`` (or its ``--report-from``).

    Returns:
        ``folder``, ``what`` (profile and the settings that tell runs apart), ``seeds``, ``models``, ``auroc`` and
        ``auroc_mask`` (text), ``claims`` (claim id -> ``(status, headline)``), ``command`` and ``finished``.

    Raises:
        InputError: the file cannot be read or is not a reproduction's ``results.json``.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        profile, header, summary = payload["profile"], payload["header"], payload["summary"]
        claims = {c["id"]: (c["status"], _headline(c)) for c in payload["claims"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"not a reproduction's results.json ({type(exc).__name__}: {exc})") from exc
    epochs = f"{profile.get('max_epochs', '?')} epochs"
    trained = ("checkpoints trained elsewhere" + _trained_elsewhere_epochs(payload.get("runs"))
               if profile.get("checkpoints") else epochs)
    what = [f"`{profile.get('name', '?')}`", trained]
    k = profile.get("custom_conv_kernel") or PAPER_CUSTOM_CONV_KERNEL  # records older than the field used the paper's
    if k != PAPER_CUSTOM_CONV_KERNEL:
        what.append(f"{k} x {k} custom convs")
    strengths = _training_confounder_strengths(payload.get("runs"))
    if strengths and strengths != [DEFAULT_CONFOUNDER_STRENGTH]:
        what.append("trained at confounder strength " + " / ".join(f"{v:g}" for v in strengths))
    data = header.get("dataset_parameters") or {}  # a folder given with --dataset may be rendered otherwise
    if data.get("confounder_strength", DEFAULT_CONFOUNDER_STRENGTH) != DEFAULT_CONFOUNDER_STRENGTH:
        what.append(f"evaluated at confounder strength {data['confounder_strength']:g}")
    if data.get("plaque_scale", 1.0) != 1.0:
        what.append(f"calcified plaques x {data['plaque_scale']:g}")
    if profile.get("spatial_size"):
        what.append(" x ".join(str(n) for n in profile["spatial_size"]) + " input")
    n_scans = data.get("n_scans") or profile.get("n_scans")  # a --dataset folder has its own count
    if n_scans:
        what.append(f"{n_scans} scans")
    rebuilt = header.get("report_rebuilt") or {}
    return {
        "folder": path.parent.name,
        "what": ", ".join(what),
        "seeds": list(profile.get("seeds") or []),
        "models": list(profile.get("models") or []),
        "auroc": _auroc(summary, "axialnet"),
        "auroc_mask": _auroc(summary, "axialnet_mask"),
        "claims": claims,
        "command": header.get("command", "-"),
        "rebuilt_with": rebuilt.get("command"),
        "finished": header.get("finished", "-"),
    }


def _trained_elsewhere(runs: Any) -> list[dict[str, Any]]:
    """The ``trained_elsewhere`` records of a results.json's runs (empty ones left out)."""
    found = []
    for seeds in (runs or {}).values() if isinstance(runs, Mapping) else ():
        for run in seeds.values() if isinstance(seeds, Mapping) else ():
            record = (run or {}).get("trained_elsewhere")
            if isinstance(record, Mapping):
                found.append(record)
    return found


def _training_confounder_strengths(runs: Any) -> list[float]:
    """The confounder strengths of the data the checkpoints trained elsewhere were trained on (sorted, distinct;
    empty when no checkpoint records one)."""
    found = set()
    for record in _trained_elsewhere(runs):
        data = record.get("data") or {}
        if isinstance(data.get("confounder_strength"), (int, float)):
            found.add(float(data["confounder_strength"]))
    return sorted(found)


def _trained_elsewhere_epochs(runs: Any) -> str:
    """How long the checkpoints trained elsewhere were trained: ``" for 16 epochs"`` when each records its planned
    epochs, else ``" (saved at epochs 15-16)"`` from their trainer states, else ``""`` (older records)."""
    records = _trained_elsewhere(runs)
    planned = {(r.get("training") or {}).get("epochs") for r in records}
    if records and None not in planned:
        return " for " + " / ".join(str(v) for v in sorted(planned)) + " epochs"
    saved = sorted({r["saved_at_epoch"] for r in records if isinstance(r.get("saved_at_epoch"), int)})
    if not saved:
        return ""
    return f" (saved at epoch{'s' if len(saved) > 1 else ''} " + (
        f"{saved[0]}" if len(saved) == 1 else f"{saved[0]}-{saved[-1]}") + ")"


def collect_results(root: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The index rows of every ``<root>/<name>/results.json``, sorted by folder name, and the files left out.

    A file that cannot be read is left out with its reason (``(path, reason)``), so one damaged report does not
    hide the others.

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder of reproduction results")
    rows, skipped = [], []
    for path in sorted(root.glob("*/results.json")):
        try:
            rows.append(index_row(path))
        except InputError as exc:
            skipped.append((str(path), str(exc)))
    return rows, skipped


def render_index(rows: Sequence[Mapping[str, Any]], skipped: Sequence[tuple[str, str]] = (),
                 command: str = "hirescam reproduce --index results") -> str:
    """The index as Markdown: the claims table, then the command of each run."""
    intro = (f"Written by `{command}` from each folder's `results.json`; edit nothing here by hand, run that command "
             "after a new report lands. Each folder's `REPORT.md` has the evidence behind every status, and "
             "docs/REPRODUCE.md what each run was for; the custom convolutions are the paper's 3 x 3 unless the row "
             "says so. AUROC: test, mean ± sample std over training seeds, over the findings visible at the profile's "
             "resolution (all rendered findings where the run has no visibility list), for the classification model "
             "(AxialNet) and its mask-loss twin. Each claim's status comes with its headline number: the OrganIoU of "
             "HiResCAM vs Grad-CAM; the twin's HiResCAM OrganIoU relative to the baseline's Grad-CAM, and its AUROC "
             "change; the confounder's AUROC drop from test to test_shifted, baseline -> twin; the mean Spearman rho "
             "of the HiResCAM maps of fully randomized models; HiResCAM's pointing game over chance.")
    lines = ["# Reproductions of the HiResCAM paper on the synthetic benchmark", "", textwrap.fill(intro, 120), ""]
    head = ["folder", "what", "seeds", "AUROC", "AUROC, mask loss"] + [title for _, title in CLAIM_ORDER]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"[{row['folder']}]({row['folder']}/REPORT.md)", row["what"], str(len(row["seeds"])),
                 row["auroc"], row["auroc_mask"]]
        for cid, _ in CLAIM_ORDER:
            status, headline = row["claims"].get(cid, ("-", "-"))
            cells.append(f"{_STATUS.get(status, status)}: {headline}" if status != "-" else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Commands", ""]
    for row in rows:
        held = sum(1 for status, _ in row["claims"].values() if status == "held")
        entry = (f"- `{row['folder']}` ({held} of {len(row['claims'])} claims held; finished {row['finished']}): "
                 f"`{row['command']}`")
        if row.get("rebuilt_with"):
            entry += f"; report rebuilt with `{row['rebuilt_with']}`"
        lines.append(entry)
    if skipped:
        lines += ["", "## Left out", ""] + [f"- `{path}`: {reason}" for path, reason in skipped]
    return "\n".join(lines) + "\n"


def write_index(root: str | os.PathLike, out: str | os.PathLike | None = None,
                command: str = "hirescam reproduce --index results") -> tuple[Path, list[dict[str, Any]]]:
    """Write the index of the reproductions under ``root`` (to ``out``, default ``<root>/README.md``), atomically.

    Returns:
        The file written and its rows.

    Raises:
        InputError: ``root`` is not a folder, or it holds no readable ``results.json``.
    """
    rows, skipped = collect_results(root)
    if not rows:
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped) or "no <name>/results.json in it"
        raise InputError(Path(root), f"no reproduction results to index ({reasons})")
    target = Path(out) if out is not None else Path(root) / "README.md"
    write_text_atomic(target, render_index(rows, skipped, command=command))
    return target, rows
