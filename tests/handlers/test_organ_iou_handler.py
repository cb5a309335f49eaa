"""OrganIoUHandler attached to an Ignite engine gives the same values as the OrganIoU metric."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine

from hirescam_ext.handlers import OrganIoUHandler
from hirescam_ext.metrics import OrganIoU

NAMES = ["a", "b", "c"]


def _batches(n: int = 3, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        maps = torch.rand(2, 3, 2, 3, 3, generator=g)
        maps = maps / maps.amax(dim=(2, 3, 4), keepdim=True)
        regions = (torch.rand(2, 3, 2, 3, 3, generator=g) > 0.5).float()
        labels = (torch.rand(2, 3, generator=g) > 0.3).float()
        out.append({"hirescam": maps, "regions": regions, "label": labels})
    return out


def _reference(batches, thresholds=None):
    metric = OrganIoU(label_names=NAMES)
    for b in batches:
        metric(b["hirescam"], b["regions"], labels=b["label"])
    return metric.aggregate(thresholds=thresholds)


def _run(handler, batches, step=lambda engine, batch: dict(batch)):
    engine = Engine(step)
    handler.attach(engine, "organ_iou")
    engine.run(batches, max_epochs=1)
    return engine


@pytest.mark.parametrize("thresholds", [None, 0.3])
def test_handler_value_equals_metric(thresholds):
    batches = _batches()
    engine = _run(OrganIoUHandler(label_names=NAMES, thresholds=thresholds), batches)
    expected = _reference(batches, thresholds)
    assert expected.n_pairs > 0
    assert engine.state.metrics["organ_iou"] == pytest.approx(expected.mean)
    details = engine.state.metric_details["organ_iou"]
    assert details["per_label"] == pytest.approx(expected.per_label)
    assert details["thresholds"] == expected.thresholds


def test_handler_reads_regions_and_labels_from_the_batch_when_output_lacks_them():
    batches = _batches(seed=1)
    engine = _run(
        OrganIoUHandler(label_names=NAMES, thresholds=0.5), batches, step=lambda e, b: {"hirescam": b["hirescam"]}
    )
    assert engine.state.metrics["organ_iou"] == pytest.approx(_reference(batches, 0.5).mean)


def test_handler_accepts_decollated_outputs_and_dict_targets():
    batches = _batches(seed=2)

    def step(engine, batch):
        target = {"label": batch["label"], "regions": batch["regions"]}
        return [{"hirescam": batch["hirescam"][i], "label": {k: v[i] for k, v in target.items()}} for i in range(2)]

    engine = _run(OrganIoUHandler(label_names=NAMES, thresholds=0.5), batches, step=step)
    assert engine.state.metrics["organ_iou"] == pytest.approx(_reference(batches, 0.5).mean)


def test_selected_thresholds_are_written_and_reused(tmp_path):
    val, test = _batches(seed=3), _batches(seed=4)
    path, details = tmp_path / "thr.json", tmp_path / "details.json"
    _run(OrganIoUHandler(label_names=NAMES, thresholds_path=path, details_path=details), val)
    chosen = json.loads(path.read_text())["thresholds"]
    assert chosen == _reference(val).thresholds
    assert json.loads(details.read_text())["threshold_source"] == "selected_on_this_data"
    engine = _run(OrganIoUHandler(label_names=NAMES, thresholds=path), test)
    assert engine.state.metrics["organ_iou"] == pytest.approx(_reference(test, chosen).mean)
    assert engine.state.metric_details["organ_iou"]["threshold_source"] == "given"


def test_handler_missing_maps_raise_a_clear_error():
    with pytest.raises(KeyError, match="maps"):
        _run(OrganIoUHandler(label_names=NAMES), _batches(1), step=lambda e, b: {"other": b["hirescam"]})


def test_handler_as_key_metric_of_a_monai_supervised_evaluator():
    from monai.engines import SupervisedEvaluator

    batches = _batches(2, seed=5)
    data = [{"image": b["hirescam"], "label": b["label"], "regions": b["regions"]} for b in batches]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=data,
        network=torch.nn.Identity(),  # the "network" returns the maps themselves
        key_val_metric={"organ_iou": OrganIoUHandler(map_key="pred", label_names=NAMES, thresholds=0.5)},
        decollate=False,
    )
    evaluator.run()
    assert evaluator.state.metrics["organ_iou"] == pytest.approx(_reference(batches, 0.5).mean)
