"""Rule-based chest CT report labeler (``hirescam label``): 80 organ-qualified labels, locations and evidence.

A SARLE-style labeler (the report labeler of the RAD-ChestCT data used by HiResCAM, Draelos & Carin,
arXiv:2011.08891) built on ``spacy.blank("en")``; see :mod:`hirescam_ext.labeling.labeler` and docs/LABELER.md.

Example:
    >>> from hirescam_ext.labeling import ReportLabeler
    >>> ReportLabeler().label("Calcified plaques in the aorta.").positive_labels
    ['h_great_vessel_atherosclerosis', 'h_great_vessel_calcification']
"""

from __future__ import annotations

from hirescam_ext.labeling.labeler import Evidence, LabelResult, ReportLabeler, SentenceInfo, measurements_mm
from hirescam_ext.labeling.sentences import ReportSentencizer, add_report_sentencizer
from hirescam_ext.labeling.vocabulary import Vocabulary, load_vocabulary

__all__ = [
    "ReportLabeler",
    "LabelResult",
    "Evidence",
    "SentenceInfo",
    "measurements_mm",
    "ReportSentencizer",
    "add_report_sentencizer",
    "Vocabulary",
    "load_vocabulary",
]
