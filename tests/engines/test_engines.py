"""Workflow pieces: batch preparation, the attention wrapper, the explaining evaluator and the NaN guard."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from torch.utils.data import DataLoader

from hirescam_ext import AxialNet, ClassificationMaskLoss, GradCAM, HiResCAM
from hirescam_ext.engines import (
    ExplanationEvaluator,
    NonFiniteLossError,
    NonFiniteLossGuard,
    PrepareBatchWithRegions,
    WithAttention,
)

M, SHAPE = 4, (1, 64, 64, 12)


def _net() -> AxialNet:
    torch.manual_seed(0)
    return AxialNet(n_classes=M, spatial_size=SHAPE[1:], trunk="small", custom_conv_padding=1)


def _items(n: int = 2, nan_at: int | None = None) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    items = []
    for i in range(n):
        image = torch.rand(SHAPE, generator=g)
        if i == nan_at:
            image[0, 0, 0, 0] = float("nan")
        items.append(
            {
                "image": image,
                "label": torch.tensor([1.0, 0.0, 1.0, 0.0]),
                "regions": (torch.rand(M, 4, 2, 2, generator=g) > 0.5).float(),
                "accession": f"scan{i}",
            }
        )
    return items


def test_prepare_batch_packs_regions_into_a_dict_target() -> None:
    batch = {"image": torch.zeros(1, *SHAPE), "label": torch.ones(1, M), "regions": torch.zeros(1, M, 4, 2, 2)}
    image, target = PrepareBatchWithRegions()(batch)
    assert image.shape == (1, *SHAPE) and set(target) == {"label", "regions"}


def test_prepare_batch_without_label_fails_unless_allowed() -> None:
    with pytest.raises(KeyError, match="label"):
        PrepareBatchWithRegions()({"image": torch.zeros(1, *SHAPE)})
    assert PrepareBatchWithRegions(require_label=False)({"image": torch.zeros(1, *SHAPE)})[1] is None


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8])
def test_prepare_batch_converts_a_quantized_image_batch_after_the_copy(dtype) -> None:
    from hirescam_ext.data.dataset import dequantize, quantize

    x = torch.rand(2, *SHAPE) - 0.449
    q = torch.from_numpy(quantize(x, (-0.449, 0.551), str(dtype).replace("torch.", "")))
    image, _ = PrepareBatchWithRegions(value_range=(-0.449, 0.551))({"image": q, "label": torch.zeros(2, 80)})
    assert image.dtype == torch.float32
    assert torch.allclose(image, dequantize(q.numpy(), (-0.449, 0.551)), atol=1e-6)  # same as in a worker
    assert float((image - x).abs().max()) <= 0.5 / (255 if dtype == torch.uint8 else 65535) + 1e-6


def test_prepare_batch_refuses_a_quantized_batch_without_its_value_range() -> None:
    with pytest.raises(ValueError, match="value_range"):
        PrepareBatchWithRegions()({"image": torch.zeros(1, *SHAPE, dtype=torch.int16), "label": torch.zeros(1, 80)})


def test_with_attention_returns_logits_and_attention_of_one_forward_all() -> None:
    net = _net().eval()
    x = torch.rand(1, *SHAPE)
    out = WithAttention(net)(x)
    ref = net.forward_all(x)
    assert torch.allclose(out["logits"], ref.logits) and torch.allclose(out["attention"], ref.attention)


def test_with_attention_rejects_networks_without_forward_all() -> None:
    with pytest.raises(TypeError, match="forward_all"):
        WithAttention(torch.nn.Linear(2, 2))


def test_evaluator_maps_equal_the_explainers_own_maps() -> None:
    net = _net()
    items = _items()
    evaluator = ExplanationEvaluator(
        device="cpu",
        val_data_loader=DataLoader(items, batch_size=2),
        network=net,
        prepare_batch=PrepareBatchWithRegions(),
        explainers={"hirescam": HiResCAM(net), "gradcam": GradCAM(net)},
        loss_function=ClassificationMaskLoss(),
    )
    evaluator.run()
    out = evaluator.state.output
    x = torch.stack([i["image"] for i in items])
    net.eval()
    assert torch.allclose(out["hirescam"], HiResCAM(net)(x, upsample=False), atol=1e-6)
    assert torch.allclose(out["gradcam"], GradCAM(net)(x, upsample=False), atol=1e-6)
    assert out["slice_scores"].shape == (2, M, 4) and torch.isfinite(out["loss"])


def test_evaluator_brings_3d_model_maps_to_the_region_layout() -> None:
    from hirescam_ext import ThreeDConv

    torch.manual_seed(0)
    net = ThreeDConv(n_classes=M, volume_size=(96, 128, 192), channels=(4, 4, 4, 4), reduce_channels=(4, 4),
                     conv_padding=1)
    x = torch.rand(1, 1, 96, 128, 192)
    grid = HiResCAM(net.eval())(x, upsample=False).shape[2:]  # [X', Y', Z'], depth last
    assert grid[2] != grid[0]  # a grid where mixing depth and width would show
    regions = torch.zeros(M, grid[2], grid[0], grid[1])  # [M, H, D1, D2]: depth first
    items = [{"image": x[0], "label": torch.tensor([1.0, 0.0, 1.0, 0.0]), "regions": regions}]
    evaluator = ExplanationEvaluator(device="cpu", val_data_loader=DataLoader(items, batch_size=1), network=net,
                                     prepare_batch=PrepareBatchWithRegions(), explainers={"hirescam": HiResCAM(net)})
    evaluator.run()
    expected = HiResCAM(net.eval())(x, upsample=False).permute(0, 1, 4, 2, 3)
    assert torch.allclose(evaluator.state.output["hirescam"], expected, atol=1e-6)


def test_nan_loss_stops_training_before_the_step_and_names_the_scan() -> None:
    net = _net()
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    trainer = SupervisedTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=DataLoader(_items(nan_at=0), batch_size=1),
        network=WithAttention(net),
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=ClassificationMaskLoss(),
        prepare_batch=PrepareBatchWithRegions(),
        decollate=False,
    )
    NonFiniteLossGuard().attach(trainer)
    steps = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: steps.append(e.state.iteration))
    with pytest.raises(NonFiniteLossError, match=r"batch \[scan0\]"):
        trainer.run()
    assert steps == []
    assert all(torch.equal(before[k], v) for k, v in net.named_parameters())  # no optimizer step was taken


def test_training_with_batches_of_several_scans_and_a_short_last_batch() -> None:
    from hirescam_ext.handlers import LossComponentsHandler

    net = _net()
    loss = ClassificationMaskLoss(mask_weight=1.0 / 3.0)
    trainer = SupervisedTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=DataLoader(_items(n=5), batch_size=3),  # batches of 3 and 2 scans
        network=WithAttention(net),
        optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
        loss_function=loss,
        prepare_batch=PrepareBatchWithRegions(),
        decollate=False,
    )
    LossComponentsHandler(loss).attach(trainer)
    sizes = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: sizes.append(e.state.batch["image"].shape[0]))
    trainer.run()
    assert sizes == [3, 2]
    assert {"class_loss", "mask_loss"} <= set(trainer.state.metrics)
    assert all(torch.isfinite(torch.as_tensor(trainer.state.metrics[k])) for k in ("class_loss", "mask_loss"))


def test_batched_classification_loss_is_the_mean_over_scans() -> None:
    net = _net().eval()
    items = _items(n=3)
    x = torch.stack([i["image"] for i in items])
    target = {"label": torch.stack([i["label"] for i in items]), "regions": torch.stack([i["regions"] for i in items])}
    loss = ClassificationMaskLoss(use_mask_loss=False)
    with torch.no_grad():
        out = WithAttention(net)(x)
        batched = loss(out, target)
        single = [loss({k: v[i : i + 1] for k, v in out.items()}, {k: v[i : i + 1] for k, v in target.items()})
                  for i in range(3)]
    assert torch.allclose(batched, torch.stack(single).mean(), atol=1e-6)


def test_evaluation_sampler_refuses_a_split_smaller_than_the_process_count():
    from hirescam_ext.engines import evaluation_sampler
    from hirescam_ext.utils.errors import InputError

    with pytest.raises(InputError, match="test split has 0 scan"):
        evaluation_sampler([], "test")
    assert list(evaluation_sampler([10, 11, 12], "test")) == [0, 1, 2]  # one process: every scan, in order
