"""Smoke test: ``hirescam reproduce --profile tiny`` produces every table and figure with finite values."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from hirescam_ext.reproduce import main
from hirescam_ext.reproduce.report import FIGURES, TABLES
from hirescam_ext.reproduce.summary import HELD, NOT_EVALUABLE, NOT_HELD

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reproduce_tiny")
    out = root / "results"
    status = main(["--profile", "tiny", "--out", str(out), "--work-dir", str(root / "work")])
    assert status == 0
    return out


def _numbers(obj: Any) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _numbers(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers(x)]
    return []


def test_every_table_is_written_as_markdown_and_csv(tiny_run: Path) -> None:
    for name in TABLES:
        md = (tiny_run / "tables" / f"{name}.md").read_text(encoding="utf-8")
        assert md.count("\n") >= 3, f"table {name} has no rows"
        assert (tiny_run / "tables" / f"{name}.csv").is_file()


def test_tables_hold_no_non_finite_values(tiny_run: Path) -> None:
    for name in TABLES:
        text = (tiny_run / "tables" / f"{name}.csv").read_text(encoding="utf-8").lower()
        for bad in ("nan", "inf"):
            assert bad not in text.replace("intervention", ""), f"{bad} in table {name}"


def test_every_figure_is_a_png(tiny_run: Path) -> None:
    for name in FIGURES:
        data = (tiny_run / "figures" / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_results_json_numbers_are_finite(tiny_run: Path) -> None:
    payload = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))
    numbers = _numbers(payload)
    assert numbers and all(math.isfinite(v) for v in numbers)


def test_results_json_records_command_versions_and_machine(tiny_run: Path) -> None:
    header = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))["header"]
    assert "reproduce" in header["command"] and "--profile tiny" in header["command"]
    assert {"torch", "monai", "hirescam_ext"} <= set(header["versions"])
    assert header["machine"]["cpu_count"] >= 1
    assert header["seeds"] == [0]


def test_results_json_and_the_report_record_the_parameters_of_the_evaluated_data(tiny_run: Path) -> None:
    header = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))["header"]
    data = json.loads((Path(header["dataset_dir"]) / "meta.json").read_text(encoding="utf-8"))
    assert header["dataset_parameters"] == data["parameters"]
    assert header["dataset_parameters"]["confounder_strength"] == 0.8
    report = (tiny_run / "REPORT.md").read_text(encoding="utf-8")
    assert f"- data: `{header['dataset_dir']}`" in report and "confounder_strength 0.8" in report


def test_every_model_with_a_map_has_localization_and_confounder_numbers(tiny_run: Path) -> None:
    runs = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))["runs"]
    assert {"axialnet", "axialnet_mask", "maxpool", "nocustomconv", "ctnet", "bodyconv", "threedconv"} <= set(runs)
    for model, by_seed in runs.items():
        run = by_seed["0"]
        assert run["evaluation"]["test"]["auroc"]["mean"] is not None
        assert run["fit"]["n_scans"] > 0
        if model != "ctnet":
            assert run["localization"]["n_pairs"] > 0
            assert set(run["confounder"]) == {"test", "test_shifted"}
        else:
            assert "localization" not in run


def test_every_claim_gets_a_status_and_appears_in_the_report(tiny_run: Path) -> None:
    payload = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))
    report = (tiny_run / "REPORT.md").read_text(encoding="utf-8")
    assert len(payload["claims"]) == 5
    for claim in payload["claims"]:
        assert claim["status"] in (HELD, NOT_HELD, NOT_EVALUABLE)
        assert claim["claim"] in report
    for name in FIGURES:
        assert f"figures/{name}.png" in report


def test_sanity_check_has_one_value_per_randomized_block(tiny_run: Path) -> None:
    sanity = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))["runs"]["axialnet"]["0"]["sanity"]
    assert sanity["blocks"][0] == "fc"
    for method in ("hirescam", "gradcam"):
        assert len(sanity[method]["spearman"]) == len(sanity["blocks"])


def test_report_splits_the_confounded_logit_by_region_right_after_the_confounder_study(tiny_run: Path) -> None:
    report = (tiny_run / "REPORT.md").read_text(encoding="utf-8")
    study, ledger = report.index("## Confounder study"), report.index("## Confounder ledger")
    assert study < ledger < report.index("## Localization")
    assert "fat effect: body wall" in report[ledger:]


def test_report_gives_auroc_per_finding_with_its_visibility_right_after_table1(tiny_run: Path) -> None:
    from hirescam_ext.synthetic.visibility import visible_findings

    results = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))
    assert results["visibility"]["visible"] == list(visible_findings("tiny", shape=(64, 64, 48)))
    report = (tiny_run / "REPORT.md").read_text(encoding="utf-8")
    per_label = report.index("## AUROC per finding")
    assert report.index("## Table 1") < per_label < report.index("## Table 2")
    assert "AUROC (test, visible findings)" in report


def test_report_gives_the_pointing_game_per_finding_with_its_chance_right_after_localization(tiny_run: Path) -> None:
    runs = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))["runs"]
    loc = runs["axialnet"]["0"]["localization"]
    assert sum(loc["n_pairs_per_label"].values()) == loc["n_pairs"]
    assert set(loc["chance"]["pointing_game_per_label"]) == set(loc["hirescam"]["pointing_game_per_label"])
    report = (tiny_run / "REPORT.md").read_text(encoding="utf-8")
    per_finding = report.index("## Pointing game per finding")
    assert report.index("## Localization") < per_finding < report.index("## Sanity check")
    assert "AxialNet (random-init trunk): HiResCAM" in report[per_finding:]


def test_report_is_rebuilt_from_results_json_without_running_again(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "rebuilt"
    assert main(["--report-from", str(tiny_run / "results.json"), "--out", str(out)]) == 0
    old = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))
    new = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [c["status"] for c in new["claims"]] == [c["status"] for c in old["claims"]]
    assert new["runs"] == old["runs"] and new["header"]["started"] == old["header"]["started"]
    assert "--report-from" in new["header"]["report_rebuilt"]["command"]
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "report rebuilt from this run's results.json" in report
    assert "## OrganIoU over the findings each model detects" in report
    assert not (out / "work").exists() and sorted(p.name for p in out.iterdir()) == [
        "REPORT.md", "figures", "results.json", "tables"]


def test_a_run_on_a_given_dataset_describes_that_folder_not_the_profiles(tiny_run: Path, tmp_path: Path) -> None:
    payload = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))
    payload["profile"]["dataset"] = payload["header"]["dataset_dir"]
    payload["header"]["dataset_parameters"] = {**payload["header"]["dataset_parameters"], "plaque_scale": 3.0,
                                               "n_scans": 7, "seed": 5}
    given = tmp_path / "given" / "results.json"
    given.parent.mkdir()
    given.write_text(json.dumps(payload), encoding="utf-8")
    assert main(["--report-from", str(given)]) == 0
    report = (given.parent / "REPORT.md").read_text(encoding="utf-8")
    assert "- data: the `hirescam synth` folder of --dataset (7 scans," in report
    assert "plaque_scale 3.0" in report and "dataset seed: 5" in report


def test_report_from_a_missing_results_json_fails_with_the_path(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "results.json"
    assert main(["--report-from", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
