"""``hirescam reproduce`` with a profile that trains on scans rendered finer than the network grid (the ``quick``
profile): the bundle resamples every scan to the profile's spacing, and the checkpoint records that grid and the
densitometry branch, as the shipped models' do. The profile trains its two models at the same time, each in its own
process, on a dataset split by the profile's fractions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hirescam_ext.engines.model_settings import read_model_settings
from hirescam_ext.reproduce.driver import run_reproduction
from hirescam_ext.reproduce.profiles import get_profile


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reproduce_resampled")
    profile = get_profile("quick", n_scans=24, max_epochs=1, sanity_scans=2, fit_scans=4, synth_workers=1)
    run_reproduction(profile, root / "results", root / "work", log=lambda _: None)
    return root / "results", root / "work"


def test_the_checkpoint_is_trained_on_the_profile_grid_not_the_rendered_one(quick_run: tuple[Path, Path]) -> None:
    _, work = quick_run
    settings = read_model_settings(work / "runs" / "axialnet_seed0" / "models" / "best.pt")
    assert settings["preprocessing"]["spacing"] == [5.8, 5.8, 6.4]
    assert settings["data"]["shape"] == [128, 128, 96] and settings["data"]["spacing"] == [2.9, 2.9, 3.2]
    assert settings["network_def"]["density_bands"] is True and settings["network_def"]["trunk"] == "small16"
    assert settings["attention_grid"] == [16, 4, 4]


def test_the_report_says_how_the_scans_were_made_and_which_audit_counts_visible_findings(
    quick_run: tuple[Path, Path],
) -> None:
    results, _ = quick_run
    payload = json.loads((results / "results.json").read_text(encoding="utf-8"))
    assert payload["visibility"]["profile"] == "tiny_from_demo"
    report = (results / "REPORT.md").read_text(encoding="utf-8")
    assert "resampled to [5.8, 5.8, 6.4] mm and [64, 64, 48]" in report


def test_both_runs_of_the_pair_finish_in_their_own_processes(quick_run: tuple[Path, Path]) -> None:
    results, _ = quick_run
    payload = json.loads((results / "results.json").read_text(encoding="utf-8"))
    assert payload["header"]["parallel_runs"] == 2 and payload["header"]["threads_per_run"] >= 1
    assert set(payload["runs"]) == {"axialnet", "axialnet_mask"}
    for model, by_seed in payload["runs"].items():
        assert by_seed["0"]["epochs_trained"] == 1, model
        assert [e["epoch"] for e in by_seed["0"]["training_history"]] == [1], model  # each run's learning curve
    assert "2 runs at a time" in (results / "REPORT.md").read_text(encoding="utf-8")


def test_the_dataset_is_split_by_the_profile_fractions(quick_run: tuple[Path, Path]) -> None:
    from hirescam_ext.synthetic.generator import make_config

    _, work = quick_run
    (folder,) = work.glob("data_demo_24_128x128x96_seed0_split0.7-0.1-0.1-0.1")
    datalist = json.loads((folder / "datalist.json").read_text(encoding="utf-8"))
    config = make_config("demo", n_scans=24, split_fractions=(0.7, 0.1, 0.1, 0.1))
    expected = [config.split_of(i) for i in range(24)]
    assert {split: len(datalist[split]) for split in datalist} == {s: expected.count(s) for s in set(expected)}
    assert len(datalist["training"]) > 24 * 0.55 + 1  # more than the generator's default share
