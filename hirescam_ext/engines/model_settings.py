"""The settings a model was trained with, saved in its checkpoints and used to rebuild it for evaluation/inference.

A checkpoint written by :class:`~hirescam_ext.engines.checkpoint.TrainingCheckpointer` holds, next to the weights, a
``"model_settings"`` dictionary of plain JSON values:

- ``network_def``: the network's ``_target_`` and constructor arguments, exactly as the training config passed them
  (recorded generically by :func:`define_network`, so new constructor arguments travel without code changes here);
- ``preprocessing``: ``spacing``, ``spatial_size``, ``hu_range``, ``center`` of
  :func:`~hirescam_ext.transforms.preprocessing.ct_preprocessing` (every scan is prepared like the training scans,
  whatever its own spacing);
- ``label_names``, ``attention_grid``, ``package_version`` and ``data`` (provenance of the training data, e.g. the
  synthetic generator's version); ``training``, how it was trained: optimizer, learning rate, batch, epochs, seed,
  mask loss, for the record).

:func:`load_model_settings` reads them back; a user override that contradicts the checkpoint is an error naming the
setting and both values, no override means the checkpoint wins. A bare state dict such as a packaged bundle's
``models/model.pt`` takes its settings from a JSON file (``settings_file``; ``hirescam package`` writes
``models/model_settings.json``). A checkpoint without settings and without such a file (older runs) falls back to
:data:`LEGACY_SETTINGS` plus the overrides.

Example:
    >>> settings = load_model_settings("models/best.pt", {"trunk": None})  # doctest: +SKIP
    >>> net = network_from_settings(settings)  # doctest: +SKIP
    >>> pre = preprocessing_from_settings(settings, keys=["image"], label_map_keys=[])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.utils.args import FALSE_STRINGS, TRUE_STRINGS, as_bool
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import read_json_file, sha256_file
from hirescam_ext.version import __version__

__all__ = [
    "MODEL_SETTINGS_KEY",
    "SETTINGS_FORMAT",
    "PREPROCESSING_KEYS",
    "TRAINING_KEYS",
    "WEIGHT_INIT_ARGS",
    "LEGACY_SETTINGS",
    "define_network",
    "network_definition",
    "make_model_settings",
    "read_model_settings",
    "read_settings_file",
    "same_setting",
    "load_model_settings",
    "network_from_settings",
    "no_checkpoint",
    "preprocessing_from_settings",
    "to_plain",
]

logger = logging.getLogger(__name__)

#: key of the settings inside a checkpoint
MODEL_SETTINGS_KEY = "model_settings"
SETTINGS_FORMAT = 1
#: settings of :func:`~hirescam_ext.transforms.preprocessing.ct_preprocessing`; every other override names a
#: constructor argument of the network
PREPROCESSING_KEYS = ("spacing", "spatial_size", "hu_range", "center")
#: what a checkpoint's ``training`` record holds: where it was trained (``config`` or ``script``), ``epochs`` planned,
#: ``optimizer``, ``lr``, ``batch``, learning-rate ``schedule``, ``seed``, ``mask_loss`` (bool) and, with it,
#: ``mask_weight``, ``mask_penalize``, ``mask_pool``, ``region_mode``, ``region_area_threshold``
TRAINING_KEYS = ("epochs", "optimizer", "lr", "batch", "schedule", "seed", "mask_loss", "mask_weight", "mask_penalize",
                 "mask_pool", "region_mode", "region_area_threshold")
#: constructor arguments that only initialize weights before training (never applied when rebuilding from a checkpoint)
WEIGHT_INIT_ARGS = ("pretrained",)
#: attribute of a network built by :func:`define_network` holding its definition
_DEFINITION_ATTR = "_hirescam_network_def"
#: what the bundle configs used before checkpoints carried settings (AxialNet, ResNet-18, 128 x 128 x 96, no resampling)
LEGACY_SETTINGS: dict[str, Any] = {
    "network_def": {
        "_target_": "hirescam_ext.AxialNet",
        "n_classes": len(LABEL_NAMES),
        "spatial_size": [128, 128, 96],
        "trunk": "resnet18",
        "pretrained": None,
        "custom_convs": True,
        "custom_conv_padding": 1,
        "slice_pooling": "mean",
    },
    "preprocessing": {"spacing": None, "spatial_size": [128, 128, 96], "hu_range": [-1000.0, 800.0], "center": -0.449},
}


def to_plain(value: Any, name: str = "value") -> Any:
    """``value`` as plain JSON values (tuples to lists, numpy/torch scalars to numbers, paths to strings).

    Raises:
        TypeError: naming ``name`` when a part is no JSON value (a module, a tensor with several elements ...).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, torch.Size, np.ndarray)):
        return [to_plain(v, f"{name}[{i}]") for i, v in enumerate(list(value))]
    raise TypeError(f"{name} is a {type(value).__name__}, not a JSON value")


def define_network(target: str, **kwargs: Any) -> torch.nn.Module:
    """Build ``target(**kwargs)`` and remember the definition, so that checkpoints can rebuild the network.

    Used as the bundle configs' ``network_def`` (``"_target_": "hirescam_ext.engines.define_network", "target":
    "hirescam_ext.AxialNet", ...``): every constructor argument given there is recorded, whatever it is.

    Args:
        target: dotted name of the network class (``"hirescam_ext.AxialNet"``).
        kwargs: its constructor arguments.
    """
    from monai.utils.module import locate

    component = locate(target)
    if component is None:
        raise InputError(None, f"network_def: cannot import {target!r}")
    network = component(**kwargs)
    try:
        definition: dict[str, Any] | None = {"_target_": target, **to_plain(dict(kwargs), "network_def")}
    except TypeError as exc:
        logger.warning("%s; checkpoints will not record the network definition", exc)
        definition = None
    network.__dict__[_DEFINITION_ATTR] = definition
    return network


def network_definition(network: torch.nn.Module) -> dict[str, Any] | None:
    """The definition recorded by :func:`define_network` (``None`` for a network built otherwise)."""
    network = getattr(network, "module", network)
    definition = network.__dict__.get(_DEFINITION_ATTR)
    return copy.deepcopy(definition) if definition is not None else None


def make_model_settings(
    network: torch.nn.Module | Mapping[str, Any] | None,
    spacing: Sequence[float] | None,
    spatial_size: Sequence[int] | None,
    hu_range: Sequence[float] | None,
    center: float | None,
    label_names: Sequence[str] | None = LABEL_NAMES,
    attention_grid: Sequence[int] | None = None,
    dataset: Mapping[str, Any] | None = None,
    initialized_from: str | os.PathLike | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings dictionary a training run saves in its checkpoints (plain JSON values).

    Args:
        network: the network built by :func:`define_network` (or its definition ``{"_target_": ..., **kwargs}``).
        spacing, spatial_size, hu_range, center: the preprocessing of the training scans.
        label_names: names of the output channels.
        attention_grid: ``(H, D1, D2)`` of the allowed regions.
        dataset: provenance of the training data
            (:func:`~hirescam_ext.bundle_tools.dataset.dataset_provenance`).
        initialized_from: the checkpoint training started from (``init_ckpt``; ``None``, ``""``, ``"null"``: none),
            recorded as ``{"path", "sha256"}`` (``sha256`` ``None`` if the path is no file).
        training: how the model is trained, for the record (not read back when rebuilding it): the keys
            :data:`TRAINING_KEYS` name (``configs/train.json`` and ``scripts/train_reference.py`` fill them); a
            report on a checkpoint trained elsewhere shows them (``hirescam reproduce --checkpoint``).
    """
    if isinstance(network, Mapping):
        definition = to_plain(dict(network), "network_def")
    else:
        definition = network_definition(network) if network is not None else None
    if definition is None:
        logger.warning(
            "the network was not built by hirescam_ext.engines.define_network: checkpoints will not record its "
            "definition (evaluation and inference then need the same network settings as this run)"
        )
    if spacing is None:
        logger.warning(
            "training without a target spacing (spacing null): scans keep their own voxel size, and inference "
            "cannot prepare scans of another spacing like the training scans; set --spacing"
        )
    return {
        "format": SETTINGS_FORMAT,
        "network_def": definition,
        "preprocessing": {
            "spacing": to_plain(spacing, "spacing"),
            "spatial_size": to_plain(spatial_size, "spatial_size"),
            "hu_range": to_plain(hu_range, "hu_range"),
            "center": to_plain(center, "center"),
        },
        "label_names": list(label_names) if label_names is not None else None,
        "attention_grid": to_plain(attention_grid, "attention_grid"),
        "package_version": __version__,
        "data": to_plain(dict(dataset), "dataset") if dataset is not None else None,
        **_provenance_of_start(initialized_from),
        **({"training": to_plain(dict(training), "training")} if training is not None else {}),
    }


def no_checkpoint(path: str | os.PathLike | bool | None) -> bool:
    """Whether ``path`` names no checkpoint: ``None``, ``False``, ``""``, or ``"null"`` / ``"none"`` / ``"false"`` as a
    command line gives it.

    Raises:
        InputError: ``path`` is neither a path nor one of those (e.g. a number).
    """
    if path is None or path is False:
        return True
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(None, f"a checkpoint path was expected, got {path!r}")
    return os.fspath(path).strip().lower() in ("", "null", "none", "false")


def _provenance_of_start(path: str | os.PathLike | None) -> dict[str, Any]:
    if no_checkpoint(path):
        return {}
    path = Path(path)  # type: ignore[arg-type]
    digest = sha256_file(path) if path.is_file() else None
    return {"initialized_from": {"path": os.path.abspath(path), "sha256": digest}}


def read_model_settings(ckpt_path: str | os.PathLike) -> dict[str, Any] | None:
    """The settings saved in a checkpoint; ``None`` for a bare state dict or a checkpoint written without them.

    Raises:
        InputError: naming the file when it is missing or unreadable.
    """
    from hirescam_ext.engines.checkpoint import read_checkpoint

    path = Path(ckpt_path)
    ckpt = read_checkpoint(path)
    settings = ckpt.get(MODEL_SETTINGS_KEY) if isinstance(ckpt, dict) else None
    if settings is not None and not isinstance(settings, dict):
        raise InputError(path, f"{MODEL_SETTINGS_KEY!r} is a {type(settings).__name__}, not a dictionary")
    return settings


def read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings saved as JSON next to a bare state dict (``models/model_settings.json`` of a packaged bundle).

    Raises:
        InputError: naming the file when it is missing, not JSON, or not a settings dictionary.
    """
    path = Path(path)
    settings = read_json_file(path, "model settings file not found (written by `hirescam package` next to model.pt)")
    if not isinstance(settings, dict) or not isinstance(settings.get("network_def"), dict):
        raise InputError(path, "holds no model settings (a JSON object with a 'network_def' object)")
    return settings


def same_setting(a: Any, b: Any) -> bool:
    """Equal settings: numbers as numbers, switches as switches.

    ``[64, 64, 48]`` equals ``[64.0, 64.0, 48.0]``; ``True`` equals ``"true"`` and ``"yes"`` equals ``"1"``, since a
    command line hands ``--density_bands true`` to a config as a string (:func:`~hirescam_ext.utils.args.as_bool`).
    """
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_setting(x, y) for x, y in zip(a, b))
    if _is_switch(a) and _is_switch(b) and (isinstance(a, bool) or isinstance(b, bool) or a != b):
        return as_bool(a, "setting") is as_bool(b, "setting")
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(np.isclose(float(a), float(b), rtol=1e-6, atol=1e-9))
    return a == b


def _is_switch(value: Any) -> bool:
    return isinstance(value, bool) or isinstance(value, str) and value.strip().lower() in TRUE_STRINGS + FALSE_STRINGS


def _legacy(overrides: Mapping[str, Any]) -> dict[str, Any]:
    settings = copy.deepcopy(LEGACY_SETTINGS)
    for key, value in overrides.items():
        if key in PREPROCESSING_KEYS:
            settings["preprocessing"][key] = value
        if key not in PREPROCESSING_KEYS or key == "spatial_size":
            settings["network_def"][key] = value
    return settings


def _attention_grid(definition: Mapping[str, Any], spatial_size: Sequence[int] | None) -> list[int] | None:
    axialnet = definition.get("_target_") in ("hirescam_ext.AxialNet", "hirescam_ext.networks.AxialNet")
    if not axialnet or not spatial_size:
        return None
    from hirescam_ext.networks import AxialNet

    args = {k: definition[k] for k in ("trunk", "custom_convs", "custom_conv_channels", "custom_conv_padding")
            if k in definition}  # fmt: skip
    return list(AxialNet.attention_grid(list(spatial_size)[:2], z=int(spatial_size[2]), **args))


def load_model_settings(
    ckpt_path: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    require_file: bool = False,
    settings_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Settings to rebuild and feed the model of ``ckpt_path``: the checkpoint's, checked against ``overrides``.

    Args:
        ckpt_path: checkpoint (``best.pt``/``last.pt`` of training, or a bare state dict).
        overrides: the user's settings (``{"trunk": "small", "spatial_size": None, ...}``); ``None`` values mean
            "not overridden". Keys of :data:`PREPROCESSING_KEYS` are preprocessing settings, the others network
            constructor arguments.
        require_file: a missing file is an error (default: log a warning and use the overrides on top of
            :data:`LEGACY_SETTINGS`, so that a network can be built before any checkpoint exists, as
            ``verify_net_in_out`` does; loading the weights then reports the missing file).
        settings_file: a JSON file holding the settings of a checkpoint that records none, such as the bare state
            dict ``models/model.pt`` of a packaged bundle, shipped with ``models/model_settings.json`` (written by
            ``hirescam package``). Settings recorded in the checkpoint itself take precedence. ``None``: no file.

    Returns:
        ``{"network_def", "preprocessing", "label_names", "attention_grid", ...}`` with ``"source"`` set to
        ``"checkpoint"``, ``"settings_file"`` or ``"config"``.

    Raises:
        InputError: naming the checkpoint, the setting and both values when an override contradicts the checkpoint;
            naming ``settings_file`` when it is missing or holds no settings dictionary.
    """
    path = Path(ckpt_path)
    given = {k: to_plain(v, k) for k, v in (overrides or {}).items() if v is not None}
    if not path.is_file() and not require_file:
        logger.warning("%s does not exist: network and preprocessing follow the configuration", path)
        saved = None
    else:
        saved = read_model_settings(path)
    source = "checkpoint"
    if saved is None and settings_file is not None:
        saved, source = read_settings_file(settings_file), "settings_file"
    if saved is None:
        settings = _legacy(given)
        settings.update(label_names=list(LABEL_NAMES), source="config")
        if path.is_file():
            logger.warning(
                "%s records no model settings (a bare state dict or a checkpoint from before hirescam-ext saved them): "
                "network and preprocessing follow the configuration (trunk %s, spatial_size %s, spacing %s); pass the "
                "settings it was trained with if they differ",
                path, settings["network_def"]["trunk"], settings["preprocessing"]["spatial_size"],
                settings["preprocessing"]["spacing"],
            )  # fmt: skip
    else:
        settings = copy.deepcopy(saved)
        settings["source"] = source
        preprocessing = settings.setdefault("preprocessing", {})
        definition = settings.get("network_def")
        if definition is None:
            logger.warning("%s records no network definition: the network follows the configuration", path)
            definition = _legacy({k: v for k, v in given.items() if k not in PREPROCESSING_KEYS})["network_def"]
            definition["spatial_size"] = given.get("spatial_size", preprocessing.get("spatial_size"))
            settings["network_def"] = definition
            net_given: dict[str, Any] = {}
        else:
            net_given = {k: v for k, v in given.items() if k not in PREPROCESSING_KEYS or k == "spatial_size"}
        for key, value in given.items():
            where = [preprocessing] if key in PREPROCESSING_KEYS else []
            if key in net_given:
                where.append(definition)
            for place in where:
                if key in place and place[key] is not None and not same_setting(place[key], value):
                    raise InputError(
                        path,
                        f"setting {key!r} conflicts with the checkpoint: the model was trained with {key}="
                        f"{place[key]!r}, the override asks for {value!r}; drop the override (the checkpoint's value "
                        f"is used) or use a checkpoint trained with {key}={value!r}",
                    )
                place.setdefault(key, value)
                if place[key] is None:
                    place[key] = value
        if preprocessing.get("spacing") is None:
            logger.warning("%s was trained without a target spacing: scans are not resampled", path)
    if not settings.get("attention_grid"):
        size = settings["preprocessing"].get("spatial_size")
        settings["attention_grid"] = _attention_grid(settings["network_def"], size)
    pre = settings["preprocessing"]
    logger.info(
        "model settings from the %s: %s, spacing %s, spatial_size %s, HU window %s, center %s",
        settings["source"], {k: v for k, v in settings["network_def"].items() if k != "_target_"}, pre.get("spacing"),
        pre.get("spatial_size"), pre.get("hu_range"), pre.get("center"),
    )  # fmt: skip
    return settings


def network_from_settings(settings: Mapping[str, Any]) -> torch.nn.Module:
    """Build the network of ``settings["network_def"]`` (weight-initialization arguments such as ``pretrained``
    are cleared: the weights come from the checkpoint)."""
    definition = dict(settings["network_def"])
    target = definition.pop("_target_")
    for name in WEIGHT_INIT_ARGS:
        if name in definition:
            definition[name] = None
    return define_network(target, **definition)


def preprocessing_from_settings(
    settings: Mapping[str, Any],
    keys: Sequence[str] | str = ("image",),
    label_map_keys: Sequence[str] | str = (),
    **kwargs: Any,
) -> Any:
    """:func:`~hirescam_ext.transforms.preprocessing.ct_preprocessing` with the model's preprocessing settings.

    Args:
        settings: from :func:`load_model_settings`.
        keys, label_map_keys: as in ``ct_preprocessing``.
        kwargs: further ``ct_preprocessing`` arguments (``reader``, ``precrop`` ...).
    """
    from hirescam_ext.transforms.preprocessing import ct_preprocessing

    return ct_preprocessing(keys=keys, label_map_keys=label_map_keys, **{**settings["preprocessing"], **kwargs})
