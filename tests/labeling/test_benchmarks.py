"""Quality on public data (skipped with a reason when ../shared/datasets is absent)."""

from __future__ import annotations

import pytest

from hirescam_ext.labeling.benchmarks import CTRATE_LABELS, evaluate_ctrate, evaluate_openi_sentences


@pytest.fixture(scope="module")
def ctrate_csv(datasets):
    path = datasets / "ctrate-labeled-reports" / "train.csv"
    if not path.is_file():
        pytest.skip(f"CT-RATE labelled reports not available at {path}")
    return path


@pytest.fixture(scope="module")
def openi_csv(datasets):
    path = datasets / "sarle-openi-cxr" / "openi_count_label_sent.csv"
    if not path.is_file():
        pytest.skip(f"SARLE Open-i sentences not available at {path}")
    return path


@pytest.fixture(scope="module")
def ctrate_scores(labeler, ctrate_csv):
    return evaluate_ctrate(labeler, ctrate_csv)


def test_ctrate_macro_f1_at_least_095(ctrate_scores):
    assert ctrate_scores["n_reports"] == 800
    assert ctrate_scores["macro_f1"] >= 0.95, ctrate_scores["macro_f1"]


def test_ctrate_every_label_f1_at_least_088(ctrate_scores):
    low = {k: v["f1"] for k, v in ctrate_scores["per_label"].items() if v["f1"] < 0.88}
    assert set(ctrate_scores["per_label"]) == set(CTRATE_LABELS)
    assert not low, low


def test_openi_sentence_accuracy_at_least_095(labeler, openi_csv):
    result = evaluate_openi_sentences(labeler, openi_csv)
    assert result["accuracy"] >= 0.95, result
