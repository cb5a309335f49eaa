"""scripts/demo.py's summary of the shipped reference model's evaluation."""

from __future__ import annotations

from hirescam_ext.synthetic.visibility import visible_findings


def test_demo_summary_averages_the_reference_model_over_the_findings_visible_at_its_grid(load_script) -> None:
    demo = load_script("demo")
    visible = visible_findings("tiny", shape=(64, 64, 48), render_profile="demo")
    per_label = {name: 0.9 for name in visible} | {"lung_nodule": 0.1}  # the 4-9 mm nodule: not visible there
    results = {"validation": {"auroc": {"per_label": per_label}}, "test": {"auroc": {"per_label": per_label}}}
    text = demo.visible_summary(results)
    assert f"over the {len(visible)} findings visible at its grid (learnability audit tiny_from_demo)" in text
    assert "validation 90.0, test 90.0, test_shifted n/a" in text
