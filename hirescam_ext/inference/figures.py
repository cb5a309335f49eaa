"""Figures a person can look at: CT slices with a HiResCAM overlay, and per-slice score heat maps.

Axial slices are shown in the radiological convention: the patient's right on the image's left, anterior at the
top (volumes are RAS ``[X, Y, Z]``: X grows toward the patient's right, Y toward anterior). A volume in its own
file's voxel order (any orientation) is sliced with :func:`axial_slice` and its affine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from hirescam_ext.utils.io import atomic_write  # noqa: E402

__all__ = [
    "axial_axis",
    "axial_display",
    "axial_slice",
    "highest_mass_slice",
    "save_overlay_png",
    "save_slice_score_heatmap",
]


def axial_display(slice_xy: np.ndarray) -> np.ndarray:
    """Turn an RAS axial slice ``[X, Y]`` into display rows/columns (anterior up, patient's right on the left)."""
    return np.flip(np.asarray(slice_xy).T, axis=(0, 1))


def axial_axis(affine: np.ndarray) -> int:
    """The voxel axis of a volume with RAS ``affine`` that runs closest to inferior-superior (2 for most scans)."""
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    return int(np.flatnonzero(ornt[:, 0] == 2)[0])


def highest_mass_slice(volume: np.ndarray, affine: np.ndarray) -> int:
    """Index, along :func:`axial_axis`, of the axial slice of ``volume`` (a map ``[X, Y, Z]`` in any voxel order)
    whose sum is highest; the middle slice when the map is empty."""
    volume = np.asarray(volume)
    axis = axial_axis(affine)
    mass = volume.sum(axis=tuple(a for a in range(volume.ndim) if a != axis), dtype=np.float64)
    if not np.any(mass > 0):
        return volume.shape[axis] // 2
    return int(np.argmax(mass))


def axial_slice(volume: np.ndarray, affine: np.ndarray, index: int) -> np.ndarray:
    """Axial slice ``index`` (a voxel index along :func:`axial_axis`) of ``volume`` as an RAS ``[X, Y]`` array,
    whatever the volume's voxel order (LPS NRRD, DICOM, RAS NIfTI): ready for :func:`axial_display`."""
    volume = np.asarray(volume)
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    axis = axial_axis(affine)
    plane = np.take(volume, int(index), axis=axis)
    rows = [r for a, r in enumerate(ornt) if a != axis]  # (RAS axis, flip) of the plane's two axes, in order
    for a, (_, flip) in enumerate(rows):
        if flip < 0:
            plane = np.flip(plane, axis=a)
    return plane.T if rows[0][0] == 1 else plane


def save_overlay_png(
    path: str | os.PathLike,
    ct_slice: np.ndarray,
    map_slice: np.ndarray,
    title: str,
    window: tuple[float, float] | None = None,
    alpha: float = 0.45,
) -> None:
    """Write one axial CT slice with an explanation map over it, and the CT alone beside it (Figure 5 style).

    Args:
        path: output PNG.
        ct_slice: ``[X, Y]`` CT slice (HU or scaled intensities).
        map_slice: ``[X, Y]`` normalized map in ``[0, 1]`` on the same grid.
        title: figure title (abnormality, probability, slice).
        window: display window of the CT; default: the slice's 1st-99th percentile.
        alpha: map opacity.
    """
    ct = axial_display(ct_slice).astype(np.float32)
    heat = axial_display(map_slice).astype(np.float32)
    lo, hi = window if window is not None else (float(np.percentile(ct, 1)), float(np.percentile(ct, 99)))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax in axes:
        ax.imshow(ct, cmap="gray", vmin=lo, vmax=hi)
        ax.set_axis_off()
    im = axes[1].imshow(np.ma.masked_less_equal(heat, 0.0), cmap="jet", vmin=0.0, vmax=1.0, alpha=alpha)
    axes[0].set_title("CT (R on left, anterior up)", fontsize=9)
    axes[1].set_title("HiResCAM", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def save_slice_score_heatmap(
    path: str | os.PathLike,
    slice_scores: np.ndarray,
    label_names: Sequence[str],
    title: str = "per-slice scores (abnormality x axial slice triplet)",
) -> None:
    """Write the matrix C of per-slice scores ``[K, H]`` (abnormality x slice triplet, inferior to superior)."""
    scores = np.asarray(slice_scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[0] != len(label_names):
        raise ValueError(f"slice_scores must be [K, H] with K={len(label_names)} labels, got {scores.shape}")
    height = max(2.5, 0.22 * len(label_names) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height))
    bound = float(np.abs(scores).max()) or 1.0
    im = ax.imshow(scores, aspect="auto", cmap="coolwarm", vmin=-bound, vmax=bound, interpolation="nearest")
    ax.set_yticks(range(len(label_names)))
    ax.set_yticklabels(label_names, fontsize=7)
    ax.set_xlabel("axial slice triplet (inferior \u2192 superior)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="slice score (pre-sigmoid)")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
