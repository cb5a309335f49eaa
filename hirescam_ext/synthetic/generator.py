"""The synthetic chest-CT benchmark (``hirescam synth``): phantoms, findings with truth masks, reports, splits.

A benchmark with ground truth for *where* each abnormality is, so the HiResCAM explanation quality measures of
Draelos & Carin (HiResCAM, arXiv:2011.08891; OrganIoU, mask loss) can be checked end to end without patient data.
Each scan is an anatomical phantom in HU (:mod:`hirescam_ext.synthetic.phantom`) with abnormalities from the 80-label
set rendered where they belong (:mod:`hirescam_ext.synthetic.findings`) and a free-text report
(:mod:`hirescam_ext.synthetic.reports`).

Dataset folder (docs/ARCHITECTURE.md, "Synthetic dataset folder")::

    images/<acc>.nii.gz     int16 HU, RAS affine (diagonal spacing, origin set)
    organs/<acc>.nii.gz     uint8 organ truth (0 background, 1 right lung, 2 heart/mediastinum, 3 left lung)
    lesions/<acc>.nii.gz    uint8 [X, Y, Z, K], channel k = finding k of findings.json[acc]["findings"];
                            a scan without findings gets one all-zero channel ([X, Y, Z, 1], "lesion_channels": 0)
    reports/<acc>.txt       free-text report
    locations/<acc>.csv     truth location table: `abnormality` + the 51 LOCATION_NAMES columns, 80 rows
    labels.csv              accession + 80 label columns
    findings.json           {acc: {split, fat_thickness_mm, confounder_u, findings: [...], report_sentences: [...]}}
    datalist.json           training / validation / test / test_shifted items (paths relative to the folder)
    meta.json               generator version, seed, parameters, counts per label per split, "complete"
    .records/<acc>.json     per-scan record kept for resuming an interrupted run

Confounder knob (the paper's case study of a model that learns a shortcut): in the training, validation and test
splits, presence of ``h_great_vessel_atherosclerosis`` is tied to subcutaneous fat thickness with strength
``s``: with probability ``s`` it is present exactly when the scan's fat percentile ``u`` exceeds ``1 - p``
(``p`` = its prevalence), otherwise it is drawn independently with probability ``p``. ``test_shifted`` reverses the
rule (present when ``u < p``) or, with ``shift="independent"``, drops it.

Example:
    >>> from hirescam_ext.synthetic.generator import generate_case
    >>> case = generate_case(0, seed=0, shape=(64, 64, 48))
    >>> case.image.dtype.name, case.organs.shape, len(case.label)
    ('int16', (64, 64, 48), 80)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hirescam_ext.synthetic.findings import (
    CONFOUNDED_LABEL,
    DEFAULT_PREVALENCE,
    Finding,
    anatomy_modifiers,
    label_vector,
    location_table,
    render_findings,
    sample_findings,
)
from hirescam_ext.synthetic.phantom import build_phantom, make_grid, sample_anatomy
from hirescam_ext.synthetic.reports import ReportSentence, write_report
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES, ORGAN_LABELS
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import atomic_write, write_json_atomic, write_text_atomic

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "PROFILES",
    "SynthConfig",
    "SyntheticCase",
    "make_config",
    "plan_case",
    "generate_case",
    "generate_dataset",
    "main",
]

#: bump when the generator's output for a given seed changes.
GENERATOR_VERSION = "1.4.0"

SPLITS = ("training", "validation", "test", "test_shifted")

#: named profiles: scan count, shape and spacing (mm). Field of view ~37 x 37 x 31 cm for tiny/small/demo;
#: "paper" is the paper's 0.8 mm grid (about 4 GB of memory and tens of seconds per scan and worker).
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"n_scans": 24, "shape": (64, 64, 48), "spacing": (5.8, 5.8, 6.4)},
    "small": {"n_scans": 100, "shape": (96, 96, 72), "spacing": (3.87, 3.87, 4.27)},
    "demo": {"n_scans": 200, "shape": (128, 128, 96), "spacing": (2.9, 2.9, 3.2)},
    "paper": {"n_scans": 600, "shape": (420, 420, 405), "spacing": (0.8, 0.8, 0.8)},
}


@dataclass
class SynthConfig:
    """All parameters of a synthetic dataset (recorded in meta.json; equal configs give equal datasets).

    Attributes:
        n_scans: number of scans over all splits.
        shape: volume shape ``(X, Y, Z)``.
        spacing: voxel size (mm).
        prevalence: label -> per-scan probability (see ``findings.DEFAULT_PREVALENCE``).
        normal_fraction: probability that a scan has no finding (the confounded label excepted).
        confounder_strength: 0 = atherosclerosis independent of fat thickness, 1 = fully determined by it.
        shift: what ``test_shifted`` does to the confounder: ``"reverse"`` or ``"independent"``.
        split_fractions: fractions of scans for training, validation, test, test_shifted (in index order).
        fat_range_mm: range of the nominal subcutaneous fat thickness.
        noise_hu: Gaussian noise level outside the lungs (lungs get more, ~2.3x).
        compresslevel: gzip level of the NIfTI files.
        plaque_scale: multiplies the number and radius of atherosclerosis' calcified aortic plaques (1: 5-18 plaques
            of 2-4 mm, a lesion of about 26 voxels at 2.9 mm; 3: about 580 voxels), for testing the confounder claim
            on a larger lesion. Recorded in ``meta.json`` only when it is not 1, so earlier folders keep their
            parameters.
    """

    n_scans: int = 200
    shape: tuple[int, int, int] = (128, 128, 96)
    spacing: tuple[float, float, float] = (2.9, 2.9, 3.2)
    prevalence: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PREVALENCE))
    normal_fraction: float = 0.15
    confounder_strength: float = 0.8
    shift: str = "reverse"
    split_fractions: tuple[float, float, float, float] = (0.55, 0.15, 0.15, 0.15)
    fat_range_mm: tuple[float, float] = (4.0, 40.0)
    noise_hu: float = 12.0
    compresslevel: int = 1
    plaque_scale: float = 1.0

    def validate(self, where: str | None = None) -> SynthConfig:
        """Raise :class:`InputError` (naming ``where``) on an inconsistent parameter."""

        def bad(problem: str) -> InputError:
            return InputError(where, problem)

        if self.n_scans < 1:
            raise bad(f"n_scans must be >= 1, got {self.n_scans}")
        if len(self.shape) != 3 or min(self.shape) < 16:
            raise bad(f"shape must be 3 integers >= 16, got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise bad(f"spacing must be 3 positive numbers (mm), got {self.spacing}")
        fov = np.asarray(self.shape) * np.asarray(self.spacing)
        if fov[0] < 250 or fov[1] < 250 or fov[2] < 200:
            raise bad(f"field of view {fov.round(0).tolist()} mm is too small for a chest (need >= 250x250x200 mm)")
        if not 0.0 <= self.confounder_strength <= 1.0:
            raise bad(f"confounder_strength must be in [0, 1], got {self.confounder_strength}")
        if self.shift not in ("reverse", "independent"):
            raise bad(f"shift must be 'reverse' or 'independent', got {self.shift!r}")
        if len(self.split_fractions) != 4 or min(self.split_fractions) < 0 or sum(self.split_fractions) <= 0:
            raise bad(f"split_fractions must be 4 non-negative numbers, got {self.split_fractions}")
        unknown = sorted(set(self.prevalence) - set(DEFAULT_PREVALENCE))
        if unknown:
            raise bad(f"prevalence names labels the generator cannot render: {unknown}")
        if any(not 0.0 <= v <= 1.0 for v in self.prevalence.values()):
            raise bad("prevalence values must be probabilities in [0, 1]")
        if not 0.0 <= self.normal_fraction <= 1.0:
            raise bad(f"normal_fraction must be in [0, 1], got {self.normal_fraction}")
        if not 0.0 < self.plaque_scale <= 5.0:
            raise bad(f"plaque_scale must be in (0, 5], got {self.plaque_scale}")
        return self

    def split_counts(self) -> dict[str, int]:
        """Scans per split (rounding remainder to test_shifted; no requested split left empty if avoidable)."""
        fr = np.asarray(self.split_fractions, float)
        fr = fr / fr.sum()
        counts = [int(round(self.n_scans * f)) for f in fr[:3]]
        while sum(counts) > self.n_scans:
            counts[int(np.argmax(counts))] -= 1
        counts.append(self.n_scans - sum(counts))
        # every split with a non-zero fraction gets a scan when there are enough scans
        for k in range(4):
            if counts[k] == 0 and fr[k] > 0 and max(counts) > 1:
                counts[int(np.argmax(counts))] -= 1
                counts[k] += 1
        return dict(zip(SPLITS, counts))

    def split_of(self, index: int) -> str:
        """Split of scan ``index`` (contiguous blocks in split order)."""
        start = 0
        for name, n in self.split_counts().items():
            if index < start + n:
                return name
            start += n
        return SPLITS[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = [int(v) for v in self.shape]
        d["spacing"] = [float(v) for v in self.spacing]
        d["split_fractions"] = [float(v) for v in self.split_fractions]
        d["fat_range_mm"] = [float(v) for v in self.fat_range_mm]
        if self.plaque_scale == 1.0:  # the default rendering: the parameters of folders made before the field
            del d["plaque_scale"]
        else:
            d["plaque_scale"] = float(self.plaque_scale)
        return d


def make_config(
    profile: str = "demo",
    n_scans: int | None = None,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    **overrides: Any,
) -> SynthConfig:
    """Config of a named profile with overrides.

    A shape without spacing keeps the profile's field of view (spacing = FOV / shape); a spacing without shape
    keeps it too (shape = FOV / spacing).
    """
    if profile not in PROFILES:
        raise InputError(None, f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    prof = PROFILES[profile]
    fov = np.asarray(prof["shape"], float) * np.asarray(prof["spacing"], float)
    if shape is not None and spacing is None:
        spacing = tuple(float(round(f / s, 4)) for f, s in zip(fov, shape))
    elif spacing is not None and shape is None:
        shape = tuple(int(round(f / s)) for f, s in zip(fov, spacing))
    cfg = SynthConfig(
        n_scans=int(n_scans if n_scans is not None else prof["n_scans"]),
        shape=tuple(int(v) for v in (shape if shape is not None else prof["shape"])),
        spacing=tuple(float(v) for v in (spacing if spacing is not None else prof["spacing"])),
    )
    for key, value in overrides.items():
        if value is None:
            continue
        if not hasattr(cfg, key):
            raise InputError(None, f"unknown synthetic-dataset parameter {key!r}")
        setattr(cfg, key, value)
    return cfg


@dataclass
class SyntheticCase:
    """One generated scan (no I/O).

    Attributes:
        accession: scan id (``syn<index>``).
        index: scan index in the dataset.
        split: ``training``, ``validation``, ``test`` or ``test_shifted``.
        image: int16 HU ``[X, Y, Z]`` (RAS index order).
        organs: uint8 organ truth map ``[X, Y, Z]``.
        lesions: uint8 ``[X, Y, Z, K]`` one channel per finding (``K = len(findings)``, may be 0).
        findings: the findings, in channel order.
        report: free-text report.
        sentences: sentence records of the report.
        label: 80 ints in ``LABEL_NAMES`` order.
        locations: uint8 ``[80, 51]`` truth location table.
        affine: 4x4 RAS affine.
        fat_mm: nominal subcutaneous fat thickness (the confounder).
        confounder_u: fat percentile in ``[0, 1)``.
        anatomy: sampled patient parameters and landmarks (JSON-able).
    """

    accession: str
    index: int
    split: str
    image: np.ndarray
    organs: np.ndarray
    lesions: np.ndarray
    findings: list[Finding]
    report: str
    sentences: list[ReportSentence]
    label: list[int]
    locations: np.ndarray
    affine: np.ndarray
    fat_mm: float
    confounder_u: float
    anatomy: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The scan's findings.json entry."""
        keep = ("body_a", "body_b", "body_cx", "body_cy", "lung_height", "heart_scale", "contrast", "muscle_mm")
        return {
            "accession": self.accession,
            "index": self.index,
            "split": self.split,
            "fat_thickness_mm": round(float(self.fat_mm), 3),
            "confounder_u": round(float(self.confounder_u), 6),
            "patient": {k: _jsonable(self.anatomy[k]) for k in keep if k in self.anatomy},
            "lesion_channels": len(self.findings),
            "findings": [_jsonable(f.to_dict()) for f in self.findings],
            "label": list(self.label),
            "report_sentences": [s.to_dict() for s in self.sentences],
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return round(float(obj), 4)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def accession_of(index: int) -> str:
    return f"syn{index:05d}"


def plan_case(
    index: int, seed: int, config: SynthConfig
) -> tuple[np.random.Generator, str, float, float, list[Finding]]:
    """Draw what a case will contain (split, fat percentile/thickness, findings) without rendering.

    Returns ``(rng, split, confounder_u, fat_mm, findings)``; ``rng`` continues the case's random stream.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    split = config.split_of(index)
    u = float(rng.random())
    lo, hi = config.fat_range_mm
    fat_mm = lo + u * (hi - lo)
    p = float(config.prevalence.get(CONFOUNDED_LABEL, 0.0))
    tie, own = float(rng.random()), float(rng.random())
    if split == "test_shifted":
        determined = (u < p) if config.shift == "reverse" else None
    else:
        determined = u > 1.0 - p
    if determined is not None and tie < config.confounder_strength:
        athero = bool(determined)
    else:
        athero = own < p
    findings = sample_findings(rng, config.prevalence, config.normal_fraction, atherosclerosis=athero)
    return rng, split, u, fat_mm, findings


def generate_case(
    index: int,
    seed: int,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    config: SynthConfig | None = None,
) -> SyntheticCase:
    """Generate scan ``index`` of the dataset with ``seed`` (deterministic; no I/O).

    Args:
        index: scan index (decides the split through ``config``).
        seed: dataset seed.
        shape: volume shape; ``None`` keeps ``config.shape`` (demo profile: ``(128, 128, 96)``).
        spacing: voxel size (mm); ``None`` keeps the demo field of view for a given shape, else
            ``config.spacing``.
        config: dataset parameters; default: the demo profile.
    """
    if config is None:
        config = make_config("demo", shape=shape, spacing=spacing)
    elif shape is not None or spacing is not None:
        cfg = make_config("demo", shape=shape or (None if spacing is not None else config.shape), spacing=spacing)
        config = SynthConfig(**{**asdict(config), "shape": cfg.shape, "spacing": cfg.spacing})
    config.validate()
    rng, split, u, fat_mm, findings = plan_case(index, seed, config)
    grid = make_grid(config.shape, config.spacing)
    anatomy = sample_anatomy(rng, grid, fat_mm=fat_mm, **anatomy_modifiers(findings, rng))
    ph = build_phantom(grid, anatomy, rng)
    masks = render_findings(ph, findings, rng, plaque_scale=config.plaque_scale)
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    noise *= ph.noise_sigma * np.float32(config.noise_hu / 12.0)
    hu = ph.hu + noise
    np.clip(hu, -1024.0, 3071.0, out=hu)
    image = np.rint(hu).astype(np.int16)
    if masks:
        lesions = np.stack(masks, axis=-1).astype(np.uint8)
    else:
        lesions = np.zeros((*grid.shape, 0), np.uint8)
    report, sentences = write_report(findings, rng, contrast=bool(anatomy["contrast"]))
    return SyntheticCase(
        accession=accession_of(index),
        index=int(index),
        split=split,
        image=image,
        organs=ph.organs,
        lesions=lesions,
        findings=findings,
        report=report,
        sentences=sentences,
        label=label_vector(findings),
        locations=location_table(findings),
        affine=grid.affine,
        fat_mm=fat_mm,
        confounder_u=u,
        anatomy=anatomy.params,
    )


# ----------------------------------------------------------------------------------------------------- I/O
_FOLDERS = ("images", "organs", "lesions", "reports", "locations")


def _paths(out: Path, acc: str) -> dict[str, Path]:
    return {
        "image": out / "images" / f"{acc}.nii.gz",
        "organs": out / "organs" / f"{acc}.nii.gz",
        "lesions": out / "lesions" / f"{acc}.nii.gz",
        "report": out / "reports" / f"{acc}.txt",
        "locations": out / "locations" / f"{acc}.csv",
        "record": out / ".records" / f"{acc}.json",
    }


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(np.asfortranarray(array), affine)  # NIfTI is Fortran-ordered: one copy, fast writes
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_write(path) as tmp:
        nib.save(img, tmp)


def _location_csv(table: np.ndarray) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["abnormality", *LOCATION_NAMES])
    for name, row in zip(LABEL_NAMES, table):
        w.writerow([name, *map(int, row)])
    return buf.getvalue()


def _write_case(out: Path, case: SyntheticCase) -> dict[str, Any]:
    paths = _paths(out, case.accession)
    lesions = case.lesions if case.lesions.shape[-1] else np.zeros((*case.image.shape, 1), np.uint8)
    _save_nifti(paths["image"], case.image, case.affine)
    _save_nifti(paths["organs"], case.organs.astype(np.uint8), case.affine)
    _save_nifti(paths["lesions"], lesions, case.affine)
    write_text_atomic(paths["report"], case.report)
    write_text_atomic(paths["locations"], _location_csv(case.locations))
    record = case.record()
    write_json_atomic(paths["record"], record)  # last: its presence marks the scan complete
    return record


def _worker(args: tuple[str, int, int, dict[str, Any]]) -> dict[str, Any]:
    out, index, seed, cfg = args
    config = SynthConfig(**{**cfg, "shape": tuple(cfg["shape"]), "spacing": tuple(cfg["spacing"])})
    out_p = Path(out)
    paths = _paths(out_p, accession_of(index))
    if all(p.exists() for p in paths.values()):
        try:
            return json.loads(paths["record"].read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            pass  # damaged record: regenerate the scan
    case = generate_case(index, seed, shape=None, config=config)
    return _write_case(out_p, case)


def _params(config: SynthConfig, seed: int, profile: str) -> dict[str, Any]:
    return {"profile": profile, "seed": int(seed), **config.to_dict()}


def generate_dataset(
    out_dir: str | os.PathLike,
    profile: str = "demo",
    n_scans: int | None = None,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    confounder_strength: float | None = None,
    workers: int = 1,
    progress: bool = True,
    **overrides: Any,
) -> Path:
    """Generate (or resume) a synthetic dataset folder; return its path.

    Args:
        out_dir: the dataset folder (created).
        profile: ``"tiny"``, ``"small"``, ``"demo"`` or ``"paper"`` (scan count, shape, spacing).
        n_scans, shape, spacing: override the profile.
        seed: dataset seed (same seed and parameters -> identical arrays).
        confounder_strength: 0..1 (default 0.8), see the module docstring.
        workers: processes (1 = in this process; 0 = one per CPU, at most 8).
        progress: show a tqdm progress bar.
        overrides: other :class:`SynthConfig` fields (``prevalence``, ``normal_fraction``, ``shift``...).

    Raises:
        InputError: bad parameters, or ``out_dir`` holds a dataset made with other parameters.
    """
    out = Path(out_dir)
    config = make_config(profile, n_scans=n_scans, shape=shape, spacing=spacing,
                         confounder_strength=confounder_strength, **overrides)
    config.validate(out)
    params = _params(config, seed, profile)
    meta_path = out / "meta.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(meta_path, f"unreadable meta.json ({exc}); delete the folder or choose another --out")
        if old.get("parameters") != _jsonable(params) or old.get("generator_version") != GENERATOR_VERSION:
            raise InputError(
                meta_path,
                "the folder holds a synthetic dataset made with other parameters or generator version; "
                "choose another --out or delete it",
            )
        if old.get("complete") and all((out / p).exists() for p in ("datalist.json", "labels.csv", "findings.json")):
            accs = [accession_of(i) for i in range(config.n_scans)]
            if all(all(p.exists() for p in _paths(out, a).values()) for a in accs):
                return out
    elif out.exists() and any(out.iterdir()):
        if not (out / ".records").is_dir():
            raise InputError(out, "folder exists, is not empty and is not a synthetic dataset; choose another --out")
    for sub in _FOLDERS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta_path, _meta(params, None, complete=False))

    cfg_dict = config.to_dict()
    jobs = [(str(out), i, int(seed), cfg_dict) for i in range(config.n_scans)]
    if workers == 0:
        workers = max(1, min(8, os.cpu_count() or 1))
    records: dict[int, dict[str, Any]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="synth", unit="scan", disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                rec = _worker(job)
                records[rec["index"]] = rec
                bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # fork keeps the parent's imports (spawn would re-import numpy, nibabel and the package per worker)
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_limit_threads) as pool:
                for rec in pool.map(_worker, jobs, chunksize=2):
                    records[rec["index"]] = rec
                    bar.update(1)
    finally:
        bar.close()
    ordered = [records[i] for i in range(config.n_scans)]
    _write_tables(out, ordered, params)
    return out


def _limit_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _meta(params: dict[str, Any], counts: dict[str, Any] | None, complete: bool) -> dict[str, Any]:
    from hirescam_ext.version import __version__

    return {
        "generator": "hirescam_ext.synthetic.generator",
        "generator_version": GENERATOR_VERSION,
        "package_version": __version__,
        "seed": params["seed"],
        "parameters": _jsonable(params),
        "complete": complete,
        "counts": counts,
        "conventions": {
            "orientation": "RAS index order [X, Y, Z]: axis 0 toward patient right, 1 anterior, 2 superior",
            "organ_labels": dict(ORGAN_LABELS),
            "lungs": "filled masks: vessels, intrapulmonary airways, lesions, pleural fluid and air are lung",
            "airways": "trachea and main bronchi outside the lungs are heart/mediastinum (2) inside the lungs' "
            "cranio-caudal extent, background above it",
            "lesions": "uint8 [X, Y, Z, K], channel k = findings[k]; K = 0 is stored as one zero channel",
            "pacemaker_mask": "lead inside heart/mediastinum only; the chest-wall generator is not in the mask",
            "confounder": f"{CONFOUNDED_LABEL} tied to fat_thickness_mm in training/validation/test; "
            "test_shifted reverses (or removes) the tie",
        },
    }


def _write_tables(out: Path, records: list[dict[str, Any]], params: dict[str, Any]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["accession", *LABEL_NAMES])
    for rec in records:
        w.writerow([rec["accession"], *rec["label"]])
    write_text_atomic(out / "labels.csv", buf.getvalue())
    write_json_atomic(out / "findings.json", {rec["accession"]: rec for rec in records})
    datalist: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    counts: dict[str, dict[str, Any]] = {s: {"scans": 0, "labels": {}} for s in SPLITS}
    for rec in records:
        acc = rec["accession"]
        datalist[rec["split"]].append(
            {
                "image": f"images/{acc}.nii.gz",
                "organs": f"organs/{acc}.nii.gz",
                "lesions": f"lesions/{acc}.nii.gz",
                "locations": f"locations/{acc}.csv",
                "report": f"reports/{acc}.txt",
                "label": rec["label"],
                "accession": acc,
            }
        )
        c = counts[rec["split"]]
        c["scans"] += 1
        for name, v in zip(LABEL_NAMES, rec["label"]):
            if v:
                c["labels"][name] = c["labels"].get(name, 0) + 1
    write_json_atomic(out / "datalist.json", datalist)
    write_json_atomic(out / "meta.json", _meta(params, counts, complete=True))


# ----------------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hirescam synth",
        description="Generate the synthetic chest-CT benchmark (phantoms, truth masks, reports, splits).",
    )
    p.add_argument("--out", required=True, help="dataset folder to create (or resume)")
    p.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="size preset (default: demo)")
    p.add_argument("--n-scans", type=int, default=None, help="number of scans (default: the profile's)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None, help="volume shape")
    p.add_argument("--spacing", type=float, nargs="+", default=None,
                   help="voxel size in mm: one value (isotropic) or three (X Y Z)")
    p.add_argument("--confounder-strength", type=float, default=None,
                   help="0 = atherosclerosis independent of fat thickness, 1 = determined by it (default 0.8)")
    p.add_argument("--shift", choices=("reverse", "independent"), default=None,
                   help="what test_shifted does to the confounder (default: reverse)")
    p.add_argument("--split-fractions", type=float, nargs=4, metavar=("TRAIN", "VAL", "TEST", "SHIFTED"),
                   default=None, help="shares of the scans in training, validation, test and test_shifted, "
                   "normalized to sum 1; 0 leaves a split empty (default: 0.55 0.15 0.15 0.15)")
    p.add_argument("--plaque-scale", type=float, default=None,
                   help="multiplies the number and radius of atherosclerosis' calcified aortic plaques (default 1)")
    p.add_argument("--workers", type=int, default=0, help="processes (default 0 = one per CPU, at most 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``hirescam synth``: generate the synthetic dataset; returns the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    spacing = args.spacing
    if spacing is not None:
        if len(spacing) == 1:
            spacing = spacing * 3
        elif len(spacing) != 3:
            print("hirescam synth: --spacing takes one or three values", file=sys.stderr)
            return 2
    try:
        out = generate_dataset(
            args.out,
            profile=args.profile,
            n_scans=args.n_scans,
            seed=args.seed,
            shape=args.shape,
            spacing=spacing,
            confounder_strength=args.confounder_strength,
            workers=args.workers,
            progress=not args.no_progress,
            shift=args.shift,
            split_fractions=None if args.split_fractions is None else tuple(args.split_fractions),
            plaque_scale=args.plaque_scale,
        )
    except InputError as exc:
        print(f"hirescam synth: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
