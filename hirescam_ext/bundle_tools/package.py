"""``hirescam package``: build a self-contained MONAI Model Zoo bundle directory (and zip), then check it.

Layout written (``<out>/<name>/``, every file mode 0644, every folder 0755)::

    configs/      train.json evaluate.json inference.json multi_gpu_*.json logging.conf metadata.json meta_schema.json
    docs/         README.md (model card, with the model's settings and evaluation numbers) data_license.txt
    models/       model.pt             (bare state dict, when --checkpoint is given)
                  model_settings.json  (the checkpoint's model settings: network, preprocessing, labels)
                  model.ts             (TorchScript, scripted exactly as the Model Zoo's CI does)
    hirescam_ext/ this package, vendored
    LICENSE       large_files.yml      (sha256 and size of model.pt and model.ts)

``models/model.pt`` is a bare state dict, the Model Zoo's convention: ``ckpt_export`` without ``--key_in_ckpt`` and
``monai.bundle.load`` load it as is. Its settings travel as ``models/model_settings.json``; the packaged
``inference.json`` and ``evaluate.json`` point ``ckpt_path`` at ``models/model.pt`` and ``model_settings_file`` at
that file, so ``network_def`` and the preprocessing are the trained model's, with no ``--trunk`` or
``--spatial_size``.

Why vendor the code rather than declare ``hirescam-ext`` as a required package: the Model Zoo installs only packages
from PyPI named in ``metadata.json``, and a zoo bundle must run from its own folder; the package is not on PyPI, so the
bundle carries it at its root, as in the source repository. Python finds it when the bundle folder is on
``sys.path``: the working directory of a command run from the bundle folder, or the bundle root that MONAI's ``run``
adds before running. The inference and training configs therefore keep ``initialize`` empty and do everything in
``run`` (MONAI evaluates the configs' imports at the first resolution, before ``run`` adds the path).

``metadata.json`` is made true for the shipped model: input shape, spacing and value range of the network input
(the windowed, centred volume) from the settings, outputs declared as logits, ``eval_metrics`` from an evaluation's
``results.json`` (``--eval-results``; test AUROC per label and mean, OrganIoU) or marked as a placeholder.

Checks run on the result: ``verify_metadata`` against the shipped schema (no download), ``verify_net_in_out``, the Model
Zoo's ``ckpt_export`` command (TorchScript scripting) with the TorchScript output compared to the eager network's, and
inference runs with the installed ``hirescam_ext`` hidden, from inside a clean copy of the bundle and from another
folder with ``--bundle_root``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import read_json_file

__all__ = [
    "build_bundle",
    "check_bundle",
    "eval_metrics_from_results",
    "main",
    "safe_destination",
    "EVAL_PLACEHOLDER",
    "BUNDLED_URL",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIG_FILES = (
    "train.json",
    "evaluate.json",
    "inference.json",
    "multi_gpu_train.json",
    "multi_gpu_evaluate.json",
    "logging.conf",
    "metadata.json",
    "meta_schema.json",
)
MAX_FILE_BYTES = 25 * 1024 * 1024  # Model Zoo limit per file committed to its repository
#: the ``eval_metrics_source`` of a package built without ``--eval-results``
EVAL_PLACEHOLDER = (
    "PLACEHOLDER: not measured for this package (null values are no measurements); build it with "
    "`hirescam package --eval-results outputs/evaluation/results.json`"
)
#: ``url`` of the files that ship inside the bundle. MONAI's ``download_large_files`` skips a file that exists with
#: the listed hash, whatever the url; only a missing file is downloaded, and this url then fails with
#: "unknown url type: bundled", which names the situation: the file was removed from the bundle.
BUNDLED_URL = "bundled:ships inside the bundle zip, nothing to download"
MODEL_FILES = ("models/model.pt", "models/model.ts")
SETTINGS_FILE = "models/model_settings.json"
#: hides an installed (or editable) hirescam_ext, so that only the bundle's own copy can be imported
_HIDE_INSTALLED = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'hirescam_ext' not in getattr(f, '__module__', '')]"
)
_MARK = "HIRESCAM_EXT_FILE="


def safe_destination(root: Path, relative: str | os.PathLike) -> Path:
    """``root / relative`` resolved, refusing any path that escapes ``root`` (``..``, absolute paths, links)."""
    root = root.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise InputError(relative, f"path escapes the bundle directory {root}")
    return target


def _copy_tree(src: Path, dst: Path, root: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if path.is_symlink():
            raise InputError(path, "symbolic links are not packaged (they could point outside the bundle)")
        target = safe_destination(root, dst.relative_to(root) / rel)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def eval_metrics_from_results(path: str | os.PathLike, split: str = "test") -> dict[str, float | None]:
    """``eval_metrics`` of ``metadata.json`` from an evaluation's ``results.json`` (``configs/evaluate.json``).

    Returns ``{"<split>_mean_auroc", "<split>_median_auroc", "<split>_organ_iou_hirescam",
    "<split>_organ_iou_gradcam", "<split>_auroc_<label>" ...}`` as fractions (``None`` where the evaluation had none,
    e.g. a label without positive scans).

    Raises:
        InputError: naming the file when it is missing, not JSON, or has no ``results.<split>.auroc``.
    """
    path = Path(path)
    content = read_json_file(path, "evaluation results not found (outputs/evaluation/results.json of evaluate.json)")
    result = content.get("results", {}).get(split) if isinstance(content, dict) else None
    auroc = result.get("auroc") if isinstance(result, dict) else None
    if not isinstance(auroc, dict) or "mean" not in auroc:
        raise InputError(path, f"has no results.{split}.auroc.mean (not a results.json of configs/evaluate.json?)")

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    metrics: dict[str, float | None] = {
        f"{split}_mean_auroc": number(auroc.get("mean")),
        f"{split}_median_auroc": number(auroc.get("median")),
    }
    for method, details in sorted((result.get("organ_iou") or {}).items()):
        metrics[f"{split}_organ_iou_{method}"] = number(details.get("mean") if isinstance(details, dict) else None)
    for label, value in (auroc.get("per_label") or {}).items():
        metrics[f"{split}_auroc_{label}"] = number(value)
    return metrics


def _fmt(value: float | None, percent: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}" if percent else f"{value:g}"


def _settings_text(settings: Mapping[str, Any] | None) -> str:
    if settings is None:
        return (
            "**No model settings:** this package ships no trained model (or one without settings); the configs' "
            "defaults apply."
        )
    net = {k: v for k, v in settings["network_def"].items() if k != "_target_"}
    pre = settings["preprocessing"]
    spacing = pre.get("spacing")
    lines = [
        f"Settings of the shipped `models/model.pt` (`models/model_settings.json`): network "
        f"`{settings['network_def'].get('_target_')}` with {', '.join(f'{k}={v!r}' for k, v in net.items())}.",
        "",
        f"- input: `[1, 1, {', '.join(str(v) for v in pre.get('spatial_size') or [])}]` (X, Y, Z), resampled to "
        + (f"{' × '.join(_fmt(v, False) for v in spacing)} mm" if spacing else "nothing (scans keep their spacing)"),
    ]
    if pre.get("hu_range") is not None:
        low, high = pre["hu_range"]
        center = float(pre.get("center") or 0.0)
        lines.append(
            f"- intensities: clipped to [{_fmt(low, False)}, {_fmt(high, False)}] HU, scaled to [0, 1], "
            f"{center:+g}: the network input lies in [{center:g}, {1 + center:g}]"
        )
    lines.append(f"- attention grid (H, D1, D2): {settings.get('attention_grid')}")
    data = settings.get("data")
    if data:
        lines.append(f"- training data: {json.dumps(data, sort_keys=True)}")
    training = settings.get("training")
    if training:
        lines.append(f"- training: {json.dumps(training, sort_keys=True)}")
    return "\n".join(lines)


def _eval_text(metrics: Mapping[str, float | None] | None, source: str) -> str:
    if metrics is None:
        return f"**{EVAL_PLACEHOLDER}.**"
    split = next(iter(metrics)).split("_mean_auroc")[0]
    rows = [("AUROC mean", f"{split}_mean_auroc"), ("AUROC median", f"{split}_median_auroc")]
    rows += [(f"OrganIoU {m}", k) for k, m in ((k, k.split("_organ_iou_")[1]) for k in metrics if "_organ_iou_" in k)]
    table = ["| metric (percent) | value |", "|---|---|"] + [f"| {name} | {_fmt(metrics.get(k))} |" for name, k in rows]
    per_label = {k.split("_auroc_", 1)[1]: v for k, v in metrics.items() if "_auroc_" in k}
    valid = sorted((v, k) for k, v in per_label.items() if v is not None)
    lines = [f"Measured on the `{split}` split ({source}):", "", *table]
    if valid:
        lines += [
            "",
            f"Per-label AUROC ({len(valid)} of {len(per_label)} labels with both classes present) is in "
            "`configs/metadata.json` → `eval_metrics`; lowest: "
            + ", ".join(f"{k} {_fmt(v)}" for v, k in valid[:3])
            + "; highest: "
            + ", ".join(f"{k} {_fmt(v)}" for v, k in valid[-3:][::-1])
            + ".",
            "",
            "| label | AUROC (percent) |",
            "|---|---|",
            *(f"| {k} | {_fmt(v)} |" for v, k in sorted(valid, key=lambda pair: (-pair[0], pair[1]))),
        ]
    return "\n".join(lines)


def _fill_block(text: str, marker: str, content: str, where: Path) -> str:
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin not in text or end not in text:
        raise InputError(where, f"model card template lacks the {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + content + "\n" + end + rest.split(end, 1)[1]


def _metadata(
    config: dict[str, Any],
    settings: Mapping[str, Any] | None,
    eval_metrics: Mapping[str, float | None] | None,
    eval_source: str,
) -> dict[str, Any]:
    """``metadata.json`` made true for the shipped model (shape, spacing, value range, labels, metrics)."""
    packages = dict(config.get("required_packages_version", {}))
    packages.pop("hirescam-ext", None)  # vendored at the bundle root
    config["required_packages_version"] = packages
    image = config["network_data_format"]["inputs"]["image"]
    pred = config["network_data_format"]["outputs"]["pred"]
    if settings is not None:
        pre = settings["preprocessing"]
        if pre.get("spatial_size"):
            image["spatial_shape"] = [int(v) for v in pre["spatial_size"]]
        image["spacing"] = [float(v) for v in pre["spacing"]] if pre.get("spacing") else None
        if pre.get("hu_range") is not None:
            center = float(pre.get("center") or 0.0)
            image["format"] = "magnitude"
            image["value_range"] = [round(center, 6), round(1.0 + center, 6)]
        else:
            image["format"], image["value_range"] = "hounsfield", []
        names = settings.get("label_names") or [
            str(i) for i in range(int(settings["network_def"].get("n_classes", pred["num_channels"])))
        ]
        pred["num_channels"] = len(names)
        pred["channel_def"] = {str(i): name for i, name in enumerate(names)}
        spacing = "x".join(_fmt(v, False) for v in pre["spacing"]) + " mm" if pre.get("spacing") else "its own spacing"
        window = (
            f"clipped to [{_fmt(pre['hu_range'][0], False)}, {_fmt(pre['hu_range'][1], False)}] HU, scaled to [0, 1] "
            f"and shifted by {float(pre.get('center') or 0.0):g}"
            if pre.get("hu_range") is not None
            else "in Hounsfield units"
        )
        config["image_classes"] = (
            f"single channel CT volume, RAS, resampled to {spacing}, padded/cropped to "
            f"{'x'.join(str(v) for v in image['spatial_shape'])} voxels, {window} (the network input)"
        )
        config["label_classes"] = f"{len(names)} binary abnormality labels, in the order of channel_def"
        config["pred_classes"] = (
            f"{len(names)} logits (pre-sigmoid scores), one per abnormality; probability = sigmoid(logit)"
        )
    if eval_metrics is not None:
        config["eval_metrics"] = dict(eval_metrics)
        config["eval_metrics_source"] = eval_source
    else:
        config["eval_metrics"] = {key: None for key in config.get("eval_metrics") or {"test_mean_auroc": None}}
        config["eval_metrics_source"] = EVAL_PLACEHOLDER
    return config


def _patch_config(
    text: str, name: str, overrides: Mapping[str, object], shipped: bool, settings: Mapping[str, Any] | None
) -> dict[str, Any]:
    config = json.loads(text)
    for key, value in overrides.items():
        if key in config:
            config[key] = value
    if name == "metadata.json" and "spatial_size" in overrides:
        config["network_data_format"]["inputs"]["image"]["spatial_shape"] = list(overrides["spatial_size"])
    if name in ("inference.json", "evaluate.json") and shipped:
        config["ckpt_path"] = "$@bundle_root + '/models/model.pt'"
        if settings is not None:
            config["model_settings_file"] = f"$@bundle_root + '/{SETTINGS_FILE}'"
    return config


def _large_files(root: Path) -> str:
    from hirescam_ext.utils.io import sha256_file

    lines = [
        "# Files too large for the Model Zoo repository (25 MB per file), with their sha256 and size.",
        "# They ship inside this bundle's zip: MONAI's `download_large_files` verifies a present file against its hash",
        "# and skips it, whatever the url; the url is only used for a missing file, and this one then fails with",
        "# \"unknown url type: bundled\" (the file was removed from the bundle). A Model Zoo release that hosts the",
        "# files elsewhere replaces the url.",
        "large_files:",
    ]
    for rel in MODEL_FILES:
        path = root / rel
        if path.is_file():
            lines += [
                f'  - path: "{rel}"',
                f'    url: "{BUNDLED_URL}"',
                f'    hash_val: "{sha256_file(path)}"',
                '    hash_type: "sha256"',
                f"    size_bytes: {path.stat().st_size}",
            ]
    if len(lines) == 6:
        lines[-1] = "large_files: []  # no trained model in this package (hirescam package --checkpoint)"
    return "\n".join(lines) + "\n"


def _normalise_modes(root: Path) -> None:
    """Files 0644, folders 0755 (temporary files are created 0600; a bundle is read by its users and the zoo's CI)."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
        elif path.is_file():
            path.chmod(0o644)


def _bundle_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _run_checked(check: str, cmd: list[str], cwd: Path, timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_bundle_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bundle check {check!r} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def _bundle_cmd(*args: str) -> list[str]:
    """``python -m monai.bundle ARGS`` with an installed hirescam_ext hidden; prints the hirescam_ext it used."""
    snippet = (
        f"{_HIDE_INSTALLED}\n"
        "import runpy\n"
        f"sys.argv = ['monai.bundle', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('monai.bundle', run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        f"    print({_MARK!r} + str(getattr(sys.modules.get('hirescam_ext'), '__file__', None)))\n"
    )
    return [sys.executable, "-c", snippet]


def _used_code(output: str) -> str | None:
    marks = [line.split(_MARK, 1)[1] for line in output.splitlines() if line.startswith(_MARK)]
    return marks[-1] if marks and marks[-1] != "None" else None


def _zoo_ckpt_export(bundle: Path, filepath: str) -> str:
    """The Model Zoo CI's ``ckpt_export`` command (TorchScript scripting), run from the bundle folder."""
    return _run_checked(
        "ckpt_export",
        _bundle_cmd("ckpt_export", "network_def", "--filepath", filepath, "--ckpt_file", "models/model.pt",
                    "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json"),
        bundle,
    )  # fmt: skip


def build_bundle(
    out_dir: str | os.PathLike,
    name: str = "hirescam_chest_ct",
    checkpoint: str | os.PathLike | None = None,
    make_zip: bool = True,
    overrides: dict[str, object] | None = None,
    eval_results: str | os.PathLike | None = None,
    export_torchscript: bool = True,
) -> Path:
    """Write the bundle directory ``out_dir/name`` (replacing an older one) and optionally ``name.zip``.

    Args:
        out_dir: parent folder.
        name: bundle folder name.
        checkpoint: trained checkpoint (``best.pt`` from training, with its model settings) to ship as
            ``models/model.pt`` (weights only) and ``models/model_settings.json``.
        make_zip: also write ``out_dir/name.zip`` (every file of the folder, ``models/model.ts`` included).
        overrides: top-level config values to change in every config that has them (for a checkpoint without
            model settings, e.g. ``{"spatial_size": [64, 64, 48], "trunk": "small"}``).
        eval_results: ``results.json`` of an evaluation of ``checkpoint`` (``configs/evaluate.json``): fills
            ``eval_metrics`` and the model card's numbers; without it both are marked as placeholders.
        export_torchscript: export ``models/model.ts`` with the Model Zoo's ``ckpt_export`` command (scripting).

    Raises:
        InputError: naming the file, for a missing config, a checkpoint that does not fit the packaged
            ``network_def``, unreadable evaluation results, a file over the Model Zoo size limit that is not listed
            in ``large_files.yml``, or a path escaping the bundle.
        RuntimeError: when the TorchScript export fails (with its output).
    """
    overrides = dict(overrides or {})
    out = Path(out_dir)
    if not name or Path(name).name != name or name in (".", ".."):
        raise InputError(name, "bundle name must be a plain folder name")
    bundle = out / name
    weights: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None:
        import torch

        from hirescam_ext.engines.model_settings import MODEL_SETTINGS_KEY, to_plain

        if not ckpt_path.is_file():
            raise InputError(ckpt_path, "checkpoint not found")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        weights = state.get("model", state) if isinstance(state, dict) else None
        if not isinstance(weights, dict):
            raise InputError(ckpt_path, "holds no model state dict")
        raw = state.get(MODEL_SETTINGS_KEY) if "model" in state else None
        settings = to_plain(raw, MODEL_SETTINGS_KEY) if isinstance(raw, dict) else None
    eval_metrics = eval_metrics_from_results(eval_results) if eval_results is not None else None
    eval_source = f"test split of {Path(eval_results).name}" if eval_results is not None else ""
    if eval_metrics is not None and ckpt_path is not None:
        eval_source += f", evaluation of {ckpt_path.name}"
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        root = staging
        for sub in ("configs", "docs", "models"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for file in CONFIG_FILES:
            src = REPO_ROOT / "configs" / file
            if not src.is_file():
                raise InputError(src, "missing from the repository's configs/")
            text = src.read_text(encoding="utf-8")
            if file.endswith(".json"):
                config = _patch_config(text, file, overrides, weights is not None, settings)
                if file == "metadata.json":
                    config = _metadata(config, settings, eval_metrics, eval_source)
                text = json.dumps(config, indent=4) + "\n"
            safe_destination(root, f"configs/{file}").write_text(text, encoding="utf-8")
        _copy_tree(REPO_ROOT / "bundle" / "docs", root / "docs", root)
        card = root / "docs" / "README.md"
        text = card.read_text(encoding="utf-8")
        text = _fill_block(text, "model-settings", _settings_text(settings), card)
        text = _fill_block(text, "evaluation", _eval_text(eval_metrics, eval_source), card)
        card.write_text(text, encoding="utf-8")
        shutil.copy2(REPO_ROOT / "LICENSE", safe_destination(root, "LICENSE"))
        _copy_tree(PACKAGE_DIR, root / "hirescam_ext", root)
        if weights is not None:
            import torch

            from hirescam_ext.utils.io import atomic_write

            with atomic_write(root / "models" / "model.pt") as tmp:
                torch.save(weights, tmp)
            if settings is not None:
                (root / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
            try:
                _check_weights_fit(root, root / "models" / "model.pt")
            except InputError as exc:
                raise InputError(ckpt_path, f"{exc.problem} (the packaged network_def; use --set to match)") from exc
            if export_torchscript:
                _zoo_ckpt_export(root, "models/model.ts")
                for cache in root.rglob("__pycache__"):
                    shutil.rmtree(cache, ignore_errors=True)
        safe_destination(root, "large_files.yml").write_text(_large_files(root), encoding="utf-8")
        listed = {root / rel for rel in MODEL_FILES}
        too_big = [p for p in root.rglob("*") if p.is_file() and p.stat().st_size > MAX_FILE_BYTES and p not in listed]
        if too_big:
            raise InputError(too_big[0], f"larger than the Model Zoo's {MAX_FILE_BYTES // 2**20} MB limit per file")
        _normalise_modes(root)
        if bundle.exists():
            shutil.rmtree(bundle)
        os.replace(staging, bundle)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if make_zip:
        write_zip(bundle, out / f"{name}.zip")
    return bundle


def write_zip(bundle: Path, target: Path) -> Path:
    """Zip every file of ``bundle`` under its folder name, with the files' modes."""
    from hirescam_ext.utils.io import atomic_write

    with atomic_write(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle.rglob("*")):
            if "__pycache__" not in path.parts:
                zf.write(path, Path(bundle.name) / path.relative_to(bundle))
    os.chmod(target, 0o644)
    return target


def _check_weights_fit(root: Path, weights: Path) -> None:
    """Instantiate the packaged ``network_def`` and load the weights strictly (clear error when they differ)."""
    from monai.bundle import ConfigParser

    from hirescam_ext.engines.checkpoint import load_network_weights

    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    load_network_weights(parser.get_parsed_content("network_def"), weights)


_COMPARE = """
import json, torch
from monai.bundle import ConfigParser
parser = ConfigParser()
parser.read_config("configs/inference.json")
parser["bundle_root"] = "."
net = parser.get_parsed_content("network_def")
hirescam_ext = sys.modules["hirescam_ext"]
hirescam_ext.engines.load_network_weights(net, "models/model.pt")
net.eval()
scripted = torch.jit.load(TS_FILE)
shape = json.load(open("configs/metadata.json"))["network_data_format"]["inputs"]["image"]["spatial_shape"]
torch.manual_seed(0)
x = torch.rand(1, 1, *shape) - 0.449
with torch.no_grad():
    diff = float((scripted(x) - net(x)).abs().max())
print("max_abs_diff", diff)
print(HIRESCAM_MARK + hirescam_ext.__file__)
assert diff < 1e-4, diff
"""


def check_bundle(bundle: str | os.PathLike, sample_scan: str | os.PathLike | None = None) -> dict[str, str]:
    """Run the Model Zoo checks on a packaged bundle; return ``{check: "ok ..." | "skipped: ..."}``.

    Every command runs with ``PYTHONPATH`` unset and an installed ``hirescam_ext`` hidden, and must import the
    bundle's own copy.

    Raises:
        RuntimeError: naming the check that failed, with its output.
    """
    bundle = Path(bundle).resolve()
    results: dict[str, str] = {}

    def uses_bundle_code(check: str, output: str, root: Path) -> None:
        used = _used_code(output)
        if used is not None and not used.startswith(str(root) + os.sep):
            raise RuntimeError(f"bundle check {check!r} imported {used}, not the bundle's own hirescam_ext")

    out = _run_checked(
        "verify_metadata",
        _bundle_cmd("verify_metadata", "--meta_file", "configs/metadata.json",
                    "--filepath", "configs/meta_schema.json"),
        bundle,
    )  # fmt: skip
    results["verify_metadata"] = "ok"
    out = _run_checked(
        "verify_net_in_out",
        _bundle_cmd("verify_net_in_out", "network_def", "--meta_file", "configs/metadata.json",
                    "--config_file", "configs/inference.json"),
        bundle,
    )  # fmt: skip
    uses_bundle_code("verify_net_in_out", out, bundle)
    results["verify_net_in_out"] = "ok"
    if not (bundle / "models" / "model.pt").is_file():
        results["ckpt_export"] = "skipped: no models/model.pt (package with --checkpoint)"
        results["inference"] = "skipped: no models/model.pt"
        return results
    with tempfile.TemporaryDirectory(prefix="bundle_check_") as tmp:
        work = Path(tmp)
        clean = work / bundle.name
        shutil.copytree(bundle, clean)
        ts_file = str(work / "model.ts")
        out = _zoo_ckpt_export(clean, ts_file)
        uses_bundle_code("ckpt_export", out, clean)
        snippet = f"{_HIDE_INSTALLED}\nTS_FILE = {ts_file!r}\nHIRESCAM_MARK = {_MARK!r}\n{_COMPARE}"
        out = _run_checked("ckpt_export", [sys.executable, "-c", snippet], clean)
        uses_bundle_code("ckpt_export", out, clean)
        diff = [line.split()[1] for line in out.splitlines() if line.startswith("max_abs_diff")][0]
        results["ckpt_export"] = f"ok (TorchScript by scripting, as the Model Zoo CI; max |scripted - eager| {diff})"
        if sample_scan is None:
            results["inference"] = "skipped: no sample scan given"
            return results
        inputs = work / "inputs"
        inputs.mkdir()
        shutil.copy(sample_scan, inputs / Path(sample_scan).name)
        elsewhere = work / "elsewhere"
        elsewhere.mkdir()
        runs = {
            "from the bundle folder": (clean, ["--config_file", "configs/inference.json"]),
            "from another folder with --bundle_root": (
                elsewhere,
                ["--config_file", str(clean / "configs" / "inference.json"), "--bundle_root", str(clean)],
            ),
        }
        done = []
        for i, (how, (cwd, args)) in enumerate(runs.items()):
            output_dir = work / f"out{i}"
            out = _run_checked(
                "inference",
                _bundle_cmd("run", *args, "--input_dir", str(inputs), "--output_dir", str(output_dir)),
                cwd,
            )
            uses_bundle_code("inference", out, clean)
            if _used_code(out) is None or not sorted(output_dir.rglob("*.nii.gz")):
                raise RuntimeError(f"bundle check 'inference' ({how}) wrote no maps:\n{out[-3000:]}")
            done.append(f"{len(sorted(output_dir.rglob('*.nii.gz')))} maps {how}")
        results["inference"] = "ok (" + "; ".join(done) + ")"
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hirescam package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dist", help="parent folder of the bundle (default: dist)")
    parser.add_argument("--name", default="hirescam_chest_ct", help="bundle folder name")
    parser.add_argument("--checkpoint", help="trained checkpoint to ship as models/model.pt (e.g. models/best.pt)")
    parser.add_argument(
        "--eval-results",
        help="results.json of the checkpoint's evaluation (outputs/evaluation/results.json): fills eval_metrics and "
        "the model card's numbers (without it they are marked as placeholders)",
    )
    parser.add_argument("--sample-scan", help="a CT file for the clean-directory inference checks")
    parser.add_argument("--no-zip", action="store_true", help="do not write <name>.zip")
    parser.add_argument("--no-check", action="store_true", help="skip the checks")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a top-level config value in the packaged configs, e.g. --set 'spatial_size=[64,64,48]'",
    )
    args = parser.parse_args(argv)
    try:
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise InputError(None, f"--set expects KEY=JSON, got {item!r}")
            try:
                overrides[key] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key] = value
        bundle = build_bundle(
            args.out,
            args.name,
            args.checkpoint,
            make_zip=not args.no_zip,
            overrides=overrides,
            eval_results=args.eval_results,
        )
        print(f"bundle written: {bundle}")
        if not args.no_check:
            for check, result in check_bundle(bundle, args.sample_scan).items():
                print(f"  {check}: {result}")
    except (InputError, RuntimeError) as exc:
        print(f"hirescam package: {exc}", file=sys.stderr)
        return 1
    return 0
