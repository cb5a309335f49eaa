"""MultiLabelAUROCHandler and LossComponentsHandler on tiny Ignite engines."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from hirescam_ext.handlers import LossComponentsHandler, MultiLabelAUROCHandler
from hirescam_ext.losses import ClassificationMaskLoss
from hirescam_ext.metrics import compute_multilabel_auroc


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(9, 4, generator=g)
    labels = (torch.rand(9, 4, generator=g) > 0.5).float()
    labels[:, 3] = 0  # a single-class label: skipped
    return [{"pred": logits[i : i + 3], "label": labels[i : i + 3]} for i in range(0, 9, 3)], logits, labels


def test_auroc_handler_equals_the_metric_and_reports_skipped_labels():
    batches, logits, labels = _data()
    engine = Engine(lambda e, b: {"pred": {"logits": b["pred"]}, "label": b["label"]})
    MultiLabelAUROCHandler(label_names=list("wxyz")).attach(engine, "auroc")
    engine.run(batches, max_epochs=1)
    expected = compute_multilabel_auroc(logits, labels, label_names=list("wxyz"))
    assert engine.state.metrics["auroc"] == pytest.approx(expected.mean)
    assert engine.state.metric_details["auroc"]["skipped"] == ["z"]


def test_auroc_handler_median_statistic():
    batches, logits, labels = _data(seed=1)
    engine = Engine(lambda e, b: dict(b))
    MultiLabelAUROCHandler(statistic="median").attach(engine, "auroc")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["auroc"] == pytest.approx(compute_multilabel_auroc(logits, labels).median)


def test_loss_components_handler_publishes_epoch_means():
    loss_fn = ClassificationMaskLoss()
    seen = []

    def step(engine, batch):
        parts = loss_fn.components(
            {"logits": batch, "attention": batch[:, :, None].expand(-1, -1, 3)},
            {"label": torch.ones_like(batch), "regions": torch.zeros(*batch.shape, 3)},
        )
        seen.append((float(parts["class_loss"]), float(parts["mask_loss"])))
        return {"loss": parts["loss"]}

    engine = Engine(step)
    LossComponentsHandler(loss_fn).attach(engine)
    engine.run([torch.zeros(1, 2), torch.ones(1, 2)], max_epochs=1)
    assert engine.state.metrics["class_loss"] == pytest.approx(sum(c for c, _ in seen) / 2)
    assert engine.state.metrics["mask_loss"] == pytest.approx(sum(m for _, m in seen) / 2)
    assert engine.state.output["mask_loss"] == pytest.approx(seen[-1][1])
