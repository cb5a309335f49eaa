"""The shipped reference model (``bundle/models/reference.pt``): it loads through ``configs/inference.json`` with
the settings it carries, and it has learned: on scans it never saw (another dataset seed) it ranks the findings it
learned far above chance, where the same network with fresh weights does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "bundle" / "models" / "reference.pt"
REPORT = REPO / "bundle" / "models" / "reference.json"
#: findings the reference model learned on its own test split (bundle/models/reference.json: 0.92-1.00) that are
#: common enough to have positives among the unseen scans below
LEARNED = ("h_great_vessel_atherosclerosis", "heart_cardiomegaly", "heart_pericardial_effusion", "lung_emphysema")

pytestmark = pytest.mark.skipif(not REFERENCE.is_file(), reason=f"no shipped reference model at {REFERENCE}")


def _parsed_inference_config():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "inference.json"))
    parser["bundle_root"] = str(REPO)
    parser["ckpt_path"] = str(REFERENCE)
    parser["device"] = "$torch.device('cpu')"
    return parser


@pytest.fixture(scope="module")
def unseen_scans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """96 synthetic scans of seed 11, patients the reference model never saw (it was trained on seed 1), made as its
    training scans were: rendered at 2.9 mm (the demo profile's 128 x 128 x 96) and resampled to its 5.8 mm grid by
    the preprocessing it carries."""
    from hirescam_ext.synthetic.generator import generate_dataset

    out = generate_dataset(tmp_path_factory.mktemp("unseen"), profile="demo", n_scans=96, seed=11, progress=False,
                           workers=2)
    datalist = json.loads((out / "datalist.json").read_text())
    return out, [item for split in datalist.values() for item in split]


def _scores(net: torch.nn.Module, preprocessing, folder: Path, items: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = [], []
    net.eval()
    with torch.no_grad():
        for item in items:
            image = preprocessing({"image": str(folder / item["image"])})["image"]
            logits.append(net(torch.as_tensor(image)[None].float())[0].numpy())
            labels.append(item["label"])
    return np.stack(logits), np.asarray(labels)


def _learned_auroc(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from hirescam_ext.metrics.auroc import compute_multilabel_auroc

    per_label = compute_multilabel_auroc(torch.as_tensor(logits), torch.as_tensor(labels)).per_label
    return {name: float(per_label[name]) for name in LEARNED if per_label.get(name) is not None}


def test_reference_model_loads_through_the_inference_config_with_its_own_settings() -> None:
    from hirescam_ext.engines import load_network_weights

    parser = _parsed_inference_config()
    settings = parser.get_parsed_content("model_settings")
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, str(REFERENCE))
    assert settings["network_def"]["trunk"] == "small16"
    assert settings["preprocessing"]["spatial_size"] == [64, 64, 48]
    out = net.eval()(torch.zeros(1, 1, 64, 64, 48))
    assert out.shape == (1, 80) and torch.isfinite(out).all()


def test_reference_model_ranks_its_learned_findings_far_above_chance_on_unseen_scans(unseen_scans) -> None:
    from hirescam_ext.engines import load_network_weights

    folder, items = unseen_scans
    parser = _parsed_inference_config()
    net = parser.get_parsed_content("network_def")
    load_network_weights(net, str(REFERENCE))
    auroc = _learned_auroc(*_scores(net, parser.get_parsed_content("preprocessing"), folder, items))
    assert set(auroc) == set(LEARNED), f"unseen scans lack positives of {set(LEARNED) - set(auroc)}"
    assert np.mean(list(auroc.values())) >= 0.8, auroc


def test_the_same_network_with_fresh_weights_stays_near_chance(unseen_scans) -> None:
    folder, items = unseen_scans
    parser = _parsed_inference_config()
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")  # built from the settings, weights not loaded
    auroc = _learned_auroc(*_scores(net, parser.get_parsed_content("preprocessing"), folder, items))
    assert np.mean(list(auroc.values())) < 0.7, auroc


def test_reference_report_records_the_command_data_version_and_per_label_test_auroc() -> None:
    report = json.loads(REPORT.read_text())
    assert report["command"].startswith("python scripts/train_reference.py")
    assert report["generator_version"]
    per_label = report["auroc"]["test"]["per_label"]
    assert all(per_label[name] >= 0.75 for name in LEARNED), per_label


@pytest.fixture(scope="module")
def cip_inputs(tmp_path_factory: pytest.TempPathFactory, shared_datasets_dir: Path) -> Path:
    """The shared CIP chest CT (64 x 64 x 79 at 4.17 mm) and a copy resampled to 0.78 mm in-plane (342 x 342)."""
    import nibabel as nib

    source = shared_datasets_dir / "cip-copdgene-chestct" / "derived" / "ct-64.nii.gz"
    if not source.is_file():
        pytest.skip(f"shared CIP scan not found at {source}")
    folder = tmp_path_factory.mktemp("cip")
    (folder / "cip_4mm.nii.gz").symlink_to(source)
    image = nib.load(str(source))
    hu = torch.as_tensor(np.asarray(image.dataobj, dtype=np.float32))
    size = [round(s * float(z) / 0.78) for s, z in zip(image.shape[:2], image.header.get_zooms()[:2])]
    fine = torch.nn.functional.interpolate(hu[None, None], size=(*size, image.shape[2]), mode="trilinear")[0, 0]
    affine = image.affine.copy()
    affine[:3, :2] *= np.array([image.shape[0] / size[0], image.shape[1] / size[1]])
    nib.save(nib.Nifti1Image(fine.numpy().astype(np.int16), affine), str(folder / "cip_078mm.nii.gz"))
    return folder


def test_readme_inference_command_runs_the_reference_model_on_real_ct_at_two_resolutions(
    cip_inputs: Path, tmp_path: Path, bundle_tools
) -> None:
    import nibabel as nib

    out = tmp_path / "out"
    bundle_tools.run("inference.json", cwd=REPO, args=["--ckpt_path", str(REFERENCE), "--input_dir", str(cip_inputs),
                                                        "--output_dir", str(out)])  # fmt: skip
    probabilities = {}
    for name in ("cip_4mm", "cip_078mm"):
        scan = nib.load(str(cip_inputs / f"{name}.nii.gz"))
        result = json.loads((out / name / "result.json").read_text())
        assert len(result["reported"]) == 3, f"{name}: expected the top-3 abnormalities"
        for entry in result["reported"]:
            cam = nib.load(str(out / name / entry["map_nifti"]))
            assert cam.shape == scan.shape and np.allclose(cam.affine, scan.affine, atol=1e-3)
            assert entry["n_slices"] == scan.shape[2] and 0 <= entry["slice"] < scan.shape[2]
        probabilities[name] = np.array([result["probabilities"][k] for k in sorted(result["probabilities"])])
    # the same anatomy at 0.78 mm is prepared like the 4 mm scan (resampled to the model's 5.8 mm grid): the
    # probabilities agree; had the fine scan been centre-cropped instead (issue 14 item 1), they would not
    assert np.abs(probabilities["cip_4mm"] - probabilities["cip_078mm"]).max() < 0.1


def test_repository_metadata_describes_the_shipped_reference_model() -> None:
    from hirescam_ext.bundle_tools.package import eval_metrics_from_results
    from hirescam_ext.engines.model_settings import read_model_settings

    meta = json.loads((REPO / "configs" / "metadata.json").read_text())
    settings = read_model_settings(REFERENCE)
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["spatial_shape"] == settings["preprocessing"]["spatial_size"]
    assert image["spacing"] == settings["preprocessing"]["spacing"]
    # eval_metrics are the reference model's evaluation, shipped next to it, not placeholders
    assert meta["eval_metrics"] == eval_metrics_from_results(REPO / "bundle" / "models" / "reference_evaluation.json")
    assert meta["eval_metrics"]["test_mean_auroc"] is not None and "reference.pt" in meta["eval_metrics_source"]
    card = (REPO / "bundle" / "docs" / "README.md").read_text()
    assert f"| AUROC mean | {100 * meta['eval_metrics']['test_mean_auroc']:.1f} |" in card


def test_mask_loss_twin_loads_with_the_same_settings_and_records_its_recipe() -> None:
    from hirescam_ext.engines import load_network_weights
    from hirescam_ext.engines.model_settings import read_model_settings

    twin = REPO / "bundle" / "models" / "reference_mask.pt"
    settings, base = read_model_settings(twin), read_model_settings(REFERENCE)
    assert settings["network_def"] == base["network_def"] and settings["preprocessing"] == base["preprocessing"]
    assert settings["training"]["mask_loss"] is True and settings["training"]["region_mode"] == "area"
    parser = _parsed_inference_config()
    parser["ckpt_path"] = str(twin)
    load_network_weights(parser.get_parsed_content("network_def"), str(twin))
    report = json.loads((REPO / "bundle" / "models" / "reference_mask.json").read_text())
    assert "--mask-loss" in report["command"] and report["mask_loss"] is True
