"""Write what a person looks at after inference: probabilities, HiResCAM NIfTI maps in the scan's own geometry,
PNG overlays on the highest-scoring slice (Draelos & Carin, HiResCAM, Figure 5 style) and per-slice score heat maps.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch
from monai.transforms import LoadImaged

from hirescam_ext.inference.figures import (
    axial_axis,
    axial_slice,
    highest_mass_slice,
    save_overlay_png,
    save_slice_score_heatmap,
)
from hirescam_ext.inference.inputs import scan_name, unique_scan_names
from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.utils.io import atomic_write, ensure_writable_dir, write_json_atomic, write_text_atomic
from hirescam_ext.visualize.postprocess import upsample_axial_maps

__all__ = ["ExplanationWriter", "DONE_MARKER", "MAP_DTYPES", "pending_inputs"]

logger = logging.getLogger(__name__)

#: written last in a scan's output folder; its presence means the scan is complete
DONE_MARKER = "done.json"


def _made_with(folder: Path, checkpoint_sha256: str | None) -> bool:
    """Whether the scan folder is complete and (when ``checkpoint_sha256`` is given) made with that checkpoint."""
    if not (folder / DONE_MARKER).is_file():
        return False
    if checkpoint_sha256 is None:
        return True
    try:
        recorded = json.loads((folder / "result.json").read_text(encoding="utf-8")).get("checkpoint_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded == checkpoint_sha256


def pending_inputs(
    sources: Sequence[str],
    output_dir: str | os.PathLike,
    skip_done: bool = True,
    checkpoint_sha256: str | None = None,
) -> list[dict[str, str]]:
    """Data items ``{"image": path, "scan": output name}`` for the scans still to do.

    Names are unique within the run (:func:`~hirescam_ext.inference.inputs.unique_scan_names`); with ``skip_done``,
    scans whose output folder already has a :data:`DONE_MARKER` are left out (re-runs skip finished work), unless
    their ``result.json`` records another checkpoint than ``checkpoint_sha256`` (or none): those are redone.
    """
    out = Path(output_dir)
    items = [{"image": str(s), "scan": n} for s, n in zip(sources, unique_scan_names(sources))]
    if not skip_done:
        return items
    pending = [item for item in items if not _made_with(out / item["scan"], checkpoint_sha256)]
    stale = [item for item in pending if (out / item["scan"] / DONE_MARKER).is_file()]
    if stale:
        logger.warning("%d finished scan(s) in %s were made with another checkpoint than this one (sha256 %s...): "
                       "redoing them", len(stale), out, str(checkpoint_sha256)[:12])
    if len(pending) < len(items):
        logger.info("%d of %d scans already have results in %s and are skipped (skip_done=false redoes them); "
                    "%d to do", len(items) - len(pending), len(items), out, len(pending))
    return pending


#: how ``hirescam_<label>.nii.gz`` maps are stored: 8-bit with a NIfTI scale slope (a quarter of float32 before
#: compression, values within 1/510 of the map), or 32-bit floats
MAP_DTYPES = ("uint8", "float32")
#: HU display window of the CT under the overlays (lungs dark grey, soft tissue light, bone white)
CT_WINDOW = (-1000.0, 400.0)


def _save_nifti(path: Path, data: np.ndarray | torch.Tensor, affine: np.ndarray, dtype: str = "uint8") -> None:
    """Save a map with ``affine``; ``uint8``: quantized to 255 steps of ``[min(0, lo), max(1, hi)]`` with the NIfTI
    ``scl_slope``/``scl_inter`` set, so readers (nibabel ``get_fdata``, ITK, 3D Slicer) get the map values back."""
    x = torch.as_tensor(data).detach().cpu().float()
    if dtype == "float32":
        img = nib.Nifti1Image(_fortran_order(x.numpy()), affine)
    elif dtype == "uint8":
        lo, hi = (float(v) for v in torch.aminmax(x)) if x.numel() else (0.0, 1.0)
        if math.isnan(lo) or math.isnan(hi):
            x = torch.nan_to_num(x, nan=0.0)
            lo, hi = (float(v) for v in torch.aminmax(x))
        low, high = min(0.0, lo), max(1.0, hi)
        slope = (high - low) / 255.0
        # every value lies in [low, high]: x / slope + 0.5 - low / slope is in [0.5, 255.5], truncation rounds it
        quantized = x.mul(1.0 / slope).add_(0.5 - low / slope).to(torch.uint8)
        img = nib.Nifti1Image(_fortran_order(quantized.numpy()), affine)
        img.header.set_slope_inter(slope, low)  # kept by nib.save for uint8 data
        img.header["cal_min"], img.header["cal_max"] = low, high  # display range in viewers
    else:
        raise ValueError(f"map dtype must be one of {MAP_DTYPES}, got {dtype!r}")
    with atomic_write(path) as tmp:
        nib.save(img, tmp)


def _fortran_order(a: np.ndarray, block: int = 32) -> np.ndarray:
    """``a`` as a Fortran-ordered array, NIfTI's order on disk (nibabel then writes it without reordering chunks);
    copied in slabs of ``block`` planes, several times faster than a whole-array transpose on large volumes."""
    if a.ndim != 3 or a.flags.f_contiguous:
        return np.asfortranarray(a)
    out = np.empty(a.shape[::-1], dtype=a.dtype)
    for i in range(0, a.shape[0], block):
        out[..., i : i + block] = a[i : i + block].T
    return out.T


class ExplanationWriter:
    """Ignite handler for :class:`hirescam_ext.engines.ExplanationEvaluator` runs over unlabeled scans.

    Per scan (folder ``output_dir/<scan>/``): ``hirescam_<label>.nii.gz`` for the reported abnormalities, in the
    original scan's voxel grid and affine (open it over the CT in 3D Slicer or ITK-SNAP), stored as ``uint8`` with
    a NIfTI scale slope of 1/255 (readers get the map in [0, 1] back within 1/510); ``overlay_<label>.png``, the
    original scan's axial slice with the most map mass, the map (in the original geometry) over the original CT;
    ``slice_scores.png``, the abnormality x slice matrix of per-slice scores; ``result.json`` (per label: the
    overlay's ``slice``, a voxel index along the original scan's axial axis, of ``n_slices``); and ``done.json``
    last. For the run: ``probabilities.csv`` (all labels),
    ``failures.csv`` (scans skipped, with the reason) and ``summary.json``. Every file is written atomically.

    Args:
        output_dir: where to write.
        transform: the preprocessing ``Compose`` the scans went through (to invert the spatial steps).
        map_key: output key of the normalized maps ``[B, M, H, D1, D2]``.
        top_k: report the ``top_k`` most probable abnormalities (ignored when ``labels`` is given).
        labels: report these label names instead.
        min_probability: among the top-k, only labels at or above this probability.
        label_names: the network's label names.
        save_nifti / save_png: switch the map files / figures.
        checkpoint_sha256: SHA-256 of the checkpoint file, recorded in each ``result.json`` (a re-run with another
            checkpoint redoes the scan, see :func:`pending_inputs`).
        map_dtype: ``"uint8"`` (scaled by the NIfTI slope, a quarter of the size or less) or ``"float32"``.

    Example:
        >>> writer = ExplanationWriter("outputs/inference", transform=preprocessing, top_k=3)  # doctest: +SKIP
        >>> writer.attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        transform: Any,
        map_key: str = "hirescam",
        top_k: int = 3,
        labels: Sequence[str] | None = None,
        min_probability: float = 0.0,
        label_names: Sequence[str] = LABEL_NAMES,
        save_nifti: bool = True,
        save_png: bool = True,
        checkpoint_sha256: str | None = None,
        map_dtype: str = "uint8",
    ) -> None:
        if map_dtype not in MAP_DTYPES:
            raise ValueError(f"map_dtype must be one of {MAP_DTYPES}, got {map_dtype!r}")
        self.output_dir = Path(output_dir)
        self.transform = transform
        self.map_key = map_key
        self.top_k = int(top_k)
        self.label_names = list(label_names)
        unknown = [name for name in labels or [] if name not in self.label_names]
        if unknown:
            raise ValueError(f"unknown label names {unknown}; choose from hirescam_ext.LABEL_NAMES")
        self.labels = list(labels) if labels else None
        self.min_probability = float(min_probability)
        self.save_nifti = save_nifti
        self.save_png = save_png
        self.checkpoint_sha256 = checkpoint_sha256
        self.map_dtype = map_dtype
        self.rows: dict[str, list[Any]] = {}
        self.written_now = 0
        self.failures: list[tuple[str, str]] = []
        self._start = time.time()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    # ------------------------------------------------------------------ events
    def _started(self, engine: Engine) -> None:
        ensure_writable_dir(self.output_dir)
        self._start = time.time()
        self._load_previous_rows()

    def _load_previous_rows(self) -> None:
        """Keep the rows of scans finished by an earlier run (their folders hold done.json) in probabilities.csv."""
        table = self.output_dir / "probabilities.csv"
        if not table.is_file():
            return
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != ["scan", "source", *self.label_names]:
                logger.warning("%s has other columns than this run: not merged", table)
                return
            for row in reader:
                if row and _made_with(self.output_dir / row[0], self.checkpoint_sha256):
                    self.rows[row[0]] = row

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        if output.get("error") is not None:
            sources = output.get("source")
            sources = sources if isinstance(sources, (list, tuple)) else [sources]
            errors = output["error"] if isinstance(output["error"], (list, tuple)) else [output["error"]]
            for src, err in zip(sources, errors):
                self.failures.append((str(src), str(err)))
            self._write_tables()
            return
        images = decollate_batch(engine.state.batch["image"], detach=True)
        names = engine.state.batch.get("scan")
        for i, image in enumerate(images):
            source = str(image.meta.get("filename_or_obj", f"scan_{engine.state.iteration}_{i}"))
            name = str(names[i]) if names is not None else scan_name(source)
            started = time.time()
            try:
                self._write_scan(source, name, image, output, i)
                done, total = engine.state.iteration, engine.state.epoch_length or "?"
                logger.info("scan %d/%s %s: outputs written in %.1f s", done, total, name, time.time() - started)
            except Exception as exc:  # noqa: BLE001 - one scan's failure is reported, the rest continue
                logger.exception("failed to write outputs of %s", source)
                self.failures.append((source, f"{type(exc).__name__}: {exc}"))
        self._write_tables()

    def _completed(self, engine: Engine) -> None:
        summary = {
            "scans_written": self.written_now,
            "scans_in_table": len(self.rows),
            "scans_failed": len(self.failures),
            "failures": [{"source": s, "error": e} for s, e in self.failures],
            "seconds": round(time.time() - self._start, 2),
            "output_dir": str(self.output_dir),
        }
        write_json_atomic(self.output_dir / "summary.json", summary)
        logger.info(
            "inference finished: %d scans written, %d failed (see %s)",
            self.written_now, len(self.failures), self.output_dir / "failures.csv",
        )

    def raise_if_failed(self) -> None:
        """Raise after the run when any scan failed, so batch jobs end with a non-zero exit status."""
        if self.failures:
            listed = "; ".join(f"{s}: {e}" for s, e in self.failures[:5])
            more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
            raise RuntimeError(
                f"{len(self.failures)} scan(s) failed and were skipped, the others were written: {listed}{more}; "
                f"see {self.output_dir / 'failures.csv'}"
            )

    # ------------------------------------------------------------------ writing
    def _chosen(self, prob: np.ndarray) -> list[int]:
        if self.labels is not None:
            return [self.label_names.index(name) for name in self.labels]
        order = np.argsort(-prob, kind="stable")[: self.top_k]
        return [int(m) for m in order if prob[m] >= self.min_probability]

    def _write_scan(self, source: str, name: str, image: MetaTensor, output: dict[str, Any], i: int) -> None:
        folder = self.output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        prob = output["prob"][i].detach().float().cpu().numpy()
        maps = output[self.map_key][i].detach().float().cpu()  # [M, H, D1, D2]
        slice_scores = output.get("slice_scores")
        scores = slice_scores[i].detach().float().cpu().numpy() if slice_scores is not None else None
        chosen = self._chosen(prob)
        volume_shape = tuple(int(s) for s in image.shape[1:])
        ct: np.ndarray | None = None  # the original CT, loaded again for the first overlay
        window: tuple[float, float] | None = None
        records = []
        for m in chosen:
            label = self.label_names[m]
            full = upsample_axial_maps(maps[m][None, None], volume_shape)[0, 0]  # [X, Y, Z], preprocessed grid
            record: dict[str, Any] = {"label": label, "probability": float(prob[m])}
            if not (self.save_nifti or self.save_png):
                records.append(record)
                continue
            from hirescam_ext.transforms.preprocessing import invert_to_original

            original = invert_to_original(full[None], image, self.transform, mode="linear")
            affine = np.asarray(original.affine, dtype=np.float64)
            heat = original[0].detach().cpu().numpy()  # the original scan's voxel grid
            if self.save_nifti:
                path = folder / f"hirescam_{label}.nii.gz"
                _save_nifti(path, original[0].as_tensor(), affine, self.map_dtype)
                record["map_nifti"] = path.name
            if self.save_png:
                if ct is None:
                    ct, window = self._original_ct(source, image, heat.shape)
                k = highest_mass_slice(heat, affine)  # never a padding slice: those are gone in this geometry
                n = int(heat.shape[axial_axis(affine)])
                path = folder / f"overlay_{label}.png"
                title = f"{name}: {label}  p={prob[m]:.2f}  axial slice {k} of {n} (0-based)"
                save_overlay_png(path, axial_slice(ct, affine, k), axial_slice(heat, affine, k), title, window=window)
                record["overlay_png"] = path.name
                record["slice"] = k
                record["n_slices"] = n
            records.append(record)
        if self.save_png and scores is not None and chosen:
            save_slice_score_heatmap(folder / "slice_scores.png", scores[chosen], [self.label_names[m] for m in chosen])
        write_json_atomic(
            folder / "result.json",
            {
                "source": source,
                "checkpoint_sha256": self.checkpoint_sha256,
                "reported": records,
                "probabilities": dict(zip(self.label_names, map(float, prob))),
            },
        )
        write_json_atomic(folder / DONE_MARKER, {"source": source, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self.rows[name] = [name, source, *[f"{p:.6f}" for p in prob]]
        self.written_now += 1

    def _original_ct(
        self, source: str, image: MetaTensor, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, tuple[float, float] | None]:
        """The scan as stored (HU, its own voxel grid), read again with the preprocessing's loader, and
        :data:`CT_WINDOW`; if that fails, the preprocessed CT inverted to the original grid (windowed, blank where
        the network input was cropped) and no window (the slice's percentiles)."""
        loaders = [t for t in getattr(self.transform, "transforms", ()) if isinstance(t, LoadImaged)]
        if loaders:
            key = loaders[0].keys[0]
            try:
                ct = loaders[0]({key: source})[key]
                if tuple(ct.shape[1:]) == tuple(shape):
                    return ct[0].detach().cpu().numpy(), CT_WINDOW  # file dtype (int16): sliced before any cast
                got = tuple(ct.shape[1:])
                logger.warning("%s reloads as %s, not %s: overlay on the inverted network input", source, got, shape)
            except Exception as exc:  # noqa: BLE001 - the overlay still gets a CT
                logger.warning("%s could not be read again (%s): overlay on the inverted network input", source, exc)
        from hirescam_ext.transforms.preprocessing import invert_to_original

        inverted = invert_to_original(image, image, self.transform, mode="linear")
        return inverted[0].detach().float().cpu().numpy(), None

    def _write_tables(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["scan", "source", *self.label_names])
        writer.writerows(self.rows[k] for k in sorted(self.rows))
        write_text_atomic(self.output_dir / "probabilities.csv", buf.getvalue())
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["source", "error"])
        writer.writerows(self.failures)
        write_text_atomic(self.output_dir / "failures.csv", buf.getvalue())
