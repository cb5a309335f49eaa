"""Ignite/MONAI workflow pieces: batch preparation, wrappers, the explaining evaluator, checkpoints and guards."""

from __future__ import annotations

from hirescam_ext.engines.checkpoint import (
    TrainingCheckpointer,
    init_from_checkpoint,
    load_network_weights,
    randomizable_transforms,
)
from hirescam_ext.engines.device_augmentation import AugmentOnDevice
from hirescam_ext.engines.evaluator import ExplanationEvaluator, SkipFailedEpochWise, resize_maps_to, to_region_layout
from hirescam_ext.engines.distributed import evaluation_sampler, is_main_process
from hirescam_ext.engines.failures import (
    FailedItemsHandler,
    FailureLog,
    FaultTolerantTrainer,
    TooManyFailedItemsError,
    loss_value,
)
from hirescam_ext.engines.model_settings import (
    MODEL_SETTINGS_KEY,
    define_network,
    load_model_settings,
    make_model_settings,
    network_from_settings,
    no_checkpoint,
    preprocessing_from_settings,
    read_model_settings,
    read_settings_file,
)
from hirescam_ext.engines.optim import LR_SCHEDULES, OPTIMIZERS, build_lr_scheduler, build_optimizer
from hirescam_ext.engines.guards import NonFiniteLossError, NonFiniteLossGuard, describe_batch
from hirescam_ext.engines.prepare_batch import PrepareBatchWithRegions
from hirescam_ext.engines.time_limit import TrainingTimeLimit
from hirescam_ext.engines.wrappers import WithAttention

__all__ = [
    "AugmentOnDevice",
    "evaluation_sampler",
    "is_main_process",
    "ExplanationEvaluator",
    "FailedItemsHandler",
    "FailureLog",
    "FaultTolerantTrainer",
    "SkipFailedEpochWise",
    "TooManyFailedItemsError",
    "loss_value",
    "MODEL_SETTINGS_KEY",
    "define_network",
    "load_model_settings",
    "make_model_settings",
    "network_from_settings",
    "no_checkpoint",
    "preprocessing_from_settings",
    "read_model_settings",
    "read_settings_file",
    "OPTIMIZERS",
    "build_optimizer",
    "build_lr_scheduler",
    "TrainingTimeLimit",
    "LR_SCHEDULES",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "PrepareBatchWithRegions",
    "TrainingCheckpointer",
    "WithAttention",
    "describe_batch",
    "init_from_checkpoint",
    "load_network_weights",
    "randomizable_transforms",
    "resize_maps_to",
    "to_region_layout",
]
