"""Train and evaluate one model through the bundle's own workflows (``configs/train.json`` + ``evaluate.json``).

The driver never re-implements training: each experiment is a :class:`monai.bundle.ConfigWorkflow` on the same
config files users run with ``python -m monai.bundle run``, with overrides only (data folder, volume size, trunk,
epochs, seed, mask loss on/off, the network definition for the alternative models of Draelos & Carin, HiResCAM,
arXiv:2011.08891, Table 1). :func:`bundle_overrides` returns those overrides; :func:`equivalent_command` prints the
``monai.bundle run`` command line that does the same.

Example:
    >>> from hirescam_ext.reproduce.profiles import MODELS, get_profile
    >>> ov = bundle_overrides(MODELS["axialnet_mask"], get_profile("tiny"), "data", "runs/x", seed=0)
    >>> ov["use_mask_loss"], ov["spatial_size"]
    (True, [64, 64, 48])
"""

from __future__ import annotations

import copy
import json
import os
import shlex
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hirescam_ext.engines.evaluator import to_region_layout
from hirescam_ext.reproduce.profiles import PAPER_CUSTOM_CONV_KERNEL, ModelSpec, ReproProfile
from hirescam_ext.utils.errors import InputError

__all__ = [
    "AxialLayout",
    "configs_dir",
    "region_grid",
    "bundle_overrides",
    "equivalent_command",
    "train_model",
    "evaluate_model",
    "evaluation_workflow",
    "network_of",
]

#: index of the AllowedRegionsd transform in ``deterministic_transforms`` of configs/train.json
_REGIONS_TRANSFORM = "deterministic_transforms#transforms#2"
#: handlers of configs/train.json that only write TensorBoard files (disabled: nothing reads them here)
_TENSORBOARD_HANDLERS = ("train#handlers#7", "validate#handlers#2")
#: per-epoch validation metrics without explanation maps (models without a CAM; training runs)
_AUROC_ONLY_VALIDATION = {"val_mean_auroc": {"_target_": "hirescam_ext.handlers.MultiLabelAUROCHandler"}}


class AxialLayout:
    """Wrap an explainer whose maps come out ``[B, K, X', Y', Z']`` so they come out ``[B, K, Z', X', Y']``.

    The analyses (localization, confounder attention, sanity check) compare maps with the allowed-region grid
    ``[H, D1, D2]``; 3DConv's maps keep the input's axis order (``cam_layout = (B, F, X, Y, Z)``). Same permutation
    as :func:`hirescam_ext.engines.evaluator.to_region_layout`, which the bundle's evaluator applies itself.
    """

    def __init__(self, explainer: Any) -> None:
        self.explainer = explainer
        self.nn_module = getattr(explainer, "nn_module", None)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return to_region_layout(self.explainer(x, *args, **kwargs), self.explainer)

    def compute_raw(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return to_region_layout(self.explainer.compute_raw(x, *args, **kwargs), self.explainer)


def configs_dir() -> Path:
    """The bundle's ``configs`` folder (next to the installed package)."""
    return Path(__file__).resolve().parents[2] / "configs"


def region_grid(spec: ModelSpec, profile: ReproProfile) -> tuple[int, int, int]:
    """``(H, D1, D2)`` of the allowed regions in a run (configs/train.json's ``attention_grid``)."""
    from hirescam_ext.networks import AxialNet

    return AxialNet.attention_grid(profile.spatial_size[:2], z=profile.spatial_size[2], trunk=profile.trunk,
                                   custom_convs=spec.custom_convs, custom_conv_padding=profile.custom_conv_padding,
                                   custom_conv_kernel=profile.custom_conv_kernel)


def _network_def(spec: ModelSpec, profile: ReproProfile) -> dict[str, Any] | None:
    """``network_def`` override for the alternative models; ``None`` keeps the config's AxialNet."""
    common = {"n_classes": "@n_classes", "volume_size": "@spatial_size", "conv_padding": profile.conv_padding}
    if spec.network == "axialnet":
        return None
    if spec.network == "ctnet":
        return {"_target_": "hirescam_ext.CTNet", "trunk": "@trunk", **common}
    if spec.network == "bodyconv":
        return {"_target_": "hirescam_ext.BodyConv", "trunk": "@trunk", **common}
    if spec.network == "threedconv":
        return {"_target_": "hirescam_ext.ThreeDConv", **common}
    if spec.network == "plain3d":
        return {"_target_": "hirescam_ext.Plain3DCNN", **common}
    raise InputError(None, f"unknown network {spec.network!r} in model {spec.name!r}")


def checkpoint_overrides(checkpoint: str | os.PathLike, grid: tuple[int, int, int]) -> dict[str, Any]:
    """Overrides for evaluating a checkpoint trained elsewhere: the custom-conv padding its network was built with
    (a 1 x 1 custom-conv model keeps the 3 x 3 model's grid with padding 0), after checking that its attention grid
    is the run's allowed-region ``grid`` ``(H, D1, D2)``.

    Raises:
        InputError: the checkpoint's attention grid is not ``grid`` (the analyses would compare maps and regions of
            different shapes).
    """
    from hirescam_ext.engines.model_settings import read_model_settings

    settings = read_model_settings(checkpoint) or {}
    saved = settings.get("attention_grid")
    if saved is not None and tuple(int(n) for n in saved) != tuple(grid):
        raise InputError(checkpoint, f"its attention grid {tuple(saved)} is not the profile's {tuple(grid)}; use a "
                                     "profile with the checkpoint's spatial_size and trunk")
    network = settings.get("network_def") or {}
    return {"custom_conv_padding": int(network["custom_conv_padding"])} if "custom_conv_padding" in network else {}


def bundle_overrides(
    spec: ModelSpec,
    profile: ReproProfile,
    dataset_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    seed: int,
    pretrained: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Config overrides that turn the bundle's train/evaluate workflows into one experiment of the reproduction.

    ``cache_dir``: a disk cache of the deterministic preprocessing shared by runs with the same allowed-region
    grid (``None``: in-memory cache per run).
    """
    ov: dict[str, Any] = {
        "bundle_root": str(run_dir),
        "dataset_dir": str(dataset_dir),
        "spatial_size": [int(s) for s in profile.spatial_size],
        "trunk": profile.trunk,
        "seed": int(seed),
        "cache": ("memory" if profile.cache == "disk" else profile.cache) if cache_dir is None else "disk",
        "optimizer_name": profile.optimizer_name,
        "learning_rate": float(profile.learning_rate),
        "batch_size": int(profile.batch_size),
        "val_interval": int(profile.val_interval),
        "custom_conv_padding": int(profile.custom_conv_padding),
        "region_mode": profile.region_mode,
        f"{_REGIONS_TRANSFORM}#area_threshold": float(profile.area_threshold),
        "use_mask_loss": bool(spec.mask_loss),
        "slice_pooling": spec.slice_pooling,
        "custom_convs": bool(spec.custom_convs),
        "lr_schedule": profile.lr_schedule,
        "warmup_epochs": float(profile.warmup_epochs),
        "norm": profile.norm,
        "custom_conv_init": profile.custom_conv_init,
        "output_bias_prior": bool(profile.output_bias_prior),
        "num_workers": int(profile.num_workers),
        "max_train_seconds": profile.max_train_seconds,
        "train#trainer#max_epochs": int(profile.max_epochs),
    }
    if profile.density_bands:  # only when set: the runs recorded before the switch keep their identity
        ov["density_bands"] = True
    if profile.custom_conv_kernel != PAPER_CUSTOM_CONV_KERNEL:  # likewise: the config's default
        ov["custom_conv_kernel"] = int(profile.custom_conv_kernel)
    if profile.spacing is not None and profile.max_epochs > 0:
        # a profile that trains on scans rendered finer: the bundle resamples them to the network grid (a profile
        # that only evaluates checkpoints takes the grid from each checkpoint's settings)
        ov["spacing"] = [float(v) for v in profile.spacing]
    if cache_dir is not None:
        ov["cache_dir"] = str(cache_dir)
    if profile.device:
        ov["device"] = f"$torch.device({profile.device!r})"
    if spec.pretrained:
        if pretrained is None:
            raise InputError(None, f"model {spec.name!r} needs ImageNet trunk weights (--pretrained PATH)")
        ov["pretrained"] = str(pretrained)
    for handler in _TENSORBOARD_HANDLERS:
        ov[f"{handler}#_disabled_"] = True
    net = _network_def(spec, profile)
    if net is not None:
        ov["network_def"] = net
        ov["train#network"] = "@network"  # no forward_all: plain logits, classification loss only
        if spec.mask_loss:
            raise InputError(None, f"model {spec.name!r}: the mask loss needs AxialNet attention")
    if not spec.has_cam:
        ov["validate#explainers"] = {}
        ov["validate#additional_metrics"] = copy.deepcopy(_AUROC_ONLY_VALIDATION)
        for split in ("validation", "test", "test_shifted"):
            ov[f"{split}#metrics"] = {
                "auroc": {
                    "_target_": "hirescam_ext.handlers.MultiLabelAUROCHandler",
                    "details_path": f"$@eval_dir + '/auroc_{split}.json'",
                }
            }
    return ov


def training_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` for the training run: per-epoch validation computes the loss and AUROC only.

    The best checkpoint and early stopping follow the validation loss (configs/train.json), which needs no
    explanation maps; the maps and OrganIoU are computed once, by the evaluation after training. Skipping them
    every epoch makes training several times faster on a CPU.
    """
    return {**overrides, "validate#explainers": {}, "validate#additional_metrics": copy.deepcopy(_AUROC_ONLY_VALIDATION)}


def equivalent_command(config_files: list[str], overrides: dict[str, Any]) -> str:
    """The ``python -m monai.bundle run`` command line with the same configs and overrides."""
    files = config_files[0] if len(config_files) == 1 else str(config_files)
    parts = ["python", "-m", "monai.bundle", "run", "--config_file", shlex.quote(files)]
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts += [f"--{key}", shlex.quote(text)]
    return " ".join(parts)


def _workflow(config_files: list[str], overrides: dict[str, Any]) -> Any:
    from monai.bundle import ConfigWorkflow

    # imported so that "$hirescam_ext.reproduce.workflows..." expressions resolve inside the configs
    import hirescam_ext.reproduce.workflows  # noqa: F401

    top: set[str] = set()
    for f in config_files:
        top |= set(json.loads(Path(f).read_text(encoding="utf-8")))
    # nested overrides of sections the selected configs lack (evaluate.json's splits in a train run) are dropped
    kept = {k: v for k, v in overrides.items() if "#" not in k or k.split("#")[0] in top}
    return ConfigWorkflow(
        config_file=config_files,
        meta_file=str(configs_dir() / "metadata.json"),
        logging_file=False,
        workflow_type=None,
        **kept,
    )


def train_model(overrides: dict[str, Any]) -> Path:
    """Run ``configs/train.json`` with ``overrides``; return the best checkpoint's path."""
    wf = _workflow([str(configs_dir() / "train.json")], training_overrides(overrides))
    wf.initialize()
    try:
        wf.run()
    finally:
        wf.finalize()
    best = Path(overrides["bundle_root"]) / "models" / "best.pt"
    if not best.is_file():
        raise InputError(best, "training finished without a best checkpoint")
    return best


def evaluate_model(overrides: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Run ``configs/train.json`` + ``configs/evaluate.json``; return ``(results.json content, workflow)``.

    The workflow is returned after its run so the caller can reuse its network (weights loaded) and datasets.
    """
    files = [str(configs_dir() / "train.json"), str(configs_dir() / "evaluate.json")]
    wf = _workflow(files, overrides)
    wf.initialize()
    wf.run()
    wf.finalize()
    path = Path(overrides["bundle_root"]) / "outputs" / "evaluation" / "results.json"
    if not path.is_file():
        raise InputError(path, "evaluation finished without results.json")
    return json.loads(path.read_text(encoding="utf-8")), wf


def evaluation_workflow(overrides: dict[str, Any]) -> Any:
    """The train + evaluate workflow, initialized (checkpoint loaded) but not run."""
    files = [str(configs_dir() / "train.json"), str(configs_dir() / "evaluate.json")]
    wf = _workflow(files, overrides)
    wf.initialize()
    return wf


def network_of(workflow: Any) -> nn.Module:
    """The evaluated network (weights loaded by the evaluate workflow's ``initialize``)."""
    return workflow.parser.get_parsed_content("network")
