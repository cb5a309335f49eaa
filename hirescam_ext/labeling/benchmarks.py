"""Scoring the report labeler on public data: CT-RATE manual labels (18 abnormalities) and SARLE's Open-i sentences.

The CT-RATE text-classifier data (Hamamci et al.) labels real chest CT reports with 18 abnormalities; the labeler's
80 organ-qualified labels and 83 organ-agnostic abnormalities map onto them as :data:`CTRATE_MAPPING` states (also
documented in docs/LABELER.md). The SARLE Open-i file gives manual normal (h, x) / abnormal (s, a) labels for chest
X-ray report sentences, which score the negation and normal-statement rules (as in the RAD-ChestCT paper that
HiResCAM, Draelos & Carin, arXiv:2011.08891, builds on).

Example:
    >>> from hirescam_ext.labeling.benchmarks import CTRATE_LABELS
    >>> len(CTRATE_LABELS)
    18
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hirescam_ext.labeling.labeler import LabelResult, ReportLabeler
from hirescam_ext.utils.errors import InputError

__all__ = [
    "CTRATE_LABELS",
    "CTRATE_MAPPING",
    "ctrate_labels",
    "load_ctrate",
    "load_openi_sentences",
    "f1_scores",
    "evaluate_ctrate",
    "evaluate_openi_sentences",
]

#: CT-RATE label -> what in a LabelResult makes it positive: any of these 80-label names, organ-agnostic
#: abnormalities, (abnormality, locations) pairs taken from the evidence, or (abnormality, words) pairs whose evidence
#: phrase contains one of the words (CT-RATE's "Peribronchial thickening" is the peribronchial kind of our
#: bronchial-wall-thickening abnormality).
CTRATE_MAPPING: dict[str, dict[str, Any]] = {
    "Medical material": {
        "abnormalities": [
            "catheter_or_port", "pacemaker_or_defib", "stent", "staple", "suture", "clip", "chest_tube",
            "heart_valve_replacement", "sternotomy", "gi_tube", "airway_tube", "breast_implant",
        ]
    },
    "Arterial wall calcification": {
        "labels": ["h_great_vessel_calcification", "h_great_vessel_atherosclerosis", "h_great_vessel_scattered_calc"]
    },
    "Cardiomegaly": {"labels": ["heart_cardiomegaly"]},
    "Pericardial effusion": {"labels": ["heart_pericardial_effusion", "heart_pericardial_thickening"]},
    "Coronary artery wall calcification": {
        "labels": ["heart_coronary_artery_disease"],
        "evidence": [("calcification", ["heart"]), ("atherosclerosis", ["heart"]), ("scattered_calc", ["heart"])],
    },
    "Hiatal hernia": {"evidence": [("hernia", ["esophagus", "stomach"])]},
    "Lymphadenopathy": {"abnormalities": ["lymphadenopathy"], "other_findings": ["lymph_node"]},
    "Emphysema": {"labels": ["lung_emphysema"]},
    "Atelectasis": {"labels": ["lung_atelectasis"]},
    "Lung nodule": {"labels": ["lung_nodule", "lung_nodulegr1cm", "lung_scattered_nod"]},
    "Lung opacity": {"labels": ["lung_opacity", "lung_groundglass", "lung_density"]},
    "Pulmonary fibrotic sequela": {"labels": ["lung_fibrosis", "lung_scarring"]},
    "Pleural effusion": {"labels": ["lung_pleural_effusion"]},
    "Mosaic attenuation pattern": {"abnormalities": ["mosaic_attenuation", "air_trapping"]},
    "Peribronchial thickening": {"evidence_terms": [("bronchial_wall_thickening", ("peribronch", "bronchovascular"))]},
    "Consolidation": {"labels": ["lung_consolidation"]},
    "Bronchiectasis": {"labels": ["lung_bronchiectasis"]},
    "Interlobular septal thickening": {"labels": ["lung_septal_thickening"]},
}
CTRATE_LABELS: list[str] = list(CTRATE_MAPPING)
_LUNG_ONLY = {"right_upper", "right_mid", "right_lower", "left_upper", "left_mid", "left_lower", "right_lung",
              "left_lung", "lung", "right", "left", "interstitial", "subpleural", "centrilobular", "anterior",
              "posterior", "superior", "inferior", "medial", "lateral"}


def ctrate_labels(result: LabelResult) -> dict[str, int]:
    """Map one :class:`LabelResult` onto the 18 CT-RATE labels (see :data:`CTRATE_MAPPING`)."""
    out = {}
    for name, rule in CTRATE_MAPPING.items():
        hit = any(result.labels.get(lab, 0) for lab in rule.get("labels", ()))
        hit = hit or any(result.abnormalities.get(a, 0) for a in rule.get("abnormalities", ()))
        hit = hit or any(
            e.abnormality in rule.get("other_findings", ()) and not (e.locations and set(e.locations) <= _LUNG_ONLY)
            for e in result.other_findings
        )
        for abn, words in rule.get("evidence_terms", ()):
            hit = hit or any(
                e.abnormality == abn and any(w in result.text[e.start : e.end].lower() for w in words)
                for e in result.evidence
            )
        for abn, locs in rule.get("evidence", ()):
            hit = hit or any(e.abnormality == abn and set(locs) & set(e.locations) for e in result.evidence)
        out[name] = int(bool(hit))
    return out


def load_ctrate(path: str | os.PathLike) -> tuple[list[str], list[str], list[dict[str, int]]]:
    """Read the CT-RATE ``train.csv``: (accessions, report texts, truth rows of the 18 labels)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "CT-RATE label file not found")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "report_text" not in rows[0]:
        raise InputError(path, "expected a 'report_text' column")
    missing = [n for n in CTRATE_LABELS if n not in rows[0]]
    if missing:
        raise InputError(path, f"missing label columns {missing}")
    truth = [{n: int(float(r[n])) for n in CTRATE_LABELS} for r in rows]
    return [r.get("AccessionNo", str(i)) for i, r in enumerate(rows)], [r["report_text"] for r in rows], truth


def load_openi_sentences(path: str | os.PathLike) -> tuple[list[str], list[int], list[int]]:
    """Read SARLE's ``openi_count_label_sent.csv``: (sentences, abnormal 0/1, counts); s/a -> 1, h/x -> 0."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "Open-i sentence file not found")
    sentences, truth, counts = [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            lab = row["Label"].strip().lower()
            if lab not in ("s", "a", "h", "x"):
                continue
            sentences.append(row["Sentence"])
            truth.append(1 if lab in ("s", "a") else 0)
            counts.append(int(row.get("Count") or 1))
    return sentences, truth, counts


def f1_scores(truth: Sequence[dict[str, int]], pred: Sequence[dict[str, int]], names: Sequence[str]) -> dict:
    """Per-label precision/recall/F1/support and the macro F1."""
    per = {}
    for n in names:
        tp = sum(1 for t, p in zip(truth, pred) if t[n] and p[n])
        fp = sum(1 for t, p in zip(truth, pred) if not t[n] and p[n])
        fn = sum(1 for t, p in zip(truth, pred) if t[n] and not p[n])
        prec = tp / (tp + fp) if tp + fp else 1.0
        rec = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[n] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "support": tp + fn,
                  "fp": fp, "fn": fn}
    macro = sum(v["f1"] for v in per.values()) / max(len(per), 1)
    return {"macro_f1": round(macro, 4), "min_f1": round(min(v["f1"] for v in per.values()), 4), "per_label": per}


def evaluate_ctrate(labeler: ReportLabeler, path: str | os.PathLike, start: int = 0, stop: int | None = None) -> dict:
    """Score the labeler on CT-RATE reports ``[start:stop]`` (per-label F1 and macro F1)."""
    _, texts, truth = load_ctrate(path)
    texts, truth = texts[start:stop], truth[start:stop]
    pred = [ctrate_labels(r) for r in labeler.label_many(texts)]
    out = f1_scores(truth, pred, CTRATE_LABELS)
    out["n_reports"] = len(texts)
    return out


def evaluate_openi_sentences(labeler: ReportLabeler, path: str | os.PathLike, weighted: bool = False) -> dict:
    """Sentence-level normal/abnormal accuracy on SARLE's manually labelled Open-i sentences."""
    sentences, truth, counts = load_openi_sentences(path)
    correct = total = 0
    tp = fp = fn = 0
    for sent, t, c in zip(sentences, truth, counts):
        p = int(labeler.sentence_is_abnormal(sent))
        w = c if weighted else 1
        total += w
        correct += w * (p == t)
        tp += w * (p and t)
        fp += w * (p and not t)
        fn += w * (t and not p)
    return {
        "accuracy": round(correct / max(total, 1), 4),
        "abnormal_precision": round(tp / max(tp + fp, 1), 4),
        "abnormal_recall": round(tp / max(tp + fn, 1), 4),
        "n_sentences": len(sentences),
        "weighted_by_count": weighted,
    }
