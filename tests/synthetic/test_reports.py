"""Specification of the synthetic report writer (hirescam_ext.synthetic.reports): consistency with the labels."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hirescam_ext.synthetic.findings import DEFAULT_PREVALENCE, LOBE_NAMES, Finding, sample_findings
from hirescam_ext.synthetic.reports import format_size, write_report
from hirescam_ext.labels import LABEL_NAMES

MEASURED = ("lung_nodule", "lung_nodulegr1cm", "lung_mass", "lung_cyst", "h_mediastinum_lymphadenopathy",
            "h_great_vessel_aneurysm")
HEART_GROUP = [n for n in LABEL_NAMES if not n.startswith("lung_")]


@pytest.fixture(scope="module")
def reports():
    out = []
    prevalence = {k: 0.35 for k in DEFAULT_PREVALENCE}
    for seed in range(250):
        rng = np.random.default_rng(seed)
        findings = sample_findings(rng, prevalence, normal_fraction=0.1)
        text, sentences = write_report(findings, rng, contrast=bool(seed % 2))
        out.append((findings, text, sentences))
    return out


def test_every_present_label_is_named_by_a_positive_sentence(reports):
    for findings, _, sentences in reports:
        present = {lab for f in findings for lab in f.labels}
        named = {lab for s in sentences if s.kind == "positive" for lab in s.labels}
        assert present <= named


def test_positive_sentences_only_name_present_labels(reports):
    for findings, _, sentences in reports:
        present = {lab for f in findings for lab in f.labels}
        for s in sentences:
            if s.kind == "positive":
                assert set(s.labels) <= present, s.text


def test_negated_and_normal_statements_only_rule_out_absent_labels(reports):
    n_neg = 0
    for findings, _, sentences in reports:
        present = {lab for f in findings for lab in f.labels}
        for s in sentences:
            if s.kind in ("negative", "normal"):
                n_neg += 1
                assert not set(s.labels) & present, s.text
    assert n_neg > 100


def test_every_sentence_record_appears_in_the_text(reports):
    for _, text, sentences in reports:
        for s in sentences:
            assert s.text in text


def test_report_has_findings_and_impression_sections(reports):
    for _, text, _ in reports:
        assert "FINDINGS:" in text and "IMPRESSION:" in text
        assert text.index("FINDINGS:") < text.index("IMPRESSION:")


def test_focal_lung_sentences_name_side_and_lobe(reports):
    for findings, _, sentences in reports:
        for f in findings:
            if f.lobe is None or f.side in (None, "both") or f.label in ("lung_pleural_effusion", "lung_pneumothorax"):
                continue
            names = {LOBE_NAMES[(f.side, f.lobe)], "lingular"}
            own = [s.text for s in sentences if s.kind == "positive" and f.label in s.labels]
            assert any(any(n in t.lower() for n in names) for t in own), own


def test_bilateral_findings_say_so(reports):
    seen = 0
    for findings, _, sentences in reports:
        for f in findings:
            if f.side == "both":
                seen += 1
                own = [s.text for s in sentences if s.kind == "positive" and f.label in s.labels]
                assert all(("bilateral" in t) or ("right and left" in t) for t in own), own
    assert seen > 0


def test_sizes_are_written_in_mm_or_cm(reports):
    for findings, _, sentences in reports:
        for f in findings:
            if f.label not in MEASURED:
                continue
            own = " ".join(s.text for s in sentences if f.label in s.labels)
            assert re.search(r"\d+(\.\d)? (mm|cm)", own), own


def test_heart_group_sentences_have_no_side_words(reports):
    for _, _, sentences in reports:
        for s in sentences:
            if s.kind == "positive" and set(s.labels) <= set(HEART_GROUP):
                assert not re.search(r"\b(right|left|bilateral)\b", s.text), s.text


def test_reports_avoid_terms_of_labels_never_generated(reports):
    for _, text, _ in reports:
        assert not re.search(r"opacit|lesion|plaque|septal|bronchiectasis", text, re.I), text


def test_uncertain_findings_use_hedged_wording():
    rng = np.random.default_rng(3)
    f = Finding("lung_cyst", ["lung_cyst"], side="left", lobe="mid", size_mm=21.0, certainty="possible")
    _, sentences = write_report([f], rng)
    own = [s for s in sentences if s.kind == "positive"]
    assert own and all(s.uncertain for s in own)
    assert all(re.search(r"possible|may represent", s.text, re.I) for s in own)


def test_format_size_uses_mm_below_one_centimetre():
    rng = np.random.default_rng(0)
    assert format_size(8, rng) == "8 mm"
    assert format_size(14, rng, prefer_cm=True) == "1.4 cm"
    assert format_size(14, rng) in ("1.4 cm", "14 mm")


def test_report_is_deterministic_for_a_seed():
    f = [Finding("lung_nodule", ["lung_nodule"], side="right", lobe="lower", size_mm=6.0)]
    a = write_report(f, np.random.default_rng(11))[0]
    b = write_report(f, np.random.default_rng(11))[0]
    assert a == b


def test_normal_scan_report_has_no_positive_sentence():
    text, sentences = write_report([], np.random.default_rng(2))
    assert not [s for s in sentences if s.kind == "positive"]
    assert "IMPRESSION:" in text
