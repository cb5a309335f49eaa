"""The dataset a bundle workflow runs on: the user's ``dataset_dir``, or the synthetic benchmark generated on demand.

A dataset folder holds a ``datalist.json`` (MONAI ``load_decathlon_datalist`` layout, see docs/ARCHITECTURE.md).
When a workflow is started without a ``dataset_dir`` of its own, the bundle points at ``<bundle_root>/data/synthetic``
and :func:`ensure_dataset` generates the synthetic chest-CT benchmark there on first use.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hirescam_ext.utils.errors import InputError

__all__ = ["DATALIST_NAME", "datalist_path", "ensure_dataset"]

DATALIST_NAME = "datalist.json"
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
