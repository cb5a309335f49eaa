"""Sentence splitting of formatted reports."""

from __future__ import annotations


def test_formatted_report_is_split_into_sentences(labeler):
    text = (
        "FINDINGS:\n"
        "1. Nodule measuring approx. 1.4 cm in the RUL, e.g. on image 5.\n"
        "2. No pleural effusion.\n"
        "\n"
        "IMPRESSION: Stable nodule. Dr. Smith was notified"
    )
    sentences = [s.text for s in labeler.label(text).sentences]
    assert sentences == [
        "FINDINGS:",
        "1. Nodule measuring approx. 1.4 cm in the RUL, e.g. on image 5.",
        "2. No pleural effusion.",
        "IMPRESSION:",
        "Stable nodule.",
        "Dr. Smith was notified",
    ]


def test_wrapped_line_in_lower_case_stays_in_its_sentence(labeler):
    sentences = [s.text for s in labeler.label("There is a small nodule in the\nright upper lobe.").sentences]
    assert sentences == ["There is a small nodule in the\nright upper lobe."]


def test_ctrate_quote_separators_split_impression_items(labeler):
    sentences = [s.text for s in labeler.label('Normal heart. " Hiatal hernia " Emphysema').sentences]
    assert sentences == ["Normal heart.", "Hiatal hernia", "Emphysema"]


def test_sentence_flags_normal_and_abnormal(labeler):
    flags = [s.abnormal for s in labeler.label("The lungs are clear. There is cardiomegaly.").sentences]
    assert flags == [False, True]
