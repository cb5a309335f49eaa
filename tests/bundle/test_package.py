"""``hirescam package``: a self-contained Model Zoo bundle that passes the zoo's checks from a clean directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from hirescam_ext.bundle_tools.package import (
    _HIDE_INSTALLED,
    _MARK,
    BUNDLED_URL,
    EVAL_PLACEHOLDER,
    _bundle_cmd,
    _used_code,
    build_bundle,
    check_bundle,
    safe_destination,
)
from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.metrics.auroc import AUROCResult
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import sha256_file

TEST_AUROC = {name: 0.5 + 0.005 * i for i, name in enumerate(LABEL_NAMES)}


@pytest.fixture(scope="module")
def eval_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``results.json`` in the layout ``configs/evaluate.json`` writes (numbers made up)."""
    auroc = AUROCResult(mean=0.6975, median=0.6975, per_label=TEST_AUROC, n_valid=80, n_samples=30).to_dict()
    test = {"n_scans": 30, "auroc": auroc, "organ_iou": {"hirescam": {"mean": 0.215}, "gradcam": {"mean": 0.187}}}
    path = tmp_path_factory.mktemp("evaluation") / "results.json"
    path.write_text(json.dumps({"results": {"validation": test, "test": test}, "notes": []}))
    return path


@pytest.fixture(scope="module")
def packaged(trained: Path, eval_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained tiny model packaged with its evaluation results (no ``--set``: its settings travel with it)."""
    out = tmp_path_factory.mktemp("dist")
    return build_bundle(out, checkpoint=trained / "models" / "best.pt", eval_results=eval_results)


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())


def test_packaged_bundle_passes_metadata_net_export_and_inference_checks_without_the_installed_package(
    packaged: Path, tiny_synthetic: Path
) -> None:
    sample = sorted((tiny_synthetic / "images").glob("*.nii.gz"))[0]
    results = check_bundle(packaged, sample_scan=sample)
    assert results["verify_metadata"] == results["verify_net_in_out"] == "ok"
    assert results["ckpt_export"].startswith("ok (TorchScript by scripting")
    assert "from the bundle folder" in results["inference"] and "from another folder" in results["inference"]


def test_the_code_is_vendored_at_the_bundle_root_and_not_required_from_pypi(packaged: Path) -> None:
    assert (packaged / "hirescam_ext" / "networks" / "axialnet.py").is_file()
    assert not (packaged / "scripts").exists()
    assert "hirescam-ext" not in _meta(packaged)["required_packages_version"]


def test_model_pt_is_a_bare_state_dict_with_the_settings_beside_it(packaged: Path, trained: Path) -> None:
    shipped = torch.load(packaged / "models" / "model.pt", map_location="cpu", weights_only=True)
    best = torch.load(trained / "models" / "best.pt", map_location="cpu", weights_only=True)
    assert set(shipped) == set(best["model"]) and all(torch.equal(shipped[k], best["model"][k]) for k in shipped)
    settings = json.loads((packaged / "models" / "model_settings.json").read_text())
    assert settings["network_def"] == best["model_settings"]["network_def"]
    inference = json.loads((packaged / "configs" / "inference.json").read_text())
    assert inference["ckpt_path"].endswith("'/models/model.pt'")
    assert inference["model_settings_file"].endswith("'/models/model_settings.json'")


def test_model_ts_is_the_scripted_network_with_the_eager_logits(packaged: Path) -> None:
    from hirescam_ext.engines import load_model_settings, load_network_weights, network_from_settings

    models = packaged / "models"
    settings = load_model_settings(models / "model.pt", settings_file=models / "model_settings.json")
    net = network_from_settings(settings).eval()
    load_network_weights(net, models / "model.pt")
    scripted = torch.jit.load(str(models / "model.ts"))
    x = torch.rand(2, 1, *_meta(packaged)["network_data_format"]["inputs"]["image"]["spatial_shape"]) - 0.449
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)


def test_monai_bundle_load_builds_the_shipped_network_from_the_bundle_folder(packaged: Path, bundle_tools) -> None:
    # the Model Zoo's monai.bundle.load: network_def of inference.json plus models/model.pt, run in the bundle folder
    snippet = (
        f"{_HIDE_INSTALLED}\n"
        "import torch\n"
        "from monai.bundle import load\n"
        f"net = load(name={packaged.name!r}, bundle_dir={str(packaged.parent)!r}, workflow_type='inference', "
        "device='cpu').eval()\n"
        "x = torch.rand(1, 1, 64, 64, 48) - 0.449\n"
        "with torch.no_grad():\n"
        "    print('max_abs_diff', float((net(x) - torch.jit.load('models/model.ts')(x)).abs().max()))\n"
        f"print({_MARK!r} + sys.modules['hirescam_ext'].__file__)\n"
    )
    env = {k: v for k, v in bundle_tools.env().items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=packaged, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(_used_code(proc.stdout)).startswith(str(packaged.resolve()) + os.sep)
    assert float(proc.stdout.split("max_abs_diff")[1].split()[0]) < 1e-5


def test_zip_holds_every_file_of_the_bundle_folder_model_ts_included(packaged: Path) -> None:
    files = {
        f"{packaged.name}/{p.relative_to(packaged).as_posix()}"
        for p in packaged.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    with zipfile.ZipFile(packaged.parent / f"{packaged.name}.zip") as zf:
        zipped = {n for n in zf.namelist() if not n.endswith("/")}
    assert f"{packaged.name}/models/model.ts" in zipped and f"{packaged.name}/models/model.pt" in zipped
    assert files <= zipped and not any("__pycache__" in n for n in zipped)


def test_every_packaged_file_is_mode_0644_in_the_folder_and_the_zip(packaged: Path) -> None:
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in packaged.rglob("*") if p.is_file()}
    assert modes[packaged / "models" / "model.pt"] == 0o644
    assert {m for p, m in modes.items() if "__pycache__" not in p.parts} == {0o644}
    with zipfile.ZipFile(packaged.parent / f"{packaged.name}.zip") as zf:
        zip_modes = {stat.S_IMODE(i.external_attr >> 16) for i in zf.infolist() if not i.is_dir()}
    assert zip_modes == {0o644}


def test_metadata_describes_the_network_input_and_logits_of_the_shipped_model(packaged: Path, trained: Path) -> None:
    best = torch.load(trained / "models" / "best.pt", map_location="cpu", weights_only=True)["model_settings"]
    meta = _meta(packaged)
    image = meta["network_data_format"]["inputs"]["image"]
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert image["spatial_shape"] == best["preprocessing"]["spatial_size"] == [64, 64, 48]
    assert image["spacing"] == best["preprocessing"]["spacing"] and image["spacing"] is not None
    assert image["value_range"] == [-0.449, 0.551] and image["format"] != "hounsfield"
    assert pred["type"] == "logits" and pred["value_range"] == [] and "logits" in meta["pred_classes"]
    assert pred["num_channels"] == len(pred["channel_def"]) == len(best["label_names"])
    assert "isotropic" not in meta["image_classes"]


def test_eval_results_fill_eval_metrics_and_the_model_card(packaged: Path) -> None:
    meta = _meta(packaged)
    metrics = meta["eval_metrics"]
    assert metrics["test_mean_auroc"] == pytest.approx(0.6975)
    assert metrics["test_organ_iou_hirescam"] == pytest.approx(0.215)
    assert metrics["test_auroc_lung_nodule"] == pytest.approx(TEST_AUROC["lung_nodule"])
    assert "PLACEHOLDER" not in meta["eval_metrics_source"]
    card = (packaged / "docs" / "README.md").read_text()
    assert "| AUROC mean | 69.8 |" in card and "| OrganIoU hirescam | 21.5 |" in card
    assert "PLACEHOLDER" not in card and "trunk='small'" in card


def test_without_eval_results_the_metrics_are_marked_as_placeholders(trained: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path, checkpoint=trained / "models" / "best.pt", make_zip=False,
                          export_torchscript=False)  # fmt: skip
    meta = _meta(bundle)
    assert meta["eval_metrics_source"] == EVAL_PLACEHOLDER and set(meta["eval_metrics"].values()) == {None}
    assert EVAL_PLACEHOLDER in (bundle / "docs" / "README.md").read_text()


def test_unreadable_eval_results_are_an_error_naming_the_file(trained: Path, tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"notes": []}))
    with pytest.raises(InputError, match=r"results.json: has no results.test.auroc.mean"):
        build_bundle(tmp_path, checkpoint=trained / "models" / "best.pt", eval_results=bad)


def test_large_files_lists_sha256_and_size_of_the_shipped_models(packaged: Path) -> None:
    from monai.bundle import ConfigParser

    listed = {e["path"]: e for e in ConfigParser.load_config_file(packaged / "large_files.yml")["large_files"]}
    assert set(listed) == {"models/model.pt", "models/model.ts"}
    for rel, entry in listed.items():
        assert entry["hash_type"] == "sha256" and entry["hash_val"] == sha256_file(packaged / rel)
        assert entry["size_bytes"] == (packaged / rel).stat().st_size and entry["url"] == BUNDLED_URL


def test_download_large_files_verifies_the_shipped_models_and_downloads_nothing(packaged: Path, bundle_tools) -> None:
    proc = subprocess.run(
        _bundle_cmd("download_large_files", "--bundle_path", str(packaged)),
        capture_output=True, text=True, env=bundle_tools.env(), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (proc.stdout + proc.stderr).count("skipped downloading") == 2


def test_repository_metadata_declares_logits_of_the_windowed_input_and_passes_verify_metadata_offline(
    bundle_tools, tmp_path: Path
) -> None:
    configs = bundle_tools.configs
    formats = json.loads((configs / "metadata.json").read_text())["network_data_format"]
    assert formats["inputs"]["image"]["value_range"] == [-0.449, 0.551]
    assert formats["outputs"]["pred"]["type"] == "logits"
    proc = subprocess.run(
        _bundle_cmd("verify_metadata", "--meta_file", str(configs / "metadata.json"),
                    "--filepath", str(configs / "meta_schema.json")),
        capture_output=True, text=True, env=bundle_tools.env(), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "metadata is verified with no error" in proc.stdout + proc.stderr


def test_packaged_training_from_another_folder_writes_only_where_asked(
    packaged: Path, tiny_synthetic: Path, bundle_tools, tmp_path: Path
) -> None:
    def snapshot() -> dict[str, tuple[int, int]]:
        files = (p for p in packaged.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        return {str(p.relative_to(packaged)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}

    before = snapshot()
    run_dir = tmp_path / "run"
    args = [
        "run", "--config_file", str(packaged / "configs" / "train.json"), "--bundle_root", str(packaged),
        "--dataset_dir", str(tiny_synthetic), "--ckpt_dir", str(run_dir / "models"),
        "--output_dir", str(run_dir / "outputs"), "--cache_dir", str(run_dir / "cache"),
        "--train#trainer#max_epochs", "1", *bundle_tools.tiny,
    ]  # fmt: skip
    env = {k: v for k, v in bundle_tools.env().items() if k != "PYTHONPATH"}
    proc = subprocess.run(_bundle_cmd(*args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert str(_used_code(proc.stdout)).startswith(str(packaged.resolve()) + os.sep)
    assert (run_dir / "models" / "best.pt").is_file() and (run_dir / "outputs").is_dir()
    assert snapshot() == before


def test_package_rejects_a_checkpoint_without_settings_that_does_not_fit_the_network(
    trained: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "best.pt"
    torch.save(torch.load(trained / "models" / "best.pt", weights_only=True)["model"], bare)  # no settings
    with pytest.raises(InputError, match=r"best.pt: checkpoint does not match the network"):
        build_bundle(tmp_path / "dist", checkpoint=bare)  # default resnet18 configs
    assert not (tmp_path / "dist" / "hirescam_chest_ct").exists()


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/passwd", "configs/../../x"])
def test_paths_escaping_the_bundle_are_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InputError, match="escapes the bundle directory"):
        safe_destination(tmp_path, bad)


def test_symlinks_are_not_packaged(tmp_path: Path) -> None:
    from hirescam_ext.bundle_tools.package import _copy_tree

    src = tmp_path / "src"
    src.mkdir()
    (src / "link").symlink_to("/etc/hostname")
    with pytest.raises(InputError, match="symbolic links"):
        _copy_tree(src, tmp_path / "root" / "docs", tmp_path / "root")
