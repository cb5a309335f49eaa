"""``hirescam reproduce`` with a profile that trains on scans rendered finer than the network grid (the ``quick``
profile): the bundle resamples every scan to the profile's spacing, and the checkpoint records that grid and the
densitometry branch, as the shipped models' do."""

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
    profile = get_profile("quick", n_scans=24, max_epochs=1, models=("axialnet",), sanity_scans=2, fit_scans=4,
                          synth_workers=1)
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
