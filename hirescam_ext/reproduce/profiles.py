"""Named sizes of the reproduction (``hirescam reproduce --profile tiny|quick|quick_all|full|...``) and the models it
trains.

The experiments follow Draelos & Carin (HiResCAM, arXiv:2011.08891): Table 1 (AxialNet, its ablations and the
alternative models), Table 2 (classification loss only vs. classification + mask loss, Grad-CAM vs. HiResCAM), the
confounder case study, localization against true lesion masks, and a model-randomization sanity check. A profile
fixes the synthetic benchmark (scan count, volume size), the network size and the training length; everything else
comes from the bundle configs (``configs/train.json``, ``configs/evaluate.json``).

Example:
    >>> from hirescam_ext.reproduce.profiles import get_profile
    >>> p = get_profile("tiny")
    >>> p.spatial_size, p.trunk
    ((64, 64, 48), 'small')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from hirescam_ext.utils.errors import InputError

__all__ = ["ModelSpec", "ReproProfile", "MODELS", "PAPER_MODELS", "PAPER_CUSTOM_CONV_KERNEL", "PROFILES", "get_profile",
           "parse_checkpoint_key", "with_spatial_size"]


@dataclass(frozen=True)
class ModelSpec:
    """One row of the paper's Table 1 (or Table 2): which network, and how it is trained.

    Attributes:
        name: short identifier used in file names and tables.
        title: the paper's name for the model.
        network: ``"axialnet"``, ``"ctnet"``, ``"bodyconv"`` or ``"threedconv"``.
        mask_loss: train with the mask loss (Table 2's "class + mask loss").
        slice_pooling: AxialNet slice pooling (``"max"`` for the MaxPool ablation).
        custom_convs: AxialNet custom convolutions (``False`` for NoCustomConv).
        pretrained: use the ImageNet trunk weights given to the driver (AxialNet); ``False`` = random init.
        has_cam: the model has a spatial map to explain (CTNet has none).
    """

    name: str
    title: str
    network: str = "axialnet"
    mask_loss: bool = False
    slice_pooling: str = "mean"
    custom_convs: bool = True
    pretrained: bool = False
    has_cam: bool = True


#: every model the driver knows; ``axialnet`` (class loss only) is both Table 1's AxialNet and Table 2's baseline.
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("axialnet", "AxialNet (random-init trunk)"),
        ModelSpec("axialnet_mask", "AxialNet (random-init trunk) + mask loss", mask_loss=True),
        ModelSpec("maxpool", "MaxPool", slice_pooling="max"),
        ModelSpec("nocustomconv", "NoCustomConv", custom_convs=False),
        ModelSpec("axialnet_imagenet", "AxialNet (ImageNet trunk)", pretrained=True),
        ModelSpec("axialnet_imagenet_mask", "AxialNet (ImageNet trunk) + mask loss", mask_loss=True, pretrained=True),
        ModelSpec("ctnet", "CTNet", network="ctnet", has_cam=False),
        ModelSpec("bodyconv", "BodyConv", network="bodyconv"),
        ModelSpec("threedconv", "3DConv", network="threedconv"),
        ModelSpec("plain3d", "Plain 3D CNN (global pooling; sanity baseline, not in the paper)", network="plain3d"),
    )
}


#: the paper's Table 1 / Table 2 models, the default of every profile (the plain 3D CNN is an extra sanity baseline)
PAPER_MODELS: tuple[str, ...] = tuple(name for name in MODELS if name != "plain3d")

#: AxialNet's custom-conv kernel in the paper (and configs/train.json's default)
PAPER_CUSTOM_CONV_KERNEL = 3


@dataclass(frozen=True)
class ReproProfile:
    """Size of one reproduction run.

    Attributes:
        name: profile name.
        synth_profile: ``hirescam synth`` profile of the benchmark.
        n_scans: scans over all four splits (``None``: the synth profile's).
        spatial_size: network input ``(X, Y, Z)``; also the generated volume shape unless ``synth_shape`` is given.
        trunk: ``"small"``, ``"small16"`` or ``"resnet18"``.
        density_bands: AxialNet's densitometry branch (``configs/train.json``'s ``density_bands``; the shipped
            models have it). The alternative models ignore it.
        max_epochs: training epochs (early stopping patience from the bundle config still applies).
        seeds: training seeds (network initialisation, shuffling, augmentation); the dataset seed is fixed.
        dataset_seed: seed of the synthetic benchmark.
        models: names in :data:`MODELS`; ImageNet variants run only when weights are supplied.
        region_mode: ``AllowedRegionsd`` mode (``"nearest"`` is the paper's, ``"area"`` suits coarse grids).
        area_threshold: organ fraction that sets a cell in ``"area"`` mode.
        custom_conv_padding: AxialNet custom-conv padding (1 keeps the trunk grid, needed below 288 x 288).
        custom_conv_kernel: AxialNet custom-conv kernel size (the paper's 3; ``1`` computes each attention cell's
            features from that cell alone, with ``custom_conv_padding=0`` to keep the grid).
        conv_padding: padding of the 3D convs of CTNet, BodyConv and 3DConv.
        sanity_scans: test scans used by the randomization sanity check.
        sanity_models: models whose layers are randomized.
        fit_scans: training scans (the first ones of the split) used by the fit check; ``None``: all.
        optimizer_name: ``"sgd"`` (the paper's: momentum 0.99), ``"adam"`` or ``"adamw"`` (configs/train.json's
            ``optimizer_name``).
        learning_rate: learning rate (the paper: SGD with 1e-3).
        batch_size: training volumes per step (the paper: 1).
        val_interval: validate every this many epochs (best checkpoint and early stopping follow validation).
        lr_schedule: ``"constant"`` (the paper's) or ``"warmup_cosine"`` (configs/train.json's ``lr_schedule``).
        warmup_epochs: epochs of linear learning-rate warm-up (``warmup_epochs``).
        norm: AxialNet trunk normalization: ``"batch"`` (the paper's), ``"group"`` or ``"instance"``.
        custom_conv_init: ``"kaiming"`` or ``"pytorch"`` (the original code's default init).
        output_bias_prior: start the output bias at the training labels' log prior odds.
        num_workers: data-loader worker processes.
        max_train_seconds: training time budget per run (``None``: none); training stops at the last epoch
            boundary that fits (:class:`hirescam_ext.engines.TrainingTimeLimit`), the report records the epochs run.
        device: ``"cpu"``, ``"cuda"`` or ``None`` (the bundle's choice).
        cache: ``"disk"`` (preprocessed volumes shared by all runs of one grid), ``"memory"`` or ``"none"``.
        synth_workers: processes generating the benchmark (0: one per CPU, at most 8).
        parallel_runs: (model, seed) runs trained, evaluated and analysed at the same time, each in its own process
            with its share of the threads one run would use (``torch.get_num_threads() // parallel_runs``). On the
            2-core CPU two one-thread runs train about 1.5 times as many scans a second as one two-thread run
            (docs/REPRODUCE.md).
        split_fractions: shares of the scans in training, validation, test and test_shifted (``None``: the
            generator's 0.55 / 0.15 / 0.15 / 0.15).
        checkpoints: ``{model: checkpoint path}`` of models trained elsewhere (e.g. by
            ``scripts/train_reference.py``): the run evaluates and analyses that checkpoint instead of training
            (relative paths are looked up in the working directory, then in the repository). Its attention grid
            must be the profile's (``spatial_size``, ``trunk``); its custom-conv padding is taken from the checkpoint
            (a 1 x 1 custom-conv model has padding 0 on the same grid). A key ``"model@seed"`` names the checkpoint
            of one training seed (:meth:`checkpoint_for`); a plain ``"model"`` stands for every seed.
        note: what the profile is for.
        synth_shape: shape the benchmark is rendered at (``None``: ``spatial_size``, no resampling). With a finer
            shape, set ``spacing`` to the network grid's voxel size: the bundle's preprocessing resamples each scan
            to it, as it does a user's scan, and the analyses resample the lesion and organ maps (nearest) and the
            HU volume (linear) the same way.
        spacing: voxel size (mm) of the network grid (``None``: the generated volumes' own). A profile that trains
            passes it to ``configs/train.json`` (``spacing``), which resamples every scan to it and records it in the
            checkpoint; the evaluation takes it from there, the analyses from here.
        dataset: a finished ``hirescam synth`` folder to train and evaluate on instead of generating the profile's
            benchmark (e.g. one rendered with ``--plaque-scale`` or another confounder strength); ``None``: generate.
    """

    name: str
    synth_profile: str
    n_scans: int | None
    spatial_size: tuple[int, int, int]
    trunk: str
    max_epochs: int
    seeds: tuple[int, ...]
    dataset_seed: int = 0
    models: tuple[str, ...] = PAPER_MODELS
    region_mode: str = "nearest"
    area_threshold: float = 0.5
    custom_conv_padding: int = 1
    custom_conv_kernel: int = PAPER_CUSTOM_CONV_KERNEL
    conv_padding: int = 1
    sanity_scans: int = 8
    sanity_models: tuple[str, ...] = ("axialnet", "axialnet_mask")
    fit_scans: int | None = 300
    optimizer_name: str = "sgd"
    learning_rate: float = 1e-3
    batch_size: int = 1
    val_interval: int = 1
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    norm: str = "batch"
    density_bands: bool = False
    custom_conv_init: str = "kaiming"
    output_bias_prior: bool = True
    num_workers: int = 0
    max_train_seconds: float | None = None
    device: str | None = None
    cache: str = "disk"
    synth_workers: int = 1
    parallel_runs: int = 1
    split_fractions: tuple[float, float, float, float] | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    synth_shape: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None
    dataset: str | None = None

    def checkpoint_for(self, model: str, seed: int) -> str | None:
        """The checkpoint trained elsewhere that ``model`` is at training ``seed``: ``checkpoints["model@seed"]``,
        else ``checkpoints["model"]``; ``None`` when the run trains it.

        Example:
            >>> p = replace(get_profile("quick"), seeds=(0, 1), checkpoints={"axialnet@0": "a", "axialnet@1": "b"})
            >>> p.checkpoint_for("axialnet", 1), p.checkpoint_for("axialnet_mask", 1)
            ('b', None)
        """
        return self.checkpoints.get(f"{model}@{seed}", self.checkpoints.get(model))

    def check_checkpoints(self) -> None:
        """Refuse checkpoints that do not fit the run's models and seeds (before any data is generated).

        Raises:
            InputError: a key that is not ``model`` or ``model@seed``, a model or seed the run does not include, or a
                model with checkpoints for some of its seeds only (the others would be trained here, and the seeds
                would not be one experiment).
        """
        per_seed: dict[str, set[int]] = {}
        for key in self.checkpoints:
            model, seed = parse_checkpoint_key(key)
            if model not in self.models:
                raise InputError(None, f"checkpoint {key!r}: model {model!r} is not in this run (models: "
                                       f"{list(self.models)})")
            if seed is not None:
                if seed not in self.seeds:
                    raise InputError(None, f"checkpoint {key!r}: seed {seed} is not in this run (seeds: "
                                           f"{list(self.seeds)}; add it with --seeds)")
                per_seed.setdefault(model, set()).add(seed)
        for model, seeds in per_seed.items():
            missing = sorted(set(self.seeds) - seeds)
            if missing and model not in self.checkpoints:
                raise InputError(None, f"{model} has checkpoints for seeds {sorted(seeds)} but not for {missing}: "
                                       f"give {model}@SEED=PATH for each seed of the run, or {model}=PATH for all")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view (recorded in the results)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReproProfile:
        """The profile recorded by :meth:`to_dict` (JSON lists back to tuples).

        Raises:
            ValueError: a key that is not a field, or a missing required one.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown profile fields {unknown}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise ValueError(str(exc)) from exc


#: the shipped models' grid and data: scans rendered at 2.9 mm (the demo profile's 128 x 128 x 96) and resampled by the
#: bundle's preprocessing to 64 x 64 x 48 at 5.8 mm, the small trunk of stride 16 (a 4 x 4 attention grid), the Table 2
#: pair, area-mode allowed regions; ``quick`` trains such models, ``reference`` evaluates the shipped ones
_SHIPPED_GRID: dict[str, Any] = {
    "synth_profile": "demo",
    "spatial_size": (64, 64, 48),
    "synth_shape": (128, 128, 96),
    "spacing": (5.8, 5.8, 6.4),
    "trunk": "small16",
    "seeds": (0,),
    "models": ("axialnet", "axialnet_mask"),
    "region_mode": "area",
    "area_threshold": 0.1,
    "sanity_scans": 8,
    "device": "cpu",
    "synth_workers": 2,
}

PROFILES: dict[str, ReproProfile] = {
    "tiny": ReproProfile(
        name="tiny",
        synth_profile="tiny",
        n_scans=24,
        spatial_size=(64, 64, 48),
        trunk="small",
        max_epochs=1,
        seeds=(0,),
        region_mode="area",
        area_threshold=0.1,
        sanity_scans=2,
        sanity_models=("axialnet",),
        device="cpu",
        note="smoke test (CI): every table and figure, numbers meaningless",
    ),
    "quick": ReproProfile(
        name="quick",
        **_SHIPPED_GRID,
        n_scans=4000,
        split_fractions=(0.7, 0.1, 0.1, 0.1),
        density_bands=True,
        max_epochs=56,
        optimizer_name="adam",
        learning_rate=2e-3,
        batch_size=16,
        lr_schedule="warmup_cosine",
        warmup_epochs=1.0,
        parallel_runs=2,
        note="about 55 minutes on 2 CPU cores: the shipped models' network and optimizer trained from scratch "
        "(small trunk of stride 16 with the densitometry branch, Adam lr 2e-3 with warm-up and cosine decay, batch 16, "
        "56 epochs) on 4000 scans (2800 for training, 400 per other split) rendered at 128x128x96 (2.9 mm) and "
        "resampled to 64x64x48 (5.8 mm, a 4x4 attention grid) by the bundle's preprocessing; Table 2's pair "
        "(classification loss / with the mask loss) trained at the same time, one thread each; one seed",
    ),
    "quick_all": ReproProfile(
        name="quick_all",
        synth_profile="tiny",
        n_scans=2000,
        spatial_size=(64, 64, 48),
        trunk="small",
        max_epochs=8,
        seeds=(0, 1, 2),
        region_mode="area",
        area_threshold=0.1,
        sanity_scans=8,
        optimizer_name="adam",
        batch_size=8,
        lr_schedule="warmup_cosine",
        warmup_epochs=1.0,
        device="cpu",
        synth_workers=2,
        note="about 70 minutes on 2 CPU cores: every Table 1 model, 3 seeds, 2000 scans of 64x64x48 rendered on the "
        "network grid, small trunk, Adam with warm-up and cosine decay, 8 epochs; a run of every model, too short "
        "for any to learn (the quick profile until session 22)",
    ),
    "gpu": ReproProfile(
        name="gpu",
        synth_profile="demo",
        n_scans=2400,
        spatial_size=(128, 128, 96),
        trunk="resnet18",
        max_epochs=20,
        seeds=(0, 1, 2),
        models=(*PAPER_MODELS, "plain3d"),
        region_mode="area",
        area_threshold=0.1,
        sanity_scans=16,
        optimizer_name="adam",
        batch_size=8,
        lr_schedule="warmup_cosine",
        warmup_epochs=1.0,
        num_workers=6,
        device="cuda",
        synth_workers=16,
        note="one GPU: 2400 scans of 128x128x96 (4x4 attention grid), ResNet-18, Adam with warm-up and cosine decay, "
        "batch 8, 20 epochs; bf16 autocast and channels_last (the configs' CUDA defaults)",
    ),
    "reference": ReproProfile(
        name="reference",
        **_SHIPPED_GRID,
        n_scans=1200,
        dataset_seed=2,
        max_epochs=0,
        checkpoints={"axialnet": "bundle/models/reference.pt", "axialnet_mask": "bundle/models/reference_mask.pt"},
        note="the shipped reference models (scripts/train_reference.py: small trunk of stride 16 with the "
        "densitometry branch, 64x64x48: a 4x4 attention grid; 3300 training scans of dataset seed 1 rendered at "
        "2.9 mm and resampled to 5.8 mm, classification loss only / with the mask loss) evaluated and analysed on "
        "1200 scans of dataset seed 2, patients they never saw, made the same way (rendered at 128x128x96, "
        "resampled by the bundle's preprocessing); no training",
    ),
    "reference_gpu": ReproProfile(
        name="reference_gpu",
        synth_profile="demo",
        n_scans=1200,
        dataset_seed=2,
        spatial_size=(128, 128, 96),
        trunk="resnet18",
        max_epochs=0,
        seeds=(0,),
        models=("axialnet", "axialnet_mask"),
        region_mode="area",
        area_threshold=0.1,
        sanity_scans=16,
        device="cuda",
        synth_workers=16,
        checkpoints={"axialnet": "outputs/reference_gpu/reference_resnet18.pt",
                     "axialnet_mask": "outputs/reference_gpu/mask/reference_resnet18_mask.pt"},
        note="reference models trained on a GPU by scripts/gpu_reference.sh (ResNet-18, 128x128x96: a 4x4 attention "
        "grid; classification loss only / with the mask loss; dataset seed 1) evaluated and analysed on 1200 scans "
        "of dataset seed 2; no training",
    ),
    "full": ReproProfile(
        name="full",
        synth_profile="paper",
        n_scans=600,
        spatial_size=(420, 420, 405),
        trunk="resnet18",
        max_epochs=100,
        seeds=(0, 1, 2),
        region_mode="nearest",
        area_threshold=0.5,
        custom_conv_padding=0,
        conv_padding=0,
        sanity_scans=16,
        cache="none",
        synth_workers=0,
        custom_conv_init="pytorch",
        output_bias_prior=False,
        note="the paper's settings (420x420x405, ResNet-18, SGD lr 1e-3, batch 1, PyTorch's default init, zero output "
        "bias, 100 epochs with early stopping); for a GPU; not run here",
    ),
}


def parse_checkpoint_key(key: str) -> tuple[str, int | None]:
    """``"model"`` -> ``(model, None)``; ``"model@seed"`` -> ``(model, seed)``.

    Raises:
        InputError: an unknown model, or a seed that is not an integer.
    """
    model, sep, seed = key.partition("@")
    if model not in MODELS:
        raise InputError(None, f"checkpoint {key!r}: unknown model {model!r}; choose from {sorted(MODELS)}")
    if not sep:
        return model, None
    try:
        return model, int(seed)
    except ValueError:
        raise InputError(None, f"checkpoint {key!r}: the seed after '@' must be an integer") from None


def get_profile(name: str, **overrides: Any) -> ReproProfile:
    """The named profile, with fields replaced by ``overrides`` (``None`` values are ignored).

    Raises:
        InputError: unknown profile or field.
    """
    if name not in PROFILES:
        raise InputError(None, f"unknown reproduction profile {name!r}; choose one of {sorted(PROFILES)}")
    fields = set(ReproProfile.__dataclass_fields__)
    bad = sorted(set(overrides) - fields)
    if bad:
        raise InputError(None, f"unknown profile fields {bad}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = [m for m in changes.get("models", ()) if m not in MODELS]
    if unknown:
        raise InputError(None, f"unknown models {unknown}; choose from {sorted(MODELS)}")
    return replace(PROFILES[name], **changes)


def with_spatial_size(profile: ReproProfile, size: Sequence[int]) -> ReproProfile:
    """``profile`` with the network input ``size`` ``(X, Y, Z)``, on the same scans.

    The scans are rendered as the profile renders them, and the bundle's preprocessing resamples each one to ``size``
    over the same field of view (the synth profile's: its spacing times its shape), so the network's voxel size is
    that field of view divided by ``size``. When ``size`` is the rendered shape nothing is resampled.

    Example:
        >>> p = with_spatial_size(get_profile("quick"), (128, 128, 96))  # quick's 2.9 mm scans as they are rendered
        >>> p.spatial_size, p.spacing
        ((128, 128, 96), None)

    Raises:
        InputError: not three positive sizes, or ``Z`` not a multiple of 3 (AxialNet's slice triplets).
    """
    from hirescam_ext.networks._layers import SLICES_PER_TRIPLET
    from hirescam_ext.synthetic.generator import PROFILES as SYNTH_PROFILES

    size = tuple(int(v) for v in size)
    if len(size) != 3 or min(size) < 1:
        raise InputError(None, f"--spatial-size {list(size)}: expected three positive sizes X Y Z")
    if size[2] % SLICES_PER_TRIPLET:
        raise InputError(None, f"--spatial-size {list(size)}: Z = {size[2]} must be a multiple of {SLICES_PER_TRIPLET} "
                               "(slice triplets)")
    rendered = tuple(profile.synth_shape or profile.spatial_size)
    if size == rendered:
        return replace(profile, spatial_size=size, synth_shape=rendered, spacing=None)
    synth = SYNTH_PROFILES[profile.synth_profile]
    field_of_view = [sp * n for sp, n in zip(synth["spacing"], synth["shape"])]
    spacing = tuple(round(fov / n, 4) for fov, n in zip(field_of_view, size))
    return replace(profile, spatial_size=size, synth_shape=rendered, spacing=spacing)
