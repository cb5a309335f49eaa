"""Specification of the synthetic benchmark (hirescam_ext.synthetic.generator): cases, dataset folder, confounder, CLI."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.synthetic.findings import CONFOUNDED_LABEL, DEFAULT_PREVALENCE, SUPPORTED_LABELS
from hirescam_ext.synthetic.generator import SPLITS, generate_case, generate_dataset, main, make_config, plan_case
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES, label_table
from hirescam_ext.utils.errors import InputError

TINY = (64, 64, 48)
PLEURAL = ("lung_pleural_effusion", "lung_pneumothorax")  # located by side only


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return generate_dataset(out, profile="tiny", seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def rich_cases():
    """Cases with every supported abnormality likely present (coverage of all renderers)."""
    cfg = make_config("tiny", prevalence={k: 0.55 for k in DEFAULT_PREVALENCE}, normal_fraction=0.0)
    return [generate_case(i, seed=1, config=cfg) for i in range(18)]


def _allowed_organs(finding: dict | object) -> set[int]:
    label = finding["label"] if isinstance(finding, dict) else finding.label
    side = finding["side"] if isinstance(finding, dict) else finding.side
    if label_table()[label]["allowed_region"] == "heart_mediastinum":
        return {2}
    return {"right": {1}, "left": {3}, "both": {1, 3}}[side]


def test_generator_supports_at_least_14_abnormalities_from_the_label_set():
    assert len(SUPPORTED_LABELS) >= 14
    assert set(SUPPORTED_LABELS) <= set(LABEL_NAMES)


def test_same_seed_gives_identical_arrays():
    a = generate_case(5, seed=42, shape=TINY)
    b = generate_case(5, seed=42, shape=TINY)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.organs, b.organs)
    assert np.array_equal(a.lesions, b.lesions) and a.report == b.report


def test_other_seed_gives_another_scan():
    a = generate_case(5, seed=42, shape=TINY)
    c = generate_case(5, seed=43, shape=TINY)
    assert not np.array_equal(a.image, c.image)


def test_case_arrays_have_the_contract_types_and_shapes():
    case = generate_case(0, seed=0, shape=TINY)
    assert case.image.dtype == np.int16 and case.image.shape == TINY
    assert case.organs.dtype == np.uint8 and case.organs.shape == TINY
    assert case.lesions.dtype == np.uint8 and case.lesions.shape == (*TINY, len(case.findings))
    assert len(case.label) == 80 and case.locations.shape == (80, len(LOCATION_NAMES))


def test_all_supported_abnormalities_are_rendered(rich_cases):
    seen = {f.label for case in rich_cases for f in case.findings}
    assert seen == set(SUPPORTED_LABELS)


def test_every_finding_has_a_nonempty_mask_inside_its_allowed_organ(rich_cases):
    for case in rich_cases:
        for k, f in enumerate(case.findings):
            mask = case.lesions[..., k] > 0
            assert mask.any(), f"{case.accession}: empty mask for {f.label}"
            organs = set(np.unique(case.organs[mask]).tolist())
            assert organs <= _allowed_organs(f), f"{case.accession}: {f.label} in organs {organs}"


def test_bilateral_lung_findings_reach_both_lungs(rich_cases):
    for case in rich_cases:
        for k, f in enumerate(case.findings):
            if f.side == "both":
                organs = set(np.unique(case.organs[case.lesions[..., k] > 0]).tolist())
                assert organs == {1, 3}, f.label


def test_lesions_change_the_image_where_rendered(rich_cases):
    for case in rich_cases:
        for k, f in enumerate(case.findings):
            mask = case.lesions[..., k] > 0
            vals = case.image[mask].astype(float)
            if f.label == "lung_emphysema":
                assert vals.mean() < -900
            elif f.label in ("lung_nodule", "lung_mass", "lung_consolidation", "lung_pleural_effusion"):
                assert vals.mean() > -300, f.label
            elif f.label in ("heart_pacemaker_or_defib",):
                assert vals.max() > 2000


def test_label_vector_and_location_table_match_the_findings(rich_cases):
    for case in rich_cases:
        present = {lab for f in case.findings for lab in f.labels}
        assert {LABEL_NAMES[i] for i, v in enumerate(case.label) if v} == present
        rows_with_location = {LABEL_NAMES[i] for i in np.nonzero(case.locations.any(axis=1))[0]}
        assert rows_with_location == present
        for f in case.findings:
            if f.lobe and f.side in ("right", "left") and f.label not in PLEURAL:
                assert case.locations[LABEL_NAMES.index(f.label), LOCATION_NAMES.index(f"{f.side}_{f.lobe}")] == 1


def test_dataset_folder_follows_the_layout_contract(tiny_dataset):
    d = tiny_dataset
    for name in ("labels.csv", "findings.json", "datalist.json", "meta.json"):
        assert (d / name).is_file()
    datalist = json.loads((d / "datalist.json").read_text())
    assert set(datalist) == set(SPLITS) and all(datalist[s] for s in SPLITS)
    n = sum(len(v) for v in datalist.values())
    assert n == 24
    for items in datalist.values():
        for item in items:
            for key in ("image", "organs", "lesions", "locations", "report"):
                assert not os.path.isabs(item[key]) and (d / item[key]).is_file()
            assert len(item["label"]) == 80


def test_labels_csv_agrees_with_datalist(tiny_dataset):
    rows = list(csv.reader((tiny_dataset / "labels.csv").read_text().splitlines()))
    assert rows[0] == ["accession", *LABEL_NAMES]
    by_acc = {r[0]: [int(v) for v in r[1:]] for r in rows[1:]}
    datalist = json.loads((tiny_dataset / "datalist.json").read_text())
    for items in datalist.values():
        for item in items:
            assert by_acc[item["accession"]] == item["label"]


def test_location_csv_has_label_rows_and_location_columns(tiny_dataset):
    path = next((tiny_dataset / "locations").glob("*.csv"))
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["abnormality", *LOCATION_NAMES]
    assert [r[0] for r in rows[1:]] == LABEL_NAMES


def test_written_niftis_are_ras_with_the_requested_spacing(tiny_dataset):
    meta = json.loads((tiny_dataset / "meta.json").read_text())
    spacing = meta["parameters"]["spacing"]
    acc = "syn00000"
    for sub, dtype in (("images", np.int16), ("organs", np.uint8), ("lesions", np.uint8)):
        img = nib.load(tiny_dataset / sub / f"{acc}.nii.gz")
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        assert np.allclose(img.header.get_zooms()[:3], spacing)
        assert img.get_data_dtype() == dtype


def test_lesion_channels_follow_findings_and_empty_scans_get_one_zero_channel(tiny_dataset):
    findings = json.loads((tiny_dataset / "findings.json").read_text())
    saw_empty = False
    for acc, rec in findings.items():
        lesions = np.asarray(nib.load(tiny_dataset / "lesions" / f"{acc}.nii.gz").dataobj)
        assert lesions.ndim == 4
        k = len(rec["findings"])
        assert rec["lesion_channels"] == k
        if k == 0:
            saw_empty = True
            assert lesions.shape[-1] == 1 and not lesions.any()
        else:
            assert lesions.shape[-1] == k
            assert all(lesions[..., j].any() for j in range(k))
    assert saw_empty, "tiny profile should contain a normal scan"


def test_findings_json_records_fat_thickness_and_split(tiny_dataset):
    findings = json.loads((tiny_dataset / "findings.json").read_text())
    for rec in findings.values():
        assert 3.0 < rec["fat_thickness_mm"] < 41.0
        assert rec["split"] in SPLITS


def test_written_image_equals_generated_case(tiny_dataset):
    meta = json.loads((tiny_dataset / "meta.json").read_text())
    cfg = make_config("tiny")
    case = generate_case(2, seed=meta["seed"], config=cfg)
    img = np.asarray(nib.load(tiny_dataset / "images" / "syn00002.nii.gz").dataobj)
    assert np.array_equal(img, case.image)


def test_rerun_with_same_parameters_skips_existing_files(tiny_dataset):
    path = tiny_dataset / "images" / "syn00001.nii.gz"
    before = path.stat().st_mtime_ns
    generate_dataset(tiny_dataset, profile="tiny", seed=3, workers=1, progress=False)
    assert path.stat().st_mtime_ns == before


def test_rerun_with_other_parameters_is_refused(tiny_dataset):
    with pytest.raises(InputError, match="meta.json"):
        generate_dataset(tiny_dataset, profile="tiny", seed=4, workers=1, progress=False)


def test_interrupted_dataset_resumes_missing_scans(tmp_path):
    out = generate_dataset(tmp_path / "d", profile="tiny", n_scans=3, seed=9, workers=1, progress=False)
    keep = (out / "images" / "syn00000.nii.gz").stat().st_mtime_ns
    (out / "images" / "syn00001.nii.gz").unlink()
    meta = json.loads((out / "meta.json").read_text())
    generate_dataset(out, profile="tiny", n_scans=3, seed=9, workers=1, progress=False)
    assert (out / "images" / "syn00001.nii.gz").is_file()
    assert (out / "images" / "syn00000.nii.gz").stat().st_mtime_ns == keep
    assert json.loads((out / "meta.json").read_text())["parameters"] == meta["parameters"]


def test_parallel_workers_write_the_same_arrays(tmp_path):
    a = generate_dataset(tmp_path / "w1", profile="tiny", n_scans=3, seed=2, workers=1, progress=False)
    b = generate_dataset(tmp_path / "w2", profile="tiny", n_scans=3, seed=2, workers=2, progress=False)
    for acc in ("syn00000", "syn00002"):
        x = np.asarray(nib.load(a / "images" / f"{acc}.nii.gz").dataobj)
        y = np.asarray(nib.load(b / "images" / f"{acc}.nii.gz").dataobj)
        assert np.array_equal(x, y)


def _confounder_correlations(strength: float, shift: str = "reverse") -> dict[str, float]:
    cfg = make_config("tiny", n_scans=400, confounder_strength=strength, shift=shift)
    fat, athero = {s: [] for s in SPLITS}, {s: [] for s in SPLITS}
    for i in range(cfg.n_scans):
        _, split, _, fat_mm, findings = plan_case(i, 0, cfg)
        fat[split].append(fat_mm)
        athero[split].append(any(f.label == CONFOUNDED_LABEL for f in findings))
    return {s: float(np.corrcoef(fat[s], athero[s])[0, 1]) for s in SPLITS}


def test_confounder_at_full_strength_ties_atherosclerosis_to_fat_in_training_only():
    corr = _confounder_correlations(1.0)
    assert corr["training"] > 0.7 and corr["validation"] > 0.7
    assert corr["test_shifted"] < -0.5


def test_confounder_at_zero_strength_is_independent():
    corr = _confounder_correlations(0.0)
    assert abs(corr["training"]) < 0.2


def test_independent_shift_removes_the_tie_in_test_shifted():
    corr = _confounder_correlations(1.0, shift="independent")
    assert abs(corr["test_shifted"]) < 0.3 and corr["training"] > 0.7


def test_bad_parameters_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="confounder_strength"):
        generate_dataset(tmp_path / "x", profile="tiny", confounder_strength=1.5, progress=False)
    with pytest.raises(InputError, match="field of view"):
        generate_dataset(tmp_path / "x", profile="tiny", shape=(64, 64, 48), spacing=(1.0, 1.0, 1.0), progress=False)


def test_cli_writes_a_dataset_and_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["--out", str(out), "--profile", "tiny", "--n-scans", "2", "--seed", "1", "--workers", "1",
               "--no-progress", "--confounder-strength", "1"])
    assert rc == 0 and (out / "datalist.json").is_file()
    bad = ["--out", str(tmp_path / "bad"), "--profile", "tiny", "--confounder-strength", "2", "--no-progress"]
    assert main(bad) == 2
    assert "confounder_strength" in capsys.readouterr().err


def test_cli_split_fractions_are_shares_and_may_leave_splits_empty(tmp_path):
    out = tmp_path / "shares"
    rc = main(["--out", str(out), "--profile", "tiny", "--n-scans", "4", "--seed", "2", "--workers", "1",
               "--no-progress", "--split-fractions", "3", "1", "0", "0"])
    assert rc == 0
    datalist = json.loads((out / "datalist.json").read_text())
    assert {k: len(v) for k, v in datalist.items()} == {"training": 3, "validation": 1, "test": 0, "test_shifted": 0}
    same = generate_dataset(tmp_path / "fractions", profile="tiny", n_scans=4, seed=2, workers=1, progress=False,
                            split_fractions=(0.75, 0.25, 0.0, 0.0))
    for item in datalist["validation"]:
        name = Path(item["image"]).name
        a = np.asarray(nib.load(str(out / "images" / name)).dataobj)
        b = np.asarray(nib.load(str(same / "images" / name)).dataobj)
        assert np.array_equal(a, b)


def test_cli_refuses_negative_split_fractions(tmp_path, capsys):
    bad = ["--out", str(tmp_path / "neg"), "--profile", "tiny", "--no-progress", "--split-fractions", "1", "-1", "1", "1"]
    assert main(bad) == 2
    assert "split_fractions" in capsys.readouterr().err


def test_small_datasets_fill_every_split():
    assert all(n >= 1 for n in make_config("tiny", n_scans=4).split_counts().values())
    counts = make_config("demo").split_counts()
    assert sum(counts.values()) == 200 and counts["training"] > counts["test_shifted"] > 0


def test_shape_without_spacing_keeps_the_profile_field_of_view():
    cfg = make_config("demo", shape=(64, 64, 48))
    fov = np.asarray(cfg.shape) * np.asarray(cfg.spacing)
    assert np.allclose(fov, np.asarray((128, 128, 96)) * np.asarray((2.9, 2.9, 3.2)), rtol=1e-3)
    assert 350 <= fov[0] <= 400  # a realistic ~35-40 cm in-plane field of view


def _atherosclerosis_voxels(plaque_scale: float) -> list[int]:
    cfg = make_config("tiny", plaque_scale=plaque_scale, prevalence={CONFOUNDED_LABEL: 1.0}, normal_fraction=0.0)
    out = []
    for i in range(3):
        case = generate_case(i, seed=4, config=cfg)
        out.append(sum(int(case.lesions[..., k].sum()) for k, f in enumerate(case.findings)
                       if f.label == CONFOUNDED_LABEL))
    return out


def test_plaque_scale_enlarges_every_atherosclerosis_lesion():
    small, large = _atherosclerosis_voxels(1.0), _atherosclerosis_voxels(3.0)
    assert all(s > 0 for s in small)
    assert all(b > 3 * s for s, b in zip(small, large))


def test_default_plaque_scale_keeps_the_recorded_parameters_of_earlier_folders():
    assert "plaque_scale" not in make_config("tiny").to_dict()
    assert make_config("tiny", plaque_scale=3).to_dict()["plaque_scale"] == 3.0


def test_cli_refuses_a_plaque_scale_out_of_range(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "p"), "--profile", "tiny", "--no-progress", "--plaque-scale", "0"]) == 2
    assert "plaque_scale" in capsys.readouterr().err
