"""The planted shortcut over training: how each saved checkpoint of a run ranks the confounded label.

The synthetic benchmark ties atherosclerosis to subcutaneous fat in training and reverses the tie in
``test_shifted``. A model that reads the calcified plaques ranks both splits alike; one that reads the fat loses
its ranking on ``test_shifted``. :func:`shortcut_over_checkpoints` scores one or more checkpoints (a run's
per-epoch snapshots, or the final models of several runs) on the same prepared scans and returns, per checkpoint
and split, the confounded label's AUROC, the mean AUROC over the rendered findings, and the logit's *fat effect*
(logit units per standard deviation of fat thickness) and *lesion effect* (at equal fat), the least-squares fit of
:func:`~hirescam_ext.reproduce.analysis.confounder_ledger` without its maps. The *drop* is the AUROC on ``test``
minus that on ``test_shifted`` (Draelos & Carin, HiResCAM, arXiv:2011.08891, Section 5: the mask loss should
shrink it).

Every scan of a split is prepared once, with the first checkpoint's preprocessing settings; a checkpoint prepared
otherwise is an error. The split's scans are kept in memory while its checkpoints are scored (about 6 MB a scan at
128 x 128 x 96; ``max_scans`` bounds it).

Example:
    >>> out = shortcut_over_checkpoints(["epochs/epoch_8.pt", "epochs/epoch_32.pt"], "data_p2")  # doctest: +SKIP
    >>> [(r["epoch"], round(r["drop"], 1)) for r in out["checkpoints"]]  # doctest: +SKIP
    [(8, 77.0), (32, 72.0)]

    (the plaques x 2 classification model of docs/REPRODUCE.md, *Twice the plaque size*)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hirescam_ext.data import load_datalist
from hirescam_ext.engines.checkpoint import load_network_weights, read_checkpoint
from hirescam_ext.engines.model_settings import (
    load_model_settings,
    network_from_settings,
    preprocessing_from_settings,
    same_setting,
)
from hirescam_ext.evaluation.report import markdown_table
from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.metrics.auroc import binary_auroc, compute_multilabel_auroc
from hirescam_ext.reproduce.analysis import _effects, _findings
from hirescam_ext.synthetic.findings import CONFOUNDED_LABEL
from hirescam_ext.utils.errors import InputError

__all__ = ["shortcut_over_checkpoints", "shortcut_table"]


def _prepared_split(
    dataset_dir: Path, split: str, settings: dict[str, Any], max_scans: int | None, progress: bool
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Images ``[N, 1, X, Y, Z]``, labels ``[N, 80]`` and fat thickness (mm) ``[N]`` of one split."""
    items = load_datalist(dataset_dir / "datalist.json", split, base_dir=dataset_dir)[:max_scans]
    if not items:
        raise InputError(dataset_dir / "datalist.json", f"split {split!r} has no scans")
    findings = _findings(dataset_dir)
    pre = preprocessing_from_settings(settings, keys=["image"], label_map_keys=())
    images, fat = [], []
    for item in tqdm(items, desc=f"prepare {split}", unit="scan", disable=not progress):
        acc = str(item["accession"])
        record = findings.get(acc) or {}
        if record.get("fat_thickness_mm") is None:
            raise InputError(dataset_dir / "findings.json", f"no fat_thickness_mm for accession {acc}")
        images.append(torch.as_tensor(pre({"image": item["image"]})["image"]).float())
        fat.append(float(record["fat_thickness_mm"]))
    labels = np.asarray([np.asarray(item["label"], dtype=np.float64) for item in items])
    return torch.stack(images), labels, np.asarray(fat)


def _logits(network: torch.nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    with torch.no_grad():
        batches = [network(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)]
    return torch.cat(batches).numpy()


def shortcut_over_checkpoints(
    checkpoints: Sequence[str | os.PathLike],
    dataset_dir: str | os.PathLike,
    splits: Sequence[str] = ("test", "test_shifted"),
    label: str = CONFOUNDED_LABEL,
    max_scans: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``checkpoints`` on the confounded label of a synthetic dataset's ``splits``.

    Args:
        checkpoints: training checkpoints with model settings (``best.pt``, ``last.pt`` or per-epoch copies).
        dataset_dir: a ``hirescam synth`` folder (``datalist.json`` with the splits, ``findings.json`` with each
            scan's ``fat_thickness_mm``).
        splits: the splits to score; the drop needs ``test`` and ``test_shifted``.
        label: the confounded label.
        max_scans: the first ``max_scans`` scans of each split (``None``: all).
        batch_size: scans per forward pass.
        progress: progress bars on stderr.

    Returns:
        ``{"dataset", "label", "n_scans": {split: n}, "checkpoints": [row, ...]}`` in the order given, each row
        ``{"checkpoint", "epoch", "seed", "mask_loss", "splits": {split: {"auroc", "mean_auroc", "fat_effect",
        "label_effect"}}, "drop", "lesion_to_fat"}``: ``epoch`` is the trainer's epoch the checkpoint was saved at,
        ``seed`` and ``mask_loss`` come from its training record (``None`` when it has none); AUROCs in percent,
        ``mean_auroc`` over the labels with both classes present; ``drop`` and ``lesion_to_fat`` (lesion effect over
        fat effect on ``test_shifted``) are ``None`` when a split they need was not scored.

    Raises:
        InputError: naming the file, for a missing or unreadable checkpoint or dataset file, a checkpoint without
            model settings or prepared differently from the first, or a scan without its fat thickness.
    """
    if not checkpoints:
        raise ValueError("shortcut_over_checkpoints: no checkpoints given")
    folder = Path(dataset_dir)
    idx = LABEL_NAMES.index(label)
    paths = [Path(c) for c in checkpoints]
    settings = [load_model_settings(p, require_file=True) for p in paths]
    first = settings[0]["preprocessing"]
    for path, s in zip(paths, settings):
        if s.get("source") != "checkpoint":
            raise InputError(path, "records no model settings (a training checkpoint of this bundle is needed)")
        own = s["preprocessing"]
        if not all(same_setting(own.get(k), first.get(k)) for k in set(own) | set(first)):
            raise InputError(path, f"its preprocessing {own} is not that of {paths[0]} ({first}); score it in a "
                                   "separate call")
    rows: list[dict[str, Any]] = []
    saved = [read_checkpoint(path) for path in paths]
    for path, ckpt in zip(paths, saved):
        training = (ckpt.get("model_settings") or {}).get("training") or {}
        trainer = ckpt.get("trainer") or {}
        rows.append({"checkpoint": str(path), "epoch": trainer.get("epoch"), "seed": training.get("seed"),
                     "mask_loss": training.get("mask_loss"), "splits": {}})
    n_scans: dict[str, int] = {}
    for split in splits:
        images, labels, fat = _prepared_split(folder, split, settings[0], max_scans, progress)
        n_scans[split] = len(images)
        fat_z = (fat - fat.mean()) / (fat.std() or 1.0)
        for row, path, s, ckpt in tqdm(list(zip(rows, paths, settings, saved)), desc=f"score {split}",
                                       unit="checkpoint", disable=not progress):
            network = network_from_settings(s)
            load_network_weights(network, path, checkpoint=ckpt)
            logits = _logits(network.eval(), images, batch_size)
            effects = _effects(logits[:, idx].astype(np.float64), fat_z, labels[:, idx])
            row["splits"][split] = {
                "auroc": 100.0 * binary_auroc(logits[:, idx], labels[:, idx]),
                "mean_auroc": 100.0 * compute_multilabel_auroc(logits, labels).mean,
                "fat_effect": effects["fat_effect"],
                "label_effect": effects["label_effect"],
            }
        del images
    for row in rows:
        test, shifted = row["splits"].get("test"), row["splits"].get("test_shifted")
        row["drop"] = test["auroc"] - shifted["auroc"] if test and shifted else None
        f = shifted.get("fat_effect") if shifted else None
        row["lesion_to_fat"] = shifted["label_effect"] / f if f else None
    return {"dataset": str(folder), "label": label, "n_scans": n_scans, "checkpoints": rows}


def _cell(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def shortcut_table(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`shortcut_over_checkpoints`' result, one row per checkpoint (named by its path
    below the folder all the checkpoints share)."""
    splits = list(result["n_scans"])
    paths = [row["checkpoint"] for row in result["checkpoints"]]
    common = os.path.commonpath([os.path.dirname(p) for p in paths])
    head = ["checkpoint", "epoch", "mask loss"] + [f"{result['label']} AUROC {s}" for s in splits]
    head += ["drop", "fat effect (test_shifted)", "lesion effect (test_shifted)", "mean AUROC test"]
    rows = []
    for row in result["checkpoints"]:
        shifted = row["splits"].get("test_shifted", {})
        cells = [os.path.relpath(row["checkpoint"], common), _cell(row["epoch"]), _cell(row["mask_loss"])]
        cells += [_cell(row["splits"][s]["auroc"]) for s in splits]
        cells += [_cell(row["drop"]), _cell(shifted.get("fat_effect"), 2), _cell(shifted.get("label_effect"), 2),
                  _cell(row["splits"].get("test", {}).get("mean_auroc"))]
        rows.append(cells)
    return markdown_table(head, rows)
