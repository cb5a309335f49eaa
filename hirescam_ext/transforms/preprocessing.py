"""Deterministic CT preprocessing of the HiResCAM paper as a MONAI ``Compose``, and its inversion.

Draelos & Carin (HiResCAM, arXiv:2011.08891) feed AxialNet 0.8 mm isotropic volumes padded (with the minimum) or
centre-cropped to 405 x 420 x 420, clipped to [-1000, 800] HU, scaled to [0, 1] and shifted by -0.449.
:func:`ct_preprocessing` builds that chain for any CT that ``LoadImaged`` reads (DICOM series folder, NIfTI, NRRD)
and for RAD-ChestCT ``.npz`` files (through :class:`~hirescam_ext.data.radchestct.RadChestCTNpzReader`):

``LoadImaged`` (channel first) -> optional pre-crop (:class:`~hirescam_ext.transforms.spacing.CropForSpacingd`) ->
``Orientationd("RAS")`` -> :class:`~hirescam_ext.transforms.spacing.ResampleToSpacingd`
(bilinear for CT, nearest for label maps) -> ``ResizeWithPadOrCropd`` to ``spatial_size`` (CT padded with the
lower HU bound, i.e. the minimum after windowing; label maps with 0) -> clip ``hu_range``, scale to [0, 1] and add
``center`` (:class:`~hirescam_ext.transforms.intensity.HUWindowd`, or ``ScaleIntensityRanged(clip=True)`` +
``ShiftIntensityd``). Padding before windowing gives the same values as padding after it with the scaled minimum,
and windows fewer voxels.

Every spatial step is invertible (``MetaTensor`` + ``InvertibleTransform``): :func:`invert_to_original` maps a
tensor computed on the preprocessed grid (a HiResCAM map upsampled to the input size, a segmentation) back onto
the scan's own voxel grid.

Example:
    >>> pre = ct_preprocessing(spacing=(2.4, 2.4, 2.4), spatial_size=(128, 128, 96))
    >>> item = pre({"image": "ct.nii.gz", "organs": "organs.nii.gz"})  # doctest: +SKIP
    >>> item["image"].shape  # doctest: +SKIP
    torch.Size([1, 128, 128, 96])
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import ImageReader, MetaTensor
from monai.transforms import (
    Compose,
    Invertd,
    InvertibleTransform,
    LoadImaged,
    Orientationd,
    ResizeWithPadOrCropd,
    ScaleIntensityRanged,
    ShiftIntensityd,
)

from hirescam_ext.transforms.intensity import HUWindowd
from hirescam_ext.transforms.loading import default_ct_readers
from hirescam_ext.transforms.spacing import CropForSpacingd, ResampleToSpacingd
from hirescam_ext.utils.ct_checks import LoadCTd

__all__ = [
    "PAPER_SPACING",
    "PAPER_SPATIAL_SIZE",
    "PAPER_HU_RANGE",
    "PAPER_CENTER",
    "ct_preprocessing",
    "invert_to_original",
    "prepare_hu_volume",
    "prepare_volumes",
]

PAPER_SPACING = (0.8, 0.8, 0.8)
#: [X, Y, Z] = 420 x 420 in-plane, 405 axial slices (135 triplets).
PAPER_SPATIAL_SIZE = (420, 420, 405)
PAPER_HU_RANGE = (-1000.0, 800.0)
#: shift added after scaling to [0, 1] (the paper subtracts 0.449).
PAPER_CENTER = -0.449
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _loader(keys: Sequence[str], reader: ImageReader | str | None, check: bool, ct: bool, **kwargs: Any) -> LoadImaged:
    """``LoadImaged`` with the project's CT readers registered, chosen by file suffix (``reader=None``), or with the
    user's reader(s) tried in turn. With ``check`` it is :class:`~hirescam_ext.utils.ct_checks.LoadCTd`: bad files
    raise an ``InputError`` naming the file and the problem; ``ct`` keys must also hold finite, non-constant HU
    values (label maps only need to be readable 3D volumes: an empty organ map is a flagged segmentation, not an
    unreadable file)."""
    if check:
        make = functools.partial(LoadCTd, hounsfield=ct, check_values=ct)
    else:
        make = LoadImaged
    if reader is not None:
        return make(keys, reader=reader, **kwargs)
    loader = make(keys, reader=None, **kwargs)
    for r in default_ct_readers():  # registered last = tried first, each only for the suffixes it accepts
        loader.register(r)
    return loader


def ct_preprocessing(
    keys: Sequence[str] | str = ("image",),
    label_map_keys: Sequence[str] | str = ("organs",),
    spacing: Sequence[float] | None = PAPER_SPACING,
    spatial_size: Sequence[int] | None = PAPER_SPATIAL_SIZE,
    hu_range: Sequence[float] | None = PAPER_HU_RANGE,
    center: float | None = PAPER_CENTER,
    axcodes: str = "RAS",
    load: bool = True,
    reader: ImageReader | str | None = None,
    label_dtype: Any = np.uint8,
    allow_missing_label_maps: bool = True,
    fast_intensity: bool = True,
    pad_hu: float = -1024.0,
    precrop: bool = True,
    check_inputs: bool = True,
) -> Compose:
    """Build the deterministic preprocessing ``Compose`` (paper defaults; every size and range is a parameter).

    Args:
        keys: CT image keys (resampled bilinearly, intensity-scaled, padded with the scaled minimum).
        label_map_keys: label-map keys (organ maps; nearest resampling, padded with 0, no intensity change).
        spacing: target voxel size in mm (``None``: keep the scan's spacing).
        spatial_size: final ``[X, Y, Z]`` after symmetric pad/centre crop (``None``: no pad/crop).
        hu_range: ``(low, high)`` HU clipped and scaled to [0, 1] (``None``: keep HU).
        center: value added after scaling (paper: -0.449; ``None`` or 0: no shift).
        axcodes: target orientation (the project's contract is ``"RAS"``).
        load: start with ``LoadImaged`` (``False`` when the dictionary already holds channel-first MetaTensors).
        reader: reader(s) for the CT keys; default :func:`~hirescam_ext.transforms.loading.default_ct_readers`:
            RAD-ChestCT ``.npz``, NIfTI (nibabel), everything else (DICOM series folders, NRRD) through ITK, with a
            fast column-major to C-order reordering.
        label_dtype: dtype of the loaded label maps.
        allow_missing_label_maps: items without a label-map key pass through (inference on raw CTs).
        fast_intensity: window with the fused :class:`~hirescam_ext.transforms.intensity.HUWindowd` (same values
            as ``ScaleIntensityRanged(clip=True)`` + ``ShiftIntensityd``, several times faster); ``False`` uses
            the two MONAI transforms.
        pad_hu: pad value when ``hu_range`` is ``None`` (air).
        precrop: before resampling, centre-crop away what the final crop would drop anyway
            (:class:`~hirescam_ext.transforms.spacing.CropForSpacingd`; about 30 % less work on a full-size scan).
        check_inputs: load through :class:`~hirescam_ext.utils.ct_checks.LoadCTd`: an unreadable file, a DICOM
            folder with missing, duplicated or mixed slices, a 2D/4D, NaN, constant or non-HU image raises an
            ``InputError`` naming the file (label maps: readable 3D volumes only); ``False``: plain ``LoadImaged``.

    Returns:
        a ``monai.transforms.Compose`` whose spatial steps are invertible.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    label_map_keys = [label_map_keys] if isinstance(label_map_keys, str) else list(label_map_keys)
    all_keys = keys + label_map_keys
    missing_ok = allow_missing_label_maps
    chain: list = []
    if load:
        # dtype=None keeps the file's int16: the cast to float happens inside the (cropped) resampling
        chain.append(_loader(keys, reader, check_inputs, True, image_only=True, ensure_channel_first=True, dtype=None))
        if label_map_keys:
            chain.append(
                _loader(
                    label_map_keys,
                    reader,
                    check_inputs,
                    False,
                    image_only=True,
                    ensure_channel_first=True,
                    dtype=label_dtype,
                    allow_missing_keys=missing_ok,
                )
            )
    # orientation first: the pre-crop and the sizes below are in RAS axis order (X, Y, Z), whatever the file's order
    chain.append(Orientationd(all_keys, axcodes=axcodes, labels=_RAS_LABELS, allow_missing_keys=missing_ok))
    if precrop and spacing is not None and spatial_size is not None:
        chain.append(
            CropForSpacingd(all_keys, pixdim=spacing, spatial_size=spatial_size, allow_missing_keys=missing_ok)
        )
    if spacing is not None:
        modes = ["bilinear"] * len(keys) + ["nearest"] * len(label_map_keys)
        chain.append(ResampleToSpacingd(all_keys, pixdim=spacing, mode=modes, allow_missing_keys=missing_ok))
    if hu_range is not None:
        low, high = float(hu_range[0]), float(hu_range[1])
        if not high > low:
            raise ValueError(f"hu_range must be (low, high) with high > low, got {hu_range}")
    if spatial_size is not None:
        # Padding before windowing with the lower HU bound gives exactly the scaled minimum after it (the paper
        # pads with the minimum), and windowing the cropped volume is cheaper than windowing the resampled one.
        size = tuple(int(s) for s in spatial_size)
        fill = float(hu_range[0]) if hu_range is not None else float(pad_hu)
        chain.append(ResizeWithPadOrCropd(keys, spatial_size=size, mode="constant", value=fill))
        if label_map_keys:
            chain.append(
                ResizeWithPadOrCropd(
                    label_map_keys, spatial_size=size, mode="constant", value=0, allow_missing_keys=missing_ok
                )
            )
    if hu_range is not None:
        if fast_intensity:
            chain.append(HUWindowd(keys, hu_range=(low, high), center=center))
        else:
            chain.append(ScaleIntensityRanged(keys, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True))
            if center:
                chain.append(ShiftIntensityd(keys, offset=float(center)))
    elif center:
        chain.append(ShiftIntensityd(keys, offset=float(center)))
    return Compose(chain)


@functools.lru_cache(maxsize=8)
def _spatial_chain(spacing: tuple[float, ...], spatial_size: tuple[int, ...], names: tuple[str, ...] = ()) -> Compose:
    return ct_preprocessing(keys=["image"], label_map_keys=list(names), spacing=spacing, spatial_size=spatial_size,
                            hu_range=None, center=None, load=False)


def prepare_hu_volume(
    image: torch.Tensor | np.ndarray,
    affine: torch.Tensor | np.ndarray,
    spacing: Sequence[float],
    spatial_size: Sequence[int],
) -> torch.Tensor:
    """A HU volume brought to ``spacing`` and ``spatial_size`` by the spatial steps of :func:`ct_preprocessing`
    (orientation, pre-crop, bilinear resampling, pad with -1024 HU / centre crop), without the intensity window: what
    the bundle makes of a scan before windowing it. Used to make synthetic scans rendered on a finer grid look like a
    user's scan on the model's grid.

    Args:
        image: ``[X, Y, Z]`` in HU (any dtype).
        affine: its voxel-to-world matrix (``4 x 4``).
        spacing, spatial_size: the model grid (mm, voxels).

    Returns:
        float32 ``[*spatial_size]`` in HU.

    Example:
        >>> fine = np.zeros((128, 128, 96))  # a scan of 2.9 x 2.9 x 3.2 mm
        >>> hu = prepare_hu_volume(fine, np.diag([2.9, 2.9, 3.2, 1.0]), (5.8, 5.8, 6.4), (64, 64, 48))
        >>> tuple(hu.shape)
        (64, 64, 48)
    """
    return prepare_volumes(image, affine, spacing, spatial_size, {})[0]


def prepare_volumes(
    image: torch.Tensor | np.ndarray,
    affine: torch.Tensor | np.ndarray,
    spacing: Sequence[float],
    spatial_size: Sequence[int],
    label_maps: Mapping[str, torch.Tensor | np.ndarray],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`prepare_hu_volume` with label maps on the same grid: the HU volume resampled bilinearly, each label map
    (an organ map ``[X, Y, Z]`` or a stack of masks ``[C, X, Y, Z]``; ``{}``: none) by nearest neighbour, through one
    chain, so the pre-crop, padding and cropping are the same for all (label maps are padded with 0).

    Returns:
        ``(hu, maps)``: float32 ``[*spatial_size]`` in HU, and each map on that grid with its own dtype and layout.

    Example:
        >>> fine = np.zeros((128, 128, 96))
        >>> organs = np.ones((128, 128, 96), np.uint8)
        >>> hu, maps = prepare_volumes(fine, np.diag([2.9, 2.9, 3.2, 1.0]), (5.8, 5.8, 6.4), (64, 64, 48),
        ...                            {"organs": organs})
        >>> tuple(hu.shape), tuple(maps["organs"].shape), maps["organs"].dtype
        ((64, 64, 48), (64, 64, 48), torch.uint8)
    """
    names = tuple(label_maps)
    if "image" in names:
        raise ValueError("label_maps must not use the name 'image' (the HU volume's key)")
    chain = _spatial_chain(tuple(float(v) for v in spacing), tuple(int(v) for v in spatial_size), names)
    aff = torch.as_tensor(np.asarray(affine))
    data: dict[str, Any] = {"image": MetaTensor(torch.as_tensor(np.asarray(image))[None].float(), affine=aff)}
    layout: dict[str, tuple[bool, torch.dtype]] = {}  # stacked masks, dtype
    for name, volume in label_maps.items():
        v = torch.as_tensor(np.asarray(volume))
        layout[name] = (v.ndim == 4, v.dtype)
        data[name] = MetaTensor(v if v.ndim == 4 else v[None], affine=aff)
    out = chain(data)
    maps = {}
    for name, (stacked, dtype) in layout.items():
        m = out[name].as_tensor()
        m = (m.round() if m.is_floating_point() and not dtype.is_floating_point else m).to(dtype)
        maps[name] = m if stacked else m[0]
    return out["image"][0].as_tensor().float(), maps


def invert_to_original(
    map_tensor: torch.Tensor | np.ndarray,
    reference: Mapping[str, Any] | MetaTensor,
    transform: Compose,
    mode: str = "nearest",
    key: str = "image",
    layout: str = "image",
) -> MetaTensor:
    """Map a tensor computed on the preprocessed grid back onto the original scan's voxel grid.

    Args:
        map_tensor: ``[C, X, Y, Z]`` (or ``[X, Y, Z]``) on the preprocessed grid, in the image's axis order. A
            coarser grid (for example an attention map permuted to ``[M, D1, D2, H]``) is first upsampled to the
            preprocessed size (nearest or trilinear, following ``mode``).
        reference: the preprocessed data dictionary (or its image ``MetaTensor``) that carries the applied
            operations of ``transform``.
        transform: the ``Compose`` that produced ``reference`` (for example :func:`ct_preprocessing`'s).
        mode: ``"nearest"`` (labels, binarised maps) or ``"linear"`` (continuous maps).
        key: the image key inside ``reference``.
        layout: ``"image"`` (``[C, X, Y, Z]`` order) or ``"attention"`` (an AxialNet map ``[M, H, D1, D2]``, permuted
            to ``[M, D1, D2, H]`` first).

    Returns:
        a ``MetaTensor`` ``[C, *original spatial shape]`` with the original affine (save it with ``SaveImage``).

    Example:
        >>> pre = ct_preprocessing(spacing=(4, 4, 4), spatial_size=(64, 64, 64))
        >>> item = pre({"image": "ct.nrrd"})  # doctest: +SKIP
        >>> back = invert_to_original(cam, item, pre, mode="linear")  # doctest: +SKIP
    """
    if mode not in ("nearest", "linear", "bilinear", "trilinear"):
        raise ValueError(f"mode must be 'nearest' or 'linear', got {mode!r}")
    ref = reference if isinstance(reference, MetaTensor) else reference[key]
    if not isinstance(ref, MetaTensor):
        raise TypeError(f"the reference {key!r} must be a MetaTensor carrying its applied operations")
    steps = transform.flatten().transforms if isinstance(transform, Compose) else (transform,)
    invertible = any(isinstance(t, InvertibleTransform) for t in steps)
    if invertible and not ref.applied_operations:
        source = ref.meta.get("filename_or_obj", "the reference")
        raise ValueError(f"{source}: the reference carries no applied operations to invert (an item read from the "
                         "bundle's disk or memmap cache keeps none: preprocess the scan again without a cache)")
    x = torch.as_tensor(np.asarray(map_tensor) if isinstance(map_tensor, np.ndarray) else map_tensor).detach()
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    if layout == "attention":
        if x.ndim != 4:
            raise ValueError(f"an attention map must be [M, H, D1, D2], got shape {tuple(x.shape)}")
        x = torch.movedim(x, 1, -1)
    elif layout != "image":
        raise ValueError(f"layout must be 'image' or 'attention', got {layout!r}")
    if x.ndim == ref.ndim - 1:
        x = x[None]
    if x.ndim != ref.ndim:
        raise ValueError(f"map of shape {tuple(x.shape)} does not match the reference's {tuple(ref.shape)}")
    target = tuple(int(s) for s in ref.shape[1:])
    if tuple(x.shape[1:]) != target:
        if mode == "nearest":
            x = F.interpolate(x[None].float(), size=target, mode="nearest-exact")[0]
        else:
            x = F.interpolate(x[None].float(), size=target, mode="trilinear", align_corners=False)[0]
    nearest = mode == "nearest"
    inverter = Invertd(keys="_map", transform=transform, orig_keys=key, nearest_interp=nearest)
    out = inverter({"_map": MetaTensor(x), key: ref})["_map"]
    return out
