"""Crash-safe checkpoints, resume and early stopping for the training workflow.

``TrainingCheckpointer`` writes ``last.pt`` after every epoch (model, optimizer, scheduler, trainer state, early
stopping state and every random number generator state the training loop draws from) and ``best.pt`` when the
validation score improves. Files are written under a temporary name and renamed, so a crash never leaves a
half-written checkpoint that a later run trusts. With ``resume=True`` a restarted run continues from ``last.pt`` and,
in deterministic mode on CPU, ends with the same weights as an uninterrupted run.

Both files also carry the model's settings (``"model_settings"``: network definition, preprocessing, label names,
attention grid, versions; :mod:`hirescam_ext.engines.model_settings`), so evaluation and inference rebuild the network
and prepare scans exactly as in training.

Checkpoints load with ``torch.load(weights_only=True)``: they hold tensors and plain Python values only.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import Compose, Randomizable

from hirescam_ext.engines.model_settings import MODEL_SETTINGS_KEY
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import atomic_write

__all__ = ["TrainingCheckpointer", "load_network_weights", "randomizable_transforms"]

logger = logging.getLogger(__name__)


def randomizable_transforms(transform: Any) -> list[Randomizable]:
    """All ``Randomizable`` transforms inside ``transform`` (Compose trees walked depth first)."""
    found: list[Randomizable] = []
    stack = [transform]
    while stack:
        t = stack.pop(0)
        if isinstance(t, Compose):
            stack = list(t.transforms) + stack
        elif isinstance(t, Randomizable) and hasattr(t, "R"):
            found.append(t)
    return found


def _rng_state(transforms: Iterable[Randomizable]) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _python_state_to_plain(random.getstate()),
        "transforms": [_np_rs_to_plain(t.R.get_state()) for t in transforms],
    }


def _np_rs_to_plain(state: tuple) -> list:
    return [state[0], torch.from_numpy(np.asarray(state[1]).astype(np.int64)), *[_plain(v) for v in state[2:]]]


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _np_rs_from_plain(state: list) -> tuple:
    return (state[0], state[1].numpy().astype(np.uint32), *state[2:])


def _python_state_to_plain(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _set_rng_state(state: dict[str, Any], transforms: list[Randomizable]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(_np_rs_from_plain(state["numpy"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    saved = state.get("transforms", [])
    if len(saved) != len(transforms):
        logger.warning(
            "checkpoint has %d transform RNG states, the pipeline %d: not restored", len(saved), len(transforms)
        )
        return
    for t, s in zip(transforms, saved):
        t.R.set_state(_np_rs_from_plain(s))


def _likely_settings(keys: Iterable[str], shapes: dict[str, tuple[tuple, tuple]]) -> list[str]:
    """Settings that probably explain a state-dict mismatch, from the names (and shapes) of the differing keys."""
    likely: list[str] = []

    def add(*names: str) -> None:
        likely.extend(n for n in names if n not in likely)

    for key in keys:
        top = key.split(".")[0]
        if top == "trunk":
            add("trunk")
        elif top == "custom_convs":
            add("custom_convs", "custom_conv_padding")
        elif key in shapes and key.endswith("weight") and len(shapes[key][0]) == 2:  # a linear layer
            (file_out, file_in), (net_out, net_in) = shapes[key]
            if file_out != net_out:
                add("n_classes")
            if file_in != net_in:
                add("spatial_size", "custom_conv_padding")
        elif top in ("fc", "classifier"):
            add("n_classes", "spatial_size")
    return likely or ["trunk", "spatial_size", "n_classes"]


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with our message for a missing or unreadable file.

    Raises:
        InputError: naming the file when it is missing or not a readable PyTorch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors differ between torch versions
        raise InputError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def load_network_weights(network: torch.nn.Module, path: str | os.PathLike, key: str = "model") -> None:
    """Load ``path`` (a checkpoint with ``key`` or a bare state dict) into ``network``, strictly.

    Raises:
        InputError: naming the file when it is missing, unreadable, or made for another architecture or label set.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    state = ckpt.get(key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise InputError(path, f"holds no state dict under {key!r}")
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        details = []
        if mismatched:
            k = mismatched[0]
            details.append(
                f"{len(mismatched)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs network "
                f"{tuple(own[k].shape)}; another label set or input size?)"
            )
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        message = "checkpoint does not match the network: " + "; ".join(details) + "; nothing loaded"
        if not (isinstance(ckpt, dict) and ckpt.get(MODEL_SETTINGS_KEY)):
            shapes = {k: (tuple(state[k].shape), tuple(own[k].shape)) for k in mismatched}
            likely = _likely_settings(mismatched + missing + unexpected, shapes)
            message += (
                "; the checkpoint records no model settings (saved before hirescam-ext recorded them, or a bare "
                f"state dict): pass the settings it was trained with; likely different: {', '.join(likely)} "
                "(e.g. --trunk small --spatial_size \"[64,64,48]\")"
            )
        raise InputError(path, message)
    network.load_state_dict(state, strict=True)


class TrainingCheckpointer:
    """Save ``last.pt`` every epoch and ``best.pt`` on a better validation score; resume; stop early.

    Attach it to the trainer AFTER the validation handler (handlers run in attach order at ``EPOCH_COMPLETED``).

    Args:
        save_dir: checkpoint folder (created).
        network: the model (unwrapped; its ``state_dict`` is saved under ``"model"``).
        optimizer: saved under ``"optimizer"``.
        lr_scheduler: optional, saved under ``"lr_scheduler"``.
        evaluator: the validation engine whose ``state.metrics[metric_name]`` scores an epoch.
        metric_name: validation metric that decides ``best.pt`` and early stopping.
        mode: ``"min"`` (a loss) or ``"max"`` (AUROC ...).
        patience: stop after this many validations without improvement (``None``: never).
        transforms: the training transform pipeline, whose random states are saved for an exact resume.
        model_settings: saved under ``"model_settings"`` in both files
            (:func:`~hirescam_ext.engines.model_settings.make_model_settings`; the bundle's train.json passes them).
        resume: continue from ``save_dir/last.pt`` when it exists.
        save_rank0_only: in distributed runs only rank 0 writes.

    Example:
        >>> ckpt = TrainingCheckpointer("models", net, opt, evaluator=evaluator, patience=15)  # doctest: +SKIP
        >>> ckpt.attach(trainer)  # doctest: +SKIP
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any | None = None,
        evaluator: Engine | None = None,
        metric_name: str = "val_loss",
        mode: str = "min",
        patience: int | None = None,
        transforms: Any | None = None,
        resume: bool = False,
        save_rank0_only: bool = True,
        model_settings: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.save_dir = Path(save_dir)
        self.network = getattr(network, "module", network)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.mode = mode
        self.patience = patience
        self.random_transforms = randomizable_transforms(transforms) if transforms is not None else []
        self.resume = resume
        self.save_rank0_only = save_rank0_only
        self.model_settings = model_settings
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.bad_validations = 0
        self._pending_score: float | None = None

    @property
    def last_path(self) -> Path:
        return self.save_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.save_dir / "best.pt"

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary checkpoint files left by a run killed while saving (they are never loaded)."""
        removed: list[Path] = []
        if not self._writer() or not self.save_dir.is_dir():
            return removed
        for name in (self.last_path.name, self.best_path.name):
            for tmp in self.save_dir.glob(f".{name}.*.tmp.pt"):
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except OSError:
                    logger.warning("could not remove the stale temporary file %s", tmp)
        if removed:
            logger.info("removed %d temporary file(s) of an interrupted save in %s", len(removed), self.save_dir)
        return removed

    def attach(self, engine: Engine) -> None:
        self.remove_stale_temporaries()
        if self.resume:
            engine.add_event_handler(Events.STARTED, self._resume)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._validation_completed)

    # ------------------------------------------------------------------ state
    def state_dict(self, engine: Engine) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": {"epoch": int(engine.state.epoch), "iteration": int(engine.state.iteration)},
            "early_stopping": {
                "best_score": self.best_score,
                "best_epoch": self.best_epoch,
                "bad_validations": self.bad_validations,
            },
            "rng": _rng_state(self.random_transforms),
        }
        if self.model_settings is not None:
            state[MODEL_SETTINGS_KEY] = self.model_settings
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        return state

    def _writer(self) -> bool:
        if not self.save_rank0_only or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return True
        return torch.distributed.get_rank() == 0

    def _save(self, state: dict[str, Any], path: Path) -> None:
        if not self._writer():
            return
        with atomic_write(path) as tmp:
            torch.save(state, tmp)

    # ------------------------------------------------------------------ events
    def _validation_completed(self, evaluator: Engine) -> None:
        value = evaluator.state.metrics.get(self.metric_name)
        if value is None:
            available = sorted(evaluator.state.metrics)
            raise KeyError(f"validation has no metric {self.metric_name!r} (metrics: {available})")
        self._pending_score = float(value)

    def _epoch_completed(self, engine: Engine) -> None:
        improved = False
        score, self._pending_score = self._pending_score, None
        if score is not None and np.isfinite(score):
            better = (
                self.best_score is None
                or (self.mode == "min" and score < self.best_score)
                or (self.mode == "max" and score > self.best_score)
            )
            if better:
                self.best_score, self.best_epoch, self.bad_validations = score, int(engine.state.epoch), 0
                improved = True
            else:
                self.bad_validations += 1
        state = self.state_dict(engine)
        if improved:
            self._save(state, self.best_path)
        if improved and self._writer():
            logger.info(
                "epoch %d: %s improved to %.5f, saved %s", engine.state.epoch, self.metric_name, score, self.best_path
            )
        self._save(state, self.last_path)
        if self.patience is not None and self.bad_validations >= self.patience:
            logger.info(
                "early stopping: no %s improvement in %d validations (best %.5f at epoch %s)",
                self.metric_name, self.bad_validations, self.best_score, self.best_epoch,
            )
            engine.terminate()

    def _resume(self, engine: Engine) -> None:
        if not self.last_path.is_file():
            logger.info("resume requested but %s does not exist: starting from scratch", self.last_path)
            return
        try:
            state = torch.load(self.last_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(self.last_path, f"cannot resume: unreadable checkpoint ({exc})") from exc
        load_network_weights(self.network, self.last_path)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and "lr_scheduler" in state:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        es = state.get("early_stopping", {})
        self.best_score, self.best_epoch = es.get("best_score"), es.get("best_epoch")
        self.bad_validations = int(es.get("bad_validations", 0))
        if "rng" in state:
            _set_rng_state(state["rng"], self.random_transforms)
        engine.state.epoch = int(state["trainer"]["epoch"])
        engine.state.iteration = int(state["trainer"]["iteration"])
        logger.info("resumed from %s at epoch %d", self.last_path, engine.state.epoch)
        if self.patience is not None and self.bad_validations >= self.patience:
            engine.terminate()
