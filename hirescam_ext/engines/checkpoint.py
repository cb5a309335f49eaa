"""Crash-safe checkpoints, resume and early stopping for the training workflow.

``TrainingCheckpointer`` writes ``last.pt`` after every epoch (model, optimizer, scheduler, trainer state, early
stopping state and every random number generator state the training loop draws from) and ``best.pt`` when the
validation score improves, with Ignite's ``Checkpoint`` and ``EarlyStopping`` handlers. Files are written under a
temporary name and renamed (:class:`ReplacingDiskSaver`), so a crash never leaves a half-written checkpoint that a
later run trusts, nor a folder without ``last.pt``. With ``resume=True`` a restarted run continues from ``last.pt`` and,
in deterministic mode on CPU, ends with the same weights as an uninterrupted run. :func:`init_from_checkpoint` starts a
new run from another model's weights (fine-tuning the shipped reference model), after checking that the configured
network is the one the checkpoint was trained as.

Both files also carry the model's settings (``"model_settings"``: network definition, preprocessing, label names,
attention grid, versions; :mod:`hirescam_ext.engines.model_settings`), so evaluation and inference rebuild the network
and prepare scans exactly as in training.

Checkpoints load with ``torch.load(weights_only=True)``: they hold tensors and plain Python values only.
"""

from __future__ import annotations

import inspect
import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, EarlyStopping
from monai.transforms import Compose, Randomizable
from monai.utils.module import locate

from hirescam_ext.engines.model_settings import (
    MODEL_SETTINGS_KEY,
    PREPROCESSING_KEYS,
    WEIGHT_INIT_ARGS,
    network_definition,
    no_checkpoint,
    read_settings_file,
    same_setting,
    to_plain,
)
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import atomic_write

__all__ = [
    "TrainingCheckpointer",
    "ReplacingDiskSaver",
    "init_from_checkpoint",
    "load_network_weights",
    "randomizable_transforms",
]

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


def load_network_weights(
    network: torch.nn.Module, path: str | os.PathLike, key: str = "model", checkpoint: Any = None
) -> None:
    """Load ``path`` (a checkpoint with ``key`` or a bare state dict) into ``network``, strictly.

    Args:
        network: where the weights go.
        path: the checkpoint file.
        key: the state dict's key in a checkpoint dictionary.
        checkpoint: the file's content when the caller has read it already (:func:`read_checkpoint`); ``None``:
            read ``path``.

    Raises:
        InputError: naming the file when it is missing, unreadable, or made for another architecture or label set.
    """
    path = Path(path)
    ckpt = read_checkpoint(path) if checkpoint is None else checkpoint
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


#: constructor arguments that only say how the input was windowed; compared as the preprocessing's ``hu_range`` and
#: ``center`` (a warning), since the densitometry branch and extra windows read HU values back through them
_INPUT_WINDOW_ARGS = ("input_hu_range", "input_center")


def _constructor_defaults(target: str) -> dict[str, Any]:
    """Default values of the constructor arguments of the class named ``target`` (``{}`` if it cannot be found)."""
    component = locate(target)
    if component is None:
        return {}
    params = inspect.signature(component).parameters.values()
    out = {}
    for p in params:
        if p.default is not inspect.Parameter.empty:
            try:
                out[p.name] = to_plain(p.default, p.name)
            except TypeError:  # a default that is no JSON value cannot have been recorded either
                continue
    return out


def _network_differences(saved: Mapping[str, Any], configured: Mapping[str, Any]) -> list[str]:
    """``"name: checkpoint X, configuration Y"`` for each constructor argument that differs (defaults filled in)."""
    saved_target, configured_target = saved.get("_target_"), configured.get("_target_")
    saved_class, configured_class = locate(str(saved_target)), locate(str(configured_target))
    if saved_target != configured_target and (saved_class is None or saved_class is not configured_class):
        return [f"network: checkpoint {saved_target!r}, configuration {configured_target!r}"]
    defaults = _constructor_defaults(str(configured_target))
    out: list[str] = []
    for key in sorted((set(saved) | set(configured)) - {"_target_", *WEIGHT_INIT_ARGS, *_INPUT_WINDOW_ARGS}):
        a, b = saved.get(key, defaults.get(key)), configured.get(key, defaults.get(key))
        if not same_setting(a, b):
            out.append(f"{key}: checkpoint {a!r}, configuration {b!r}")
    return out


def init_from_checkpoint(
    network: torch.nn.Module,
    ckpt_path: str | os.PathLike | None,
    settings: Mapping[str, Any] | None = None,
    settings_file: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
) -> torch.nn.Module:
    """Start training from the weights of ``ckpt_path`` (fine-tuning); returns ``network``.

    The bundle's ``train.json`` calls it with its ``init_ckpt`` (``None``: the network keeps its initialization). When
    the checkpoint records its settings (every checkpoint of this package does, e.g. ``bundle/models/reference.pt``;
    a bare state dict such as a packaged bundle's ``models/model.pt`` has them in ``settings_file``), the configured
    network must be the one it was trained as: every constructor argument is compared, defaults filled in, and a
    difference (trunk, input size, densitometry branch ...) is an error that names each setting with both values,
    before anything is loaded. Scans prepared otherwise (another ``spacing``, ``hu_range`` or ``center``) are allowed
    and logged as a warning: fine-tuning on them is a choice, but the model has not seen such scans. Weights then
    load strictly (:func:`load_network_weights`), output bias included, so the label prior the config set is
    replaced by the checkpoint's. A run resumed with ``resume`` loads ``last.pt`` over these weights afterwards.

    Args:
        network: the network to train (built by :func:`~hirescam_ext.engines.model_settings.define_network`); a
            wrapper that holds it as ``.module`` (one level, e.g. ``DistributedDataParallel``) is accepted.
        ckpt_path: a checkpoint with ``"model"`` or a bare state dict; ``None``, ``""``, ``"null"``: nothing to do.
        settings: the run's own settings (:func:`~hirescam_ext.engines.model_settings.make_model_settings`); the
            network definition is taken from ``network`` when they hold none.
        settings_file: the settings of a checkpoint that records none (``models/model_settings.json`` written by
            ``hirescam package``); ``None``: only the weights' shapes are checked for such a checkpoint.
        ckpt_dir: where this run writes ``best.pt`` / ``last.pt``; starting from one of those is refused, since
            the run would overwrite the file it started from.

    Raises:
        InputError: naming the checkpoint when it is missing or unreadable, records another network (each differing
            setting with both values), does not fit the network, or is one this run overwrites.

    Example:
        >>> net = init_from_checkpoint(net, "bundle/models/reference.pt", settings)  # doctest: +SKIP
    """
    if no_checkpoint(ckpt_path):
        return network
    path = Path(ckpt_path)  # type: ignore[arg-type]
    target = path.resolve()  # a link to the run's own best.pt is that file too
    if ckpt_dir is not None and target.parent == Path(ckpt_dir).resolve() and target.name in ("best.pt", "last.pt"):
        raise InputError(
            path,
            "this run writes its own checkpoints there and would overwrite the file it starts from; copy it elsewhere "
            "and pass that copy (to continue the run that wrote it, drop --init_ckpt and use --resume true)",
        )
    ckpt = read_checkpoint(path)
    saved = ckpt.get(MODEL_SETTINGS_KEY) if isinstance(ckpt, dict) else None
    if saved is None and not no_checkpoint(settings_file):
        saved = read_settings_file(settings_file)  # type: ignore[arg-type]
    own = dict(settings or {})
    configured = own.get("network_def") or network_definition(network)
    if isinstance(saved, dict) and isinstance(saved.get("network_def"), dict):
        if configured is None:
            logger.warning("the network was not built by define_network: %s is checked by its shapes only", path)
        else:
            differences = _network_differences(saved["network_def"], configured)
            if differences:
                raise InputError(
                    path,
                    "the checkpoint was trained as another network than this configuration builds ("
                    + "; ".join(differences)
                    + "); set these to the checkpoint's values to fine-tune it",
                )
        pre_saved, pre_own = saved.get("preprocessing") or {}, own.get("preprocessing") or {}
        both = [k for k in PREPROCESSING_KEYS if pre_saved.get(k) is not None and pre_own.get(k) is not None]
        changed = [
            f"{k} {pre_saved[k]!r} -> {pre_own[k]!r}" for k in both if not same_setting(pre_saved[k], pre_own[k])
        ]
        if changed:
            logger.warning(
                "%s was trained on scans prepared otherwise (%s): fine-tuning on these scans", path, ", ".join(changed)
            )
    else:
        logger.warning("%s records no model settings (and no settings file was given): only the weights' shapes are "
                       "checked", path)  # fmt: skip
    load_network_weights(getattr(network, "module", network), path, checkpoint=ckpt)
    logger.info("training starts from the weights of %s", path)
    return network


class _TrainerProgress:
    """The trainer's epoch and iteration as a checkpointable object (``{"epoch", "iteration"}``).

    Ignite's ``Engine.state_dict`` also stores ``max_epochs`` and restores it on load, which would stop a resumed
    run from being extended; this keeps only the position, as the bundle's ``last.pt`` always has.
    """

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def state_dict(self) -> dict[str, int]:
        state = self.engine.state if self.engine is not None else None
        return {"epoch": int(state.epoch) if state else 0, "iteration": int(state.iteration) if state else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.engine is not None:
            self.engine.state.epoch, self.engine.state.iteration = int(state["epoch"]), int(state["iteration"])


class _RngStates:
    """Every random number generator state the training loop draws from, as a checkpointable object."""

    def __init__(self, transforms: list[Randomizable]) -> None:
        self.transforms = transforms

    def state_dict(self) -> dict[str, Any]:
        return _rng_state(self.transforms)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(state, self.transforms)


class _Fixed:
    """A value saved with every checkpoint and never loaded back (the model settings)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def state_dict(self) -> Any:
        return self.value

    def load_state_dict(self, state: Any) -> None:  # the settings are read by evaluation/inference, not by resume
        pass


class ReplacingDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver(atomic=True)`` for checkpoints with a fixed name (``last.pt``, ``best.pt``).

    Two differences, each pinned by a test in ``tests/engines/test_checkpoint.py``:

    - Ignite's :class:`~ignite.handlers.Checkpoint` calls ``remove(filename)`` before it writes a file of the same
      name, so a crash (or a failed ``torch.save``) between the two leaves no ``last.pt`` at all. Here ``remove`` of
      a name is left to the next write, which replaces the file in one ``os.replace``.
    - The file is written under a temporary name that :meth:`TrainingCheckpointer.remove_stale_temporaries`
      recognizes (``.last.pt.<random>.tmp.pt``), and gets the mode a plain ``open`` would give it (the user's umask),
      through :func:`~hirescam_ext.utils.io.atomic_write`.
    """

    def __init__(self, dirname: str | os.PathLike, save_on_rank: int = 0) -> None:
        super().__init__(dirname, atomic=True, create_dir=True, require_empty=False, save_on_rank=save_on_rank)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        with atomic_write(path) as tmp:
            func(checkpoint, tmp, **self.kwargs)

    def remove(self, filename: str) -> None:
        """Keep ``filename`` until the next write replaces it (it is never left missing)."""


class TrainingCheckpointer:
    """Save ``last.pt`` every epoch and ``best.pt`` on a better validation score; resume; stop early.

    Built on Ignite: two :class:`~ignite.handlers.Checkpoint` handlers (``last.pt`` after every epoch, ``best.pt``
    with the validation score as priority) writing through :class:`ReplacingDiskSaver` (Ignite's atomic
    ``DiskSaver``, without the moment when the old file is deleted and the new one not yet written), and Ignite's
    :class:`~ignite.handlers.EarlyStopping`. The objects saved are the model, optimizer, scheduler, the trainer's
    position, the early-stopping state, the ``best.pt`` handler's own state (so a resumed run compares against the
    right best score) and every random number generator state, so that a resumed run ends with the same weights as
    an uninterrupted one (deterministic mode, CPU).

    Attach it to the trainer AFTER the validation handler (handlers run in attach order at ``EPOCH_COMPLETED``).

    Args:
        save_dir: checkpoint folder (created).
        network: the model (unwrapped; its ``state_dict`` is saved under ``"model"``).
        optimizer: saved under ``"optimizer"``.
        lr_scheduler: optional, saved under ``"lr_scheduler"``.
        evaluator: the validation engine whose ``state.metrics[metric_name]`` scores an epoch.
        metric_name: validation metric that decides ``best.pt`` and early stopping.
        mode: ``"min"`` (a loss) or ``"max"`` (AUROC ...).
        patience: stop after this many validations without improvement (``None``: never). A non-finite score
            counts as no improvement and never becomes ``best.pt``.
        transforms: the training transform pipeline, whose random states are saved for an exact resume.
        model_settings: saved under ``"model_settings"`` in both files
            (:func:`~hirescam_ext.engines.model_settings.make_model_settings`; the bundle's train.json passes them).
        resume: continue from ``save_dir/last.pt`` when it exists.
        save_rank0_only: in distributed runs only rank 0 writes (otherwise every rank writes its own copy).
        keep_every: also keep the weights of every ``keep_every``-th epoch, ``save_dir/epochs/epoch_<N>.pt`` (the
            model, its settings and the trainer's position; without the optimizer's and random states, a third of
            ``last.pt``'s size with Adam), to follow how a model changes over training (``scripts/eval_shortcut.py``).
            ``0``: none.

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
        keep_every: int = 0,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience is not None and int(patience) < 1:
            raise ValueError(f"patience must be a positive number of validations or None, got {patience!r}")
        if isinstance(keep_every, bool) or int(keep_every) != keep_every or keep_every < 0:
            raise ValueError(f"keep_every must be a number of epochs >= 0 (0: keep none), got {keep_every!r}")
        self.save_dir = Path(save_dir)
        self.network = getattr(network, "module", network)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.mode = mode
        self.patience = None if patience is None else int(patience)
        self.random_transforms = randomizable_transforms(transforms) if transforms is not None else []
        self.resume = resume
        self.save_rank0_only = save_rank0_only
        self.model_settings = model_settings
        self.keep_every = int(keep_every)
        self._progress = _TrainerProgress()
        self.early_stopping: EarlyStopping | None = None
        self._best: Checkpoint | None = None
        self._last: Checkpoint | None = None

    @property
    def last_path(self) -> Path:
        return self.save_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.save_dir / "best.pt"

    @property
    def epochs_dir(self) -> Path:
        """Where ``keep_every`` puts the per-epoch weights (``epoch_<N>.pt``)."""
        return self.save_dir / "epochs"

    @property
    def best_score(self) -> float | None:
        """The best finite validation score so far (``None`` before the first)."""
        if self._best is None or not self._best._saved:
            return None
        return float(self._best._saved[-1].priority) * self._sign

    @property
    def bad_validations(self) -> int:
        """Validations since the last improvement (Ignite's ``EarlyStopping.counter``)."""
        return int(self.early_stopping.counter) if self.early_stopping is not None else 0

    @property
    def _sign(self) -> float:
        return -1.0 if self.mode == "min" else 1.0

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary checkpoint files left by a run killed while saving (they are never loaded)."""
        removed: list[Path] = []
        if not self._writer() or not self.save_dir.is_dir():
            return removed
        patterns = [(self.save_dir, f".{path.name}.*.tmp.pt") for path in (self.last_path, self.best_path)]
        for folder, pattern in patterns + [(self.epochs_dir, ".epoch_*.pt.*.tmp.pt")]:
            for tmp in folder.glob(pattern):
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except OSError:
                    logger.warning("could not remove the stale temporary file %s", tmp)
        if removed:
            logger.info("removed %d temporary file(s) of an interrupted save in %s", len(removed), self.save_dir)
        return removed

    def _objects(self, with_best_handler: bool) -> dict[str, Any]:
        objects: dict[str, Any] = {
            "model": self.network,
            "optimizer": self.optimizer,
            "trainer": self._progress,
            "rng": _RngStates(self.random_transforms),
        }
        if self.lr_scheduler is not None:
            objects["lr_scheduler"] = self.lr_scheduler
        if self.early_stopping is not None:
            objects["early_stopping"] = self.early_stopping
        if with_best_handler and self._best is not None:
            objects["best_checkpoint"] = self._best
        if self.model_settings is not None:
            objects[MODEL_SETTINGS_KEY] = _Fixed(self.model_settings)
        return objects

    def attach(self, engine: Engine) -> None:
        self.remove_stale_temporaries()
        self._progress.engine = engine
        rank = 0
        if not self.save_rank0_only and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank()
        saver = ReplacingDiskSaver(self.save_dir, save_on_rank=rank)
        if self.evaluator is not None:
            self.early_stopping = EarlyStopping(
                self.patience if self.patience is not None else 2**62, self._score, engine, mode=self.mode
            )
            self._best = Checkpoint(
                self._objects(with_best_handler=False), saver, filename_pattern=self.best_path.name, n_saved=1,
                score_function=lambda _: self._sign * self._score(self.evaluator), score_name=self.metric_name,
            )  # fmt: skip
            self.evaluator.add_event_handler(Events.COMPLETED, self._validation_completed)
        self._last = Checkpoint(self._objects(with_best_handler=True), saver, filename_pattern=self.last_path.name)
        if self.resume:
            engine.add_event_handler(Events.STARTED, self._resume)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._last)
        if self.keep_every:
            weights = ("model", "trainer", MODEL_SETTINGS_KEY)  # what scoring an epoch needs, not what resuming does
            objects = {k: v for k, v in self._objects(with_best_handler=False).items() if k in weights}
            keep = Checkpoint(objects, ReplacingDiskSaver(self.epochs_dir, save_on_rank=rank), n_saved=None,
                              filename_pattern="epoch_{global_step}.pt",
                              global_step_transform=lambda trainer, _: trainer.state.epoch)
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.keep_every), keep)

    def _writer(self) -> bool:
        if not self.save_rank0_only or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return True
        return torch.distributed.get_rank() == 0

    # ------------------------------------------------------------------ events
    def _score(self, evaluator: Engine) -> float:
        """The validation metric; a non-finite value scores worst (never an improvement)."""
        value = evaluator.state.metrics.get(self.metric_name)
        if value is None:
            available = sorted(evaluator.state.metrics)
            raise KeyError(f"validation has no metric {self.metric_name!r} (metrics: {available})")
        value = float(value)
        return value if np.isfinite(value) else -self._sign * float("inf")

    def _validation_completed(self, evaluator: Engine) -> None:
        score = self._score(evaluator)
        if np.isfinite(score):
            before = self.best_score
            self._best(evaluator)
            if self.best_score != before and self._writer():
                epoch = self._progress.state_dict()["epoch"]
                logger.info("epoch %d: %s improved to %.5f, saved %s", epoch, self.metric_name, score, self.best_path)
        self.early_stopping(evaluator)
        if self.patience is not None and self.bad_validations >= self.patience:
            logger.info(
                "early stopping: no %s improvement in %d validations (best %s)",
                self.metric_name, self.bad_validations, self.best_score,
            )  # fmt: skip

    def _resume(self, engine: Engine) -> None:
        if not self.last_path.is_file():
            logger.info("resume requested but %s does not exist: starting from scratch", self.last_path)
            return
        try:
            state = torch.load(self.last_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(self.last_path, f"cannot resume: unreadable checkpoint ({exc})") from exc
        load_network_weights(self.network, self.last_path)
        state = _upgrade_early_stopping(state, self.best_path.name, self._sign, self.best_path.is_file())
        objects = self._objects(with_best_handler=True)
        to_load = {k: v for k, v in objects.items() if k in state and k not in ("model", MODEL_SETTINGS_KEY)}
        Checkpoint.load_objects(to_load=to_load, checkpoint=state)
        logger.info("resumed from %s at epoch %d", self.last_path, engine.state.epoch)
        if self.patience is not None and self.bad_validations >= self.patience:
            engine.terminate()


def _upgrade_early_stopping(state: dict[str, Any], best_name: str, sign: float, best_exists: bool) -> dict[str, Any]:
    """Read a ``last.pt`` written before the checkpointer was built on Ignite (hirescam-ext <= 0.1.0 files held
    ``early_stopping = {best_score, best_epoch, bad_validations}`` and no ``best_checkpoint``)."""
    old = state.get("early_stopping")
    if not isinstance(old, dict) or "bad_validations" not in old:
        return state
    state = dict(state)
    best = old.get("best_score")
    counter = int(old.get("bad_validations", 0))
    state["early_stopping"] = {"counter": counter, "best_score": best, "threshold_mode": "abs"}
    if "best_checkpoint" not in state:
        saved = [(sign * float(best), best_name)] if best is not None and best_exists else []
        state["best_checkpoint"] = {"_saved": saved}
    return state
