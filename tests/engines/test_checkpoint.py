"""TrainingCheckpointer is Ignite's Checkpoint + atomic DiskSaver + EarlyStopping, minus two gaps of Ignite's saver.

Each behaviour runs a real (tiny) Ignite trainer with an evaluator whose validation loss follows a script.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from hirescam_ext.engines.checkpoint import ReplacingDiskSaver, TrainingCheckpointer


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _run(
    save_dir: Path,
    losses: list[float],
    patience: int | None = None,
    resume: bool = False,
    mode: str = "min",
    max_epochs: int | None = None,
    keep_every: int = 0,
) -> tuple[TrainingCheckpointer, Engine, torch.nn.Linear]:
    """Train a Linear for ``len(losses)`` epochs; validation after epoch ``e`` reports ``losses[e - 1]``."""
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

    def step(engine: Engine, batch: torch.Tensor) -> float:
        opt.zero_grad()
        loss = net(batch).pow(2).mean()
        loss.backward()
        opt.step()
        return float(loss.detach())

    trainer = Engine(step)
    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(
        Events.COMPLETED, lambda e: e.state.metrics.update(val_loss=losses[trainer.state.epoch - 1])
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    ckpt = TrainingCheckpointer(save_dir, net, opt, evaluator=evaluator, mode=mode, patience=patience, resume=resume,
                                keep_every=keep_every, model_settings={"network_def": {"_target_": "Linear"}})
    ckpt.attach(trainer)
    trainer.run([torch.ones(4, 2)] * 3, max_epochs=max_epochs or len(losses))
    return ckpt, trainer, net


def test_best_is_the_epoch_with_the_lowest_validation_loss(tmp_path: Path) -> None:
    ckpt, _, _ = _run(tmp_path, [3.0, 1.0, 2.0, 1.5])
    assert _load(tmp_path / "best.pt")["trainer"]["epoch"] == 2
    assert _load(tmp_path / "last.pt")["trainer"] == {"epoch": 4, "iteration": 12}
    assert ckpt.best_score == 1.0 and ckpt.bad_validations == 2


def test_mode_max_keeps_the_highest_score(tmp_path: Path) -> None:
    _run(tmp_path, [0.5, 0.7, 0.6], mode="max")
    assert _load(tmp_path / "best.pt")["trainer"]["epoch"] == 2


def test_a_nan_validation_never_becomes_best_and_counts_as_no_improvement(tmp_path: Path) -> None:
    ckpt, _, _ = _run(tmp_path, [float("nan"), 2.0, float("nan")])
    assert _load(tmp_path / "best.pt")["trainer"]["epoch"] == 2
    assert ckpt.best_score == 2.0 and ckpt.bad_validations == 1


def test_early_stopping_ends_training_after_patience_validations_without_improvement(tmp_path: Path) -> None:
    _, trainer, _ = _run(tmp_path, [1.0, 2.0, 3.0, 0.5, 0.1], patience=2)
    assert trainer.state.epoch == 3
    last = _load(tmp_path / "last.pt")
    assert last["trainer"]["epoch"] == 3  # the stopping epoch is saved
    assert last["early_stopping"]["counter"] == 2 and last["early_stopping"]["best_score"] == 1.0


def test_last_holds_every_object_a_resume_needs(tmp_path: Path) -> None:
    _run(tmp_path, [1.0, 0.5])
    last = _load(tmp_path / "last.pt")
    assert {"model", "optimizer", "trainer", "early_stopping", "best_checkpoint", "rng"} <= set(last)
    assert last["best_checkpoint"]["_saved"] == [(-0.5, "best.pt")]


def test_a_resumed_run_compares_against_the_best_score_of_the_interrupted_run(tmp_path: Path) -> None:
    _run(tmp_path, [1.0, 0.2, 0.9])  # best at epoch 2
    best_before = (tmp_path / "best.pt").read_bytes()
    ckpt, trainer, _ = _run(tmp_path, [1.0, 0.2, 0.9, 0.5, 0.3], resume=True)
    assert trainer.state.epoch == 5
    assert (tmp_path / "best.pt").read_bytes() == best_before  # 0.5 and 0.3 are worse than 0.2
    assert ckpt.bad_validations == 3


def test_resume_continues_with_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    _, _, straight = _run(tmp_path / "straight", [3.0, 2.0, 1.0, 0.5])
    _run(tmp_path / "split", [3.0, 2.0, 1.0, 0.5], max_epochs=2)
    _, trainer, resumed = _run(tmp_path / "split", [3.0, 2.0, 1.0, 0.5], resume=True)
    assert trainer.state.epoch == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_run_already_stopped_early_does_not_train_again_on_resume(tmp_path: Path) -> None:
    _run(tmp_path, [1.0, 2.0, 3.0, 0.5], patience=2)
    before = (tmp_path / "last.pt").read_bytes()
    _, trainer, _ = _run(tmp_path, [1.0, 2.0, 3.0, 0.5], patience=2, resume=True)
    assert trainer.state.epoch == 3
    assert (tmp_path / "last.pt").read_bytes() == before


def test_a_last_checkpoint_of_the_previous_format_resumes_with_its_early_stopping_state(tmp_path: Path) -> None:
    _run(tmp_path, [1.0, 0.4, 0.8])
    last = _load(tmp_path / "last.pt")
    del last["best_checkpoint"]
    last["early_stopping"] = {"best_score": 0.4, "best_epoch": 2, "bad_validations": 1}  # hirescam-ext 0.1.0
    torch.save(last, tmp_path / "last.pt")
    best_before = (tmp_path / "best.pt").read_bytes()
    ckpt, _, _ = _run(tmp_path, [1.0, 0.4, 0.8, 0.6], patience=5, resume=True)
    assert (tmp_path / "best.pt").read_bytes() == best_before  # 0.6 is worse than the restored 0.4
    assert ckpt.best_score == 0.4 and ckpt.bad_validations == 2


def _failing_save(saver: DiskSaver, path: Path) -> None:
    """Save once, then make the next ``torch.save`` fail after Checkpoint has prepared the write."""
    net = torch.nn.Linear(2, 1)
    handler = Checkpoint({"model": net}, saver, filename_pattern=path.name)
    engine = Engine(lambda e, b: None)
    engine.state.iteration = 1
    handler(engine)
    assert path.is_file()
    engine.state.iteration = 2
    handler.to_save = {"model": net, "bad": _Unpicklable()}
    with pytest.raises(Exception):
        handler(engine)


class _Unpicklable:
    def state_dict(self) -> object:
        return lambda: None  # torch.save cannot pickle a lambda


def test_ignite_disk_saver_deletes_the_previous_file_before_a_failed_write(tmp_path: Path) -> None:
    """Why ReplacingDiskSaver exists: with stock Ignite a failed save of ``last.pt`` leaves no ``last.pt`` at all."""
    _failing_save(DiskSaver(tmp_path, atomic=True, require_empty=False), tmp_path / "last.pt")
    assert not (tmp_path / "last.pt").exists()


def test_replacing_saver_keeps_the_previous_file_when_a_write_fails(tmp_path: Path) -> None:
    _failing_save(ReplacingDiskSaver(tmp_path), tmp_path / "last.pt")
    assert set(_load(tmp_path / "last.pt")) == {"weight", "bias"}  # the first save, intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left


def test_checkpoints_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        _run(tmp_path, [1.0])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o640


def test_keep_every_keeps_the_weights_and_settings_of_every_nth_epoch(tmp_path: Path) -> None:
    _run(tmp_path, [3.0, 2.0, 1.0, 0.5, 0.4], keep_every=2)
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == ["epoch_2.pt", "epoch_4.pt"]
    kept = _load(tmp_path / "epochs" / "epoch_4.pt")
    assert set(kept) == {"model", "trainer", "model_settings"}  # no optimizer: a model to score, not to resume
    assert kept["trainer"] == {"epoch": 4, "iteration": 12}
    assert kept["model_settings"] == {"network_def": {"_target_": "Linear"}}


def test_the_last_kept_epoch_holds_the_weights_of_last_pt(tmp_path: Path) -> None:
    _run(tmp_path, [3.0, 2.0, 1.0], keep_every=1)
    kept, last = _load(tmp_path / "epochs" / "epoch_3.pt")["model"], _load(tmp_path / "last.pt")["model"]
    assert all(torch.equal(kept[k], last[k]) for k in last)
    assert not torch.equal(_load(tmp_path / "epochs" / "epoch_2.pt")["model"]["weight"], last["weight"])


def test_a_resumed_run_keeps_its_epochs_beside_those_of_the_interrupted_run(tmp_path: Path) -> None:
    _run(tmp_path, [3.0, 2.0, 1.0, 0.5], max_epochs=2, keep_every=1)
    before = (tmp_path / "epochs" / "epoch_2.pt").read_bytes()
    _run(tmp_path, [3.0, 2.0, 1.0, 0.5], resume=True, keep_every=1)
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == [f"epoch_{e}.pt" for e in (1, 2, 3, 4)]
    assert (tmp_path / "epochs" / "epoch_2.pt").read_bytes() == before


def test_no_epochs_are_kept_by_default(tmp_path: Path) -> None:
    _run(tmp_path, [1.0, 0.5])
    assert not (tmp_path / "epochs").exists()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_keep_every_must_be_a_whole_number_of_epochs(tmp_path: Path, bad) -> None:
    net = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="keep_every"):
        TrainingCheckpointer(tmp_path, net, torch.optim.SGD(net.parameters(), lr=0.1), keep_every=bad)
