"""scripts/demo.py: its summary of the shipped reference model's evaluation and the fine-tuning it starts."""

from __future__ import annotations

from pathlib import Path

import torch
from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser

from hirescam_ext.synthetic.visibility import visible_findings


def test_demo_summary_averages_the_reference_model_over_the_findings_visible_at_its_grid(load_script) -> None:
    demo = load_script("demo")
    visible = visible_findings("tiny", shape=(64, 64, 48), render_profile="demo")
    per_label = {name: 0.9 for name in visible} | {"lung_nodule": 0.1}  # the 4-9 mm nodule: not visible there
    results = {"validation": {"auroc": {"per_label": per_label}}, "test": {"auroc": {"per_label": per_label}}}
    text = demo.visible_summary(results)
    assert f"over the {len(visible)} findings visible at its grid (learnability audit tiny_from_demo)" in text
    assert "validation 90.0, test 90.0, test_shifted n/a" in text


def test_the_demo_fine_tunes_the_shipped_twin_with_the_network_its_checkpoint_records(
    load_script, tiny_synthetic: Path
) -> None:
    demo = load_script("demo")
    args = demo.network_overrides(demo.REFERENCE_MASK)
    names = args[::2]
    assert len(set(names)) == len(names)  # spatial_size, in the network and the preprocessing, given once
    parser = ConfigParser()
    parser.read_config(str(demo.ROOT / "configs" / "train.json"))
    for name, text in zip(names, args[1::2]):
        parser[name[2:]] = DefaultParseValue(text)  # as `monai.bundle run` (fire) hands them over: "true" stays text
    parser["dataset_dir"], parser["device"] = str(tiny_synthetic), "$torch.device('cpu')"
    parser["init_ckpt"] = str(demo.REFERENCE_MASK)
    network = parser.get_parsed_content("network")  # init_from_checkpoint refuses another network
    saved = torch.load(demo.REFERENCE_MASK, map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(network.state_dict()[k].to(v.dtype), v) for k, v in saved.items())
    assert parser.get_parsed_content("model_settings")["preprocessing"]["spacing"] == [5.8, 5.8, 6.4]
