"""TrainingHistory: one JSON line per epoch with the epoch's training and validation metrics."""

from __future__ import annotations

import json
from pathlib import Path

from ignite.engine import Engine, Events

from hirescam_ext.handlers import TrainingHistory, read_history


def _engines(val_every: int = 1) -> tuple[Engine, Engine]:
    evaluator = Engine(lambda engine, batch: None)

    @evaluator.on(Events.COMPLETED)
    def _metrics(engine: Engine) -> None:
        engine.state.metrics["val_loss"] = 1.0 / trainer.state.epoch
        engine.state.metrics["val_mean_auroc"] = 0.5 + 0.1 * trainer.state.epoch
        engine.state.metrics["not_a_number"] = "text"

    trainer = Engine(lambda engine, batch: None)

    @trainer.on(Events.EPOCH_COMPLETED)
    def _validate(engine: Engine) -> None:  # attached first, as ValidationHandler is in train.json
        engine.state.metrics["class_loss"] = 0.1 * engine.state.epoch
        if engine.state.epoch % val_every == 0:
            evaluator.run([0])

    return trainer, evaluator


def test_each_epoch_gets_one_line_with_its_training_and_validation_metrics(tmp_path: Path) -> None:
    trainer, evaluator = _engines()
    TrainingHistory(tmp_path / "h.jsonl", evaluator=evaluator).attach(trainer)
    trainer.run([0, 1], max_epochs=3)
    history = read_history(tmp_path / "h.jsonl")
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[1]["val_mean_auroc"] == 0.7 and history[1]["class_loss"] == 0.2 and history[1]["seconds"] >= 0
    assert "not_a_number" not in history[0]


def test_an_epoch_without_validation_has_training_metrics_only(tmp_path: Path) -> None:
    trainer, evaluator = _engines(val_every=2)
    TrainingHistory(tmp_path / "h.jsonl", evaluator=evaluator).attach(trainer)
    trainer.run([0], max_epochs=3)
    history = read_history(tmp_path / "h.jsonl")
    assert ["val_loss" in e for e in history] == [False, True, False]


def test_a_fresh_run_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"epoch": 7, "val_loss": 3.0}) + "\n", encoding="utf-8")
    trainer, evaluator = _engines()
    TrainingHistory(path, evaluator=evaluator).attach(trainer)
    trainer.run([0], max_epochs=2)
    assert [e["epoch"] for e in read_history(path)] == [1, 2]


def test_a_resumed_run_keeps_the_epochs_it_resumes_after_and_drops_later_ones(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps({"epoch": e, "old": True}) + "\n" for e in (1, 2, 3)), encoding="utf-8")
    trainer, evaluator = _engines()

    @trainer.on(Events.STARTED)
    def _resume(engine: Engine) -> None:  # what TrainingCheckpointer does from last.pt (epoch 2)
        engine.state.epoch = 2
        engine.state.iteration = 2

    TrainingHistory(path, evaluator=evaluator).attach(trainer)
    trainer.run([0], max_epochs=4)
    history = read_history(path)
    assert [(e["epoch"], e.get("old", False)) for e in history] == [(1, True), (2, True), (3, False), (4, False)]


def test_a_line_cut_short_is_skipped_when_read(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n" + '{"epoch": 2, "val_lo', encoding="utf-8")
    assert read_history(path) == [{"epoch": 1}]
    assert read_history(tmp_path / "missing.jsonl") == []
