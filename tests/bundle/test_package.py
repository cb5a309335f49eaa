"""``hirescam package``: a self-contained Model Zoo bundle that passes the zoo's checks from a clean directory."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from hirescam_ext.bundle_tools.package import build_bundle, check_bundle, safe_destination
from hirescam_ext.utils.errors import InputError

TINY_SET = {"spatial_size": [64, 64, 48], "trunk": "small"}


def test_packaged_bundle_passes_metadata_net_export_and_clean_inference_checks(
    trained: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    bundle = build_bundle(tmp_path, checkpoint=trained / "models" / "best.pt", overrides=TINY_SET)
    sample = sorted((tiny_synthetic / "images").glob("*.nii.gz"))[0]
    results = check_bundle(bundle, sample_scan=sample)
    assert results["verify_metadata"] == results["verify_net_in_out"] == "ok"
    assert results["ckpt_export"].startswith("ok") and (bundle / "models" / "model.ts").is_file()
    assert results["inference"].startswith("ok")
    assert (bundle / "scripts" / "hirescam_ext" / "networks" / "axialnet.py").is_file()
    assert not list(bundle.rglob("__pycache__")) or all("scripts" in str(p) for p in bundle.rglob("__pycache__"))
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [64, 64, 48]
    assert "hirescam-ext" not in meta["required_packages_version"]
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert inference["imports"][0] == "$import scripts" and inference["trunk"] == "small"
    with zipfile.ZipFile(tmp_path / "hirescam_chest_ct.zip") as zf:
        assert "hirescam_chest_ct/configs/train.json" in zf.namelist()


def test_package_rejects_a_checkpoint_that_does_not_fit_the_network(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"best.pt: checkpoint does not match the network"):
        build_bundle(tmp_path, checkpoint=trained / "models" / "best.pt")  # default resnet18 configs
    assert not (tmp_path / "hirescam_chest_ct").exists()


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
