"""``hirescam package``: build a self-contained MONAI Model Zoo bundle directory (and zip), then check it.

Layout written (``<out>/<name>/``)::

    configs/   train.json evaluate.json inference.json multi_gpu_*.json logging.conf metadata.json meta_schema.json
    docs/      README.md (model card) data_license.txt
    models/    model.pt (weights only, when --checkpoint is given)
    scripts/   __init__.py + hirescam_ext/ (this package, vendored)
    LICENSE    large_files.yml

Why vendor the code rather than declare ``hirescam-ext`` as a required package: the Model Zoo installs only
packages from PyPI named in ``metadata.json``, and a zoo bundle must run from its own folder; the package is not on
PyPI, so the bundle carries it. ``scripts/__init__.py`` puts the vendored copy first on ``sys.path`` and every config
starts with ``$import scripts``, so ``hirescam_ext`` resolves to the bundle's copy.

Checks run on the result: ``verify_metadata`` against the shipped schema (no download), ``verify_net_in_out``
(``network_def`` with the metadata's input shape), ``ckpt_export`` to TorchScript by tracing (AxialNet's forward
is traceable; scripting is deprecated in recent PyTorch), and an inference run from a clean temporary directory
that holds only the packaged bundle and one synthetic scan.
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
from collections.abc import Sequence
from pathlib import Path

from hirescam_ext.utils.errors import InputError

__all__ = ["build_bundle", "check_bundle", "main", "safe_destination"]

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
MAX_FILE_BYTES = 25 * 1024 * 1024  # Model Zoo limit per file

SCRIPTS_INIT = '''"""Bundle code: puts the vendored hirescam_ext package first on sys.path (see docs/README.md)."""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)
'''


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


def _patch_config(text: str, name: str, overrides: dict[str, object]) -> str:
    config = json.loads(text)
    for key, value in overrides.items():
        if key in config:
            config[key] = value
    if name == "metadata.json" and "spatial_size" in overrides:
        config["network_data_format"]["inputs"]["image"]["spatial_shape"] = list(overrides["spatial_size"])
    imports = config.get("imports")
    if isinstance(imports, list) and "$import scripts" not in imports:
        config["imports"] = ["$import scripts", *imports]
    if name == "metadata.json":
        packages = dict(config.get("required_packages_version", {}))
        packages.pop("hirescam-ext", None)  # vendored under scripts/
        config["required_packages_version"] = packages
    return json.dumps(config, indent=4) + "\n"


def build_bundle(
    out_dir: str | os.PathLike,
    name: str = "hirescam_chest_ct",
    checkpoint: str | os.PathLike | None = None,
    make_zip: bool = True,
    overrides: dict[str, object] | None = None,
) -> Path:
    """Write the bundle directory ``out_dir/name`` (replacing an older one) and optionally ``name.zip``.

    Args:
        out_dir: parent folder.
        name: bundle folder name.
        checkpoint: trained checkpoint (``best.pt`` from training, or a bare state dict) to ship as
            ``models/model.pt`` (weights only).
        make_zip: also write ``out_dir/name.zip``.
        overrides: top-level config values to change in every config that has them (for a model trained with
            other settings, e.g. ``{"spatial_size": [64, 64, 48], "trunk": "small"}``); the metadata's input shape
            follows ``spatial_size``.

    Raises:
        InputError: naming the file, for a missing config, a checkpoint that does not fit the packaged
            ``network_def``, a file over the Model Zoo size limit, or a path escaping the bundle.
    """
    overrides = dict(overrides or {})
    out = Path(out_dir)
    if not name or Path(name).name != name or name in (".", ".."):
        raise InputError(name, "bundle name must be a plain folder name")
    bundle = out / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out if out.is_dir() else None))
    try:
        root = staging
        for sub in ("configs", "docs", "models", "scripts"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for file in CONFIG_FILES:
            src = REPO_ROOT / "configs" / file
            if not src.is_file():
                raise InputError(src, "missing from the repository's configs/")
            text = src.read_text(encoding="utf-8")
            if file.endswith(".json"):
                text = _patch_config(text, file, overrides)
            safe_destination(root, f"configs/{file}").write_text(text, encoding="utf-8")
        _copy_tree(REPO_ROOT / "bundle" / "docs", root / "docs", root)
        shutil.copy2(REPO_ROOT / "bundle" / "large_files.yml", safe_destination(root, "large_files.yml"))
        shutil.copy2(REPO_ROOT / "LICENSE", safe_destination(root, "LICENSE"))
        (root / "scripts" / "__init__.py").write_text(SCRIPTS_INIT, encoding="utf-8")
        _copy_tree(PACKAGE_DIR, root / "scripts" / "hirescam_ext", root)
        if checkpoint is not None:
            import torch

            from hirescam_ext.utils.io import atomic_write

            ckpt_path = Path(checkpoint)
            if not ckpt_path.is_file():
                raise InputError(ckpt_path, "checkpoint not found")
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            weights = state.get("model", state) if isinstance(state, dict) else None
            if not isinstance(weights, dict):
                raise InputError(ckpt_path, "holds no model state dict")
            with atomic_write(root / "models" / "model.pt") as tmp:
                torch.save(weights, tmp)
            try:
                _check_weights_fit(root, root / "models" / "model.pt")
            except InputError as exc:
                raise InputError(ckpt_path, f"{exc.problem} (the packaged network_def; use --set to match)") from exc
        too_big = [p for p in root.rglob("*") if p.is_file() and p.stat().st_size > MAX_FILE_BYTES]
        if too_big:
            raise InputError(too_big[0], f"larger than the Model Zoo's {MAX_FILE_BYTES // 2**20} MB limit per file")
        out.mkdir(parents=True, exist_ok=True)
        if bundle.exists():
            shutil.rmtree(bundle)
        os.replace(staging, bundle)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if make_zip:
        from hirescam_ext.utils.io import atomic_write

        with atomic_write(out / f"{name}.zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(bundle.rglob("*")):
                zf.write(path, Path(name) / path.relative_to(bundle))
    return bundle


def _check_weights_fit(root: Path, weights: Path) -> None:
    """Instantiate the packaged ``network_def`` and load the weights strictly (clear error when they differ)."""
    from monai.bundle import ConfigParser

    from hirescam_ext.engines.checkpoint import load_network_weights

    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    parser["imports"] = [i for i in parser["imports"] if i != "$import scripts"]
    load_network_weights(parser.get_parsed_content("network_def"), weights)


def _bundle_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", *args]


def check_bundle(bundle: str | os.PathLike, sample_scan: str | os.PathLike | None = None) -> dict[str, str]:
    """Run the Model Zoo checks on a packaged bundle; return ``{check: "ok" | "skipped: ..."}``.

    Raises:
        RuntimeError: naming the check that failed, with its output.
    """
    bundle = Path(bundle).resolve()
    results: dict[str, str] = {}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "2")
    meta = str(bundle / "configs" / "metadata.json")

    def run(check: str, cmd: list[str], cwd: Path) -> str:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"bundle check {check!r} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout + proc.stderr

    run(
        "verify_metadata",
        _bundle_cmd("verify_metadata", "--meta_file", meta, "--filepath",
                    str(bundle / "configs" / "meta_schema.json")),
        bundle,
    )  # fmt: skip
    results["verify_metadata"] = "ok"
    inference = str(bundle / "configs" / "inference.json")
    run(
        "verify_net_in_out",
        _bundle_cmd("verify_net_in_out", "network_def", "--meta_file", meta, "--config_file", inference,
                    "--bundle_root", str(bundle)),
        bundle,
    )  # fmt: skip
    results["verify_net_in_out"] = "ok"
    model = bundle / "models" / "model.pt"
    if not model.is_file():
        results["ckpt_export"] = "skipped: no models/model.pt (package with --checkpoint)"
        results["inference"] = "skipped: no models/model.pt"
        return results
    shape = json.loads(Path(meta).read_text())["network_data_format"]["inputs"]["image"]["spatial_shape"]
    run(
        "ckpt_export",
        _bundle_cmd("ckpt_export", "network_def", "--filepath", str(bundle / "models" / "model.ts"),
                    "--ckpt_file", str(model), "--meta_file", meta, "--config_file", inference,
                    "--bundle_root", str(bundle), "--use_trace", "True", "--input_shape", json.dumps([1, 1, *shape])),
        bundle,
    )  # fmt: skip
    results["ckpt_export"] = "ok (TorchScript by tracing: models/model.ts)"
    if sample_scan is None:
        results["inference"] = "skipped: no sample scan given"
        return results
    with tempfile.TemporaryDirectory(prefix="bundle_check_") as tmp:
        clean = Path(tmp) / bundle.name
        shutil.copytree(bundle, clean)
        (clean / "models" / "model.ts").unlink(missing_ok=True)
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        shutil.copy(sample_scan, inputs / Path(sample_scan).name)
        # run from inside the clean copy, proving that the bundle's own vendored code is what gets imported
        snippet = (
            "import scripts, hirescam_ext\n"
            f"assert hirescam_ext.__file__.startswith({str(clean)!r}), 'not the bundle copy: ' + hirescam_ext.__file__\n"
            "from monai.bundle import run\n"
            f"run(config_file='configs/inference.json', meta_file='configs/metadata.json', "
            f"logging_file='configs/logging.conf', bundle_root={str(clean)!r}, "
            f"ckpt_path='models/model.pt', input_dir={str(inputs)!r}, output_dir={str(Path(tmp) / 'out')!r})\n"
        )
        out = run("inference", [sys.executable, "-c", snippet], clean)
        written = sorted(p.name for p in (Path(tmp) / "out").rglob("*.nii.gz"))
        if not written:
            raise RuntimeError(f"bundle check 'inference' wrote no maps:\n{out[-3000:]}")
        results["inference"] = f"ok ({len(written)} maps from a clean directory)"
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hirescam package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dist", help="parent folder of the bundle (default: dist)")
    parser.add_argument("--name", default="hirescam_chest_ct", help="bundle folder name")
    parser.add_argument("--checkpoint", help="trained checkpoint to ship as models/model.pt (e.g. models/best.pt)")
    parser.add_argument("--sample-scan", help="a CT file for the clean-directory inference check")
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
        bundle = build_bundle(args.out, args.name, args.checkpoint, make_zip=not args.no_zip, overrides=overrides)
        print(f"bundle written: {bundle}")
        if not args.no_check:
            for check, result in check_bundle(bundle, args.sample_scan).items():
                print(f"  {check}: {result}")
    except (InputError, RuntimeError) as exc:
        print(f"hirescam package: {exc}", file=sys.stderr)
        return 1
    return 0
