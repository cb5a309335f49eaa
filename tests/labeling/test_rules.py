"""Behaviour of the labeler's rules, one behaviour per test."""

from __future__ import annotations

import numpy as np
import pytest

from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES


def positives(result):
    return set(result.positive_labels)


def test_negation_scope_stops_at_but(labeler):
    result = labeler.label("No nodule but a small effusion.")
    assert positives(result) == {"lung_pleural_effusion"}


def test_negated_list_negates_every_item(labeler):
    result = labeler.label("No pleural effusion, pneumothorax or consolidation was detected.")
    assert positives(result) == set()


def test_post_negation_negates_preceding_finding(labeler):
    assert positives(labeler.label("Pericardial effusion-thickening was not observed.")) == set()


def test_post_negation_does_not_cross_a_closed_clause(labeler):
    result = labeler.label("Emphysema is observed in both lungs, pleural effusion was not detected.")
    assert positives(result) == {"lung_emphysema"}


def test_uncertain_finding_is_positive_and_flagged(labeler):
    result = labeler.label("Findings may represent pneumonia.")
    assert "lung_pneumonia" in positives(result)
    assert all(e.uncertain for e in result.evidence if e.abnormality == "pneumonia")


def test_cannot_be_excluded_is_positive(labeler):
    assert "lung_consolidation" in positives(labeler.label("Consolidation cannot be excluded."))


def test_partially_resolved_stays_positive_but_resolved_is_negative(labeler):
    assert "lung_consolidation" in positives(labeler.label("The consolidation has partially resolved."))
    assert "lung_consolidation" not in positives(labeler.label("The consolidation has resolved."))


def test_small_nodule_is_not_gr1cm(labeler):
    result = labeler.label("An 8 mm nodule is seen in the right lower lobe.")
    assert "lung_nodule" in positives(result)
    assert "lung_nodulegr1cm" not in positives(result)


def test_large_nodule_is_gr1cm(labeler):
    result = labeler.label("A 1.4 cm nodule is seen in the right lower lobe.")
    assert {"lung_nodule", "lung_nodulegr1cm"} <= positives(result)


def test_mediastinal_node_over_1cm_short_axis_is_lymphadenopathy(labeler):
    assert "h_mediastinum_lymphadenopathy" in positives(
        labeler.label("A subcarinal lymph node measuring 15x12 mm is observed.")
    )


def test_mediastinal_node_under_1cm_short_axis_is_not_lymphadenopathy(labeler):
    assert "h_mediastinum_lymphadenopathy" not in positives(
        labeler.label("A 13x9 mm lymph node is observed in the right paratracheal area.")
    )


def test_lobe_gives_lobe_and_side_in_location_table(labeler):
    rows = labeler.label("Atelectasis in the right upper lobe.").location_rows()
    assert set(rows["lung_atelectasis"]) == {"right_upper", "right_lung"}


def test_lingula_is_left_mid(labeler):
    rows = labeler.label("Linear atelectasis in the lingula.").location_rows()
    assert {"left_mid", "left_lung"} <= set(rows["lung_atelectasis"])
    assert not any(loc.startswith("right") for loc in rows["lung_atelectasis"])


def test_bilateral_marks_both_sides(labeler):
    rows = labeler.label("Bilateral pleural effusion.").location_rows()
    assert {"right_lung", "left_lung"} <= set(rows["lung_pleural_effusion"])


def test_unsided_lobe_takes_the_sentence_side(labeler):
    rows = labeler.label("Ground-glass opacities in both lungs, upper lobes.").location_rows()
    assert {"right_upper", "left_upper"} <= set(rows["lung_groundglass"])


def test_calcification_is_organ_qualified_by_location(labeler):
    assert "h_great_vessel_calcification" in positives(labeler.label("Calcification of the aortic wall."))
    assert "heart_calcification" in positives(labeler.label("Calcification in the coronary arteries."))
    assert "lung_calcification" in positives(labeler.label("A calcification in the left lower lobe."))


def test_calcification_organs_do_not_leak(labeler):
    result = positives(labeler.label("Calcification of the aortic wall."))
    assert "lung_calcification" not in result and "heart_calcification" not in result


def test_impossible_location_pair_is_dropped(labeler):
    result = labeler.label("A simple cyst is seen in the liver.")
    assert positives(result) == set()
    assert result.abnormalities["cyst"] == 1  # still recorded at the organ-agnostic level


def test_lung_disease_implies_lung_location(labeler):
    rows = labeler.label("Emphysema.").location_rows()
    assert rows["lung_emphysema"] == ["lung"]


def test_pericardial_location_turns_effusion_into_pericardial_effusion(labeler):
    assert positives(labeler.label("Minimal effusion in the pericardial space.")) == {"heart_pericardial_effusion"}


def test_location_table_shape_and_csv_header(labeler):
    result = labeler.label("Nodule in the RUL.")
    assert result.locations.shape == (len(LABEL_NAMES), len(LOCATION_NAMES))
    lines = result.to_csv().splitlines()
    assert lines[0].split(",") == ["abnormality", *LOCATION_NAMES]
    assert len(lines) == 1 + len(LABEL_NAMES)
    assert np.array_equal(result.label_vector.nonzero()[0], [LABEL_NAMES.index("lung_nodule")])


def test_evidence_spans_point_at_the_text(labeler):
    text = "FINDINGS:\nHeart is normal. There is a 5 mm nodule in the left lower lobe."
    result = labeler.label(text)
    (ev,) = [e for e in result.evidence if e.abnormality == "nodule"]
    assert text[ev.start : ev.end] == "nodule"
    assert text[ev.sentence_start : ev.sentence_end] == ev.sentence == "There is a 5 mm nodule in the left lower lobe."


def test_label_many_matches_label(labeler):
    texts = ["No effusion.", "Cardiomegaly.", ""]
    many = [r.positive_labels for r in labeler.label_many(texts)]
    assert many == [labeler.label(t).positive_labels for t in texts]


def test_denied_increase_in_wall_thickness_negates_the_thickening(labeler):
    result = labeler.label("There was no increase in peribronchial wall thickness.")
    assert "lung_bronchial_wall_thickening" not in positives(result)


def test_denied_increase_in_density_negates_the_density(labeler):
    assert "lung_density" not in positives(labeler.label("No increase in density was seen in the right lung."))


def test_no_increase_in_a_nodule_keeps_the_nodule(labeler):
    assert "lung_nodule" in positives(labeler.label("No increase in the size of the nodule in the right upper lobe."))


def test_composite_does_not_borrow_the_change_word_of_another_finding(labeler):
    result = labeler.label("Ground-glass areas along the peribronchial area and interlobular septal thickenings.")
    assert "lung_septal_thickening" in positives(result)
    assert "lung_bronchial_wall_thickening" not in positives(result)


def test_parenchymal_band_is_a_fibrotic_sequela(labeler):
    assert "lung_fibrosis" in positives(labeler.label("There is a parenchymal band in the right middle lobe."))


def test_hypodense_nodule_without_a_location_gives_no_lung_label(labeler):
    result = labeler.label("There are hypodense nodules.")
    assert "lung_nodule" not in positives(result)
    assert result.abnormalities["nodule"] == 1


def test_hypodense_nodule_in_the_lung_is_a_lung_nodule(labeler):
    assert "lung_nodule" in positives(labeler.label("A hypodense nodule is seen in the left lower lobe."))


def test_density_interpreted_as_a_process_stays_an_opacity(labeler):
    result = labeler.label("Linear density increase consistent with atelectasis in the left lower lobe.")
    assert {"lung_density", "lung_atelectasis"} <= positives(result)


def test_density_interpreted_as_an_opacity_pattern_is_that_pattern(labeler):
    result = labeler.label("Subtle haziness in the right upper lobe may represent ground-glass.")
    assert positives(result) == {"lung_groundglass"}


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Atelectasis or consolidation is seen in the left lower lobe.", {"lung_atelectasis", "lung_consolidation"}),
        ("Nodules or masses were seen in both lungs.", {"lung_nodule", "lung_mass"}),
        ("Emphysema or bullae are seen in both upper lobes.", {"lung_emphysema"}),
        ("Pneumothorax or pleural effusion was detected.", {"lung_pneumothorax", "lung_pleural_effusion"}),
        ("A nodule or lymph node was seen in the right hilum.", {"lung_nodule"}),
    ],
)
def test_unhedged_disjunction_statement_stays_positive(labeler, sentence, expected):
    assert expected <= positives(labeler.label(sentence))


@pytest.mark.parametrize(
    "sentence",
    [
        "Hypodense nodules in both lungs.",
        "Hypodense nodules in bilateral lungs.",
        "Hypodense nodules are seen bilaterally in the lungs.",
        "Hypodense nodules in the right lung.",
    ],
)
def test_hypodense_nodule_in_both_lungs_is_a_lung_nodule(labeler, sentence):
    result = labeler.label(sentence)
    assert "lung_nodule" in positives(result)
    assert {"right_lung"} <= set(result.location_rows()["lung_nodule"])


def test_both_lungs_names_both_lung_columns(labeler):
    result = labeler.label("Hypodense nodules in both lungs.")
    assert result.location_rows()["lung_nodule"] == ["right_lung", "left_lung"]


def test_hypodense_nodule_in_both_kidneys_gives_no_lung_label(labeler):
    assert "lung_nodule" not in positives(labeler.label("Hypodense nodules in both kidneys."))


def test_coordinated_anchor_shares_the_change_word(labeler):
    result = labeler.label("Peribronchial and interlobular septal thickenings are observed.")
    assert {"lung_bronchial_wall_thickening", "lung_septal_thickening"} <= positives(result)


def test_hedged_disjunction_stays_positive(labeler):
    result = labeler.label("Density consistent with atelectasis or consolidation is observed in the left lower lobe.")
    assert {"lung_atelectasis", "lung_consolidation"} <= positives(result)
