"""Free-text radiology reports for synthetic scans, written from templates this project owns.

A report has a header, FINDINGS and IMPRESSION sections. Every sentence is recorded as a
:class:`ReportSentence` saying which labels it states as present (``kind="positive"``, possibly with uncertainty
wording such as "possible" or "may represent") or as absent (``kind="negative"`` / ``"normal"``), so consistency
with the label vector is checkable without a labeler:

* every present label is named by at least one positive sentence;
* negative and normal sentences only name absent labels;
* each positive sentence describes exactly one finding, so sentence-level location pairing (the SARLE approach
  used by the HiResCAM paper, Draelos & Carin, arXiv:2011.08891) recovers the truth location table.

Wording avoids terms of labels the scan does not have (no "opacity", "lesion", "plaque", "calcification"
outside a calcified granuloma), side words in heart/mediastinum sentences, and section headings that name
anatomy (a heading glued to a sentence would add a location), so a report labeler has one unambiguous reading.

Example:
    >>> import numpy as np
    >>> from hirescam_ext.synthetic.findings import Finding
    >>> from hirescam_ext.synthetic.reports import write_report
    >>> f = Finding("lung_nodule", ["lung_nodule"], side="right", lobe="upper", size_mm=8.0)
    >>> text, sentences = write_report([f], np.random.default_rng(0))
    >>> "right upper lobe" in text and "8 mm" in text
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hirescam_ext.synthetic.findings import LOBE_NAMES, SUPPORTED_LABELS, Finding

__all__ = ["ReportSentence", "write_report", "format_size", "NEGATION_STATEMENTS"]

_LUNG_SUPPORTED = [lab for lab in SUPPORTED_LABELS if lab.startswith("lung_")] + ["lung_calcification"]


@dataclass
class ReportSentence:
    """One sentence of a report and what it asserts.

    Attributes:
        text: the sentence.
        section: ``"findings"`` or ``"impression"``.
        kind: ``"positive"`` (names present labels), ``"negative"`` (negates labels) or ``"normal"`` (a normal
            statement that rules labels out) or ``"other"`` (no label claim).
        labels: labels the sentence asserts (present for positive, absent otherwise).
        uncertain: positive sentence worded with uncertainty.
    """

    text: str
    section: str
    kind: str
    labels: list[str] = field(default_factory=list)
    uncertain: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_size(mm: float, rng: np.random.Generator, prefer_cm: bool = False) -> str:
    """``"8 mm"`` below 1 cm; ``"1.4 cm"`` or ``"14 mm"`` above (``prefer_cm`` forces cm)."""
    mm = float(mm)
    if mm < 10.0:
        return f"{int(round(mm))} mm"
    if prefer_cm or rng.random() < 0.6:
        return f"{mm / 10.0:.1f} cm"
    return f"{int(round(mm))} mm"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _choice(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _lobe(f: Finding) -> str:
    return LOBE_NAMES[(f.side, f.lobe)]


def _lobe_adj(f: Finding) -> str:
    name = _lobe(f)
    return "lingular" if name == "lingula" else name


def _sides_lobe(f: Finding, zone: str) -> str:
    if f.side == "both":
        return f"right and left {zone} lobes"
    return LOBE_NAMES[(f.side, zone)]


_ADVERB = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}

# positive templates: (definite templates, uncertain templates). Placeholders: {lobe} {Lobe} {lobe_adj}
# {Lobe_adj} {size} {sev} {Sev} {sevly} {side} {where} {pattern} {station} {Station} {device} {Device}
_TEMPLATES: dict[str, tuple[list[str], list[str]]] = {
    "lung_nodule": (
        [
            "There is a {size} nodule in the {lobe}.",
            "A {size} solid pulmonary nodule is seen in the {lobe}.",
            "{Lobe_adj} pulmonary nodule measuring {size}.",
            "Small nodule in the {lobe} measuring {size}.",
        ],
        ["Possible {size} nodule in the {lobe}.", "A {size} focus in the {lobe} may represent a small nodule."],
    ),
    "lung_nodulegr1cm": (
        [
            "There is a {size} nodule in the {lobe}.",
            "{Lobe_adj} pulmonary nodule measuring {size}.",
            "A solid nodule in the {lobe} measures {size}.",
            "A {size} nodule is seen in the {lobe}.",
        ],
        [],
    ),
    "lung_mass": (
        [
            "A {size} mass is present in the {lobe}.",
            "{Lobe_adj} mass measuring {size}.",
            "There is a lobulated {size} mass in the {lobe}.",
        ],
        [],
    ),
    "lung_cyst": (
        [
            "A thin-walled {size} cyst is present in the {lobe}.",
            "{Lobe_adj} cyst measuring {size}.",
            "There is a {size} pulmonary cyst in the {lobe}.",
        ],
        ["A {size} air-filled structure in the {lobe} may represent a cyst.", "Possible {size} cyst in the {lobe}."],
    ),
    "lung_granuloma": (
        [
            "Calcified granuloma in the {lobe}.",
            "A {size} calcified granuloma is noted in the {lobe}.",
            "There is a calcified granuloma within the {lobe}, measuring {size}.",
        ],
        [],
    ),
    "lung_consolidation": (
        [
            "Consolidation in the {lobe}.",
            "There is patchy consolidation involving the {lobe}.",
            "Focal consolidation is present in the {lobe}.",
            "Consolidation with air bronchograms in the {lobe}.",
        ],
        ["Possible early consolidation in the {lobe}.", "Dense change in the {lobe} may represent consolidation."],
    ),
    "lung_groundglass": (
        [
            "Ground-glass attenuation in the {lobe}.",
            "There is patchy ground-glass in the {lobe}.",
            "Hazy ground-glass change is seen in the {lobe}.",
        ],
        ["Possible faint ground-glass in the {lobe}.", "Subtle haziness in the {lobe} may represent ground-glass."],
    ),
    "lung_atelectasis": (
        [
            "Dependent atelectasis in the {where}.",
            "Subsegmental atelectasis in the {where}.",
            "There is mild atelectasis of the {where}.",
        ],
        ["Dependent change in the {where} may represent atelectasis.", "Possible atelectasis in the {where}."],
    ),
    "lung_pleural_effusion": (
        [
            "{Sev} {side} pleural effusion.",
            "There is a {sev} {side} pleural effusion.",
            "A {sev} pleural effusion is present on the {side}.",
        ],
        ["Possible trace {side} pleural effusion."],
    ),
    "lung_pleural_effusion_both": (
        [
            "{Sev} bilateral pleural effusions.",
            "There are {sev} bilateral pleural effusions.",
            "{Sev} pleural effusions are present bilaterally.",
        ],
        ["Possible trace bilateral pleural effusions."],
    ),
    "lung_emphysema": (
        [
            "{Sev} {pattern}emphysema in the {where}.",
            "There is {sev} {pattern}emphysema involving the {where}.",
            "{Pattern_cap}emphysema, {sev}, predominantly in the {where}.",
        ],
        [],
    ),
    "lung_pneumothorax": (
        [
            "{Sev} {side} pneumothorax.",
            "There is a {sev} {side} pneumothorax.",
            "A {sev} pneumothorax is present on the {side}.",
        ],
        [],
    ),
    "heart_cardiomegaly": (
        [
            "The heart is enlarged.",
            "{Sev} cardiomegaly.",
            "There is {sev} cardiomegaly.",
            "The heart is {sevly} enlarged.",
        ],
        [],
    ),
    "heart_pericardial_effusion": (
        [
            "{Sev} pericardial effusion.",
            "There is a {sev} pericardial effusion.",
            "A {sev} pericardial effusion is present.",
        ],
        ["Possible small pericardial effusion.", "Trace pericardial fluid may represent a small pericardial effusion."],
    ),
    "h_great_vessel_atherosclerosis": (
        [
            "{Sev} atherosclerosis of the thoracic aorta.",
            "Atherosclerotic changes of the aorta.",
            "There is {sev} aortic atherosclerosis.",
        ],
        [],
    ),
    "heart_coronary_artery_disease": (
        [
            "{Sev} coronary artery disease.",
            "There is {sev} coronary artery disease.",
            "Coronary artery disease is present.",
        ],
        [],
    ),
    "heart_pacemaker_or_defib": (
        [
            "A {device} is present in the anterior chest wall with a lead extending into the heart.",
            "{Device} generator in the chest wall, with the lead tip in the heart.",
            "There is a {device} in the chest wall; its lead terminates in the heart.",
        ],
        [],
    ),
    "h_mediastinum_lymphadenopathy": (
        [
            "Enlarged {station} mediastinal lymph node measuring {size} in short axis.",
            "Mediastinal lymphadenopathy in the {station} region, the largest node measuring {size}.",
            "There is an enlarged {station} mediastinal lymph node measuring {size}.",
        ],
        [],
    ),
    "h_great_vessel_aneurysm": (
        [
            "Aneurysm of the ascending aorta measuring {size}.",
            "The ascending thoracic aorta is aneurysmal, measuring {size}.",
            "Ascending aortic aneurysm, {size} in diameter.",
        ],
        [],
    ),
}

#: negative / normal statements: (text variants, labels ruled out, kind). Used only when all labels are absent.
NEGATION_STATEMENTS: list[tuple[list[str], list[str], str, str]] = [
    # (variants, labels, kind, group)
    (["No pulmonary nodules or masses.", "No suspicious pulmonary nodule or mass."],
     ["lung_nodule", "lung_nodulegr1cm", "lung_mass"], "negative", "lungs"),
    (["No focal consolidation.", "There is no consolidation."], ["lung_consolidation"], "negative", "lungs"),
    (["No emphysema."], ["lung_emphysema"], "negative", "lungs"),
    (["No pleural effusion or pneumothorax.", "There is no pleural effusion or pneumothorax."],
     ["lung_pleural_effusion", "lung_pneumothorax"], "negative", "pleura"),
    (["No pleural effusion.", "There is no pleural effusion."], ["lung_pleural_effusion"], "negative", "pleura"),
    (["No pneumothorax.", "There is no pneumothorax."], ["lung_pneumothorax"], "negative", "pleura"),
    (["The heart is normal in size.", "Normal heart size."], ["heart_cardiomegaly"], "normal", "heart"),
    (["No pericardial effusion.", "There is no pericardial effusion."],
     ["heart_pericardial_effusion"], "negative", "heart"),
    (["No mediastinal or hilar lymphadenopathy.", "No enlarged mediastinal lymph nodes."],
     ["h_mediastinum_lymphadenopathy", "lung_lymphadenopathy"], "negative", "mediastinum"),
    (["The thoracic aorta is normal in caliber.", "Normal caliber of the thoracic aorta."],
     ["h_great_vessel_aneurysm", "h_great_vessel_dilation_or_ectasia"], "normal", "mediastinum"),
]

_INDICATIONS = ["Cough.", "Shortness of breath.", "Chest pain.", "Follow-up.", "Screening.", "Dyspnea on exertion."]
_GROUP_OF = {
    "lung_pleural_effusion": "pleura",
    "lung_pneumothorax": "pleura",
}
_IMPRESSION_PRIORITY = [
    "lung_mass",
    "lung_nodulegr1cm",
    "lung_consolidation",
    "lung_pneumothorax",
    "lung_pleural_effusion",
    "h_great_vessel_aneurysm",
    "h_mediastinum_lymphadenopathy",
    "heart_pericardial_effusion",
    "heart_cardiomegaly",
    "lung_groundglass",
    "lung_emphysema",
    "lung_nodule",
]


def _group(label: str) -> str:
    if label in _GROUP_OF:
        return _GROUP_OF[label]
    if label.startswith("lung_"):
        return "lungs"
    if label.startswith("heart_"):
        return "heart"
    return "mediastinum"


def _sentence(f: Finding, rng: np.random.Generator, section: str) -> ReportSentence:
    key = "lung_pleural_effusion_both" if f.label == "lung_pleural_effusion" and f.side == "both" else f.label
    definite, uncertain = _TEMPLATES[key]
    use_uncertain = f.certainty == "possible" and bool(uncertain)
    template = _choice(rng, uncertain if use_uncertain else definite)
    sev = str(f.detail.get("severity", "mild"))
    values: dict[str, str] = {"sev": sev, "Sev": _cap(sev), "sevly": _ADVERB.get(sev, sev)}
    if f.side is not None and f.lobe is not None and f.side != "both":
        values.update(lobe=_lobe(f), Lobe=_cap(_lobe(f)), lobe_adj=_lobe_adj(f), Lobe_adj=_cap(_lobe_adj(f)))
    if f.side is not None:
        values["side"] = "bilateral" if f.side == "both" else f.side
        values["where"] = _sides_lobe(f, f.lobe or "lower")
    if f.size_mm is not None:
        values["size"] = format_size(f.size_mm, rng, prefer_cm=f.label in ("lung_mass", "h_great_vessel_aneurysm"))
    pattern = str(f.detail.get("pattern", ""))
    values["pattern"] = f"{pattern} " if pattern else ""
    values["Pattern_cap"] = _cap(f"{pattern} ") if pattern else ""
    device = str(f.detail.get("device", "pacemaker"))
    values.update(device=device, Device=_cap(device), station=str(f.detail.get("station", "")))
    text = template.format(**values)
    text = " ".join(text.split())
    return ReportSentence(_cap(text), section, "positive", list(f.labels), use_uncertain)


def write_report(
    findings: list[Finding], rng: np.random.Generator, contrast: bool = False
) -> tuple[str, list[ReportSentence]]:
    """Write the report of a scan from its findings.

    Args:
        findings: the scan's findings (each becomes one positive sentence in FINDINGS).
        rng: random generator choosing phrasings (the report is deterministic for a seed).
        contrast: whether the exam is described as contrast-enhanced.

    Returns:
        ``(text, sentences)``: the report text and its sentence records (FINDINGS and IMPRESSION).
    """
    present = {lab for f in findings for lab in f.labels}
    sentences: list[ReportSentence] = []
    by_group: dict[str, list[ReportSentence]] = {"lungs": [], "pleura": [], "heart": [], "mediastinum": []}
    for f in findings:
        by_group[_group(f.label)].append(_sentence(f, rng, "findings"))
    # negative / normal statements for absent labels (a random subset, never for a present label)
    lung_positive = any(lab.startswith("lung_") for lab in present)
    if not lung_positive and rng.random() < 0.7:
        by_group["lungs"].insert(0, ReportSentence("The lungs are clear.", "findings", "normal", list(_LUNG_SUPPORTED)))
    used_pleura = False
    for variants, labels, kind, group in NEGATION_STATEMENTS:
        if any(lab in present for lab in labels):
            continue
        if group == "pleura":
            if used_pleura:
                continue
            used_pleura = True
        if rng.random() < 0.75:
            by_group[group].append(ReportSentence(_choice(rng, variants), "findings", kind, list(labels)))
    lines = ["EXAMINATION: CT CHEST " + ("WITH CONTRAST" if contrast else "WITHOUT CONTRAST"), ""]
    lines += [f"INDICATION: {_choice(rng, _INDICATIONS)}", ""]
    technique = "with" if contrast else "without"
    lines += [f"TECHNIQUE: Axial CT images of the chest were obtained {technique} intravenous contrast.", ""]
    lines += ["COMPARISON: None.", "", "FINDINGS:"]
    for group in ("lungs", "pleura", "heart", "mediastinum"):
        items = by_group[group]
        if group == "mediastinum" and rng.random() < 0.5:
            items = items + [ReportSentence("The trachea and central airways are patent.", "findings", "other")]
        if not items:
            continue
        sentences.extend(items)
        lines.append(" ".join(s.text for s in items))
    other = [
        ReportSentence("The osseous structures are unremarkable.", "findings", "other"),
        ReportSentence("Limited images of the upper abdomen are unremarkable.", "findings", "other"),
    ]
    sentences.extend(other)
    lines.append(" ".join(s.text for s in other))
    # impression: up to three key findings, else a normal statement
    lines += ["", "IMPRESSION:"]
    key = [f for f in findings if f.label in _IMPRESSION_PRIORITY]
    key.sort(key=lambda f: _IMPRESSION_PRIORITY.index(f.label))
    imp: list[ReportSentence] = [_sentence(f, rng, "impression") for f in key[:3]]
    if not imp:
        if findings:
            imp = [ReportSentence("No acute cardiopulmonary abnormality.", "impression", "other")]
        else:
            imp = [ReportSentence(_choice(rng, ["No acute cardiopulmonary abnormality.", "Normal CT of the chest."]),
                                  "impression", "other")]
    for k, s in enumerate(imp, 1):
        lines.append(f"{k}. {s.text}" if len(imp) > 1 else s.text)
    sentences.extend(imp)
    return "\n".join(lines) + "\n", sentences
