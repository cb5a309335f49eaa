"""Specification of the mask loss (eq. 11 of HiResCAM, arXiv:2011.08891) and the combined loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hirescam_ext.losses import ClassificationMaskLoss, MaskLoss


def _hand_mask_loss(a: torch.Tensor, g: torch.Tensor) -> float:
    values = [-math.log(1.0 - 1.0 / (1.0 + math.exp(-x))) for x in a.flatten().tolist()]
    forbidden = [v for v, r in zip(values, g.flatten().tolist()) if r == 0]
    return sum(forbidden) / len(forbidden)


def test_mask_loss_equals_hand_computation_pooled_over_forbidden_elements():
    a = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]], [[-0.3, 1.5], [0.7, -2.0]]]])  # [1, 2, 2, 2]
    g = torch.tensor([[[[1, 0], [0, 1]], [[0, 0], [0, 0]]]])
    expected = _hand_mask_loss(a, g)
    assert float(MaskLoss()(a, g)) == pytest.approx(expected, rel=1e-6)


def test_mask_loss_is_zero_with_finite_gradient_when_nothing_is_forbidden():
    a = torch.randn(2, 3, 2, 2, 2, requires_grad=True)
    loss = MaskLoss()(a, torch.ones_like(a))
    loss.backward()
    assert float(loss) == 0.0
    assert torch.isfinite(a.grad).all() and float(a.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4])
def test_mask_loss_finite_loss_and_gradient_for_huge_attention(scale):
    a = (torch.tensor([[[1.0, -1.0, 1.0, -1.0]]]) * scale).requires_grad_()
    g = torch.zeros_like(a)
    loss = MaskLoss()(a, g)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()
    assert float(loss) == pytest.approx(scale / 2, rel=1e-4)  # softplus(s) ~ s, softplus(-s) ~ 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mask_loss_low_precision_inputs_give_finite_float32_loss_and_gradients(dtype):
    a = (torch.tensor([[[1e4, -1e4, 3.0, 60000.0 if dtype == torch.float16 else 1e30]]])).to(dtype).requires_grad_()
    loss = MaskLoss()(a, torch.zeros_like(a))
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(a.grad.float()).all()


def test_mask_loss_reduction_none_gives_each_sample_alone():
    torch.manual_seed(0)
    a = torch.randn(2, 3, 4, 2, 2)
    g = (torch.rand(2, 3, 4, 2, 2) > 0.6).float()
    per_sample = MaskLoss(reduction="none")(a, g)
    assert per_sample.shape == (2,)
    for b in range(2):
        assert float(per_sample[b]) == pytest.approx(float(MaskLoss()(a[b : b + 1], g[b : b + 1])), rel=1e-6)
    assert float(MaskLoss(reduction="sum")(a, g)) == pytest.approx(float(per_sample.sum()), rel=1e-6)


def test_mask_loss_mean_pools_forbidden_elements_over_the_batch():
    a = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])
    g = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]])
    expected = (F.softplus(torch.tensor(1.0)) + F.softplus(torch.tensor(3.0)) + F.softplus(torch.tensor(4.0))) / 3
    assert float(MaskLoss()(a, g)) == pytest.approx(float(expected), rel=1e-6)


def test_mask_loss_supports_any_number_of_spatial_dims():
    a = torch.zeros(1, 2, 5)  # one spatial dim
    assert float(MaskLoss()(a, torch.zeros_like(a))) == pytest.approx(math.log(2.0))


def test_mask_loss_shape_mismatch_raises_value_error():
    with pytest.raises(ValueError, match="differ"):
        MaskLoss()(torch.zeros(1, 2, 3, 2, 2), torch.zeros(1, 2, 3, 2, 3))


def test_combined_loss_equals_bce_plus_lambda_times_mask():
    torch.manual_seed(1)
    logits, labels = torch.randn(2, 4), (torch.rand(2, 4) > 0.5).float()
    attention, regions = torch.randn(2, 4, 3, 2, 2), (torch.rand(2, 4, 3, 2, 2) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, labels)
    mask = MaskLoss()(attention, regions)
    loss = ClassificationMaskLoss(mask_weight=1 / 3)(
        {"logits": logits, "attention": attention}, {"label": labels, "regions": regions}
    )
    assert float(loss) == pytest.approx(float(bce + mask / 3), rel=1e-6)


def test_combined_loss_off_switch_equals_bce_alone():
    torch.manual_seed(2)
    logits, labels = torch.randn(2, 4), (torch.rand(2, 4) > 0.5).float()
    pred = {"logits": logits, "attention": torch.randn(2, 4, 3, 2, 2)}
    target = {"label": labels, "regions": torch.zeros(2, 4, 3, 2, 2)}
    loss = ClassificationMaskLoss(use_mask_loss=False)(pred, target)
    assert float(loss) == pytest.approx(float(F.binary_cross_entropy_with_logits(logits, labels)), rel=1e-6)


def test_combined_loss_accepts_object_prediction_and_exposes_components():
    class Out:
        def __init__(self, logits, attention):
            self.logits, self.attention = logits, attention

    logits, labels = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    attention, regions = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    fn = ClassificationMaskLoss(mask_weight=0.5)
    parts = fn.components(Out(logits, attention), {"label": labels, "regions": regions})
    assert float(parts["class_loss"]) == pytest.approx(math.log(2.0))
    assert float(parts["mask_loss"]) == pytest.approx(math.log(2.0))
    assert float(parts["loss"]) == pytest.approx(1.5 * math.log(2.0))
    assert float(fn.last_components["mask_loss"]) == pytest.approx(math.log(2.0))


def test_combined_loss_plain_logits_prediction_has_no_mask_term():
    logits, labels = torch.zeros(1, 2), torch.ones(1, 2)
    with pytest.warns(UserWarning, match="no attention"):
        loss = ClassificationMaskLoss()(logits, labels)
    assert float(loss) == pytest.approx(math.log(2.0))


def test_combined_loss_attention_without_regions_raises():
    with pytest.raises(ValueError, match="regions"):
        ClassificationMaskLoss()({"logits": torch.zeros(1, 2), "attention": torch.zeros(1, 2, 3)}, torch.ones(1, 2))


def test_combined_loss_reduction_none_gives_per_sample_values():
    torch.manual_seed(3)
    logits, labels = torch.randn(2, 3), (torch.rand(2, 3) > 0.5).float()
    attention, regions = torch.randn(2, 3, 2, 2), (torch.rand(2, 3, 2, 2) > 0.5).float()
    fn = ClassificationMaskLoss(reduction="none")
    per_sample = fn({"logits": logits, "attention": attention}, {"label": labels, "regions": regions})
    single = ClassificationMaskLoss()
    for b in range(2):
        alone = single(
            {"logits": logits[b : b + 1], "attention": attention[b : b + 1]},
            {"label": labels[b : b + 1], "regions": regions[b : b + 1]},
        )
        assert float(per_sample[b]) == pytest.approx(float(alone), rel=1e-6)


def test_combined_loss_works_as_supervised_trainer_loss_function():
    from monai.engines import SupervisedTrainer

    from hirescam_ext.losses.mask_loss import split_target

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 1)

        def forward(self, x):
            attention = self.conv(x)  # [B, 2, 4, 4]
            return {"logits": attention.mean(dim=(2, 3)), "attention": attention}

    def prepare(batch, device=None, non_blocking=False, **kwargs):
        return batch["image"], {"label": batch["label"], "regions": batch["regions"]}

    net = Toy()
    before = net.conv.weight.detach().clone()
    data = [{"image": torch.randn(1, 1, 4, 4), "label": torch.tensor([[1.0, 0.0]]), "regions": torch.zeros(1, 2, 4, 4)}]
    loss_fn = ClassificationMaskLoss()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=loss_fn,
        prepare_batch=prepare,
        decollate=False,
    )
    trainer.run()
    assert torch.isfinite(trainer.state.output["loss"])
    assert set(loss_fn.last_components) == {"loss", "class_loss", "mask_loss"}
    assert float(loss_fn.last_components["mask_loss"]) > 0.0
    assert not torch.equal(before, net.conv.weight)
    assert split_target({"label": torch.ones(1)})[1] is None


def test_use_mask_loss_false_as_a_command_line_string_switches_the_mask_term_off():
    loss = ClassificationMaskLoss(use_mask_loss="false")
    pred = {"logits": torch.zeros(1, 2), "attention": torch.full((1, 2, 3, 2, 2), 5.0)}
    target = {"label": torch.zeros(1, 2), "regions": torch.zeros(1, 2, 3, 2, 2)}
    parts = loss.components(pred, target)
    assert loss.use_mask_loss is False and float(parts["mask_loss"]) == 0.0


def test_paper_mask_loss_leaves_negative_attention_outside_g_true_unpenalized():
    a = torch.tensor([[[-30.0, -30.0]]])
    g = torch.zeros_like(a)
    assert float(MaskLoss()(a, g)) < 1e-12


def test_two_sided_mask_loss_penalizes_negative_attention_like_positive_attention():
    g = torch.tensor([[[0.0, 0.0, 1.0]]])
    neg = torch.tensor([[[-3.0, -1.0, -50.0]]], requires_grad=True)
    loss = MaskLoss(penalize="both")(neg, g)
    two_sided = lambda v: F.softplus(torch.tensor(v)) + F.softplus(torch.tensor(-v)) - math.log(2)  # noqa: E731
    assert float(loss) == pytest.approx(float(two_sided(3.0) + two_sided(1.0)) / 2)
    assert float(loss) == pytest.approx(float(MaskLoss(penalize="both")(-neg.detach(), g)))  # symmetric
    loss.backward()
    assert neg.grad[0, 0, 0] < 0 and neg.grad[0, 0, 1] < 0  # pushes forbidden negative attention up towards 0
    assert neg.grad[0, 0, 2] == 0  # allowed cells stay free


def test_two_sided_mask_loss_is_smooth_at_zero_and_matches_the_paper_there():
    a = torch.zeros(1, 1, 4, requires_grad=True)
    g = torch.zeros_like(a)
    loss = MaskLoss(penalize="both")(a, g)
    assert float(loss) == pytest.approx(math.log(2)) == pytest.approx(float(MaskLoss()(a.detach(), g)))
    loss.backward()
    assert torch.all(a.grad == 0)  # no L1-like kink pinning small attention to zero


def test_mask_penalty_must_be_positive_or_both():
    with pytest.raises(ValueError, match="penalize"):
        MaskLoss(penalize="negative")
    with pytest.raises(ValueError, match="penalize"):
        ClassificationMaskLoss(mask_penalize="abs")


def test_combined_loss_passes_the_two_sided_penalty_to_its_mask_term():
    pred = {"logits": torch.zeros(1, 1), "attention": torch.full((1, 1, 2, 2), -4.0)}
    target = {"label": torch.zeros(1, 1), "regions": torch.zeros(1, 1, 2, 2)}
    paper = ClassificationMaskLoss().components(pred, target)["mask_loss"]
    both = ClassificationMaskLoss(mask_penalize="both").components(pred, target)["mask_loss"]
    expected = F.softplus(torch.tensor(4.0)) + F.softplus(torch.tensor(-4.0)) - math.log(2)
    assert float(paper) < 0.02 and float(both) == pytest.approx(float(expected))


def test_logit_pooled_mask_loss_penalizes_the_forbidden_part_of_the_logit_once_per_map():
    # [B=1, M=2, H=2, 1, 2]: map 0 spreads +0.5 over its 4 forbidden elements, map 1 has nothing forbidden
    a = torch.tensor([[[[[0.5, 0.5]], [[0.5, 0.5]]], [[[3.0, 3.0]], [[3.0, 3.0]]]]])
    g = torch.zeros_like(a)
    g[0, 1] = 1
    loss = MaskLoss(pool="logit")(a, g)
    assert float(loss) == pytest.approx(float(F.softplus(torch.tensor(2.0 / 2))))  # (1 / H) * sum = 1.0
    both = MaskLoss(pool="logit", penalize="both")(-a, g)
    expected = F.softplus(torch.tensor(1.0)) + F.softplus(torch.tensor(-1.0)) - math.log(2)
    assert float(both) == pytest.approx(float(expected))


def test_logit_pooling_notices_a_thinly_spread_shortcut_that_the_element_mean_does_not():
    a = torch.full((1, 1, 16, 4, 4), 0.06)  # 256 small elements: 0.06 * 256 / 16 = 0.96 logit
    g = torch.zeros_like(a)
    element = MaskLoss(penalize="both")(a, g)
    logit = MaskLoss(penalize="both", pool="logit")(a, g)
    assert float(element) - math.log(2) < 2e-3
    assert float(logit) - math.log(2) > 0.2


def test_mask_pool_must_be_element_or_logit_and_logit_needs_a_slice_axis():
    with pytest.raises(ValueError, match="pool"):
        MaskLoss(pool="sum")
    with pytest.raises(ValueError, match="H"):
        MaskLoss(pool="logit")(torch.zeros(2, 3), torch.zeros(2, 3))
