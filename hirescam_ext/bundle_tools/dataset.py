"""The dataset a bundle workflow runs on: the user's ``dataset_dir``, or the synthetic benchmark generated on demand.

A dataset folder holds a ``datalist.json`` (MONAI ``load_decathlon_datalist`` layout, see docs/ARCHITECTURE.md).
When a workflow is started without a ``dataset_dir`` of its own, the bundle points at ``<bundle_root>/data/synthetic``
and :func:`ensure_dataset` generates the synthetic chest-CT benchmark there on first use.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from hirescam_ext.utils.errors import InputError

__all__ = ["DATALIST_NAME", "META_NAME", "datalist_path", "dataset_provenance", "dataset_spacing", "ensure_dataset"]

DATALIST_NAME = "datalist.json"
#: written by ``hirescam synth`` next to the data list (generator version, parameters)
META_NAME = "meta.json"
logger = logging.getLogger(__name__)


def datalist_path(dataset_dir: str | os.PathLike) -> str:
    """Path of the data list inside ``dataset_dir``."""
    return str(Path(dataset_dir) / DATALIST_NAME)


def ensure_dataset(
    dataset_dir: str | os.PathLike, synthetic_profile: str | None = "demo", seed: int = 0, **synth_kwargs
) -> str:
    """Return the data list of ``dataset_dir``, generating the synthetic benchmark there when it has none.

    Args:
        dataset_dir: a folder with ``datalist.json``; or an empty/missing folder to fill with synthetic data.
        synthetic_profile: profile of ``hirescam synth`` used when the folder has no data list; ``None`` forbids
            generation (a missing data list is then an error).
        seed: generator seed.
        synth_kwargs: passed to :func:`hirescam_ext.synthetic.generator.generate_dataset` (``n_scans``, ``shape`` ...).

    Raises:
        InputError: when the folder holds files but no data list, or generation is disabled.
    """
    folder = Path(dataset_dir)
    datalist = folder / DATALIST_NAME
    if datalist.is_file():
        return str(datalist)
    if synthetic_profile is None:
        raise InputError(folder, f"no {DATALIST_NAME} here; point dataset_dir at a prepared dataset folder")
    if folder.is_dir() and any(p for p in folder.iterdir() if not p.name.startswith(".")):
        partial = (folder / "meta.json").exists() or (folder / "images").is_dir()
        if not partial:
            raise InputError(
                folder,
                f"folder is not empty but has no {DATALIST_NAME}; refusing to write synthetic data into it "
                "(choose an empty dataset_dir, or add a data list: see docs/ARCHITECTURE.md)",
            )
    from hirescam_ext.synthetic.generator import generate_dataset

    logger.info("no %s in %s: generating the synthetic benchmark (profile %r)", DATALIST_NAME, folder, synthetic_profile)
    synth_kwargs.setdefault("workers", 0)  # one process per CPU
    generate_dataset(folder, profile=synthetic_profile, seed=seed, **synth_kwargs)
    if not datalist.is_file():
        raise InputError(folder, f"synthetic generation finished without writing {DATALIST_NAME}")
    return str(datalist)


def _read_meta(datalist: str | os.PathLike) -> dict | None:
    path = Path(datalist).parent / META_NAME
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable dataset description ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputError(path, "must hold a JSON object")
    return meta


def dataset_spacing(datalist: str | os.PathLike) -> list[float] | None:
    """Voxel spacing (mm) the dataset's scans were generated at, from the ``meta.json`` next to ``datalist``
    (synthetic data); ``None`` when the folder has no such description (a user's dataset: set ``spacing``).

    Raises:
        InputError: naming ``meta.json`` when it is unreadable or holds a bad spacing.
    """
    meta = _read_meta(datalist)
    if meta is None:
        return None
    spacing = (meta.get("parameters") or {}).get("spacing")
    if spacing is None:
        return None
    valid = isinstance(spacing, list) and len(spacing) == 3
    if not valid or not all(isinstance(v, (int, float)) and v > 0 for v in spacing):
        raise InputError(Path(datalist).parent / META_NAME, f"parameters.spacing must be 3 positive numbers: {spacing}")
    return [float(v) for v in spacing]


def dataset_provenance(datalist: str | os.PathLike) -> dict:
    """What a checkpoint records about its training data: the data list's path and, for generated data, the
    generator, its version, seed, shape, spacing, confounder (strength and shift) and atherosclerosis plaque scale
    (``meta.json``)."""
    out: dict = {"datalist": os.path.abspath(os.fspath(datalist))}
    meta = _read_meta(datalist)
    if meta is not None:
        params = meta.get("parameters") or {}
        out.update(
            generator=meta.get("generator"),
            generator_version=meta.get("generator_version"),
            generator_package_version=meta.get("package_version"),
            seed=meta.get("seed"),
            shape=params.get("shape"),
            spacing=params.get("spacing"),
            confounder_strength=params.get("confounder_strength"),
            confounder_shift=params.get("shift"),
            plaque_scale=params.get("plaque_scale", 1.0),  # folders rendered by default do not record it
        )
    return out
