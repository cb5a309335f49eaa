"""Specification of the learning-rate schedules of hirescam_ext.engines.optim."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext.engines import build_lr_scheduler


def _lrs(name: str, total: int, warmup: int) -> list[float]:
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    sched = build_lr_scheduler(opt, name, total_steps=total, warmup_steps=warmup)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_schedule_without_warmup_keeps_the_lr():
    assert _lrs("constant", 5, 0) == [1.0] * 5


def test_warmup_rises_linearly_to_the_peak():
    assert _lrs("constant", 6, 4)[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_cosine_decays_to_the_final_fraction():
    lrs = _lrs("warmup_cosine", 102, 2)
    assert lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert lrs[-1] == pytest.approx(0.05, abs=0.01)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown lr schedule"):
        build_lr_scheduler(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0), "step")


def test_optimizer_is_not_fused_on_cpu_by_default():
    from hirescam_ext.engines.optim import build_optimizer

    for name in ("sgd", "adam", "adamw"):
        assert not build_optimizer(torch.nn.Linear(3, 2).parameters(), name).defaults.get("fused")


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_optimizer_takes_the_same_step_within_rounding(name):
    from hirescam_ext.engines.optim import build_optimizer

    torch.manual_seed(0)
    a, b = torch.nn.Linear(16, 4), torch.nn.Linear(16, 4)
    b.load_state_dict(a.state_dict())
    plain, fused = build_optimizer(a.parameters(), name), build_optimizer(b.parameters(), name, fused=True)
    assert fused.defaults["fused"] is True
    x = torch.randn(8, 16)
    for _ in range(3):
        for net, opt in ((a, plain), (b, fused)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
