"""``hirescam reproduce``: run the paper's experiments on the synthetic benchmark and write the report.

For each model of the profile and each training seed: train with ``configs/train.json`` (or take the profile's
checkpoint of that model, trained elsewhere: ``--profile reference``), evaluate with
``configs/train.json`` + ``configs/evaluate.json`` (AUROC and OrganIoU per split, label and concept group), then
run the analyses of :mod:`hirescam_ext.reproduce.analysis` on the evaluated network and the same preprocessed test
items. Finished runs are kept in ``<work_dir>/runs/<model>_seed<seed>/run.json`` and reused, so an interrupted run
resumes where it stopped. The report (``REPORT.md``, ``results.json``, ``tables/``, ``figures/``) goes to ``--out``.

``--report-from results/<profile>/results.json`` writes the report of a finished run again with this version's
tables and claim checks, without running anything (:func:`rebuild_report`); ``--index results`` writes
``results/README.md``, every finished run's claims in one table (:mod:`hirescam_ext.reproduce.index`).

Example:
    hirescam reproduce --profile tiny --out results/tiny --work-dir outputs/reproduce/tiny
    hirescam reproduce --report-from results/tiny/results.json
    hirescam reproduce --index results
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hirescam_ext.reproduce.profiles import (
    MODELS,
    PAPER_CUSTOM_CONV_KERNEL,
    PROFILES,
    ReproProfile,
    get_profile,
    parse_checkpoint_key,
    with_spatial_size,
)
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import write_json_atomic

__all__ = ["prepare_dataset", "run_one", "run_reproduction", "rebuild_report", "write_outputs", "profile_from_args",
           "describe_trained_elsewhere", "main"]

RUN_FILE = "run.json"
TRAINED_FILE = "trained.json"
#: bump when the analyses change: finished runs are then re-evaluated from their checkpoints (not retrained)
ANALYSIS_VERSION = 4


#: how the report names each optimizer of configs/train.json
_OPTIMIZER_TITLES = {"sgd": "SGD (momentum 0.99, the paper's)", "adam": "Adam", "adamw": "AdamW"}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _versions() -> dict[str, str]:
    import monai
    import numpy
    import torch

    from hirescam_ext.version import __version__

    out = {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__,
           "numpy": numpy.__version__, "hirescam_ext": __version__}
    try:
        root = Path(__file__).resolve().parents[2]
        head = ["git", "-C", str(root), "rev-parse", "--short", "HEAD"]
        out["git_commit"] = subprocess.run(head, capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "hirescam_ext", "configs"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if dirty:
            out["git_commit"] += " + uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = "unknown"
    return out


def _machine(device: str | None) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "device": device or ("cuda" if torch.cuda.is_available() else "cpu")}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    try:
        out["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return out


def prepare_dataset(profile: ReproProfile, work_dir: Path) -> Path:
    """Generate (or reuse) the synthetic benchmark of ``profile`` under ``work_dir``; a profile that names a
    ``dataset`` gets that folder, once its ``meta.json`` says it is a finished ``hirescam synth`` dataset.

    Raises:
        InputError: the named dataset is missing, unfinished or not a synthetic dataset.
    """
    from hirescam_ext.synthetic.generator import generate_dataset

    if profile.dataset is not None:
        folder = Path(profile.dataset).resolve()
        meta = _dataset_meta(folder)
        if meta is None or not meta.get("complete") or not (folder / "datalist.json").is_file():
            raise InputError(folder / "meta.json", "not a finished synthetic dataset (make one with hirescam synth "
                                                   "--out DIR, or leave --dataset out to generate the profile's)")
        return folder

    size = profile.synth_shape or profile.spatial_size
    shape = "x".join(str(s) for s in size)
    folder = work_dir / f"data_{profile.synth_profile}_{profile.n_scans}_{shape}_seed{profile.dataset_seed}"
    split: dict[str, Any] = {}
    if profile.split_fractions is not None:  # only then in the name: the folders of earlier runs keep theirs
        split["split_fractions"] = tuple(float(f) for f in profile.split_fractions)
        folder = folder.with_name(folder.name + "_split" + "-".join(f"{f:g}" for f in split["split_fractions"]))
    generate_dataset(folder, profile=profile.synth_profile, n_scans=profile.n_scans, seed=profile.dataset_seed,
                     shape=size, progress=False, workers=profile.synth_workers, **split)
    return folder


#: overrides that say where a run lives, not what it is: ignored when deciding whether a finished run can be reused
_LOCATION_KEYS = ("bundle_root", "dataset_dir", "cache_dir")


def _experiment(overrides: dict[str, Any]) -> dict[str, Any]:
    """What identifies a run: its overrides without locations and without handler switches (``...#_disabled_``:
    logging handlers that change nothing trained or measured, and whose list positions may move)."""
    return {k: v for k, v in json.loads(json.dumps(overrides)).items()
            if k not in _LOCATION_KEYS and not k.endswith("#_disabled_")}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _fit(workflow: Any, n_scans: int | None = None) -> dict[str, Any]:
    """Training-split AUROC of the evaluated network on its first ``n_scans`` training scans (``None``: all),
    preprocessed like validation (no augmentation)."""
    from hirescam_ext.reproduce import analysis, workflows

    pre = workflow.parser.get_parsed_content("validate#preprocessing")
    data = workflow.parser.get_parsed_content("train#datalist")[:n_scans]
    return analysis.training_fit(workflows.network_of(workflow), [pre(dict(d)) for d in data])


def _saved_epoch(path: Path) -> int | None:
    """The training epoch a checkpoint was saved at (its trainer state), ``None`` when it records none."""
    from hirescam_ext.engines.checkpoint import read_checkpoint

    try:
        return int(read_checkpoint(path)["trainer"]["epoch"])
    except (InputError, KeyError, TypeError, ValueError):  # a missing or older checkpoint only loses this note
        return None


def _epochs_trained(run_dir: Path) -> int | None:
    """Epochs the run trained (``last.pt``'s epoch): fewer than the profile's when a time limit stopped it."""
    return _saved_epoch(run_dir / "models" / "last.pt")


def _items(workflow: Any, key: str) -> list[dict[str, Any]]:
    dataset = workflow.parser.get_parsed_content(f"{key}#dataset")
    return [dataset[i] for i in range(len(dataset))]


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A profile's checkpoint path: as given, else relative to the repository (where the shipped models live).

    Raises:
        InputError: naming the path when neither exists.
    """
    given = Path(path)
    for candidate in (given, Path(__file__).resolve().parents[2] / given):
        if candidate.is_file():
            return candidate.resolve()
    raise InputError(given, "checkpoint not found (looked in the working directory and the repository)")


def _install_checkpoint(source: Path, run_dir: Path) -> str:
    """Copy ``source`` to ``run_dir/models/best.pt`` (where the evaluate config reads it); return its sha256."""
    from hirescam_ext.utils.io import atomic_write, sha256_file

    digest = sha256_file(source)
    target = run_dir / "models" / "best.pt"
    if not target.is_file() or sha256_file(target) != digest:
        with atomic_write(target) as tmp:
            shutil.copyfile(source, tmp)
    return digest


def _checkpoint_training(path: Path) -> dict[str, Any]:
    """What a checkpoint's model settings say about its training (``data`` and ``training``), for the record.

    Checkpoints written before the training data's confounder was part of its provenance get it from the
    ``meta.json`` beside the data list they name, when that is still there (a generated folder never changes its
    parameters).
    """
    from hirescam_ext.bundle_tools.dataset import dataset_provenance
    from hirescam_ext.engines.model_settings import read_model_settings

    settings = read_model_settings(path) or {}
    data = settings.get("data")
    if isinstance(data, dict) and data.get("datalist") and "confounder_strength" not in data:
        try:
            now = dataset_provenance(data["datalist"])
        except InputError:
            now = {}
        if now.get("confounder_strength") is not None:
            data = {**data, "confounder_strength": now["confounder_strength"],
                    "confounder_shift": now.get("confounder_shift")}
    return {"checkpoint": str(path), "data": data, "training": settings.get("training"),
            "saved_at_epoch": _saved_epoch(path)}


def describe_trained_elsewhere(record: dict[str, Any]) -> str:
    """A ``trained_elsewhere`` record in words: the epoch the checkpoint was saved at and the recipe it records.

    Example:
        >>> describe_trained_elsewhere({"saved_at_epoch": 15, "training": {"epochs": 16, "optimizer": "adam",
        ...     "lr": 0.002, "batch": 16, "schedule": "warmup_cosine", "seed": 1, "mask_loss": False}})
        'saved at epoch 15 of 16; Adam lr 0.002, batch 16, schedule warmup_cosine, mask loss off, training seed 1'
    """
    training = record.get("training") or {}
    epoch, planned = record.get("saved_at_epoch"), training.get("epochs")
    parts = [f"saved at epoch {epoch}" + (f" of {planned}" if planned else "")] if epoch is not None else []
    if training.get("optimizer") is None:
        return "; ".join(parts + ["the checkpoint does not record how it was trained"])
    recipe = [f"{_OPTIMIZER_TITLES.get(training['optimizer'], training['optimizer'])} lr {training.get('lr')}",
              f"batch {training.get('batch')}", f"schedule {training.get('schedule')}"]
    if training.get("mask_loss"):
        weight = training.get("mask_weight")
        recipe.append(f"mask loss {training.get('mask_penalize')} / {training.get('mask_pool')}, weight "
                      + (f"{weight:.3g}" if isinstance(weight, (int, float)) else str(weight))
                      + f", regions {training.get('region_mode')}")
    else:
        recipe.append("mask loss off")
    recipe.append(f"training seed {training.get('seed')}")
    return "; ".join(parts + [", ".join(recipe)])


def run_one(spec_name: str, seed: int, profile: ReproProfile, dataset_dir: Path, work_dir: Path,
            pretrained: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or take the profile's checkpoint), evaluate and analyse one (model, seed); return (and store) the run
    record."""
    from hirescam_ext.reproduce import analysis, workflows

    spec = MODELS[spec_name]
    given = profile.checkpoint_for(spec_name, seed)
    external = resolve_checkpoint(given) if given is not None else None
    run_dir = work_dir / "runs" / f"{spec_name}_seed{seed}"
    grid = workflows.region_grid(spec, profile)
    cache = work_dir / "cache" / (f"grid{'x'.join(map(str, grid))}_{profile.region_mode}{profile.area_threshold:g}"
                                  f"_{'x'.join(map(str, profile.spatial_size))}"
                                  + (f"_{'x'.join(f'{v:g}' for v in profile.spacing)}mm" if profile.spacing else ""))
    overrides = workflows.bundle_overrides(spec, profile, dataset_dir, run_dir, seed, pretrained,
                                           cache_dir=cache if profile.cache == "disk" else None)
    if external is not None:  # its network is its own: the padding it was built with
        overrides.update(workflows.checkpoint_overrides(external, grid))
    identity = dict(overrides)
    if external is not None:  # a checkpoint trained elsewhere: its content is part of what identifies the run
        identity["$checkpoint_sha256"] = _install_checkpoint(external, run_dir)
    plain = _experiment(identity)
    record_path, trained_path = run_dir / RUN_FILE, run_dir / TRAINED_FILE
    old = _read_json(record_path)
    same = old is not None and _experiment(old.get("overrides") or {}) == plain
    if old and same and old.get("complete") and old.get("analysis_version") == ANALYSIS_VERSION:
        log(f"[reproduce] {spec_name} seed {seed}: reusing {record_path}")
        if "fit" not in old:  # records written before the fit check: add it from the checkpoint
            t = time.perf_counter()
            wf = workflows.evaluation_workflow(overrides)
            old["fit"] = _fit(wf, profile.fit_scans)
            old.setdefault("seconds", {})["fit"] = time.perf_counter() - t
            write_json_atomic(record_path, old)
            del wf
        if external is not None and old.get("trained_elsewhere", {}).get("checkpoint") != str(external):
            # the same weights under another path (a copy, a file moved into bundle/models): name where they are now
            old["trained_elsewhere"] = _checkpoint_training(external)
            write_json_atomic(record_path, old)
        return {**old, "reused": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trained = _read_json(trained_path)
    if external is not None:
        log(f"[reproduce] {spec_name} seed {seed}: evaluating the checkpoint {external} (not trained here)")
        train_seconds = 0.0
    elif trained and _experiment(trained.get("overrides") or {}) == plain and (run_dir / "models" / "best.pt").is_file():
        log(f"[reproduce] {spec_name} seed {seed}: reusing the trained checkpoint")
        train_seconds = float(trained.get("seconds", 0.0))
    else:
        log(f"[reproduce] {spec_name} seed {seed}: training ({profile.max_epochs} epochs)")
        workflows.train_model(overrides)
        train_seconds = time.perf_counter() - t0
        write_json_atomic(trained_path, {"overrides": overrides, "seconds": train_seconds})
    t1 = time.perf_counter()
    log(f"[reproduce] {spec_name} seed {seed}: evaluating")
    results, wf = workflows.evaluate_model(overrides)
    t2 = time.perf_counter()
    record: dict[str, Any] = {"model": spec_name, "seed": seed, "overrides": overrides,
                              "command_train": workflows.equivalent_command(["configs/train.json"],
                                                                          workflows.training_overrides(overrides)),
                              "evaluation": results["results"]}
    if external is not None:
        record["overrides"] = identity
        record["command_train"] = None
        record["trained_elsewhere"] = _checkpoint_training(external)
        record["fit"] = None  # this dataset's training split is not what the checkpoint was trained on
    else:
        record["fit"] = _fit(wf, profile.fit_scans)
    record["epochs_trained"] = _epochs_trained(run_dir)
    if external is None:  # the learning curve of the training run (configs/train.json's TrainingHistory)
        from hirescam_ext.handlers.history import read_history

        record["training_history"] = read_history(run_dir / "outputs" / "training_history.jsonl")
    if spec.has_cam:
        network = workflows.network_of(wf).eval()
        explainers = analysis.make_explainers(network)
        test = _items(wf, "test")
        shifted = _items(wf, "test_shifted")
        size, spacing = profile.spatial_size, profile.spacing
        record["localization"] = analysis.localization(test, explainers, dataset_dir, size, spacing=spacing)
        record["confounder"] = {
            "test": analysis.confounder_attention(test, explainers, dataset_dir, size, spacing=spacing),
            "test_shifted": analysis.confounder_attention(shifted, explainers, dataset_dir, size, spacing=spacing),
        }
        record["confounder_ledger"] = {
            split: analysis.confounder_ledger(items, network, explainers["hirescam"], dataset_dir, size,
                                              area_threshold=profile.area_threshold or 0.1, spacing=spacing)
            for split, items in (("test", test), ("test_shifted", shifted))
        }
        if spec_name in profile.sanity_models:
            record["sanity"] = analysis.cascading_randomization(network, test[: profile.sanity_scans], seed=seed)
    t3 = time.perf_counter()
    record["seconds"] = {"train": train_seconds, "evaluate": t2 - t1, "analyses": t3 - t2}
    record["analysis_version"] = ANALYSIS_VERSION
    record["complete"] = True
    write_json_atomic(record_path, record)
    log(f"[reproduce] {spec_name} seed {seed}: done in {t3 - t0:.0f} s (train {train_seconds:.0f} s) "
        f"(AUROC test {results['results'].get('test', {}).get('auroc', {}).get('mean')})")
    del wf
    gc.collect()
    return record


def _log_to_stderr(message: str) -> None:
    """The command's log, and that of every run in a worker process (a caller's log need not survive pickling)."""
    print(message, file=sys.stderr, flush=True)


def _end_with_parent() -> bool:
    """Ask Linux to send this process SIGTERM when its parent ends (``prctl(PR_SET_PDEATHSIG)``); return whether it
    was set. Without it, a worker whose driver is killed (``kill <pid>``, a scheduler's SIGTERM) trains on alone."""
    import ctypes
    import signal

    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _init_run_process(threads: int, logging_disabled: int) -> None:
    """Set up a worker process of :func:`_run_in_parallel`: its share of the CPU threads, the caller's silenced
    logging (a spawned process starts with none; ``TQDM_DISABLE`` comes with the environment), and its end with the
    driver's (:func:`_end_with_parent`)."""
    import logging

    import torch

    _end_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    logging.disable(logging_disabled)


def _run_in_parallel(jobs: list[tuple[str, int]], profile: ReproProfile, dataset_dir: Path, work_dir: Path,
                     pretrained: str | None, workers: int, threads: int,
                     log: Callable[[str], None]) -> dict[tuple[str, int], dict[str, Any]]:
    """:func:`run_one` for every ``(model, seed)`` of ``jobs``, ``workers`` at a time in spawned processes of
    ``threads`` threads each; return their records by ``(model, seed)``. ``log`` gets the driver's lines; the runs
    log to stderr.

    The runs share the dataset and the disk cache (its files are written atomically, so two runs may fill it at
    once). When a run fails, the runs not yet started are cancelled, those under way finish and keep their records
    (a later invocation reuses them), and the error is raised.
    """
    import concurrent.futures as cf
    import logging
    import multiprocessing as mp

    log(f"[reproduce] {len(jobs)} runs, {workers} at a time, {threads} thread(s) each")
    done: dict[tuple[str, int], dict[str, Any]] = {}
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_run_process,
                                initargs=(threads, logging.root.manager.disable)) as pool:
        futures = {pool.submit(run_one, name, seed, profile, dataset_dir, work_dir, pretrained, _log_to_stderr):
                   (name, seed) for name, seed in jobs}
        try:
            for future in cf.as_completed(futures):
                done[futures[future]] = future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return done


def _sanity_curve(runs: dict[str, dict[int, dict[str, Any]]]) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    from hirescam_ext.reproduce.summary import summarize

    blocks: list[str] = []
    per_step: dict[str, list[list[float]]] = {"hirescam": [], "gradcam": [], "abs_hirescam": [], "abs_gradcam": []}
    for by_seed in runs.values():
        for run in by_seed.values():
            s = run.get("sanity")
            if not s:
                continue
            if not blocks:
                blocks = list(s["blocks"])
            if list(s["blocks"]) != blocks:
                continue  # another architecture's blocks: the curve averages AxialNet-style models only
            for method in per_step:
                key = "abs_spearman" if method.startswith("abs_") else "spearman"
                vals = s[method.replace("abs_", "")].get(key) or []
                while len(per_step[method]) < len(vals):
                    per_step[method].append([])
                for i, v in enumerate(vals):
                    per_step[method][i].append(v)
    return blocks, {m: [summarize(v) for v in steps] for m, steps in per_step.items()}


def _findings_text(agg: dict[str, Any], claims: list[dict[str, Any]],
                   runs: dict[str, dict[int, dict[str, Any]]] | None = None) -> list[str]:
    out = [f"{c['id']}: **{c['status']}**: {c['evidence']}" for c in claims]
    for model, by_seed in (runs or {}).items():
        for method in ("gradcam", "hirescam"):
            empty = total = 0
            for run in by_seed.values():
                conf = ((run.get("confounder") or {}).get("test") or {})
                if method in conf:
                    total += int(conf.get("n_scans", 0))
                    empty += int(conf.get("n_scans", 0)) - int(conf[method].get("n_nonzero_maps", 0))
            if total and empty / total >= 0.25:
                out.append(f"{model}: {empty} of {total} {method} maps of the confounded label (test, all seeds) are "
                           "empty after the ReLU (every cell negative), so they carry no localization at all")
    base = agg.get("axialnet") or {}
    auc = (base.get("auroc_test") or {}).get("mean")
    fit = (base.get("auroc_training") or {}).get("mean")
    if auc is not None and auc < 0.6:
        text = (f"AxialNet's mean test AUROC is only {100 * auc:.1f}% (chance 50%): with this profile's epochs and "
                "scans the classifiers are weak, so OrganIoU, localization and confounder differences mostly "
                "reflect barely trained maps; read them with the seed spread.")
        if fit is not None:
            text += (f" On its own training scans (no augmentation) the AUROC is {100 * fit:.1f}%: "
                     + ("the model under-fits (it has not learned to rank even the scans it was trained on)."
                        if fit < 0.7 else "it fits the training scans but does not generalize."))
        out.append(text)
    return out


def _dataset_meta(dataset_dir: Path) -> dict[str, Any] | None:
    """The dataset's ``meta.json`` (``None`` when it cannot be read)."""
    meta = _read_json(Path(dataset_dir) / "meta.json")
    return meta if isinstance(meta, dict) else None


def _visibility(profile: ReproProfile, generator_version: str | None) -> dict[str, Any]:
    """The findings visible at the data's grid (the learnability audit's record), or ``visible: None`` (also when
    the data's generator version is unknown). Scans rendered finer and resampled to the network grid (``synth_shape``)
    count by the audit of that rendering on that grid (e.g. ``tiny_from_demo``)."""
    from hirescam_ext.synthetic.generator import PROFILES
    from hirescam_ext.synthetic.visibility import load_visibility, visibility_key, visible_in_entry

    key = profile.synth_profile
    if profile.synth_shape is not None and tuple(profile.synth_shape) != tuple(profile.spatial_size):
        grid = [name for name, p in PROFILES.items() if tuple(p["shape"]) == tuple(profile.spatial_size)]
        key = visibility_key(grid[0], profile.synth_profile) if grid else f"{profile.synth_profile} (resampled)"
    entry = load_visibility().get(key)
    visible = None
    if generator_version is not None:
        visible = visible_in_entry(entry, profile.spatial_size, generator_version)
    entry = entry if visible is not None else {}
    return {"profile": key, "generator_version": generator_version,
            "visible": list(visible) if visible is not None else None, "oracle": entry.get("oracle"),
            "command": entry.get("command")}


def write_outputs(profile: ReproProfile, runs: dict[str, dict[int, dict[str, Any]]], out_dir: Path,
                  header: dict[str, Any], skipped: dict[str, str]) -> dict[str, Any]:
    """Aggregate ``runs``, check the claims and write ``results.json``, ``REPORT.md``, tables and figures."""
    from hirescam_ext.reproduce import report
    from hirescam_ext.reproduce.summary import aggregate, check_claims

    visibility = _visibility(profile, header.get("generator_version"))
    agg = aggregate(runs, visibility["visible"])
    # with ImageNet weights the paper's AxialNet is the pretrained one (the random-init run is its ablation)
    pair = ("axialnet_imagenet", "axialnet_imagenet_mask")
    claims = check_claims(runs, *pair) if all(m in runs for m in pair) else check_claims(runs)
    blocks, curve = _sanity_curve(runs)
    histories = {m: {s: r["training_history"] for s, r in by_seed.items() if r.get("training_history")}
                 for m, by_seed in runs.items()}
    tables = report.build_tables(agg, claims, blocks, curve, visibility, histories)
    md = report.write_tables(tables, out_dir)
    figures = report.write_figures(agg, blocks, curve, out_dir, histories)
    data = header.get("dataset_parameters") or {}
    if profile.dataset:
        source = f"the `hirescam synth` folder of --dataset ({data.get('n_scans')} scans, shape {data.get('shape')}"
    else:
        source = (f"synthetic benchmark (`hirescam synth` profile `{profile.synth_profile}`, {profile.n_scans} scans, "
                  f"shape {list(profile.synth_shape or profile.spatial_size)}")
    notes = [
        f"data: {source}"
        + (f", resampled to {list(profile.spacing)} mm and {list(profile.spatial_size)} by the bundle's preprocessing"
           if profile.spacing else "")
        + "); splits training / validation / test / test_shifted; the confounder "
        "(atherosclerosis tied to subcutaneous fat) is "
        + ("made independent of the fat" if data.get("shift") == "independent" else "reversed") + " in test_shifted",
        f"networks: trunk `{profile.trunk}`"
        + (" with AxialNet's densitometry branch (each attention cell's share of 19 HU bands beside the trunk's "
           "features; not in the paper)" if profile.density_bands else "")
        + (f", custom-conv kernel {profile.custom_conv_kernel}"
           if profile.custom_conv_kernel != PAPER_CUSTOM_CONV_KERNEL else "")
        + f", custom-conv padding {profile.custom_conv_padding}, 3D-conv padding "
        f"{profile.conv_padding}; {profile.max_epochs} epochs (early stopping as in configs/train.json), "
        f"{_OPTIMIZER_TITLES.get(profile.optimizer_name, profile.optimizer_name)} lr {profile.learning_rate}, "
        f"batch size {profile.batch_size}, validation every {profile.val_interval} epoch(s)",
        f"allowed regions G_true: mode `{profile.region_mode}`"
        + (f", area threshold {profile.area_threshold}" if profile.region_mode == "area" else "")
        + " (at coarse grids `nearest` samples one voxel per cell and leaves most organs without a cell)",
        "OrganIoU thresholds per label chosen on validation, applied to test (configs/evaluate.json); tables report "
        "the test split",
        "MaxPool: maps are the faithful HiResCAM/Grad-CAM of the max-pooled score (the paper evaluated its weights "
        "with mean pooling)",
        "3DConv maps are permuted from [X, Y, Z] to the [H, D1, D2] grid before OrganIoU and the analyses "
        "(hirescam_ext.engines.to_region_layout, applied by the bundle's evaluator)",
        "localization: pointing game on the attention grid (the maximum cell touches the lesion), mass share on "
        "the trilinearly upsampled map; chance = uniform map",
        "confounder shares: every test_shifted scan, maps of the confounded label upsampled to the volume; body "
        "wall = HU > -500 outside the three organs",
        "sanity check: blocks re-initialized from the output side (torch default initializers), raw maps "
        "(compute_raw) of each scan's present labels; a constant randomized map counts as rho = 0",
        "noise: a seed-paired difference is 'within noise' when |mean| <= 2 standard errors",
    ]
    if profile.checkpoints:
        given = {}  # (model, checkpoint) -> (seeds, record): a plain MODEL key serves every seed
        for m, by_seed in runs.items():
            for seed, run in sorted(by_seed.items()):
                record = run.get("trained_elsewhere") or {}
                if record:
                    given.setdefault((m, record.get("checkpoint")), ([], record))[0].append(seed)
        notes[1] = (f"networks: trunk `{profile.trunk}`, custom-conv padding {profile.custom_conv_padding}; not trained "
                    "by this run (the profile's epochs, optimizer and batch do not apply): "
                    + "; ".join(f"`{m}` seed {', '.join(map(str, seeds))} = `{path}` ({describe_trained_elsewhere(r)})"
                                for (m, path), (seeds, r) in given.items())
                    + " (`trained_elsewhere` of each run in results.json)")
    notes += [f"skipped {k}: {v}" for k, v in skipped.items()]
    findings = _findings_text(agg, claims, runs)
    report.write_report_md(out_dir, md, header, notes, findings, report.per_label_text(visibility))
    payload = {"header": header, "profile": profile.to_dict(), "skipped": skipped, "claims": claims,
               "visibility": visibility,
               "summary": agg, "sanity_curve": {"blocks": blocks, **curve}, "runs": {
                   m: {str(s): r for s, r in by_seed.items()} for m, by_seed in runs.items()},
               "figures": [str(Path(f).relative_to(out_dir)) for f in figures], "notes": notes}
    write_json_atomic(out_dir / "results.json", payload)
    return payload


def run_reproduction(profile: ReproProfile, out_dir: str | os.PathLike, work_dir: str | os.PathLike,
                     pretrained: str | None = None, command: str | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every (model, seed) of ``profile`` and write the report to ``out_dir``; return ``results.json``."""
    started, t0 = _now(), time.perf_counter()
    # absolute paths: the bundle joins data-list entries to dataset_dir, and relative folders compound
    out, work = Path(out_dir).resolve(), Path(work_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if pretrained is not None and not Path(pretrained).is_file():
        raise InputError(pretrained, "ImageNet ResNet-18 weights not found")
    profile.check_checkpoints()
    for path in profile.checkpoints.values():  # before minutes of data generation
        resolve_checkpoint(path)
    if profile.parallel_runs < 1:
        raise InputError(None, f"parallel runs must be >= 1, got {profile.parallel_runs}")
    machine = _machine(profile.device)
    log(f"[reproduce] profile {profile.name}: generating/reusing the dataset under {work}")
    dataset_dir = prepare_dataset(profile, work)
    skipped: dict[str, str] = {}
    jobs: list[tuple[str, int]] = []
    for name in profile.models:
        spec = MODELS[name]
        if spec.pretrained and (pretrained is None or profile.trunk != "resnet18"):
            skipped[name] = "needs ImageNet ResNet-18 weights (--pretrained) and trunk resnet18"
            continue
        jobs.extend((name, seed) for seed in profile.seeds)
    workers = min(profile.parallel_runs, len(jobs))
    threads = max(1, machine["torch_threads"] // max(workers, 1))  # the threads of one run, shared out
    if workers > 1:
        done = _run_in_parallel(jobs, profile, dataset_dir, work, pretrained, workers, threads, log)
    else:
        done = {(name, seed): run_one(name, seed, profile, dataset_dir, work, pretrained, log) for name, seed in jobs}
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for name, seed in jobs:  # the profile's order, however the runs finished
        runs.setdefault(name, {})[seed] = done[(name, seed)]
    records = [r for by_seed in runs.values() for r in by_seed.values()]
    meta = _dataset_meta(dataset_dir) or {}
    header = {
        "runs": len(records),
        "runs_reused": sum(1 for r in records if r.get("reused")),
        "run_minutes_total": sum(sum((r.get("seconds") or {}).values()) for r in records) / 60.0,
        "profile": profile.name, "command": command or f"hirescam reproduce --profile {profile.name}",
        "seeds": list(profile.seeds), "dataset_seed": profile.dataset_seed, "dataset_dir": str(dataset_dir),
        "started": started, "finished": _now(), "elapsed_min": (time.perf_counter() - t0) / 60.0,
        "parallel_runs": max(workers, 1), "threads_per_run": threads,
        "versions": _versions(), "machine": machine, "profile_text": profile.note,
        "generator_version": meta.get("generator_version"), "dataset_parameters": meta.get("parameters"),
    }
    return write_outputs(profile, runs, out, header, skipped)


def rebuild_report(results: str | os.PathLike, out_dir: str | os.PathLike,
                   command: str | None = None) -> dict[str, Any]:
    """Write the tables, figures, ``REPORT.md`` and ``results.json`` of a finished run again from its
    ``results.json``, with this version's summary and report (nothing is trained, evaluated or analysed again).

    The header keeps the run's command, times and versions and adds ``report_rebuilt`` (when, by which command and
    versions). ``out_dir`` may be the run's own folder.

    Raises:
        InputError: ``results`` is missing, unreadable or not a reproduction's ``results.json``.
    """
    path = Path(results)
    if not path.is_file():
        raise InputError(path, "results.json not found")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        profile = ReproProfile.from_dict(payload["profile"])
        runs = {m: {int(s): r for s, r in by_seed.items()} for m, by_seed in payload["runs"].items()}
        header = dict(payload["header"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"not a reproduction's results.json ({type(exc).__name__}: {exc})") from exc
    header["report_rebuilt"] = {"at": _now(), "command": command or f"hirescam reproduce --report-from {path}",
                                "versions": _versions()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_outputs(profile, runs, out, header, payload.get("skipped") or {})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hirescam reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES), help="run size (default: quick)")
    p.add_argument("--out", default=None, help="report folder (default: results/<profile>)")
    p.add_argument("--work-dir", default=None, help="data, checkpoints and per-run records "
                                                    "(default: outputs/reproduce/<profile>)")
    p.add_argument("--pretrained", default=None, help="torchvision ResNet-18 ImageNet weights (enables the ImageNet "
                                                      "rows; needs trunk resnet18)")
    p.add_argument("--models", nargs="+", default=None, choices=sorted(MODELS), help="subset of models")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--scans", type=int, default=None, help="override the profile's scan count (all four splits)")
    p.add_argument("--optimizer", default=None, choices=("sgd", "adam", "adamw"),
                   help="override the profile's optimizer (the paper's: sgd)")
    p.add_argument("--lr", type=float, default=None, help="override the profile's learning rate")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None, help="override the profile's training batch size")
    p.add_argument("--custom-conv-kernel", type=int, default=None, metavar="K",
                   help="AxialNet custom-conv kernel size (the paper's 3); 1: each attention cell's features come "
                        "from that cell alone. The padding follows: a profile that keeps the trunk's grid gets K // 2")
    p.add_argument("--spatial-size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="network input size: the same scans, resampled by the bundle to this size over the same field "
                   "of view (e.g. 128 128 96 trains quick's 2.9 mm scans as rendered: an 8 x 8 grid with its trunk)")
    p.add_argument("--num-workers", type=int, default=None, help="override the profile's data-loader workers")
    p.add_argument("--max-train-seconds", type=float, default=None,
                   help="training time budget per run: stops at the last epoch boundary that fits")
    p.add_argument("--synth-workers", type=int, default=None, help="processes generating the benchmark")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="override the profile's runs at a time (each in its own process with 1/N of the torch threads)")
    p.add_argument("--checkpoint", action="append", default=None, metavar="MODEL[@SEED]=PATH",
                   help="evaluate this checkpoint as MODEL instead of training it (repeatable; the reference profile "
                   "names the shipped bundle/models/reference*.pt); MODEL@SEED=PATH: the checkpoint of training seed "
                   "SEED, one per seed given with --seeds (e.g. --seeds 0 1 --checkpoint axialnet@0=A.pt "
                   "--checkpoint axialnet@1=B.pt)")
    p.add_argument("--dataset", default=None, metavar="DIR",
                   help="train and evaluate on this finished hirescam synth folder instead of generating the "
                   "profile's benchmark (e.g. one made with --plaque-scale); the report records its parameters")
    p.add_argument("--prepare-only", action="store_true",
                   help="generate (or check) the benchmark data and stop; later runs reuse it")
    p.add_argument("--report-from", default=None, metavar="RESULTS_JSON",
                   help="rebuild the report of a finished run from its results.json (into --out, default: that "
                   "file's folder) with this version's tables and claims; nothing is run again")
    p.add_argument("--index", default=None, metavar="RESULTS_DIR",
                   help="write RESULTS_DIR/README.md (or --out FILE): every <name>/results.json under it in one table, "
                   "the claims side by side; nothing is run")
    p.add_argument("--verbose", action="store_true", help="show the bundle's training logs")
    return p


def profile_from_args(args: argparse.Namespace) -> ReproProfile:
    """The profile named on the command line with its overrides; the note records what was overridden."""
    profile = get_profile(args.profile, models=tuple(args.models) if args.models else None,
                          seeds=tuple(args.seeds) if args.seeds else None, max_epochs=args.epochs,
                          device=args.device, n_scans=args.scans, optimizer_name=args.optimizer,
                          learning_rate=args.lr, batch_size=args.batch_size, num_workers=args.num_workers,
                          synth_workers=args.synth_workers, max_train_seconds=args.max_train_seconds,
                          parallel_runs=args.jobs)
    if args.spatial_size is not None:
        profile = with_spatial_size(profile, args.spatial_size)
    if args.custom_conv_kernel is not None:
        k = args.custom_conv_kernel
        if k < 1 or k % 2 == 0:
            raise InputError(None, f"--custom-conv-kernel {k}: expected an odd kernel size >= 1")
        # padding 1 with the paper's kernel keeps the trunk's grid (the CPU profiles); padding 0 shrinks it by two
        # cells (the paper's 288 x 288 runs): keep whichever the profile does
        keeps_grid = profile.custom_conv_padding == profile.custom_conv_kernel // 2
        profile = replace(profile, custom_conv_kernel=k,
                          custom_conv_padding=k // 2 if keeps_grid else profile.custom_conv_padding)
    changed = {"epochs": args.epochs, "models": args.models, "seeds": args.seeds, "device": args.device,
               "scans": args.scans, "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size,
               "custom_conv_kernel": args.custom_conv_kernel, "spatial_size": args.spatial_size,
               "num_workers": args.num_workers,
               "max_train_seconds": args.max_train_seconds, "jobs": args.jobs}
    if args.dataset is not None:
        profile = replace(profile, dataset=args.dataset)
        changed["dataset"] = args.dataset
    if args.models:  # the profile's checkpoints of models left out are not used
        profile = replace(profile, checkpoints={k: p for k, p in profile.checkpoints.items()
                                                if parse_checkpoint_key(k)[0] in profile.models})
    if args.checkpoint:
        given: dict[str, str] = {}
        for entry in args.checkpoint:
            key, sep, path = entry.partition("=")
            if not sep or key.partition("@")[0] not in MODELS or not path:
                raise InputError(None, f"--checkpoint {entry!r}: expected MODEL=PATH or MODEL@SEED=PATH with MODEL "
                                       f"one of {sorted(MODELS)}")
            parse_checkpoint_key(key)  # an integer seed
            given[key] = path
        profile = replace(profile, checkpoints={**profile.checkpoints, **given})
        changed["checkpoint"] = given
    changed = {k: v for k, v in changed.items() if v is not None}
    if changed:
        profile = replace(profile, note=f"{profile.note} [overridden on the command line: {changed}]")
    return profile


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hirescam reproduce``; returns the exit status.

    The bundle's progress bars (``TQDM_DISABLE``) and, without ``--verbose``, its INFO logs are silenced while it
    runs. The variable and the logging level are restored on return, so processes a caller starts later (a test
    session's subprocesses) get their progress bars back; a tqdm first imported during the call keeps what it read.
    """
    import logging

    args = _parser().parse_args(argv)
    tqdm_before, logging_before = os.environ.get("TQDM_DISABLE"), logging.root.manager.disable
    os.environ.setdefault("TQDM_DISABLE", "1")
    if not args.verbose:
        logging.disable(max(logging_before, logging.INFO))  # a caller's stricter setting stays
    try:
        return _run(args, argv)
    finally:
        if tqdm_before is None:
            os.environ.pop("TQDM_DISABLE", None)
        logging.disable(logging_before)


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The command's work (a report rebuilt, the data prepared, or a reproduction run); returns the exit status."""
    command = ("hirescam reproduce " + " ".join(sys.argv[1:] if argv is None else list(argv))).strip()
    try:
        if args.index:
            from hirescam_ext.reproduce.index import write_index

            target, rows = write_index(args.index, args.out, command=command)
            print(f"index of {len(rows)} reproduction(s): {target}")
            return 0
        if args.report_from:
            out = Path(args.out or Path(args.report_from).parent)
            payload = rebuild_report(args.report_from, out, command=command)
        else:
            profile = profile_from_args(args)
            out = Path(args.out or f"results/{profile.name}")
            work = Path(args.work_dir or f"outputs/reproduce/{profile.name}")
            if args.prepare_only:
                folder = prepare_dataset(profile, work)
                print(f"dataset: {folder}")
                return 0
            payload = run_reproduction(profile, out, work, args.pretrained, command=command,
                                       log=_log_to_stderr)
    except InputError as exc:
        print(f"hirescam reproduce: {exc}", file=sys.stderr)
        return 2
    for c in payload["claims"]:
        print(f"{c['id']}: {c['status']}")
    print(f"report: {out / 'REPORT.md'}")
    return 0
